"""The trainer's configuration as data: one dataclass, the reports' presets, the CLI.

Every field of `TrainConfig` is a flag (`batch_size` is `--batch-size`) with
its doc line as help. A preset fills fields first and explicit flags override
it. Building a `TrainConfig` checks each value on its own (a choice, a range);
what needs the disk or an optimizer is checked by `train.train.preflight` when
a run starts.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import re
import sys
from typing import Any

from layeropt_jax import registry
from train import model
from train.corpora import BUILDERS
from train.data import default_cache_dir

# What a field decides. A resumed run may change only what does not change
# what it computes; the benchmark caches a run under a hash of everything but
# where it was placed.
COMPUTES = "computes"  # the run's numbers: data, model, optimizer, schedule, ...
RECORDS = "records"  # what the run records of them (metrics.jsonl), not the math
PLACEMENT = "placement"  # where and how it executes and checkpoints

SCHEDULES = ("cosine", "constant", "linear")
DATASETS = tuple(BUILDERS)
DTYPES = ("float32", "bfloat16")


def _field(default: Any, doc: str, *, kind: str = COMPUTES, choices=None,
           bound: str | None = None) -> Any:
  """A `TrainConfig` field: its default, doc line (the flag's help), what it
  decides, its valid values (`choices`) or range (`bound`: "> 0" or ">= 0")."""
  metadata = {"doc": doc, "kind": kind, "choices": choices, "bound": bound}
  if callable(default):
    return dataclasses.field(default_factory=default, metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run."""
  workdir: str | None = _field(
      None, "directory of the run's checkpoints, metrics and settings (required)",
      kind=PLACEMENT)
  config: str = _field("nano", "model size", choices=tuple(model.CONFIGS))
  optimizer: str = _field("adamw", "a name of layeropt_jax.get_optimizer",
                          choices=registry.OPTIMIZERS)
  lr: float = _field(1e-3, "peak learning rate", bound=">= 0")
  steps: int = _field(200, "optimizer steps", bound="> 0")
  seed: int = _field(0, "seed of the initialisation and the data order")
  batch_size: int = _field(16, "sequences per step, over all devices", bound="> 0")
  seq_len: int = _field(128, "tokens per sequence", bound="> 0")
  warmup: int = _field(20, "steps of linear warm-up from 0 to --lr", bound=">= 0")
  schedule: str = _field("cosine", "decay after the warm-up", choices=SCHEDULES)
  final_lr_fraction: float = _field(
      0.1, "the learning rate at the last step, as a fraction of --lr (in [0, 1])")
  opt: dict[str, Any] = _field(
      dict, "optimizer keyword arguments, KEY=VALUE, repeatable (e.g. b1=0.8)")
  clip_norm: float | None = _field(
      None, "clip the gradient to this global L2 norm before the optimizer (default: "
      "no clipping)", bound="> 0")
  dtype: str = _field("float32", "compute dtype; parameters stay float32", choices=DTYPES)
  data: str = _field("python_stdlib", "the dataset", choices=DATASETS)
  data_dir: str | None = _field(
      None, "directory of FineWeb parquet shards (for --data fineweb)", kind=PLACEMENT)
  tokenizer: str | None = _field(
      None, "a tokenizer.json to use instead of training a BPE on the data")
  init_from: str | None = _field(
      None, "parameters to start from (a fresh optimizer and schedule): a Hugging Face "
      ".safetensors checkpoint of --config's shape, or a run's workdir (its latest "
      "checkpoint) or one of its checkpoints/<step>")
  cache_dir: str = _field(
      default_cache_dir, "where prepared datasets, tokenizers and token shards are cached",
      kind=PLACEMENT)
  data_workers: int | None = _field(
      None, "processes that tokenise a dataset being prepared (default: every core)",
      kind=PLACEMENT, bound="> 0")
  eval_every: int = _field(50, "steps between validations (0: only at the end)",
                           kind=RECORDS, bound=">= 0")
  eval_batches: int = _field(4, "batches of the validation split in the validation set",
                             bound="> 0")
  checkpoint_every: int = _field(100, "steps between checkpoints", kind=PLACEMENT,
                                 bound="> 0")
  keep_checkpoints: int = _field(3, "checkpoints kept", kind=PLACEMENT, bound="> 0")
  log_every: int = _field(10, "steps between lines of metrics.jsonl", kind=RECORDS,
                          bound="> 0")
  max_consecutive_nonfinite: int = _field(
      20, "non-finite steps skipped in a row; past that, updates apply regardless",
      bound=">= 0")
  fsdp: bool = _field(False, "also shard parameters and optimizer state over devices",
                      kind=PLACEMENT)
  grad_accum: int = _field(
      1, "microbatches per step: their gradients are averaged before one optimizer "
      "update (the batch's result with one microbatch's memory)", kind=PLACEMENT,
      bound="> 0")
  remat: bool = _field(
      False, "recompute each decoder layer's activations in the backward pass (less "
      "memory, one more forward pass)", kind=PLACEMENT)
  loss_chunk: int = _field(
      256, "positions of every sequence whose logits the loss computes at once, "
      "forward and backward (0: the whole sequence)", kind=PLACEMENT, bound=">= 0")
  vmap_runs: int | None = _field(
      None, "runs of a sweep vmapped together (default: 1 on CPU, all on GPU/TPU)",
      kind=PLACEMENT, bound="> 0")
  steps_per_call: int = _field(
      10, "at most this many steps per jitted call (cut at every log, evaluation "
      "and checkpoint step)", kind=PLACEMENT, bound="> 0")
  progress: bool = _field(True, "show a progress bar", kind=PLACEMENT)
  verbose: bool = _field(
      False, "also print every parameter's label and LR multiplier at start (always "
      "written to <workdir>/parameters.txt)", kind=PLACEMENT)
  profile_steps: str | None = _field(
      None, "A:B writes a jax.profiler trace of steps A+1 to B to <workdir>/profile "
      "(TensorBoard's profile plugin or Perfetto)", kind=PLACEMENT)
  distributed: bool = _field(
      False, "join a multi-host run (jax.distributed.initialize detects TPU pods, "
      "SLURM, ...)", kind=PLACEMENT)
  coordinator_address: str | None = _field(
      None, "HOST:PORT of process 0 of a multi-process run", kind=PLACEMENT)
  num_processes: int | None = _field(None, "processes of a multi-process run",
                                     kind=PLACEMENT, bound="> 0")
  process_id: int | None = _field(None, "this process's index in a multi-process run",
                                  kind=PLACEMENT, bound=">= 0")

  @property
  def profile_range(self) -> tuple[int, int] | None:
    """`--profile-steps A:B` as (A, B): the trace covers steps A+1 to B."""
    if self.profile_steps is None:
      return None
    start, stop = self.profile_steps.split(":")
    return int(start), int(stop)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value, meta = getattr(self, field.name), field.metadata
      if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"unknown --{flag(field.name)} {value!r}; "
                         f"valid: {', '.join(meta['choices'])}")
      if value is None or meta["bound"] is None:
        continue
      if meta["bound"] == "> 0" and not value > 0:
        raise ValueError(f"--{flag(field.name)} must be positive, got {value}")
      if meta["bound"] == ">= 0" and not value >= 0:
        raise ValueError(f"--{flag(field.name)} must be >= 0, got {value}")
    if self.profile_steps is not None:
      if not re.fullmatch(r"\d+:\d+", self.profile_steps):
        raise ValueError(f"--profile-steps expects A:B (steps, A < B), got "
                         f"{self.profile_steps!r}")
      start, stop = self.profile_range
      if not start < stop <= self.steps:
        raise ValueError(f"--profile-steps {self.profile_steps} must satisfy "
                         f"A < B <= --steps {self.steps}")
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
    if self.batch_size % self.grad_accum:
      raise ValueError(f"--batch-size {self.batch_size} is not divisible by --grad-accum "
                       f"{self.grad_accum}")
    if self.grad_accum > 1 and self.optimizer == "sophia":
      raise ValueError(f"--grad-accum {self.grad_accum} cannot be used with --optimizer "
                       "sophia: its Hessian estimate needs the loss of the whole batch at "
                       "once (use --grad-accum 1)")

  @property
  def model_config(self) -> model.Qwen3Config:
    return dataclasses.replace(model.CONFIGS[self.config], dtype=self.dtype,
                               remat=self.remat)

  @property
  def tokens_per_step(self) -> int:
    return self.batch_size * self.seq_len

  def to_json(self) -> dict[str, Any]:
    """The fields as `run.json` holds them."""
    return json.loads(json.dumps(dataclasses.asdict(self)))

  def conflicts(self, saved: dict[str, Any]) -> list[str]:
    """The fields that change what the run computes and differ from `saved`."""
    ours = self.to_json()
    return [f"{k}: checkpointed {saved.get(k)!r}, now {ours[k]!r}"
            for k in sorted(fields_of(COMPUTES)) if saved.get(k) != ours[k]]


def fields_of(*kinds: str) -> frozenset[str]:
  """The names of `TrainConfig`'s fields of the given kinds (`COMPUTES`,
  `RECORDS`, `PLACEMENT`)."""
  return frozenset(f.name for f in dataclasses.fields(TrainConfig)
                   if f.metadata["kind"] in kinds)


# The reports' setup on the 134M Qwen3 and FineWeb (batch 512, warm-up 800).
# Each report's LR (and LADM's alpha warm-up) is in its preset; the sequence
# length (1024) and the step budget (10k) are not given per report and are
# our choice. bfloat16 compute and rematerialised layers make the step fit
# 8 devices of 60 GiB (results/memory.md).
REPORTS_SETUP = dict(config="qwen3-134m", data="fineweb", batch_size=512, seq_len=1024,
                   steps=10_000, warmup=800, schedule="cosine", eval_every=500,
                   checkpoint_every=500, eval_batches=8, dtype="bfloat16", remat=True)
PRESETS: dict[str, dict[str, Any]] = {
    "lamvs-paper": dict(REPORTS_SETUP, optimizer="lamvs", lr=8e-4,
                        opt=dict(weight_decay=0.1)),
    "ladm-paper": dict(REPORTS_SETUP, optimizer="ladm", lr=8e-4,
                       opt=dict(weight_decay=0.1, alpha_warmup_steps=500)),
    "aovs-paper": dict(REPORTS_SETUP, optimizer="aovs", lr=8e-4,
                       opt=dict(weight_decay=0.1)),
    "lamo-paper": dict(REPORTS_SETUP, optimizer="lamo", lr=1e-4,
                       opt=dict(weight_decay=0.1)),
    "malao-paper": dict(REPORTS_SETUP, optimizer="malao", lr=3e-4,
                        opt=dict(weight_decay=0.1)),
}


def flag(field: str) -> str:
  """The command-line flag of a field, without its dashes."""
  return field.replace("_", "-")


def _parse_opt(item: str) -> tuple[str, Any]:
  key, sep, value = item.partition("=")
  if not sep or not key:
    raise ValueError(f"--opt expects KEY=VALUE, got {item!r}")
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def _help(field: dataclasses.Field) -> str:
  meta = field.metadata
  default = field.default_factory() if callable(field.default_factory) else field.default
  parts = [meta["doc"]]
  if meta["choices"] is not None:
    parts.append(f"one of: {', '.join(meta['choices'])}")
  if default not in (None, {}):
    parts.append(f"default: {default}")
  elif "default" not in meta["doc"]:
    parts.append("default: none")
  return "; ".join(parts)


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="python -m train.train",
      description="Train a Flax NNX Qwen3 with a layeropt_jax optimizer; rerun the "
                  "same command to resume.")
  p.add_argument("--preset", help=f"a report's setup, applied before the other flags; "
                                  f"one of: {', '.join(PRESETS)}; default: none")
  for field in dataclasses.fields(TrainConfig):
    name = "--" + flag(field.name)
    if field.name == "opt":
      p.add_argument(name, action="append", metavar="KEY=VALUE", help=_help(field))
    elif field.type == "bool":
      p.add_argument(name, action=argparse.BooleanOptionalAction, default=None,
                     help=_help(field))
    else:
      kind = {"int": int, "float": float}.get(field.type.split(" |")[0], str)
      metavar = {int: "N", float: "X"}.get(kind, "NAME" if field.metadata["choices"] else "STR")
      p.add_argument(name, type=kind, default=None, help=_help(field), metavar=metavar)
  return p


_NUMBER = re.compile(r"-\d*\.?\d+(e[-+]?\d+)?", re.I)


def _attach_negative_numbers(argv: list[str]) -> list[str]:
  """`--lr -3e-3` as `--lr=-3e-3`: argparse takes a value that starts with
  "-" and is not a plain decimal (an exponent) for a flag."""
  out: list[str] = []
  for arg in argv:
    if out and out[-1].startswith("--") and "=" not in out[-1] and _NUMBER.fullmatch(arg):
      out[-1] = f"{out[-1]}={arg}"
    else:
      out.append(arg)
  return out


def from_args(argv: list[str] | None = None) -> TrainConfig:
  """Parses the command line; raises `ValueError` naming a bad flag or value."""
  argv = _attach_negative_numbers(sys.argv[1:] if argv is None else argv)
  args = vars(parser().parse_args(argv))
  preset = args.pop("preset")
  values: dict[str, Any] = {}
  if preset is not None:
    if preset not in PRESETS:
      raise ValueError(f"unknown --preset {preset!r}; valid: {', '.join(PRESETS)}")
    values.update(PRESETS[preset])
  opt = args.pop("opt")
  values.update({k: v for k, v in args.items() if v is not None})
  if opt:
    values["opt"] = {**values.get("opt", {}), **dict(map(_parse_opt, opt))}
  return TrainConfig(**values)
