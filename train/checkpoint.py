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

from flax import nnx
import jax
import orbax.checkpoint as ocp
from tokenizers import Tokenizer

from layeropt_jax.labels import path_to_str
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
    saved = json.loads(path.read_text())
    conflicts = config.conflicts(saved)
    if conflicts:
      longer = any(c.startswith("steps:") for c in conflicts)
      raise ValueError(
          f"workdir {config.workdir} holds another run ({'; '.join(conflicts)}); "
          "use a new --workdir" + (
              f", with --init-from {config.workdir} to start from its parameters "
              "(a fresh optimizer and schedule)" if longer else ""))


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


def _checkpoint_of(path: pathlib.Path) -> tuple[pathlib.Path, int]:
  """The checkpoint directory and step that `path` names: a run's workdir or
  its `checkpoints/` (the latest checkpoint), or one `checkpoints/<step>`."""
  if (path / "checkpoints").is_dir():
    path = path / "checkpoints"
  if path.name.isdigit() and path.is_dir():
    return path.parent, int(path.name)
  steps = [int(p.name) for p in path.iterdir() if p.name.isdigit()] if path.is_dir() else []
  if not steps:
    raise ValueError(f"--init-from {path} holds no checkpoint (a run's workdir, its "
                     "checkpoints/ or one checkpoints/<step>, or a .safetensors file)")
  return path, max(steps)


def _open_run_checkpoint(path: pathlib.Path) -> tuple[ocp.CheckpointManager, int]:
  directory, step = _checkpoint_of(path)
  return ocp.CheckpointManager(directory.absolute(), item_handlers={
      "state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}), step


def _params_of_state(state: Any) -> Any:
  """A saved train state's parameters, each Param's {"value": leaf} as its leaf."""
  is_param = lambda x: isinstance(x, dict) and set(x) == {"value"}
  return jax.tree.map(lambda p: p["value"], dict(state["params"]), is_leaf=is_param)


def check_init_from(path: str | os.PathLike, template: Any) -> None:
  """Raises a one-line `ValueError` unless `path` is a `.safetensors` file or
  holds a run's checkpoint of `template`'s shapes (see `params_of_run`)."""
  path = pathlib.Path(path)
  if not path.exists():
    raise ValueError(f"--init-from {path} does not exist")
  if path.is_file():
    if path.suffix != ".safetensors":
      raise ValueError(f"--init-from {path} is neither a .safetensors file nor a run's "
                       "workdir or checkpoint")
    return
  manager, step = _open_run_checkpoint(path)
  saved = _params_of_state(manager.item_metadata(step)["state"])
  manager.close()
  runs = {leaf.shape[0] for leaf in jax.tree.leaves(saved)}
  if runs != {1}:
    raise ValueError(f"--init-from {path}: its checkpoint {step} holds {max(runs)} runs' "
                     "parameters (a sweep's); start from one run's workdir")
  shapes = lambda tree, drop: {path_to_str(k): tuple(v.shape)[drop:] for k, v in
                               jax.tree_util.tree_leaves_with_path(tree)}
  want, have = shapes(nnx.to_pure_dict(template), 0), shapes(saved, 1)
  mismatches = [f"{k}: checkpoint {have.get(k)}, model {want.get(k)}"
                for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
  if mismatches:
    raise ValueError(f"--init-from {path}: the checkpoint's parameters are not the "
                     f"model's ({len(mismatches)} differ: {'; '.join(mismatches[:3])}"
                     f"{'; ...' if len(mismatches) > 3 else ''})")


def params_of_run(path: str | os.PathLike, template: Any) -> Any:
  """The parameters of a run's checkpoint, to start another run from.

  Args:
    path: a run's workdir or its `checkpoints/` directory (the latest
      checkpoint), or one `checkpoints/<step>`.
    template: the parameter state (`nnx.State`) of the new run's model, whose
      structure and shapes the checkpoint's must have.

  Returns:
    `template` holding the checkpoint's parameters.

  Raises:
    ValueError: as `check_init_from`.
  """
  check_init_from(path, template)
  manager, step = _open_run_checkpoint(pathlib.Path(path))
  saved = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  first_run = jax.tree.map(lambda x: x[0], _params_of_state(saved.state))
  nnx.replace_by_pure_dict(template, first_run)
  return template


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
