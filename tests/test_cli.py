"""Every command line describes each of its flags with its default."""

import argparse
import importlib

import pytest

ENTRY_POINTS = ["train.train", "train.sample", "train.data", "train.memory", "train.device_check",
                "train.benchmark.__main__", "train.hardware.compilers",
                "train.perf.optimizer_step", "train.perf.trainer_step", "train.perf.data_prep",
                "train.perf.state_memory", "train.perf.metrics_overhead",
                "train.perf.synthetic_fineweb", "train.perf.results", "train.perf.xla_flags"]


class _Parsed(Exception):
  pass


def parser_of(module, monkeypatch) -> argparse.ArgumentParser:
  """The parser `module.main` builds, caught as it parses."""
  built = []

  def catch(self, *args, **kwargs):
    built.append(self)
    raise _Parsed

  monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
  monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
  with pytest.raises(_Parsed):
    importlib.import_module(module).main([])
  return built[0]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_describes_every_flag_with_its_default(module, monkeypatch):
  parser = parser_of(module, monkeypatch)
  formatter = parser._get_formatter()
  for action in parser._actions:
    if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
      continue
    text = formatter._expand_help(action) if action.help else ""
    assert text, f"{module} {action.option_strings} has no help"
    assert action.required or "default" in text, f"{module} {action.option_strings}: {text}"
  assert parser.description and parser.description.rstrip().endswith("."), parser.description
