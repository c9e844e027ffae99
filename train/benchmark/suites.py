"""The suites: a model, data and token budget, the methods and ablations on it.

Every run of a suite is cached under `<runs-dir>/<suite>/<hash>`, the hash of
everything in its configuration but where it was placed, so a finished run is
never trained twice and a moved cache still finds its runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

from layeropt_jax import LADM_SCALES, LAMVS_SCALES, MALAO_SCALES, UNIT_SCALES
from layeropt_jax.search import MULTIPLIER_GRID, Grid
from train.benchmark.methods import METHODS, Method
from train.benchmark.previous import NANO_V1, NANO_V2, Previous
from train.benchmark.tuning import SQRT2_STEPS, Target, Tuning
from train.config import REPORTS_SETUP, PLACEMENT, TrainConfig, fields_of
from train.corpora import BUILDERS


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row of the benchmark: an optimizer with keyword overrides.

  A method has `center_lr`, the middle of its grid; an ablation has `parent`,
  the method whose chosen learning rate it runs at.
  """
  name: str
  optimizer: str
  opt: dict[str, Any] = dataclasses.field(default_factory=dict)
  center_lr: float | None = None
  parent: str | None = None
  description: str = ""


# Fields added after runs were cached: at their default they are left out of
# the hash, so that the runs cached before keep theirs.
_HASHED_WHEN_SET = {"clip_norm": None}


def run_hash(config: TrainConfig) -> str:
  """A stable hash of what the run computes and records: its configuration
  and its dataset's version (a new split or corpus is a new run)."""
  placement = fields_of(PLACEMENT)
  fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in placement
            and not (k in _HASHED_WHEN_SET and v == _HASHED_WHEN_SET[k])}
  fields["data_version"] = str(BUILDERS[config.data].VERSION)
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# The method every other is compared with, and whose data scaling is fitted.
BASELINE = "adamw"


@dataclasses.dataclass(frozen=True)
class Suite:
  """A model, data and token budget, the methods and ablations to run on it."""
  name: str
  train: dict[str, Any]  # TrainConfig fields shared by every run
  methods: tuple[Variant, ...]
  ablations: tuple[Variant, ...] = ()
  grid_points: int = 5  # learning rates of a method's first grid (seed 0), odd
  grid_factor: float = 2.0  # the ratio of neighbouring grid learning rates
  max_extensions: int = 4  # points a method's grid, and its finer grid, may add past an edge
  lr_choice_points: int = 2  # best grid points whose neighbourhood the finer grid covers
  # Steps of the finer grid per `grid_factor` (2: sqrt(2) spacing around the
  # best points of a 2x grid; 1: their grid neighbours).
  lr_refine: int = 2
  lr_choice_seeds: int = 3  # seeds of every finer-grid point; their mean loss chooses
  seeds: int = 8  # seeds at each method's chosen learning rate and of each ablation
  # The baseline's token budgets, as multiples of `train["steps"]`, whose final
  # losses fit L(D) = a * D^-b + c; empty: no fit.
  data_multiples: tuple[float, ...] = ()
  data_multiple_seeds: int = 3  # seeds at each of `data_multiples`
  # The smallest of `data_multiples` the fit uses. A budget too short for the
  # loss to leave its early transient (it starts at ln V, while the power law
  # diverges as D -> 0) lies off the curve: it is trained and shown, not fitted.
  data_fit_from: float = 0.0
  description: str = ""
  scale_note: str = ""  # how the scale differs from the reports', what that allows
  # A superseded protocol of this suite, whose verdicts its results' "What
  # changed" table shows beside their own.
  previous: Previous | None = None
  # Whether its runs and results are committed under results/ (where the
  # command writes them by default); other suites write under runs/benchmark/.
  committed: bool = False
  # Tuning beyond the learning rate, judged on fresh seeds; None: the
  # learning-rate grids above, judged on their seeds.
  tuning: Tuning | None = None

  def __post_init__(self):
    if self.tuning is not None and self.data_multiples:
      raise ValueError(f"suite {self.name}: a tuned suite fits no data scaling "
                       f"(data_multiples={self.data_multiples})")
    if self.grid_points % 2 == 0 or self.lr_refine < 1:
      raise ValueError(f"suite {self.name}: grid_points={self.grid_points} must be odd "
                       f"and lr_refine={self.lr_refine} at least 1")
    for multiple in self.data_multiples:
      for field in ("steps", "warmup", "eval_every"):
        if self.train[field] * multiple != round(self.train[field] * multiple):
          raise ValueError(f"suite {self.name}: data multiple {multiple:g} of "
                           f"{field}={self.train[field]} is not a whole number of steps")
    fitted = self.fitted_multiples()
    if self.data_multiples and len(fitted) < 3:
      raise ValueError(f"suite {self.name}: data_fit_from={self.data_fit_from:g} leaves "
                       f"{len(fitted)} of data_multiples {self.data_multiples} to fit, "
                       "and L(D) = a * D^-b + c needs at least 3")

  def fitted_multiples(self) -> tuple[float, ...]:
    """The data multiples the baseline's scaling fit uses."""
    return tuple(m for m in self.data_multiples if m >= self.data_fit_from)

  def lr_at(self, center: float, exponent: int) -> float:
    """The learning rate `exponent` finer-grid steps from `center`."""
    return center * self.grid_factor ** (exponent / self.lr_refine)

  def grid_exponents(self) -> list[int]:
    """The first grid's points, in finer-grid steps from the centre."""
    half = self.grid_points // 2
    return [self.lr_refine * i for i in range(-half, half + 1)]

  def grid(self, center: float) -> list[float]:
    """The first grid's learning rates."""
    return [self.lr_at(center, k) for k in self.grid_exponents()]

  def row(self, name: str) -> Variant:
    """The method or ablation `name`."""
    return next(v for v in (*self.methods, *self.ablations) if v.name == name)

  def targets(self) -> tuple[Target, ...]:
    """A tuned suite's targets: every row, then each multiplier search and
    table at its row's point, then the baseline's budgets."""
    tuning = self.tuning
    targets = [Target(v, tuning.coordinates_of(v), tuning.confirmation_seeds)
               for v in (*self.methods, *self.ablations)]
    for name, optimizer in tuning.multipliers.items():
      row = self.row(name)
      targets.append(Target(
          Variant(f"{name} + tuned multipliers", optimizer, dict(row.opt), parent=name,
                  description=f"{name} at its chosen point, with the per-component "
                              "multipliers a search found"),
          tuple((label, MULTIPLIER_GRID) for label in tuning.multiplier_labels),
          tuning.confirmation_seeds, after=name, passes=2))
      for table, scales in tuning.tables.get(name, {}).items():
        targets.append(Target(
            Variant(f"{name} + {table} multipliers", optimizer,
                    {**row.opt, "scales": dict(scales)}, parent=name,
                    description=f"{name} at its chosen point, with {table}'s table"),
            (), tuning.confirmation_seeds, after=name))
    for multiple in tuning.data_multiples:
      targets.append(Target(
          Variant(f"{BASELINE} at {multiple:g}x", BASELINE, parent=BASELINE,
                  description=f"{BASELINE} on {multiple:g}x the budget, its learning rate "
                              "searched around the 1x choice"),
          (("lr", SQRT2_STEPS),), tuning.scaling_seeds, after=BASELINE,
          data_multiple=multiple))
    return tuple(targets)

  def config(self, variant: Variant, lr: float, seed: int, runs_dir: pathlib.Path,
             data_multiple: float = 1.0, opt: dict[str, Any] | None = None,
             **placement: Any) -> TrainConfig:
    """The run of `variant` at `lr` and `seed` (its `opt` updated by `opt`),
    in its cache directory; `data_multiple` scales the steps, the warm-up and
    the evaluation period (the schedule's shape is kept)."""
    train = dict(self.train)
    if data_multiple != 1.0:
      for field in ("steps", "warmup", "eval_every"):
        train[field] = round(train[field] * data_multiple)
    config = TrainConfig(optimizer=variant.optimizer, opt={**variant.opt, **(opt or {})},
                         lr=lr, seed=seed, progress=False, **train, **placement)
    return dataclasses.replace(config, workdir=str(runs_dir / self.name / run_hash(config)))


def variants_of(methods: tuple[Method, ...] = METHODS,
                reports_setup: bool = False) -> tuple[Variant, ...]:
  """The suite rows of `methods`, their grids centred on `center_lr`, or on
  `reports_lr` in the reports' setup."""
  return tuple(Variant(m.name, m.name, center_lr=m.reports_lr if reports_setup else m.center_lr)
               for m in methods)


ABLATIONS = (
    Variant("ladm without the slow buffer", "layer_adam",
            opt={"b1": 0.95, "scales": dict(LADM_SCALES)}, parent="ladm",
            description="alpha = 1: the fast moment alone, i.e. Adam with b1 0.95 "
                        "and LADM's multipliers"),
    Variant("ladm without the multipliers", "ladm", opt={"scales": dict(UNIT_SCALES)},
            parent="ladm", description="every LR multiplier 1.0"),
    Variant("lamvs without the decaying epsilon", "layer_adam", parent="lamvs",
            description="Adam's fixed epsilon outside the square root, LAMVS's "
                        "multipliers (the layer_adam baseline)"),
    Variant("aovs without orthogonalisation", "aovs", opt={"orthogonalize": False},
            parent="aovs", description="the variance-stabilised Adam direction alone"),
    Variant("malao without clipping", "layer_adam", opt={"scales": dict(MALAO_SCALES)},
            parent="malao", description="Adam with MALAO's multipliers, no per-tensor clip"),
)

NANO_TRAIN = dict(config="nano", data="python_stdlib", batch_size=16, seq_len=128,
                  steps=2000, warmup=200, schedule="cosine", final_lr_fraction=0.1,
                  eval_every=200, eval_batches=32, log_every=50, checkpoint_every=500)

# What the nano model's suites can and cannot show.
NANO_SCALE_NOTE = (
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
    "act over a 2000-step run, not a 10k-step one.")

SUITES = {
    "nano": Suite(
        "nano",
        train=NANO_TRAIN,
        methods=variants_of(), ablations=ABLATIONS, data_multiples=(0.25, 0.5, 1.0, 2.0, 4.0),
        # 0.25x is 500 steps, 50 of them warm-up: still in the early transient.
        data_fit_from=0.5, previous=NANO_V1, committed=True,
        description="nano Qwen3 (1.05M parameters, vocabulary 2048) on the Python "
                    "standard library corpus, 2000 steps of 16 x 128 tokens (4.1M "
                    "tokens, 1.46 passes over the 2.81M-token train split), cosine "
                    "schedule with 200 warm-up steps to 10% of the peak, validation "
                    "every 200 steps on 512 windows (66k tokens) spread evenly over the "
                    "136-file validation split",
        scale_note=NANO_SCALE_NOTE + (
            " AdamW's 2x and 4x budgets pass over the train split 2.9 and 5.8 times: "
            "repeated tokens teach less than fresh ones, so the data multiples are in "
            "AdamW's tokens on this corpus and overstate what fresh data would need.")),
    "nano_tuned": Suite(
        "nano_tuned",
        train=dict(NANO_TRAIN, data="python_packages", clip_norm=1.0),
        # Each row starts from the second protocol's choice (results/nano.md).
        methods=tuple(Variant(name, name, center_lr=lr) for name, lr in NANO_V2.lrs.items()),
        ablations=ABLATIONS,
        tuning=Tuning(
            extra={"ladm": (("b2", Grid(2.0, complement=True)),),
                   "lamvs": (("b2", Grid(2.0, complement=True)),)},
            # AdamW's, and AOVS's (the second protocol's best), multipliers
            # tuned; the nano model ties its head to the embedding, so five
            # labels have parameters.
            multipliers={"adamw": "layer_adam", "aovs": "aovs"},
            multiplier_labels=("embedding", "attn_qkv", "attn_out", "mlp", "norm"),
            tables={"adamw": {"LAMVS's": dict(LAMVS_SCALES), "LADM's": dict(LADM_SCALES),
                              "MALAO's": dict(MALAO_SCALES)},
                    "aovs": {"uniform": dict(UNIT_SCALES)}},
            # 8x is 32.8M tokens, within the 47.8M of the train split.
            data_multiples=(0.25, 0.5, 2.0, 4.0, 8.0), scaling_seeds=tuple(range(100, 105))),
        previous=NANO_V2, committed=True,
        description="nano Qwen3 (1.05M parameters, vocabulary 2048) on the python_packages "
                    "corpus (read at most once by every run), 2000 steps of 16 x 128 "
                    "tokens, cosine schedule with 200 warm-up steps to 10% of the peak, "
                    "gradients clipped to global norm 1.0 for every method; every row "
                    "tuned by coordinate descent (learning rate, weight decay, learning "
                    "rate again; LADM's and LAMVS's b2 too) at seeds 0-2 and judged at "
                    "seeds 100-107 alone; then AdamW's and AOVS's per-component "
                    "multipliers tuned at their chosen points, and AdamW's data scaling "
                    "from 0.25x to 8x the budget, its learning rate tuned at each",
        scale_note=NANO_SCALE_NOTE),
    "accelerator": Suite(
        "accelerator",
        train=dict(config="small", data="python_stdlib", batch_size=32, seq_len=256,
                   steps=800, warmup=80, schedule="cosine", final_lr_fraction=0.1,
                   dtype="bfloat16", eval_every=100, eval_batches=16, log_every=50,
                   checkpoint_every=400),
        # Centred so that each 3-point 2x grid spans both nano protocols' choices
        # (first: AdamW 8e-3, Muon 1.6e-2, AOVS 8e-3, LADM and LAMVS 4e-3; second:
        # 5.66e-3, 1.6e-2, 1.13e-2, 2.83e-3, 4e-3).
        methods=tuple(Variant(name, name, center_lr=lr) for name, lr in (
            ("adamw", 4e-3), ("muon", 1.6e-2), ("aovs", 8e-3), ("ladm", 4e-3),
            ("lamvs", 4e-3))),
        grid_points=3, max_extensions=0, lr_choice_points=1, lr_refine=1,
        lr_choice_seeds=1, seeds=1,
        description="small Qwen3 (19M parameters, vocabulary 8192) on the Python "
                    "standard library in bfloat16, 800 steps of 32 x 256 tokens (6.6M "
                    "tokens), AdamW, Muon, AOVS, LADM and LAMVS at 3 learning rates "
                    "each, one seed, the runs of a method vmapped together: a second "
                    "scale, sized to about 8 minutes on one H100/H200-class GPU (12 "
                    "PFLOP in all, 1.0 TFLOP per run-step, which at 5-10% of the GPU's "
                    "bfloat16 peak and a compilation per method takes 5 to 8 minutes)"),
    "small": Suite(
        "small",
        train=dict(config="small", data="python_stdlib", batch_size=32, seq_len=256,
                   steps=4000, warmup=400, schedule="cosine", final_lr_fraction=0.1,
                   eval_every=500, eval_batches=16, log_every=50, checkpoint_every=500),
        methods=variants_of(), ablations=ABLATIONS,
        description="small Qwen3 (about 19M parameters) on the Python standard library, "
                    "4000 steps of 32 x 256 tokens (33M tokens)"),
    "paper": Suite(
        "paper",
        train=dict(REPORTS_SETUP, final_lr_fraction=0.1, log_every=50),
        methods=variants_of(reports_setup=True), ablations=ABLATIONS,
        description="the reports' setup: Qwen3 134M on FineWeb, batch 512 x 1024 "
                    "tokens, 10k steps (5.2B tokens), warm-up 800, grids centred on "
                    "the reports' learning rates"),
    # A minute on CPU through every phase (grid, learning-rate choice, seeds, an
    # ablation, data budgets): a check of the machinery, and of a multi-worker
    # setup before a long suite.
    "smoke": Suite(
        "smoke",
        train=dict(config="nano", batch_size=8, seq_len=32, steps=12, warmup=2,
                   eval_every=6, eval_batches=2, log_every=3, checkpoint_every=6),
        methods=(Variant("adamw", "adamw", center_lr=1e-2),),
        ablations=(Variant("adamw without weight decay", "adamw",
                           opt={"weight_decay": 0.0}, parent="adamw",
                           description="AdamW's decoupled weight decay 0"),),
        grid_points=3, max_extensions=1, lr_choice_seeds=2, seeds=3,
        data_multiples=(0.5, 1.0, 2.0), data_multiple_seeds=2,
        description="a check of the machinery, not of any method: AdamW alone through "
                    "every phase (a 3-point grid, the learning-rate choice, 3 seeds, one "
                    "ablation, 0.5x to 2x data) on nano Qwen3, 12 steps of 8 x 32 tokens; "
                    "every claim reads \"not measured yet\""),
}
