"""The optimizer benchmark: every method tuned on one budget, seeds at its best LR.

  python -m train.benchmark --suite nano                  # runs (or resumes), then reports
  python -m train.benchmark --suite nano --report-only    # the report from the runs so far
  python -m train.benchmark --suite paper --data-dir FINEWEB --tokenizer tokenizer.json --dry-run

For every method: a learning-rate grid (`grid_points` points spaced by
`grid_factor`, seed 0), extended past an edge until the best point is inside;
then the other seeds at the best learning rate; then the ablations at their
parent method's best learning rate, every seed. The runs of one grid (or one
seed group) train together in one program (`train.train.train_sweep`).

Every run is cached in `<runs-dir>/<suite>/<hash>` (its settings and
`metrics.jsonl`, small enough to commit), the hash of everything in its
configuration that changes its numbers, so an interrupted suite continues
where it stopped and a finished run is never trained twice. The checkpoints
of the groups in training live in `<sweeps-dir>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import shlex
import sys
from typing import Any

import tqdm

from layeropt_jax import LADM_SCALES, MALAO_SCALES, UNIT_SCALES
from train import benchmark_report, metrics
from train.config import OPERATIONAL_FIELDS, TrainConfig
from train.train import train_sweep

# Fields that decide only where a run executes, not what it computes.
_PLACEMENT_FIELDS = OPERATIONAL_FIELDS - {"eval_every", "log_every"}


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row of the benchmark: an optimizer with keyword overrides.

  A method has `center_lr`, the middle of its grid; an ablation has `parent`,
  the method whose best learning rate it runs at.
  """
  name: str
  optimizer: str
  opt: dict[str, Any] = dataclasses.field(default_factory=dict)
  center_lr: float | None = None
  parent: str | None = None
  description: str = ""


@dataclasses.dataclass(frozen=True)
class Suite:
  """A model, data and token budget, the methods and ablations to run on it."""
  name: str
  train: dict[str, Any]  # TrainConfig fields shared by every run
  methods: tuple[Variant, ...]
  ablations: tuple[Variant, ...] = ()
  grid_points: int = 5
  grid_factor: float = 2.0
  seeds: int = 3
  max_extensions: int = 4
  description: str = ""
  scale_note: str = ""  # how the scale differs from the reports', what that allows

  @property
  def planned_runs(self) -> int:
    """Runs without grid extensions."""
    return (len(self.methods) * (self.grid_points + self.seeds - 1)
            + len(self.ablations) * self.seeds)

  def grid(self, center: float) -> list[float]:
    half = (self.grid_points - 1) / 2
    return [center * self.grid_factor ** (i - half) for i in range(self.grid_points)]

  def config(self, variant: Variant, lr: float, seed: int, runs_dir: pathlib.Path,
             **placement: Any) -> TrainConfig:
    config = TrainConfig(workdir="", optimizer=variant.optimizer, opt=dict(variant.opt),
                         lr=lr, seed=seed, progress=False, **self.train, **placement)
    return dataclasses.replace(config, workdir=str(runs_dir / self.name / run_hash(config)))


def run_hash(config: TrainConfig) -> str:
  """A stable hash of what the run computes."""
  fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _PLACEMENT_FIELDS}
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def reproduce_command(config: TrainConfig) -> str:
  """The `python -m train.train` command that trains this one run alone."""
  defaults = TrainConfig(workdir=config.workdir)
  args = ["python", "-m", "train.train", "--workdir", config.workdir]
  for field in dataclasses.fields(TrainConfig):
    value = getattr(config, field.name)
    if field.name in _PLACEMENT_FIELDS or value == getattr(defaults, field.name):
      continue
    if field.name == "opt":
      for key, v in value.items():
        args += ["--opt", f"{key}={v!r}"]
    else:
      args += ["--" + field.name.replace("_", "-"), str(value)]
  return shlex.join(args)


def finished(config: TrainConfig) -> list[dict[str, Any]] | None:
  """The run's records if it has finished, else None."""
  records = metrics.MetricsLog(pathlib.Path(config.workdir) / "metrics.jsonl").records()
  return records if records and records[-1].get("event") == "done" else None


def final_loss(config: TrainConfig) -> float:
  return finished(config)[-1]["val_loss"]


def lowest(losses: dict[float, float]) -> float:
  """The learning rate of the lowest of `losses` (lr -> final loss); a
  diverged run (NaN) counts as the worst."""
  return min(losses, key=lambda lr: (losses[lr] != losses[lr], losses[lr]))


def next_grid_lr(losses: dict[float, float], factor: float) -> float | None:
  """The learning rate to add when the best of `losses` (lr -> final loss) is
  at an edge of the grid, else None."""
  ordered = sorted(losses)
  best = lowest(losses)
  if best == ordered[0]:
    return best / factor
  if best == ordered[-1]:
    return best * factor
  return None


class Runner:
  """Trains a suite's runs in groups, skipping finished ones, with one
  progress bar (and ETA) over the whole suite."""

  def __init__(self, suite: Suite, runs_dir: pathlib.Path, sweeps_dir: pathlib.Path,
               placement: dict[str, Any]):
    self.suite, self.runs_dir, self.placement = suite, runs_dir, placement
    self.sweeps_dir = sweeps_dir
    # smoothing=0: the ETA is the average rate since start over the steps
    # trained by this invocation only (see `count_earlier`).
    self.bar = tqdm.tqdm(total=suite.planned_runs * suite.train["steps"], unit="step",
                         desc=f"suite {suite.name}", smoothing=0)

  def count_earlier(self, steps: int) -> None:
    """Advances the bar by steps an earlier invocation trained, leaving them
    out of the rate: a resumed suite's ETA is not fooled by its cache."""
    self.bar.initial += steps
    self.bar.update(steps)

  def config(self, variant: Variant, lr: float, seed: int) -> TrainConfig:
    return self.suite.config(variant, lr, seed, self.runs_dir, **self.placement)

  def train(self, configs: list[TrainConfig], extra: bool = False) -> None:
    """Trains the unfinished runs of `configs` together."""
    steps = self.suite.train["steps"]
    if extra:
      self.bar.total += len(configs) * steps
    todo = [c for c in configs if finished(c) is None]
    self.count_earlier((len(configs) - len(todo)) * steps)
    if not todo:
      return
    reached = None

    def advance(step: int) -> None:
      nonlocal reached
      if reached is None:  # the step the sweep starts from: 0, or a restored one
        self.count_earlier(step * len(todo))
      else:
        self.bar.update((step - reached) * len(todo))
      reached = step

    group = hashlib.sha256("".join(sorted(c.workdir for c in todo)).encode()).hexdigest()
    train_sweep(todo, self.sweeps_dir / self.suite.name / group[:16], on_step=advance)

  def best_lr(self, method: Variant) -> float:
    """Runs the grid of `method` (seed 0), extending it past an edge."""
    lrs = self.suite.grid(method.center_lr)
    self.train([self.config(method, lr, 0) for lr in lrs])
    for _ in range(self.suite.max_extensions):
      losses = {lr: final_loss(self.config(method, lr, 0)) for lr in lrs}
      lr = next_grid_lr(losses, self.suite.grid_factor)
      if lr is None:
        break
      lrs.append(lr)
      self.train([self.config(method, lr, 0)], extra=True)
    return lowest({lr: final_loss(self.config(method, lr, 0)) for lr in lrs})


def run_suite(suite: Suite, runs_dir: pathlib.Path, sweeps_dir: pathlib.Path,
              placement: dict[str, Any]) -> None:
  """Each method's grid then its seeds at the best LR; then the ablations."""
  runner = Runner(suite, runs_dir, sweeps_dir, placement)
  best = {}
  for method in suite.methods:
    best[method.name] = runner.best_lr(method)
    runner.train([runner.config(method, best[method.name], seed)
                  for seed in range(1, suite.seeds)])
  for ablation in suite.ablations:
    runner.train([runner.config(ablation, best[ablation.parent], seed)
                  for seed in range(suite.seeds)])
  runner.bar.close()


def collect(suite: Suite, runs_dir: pathlib.Path) -> dict[str, Any]:
  """Every finished run of the suite found in `runs_dir`, by variant: the
  grid (seed 0, every learning rate tried) and the seeds at the best LR."""
  variants = {}
  for variant in suite.methods + suite.ablations:
    runs = []
    root = runs_dir / suite.name
    for run_json in sorted(root.glob("*/run.json")):
      saved = json.loads(run_json.read_text())
      if saved["optimizer"] != variant.optimizer or saved["opt"] != variant.opt:
        continue
      config = suite.config(variant, saved["lr"], saved["seed"], runs_dir)
      records = finished(config)
      if config.workdir != str(run_json.parent) or records is None:
        continue
      runs.append({"lr": config.lr, "seed": config.seed, "hash": run_hash(config),
                   "command": reproduce_command(config), **benchmark_report.summarize(records)})
    variants[variant.name] = {"optimizer": variant.optimizer, "opt": variant.opt,
                              "parent": variant.parent, "description": variant.description,
                              "runs": sorted(runs, key=lambda r: (r["seed"], r["lr"]))}
  return variants


# AdamW first (every comparison needs it), then the reports' methods.
_ADAM_LIKE = ("adamw", "ladm", "lamvs", "aovs", "lamo", "malao", "layer_adam",
              "stable_adamw", "muon")
# Grid centres: AdamW-scale methods share one; sign-like updates (Lion, and
# Sophia's clipped ratio) take smaller steps, LAMB's trust ratio larger ones.
_NANO_CENTERS = {**{name: 2e-3 for name in _ADAM_LIKE},
                 "sophia": 5e-4, "lion": 2.5e-4, "lamb": 4e-3, "ademamix": 1e-3}
# The reports' learning rates (METHODS.md) where a report gives one.
_PAPER_CENTERS = {**{name: 8e-4 for name in _ADAM_LIKE},
                  "lamo": 1e-4, "malao": 3e-4, "ademamix": 4e-4, "lamb": 2e-3,
                  "lion": 1e-4, "sophia": 2e-4}


def _methods(centers: dict[str, float]) -> tuple[Variant, ...]:
  return tuple(Variant(name, name, center_lr=lr) for name, lr in centers.items())


ABLATIONS = (
    Variant("ladm without the slow buffer", "layer_adam",
            opt={"b1": 0.95, "scales": dict(LADM_SCALES)}, parent="ladm",
            description="alpha = 1: the fast moment alone, i.e. Adam with b1 0.95 "
                        "and LADM's multipliers"),
    Variant("ladm without the multipliers", "ladm", opt={"scales": dict(UNIT_SCALES)},
            parent="ladm", description="every LR multiplier 1.0"),
    Variant("lamvs without the decaying epsilon", "layer_adam", parent="lamvs",
            description="Adam's fixed epsilon outside the square root, LAMVS's "
                        "multipliers (METHODS.md's layer_adam)"),
    Variant("aovs without orthogonalisation", "aovs", opt={"orthogonalize": False},
            parent="aovs", description="the variance-stabilised Adam direction alone"),
    Variant("malao without clipping", "layer_adam", opt={"scales": dict(MALAO_SCALES)},
            parent="malao", description="Adam with MALAO's multipliers, no per-tensor clip"),
)

SUITES = {
    "nano": Suite(
        "nano",
        train=dict(config="nano", data="python_stdlib", batch_size=16, seq_len=128,
                   steps=2000, warmup=200, schedule="cosine", final_lr_fraction=0.1,
                   eval_every=200, eval_batches=32, log_every=50, checkpoint_every=500),
        methods=_methods(_NANO_CENTERS), ablations=ABLATIONS,
        description="nano Qwen3 (1.05M parameters, vocabulary 2048) on the Python "
                    "standard library corpus, 2000 steps of 16 x 128 tokens (4.1M "
                    "tokens, 1.09 passes over the 3.77M-token train split), cosine "
                    "schedule with 200 warm-up steps to 10% of the peak, validation on "
                    "512 held-out windows (65k tokens) every 200 steps",
        scale_note=(
            "The reports trained a 134M-parameter Qwen3 on FineWeb (web text, Qwen3's "
            "151,936-token vocabulary) for 400 to 100k steps of 512 sequences; this suite "
            "trains a 1.05M-parameter Qwen3 on Python source with a 2,048-token BPE for "
            "4.1M tokens, about 1/130 of the parameters and 1/50 to 1/10,000 of the "
            "tokens. It can show whether a method's advantage or failure is a property "
            "of its update rule when every method is tuned and seeds are controlled: a "
            "claimed large effect (LADM's 11%, MALAO's loss of 11.7, LAMO's 5.86) that is "
            "absent here is not explained by the rule alone. It cannot show the ranking "
            "at 134M parameters and billions of tokens, where optimizer differences are "
            "known to shrink or reorder with scale and budget (Wen et al., 2025, "
            "\"Fantastic Pretraining Optimizers\"); absolute losses are not comparable "
            "with the reports' (other data, tokenizer and model); and step-count "
            "hyperparameters (LADM's 500-step alpha warm-up, LAMVS's decaying epsilon) "
            "act over a 2000-step run, not a 10k-step one.")),
    "small": Suite(
        "small",
        train=dict(config="small", data="python_stdlib", batch_size=32, seq_len=256,
                   steps=4000, warmup=400, schedule="cosine", final_lr_fraction=0.1,
                   eval_every=500, eval_batches=16, log_every=50, checkpoint_every=500),
        methods=_methods(_NANO_CENTERS), ablations=ABLATIONS,
        description="small Qwen3 (about 19M parameters) on the Python standard library, "
                    "4000 steps of 32 x 256 tokens (33M tokens)"),
    "paper": Suite(
        "paper",
        train=dict(config="qwen3-134m", data="fineweb", batch_size=512, seq_len=1024,
                   steps=10_000, warmup=800, schedule="cosine", final_lr_fraction=0.1,
                   eval_every=500, eval_batches=8, log_every=50, checkpoint_every=500),
        methods=_methods(_PAPER_CENTERS), ablations=ABLATIONS,
        description="the reports' setup: Qwen3 134M on FineWeb, batch 512 x 1024 "
                    "tokens, 10k steps (5.2B tokens), warm-up 800, grids centred on "
                    "the reports' learning rates"),
}


def dry_run(suite: Suite, runs_dir: pathlib.Path, placement: dict[str, Any],
            batch_size: int, seq_len: int) -> None:
  """Builds every run configuration of the suite's grids (validating each
  optimizer), then trains one step of its first method on a tiny batch."""
  for method in suite.methods:
    for lr in suite.grid(method.center_lr):
      suite.config(method, lr, 0, runs_dir, **placement)
  for ablation in suite.ablations:
    suite.config(ablation, 1e-3, 0, runs_dir, **placement)
  tiny = dataclasses.replace(
      suite, name=f"{suite.name}-dry-run",
      train={**suite.train, "batch_size": batch_size, "seq_len": seq_len, "steps": 1,
             "warmup": 0, "eval_every": 0, "eval_batches": 1})
  config = tiny.config(suite.methods[0], suite.methods[0].center_lr, 0, runs_dir, **placement)
  train_sweep([config], pathlib.Path(config.workdir) / "sweep")
  print(f"dry run of suite {suite.name}: {len(suite.methods)} methods and "
        f"{len(suite.ablations)} ablations configured; one step of "
        f"{suite.methods[0].name} trained in {config.workdir}")


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m train.benchmark",
                              description=__doc__.splitlines()[0])
  p.add_argument("--suite", required=True, choices=sorted(SUITES))
  p.add_argument("--runs-dir", default="results/runs")
  p.add_argument("--sweeps-dir", default="runs/benchmark")
  p.add_argument("--out", default="results")
  p.add_argument("--report-only", action="store_true")
  p.add_argument("--dry-run", action="store_true")
  p.add_argument("--dry-run-batch-size", type=int, default=8)
  p.add_argument("--dry-run-seq-len", type=int, default=32)
  p.add_argument("--cache-dir", default=TrainConfig.cache_dir)
  p.add_argument("--data-dir")
  p.add_argument("--tokenizer")
  args = p.parse_args(argv)
  suite, runs_dir = SUITES[args.suite], pathlib.Path(args.runs_dir)
  placement = {"cache_dir": args.cache_dir, "data_dir": args.data_dir}
  suite = dataclasses.replace(suite, train={
      **suite.train, **({"tokenizer": args.tokenizer} if args.tokenizer else {})})
  try:
    if args.dry_run:
      dry_run(suite, pathlib.Path(args.sweeps_dir), placement, args.dry_run_batch_size,
              args.dry_run_seq_len)
      return
    if not args.report_only:
      run_suite(suite, runs_dir, pathlib.Path(args.sweeps_dir), placement)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  # The report is the suite's, however it was (re)generated.
  benchmark_report.write(suite, collect(suite, runs_dir), pathlib.Path(args.out),
                         ["--suite", args.suite])


if __name__ == "__main__":
  main()
