"""What the per-component optimizer metrics cost the train step.

  python -m train.perf.metrics_overhead [--configs nano,small] [--reps 7]
      [--out results/perf_metrics_overhead.json]

The trainer's jitted step (AdamW, float32, one run, the trainer's steps per
call) with and without `layeropt_jax.with_component_metrics`, timed
interleaved on the same batches, which goes first alternating; the median of
the per-repetition ratios is reported (target: at most 1.03), with the ratios
of XLA's FLOP and bytes-accessed counts of one step, which timing noise does
not move.
"""

from __future__ import annotations

import statistics

from train import cli, provenance
from train.perf.trainer_step import JaxStep, add_step_flags


def bench(config_name: str, batch: int, seq: int, reps: int, iters: int) -> dict:
  steps = {on: JaxStep(config_name, batch, seq, component_metrics=on) for on in (True, False)}
  ratios = []
  for rep in range(reps):
    # Alternating which goes first cancels a drift of the machine within a rep.
    order = (True, False) if rep % 2 == 0 else (False, True)
    times = {on: steps[on].time(iters) for on in order}
    ratios.append(times[True] / times[False])
  result = {"batch": batch, "seq_len": seq, "time_ratio": statistics.median(ratios),
            "ratios": ratios,
            # XLA's own count for one step: what the metrics add, free of timing noise.
            "flops_ratio": steps[True].flops / steps[False].flops,
            "bytes_accessed_ratio": steps[True].bytes_accessed / steps[False].bytes_accessed}
  print(f"{config_name}: x{result['time_ratio']:.3f} with the metrics", flush=True)
  return result


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.perf.metrics_overhead", __doc__)
  add_step_flags(p, reps=7)
  p.add_argument("--out", default="results/perf_metrics_overhead.json", help="the JSON written")
  args = p.parse_args(argv)
  results = {"configs": {c: bench(c, args.batch_size, args.seq_len, args.reps, args.iters)
                        for c in args.configs.split(",")}}
  provenance.write_results(args.out, "train.perf.metrics_overhead", argv, results)


if __name__ == "__main__":
  main()
