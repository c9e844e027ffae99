"""The optimizer benchmark: every method tuned on one budget, seeds at its best LR.

  python -m train.benchmark --suite nano                  # runs (or resumes), then reports
  python -m train.benchmark --suite nano --report-only    # the report from the runs so far
  python -m train.benchmark --suite paper --data-dir FINEWEB --tokenizer tokenizer.json --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

from train.benchmark import report, runner
from train.benchmark.suites import SUITES
from train.data import default_cache_dir


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m train.benchmark",
                              description=__doc__.splitlines()[0])
  p.add_argument("--suite", required=True, choices=sorted(SUITES))
  p.add_argument("--runs-dir", default="results/runs",
                 help="the cache of finished runs, <runs-dir>/<suite>/<hash> (committed)")
  p.add_argument("--sweeps-dir", default="runs/benchmark",
                 help="checkpoints of the groups of runs in training")
  p.add_argument("--out", default="results", help="where the report is written")
  p.add_argument("--report-only", action="store_true",
                 help="report the finished runs, train nothing")
  p.add_argument("--dry-run", action="store_true",
                 help="configure every run, train one step of the first method")
  p.add_argument("--dry-run-batch-size", type=int, default=8)
  p.add_argument("--dry-run-seq-len", type=int, default=32)
  p.add_argument("--cache-dir", default=default_cache_dir(),
                 help="the data cache (--cache-dir of python -m train.train)")
  p.add_argument("--data-dir", help="FineWeb parquet shards, for the paper suite")
  p.add_argument("--tokenizer", help="a tokenizer.json instead of a trained BPE")
  args = p.parse_args(argv)
  suite, runs_dir = SUITES[args.suite], pathlib.Path(args.runs_dir)
  placement = {"cache_dir": args.cache_dir, "data_dir": args.data_dir}
  suite = dataclasses.replace(suite, train={
      **suite.train, **({"tokenizer": args.tokenizer} if args.tokenizer else {})})
  try:
    if args.dry_run:
      runner.dry_run(suite, pathlib.Path(args.sweeps_dir), placement,
                     args.dry_run_batch_size, args.dry_run_seq_len)
      return
    if not args.report_only:
      runner.run_suite(suite, runs_dir, pathlib.Path(args.sweeps_dir), placement)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  # The report is the suite's, however it was (re)generated.
  report.write(suite, report.collect(suite, runs_dir), pathlib.Path(args.out),
               ["--suite", args.suite])


if __name__ == "__main__":
  main()
