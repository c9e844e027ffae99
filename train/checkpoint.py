"""Run directories: the run's settings, its tokenizer and its orbax checkpoints.

A checkpoint holds the train state (parameters and optimizer state) and the
grain iterator state, written asynchronously and committed atomically by
orbax: a save killed mid-write leaves a temporary directory that is never
taken for a checkpoint, and the previous one stays the latest.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from tokenizers import Tokenizer

from train import files
from train.config import TrainConfig

RUN_FILE = "run.json"
TOKENIZER_FILE = "tokenizer.json"
SWEEP_FILE = "sweep.json"


def check_workdir(config: TrainConfig) -> None:
  """Checks that a workdir holding a run (`<workdir>/run.json`) would be
  continued by `config`, before anything is computed or written.

  Raises:
    ValueError: naming every setting that conflicts with the recorded run.
  """
  path = pathlib.Path(config.workdir) / RUN_FILE
  if path.is_file():
    conflicts = config.conflicts(json.loads(path.read_text()))
    if conflicts:
      raise ValueError(
          f"workdir {config.workdir} holds another run ({'; '.join(conflicts)}); "
          "use a new --workdir")


def _write_once(path: pathlib.Path, content: Any) -> None:
  """Writes `content` as JSON to `path` unless it exists (process 0, atomically)."""
  if jax.process_index() == 0 and not path.is_file():
    files.write_atomically(path, json.dumps(content, indent=1, sort_keys=True))


def record_run(config: TrainConfig) -> None:
  """Writes the run's settings to `<workdir>/run.json` (process 0, once)."""
  _write_once(pathlib.Path(config.workdir) / RUN_FILE, config.to_json())


def record_tokenizer(config: TrainConfig, tokenizer: Tokenizer) -> None:
  """Writes the run's tokenizer to `<workdir>/tokenizer.json` (process 0,
  once), so that the workdir alone suffices to sample from it."""
  _write_once(pathlib.Path(config.workdir) / TOKENIZER_FILE, json.loads(tokenizer.to_str()))


def _sweep_runs(configs: list[TrainConfig]) -> list[dict[str, Any]]:
  return [{"workdir": c.workdir, "lr": c.lr, "seed": c.seed} for c in configs]


def check_sweep_dir(sweep_dir: pathlib.Path, configs: list[TrainConfig]) -> None:
  """Checks that a sweep directory holding checkpoints holds these runs'.

  Raises:
    ValueError: if the directory holds another sweep's checkpoints.
  """
  path = sweep_dir / SWEEP_FILE
  if path.is_file() and json.loads(path.read_text()) != _sweep_runs(configs):
    raise ValueError(f"sweep directory {sweep_dir} holds another sweep (see {path}); "
                     "use a new one")


def record_sweep(sweep_dir: pathlib.Path, configs: list[TrainConfig]) -> None:
  """Writes which runs the sweep's checkpoints hold to `<sweep_dir>/sweep.json`."""
  _write_once(sweep_dir / SWEEP_FILE, _sweep_runs(configs))


class Checkpoints:
  """Keeps the last `keep` checkpoints in `directory` (a run's
  `<workdir>/checkpoints`, or a sweep's)."""

  def __init__(self, directory: str | os.PathLike, keep: int):
    self.directory = pathlib.Path(directory)
    self.manager = ocp.CheckpointManager(
        pathlib.Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=True, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict[str, Any]) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)))

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """The state of checkpoint `step`, placed with `abstract_state`'s shardings
    (`jax.ShapeDtypeStruct`s), and the data iterator state."""
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    return restored.state, restored.data

  def close(self) -> None:
    """Waits for pending saves to commit."""
    self.manager.wait_until_finished()
    self.manager.close()
