"""The optimizer benchmark: every method tuned on one budget, seeds at its chosen LR.

  python -m train.benchmark --suite nano                  # runs (or resumes), then reports
  python -m train.benchmark --suite nano --report-only    # the results of the runs so far
  python -m train.benchmark --suite nano --worker 0/4     # one of 4 machines sharing results/runs
  python -m train.benchmark --suite nano --max-group-runs 5  # groups as parts of <= 5 runs
  python -m train.benchmark --suite paper --data-dir FINEWEB --tokenizer tokenizer.json --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

from train import cli
from train.benchmark import results, runner, runs
from train.benchmark.suites import SUITES
from train.data import default_cache_dir
from train.stopping import Interrupted


def _worker(text: str) -> tuple[int, int]:
  """`I/N` -> (I, N), 0 <= I < N."""
  try:
    worker, workers = (int(x) for x in text.split("/"))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None
  if not 0 <= worker < workers:
    raise argparse.ArgumentTypeError(f"worker I of I/N must be in [0, N), got {text!r}")
  return worker, workers


def _at_least_one(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


COMMITTED = " and ".join(name for name, suite in SUITES.items() if suite.committed)


def _parser():
  p = cli.parser("train.benchmark", __doc__)
  p.add_argument("--suite", required=True, choices=sorted(SUITES),
                 help="the suite to run (train/benchmark/suites.py; smoke checks the "
                      "machinery in minutes)")
  p.add_argument("--runs-dir",
                 help="the cache of finished runs, <runs-dir>/<suite>/<hash> (default: "
                      f"results/runs for a suite whose results are committed, {COMMITTED}; else "
                      "runs/benchmark/runs)")
  p.add_argument("--sweeps-dir", default="runs/benchmark",
                 help="checkpoints of the groups of runs in training")
  p.add_argument("--out", help="where the results are written (default: results for a "
                                f"suite whose results are committed, {COMMITTED}; else "
                                "runs/benchmark/results)")
  p.add_argument("--worker", default="0/1", type=_worker, metavar="I/N",
                 help="train worker I's share of the suite's runs, N workers sharing "
                      "--runs-dir (a SLURM array, one job per machine), waiting for "
                      "the others' runs where a phase needs them")
  p.add_argument("--max-group-runs", type=_at_least_one, metavar="N",
                 help="train at most N runs in one program: a larger group trains as "
                      "parts, shared by the workers and each kept when it finishes (for "
                      "machines that stop before a whole group would finish)")
  p.add_argument("--poll-seconds", type=float, default=30.0,
                 help="how often a waiting worker looks for the other workers' runs")
  p.add_argument("--report-only", action="store_true",
                 help="write the results of the finished runs, train nothing")
  p.add_argument("--dry-run", action="store_true",
                 help="configure every run, train one step of the first method")
  p.add_argument("--dry-run-batch-size", type=int, default=8,
                 help="with --dry-run: the batch of the one step trained")
  p.add_argument("--dry-run-seq-len", type=int, default=32,
                 help="with --dry-run: the sequence length of that step")
  p.add_argument("--cache-dir", default=default_cache_dir(),
                 help="the data cache (--cache-dir of python -m train.train)")
  p.add_argument("--data-dir", help="FineWeb parquet shards, for the paper suite")
  p.add_argument("--tokenizer", help="a tokenizer.json instead of a trained BPE")
  return p


def main(argv: list[str] | None = None) -> None:
  args = _parser().parse_args(argv)
  suite = SUITES[args.suite]
  home = pathlib.Path("results" if suite.committed else "runs/benchmark")
  runs_dir = pathlib.Path(args.runs_dir or home / "runs")
  out = pathlib.Path(args.out or home / ("" if suite.committed else "results"))
  placement = {"cache_dir": args.cache_dir, "data_dir": args.data_dir}
  suite = dataclasses.replace(suite, train={
      **suite.train, **({"tokenizer": args.tokenizer} if args.tokenizer else {})})
  try:
    if args.dry_run:
      runner.dry_run(suite, pathlib.Path(args.sweeps_dir), placement,
                     args.dry_run_batch_size, args.dry_run_seq_len)
      return
    if not args.report_only:
      runner.run_suite(suite, runs_dir, pathlib.Path(args.sweeps_dir), placement,
                       *args.worker, poll_seconds=args.poll_seconds,
                       max_group_runs=args.max_group_runs)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:
    print(f"interrupted: rerun the same command to resume; finished runs are kept, "
          f"the group in training resumes from step {e.step}", file=sys.stderr)
    sys.exit(130)
  # The results are the suite's, however they were (re)generated.
  results.write(suite, runs.collect(suite, runs_dir), runs_dir, out,
                ["--suite", args.suite], placement)


if __name__ == "__main__":
  main()
