"""The performance benchmarks: `optimizer_step` (each optimizer's step against
optax.adamw, the bandwidth roofline, XLA's temporaries), `trainer_step` (the
trainer against PyTorch, the matmul peak, sweeps), and `report`, which turns
their JSON into results/perf.md."""
