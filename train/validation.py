"""The held-out set a run evaluates on, and its losses: over every position
and in each validation file (for a bootstrap over files)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from train import data, step
from train.config import TrainConfig


class HeldOut(NamedTuple):
  """The fixed held-out set: `eval_batches` global batches of windows spread
  evenly over the whole validation split (`data.spread`), the same for every
  seed and learning rate."""
  batches: list[jax.Array]  # this process's rows of each global batch
  files: np.ndarray  # the validation file of every position scored, [N, T]

  def evaluate(self, trainer: step.Trainer, params: Any) -> Validation:
    """Each run's validation losses at `params`."""
    token_losses = trainer.evaluate(params, self.batches)  # [K, N, T]
    ids = np.unique(self.files, return_inverse=True)[1].reshape(-1)
    by_file = np.stack([np.bincount(ids, weights=run.reshape(-1)) for run in token_losses])
    return Validation(token_losses.mean(axis=(1, 2)), by_file / np.bincount(ids))

  def file_tokens(self) -> dict[str, list[int]]:
    """The files the set holds tokens of (their index in the validation
    split, in order) and how many positions of each it scores."""
    files, tokens = np.unique(self.files, return_counts=True)
    return {"val_files": files.tolist(), "val_file_tokens": tokens.tolist()}


class Validation(NamedTuple):
  """Each run's validation losses."""
  loss: np.ndarray  # the mean over every position, [K]
  by_file: np.ndarray  # the mean in each file of `HeldOut.file_tokens`, [K, F]

  def record(self, k: int) -> dict[str, Any]:
    """Run `k`'s losses as a metrics line holds them (the files' to 4 decimals)."""
    return {"val_loss": float(self.loss[k]),
            "val_loss_by_file": np.round(self.by_file[k], 4).tolist()}


def held_out_set(windows, config: TrainConfig, trainer: step.Trainer, eos: int) -> HeldOut:
  """The run's :class:`HeldOut`, this process's rows of each batch."""
  n = min(config.eval_batches, len(windows) // config.batch_size)
  if n == 0:
    raise ValueError(
        f"the validation split has {len(windows)} windows, fewer than one batch "
        f"of {config.batch_size}")
  rows = config.batch_size // jax.process_count()
  lo = jax.process_index() * rows
  held_out = data.spread(windows, n * config.batch_size)
  files = data.document_ids(windows, data.spread_indices(windows, n * config.batch_size), eos)
  return HeldOut([trainer.global_eval_batch(b[lo:lo + rows])
                  for b in held_out.reshape(n, config.batch_size, -1)], files[:, 1:])
