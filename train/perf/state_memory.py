"""What `mu_dtype` and `nu_dtype` save: optimizer state and step memory.

  python -m train.perf.state_memory [--tree qwen3-134m]
      [--out results/perf_state_memory.json]

For every name of `get_optimizer`, the optimizer state's bytes per parameter
(exact, from `jax.eval_shape` of `init`) and the compiled step's temporary
bytes (XLA's `memory_analysis`, nothing allocated), with float32 moments (the
library's default), bfloat16 first moments (`mu_dtype`) and bfloat16 first and
second moments (`mu_dtype` and `nu_dtype`, where the method has a second
moment of its own). Parameters are float32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import layeropt_jax
from layeropt_jax import registry
from train import cli, provenance
from train.perf.optimizer_step import param_tree, temp_bytes

SETTINGS = {
    "float32": {},
    "mu bfloat16": {"mu_dtype": jnp.bfloat16},
    "mu, nu bfloat16": {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16},
}


def _nbytes(tree: Any) -> int:
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def measure(tree_name: str, names: list[str]) -> dict[str, Any]:
  params = jax.eval_shape(lambda: param_tree(tree_name))
  n_params = sum(x.size for x in jax.tree.leaves(params))
  results: dict[str, Any] = {}
  for name in names:
    accepted = registry.hyperparameters(name)
    results[name] = {}
    for setting, dtypes in SETTINGS.items():
      if not set(dtypes) <= set(accepted):
        continue
      tx = layeropt_jax.get_optimizer(name, 1e-3, **dtypes)
      state = jax.eval_shape(tx.init, params)
      temp = temp_bytes(tx, params)
      results[name][setting] = {
          "state_bytes_per_param": _nbytes(state) / n_params,
          "temp_bytes_per_param": None if temp is None else temp / n_params,
      }
      print(f"{name:>12} {setting:>16}: {results[name][setting]}", flush=True)
  return {"tree": tree_name, "params": n_params, "optimizers": results}


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.perf.state_memory", __doc__)
  p.add_argument("--tree", default="qwen3-134m", help="the model config whose tree is measured")
  p.add_argument("--names", default=",".join(layeropt_jax.OPTIMIZERS),
                 help="optimizers, comma-separated")
  p.add_argument("--out", default="results/perf_state_memory.json", help="the JSON written")
  args = p.parse_args(argv)
  provenance.write_results(args.out, "train.perf.state_memory", argv,
                          measure(args.tree, args.names.split(",")))


if __name__ == "__main__":
  main()
