"""The trainer's configuration: one dataclass, the report presets, the CLI.

Every field can be set on the command line (`--batch-size 64`); a preset
fills fields first and explicit flags override it. Validation that needs no
device or data happens here, before anything is computed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import pathlib
from typing import Any

from layeropt_jax import registry
from train import model

SCHEDULES = ("cosine", "constant", "linear")
DATASETS = ("python_stdlib", "fineweb")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run.

  `opt` holds optimizer keyword overrides (`--opt b1=0.8`); `init_from` a
  Hugging Face `.safetensors` checkpoint to start from (fine-tuning), whose
  shapes must match `config`. `vmap_runs`: how many runs of a sweep are
  vmapped together (the groups run one after another in the same program);
  `None` for one at a time on CPU and all at once on GPU/TPU.
  `steps_per_call`: at most this many steps run in one jitted call (a scan,
  cut at every log, evaluation and checkpoint step).
  """
  workdir: str
  config: str = "nano"
  optimizer: str = "adamw"
  lr: float = 1e-3
  steps: int = 200
  seed: int = 0
  batch_size: int = 16
  seq_len: int = 128
  warmup: int = 20
  schedule: str = "cosine"
  final_lr_fraction: float = 0.1
  opt: dict[str, Any] = dataclasses.field(default_factory=dict)
  dtype: str = "float32"
  data: str = "python_stdlib"
  data_dir: str | None = None
  tokenizer: str | None = None
  init_from: str | None = None
  cache_dir: str = os.environ.get(
      "TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
  eval_every: int = 50
  eval_batches: int = 4
  checkpoint_every: int = 100
  keep_checkpoints: int = 3
  log_every: int = 10
  max_consecutive_nonfinite: int = 20
  fsdp: bool = False
  vmap_runs: int | None = None
  steps_per_call: int = 10
  progress: bool = True
  distributed: bool = False
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None

  def __post_init__(self):
    _check_choice("config", self.config, model.CONFIGS)
    _check_choice("optimizer", self.optimizer, registry.OPTIMIZERS)
    _check_choice("schedule", self.schedule, SCHEDULES)
    _check_choice("data", self.data, DATASETS)
    _check_choice("dtype", self.dtype, ("float32", "bfloat16"))
    for name in ("steps", "batch_size", "seq_len", "eval_batches",
                 "checkpoint_every", "keep_checkpoints", "log_every", "steps_per_call"):
      if getattr(self, name) <= 0:
        raise ValueError(f"--{_flag(name)} must be positive, got {getattr(self, name)}")
    for name in ("warmup", "eval_every", "max_consecutive_nonfinite"):
      if getattr(self, name) < 0:
        raise ValueError(f"--{_flag(name)} must be >= 0, got {getattr(self, name)}")
    if self.vmap_runs is not None and self.vmap_runs <= 0:
      raise ValueError(f"--vmap-runs must be positive, got {self.vmap_runs}")
    if self.warmup >= self.steps:
      raise ValueError(f"--warmup {self.warmup} must be shorter than --steps {self.steps}")
    if not 0.0 <= self.final_lr_fraction <= 1.0:
      raise ValueError(
          f"--final-lr-fraction must be in [0, 1], got {self.final_lr_fraction}")
    max_len = model.CONFIGS[self.config].max_position_embeddings
    if self.seq_len > max_len:
      raise ValueError(
          f"--seq-len {self.seq_len} is longer than config {self.config}'s "
          f"max_position_embeddings {max_len}")
    if self.data == "fineweb" and self.data_dir is None:
      raise ValueError("--data fineweb needs --data-dir (a directory of parquet shards)")
    if self.data_dir is not None and not pathlib.Path(self.data_dir).is_dir():
      raise ValueError(f"--data-dir {self.data_dir} does not exist")
    if self.tokenizer is not None and not pathlib.Path(self.tokenizer).is_file():
      raise ValueError(f"--tokenizer {self.tokenizer} does not exist")
    if self.init_from is not None and not (
        pathlib.Path(self.init_from).is_file() and self.init_from.endswith(".safetensors")):
      raise ValueError(f"--init-from {self.init_from} is not a .safetensors file")
    # Builds the optimizer once so that unknown or out-of-range --opt values
    # fail here, naming the argument, rather than after data preparation.
    registry.get_optimizer(self.optimizer, self.lr, **self.opt)

  @property
  def model_config(self) -> model.Qwen3Config:
    return dataclasses.replace(model.CONFIGS[self.config], dtype=self.dtype)

  @property
  def tokens_per_step(self) -> int:
    return self.batch_size * self.seq_len

  def conflicts(self, saved: dict[str, Any]) -> list[str]:
    """The fields that change the run's math and differ from `saved`."""
    ours = json.loads(json.dumps(dataclasses.asdict(self)))  # as run.json holds it
    return [f"{k}: checkpointed {saved.get(k)!r}, now {ours[k]!r}"
            for k in sorted(ours)
            if k not in OPERATIONAL_FIELDS and saved.get(k) != ours[k]]


# Fields a resumed run may change: they decide where and how the run executes
# and reports, not what it computes.
OPERATIONAL_FIELDS = frozenset({
    "workdir", "cache_dir", "data_dir", "eval_every", "checkpoint_every",
    "keep_checkpoints", "log_every", "fsdp", "vmap_runs", "steps_per_call", "progress",
    "distributed", "coordinator_address", "num_processes", "process_id",
})

# The reports' setups on the 134M Qwen3 and FineWeb (batch 512). METHODS.md
# gives each report's LR and warm-up where the report states one; the
# sequence length (1024) and the step budget (10k) are not given per report
# and are our choice.
_PAPER = dict(config="qwen3-134m", data="fineweb", batch_size=512, seq_len=1024,
              steps=10_000, schedule="cosine", eval_every=500,
              checkpoint_every=500, eval_batches=8)
PRESETS: dict[str, dict[str, Any]] = {
    "lamvs-paper": dict(_PAPER, optimizer="lamvs", lr=8e-4, warmup=800,
                        opt=dict(weight_decay=0.1)),
    "ladm-paper": dict(_PAPER, optimizer="ladm", lr=8e-4, warmup=800,
                       opt=dict(weight_decay=0.1, alpha_warmup_steps=500)),
    "aovs-paper": dict(_PAPER, optimizer="aovs", lr=8e-4, warmup=800,
                       opt=dict(weight_decay=0.1)),
    "lamo-paper": dict(_PAPER, optimizer="lamo", lr=1e-4, warmup=800,
                       opt=dict(weight_decay=0.1)),
    "malao-paper": dict(_PAPER, optimizer="malao", lr=3e-4, warmup=800,
                        opt=dict(weight_decay=0.1)),
}


def _flag(field: str) -> str:
  return field.replace("_", "-")


def _check_choice(field: str, value: Any, valid) -> None:
  if value not in valid:
    raise ValueError(f"unknown --{_flag(field)} {value!r}; valid: {', '.join(valid)}")


def _parse_opt(item: str) -> tuple[str, Any]:
  key, sep, value = item.partition("=")
  if not sep or not key:
    raise ValueError(f"--opt expects KEY=VALUE, got {item!r}")
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m train.train",
      description="Train a Flax NNX Qwen3 with a layeropt_jax optimizer.")
  p.add_argument("--preset", help=f"a report's setup: {', '.join(PRESETS)}")
  for field in dataclasses.fields(TrainConfig):
    flag = "--" + _flag(field.name)
    if field.name == "opt":
      p.add_argument(flag, action="append", metavar="KEY=VALUE",
                     help="an optimizer keyword argument (repeatable)")
    elif field.type == "bool":
      p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
    else:
      kind = {"int": int, "float": float}.get(field.type.split(" |")[0], str)
      p.add_argument(flag, type=kind, default=None)
  return p


def from_args(argv: list[str] | None = None) -> TrainConfig:
  """Parses the command line; raises `ValueError` naming a bad flag or value."""
  args = vars(parser().parse_args(argv))
  preset = args.pop("preset")
  values: dict[str, Any] = {}
  if preset is not None:
    _check_choice("preset", preset, PRESETS)
    values.update(PRESETS[preset])
  opt = args.pop("opt")
  values.update({k: v for k, v in args.items() if v is not None})
  if opt:
    values["opt"] = {**values.get("opt", {}), **dict(map(_parse_opt, opt))}
  if "workdir" not in values:
    raise ValueError("--workdir is required")
  return TrainConfig(**values)
