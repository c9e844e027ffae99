"""StableAdamW: AdamW with per-tensor update clipping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from layeropt_jax._adaptive import abs_sq, compute_dtype, scale_by_adam
from layeropt_jax.labels import ParamLabels
from layeropt_jax.layerwise import UNIT_SCALES, layerwise_chain


# 256 KB blocks: cache-sized, and large enough that the loop is cheap.
_BLOCK_ELEMENTS = 1 << 16
# Blocks take rows spread over the leading axis in this many strided groups,
# so a tensor sharded on that axis (FSDP) is reduced where it lies.
_ROW_GROUPS = 64


def _mean_in_blocks(fn: Callable[..., jax.Array], *arrays: jax.Array) -> jax.Array:
  """`mean(fn(*arrays))` over same-shaped arrays, a block of rows at a time.

  XLA's CPU backend gives a whole-tensor reduction of a computed operand to a
  kernel that wants it materialised: `fn`'s result would be a
  parameter-sized temporary written and read back at every step. Reducing
  block by block inside a loop keeps the temporary to one block. The
  leading axis is viewed as `[groups, rows]` and blocks slice `rows`, so
  every block holds rows of every shard of a leading-axis-sharded tensor and
  no block needs a gather.
  """
  x = arrays[0]
  if x.ndim == 0 or x.size == 0:
    return jnp.mean(fn(*arrays))
  groups = math.gcd(x.shape[0], _ROW_GROUPS)
  rows = x.shape[0] // groups
  block_rows = min(rows, max(1, _BLOCK_ELEMENTS * x.shape[0] // (groups * x.size)))
  views = [a.reshape(groups, rows, *a.shape[1:]) for a in arrays]
  within_group = tuple(range(1, x.ndim + 1))

  def block_sums(i):
    blocks = [jax.lax.dynamic_slice_in_dim(v, i * block_rows, block_rows, axis=1)
              for v in views]
    return jnp.sum(fn(*blocks), axis=within_group,
                   dtype=jnp.promote_types(x.dtype, jnp.float32))

  # The loop starts from the first block's sums, not from zeros: its carry
  # then has their type, under explicit sharding their sharding included.
  full = rows // block_rows
  sums = jax.lax.fori_loop(1, full, lambda i, sums: sums + block_sums(i), block_sums(0))
  tail = fn(*[v[:, full * block_rows:] for v in views])
  return (jnp.sum(sums) + jnp.sum(tail)) / x.size


def scale_by_stable_adam(
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Adam's direction, divided per tensor by the gradient's RMS ratio.

  .. math::
    r_t = \sqrt{\mathrm{mean}\left(g_t^2 / \max(\hat v_t, \epsilon^2)\right)},
    \quad u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} \Big/ \max(1, r_t)

  :math:`\hat v_t` is the bias-corrected second moment including this step.

  Args:
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95).
    eps: added to the denominator (default 1e-8).
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` with state `optax.ScaleByAdamState`.

  References:
    Wortsman et al., `Stable and low-precision training for large-scale
    vision-language models <https://arxiv.org/abs/2304.13013>`_, 2023
  """
  adam = scale_by_adam(b1, b2, eps, mu_dtype, nu_dtype)

  def update_fn(updates, state, params=None):
    directions, state = adam.update(updates, state, params)
    correction = 1 - b2**state.count

    def clip(u, grad, nu):
      # From the stored v_t, not an expression of it: see _mean_in_blocks.
      ratio = _mean_in_blocks(
          lambda v, g: abs_sq(g) / jnp.maximum(
              v.astype(compute_dtype(v)) / correction, eps**2),
          nu, grad.astype(compute_dtype(grad)))
      return u / jnp.maximum(1.0, jnp.sqrt(ratio)).astype(u.dtype)

    return jax.tree.map(clip, directions, updates, state.nu), state

  return optax.GradientTransformation(adam.init, update_fn)


def stable_adamw(
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float | Mapping[str, float] = 0.1,
    scales: Mapping[str, float] = UNIT_SCALES,
    param_labels: ParamLabels = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""StableAdamW: update-clipped AdamW, no LR multipliers by default.

  .. math::
    \theta_{t} = \theta_{t-1} - \eta_t \, s_{\ell} \,
      (u_t + \lambda \theta_{t-1} [\theta \text{ a weight}])

  with :math:`u_t` of :func:`scale_by_stable_adam` and multipliers 1.0
  (`UNIT_SCALES`).

  Args:
    learning_rate: a float or an optax schedule.
    b1: decay of the first moment (default 0.9).
    b2: decay of the second moment (default 0.95).
    eps: added to the denominator (default 1e-8).
    weight_decay: decoupled weight decay of the weights (0.1), or a rate per
      label (:func:`layeropt_jax.decay_weights`).
    scales: label -> LR multiplier for all six labels (default
      `UNIT_SCALES`).
    param_labels: pytree of labels, a callable `params -> labels`, or `None`
      for :func:`layeropt_jax.label_params`.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformationExtraArgs`.

  References:
    Wortsman et al., 2023 (see :func:`scale_by_stable_adam`).
  """
  return layerwise_chain(
      scale_by_stable_adam(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype,
                           nu_dtype=nu_dtype),
      learning_rate=learning_rate, weight_decay=weight_decay, scales=scales,
      param_labels=param_labels)
