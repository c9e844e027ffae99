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
from layeropt_jax._sharding import gathered, resharded_like
from layeropt_jax.labels import ParamLabels, hidden_matrix_mask
from layeropt_jax.layerwise import layerwise_chain

# Muon's quintic Newton-Schulz coefficients.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
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
  x = x / (jnp.linalg.norm(x) + 1e-8)
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


def _orthogonalize_hidden(updates: Any, mask: Any, ns_steps: int) -> Any:
  """`orthogonalize_matrix` on every leaf where `mask` is True.

  Same-shaped matrices are stacked and orthogonalised one after another in
  place, so the Newton-Schulz intermediates of one matrix at a time are
  alive: orthogonalising every leaf independently keeps all of them (three
  parameter-sized buffers on qwen3-134m, `python -m train.perf.optimizer_step`).
  """
  leaves, treedef = jax.tree.flatten(updates)
  groups: dict[tuple[Any, ...], list[int]] = {}
  for i, (u, hidden) in enumerate(zip(leaves, jax.tree.leaves(mask))):
    if hidden:
      groups.setdefault((u.shape, u.dtype), []).append(i)

  def orthogonalize_one(k, stack):
    return stack.at[k].set(orthogonalize_matrix(stack[k], ns_steps))

  for indices in groups.values():
    stack = jax.lax.fori_loop(0, len(indices), orthogonalize_one,
                              jnp.stack([leaves[i] for i in indices]))
    for k, i in enumerate(indices):
      leaves[i] = stack[k]
  return jax.tree.unflatten(treedef, leaves)


def scale_by_aovs(
    b1: float = 0.9,
    b2: float = 0.95,
    gamma: float = 0.05,
    eps: float = 1e-8,
    orthogonalize: bool = True,
    ns_steps: int = 5,
    param_labels: ParamLabels = None,
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
  every 2-D leaf labelled attn_qkv, attn_out or mlp is then replaced by
  :math:`0.2\sqrt{\max(r, c)}\,\mathrm{NS}_5(u_t)`, Muon's quintic
  Newton-Schulz iteration on :math:`u_t/\|u_t\|_F` in float32; the factor
  gives the update AdamW's RMS, so AdamW learning rates carry over.
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
      for :func:`layeropt_jax.label_params`; selects the hidden matrices.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` with state `optax.ScaleByAdamState`.

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

  def update_fn(updates, state, params=None):
    directions, state = adaptive.update(updates, state, params)
    mask = hidden_matrix_mask(param_labels, updates)
    return _orthogonalize_hidden(directions, mask, ns_steps), state

  return optax.GradientTransformation(adaptive.init, update_fn)


def aovs(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    gamma: float = 0.05,
    eps: float = 1e-8,
    orthogonalize: bool = True,
    ns_steps: int = 5,
    weight_decay: float = 0.1,
    scales: Mapping[str, float] = AOVS_SCALES,
    param_labels: ParamLabels = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AOVS: variance-stabilised, orthogonalised Adam with LR multipliers.

  .. math::
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\mathrm{ndim} \ge 2])

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
    weight_decay: decoupled weight decay on tensors with ndim >= 2 (0.1).
    scales: label -> LR multiplier for all six labels (default
      `AOVS_SCALES`).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
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
                    param_labels=param_labels, mu_dtype=mu_dtype,
                    nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels)
