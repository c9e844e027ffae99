"""The performance benchmarks, each `python -m train.perf.<name>`:

- `optimizer_step`: each optimizer's step against optax.adamw, the bandwidth
  roofline, XLA's temporaries;
- `trainer_step`: the trainer against PyTorch (eager and compiled), the
  matmul peak, sweeps;
- `xla_flags`: the trainer's CPU step under sets of XLA flags, and where its
  time goes;
- `state_memory`: what `mu_dtype` and `nu_dtype` save;
- `metrics_overhead`: what the per-component metrics cost a step;
- `data_prep`: data preparation's speed and memory against corpus size, on
  corpora `synthetic_fineweb` writes;
- `results`: results/perf.md from the first four's JSON.
"""
