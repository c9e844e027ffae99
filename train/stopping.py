"""How a run stops before its last step: a signal (its steps in flight are
checkpointed first), or a loss that stopped being finite (nothing after the
last good checkpoint is saved)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import numpy as np

import layeropt_jax
from train import checkpoint
from train.config import TrainConfig


class Interrupted(Exception):
  """Training stopped by a signal; `step` is the checkpoint a rerun resumes from."""

  def __init__(self, step: int, signum: int = signal.SIGINT):
    super().__init__(step, signum)
    self.step, self.signum = step, signum


class Diverged(Exception):
  """A run's loss stopped being finite for longer than it may skip."""

  def __init__(self, what: str, config: TrainConfig, last_checkpoint: int | None):
    clip = layeropt_jax.hyperparameters(config.optimizer).get("clip_threshold")
    tighter_clip = "" if clip is None else (
        f" or a lower --opt clip_threshold (now {config.opt.get('clip_threshold', clip):g})")
    super().__init__(
        f"the loss stopped being finite: {what}; try a lower --lr (now {config.lr:g})"
        f"{tighter_clip}. The last good checkpoint is "
        + (f"step {last_checkpoint}" if last_checkpoint is not None else "none")
        + "; nothing after it was saved")


class StopSignals:
  """SIGINT (Ctrl-C) and SIGTERM (a preempted job) while training: the
  steps in flight finish and are checkpointed before the run stops. A second
  signal gets the previous handler (Ctrl-C twice stops at once, at the last
  checkpoint). Only the main thread can take signals: elsewhere, nothing."""

  def __init__(self):
    self.received: int | None = None
    self.previous: dict[int, Any] = {}

  def __enter__(self) -> StopSignals:
    if threading.current_thread() is threading.main_thread():
      self.previous = {sig: signal.signal(sig, self._take)
                       for sig in (signal.SIGINT, signal.SIGTERM)}
    return self

  def _take(self, signum: int, frame: Any) -> None:
    del frame
    self.received = signum
    self._restore()

  def _restore(self) -> None:
    for sig, handler in self.previous.items():
      signal.signal(sig, handler)
    self.previous = {}

  def __exit__(self, *exc_info) -> None:
    self._restore()


def check_finite(config: TrainConfig, i: int, n: int, out: dict[str, Any],
                 val_loss: np.ndarray | None, checkpoints: checkpoint.Checkpoints) -> None:
  """Raises `Diverged` if one of the `n` steps up to `i` applied a
  non-finite update (`max_consecutive_nonfinite` skipped steps in a row were
  not enough), or if step `i`'s validation loss is not finite: nothing of
  these parameters is saved."""
  in_a_row = np.asarray(out["consecutive_nonfinite"])[:, 0]
  past = np.flatnonzero(in_a_row > config.max_consecutive_nonfinite)
  if past.size:
    raise Diverged(
        f"step {i - n + int(past[0]) + 1} applied a non-finite update after "
        f"{config.max_consecutive_nonfinite} skipped steps in a row "
        "(--max-consecutive-nonfinite)", config, checkpoints.latest_step())
  if val_loss is not None and not np.isfinite(val_loss).all():
    raise Diverged(f"the validation loss at step {i} is {float(np.asarray(val_loss)[0])}",
                   config, checkpoints.latest_step())
