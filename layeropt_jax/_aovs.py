"""AOVS: layer-wise LR, variance stabilisation and orthogonalised updates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from layeropt_jax import _validation
from layeropt_jax._adaptive import compute_dtype, scale_by_adaptive_moments
from layeropt_jax._lamvs import LAMVS_SCALES
from layeropt_jax._sharding import gathered, gathered_but_first_axis, resharded_like
from layeropt_jax.labels import ParamLabels
from layeropt_jax.matrices import MatrixRules, as_matrices, matrix_dimension_numbers
from layeropt_jax.layerwise import layerwise_chain

# Muon's quintic Newton-Schulz coefficients.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
# What the Newton-Schulz iteration adds to ||x||_F before it divides by it:
# a guard for a zero update, fixed (not a method's eps) so that every method
# orthogonalises the same matrix the same way.
NS_NORM_EPS = 1e-8
# Gives an orthogonalised update the RMS of an AdamW update (Liu et al. 2025).
MATCHED_RMS = 0.2
# The AOVS report gives no values; it uses LAMVS's table (a choice).
AOVS_SCALES = LAMVS_SCALES


def _newton_schulz(x: jax.Array, ns_steps: int) -> jax.Array:
  r"""Muon's quintic Newton-Schulz iteration on :math:`x/(\|x\|_F + 10^{-8})`.

  Our own rather than optax's, which is private (`optax.contrib._muon`);
  `tests/reference.py` checks it. It runs on the wide orientation (no more
  rows than columns), whose Gram matrix is the smaller, and transposes back.
  """
  wide = x.shape[0] <= x.shape[1]
  x = x if wide else x.T
  x = x / (jnp.linalg.norm(x) + NS_NORM_EPS)
  a, b, c = (jnp.asarray(k, x.dtype) for k in NS_COEFFS)

  def step(_, x):
    gram = x @ x.T.conj()
    return a * x + (b * gram + c * gram @ gram) @ x

  x = jax.lax.fori_loop(0, ns_steps, step, x, unroll=True)
  return x if wide else x.T


def orthogonalize_matrix(u: jax.Array, ns_steps: int = 5) -> jax.Array:
  r"""NS5(u) scaled to AdamW's RMS: :math:`0.2 \sqrt{\max(r, c)}\,NS(u)`.

  Args:
    u: a 2-D update, real or complex; the iteration runs in float32 (or
      wider, or complex).
    ns_steps: Newton-Schulz iterations (default 5) with Muon's quintic
      coefficients `NS_COEFFS`.

  Returns:
    The orthogonalised update, in `u`'s dtype and sharding. Under
    `jax.sharding.AxisType.Explicit` axes the iteration runs on a replicated
    copy of `u` (its products would have no legal sharding otherwise).
  """
  x = resharded_like(_newton_schulz(gathered(u.astype(compute_dtype(u))), ns_steps), u)
  return (x * (MATCHED_RMS * max(u.shape) ** 0.5)).astype(u.dtype)


def _orthogonalize_stack(stack: jax.Array, ns_steps: int) -> jax.Array:
  """`orthogonalize_matrix` of every matrix of `stack` `(batch, r, c)` at
  once, each on the devices that hold it: a stack sharded on its batch axis
  is not gathered."""
  x = gathered_but_first_axis(stack.astype(compute_dtype(stack)))
  x = resharded_like(jax.vmap(lambda m: _newton_schulz(m, ns_steps))(x), stack)
  return (x * (MATCHED_RMS * max(stack.shape[1:]) ** 0.5)).astype(stack.dtype)


def _orthogonalize_hidden(updates: Any, layouts: Any, ns_steps: int) -> Any:
  """Every hidden weight's update orthogonalised as the matrices its layout
  (`matrices.matrix_dimension_numbers`) reads, each on its own.

  A stack (layers, experts) is orthogonalised at once, keeping its batch
  axis's sharding. Single matrices of one shape are stacked and
  orthogonalised one after another in place, so the Newton-Schulz
  intermediates of one matrix at a time are alive: orthogonalising every
  leaf independently keeps all of them (three parameter-sized buffers on
  qwen3-134m, `python -m train.perf.optimizer_step`).
  """
  leaves, treedef = jax.tree.flatten(updates)
  groups: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
  for i, layout in enumerate(treedef.flatten_up_to(layouts)):
    if layout is None:
      continue
    matrices, inverse = as_matrices(leaves[i], layout)
    if matrices.shape[0] > 1:
      leaves[i] = inverse(_orthogonalize_stack(matrices, ns_steps))
    else:
      groups.setdefault((matrices.shape, matrices.dtype), []).append((i, inverse))
      leaves[i] = matrices[0]

  def orthogonalize_one(k, stack):
    return stack.at[k].set(orthogonalize_matrix(stack[k], ns_steps))

  for items in groups.values():
    stack = jax.lax.fori_loop(0, len(items), orthogonalize_one,
                              jnp.stack([leaves[i] for i, _ in items]))
    for k, (i, inverse) in enumerate(items):
      leaves[i] = inverse(stack[k][None])
  return jax.tree.unflatten(treedef, leaves)


def scale_by_aovs(
    b1: float = 0.9,
    b2: float = 0.95,
    gamma: float = 0.05,
    eps: float = 1e-8,
    orthogonalize: bool = True,
    ns_steps: int = 5,
    param_labels: ParamLabels = None,
    matrix_rules: MatrixRules | None = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Adam with a stabilised second moment, orthogonalised on hidden matrices.

  .. math::
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
    \tilde v_t = (1-\gamma) \frac{v_t}{1-\beta_2^t}
      + \gamma \frac{v_{t-1}}{1-\beta_2^{t-1}}, \quad
    u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\tilde v_t} + \epsilon}

  At :math:`t = 1` the old term is the new one. With `orthogonalize`,
  every hidden weight (a weight labelled attn_qkv, attn_out or mlp, not a
  bias or a scale) is then replaced, matrix by matrix, by
  :math:`0.2\sqrt{\max(r, c)}\,\mathrm{NS}_5(u_t)`, Muon's quintic
  Newton-Schulz iteration on :math:`u_t/\|u_t\|_F` in float32; the factor
  gives the update AdamW's RMS, so AdamW learning rates carry over. Which
  matrices a weight holds is :func:`layeropt_jax.matrix_dimension_numbers`'
  reading of it: a 2-D weight is one, a 3-D one a stack of them on its first
  axis, Flax's multi-head attention kernels and Gemma's einsum kernels are
  read by their layout, and `matrix_rules` says the rest.
  :math:`v_{t-1}` is the state before the step, recovered from
  :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2`: no third buffer.
  **(choice)** :math:`\beta_2 = 0.95`, :math:`\gamma = 0.05`.

  Args:
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment, in (0, 1) (default 0.95, a choice).
    gamma: weight of the previous second moment (default 0.05, a choice).
    eps: added to the denominator (default 1e-8).
    orthogonalize: orthogonalise the hidden matrices (default True).
    ns_steps: Newton-Schulz iterations (default 5). Under
      `optax.inject_hyperparams`, list it in `static_args`.
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`; selects the hidden weights.
    matrix_rules: `(regex, optax.contrib.MuonDimensionNumbers)` pairs that
      read hidden weights as matrices (:func:`layeropt_jax.matrix_dimension_numbers`);
      `None` for `DEFAULT_MATRIX_RULES`.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` with state `optax.ScaleByAdamState`.
    Its `init` raises `ValueError` naming every hidden weight that no rule
    reads as matrices.

  References:
    The AOVS technical report, as this library defines it (docs/methods.rst).

    Jordan, `Muon: An optimizer for hidden layers in neural networks
    <https://kellerjordan.github.io/posts/muon/>`_, 2024
  """
  _validation.check_beta("gamma", gamma)
  # v_{t-1} is recovered from v_t, which divides by b2.
  _validation.check_positive("b2", b2)
  _validation.check_non_negative("eps", eps)
  _validation.check_positive("ns_steps", ns_steps)

  def direction(grad, mu_hat, nu_hat, prev_nu_hat, count):
    del grad, count
    stabilised = (1 - gamma) * nu_hat + gamma * prev_nu_hat
    return mu_hat / (jnp.sqrt(stabilised) + eps)

  adaptive = scale_by_adaptive_moments(direction, b1, b2, mu_dtype, nu_dtype)
  if not orthogonalize:
    return adaptive

  def init_fn(params):
    matrix_dimension_numbers(params, param_labels, matrix_rules)  # raises early
    return adaptive.init(params)

  def update_fn(updates, state, params=None):
    directions, state = adaptive.update(updates, state, params)
    layouts = matrix_dimension_numbers(updates, param_labels, matrix_rules)
    return _orthogonalize_hidden(directions, layouts, ns_steps), state

  return optax.GradientTransformation(init_fn, update_fn)


def aovs(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    gamma: float = 0.05,
    eps: float = 1e-8,
    orthogonalize: bool = True,
    ns_steps: int = 5,
    weight_decay: float | Mapping[str, float] = 0.1,
    scales: Mapping[str, float] = AOVS_SCALES,
    param_labels: ParamLabels = None,
    matrix_rules: MatrixRules | None = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AOVS: variance-stabilised, orthogonalised Adam with LR multipliers.

  .. math::
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\theta \text{ a weight}])

  with :math:`u_t` of :func:`scale_by_aovs`. **(choice)** the report gives
  no multipliers: the default is LAMVS's table (`AOVS_SCALES`); weight decay
  0.1 as for AdamW.

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95, a choice).
    gamma: weight of the previous second moment (default 0.05, a choice).
    eps: added to the denominator (default 1e-8).
    orthogonalize: orthogonalise the hidden matrices (default True).
    ns_steps: Newton-Schulz iterations (default 5); static under
      `optax.inject_hyperparams` (pass `static_args="ns_steps"`).
    weight_decay: decoupled weight decay of the weights (0.1), or a rate per
      label (:func:`layeropt_jax.decay_weights`).
    scales: label -> LR multiplier for all six labels (default
      `AOVS_SCALES`).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    matrix_rules: how hidden weights are read as matrices (see
      :func:`scale_by_aovs`); `None` for `DEFAULT_MATRIX_RULES`.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    The AOVS technical report, as this library defines it (docs/methods.rst).
  """
  return layerwise_chain(
      scale_by_aovs(b1=b1, b2=b2, gamma=gamma, eps=eps,
                    orthogonalize=orthogonalize, ns_steps=ns_steps,
                    param_labels=param_labels, matrix_rules=matrix_rules,
                    mu_dtype=mu_dtype, nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels)
