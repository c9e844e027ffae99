"""Hugging Face Qwen3 weights in and out of `train.model.Qwen3ForCausalLM`.

Keys are transformers' (`model.layers.0.self_attn.q_proj.weight`); torch's
`Linear.weight [out, in]` is the transpose of Flax's `kernel [in, out]`.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from typing import Any

from flax import nnx
import jax.numpy as jnp
import numpy as np

_TIED_HEAD = "lm_head.weight"


def _hf_name(path: tuple[Any, ...]) -> tuple[str, bool]:
  """HF key of a Flax parameter path, and whether the array is transposed."""
  *module, leaf = (str(p) for p in path)
  # Linear kernels are transposed; Embed.embedding and RMSNorm.scale are not.
  return ".".join(module) + ".weight", leaf == "kernel"


def _params(model: nnx.Module) -> dict[tuple[Any, ...], nnx.Variable]:
  return dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))


def to_hf_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
  """The model's weights as a transformers state dict of float32 NumPy arrays.

  A tied model has no `lm_head.weight`, as in a saved safetensors file.
  """
  out = {}
  for path, var in _params(model).items():
    name, transposed = _hf_name(path)
    value = np.asarray(var.get_value(), np.float32)
    out[name] = np.ascontiguousarray(value.T if transposed else value)
  return out


def load_hf_state_dict(model: nnx.Module, state_dict: Mapping[str, Any] | str | os.PathLike) -> None:
  """Loads a transformers `state_dict()` or a `.safetensors` file into `model`.

  Args:
    model: a `train.model.Qwen3ForCausalLM`.
    state_dict: a mapping key -> array (NumPy, torch or JAX), or a path to a
      `.safetensors` file. A tied model ignores an `lm_head.weight` entry.

  Raises:
    ValueError: listing every missing key, unexpected key and shape mismatch.
  """
  if isinstance(state_dict, (str, os.PathLike)):
    # The flax loader, unlike the NumPy one, reads bfloat16 (how Qwen3 ships).
    from safetensors.flax import load_file
    state_dict = load_file(os.fspath(state_dict))
  params = _params(model)
  expected = {}
  for path in params:
    name, transposed = _hf_name(path)
    expected[name] = (path, transposed)
  given = dict(state_dict)
  if model.config.tie_word_embeddings:
    given.pop(_TIED_HEAD, None)
  missing = sorted(set(expected) - set(given))
  unexpected = sorted(set(given) - set(expected))
  arrays, mismatched = {}, []
  for name in sorted(set(expected) & set(given)):
    path, transposed = expected[name]
    value = given[name]
    if hasattr(value, "detach"):  # a torch tensor
      value = value.detach().float().cpu().numpy()
    value = np.asarray(value, np.float32)
    want = params[path].get_value().shape
    want_hf = tuple(reversed(want)) if transposed else want
    if value.shape != want_hf:
      mismatched.append(f"{name}: got {value.shape}, expected {want_hf}")
    arrays[path] = value.T if transposed else value
  if missing or unexpected or mismatched:
    raise ValueError(
        "load_hf_state_dict: "
        f"missing keys {missing}; unexpected keys {unexpected}; "
        f"shape mismatches {mismatched}")
  for path, value in arrays.items():
    params[path].set_value(jnp.asarray(value, params[path].get_value().dtype))


def load_hf_params(config, path: str | os.PathLike) -> nnx.State:
  """The `nnx.Param` state of a `Qwen3ForCausalLM(config)` holding a
  `.safetensors` checkpoint's weights (see :func:`load_hf_state_dict`)."""
  from train.model import Qwen3ForCausalLM
  model = Qwen3ForCausalLM(config, rngs=nnx.Rngs(0))
  load_hf_state_dict(model, path)
  return nnx.state(model, nnx.Param)
