"""The baselines, as optax implements them, with the benchmark's settings.

Each function binds the defaults of the methods' documentation
(docs/methods.rst) to optax's own optimizer and applies decoupled weight decay
to the weights only (`weights_mask`: no biases, no norm scales), as every
method of the library does.
**(choice)** Weight decay is 0.1 for every baseline, the reports' AdamW value;
optax's other defaults are kept. The library's dtype convention holds here
too: moments in float32 unless `mu_dtype` says otherwise, where optax would
store them in the parameters' dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import contrib

from layeropt_jax import _validation
from layeropt_jax._adaptive import in_compute_dtype
from layeropt_jax._aovs import NS_NORM_EPS
from layeropt_jax._sharding import on_gathered
from layeropt_jax.labels import ParamLabels, path_to_str
from layeropt_jax.matrices import (
    MatrixRules, hidden_weight_layouts, matrix_dimension_numbers, weights_mask)


def _check(learning_rate, *, betas: dict[str, Any], non_negative: dict[str, Any]):
  _validation.check_learning_rate(learning_rate)
  for name, value in betas.items():
    _validation.check_beta(name, value)
  for name, value in non_negative.items():
    _validation.check_non_negative(name, value)


def adamw(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """:func:`optax.adamw` with b2 0.95 and weight decay 0.1 on the weights.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95).
    eps: added to the denominator (default 1e-8).
    weight_decay: decoupled weight decay of the weights (0.1).
    mu_dtype: storage dtype of the first moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    Loshchilov and Hutter, `Decoupled Weight Decay Regularization
    <https://arxiv.org/abs/1711.05101>`_, 2019
  """
  _check(learning_rate, betas=dict(b1=b1, b2=b2),
         non_negative=dict(eps=eps, weight_decay=weight_decay))
  return _in_library_dtypes(optax.adamw(
      learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
      mask=weights_mask, mu_dtype=mu_dtype))


def lion(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 0.1,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """:func:`optax.lion` with weight decay 0.1 on the weights.

  Args:
    learning_rate: a float or an optax schedule.
    b1: interpolation between momentum and gradient for the update (0.9).
    b2: decay of the momentum (default 0.99).
    weight_decay: decoupled weight decay of the weights (0.1).
    mu_dtype: storage dtype of the first moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    Chen et al., `Symbolic Discovery of Optimization Algorithms
    <https://arxiv.org/abs/2302.06675>`_, 2023
  """
  _check(learning_rate, betas=dict(b1=b1, b2=b2),
         non_negative=dict(weight_decay=weight_decay))
  return _in_library_dtypes(optax.lion(
      learning_rate, b1=b1, b2=b2, mu_dtype=mu_dtype,
      weight_decay=weight_decay, mask=weights_mask))


def lamb(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.1,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """:func:`optax.lamb`, weight decay 0.1 on the weights, and a `mu_dtype`.

  This is optax.lamb's own chain; it is spelled out only because
  :func:`optax.lamb` does not pass `mu_dtype` to its Adam.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.999).
    eps: added to the denominator (default 1e-6).
    weight_decay: decoupled weight decay of the weights (0.1).
    mu_dtype: storage dtype of the first moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    You et al., `Large Batch Optimization for Deep Learning: Training BERT
    in 76 minutes <https://arxiv.org/abs/1904.00962>`_, 2020
  """
  _check(learning_rate, betas=dict(b1=b1, b2=b2),
         non_negative=dict(eps=eps, weight_decay=weight_decay))
  return _in_library_dtypes(optax.chain(
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype),
      optax.add_decayed_weights(weight_decay, mask=weights_mask),
      optax.scale_by_trust_ratio(),
      optax.scale_by_learning_rate(learning_rate),
  ))


def muon(
    learning_rate: optax.ScalarOrSchedule,
    *,
    beta: float = 0.95,
    ns_steps: int = 5,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    param_labels: ParamLabels = None,
    matrix_rules: MatrixRules | None = None,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """:func:`optax.contrib.muon` on the hidden weights, :func:`adamw` elsewhere.

  The hidden weights (weights labelled attn_qkv, attn_out or mlp, not biases
  or scales) get Muon (Nesterov momentum `beta`, `ns_steps` Newton-Schulz
  steps), each read as the matrices :func:`layeropt_jax.matrix_dimension_numbers`
  says (stacks and multi-head layouts included, `matrix_rules` for the
  rest); every other leaf (embedding, head, norms, biases) gets this
  module's :func:`adamw` with `b1`, `b2`, `eps`. **(choice)** Muon's update is scaled to AdamW's RMS
  (`consistent_rms=0.2`, Liu et al. 2025) so that one learning rate serves
  both parts, and both parts decay weights by `weight_decay`. Under
  `jax.sharding.AxisType.Explicit` axes the Muon part updates replicated
  copies of its matrices and momentum (Newton-Schulz's products have no legal
  sharding otherwise) and reshards them as they came.

  Args:
    learning_rate: a float or an optax schedule.
    beta: Muon's Nesterov momentum decay (default 0.95).
    ns_steps: Newton-Schulz iterations (default 5).
    b1: AdamW's first-moment decay on the other leaves (default 0.9).
    b2: AdamW's second-moment decay on the other leaves (default 0.95).
    eps: added to the AdamW part's denominators (default 1e-8); the
      Newton-Schulz iteration divides by `||u||_F + 1e-8` whatever it is.
    weight_decay: decoupled weight decay of both parts on the weights (0.1).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`; selects the hidden weights.
    matrix_rules: `(regex, optax.contrib.MuonDimensionNumbers)` pairs that
      read hidden weights as matrices; `None` for `DEFAULT_MATRIX_RULES`.
    mu_dtype: storage dtype of the first moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`; its `init` raises
    `ValueError` naming every hidden weight no rule reads as matrices.

  References:
    Jordan, `Muon: An optimizer for hidden layers in neural networks
    <https://kellerjordan.github.io/posts/muon/>`_, 2024
  """
  _check(learning_rate, betas=dict(beta=beta, b1=b1, b2=b2),
         non_negative=dict(eps=eps, weight_decay=weight_decay))
  _validation.check_positive("ns_steps", ns_steps)
  return _in_library_dtypes(optax.partition(
      {
          "muon": on_gathered(contrib.muon(
              learning_rate, ns_steps=ns_steps, beta=beta, eps=NS_NORM_EPS,
              weight_decay=weight_decay, mu_dtype=mu_dtype, consistent_rms=0.2,
              muon_weight_dimension_numbers=lambda p: hidden_weight_layouts(
                  p, matrix_rules))),
          "adamw": adamw(learning_rate, b1=b1, b2=b2, eps=eps,
                         weight_decay=weight_decay, mu_dtype=mu_dtype),
      },
      lambda params: jax.tree.map(
          lambda layout: "adamw" if layout is None else "muon",
          matrix_dimension_numbers(params, param_labels, matrix_rules),
          is_leaf=lambda x: x is None or isinstance(x, contrib.MuonDimensionNumbers)),
  ))


def sophia(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.01,
    clip_threshold: float = 1.0,
    update_interval: int = 10,
    weight_decay: float = 0.1,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """:func:`optax.contrib.sophia` (Sophia-H) with weight decay 0.1 on the weights.

  Its Hutchinson estimate of the Hessian diagonal needs the loss: every
  `update` must receive `obj_fn`, a function of the parameters alone::

    obj_fn = lambda p: loss_fn(p, batch)
    updates, state = tx.update(grads, state, params, obj_fn=obj_fn)

  Inside :class:`flax.nnx.Optimizer`, pass it as
  `optimizer.update(model, grads, obj_fn=obj_fn)`; `obj_fn` then receives the
  `nnx.State` of the parameters (merge it with the graph definition).

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.965).
    b2: decay of the Hessian-diagonal estimate (default 0.99).
    eps: added to the denominator (default 1e-8).
    gamma: scale of the Hessian estimate in the denominator (default 0.01).
    clip_threshold: elementwise clip of the update (default 1.0).
    update_interval: steps between Hessian estimates (default 10).
    weight_decay: decoupled weight decay of the weights (0.1).
    mu_dtype: storage dtype of the first moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    Liu et al., `Sophia: A Scalable Stochastic Second-order Optimizer for
    Language Model Pre-training <https://arxiv.org/abs/2305.14342>`_, 2024
  """
  _check(learning_rate, betas=dict(b1=b1, b2=b2),
         non_negative=dict(eps=eps, gamma=gamma, clip_threshold=clip_threshold,
                           weight_decay=weight_decay))
  _validation.check_positive("update_interval", update_interval)
  return _in_library_dtypes(_needs_obj_fn(_real_only("sophia", contrib.sophia(
      learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
      weight_decay_mask=weights_mask, gamma=gamma,
      clip_threshold=clip_threshold, update_interval=update_interval,
      mu_dtype=mu_dtype))))


def ademamix(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: float = 0.9999,
    alpha: float = 5.0,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    mu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """:func:`optax.contrib.ademamix` with weight decay 0.1 on the weights.

  optax 0.2.8 returns its moments in float32 after the first update even with
  `mu_dtype`; the state is cast back to the dtypes `init` gave it, so the
  state keeps one structure and `jax.jit` compiles once.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the fast first moment (default 0.9).
    b2: decay of the second moment (default 0.999).
    b3: decay of the slow first moment (default 0.9999).
    alpha: weight of the slow moment in the update (default 5.0).
    eps: added to the denominator (default 1e-8).
    weight_decay: decoupled weight decay of the weights (0.1).
    mu_dtype: storage dtype of the first moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    Pagliardini et al., `The AdEMAMix Optimizer: Better, Faster, Older
    <https://arxiv.org/abs/2409.03050>`_, 2024
  """
  _check(learning_rate, betas=dict(b1=b1, b2=b2, b3=b3),
         non_negative=dict(alpha=alpha, eps=eps, weight_decay=weight_decay))
  return _in_library_dtypes(_keep_state_dtypes(contrib.ademamix(
      learning_rate, b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps,
      mu_dtype=mu_dtype, weight_decay=weight_decay, mask=weights_mask)))


def _keep_state_dtypes(
    tx: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
  tx = optax.with_extra_args_support(tx)

  def update_fn(updates, state, params=None, **extra_args):
    updates, new_state = tx.update(updates, state, params, **extra_args)
    return updates, optax.tree.cast_like(new_state, state)

  return optax.GradientTransformationExtraArgs(tx.init, update_fn)


def _in_library_dtypes(
    tx: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
  """`tx` initialised and updated in float32 or wider, returning updates in
  the gradients' dtype: optax would keep the moments of bfloat16 parameters
  in bfloat16."""
  tx = optax.with_extra_args_support(tx)

  def init_fn(params):
    return tx.init(in_compute_dtype(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is not None:
      params = in_compute_dtype(params)
    new_updates, state = tx.update(
        in_compute_dtype(updates), state, params, **extra_args)
    return optax.tree.cast_like(new_updates, updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _needs_obj_fn(
    tx: optax.GradientTransformationExtraArgs,
) -> optax.GradientTransformationExtraArgs:
  """Sophia's `tx`, whose `update` without `obj_fn` says how to pass it."""

  def update_fn(updates, state, params=None, *, obj_fn=None, **extra_args):
    if obj_fn is None:
      raise ValueError(
          "sophia needs the loss at every update, as obj_fn, a function of the "
          "parameters alone: tx.update(grads, state, params, obj_fn=lambda p: "
          "loss_fn(p, batch)); inside flax.nnx.Optimizer, optimizer.update(model, "
          "grads, obj_fn=obj_fn), where obj_fn takes the parameters' nnx.State")
    return tx.update(updates, state, params, obj_fn=obj_fn, **extra_args)

  return optax.GradientTransformationExtraArgs(tx.init, update_fn)


def _real_only(
    name: str, tx: optax.GradientTransformation,
) -> optax.GradientTransformation:
  """`tx`, refusing complex parameters at `init` with a clear error."""

  def init_fn(params):
    complex_paths = [
        path_to_str(path)
        for path, p in jax.tree_util.tree_leaves_with_path(params)
        if jnp.iscomplexobj(p)
    ]
    if complex_paths:
      raise ValueError(
          f"{name} cannot take complex parameters (it clips its update "
          f"elementwise, which has no meaning for complex numbers): "
          f"{', '.join(complex_paths)}")
    return tx.init(params)

  return tx._replace(init=init_fn)
