"""Markdown for every results file the benchmarks write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import math


def row(cells: Iterable[object]) -> str:
  """One table row: `| a | b |`."""
  return "| " + " | ".join(map(str, cells)) + " |"


def table(header: Sequence[str], rows: Iterable[Iterable[object]]) -> list[str]:
  """A table's lines: the header, its rule and one line per row, unpadded
  (a changed cell changes one line of a committed file, not its column)."""
  return [row(header), "|" + "---|" * len(header), *map(row, rows)]


def number(x: float | None, spec: str = ".3f") -> str:
  """`x` formatted by `spec`, `-` where it is None or not finite."""
  return "-" if x is None or not math.isfinite(x) else format(x, spec)
