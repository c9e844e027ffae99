"""Explicit sharding around the matrix products it leaves ambiguous.

Under `jax.sharding.AxisType.Explicit` every array's type carries its
sharding, and a product such as Newton-Schulz's `X @ X.T` of a matrix
sharded on either axis has no legal sharding: JAX raises rather than guess.
These helpers replicate the explicitly sharded arrays for such a product and
reshard its results as their inputs were, the collectives XLA would insert
by itself under `AxisType.Auto` (where they change nothing).
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec
import optax


def gathered(tree: Any) -> Any:
  """`tree` with every leaf sharded over explicit mesh axes replicated."""
  def gather(x):
    sharding = jax.typeof(x).sharding
    if not sharding.mesh.explicit_axes:
      return x
    return jax.sharding.reshard(x, NamedSharding(sharding.mesh, PartitionSpec()))
  return jax.tree.map(gather, tree)


def gathered_but_first_axis(x: jax.Array) -> jax.Array:
  """`x` with its first axis sharded as it is and every other replicated,
  under explicit mesh axes: a stack of matrices whose products stay on the
  devices that hold each matrix."""
  sharding = jax.typeof(x).sharding
  if not sharding.mesh.explicit_axes:
    return x
  first = sharding.spec[0] if len(sharding.spec) else None
  return jax.sharding.reshard(x, NamedSharding(sharding.mesh, PartitionSpec(first)))


def resharded_like(tree: Any, like: Any) -> Any:
  """`tree` with each leaf resharded as the explicitly sharded leaf of `like`
  (a tree of the same structure) at its place."""
  def reshard(x, reference):
    sharding = jax.typeof(reference).sharding
    return jax.sharding.reshard(x, sharding) if sharding.mesh.explicit_axes else x
  return jax.tree.map(reshard, tree, like)


def on_gathered(
    inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """`inner` updating replicated copies of explicitly sharded updates, state
  and parameters, its new updates and state resharded as they came; for an
  optax transformation that takes such products inside (optax.contrib.muon's
  Newton-Schulz iteration)."""
  inner = optax.with_extra_args_support(inner)

  def update_fn(updates, state, params=None, **extra_args):
    new_updates, new_state = inner.update(
        gathered(updates), gathered(state), gathered(params), **extra_args)
    return resharded_like(new_updates, updates), resharded_like(new_state, state)

  return optax.GradientTransformationExtraArgs(inner.init, update_fn)
