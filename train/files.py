"""Writing files so that a kill or a concurrent writer never leaves half of one."""

from __future__ import annotations

from collections.abc import Callable
import os
import pathlib


def write_atomically(path: str | os.PathLike,
                     content: str | bytes | Callable[[pathlib.Path], None]) -> None:
  """Writes `content` (text, bytes, or a function writing to the path it is
  given) to a per-process temporary file beside `path`, then renames it over
  `path`: readers see the old file or the whole new one, never a part."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
  if isinstance(content, str):
    tmp.write_text(content)
  elif isinstance(content, bytes):
    tmp.write_bytes(content)
  else:
    content(tmp)
  os.replace(tmp, path)
