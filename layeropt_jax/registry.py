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

_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {}
_METHOD_SCALES: dict[str, Mapping[str, float]] = {}
# Read-only views, kept current by `register_optimizer`.
OPTIMIZERS: Mapping[str, Callable[..., optax.GradientTransformation]]
OPTIMIZERS = MappingProxyType(_OPTIMIZERS)
# The LR multipliers each layer-wise method applies by default: the default of
# its `scales` argument. The baselines outside the common chain have none.
METHOD_SCALES: Mapping[str, Mapping[str, float]]
METHOD_SCALES = MappingProxyType(_METHOD_SCALES)


def register_optimizer(
    name: str, factory: Callable[..., optax.GradientTransformation]) -> None:
  """Makes `factory` available by `name` to :func:`get_optimizer`.

  It is then in :data:`OPTIMIZERS` (and so the trainer's `--optimizer`), and,
  if its `scales` argument defaults to a multiplier table, in
  :data:`METHOD_SCALES`.

  Args:
    name: the optimizer's name, not yet registered.
    factory: `factory(learning_rate, **hyperparameters)`, every argument but
      the learning rate keyword-only with a default.

  Returns:
    None; the registries are updated in place.

  Raises:
    ValueError: `name` is taken or `factory` has another signature.
  """
  if name in _OPTIMIZERS:
    raise ValueError(f"optimizer {name!r} is already registered")
  params = list(inspect.signature(factory).parameters.values())
  if not params or params[0].name != "learning_rate" or any(
      p.kind != p.KEYWORD_ONLY or p.default is p.empty for p in params[1:]):
    raise ValueError(
        f"optimizer {name!r}: factory{inspect.signature(factory)} must take "
        "learning_rate first, then keyword-only arguments with defaults")
  _OPTIMIZERS[name] = factory
  scales = inspect.signature(factory).parameters.get("scales")
  if scales is not None and isinstance(scales.default, Mapping):
    _METHOD_SCALES[name] = scales.default


register_optimizer("lamvs", lamvs)
register_optimizer("ladm", ladm)
register_optimizer("aovs", aovs)
register_optimizer("lamo", lamo)
register_optimizer("malao", malao)
register_optimizer("layer_adam", layer_adam)
register_optimizer("stable_adamw", stable_adamw)
register_optimizer("adamw", adamw)
register_optimizer("lion", lion)
register_optimizer("lamb", lamb)
register_optimizer("muon", muon)
register_optimizer("sophia", sophia)
register_optimizer("ademamix", ademamix)


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
    name: a key of :data:`OPTIMIZERS`: every method and baseline of the
      library, and those added with :func:`register_optimizer`.
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
