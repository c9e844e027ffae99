"""`metrics.jsonl` (one JSON object per logged step), the same scalars as
TensorBoard event files in the workdir, and the loss-curve plot."""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
from typing import Any

from train import files


class MetricsLog:
  """Appends records to a JSON-lines file, flushed line by line, and their
  numbers to TensorBoard event files beside it (one TensorBoard run per
  workdir: `tensorboard --logdir` over a sweep's workdirs compares them)."""

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self._events = None
    self._purge_step = None

  def records(self) -> list[dict[str, Any]]:
    """Every complete record (a line cut by a kill is not one)."""
    if not self.path.is_file():
      return []
    out = []
    for line in self.path.read_text().splitlines():
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue
    return out

  def truncate(self, step: int) -> None:
    """Keeps the step records up to `step`: a resumed run logs later steps again."""
    kept = [r for r in self.records() if "event" not in r and r["step"] <= step]
    files.write_atomically(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    # TensorBoard hides what earlier event files hold past the resumed step.
    self._purge_step = step + 1

  def write(self, record: dict[str, Any]) -> None:
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    if "event" in record:
      return
    if self._events is None:
      self._events = _summary_writer()(str(self.path.parent), purge_step=self._purge_step)
    # A skipped step's non-finite loss is in metrics.jsonl; TensorBoard's
    # curves keep the finite points (tensorboardX warns on every other).
    for name, value in record.items():
      if name != "step" and isinstance(value, (int, float)) and math.isfinite(value):
        self._events.add_scalar(name, value, record["step"])

  def close(self) -> None:
    """Flushes the event files."""
    if self._events is not None:
      self._events.close()
      self._events = None


def _summary_writer() -> type:
  """tensorboardX's `SummaryWriter`, imported without torch.

  tensorboardX imports torch whenever it is installed, only to accept torch
  tensors; this log writes floats. Hiding an unimported torch from that import
  spares each training process about 2 s and 190 MB.
  """
  hide = "torch" not in sys.modules
  if hide:
    sys.modules["torch"] = None  # `import torch` raises ImportError
  try:
    from tensorboardX import SummaryWriter
  finally:
    if hide:
      del sys.modules["torch"]
  return SummaryWriter


def plot(records: list[dict[str, Any]], path: str | os.PathLike, title: str) -> None:
  """Train and validation loss against step, as a PNG."""
  # A bare Figure: pyplot's global backend (a notebook's inline one) is left alone.
  from matplotlib.figure import Figure

  steps = [r for r in records if "event" not in r]
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  ax.plot([r["step"] for r in steps], [r["train_loss"] for r in steps], label="train")
  val = [r for r in steps if "val_loss" in r]
  ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
  ax.set(xlabel="step", ylabel="loss (nats/token)", title=title)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
