"""Every optimizer of the library and the baselines, by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import inspect
from types import MappingProxyType
from typing import Any

import optax

from layeropt_jax._baselines import adamw, ademamix, lamb, lion, muon, sophia
from layeropt_jax._aovs import aovs
from layeropt_jax._ladm import ladm
from layeropt_jax._lamo import lamo
from layeropt_jax._lamvs import lamvs
from layeropt_jax._layer_adam import layer_adam
from layeropt_jax._malao import malao
from layeropt_jax._stable_adamw import stable_adamw

OPTIMIZERS: MappingProxyType[str, Callable[..., optax.GradientTransformation]]
OPTIMIZERS = MappingProxyType({
    "lamvs": lamvs,
    "ladm": ladm,
    "aovs": aovs,
    "lamo": lamo,
    "malao": malao,
    "layer_adam": layer_adam,
    "stable_adamw": stable_adamw,
    "adamw": adamw,
    "lion": lion,
    "lamb": lamb,
    "muon": muon,
    "sophia": sophia,
    "ademamix": ademamix,
})


def hyperparameters(name: str) -> dict[str, Any]:
  """The keyword arguments of optimizer `name` and their defaults.

  Args:
    name: a key of `OPTIMIZERS`.

  Returns:
    A dict of keyword argument -> default, without `learning_rate`.

  Raises:
    ValueError: `name` is not a key of `OPTIMIZERS` (the message lists them).
  """
  factory = _factory(name)
  return {
      p.name: p.default
      for p in inspect.signature(factory).parameters.values()
      if p.name != "learning_rate"
  }


def _factory(name: str) -> Callable[..., optax.GradientTransformation]:
  if name not in OPTIMIZERS:
    raise ValueError(
        f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
  return OPTIMIZERS[name]


def get_optimizer(
    name: str,
    learning_rate: optax.ScalarOrSchedule,
    **overrides: Any,
) -> optax.GradientTransformationExtraArgs:
  """Builds optimizer `name` with its documented defaults and `overrides`.

  Works under `optax.inject_hyperparams`:
  `optax.inject_hyperparams(get_optimizer)(name="ladm", learning_rate=1e-3)`
  holds the learning rate in the state. Hyperparameters given as `overrides`
  there stay fixed; to change them in the state, inject the alias itself
  (`optax.inject_hyperparams(layeropt_jax.ladm)(learning_rate=..., b1=...)`).

  Args:
    name: one of `lamvs ladm aovs lamo malao layer_adam stable_adamw adamw
      lion lamb muon sophia ademamix`.
    learning_rate: a float or an optax schedule.
    **overrides: keyword arguments of that optimizer (see
      :func:`hyperparameters`).

  Returns:
    An `optax.GradientTransformationExtraArgs`. `sophia` needs `obj_fn` at
    every update (see :func:`layeropt_jax.sophia`).

  Raises:
    ValueError: for an unknown name or argument (listing the valid ones), or
      a hyperparameter out of range.
  """
  if set(overrides) == {"overrides"} and isinstance(
      overrides["overrides"], Mapping):
    # optax.inject_hyperparams binds `**overrides` to one argument and passes
    # it back by its name: `overrides={...}`.
    overrides = dict(overrides["overrides"])
  valid = hyperparameters(name)
  unknown = sorted(set(overrides) - set(valid))
  if unknown:
    raise ValueError(
        f"optimizer {name!r} has no argument(s) {', '.join(unknown)}; "
        f"valid arguments: {', '.join(valid)}")
  return _factory(name)(learning_rate, **overrides)
