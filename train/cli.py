"""What every command line shares: its description is its module's first
paragraph, and its --help gives every flag's default."""

from __future__ import annotations

import argparse


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Appends a flag's default to its help, unless the flag is required."""

  def _get_help_string(self, action: argparse.Action) -> str | None:
    return action.help if action.required else super()._get_help_string(action)


def parser(prog: str, doc: str, **kwargs) -> argparse.ArgumentParser:
  """The parser of `python -m <prog>`, described by `doc`'s first paragraph,
  whose --help appends each flag's default to its help."""
  return argparse.ArgumentParser(
      prog=f"python -m {prog}", description=" ".join(doc.strip().split("\n\n")[0].split()),
      formatter_class=_DefaultsFormatter, **kwargs)
