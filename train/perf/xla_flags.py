"""The trainer's CPU step under sets of XLA flags, timed in turn.

  python -m train.perf.xla_flags --configs nano,small \
      --variant= --variant=--xla_cpu_experimental_ynn_fusion_type=

Each variant's step (AdamW, float32, one run, as `train.perf.trainer_step`
times it) runs in a process
of its own started with those `XLA_FLAGS` (XLA reads them when its backend
starts); every repetition times each variant in
turn, and the medians of the per-repetition time ratios to the first variant
are reported, since this machine is shared and noisy. A jax.profiler
breakdown of where a step's time goes, by XLA operation:
`python -m train.perf.xla_flags --profile nano --variant=`.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import statistics
import tempfile

from train import cli, provenance
from train.perf.trainer_step import JaxStep, StepProcess, add_step_flags, time_step


def profile(step, iters: int) -> dict[str, float]:
  """Milliseconds per step of each kind of XLA operation (numbered
  instances summed), over `iters` calls, from a jax.profiler trace."""
  import jax
  step.time(1)
  with tempfile.TemporaryDirectory() as out:
    jax.profiler.start_trace(out, create_perfetto_trace=True)
    step.time(iters)
    jax.profiler.stop_trace()
    trace = json.load(gzip.open(next(pathlib.Path(out).rglob("*.trace.json.gz"))))
  runtime = re.compile(r"^\$|ThunkExecutor|SlinkyThreadPool|^Thunk|PjitFunction")
  kinds = collections.Counter()
  for event in trace["traceEvents"]:
    if event.get("ph") == "X" and not runtime.search(event["name"]):
      kinds[re.sub(r"\.\d+$", "", event["name"])] += event["dur"] / 1e3
  steps = iters * step.steps_per_call
  return {kind: ms / steps for kind, ms in kinds.most_common()}


def _variant(flags: str, config: str, batch: int, seq: int) -> StepProcess:
  """The trainer's step under XLA's defaults and `flags` alone (not the
  trainer's own options), in a process started with them."""
  return StepProcess(JaxStep, config, batch, seq, True, {},
                     environment={"XLA_FLAGS": flags})


def compare(config: str, variants: list[str], batch: int, seq: int, reps: int,
            iters: int) -> dict:
  """Each variant's tokens/s and its speed relative to the first's."""
  running = [_variant(flags, config, batch, seq) for flags in variants]
  times = [[] for _ in variants]
  for _ in range(reps):
    for k, variant in enumerate(running):
      times[k].append(variant.run(time_step, iters))
  for variant in running:
    variant.close()
  rows = [{"xla_flags": flags, "tokens_per_s": batch * seq / statistics.median(t),
           "speed_vs_first": statistics.median([a / b for a, b in zip(times[0], t)])}
          for flags, t in zip(variants, times)]
  for row in rows:
    print(f"{config}: {row['tokens_per_s']:.0f} tok/s, x{row['speed_vs_first']:.3f} "
          f"[{row['xla_flags']}]", flush=True)
  return {"batch": batch, "seq_len": seq, "variants": rows}


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.perf.xla_flags", __doc__)
  add_step_flags(p, reps=5)
  p.add_argument("--variant", action="append", required=True,
                 help="an XLA_FLAGS value (--variant=VALUE), repeatable; the first is the reference")
  p.add_argument("--profile", metavar="CONFIG",
                 help="print where the step of CONFIG spends its time under each variant, "
                      "timing nothing else")
  p.add_argument("--out", default="results/perf_xla_flags.json", help="the JSON written")
  args = p.parse_args(argv)
  if args.profile:
    for flags in args.variant:
      variant = _variant(flags, args.profile, args.batch_size, args.seq_len)
      by_kind = variant.run(profile, args.iters)
      variant.close()
      print(f"{args.profile} [{flags}]: {sum(by_kind.values()):.1f} ms of operations per step")
      for kind, ms in list(by_kind.items())[:15]:
        print(f"  {ms:8.2f} ms  {kind}")
    return
  results = {"cpu_features": provenance.cpu_features(),
             "configs": {c: compare(c, args.variant, args.batch_size, args.seq_len,
                                    args.reps, args.iters)
                         for c in args.configs.split(",")}}
  provenance.write_results(args.out, "train.perf.xla_flags", argv, results)


if __name__ == "__main__":
  main()
