"""Per-component optimizer metrics, kept in the optimizer state."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from layeropt_jax._adaptive import abs_sq
from layeropt_jax.labels import COMPONENTS, ParamLabels, resolve_labels

# What is measured per component; "grad_norm/global" is added over all leaves.
COMPONENT_METRICS = ("grad_norm", "update_rms", "param_rms", "update_to_param")


class ComponentMetricsState(NamedTuple):
  """State of :func:`with_component_metrics`."""
  inner_state: optax.OptState
  # "grad_norm/mlp", ..., "grad_norm/global": float32 scalars of the last update.
  metrics: dict[str, jax.Array]


def _sum_sq_by_label(tree: Any, labels: list[str], present: tuple[str, ...]):
  sums = dict.fromkeys(present, jnp.zeros([], jnp.float32))
  for leaf, label in zip(jax.tree.leaves(tree), labels):
    sums[label] = sums[label] + jnp.sum(abs_sq(leaf.astype(jnp.float32)))
  return sums


def with_component_metrics(
    inner: optax.GradientTransformation,
    param_labels: ParamLabels = None,
) -> optax.GradientTransformationExtraArgs:
  r"""`inner`, recording in its state how each component of the model moves.

  For every label :math:`\ell` present among the parameters (see
  :func:`layeropt_jax.label_params`), over the leaves :math:`i` of that label
  with :math:`n_\ell` elements in all, at every update:

  .. math::
    \|g\|_\ell = \sqrt{\textstyle\sum_i \|g_i\|^2}, \quad
    \mathrm{rms}(u)_\ell = \sqrt{\textstyle\sum_i \|u_i\|^2 / n_\ell}, \quad
    \mathrm{rms}(\theta)_\ell = \sqrt{\textstyle\sum_i \|\theta_i\|^2 / n_\ell},
    \quad r_\ell = \mathrm{rms}(u)_\ell / \mathrm{rms}(\theta)_\ell

  where :math:`g` are the gradients `inner` receives, :math:`u` the updates
  it returns and :math:`\theta` the parameters before the update; plus the
  global gradient norm. Updates pass through unchanged. The measurements are
  whole-array reductions, so under `jax.jit` with sharded arrays (data
  parallel, FSDP) they are exact, and their structure is fixed at `init`:
  no recompilation. Read them as `state.metrics` (a dict of float32 scalars
  `"grad_norm/mlp"`, `"update_rms/mlp"`, `"param_rms/mlp"`,
  `"update_to_param/mlp"`, ..., `"grad_norm/global"`), like the state of
  :func:`optax.inject_hyperparams`.

  Args:
    inner: the optimizer to measure, usually the whole chain.
    param_labels: a pytree of labels, a callable `params -> labels`, or
      `None` for :func:`layeropt_jax.label_params`.

  Returns:
    An `optax.GradientTransformationExtraArgs` with state
    :class:`ComponentMetricsState`; `update` needs `params`.
  """
  inner = optax.with_extra_args_support(inner)

  def labels_of(tree):
    labels = jax.tree.leaves(resolve_labels(param_labels, tree))
    present = tuple(c for c in COMPONENTS if c in set(labels))
    return labels, present

  def init_fn(params):
    _, present = labels_of(params)
    metrics = {f"{name}/{label}": jnp.zeros([], jnp.float32)
               for label in present for name in COMPONENT_METRICS}
    metrics["grad_norm/global"] = jnp.zeros([], jnp.float32)
    return ComponentMetricsState(inner_state=inner.init(params), metrics=metrics)

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("with_component_metrics measures the parameters: pass "
                       "params to update")
    labels, present = labels_of(updates)
    sizes = dict.fromkeys(present, 0)
    for leaf, label in zip(jax.tree.leaves(updates), labels):
      sizes[label] += leaf.size
    grad_sq = _sum_sq_by_label(updates, labels, present)
    new_updates, inner_state = inner.update(
        updates, state.inner_state, params, **extra_args)
    update_sq = _sum_sq_by_label(new_updates, labels, present)
    param_sq = _sum_sq_by_label(params, labels, present)
    metrics = {}
    for label in present:
      update_rms = jnp.sqrt(update_sq[label] / sizes[label])
      param_rms = jnp.sqrt(param_sq[label] / sizes[label])
      metrics[f"grad_norm/{label}"] = jnp.sqrt(grad_sq[label])
      metrics[f"update_rms/{label}"] = update_rms
      metrics[f"param_rms/{label}"] = param_rms
      metrics[f"update_to_param/{label}"] = jnp.where(
          param_rms > 0, update_rms / param_rms, 0.0)
    metrics["grad_norm/global"] = jnp.sqrt(sum(grad_sq.values()))
    return new_updates, ComponentMetricsState(inner_state, metrics)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
