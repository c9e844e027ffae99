"""Construction-time checks of hyperparameters.

Values traced by `jax.jit` (as under `optax.inject_hyperparams`) cannot be
inspected and were checked when they were first given; they pass through.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def _concrete(name: str, value: Any) -> float | None:
  if isinstance(value, jax.core.Tracer) or callable(value):
    return None
  arr = np.asarray(value)
  if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
    raise ValueError(f"{name} must be a number, got {name}={value!r}")
  if arr.size != 1:
    return None
  return float(arr)


def check_beta(name: str, value: Any) -> None:
  """A decay rate must lie in [0, 1)."""
  x = _concrete(name, value)
  if x is not None and not 0.0 <= x < 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {name}={value!r}")


def check_non_negative(name: str, value: Any) -> None:
  """eps, weight decay, clip thresholds and the like must be finite and >= 0."""
  x = _concrete(name, value)
  if x is not None and not (math.isfinite(x) and x >= 0.0):
    raise ValueError(f"{name} must be finite and >= 0, got {name}={value!r}")


def check_positive(name: str, value: Any) -> None:
  x = _concrete(name, value)
  if x is not None and not (math.isfinite(x) and x > 0.0):
    raise ValueError(f"{name} must be finite and > 0, got {name}={value!r}")


def check_learning_rate(value: Any) -> None:
  """A float learning rate must be >= 0; a schedule is checked by its user."""
  check_non_negative("learning_rate", value)
