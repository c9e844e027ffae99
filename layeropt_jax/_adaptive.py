"""The Adam-shaped core shared by LAMVS, AOVS, MALAO, LayerAdam and StableAdamW.

Those methods keep Adam's two moments and differ only in how the direction
is formed from them, so one transformation updates the moments and a
per-leaf `direction` function forms the update.

The library's dtype convention, for every method and baseline: updates are
computed in float32 (or the parameters' dtype if wider; complex stays
complex), and moments are stored in float32 unless `mu_dtype` (first
moments) or `nu_dtype` (second moments, where the method has one) ask for
another dtype, such as bfloat16 to halve their memory. Second moments of
complex parameters are real. Updates are returned in the gradients' dtype.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax

from layeropt_jax import _validation


class Direction(Protocol):

  def __call__(
      self, grad: jax.Array, mu_hat: jax.Array, nu_hat: jax.Array,
      prev_nu_hat: jax.Array, count: jax.Array,
  ) -> jax.Array:
    """The update of one leaf.

    Args:
      grad: this step's gradient, in float32 or wider.
      mu_hat: the bias-corrected first moment after this step.
      nu_hat: the bias-corrected second moment after this step.
      prev_nu_hat: the bias-corrected second moment before this step (equal
        to `nu_hat` on the first step).
      count: t, the number of this update (1 on the first call).
    """


def compute_dtype(param: Any) -> jnp.dtype:
  """The arithmetic of every update: float32, or the parameter's if wider.

  Complex parameters stay complex (complex64 or complex128).
  """
  return jnp.promote_types(jnp.result_type(param), jnp.float32)


def moment_dtype(param: Any, dtype: Any = None) -> jnp.dtype:
  """A first moment's storage: `dtype` if given, else :func:`compute_dtype`."""
  if dtype is not None:
    return jnp.dtype(dtype)
  return compute_dtype(param)


def second_moment_dtype(param: Any, dtype: Any = None) -> jnp.dtype:
  """A second moment's storage: `dtype` if given, else the real dtype of
  :func:`compute_dtype` (it holds :math:`|g|^2`, real for complex `g`)."""
  if dtype is not None:
    return jnp.dtype(dtype)
  return jnp.finfo(compute_dtype(param)).dtype


# zeros_like, not zeros of the shape: under explicit sharding a moment has
# its parameter's sharding from the start, as the moments of later steps do.
def zeros_like_moment(params: Any, dtype: Any = None) -> Any:
  return jax.tree.map(lambda p: jnp.zeros_like(p, moment_dtype(p, dtype)), params)


def zeros_like_second_moment(params: Any, dtype: Any = None) -> Any:
  return jax.tree.map(lambda p: jnp.zeros_like(p, second_moment_dtype(p, dtype)), params)


def abs_sq(x: jax.Array) -> jax.Array:
  """:math:`|x|^2`, real for complex `x` (where `x * x` would be complex)."""
  return (x.conj() * x).real


def in_compute_dtype(updates: Any) -> Any:
  return jax.tree.map(lambda g: g.astype(compute_dtype(g)), updates)


def scale_by_adaptive_moments(
    direction: Direction,
    b1: float,
    b2: float,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Adam's moments with a method-specific direction.

  .. math::
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
    u_t = \mathrm{direction}(g_t, \hat m_t, \hat v_t, \hat v_{t-1}, t)

  Args:
    direction: the per-leaf rule forming the update from the moments.
    b1: decay of the first moment.
    b2: decay of the second moment.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` whose state is `optax.ScaleByAdamState`.
  """
  _validation.check_beta("b1", b1)
  _validation.check_beta("b2", b2)

  def init_fn(params):
    return optax.ScaleByAdamState(
        count=jnp.zeros([], jnp.int32),
        mu=zeros_like_moment(params, mu_dtype),
        nu=zeros_like_second_moment(params, nu_dtype),
    )

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    grads = in_compute_dtype(updates)
    mu = optax.tree.update_moment(grads, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    # At t = 1 there is no earlier estimate (1 - b2^0 = 0): use this step's.
    first = count == 1
    prev_correction = jnp.where(first, 1.0, 1.0 - b2 ** (count - 1))
    # v_{t-1} = (v_t - (1 - b2) g^2) / b2, recovered rather than read: reading
    # the old state beside the new one, which is written in place, costs a
    # parameter-sized copy per step. (Needs b2 > 0.)
    prev_nu_hat = jax.tree.map(
        lambda g, new, new_hat: jnp.where(
            first, new_hat,
            (new - (1 - b2) * abs_sq(g)) / (b2 * prev_correction)),
        grads, nu, nu_hat)
    new_updates = jax.tree.map(
        lambda g, m, v, pv, u: direction(g, m, v, pv, count).astype(u.dtype),
        grads, mu_hat, nu_hat, prev_nu_hat, updates)
    return new_updates, optax.ScaleByAdamState(
        count=count, mu=optax.tree.cast_like(mu, state.mu),
        nu=optax.tree.cast_like(nu, state.nu))

  return optax.GradientTransformation(init_fn, update_fn)


def adam_direction(eps: float) -> Direction:
  r"""Adam's direction :math:`\hat m / (\sqrt{\hat v} + \epsilon)`."""
  _validation.check_non_negative("eps", eps)

  def direction(grad, mu_hat, nu_hat, prev_nu_hat, count):
    del grad, prev_nu_hat, count
    return mu_hat / (jnp.sqrt(nu_hat) + eps)

  return direction


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
  r"""Adam's direction with float32 moments (the direction of LayerAdam, MALAO).

  Equal to :func:`optax.scale_by_adam` except for the library's dtype
  convention: moments stored in float32 (not the parameters' dtype) unless
  `mu_dtype` / `nu_dtype` say otherwise, arithmetic in float32.

  .. math::
    u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

  Args:
    b1: decay of the first moment.
    b2: decay of the second moment.
    eps: added to the denominator.
    mu_dtype: storage dtype of the first moment; `None` for float32.
    nu_dtype: storage dtype of the second moment; `None` for float32.

  Returns:
    An `optax.GradientTransformation` with state `optax.ScaleByAdamState`.

  References:
    Kingma and Ba, `Adam: A Method for Stochastic Optimization
    <https://arxiv.org/abs/1412.6980>`_, 2014
  """
  return scale_by_adaptive_moments(adam_direction(eps), b1, b2, mu_dtype,
                                   nu_dtype)
