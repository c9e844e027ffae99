"""docs/adding_a_method.md, followed as a user would with a toy method
defined here, outside the package: its module (the factory below), one
registry line, its reference case and one benchmark row."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

import layeropt_jax
from layeropt_jax import registry
from layeropt_jax.layerwise import layerwise_chain, multiplier_table
from train import train as trainer
from train.benchmark import methods, runner, suites
from train.config import TrainConfig

from tests.helpers import records

TOY_SCALES = multiplier_table(embedding=0.5, attn_qkv=2.0, attn_out=1.5, mlp=1.25,
                              norm=1.0, head=0.75)


def toy(learning_rate, *, weight_decay=0.05, scales=TOY_SCALES, param_labels=None):
  """signSGD with the common chain: :math:`u_t = \\mathrm{sign}(g_t)`."""
  return layerwise_chain(optax.scale_by_sign(), learning_rate=learning_rate,
                         weight_decay=weight_decay, scales=scales, param_labels=param_labels)


@pytest.fixture
def registered_toy():
  layeropt_jax.register_optimizer("toy", toy)  # the registry line
  yield
  # The registry is the process's: other tests in this worker see the library's.
  del registry._OPTIMIZERS["toy"], registry._METHOD_SCALES["toy"]


def toy_reference(params, grads, lr, labels):
  """The toy's first update in float64, from its math: every leaf moves by
  -lr * s_label * (sign(g) + wd * theta [ndim >= 2])."""
  return {k: -lr * TOY_SCALES[labels[k]] * (np.sign(np.float64(grads[k]))
                                            + 0.05 * np.float64(params[k]) * (params[k].ndim >= 2))
          for k in params}


def test_a_registered_method_is_built_with_its_default_scales(registered_toy):
  assert layeropt_jax.METHOD_SCALES["toy"] is TOY_SCALES
  assert layeropt_jax.hyperparameters("toy") == {
      "weight_decay": 0.05, "scales": TOY_SCALES, "param_labels": None}
  rng = np.random.default_rng(0)
  shapes = {"model/embed_tokens/embedding": (16, 8),
            "model/layers/0/self_attn/q_proj/kernel": (8, 8),
            "model/layers/0/self_attn/o_proj/kernel": (8, 8),
            "model/layers/0/mlp/up_proj/kernel": (8, 16),
            "model/layers/0/input_layernorm/scale": (8,), "lm_head/kernel": (8, 16)}
  params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  grads = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  labels = {"model/embed_tokens/embedding": "embedding",
            "model/layers/0/self_attn/q_proj/kernel": "attn_qkv",
            "model/layers/0/self_attn/o_proj/kernel": "attn_out",
            "model/layers/0/mlp/up_proj/kernel": "mlp",
            "model/layers/0/input_layernorm/scale": "norm", "lm_head/kernel": "head"}
  assert jax.tree.leaves(layeropt_jax.label_params(params)) == jax.tree.leaves(labels)
  tx = layeropt_jax.get_optimizer("toy", 1e-2)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  expected = toy_reference(params, grads, 1e-2, labels)
  for k in params:
    # float32 products of three factors: a few ulps of the largest term.
    np.testing.assert_allclose(updates[k], expected[k], rtol=4 * np.finfo(np.float32).eps,
                               atol=1e-9)
  with pytest.raises(ValueError, match="optimizer 'toy' is already registered"):
    layeropt_jax.register_optimizer("toy", toy)


def test_a_registered_method_trains_and_joins_the_benchmark(registered_toy, tmp_path,
                                                            data_cache, capsys):
  config = TrainConfig(workdir=str(tmp_path / "run"), optimizer="toy", lr=1e-2, steps=2,
                       warmup=0, batch_size=8, seq_len=32, eval_every=0, eval_batches=1,
                       log_every=1, cache_dir=str(data_cache), progress=False)
  trainer.train(config)
  done = records(tmp_path / "run")
  assert [r["step"] for r in done] == [1, 2, 2] and done[-1]["event"] == "done"
  assert np.isfinite(done[-1]["val_loss"])
  # One benchmark row: the suites make their variants of it.
  row = methods.Method("toy", center_lr=1e-2, reports_lr=1e-2)
  suite = dataclasses.replace(suites.SUITES["smoke"], name="toy-smoke",
                              methods=suites.variants_of((row,)), ablations=(),
                              data_multiples=())
  runner.dry_run(suite, tmp_path / "sweeps", {"cache_dir": str(data_cache)}, 8, 32)
  assert "methods: toy\n" in capsys.readouterr().out


def test_registering_checks_the_factory():
  with pytest.raises(ValueError, match=r"optimizer 'bad': factory\(lr\) must take "
                                       "learning_rate first"):
    layeropt_jax.register_optimizer("bad", lambda lr: optax.sgd(lr))
  with pytest.raises(ValueError, match="keyword-only arguments with defaults"):
    layeropt_jax.register_optimizer("bad", lambda learning_rate, b1: optax.sgd(learning_rate))
  assert "bad" not in layeropt_jax.OPTIMIZERS
