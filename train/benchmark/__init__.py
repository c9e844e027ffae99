"""The optimizer benchmark: every method tuned on one budget, seeds at its
chosen learning rate, and the reports' claims judged on them.

- `methods`: what the benchmark knows of each method, one row each;
  `suites`: what runs (model, data, budget, methods, ablations);
- `plan`: which runs a suite needs next, from the runs finished so far (the
  learning-rate choice among them); `runner` trains them (alone or as one of
  N workers); `runs`: the cache of finished runs, read back;
- `stats` (pure functions of numbers), `analysis` (rows, verdicts, data
  scaling), `render` (Markdown), `plots`, and `results`, which writes
  `results/<suite>.{json,md}` and the plots.

`python -m train.benchmark` is the command.
"""
