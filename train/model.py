"""Qwen3 in Flax NNX, computing what transformers' `Qwen3ForCausalLM` computes.

Module paths keep Hugging Face names (`model/layers/0/self_attn/q_proj/kernel`)
so that `layeropt_jax.label_params` and weight import need no renaming table
beyond transposes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Fields of Qwen3Config that are how we compute, not transformers' config.
NOT_HF_FIELDS = ("dtype", "remat")


@dataclasses.dataclass(frozen=True)
class Qwen3Config:
  """Hugging Face field names; `dtype` is the compute dtype (params stay
  float32); `remat` recomputes each decoder layer's activations in the
  backward pass instead of keeping them (less memory, one more forward)."""
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int
  head_dim: int
  rms_norm_eps: float = 1e-6
  rope_theta: float = 1e6
  tie_word_embeddings: bool = True
  max_position_embeddings: int = 32768
  dtype: str = "float32"
  remat: bool = False

  def __post_init__(self):
    for field in ("vocab_size", "hidden_size", "intermediate_size",
                  "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "max_position_embeddings"):
      value = getattr(self, field)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"Qwen3Config.{field} must be a positive int, got {value!r}")
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(
          f"Qwen3Config.num_attention_heads={self.num_attention_heads} must be a "
          f"multiple of num_key_value_heads={self.num_key_value_heads}")
    if self.head_dim % 2:
      raise ValueError(f"Qwen3Config.head_dim must be even for RoPE, got {self.head_dim}")
    if self.dtype not in _DTYPES:
      raise ValueError(f"Qwen3Config.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")

  @property
  def compute_dtype(self) -> Any:
    return _DTYPES[self.dtype]

  def train_flops_per_token(self, seq_len: int) -> int:
    """Model FLOPs of one token's training step (forward and backward) in
    sequences of `seq_len`: 6 per weight of every matmul (the head's
    included, the embedding's lookup not) and 12 L H d T for the attention
    scores and their weighted sum. Rematerialisation is not counted, the
    causal mask is not subtracted (the step computes every score)."""
    d, heads, kv, head_dim = (self.hidden_size, self.num_attention_heads,
                              self.num_key_value_heads, self.head_dim)
    per_layer = d * (heads + 2 * kv) * head_dim + heads * head_dim * d \
        + 3 * d * self.intermediate_size
    matmul_weights = self.num_hidden_layers * per_layer + self.vocab_size * d
    attention = 12 * self.num_hidden_layers * heads * head_dim * seq_len
    return 6 * matmul_weights + attention

  @classmethod
  def from_hf(cls, config: dict[str, Any], **overrides: Any) -> "Qwen3Config":
    """From a transformers `config.json` dict (`rope_theta` or `rope_parameters`)."""
    fields = {f.name for f in dataclasses.fields(cls)} - {*NOT_HF_FIELDS, "rope_theta"}
    kwargs = {k: config[k] for k in fields if k in config}
    rope = config.get("rope_parameters") or {}
    theta = config.get("rope_theta", rope.get("rope_theta"))
    if theta is not None:
      kwargs["rope_theta"] = float(theta)
    if rope.get("rope_type", "default") != "default":
      raise ValueError(f"rope_parameters.rope_type={rope['rope_type']!r} is not supported")
    if config.get("num_key_value_heads") is None and "num_attention_heads" in config:
      kwargs["num_key_value_heads"] = config["num_attention_heads"]
    return cls(**{**kwargs, **overrides})


CONFIGS = {
    "nano": Qwen3Config(
        vocab_size=2048, hidden_size=128, intermediate_size=384,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, rope_theta=1e4, max_position_embeddings=1024),
    "small": Qwen3Config(
        vocab_size=8192, hidden_size=384, intermediate_size=1024,
        num_hidden_layers=10, num_attention_heads=6, num_key_value_heads=2,
        head_dim=64, rope_theta=1e4, max_position_embeddings=2048),
    "qwen3-134m": Qwen3Config(
        vocab_size=151936, hidden_size=512, intermediate_size=1792,
        num_hidden_layers=15, num_attention_heads=8, num_key_value_heads=8,
        head_dim=64, rope_theta=1e6, max_position_embeddings=4096),
    "qwen3-0.6b": Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
        head_dim=128, rope_theta=1e6, rms_norm_eps=1e-6,
        max_position_embeddings=40960),
}


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
  """Rotary embedding of `x [B, T, heads, head_dim]`, rotate-half layout as in HF."""
  half = x.shape[-1] // 2
  inv_freq = 1.0 / theta ** (jnp.arange(0, half, dtype=jnp.float32) / half)
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, half]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


class KVCache(NamedTuple):
  """One layer's keys and values `[B, S, kv_heads, head_dim]` for S positions,
  of which the first `end` are filled."""
  k: jax.Array
  v: jax.Array
  end: jax.Array

  @classmethod
  def empty(cls, cfg: Qwen3Config, batch: int, size: int) -> KVCache:
    shape = (batch, size, cfg.num_key_value_heads, cfg.head_dim)
    zeros = jnp.zeros(shape, cfg.compute_dtype)
    return cls(zeros, zeros, jnp.zeros([], jnp.int32))


def _linear(cfg: Qwen3Config, n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(
      n_in, n_out, use_bias=False, dtype=cfg.compute_dtype,
      param_dtype=jnp.float32,
      kernel_init=nnx.initializers.normal(0.02), rngs=rngs)


def _norm(cfg: Qwen3Config, n: int, rngs: nnx.Rngs) -> nnx.RMSNorm:
  return nnx.RMSNorm(n, epsilon=cfg.rms_norm_eps, dtype=cfg.compute_dtype,
                     param_dtype=jnp.float32, rngs=rngs)


class Qwen3Attention(nnx.Module):

  def __init__(self, cfg: Qwen3Config, rngs: nnx.Rngs):
    self.cfg = cfg
    h, d = cfg.hidden_size, cfg.head_dim
    self.q_proj = _linear(cfg, h, cfg.num_attention_heads * d, rngs)
    self.k_proj = _linear(cfg, h, cfg.num_key_value_heads * d, rngs)
    self.v_proj = _linear(cfg, h, cfg.num_key_value_heads * d, rngs)
    self.o_proj = _linear(cfg, cfg.num_attention_heads * d, h, rngs)
    self.q_norm = _norm(cfg, d, rngs)
    self.k_norm = _norm(cfg, d, rngs)

  def __call__(self, x: jax.Array, positions: jax.Array,
               cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    """`x [B * T, hidden]`, `positions [B, T]`. With a cache, the T tokens
    follow its `end` filled positions and attend to those too."""
    cfg = self.cfg
    b, t = positions.shape
    q = self.q_norm(self.q_proj(x).reshape(b, t, cfg.num_attention_heads, cfg.head_dim))
    k = self.k_norm(self.k_proj(x).reshape(b, t, cfg.num_key_value_heads, cfg.head_dim))
    v = self.v_proj(x).reshape(b, t, cfg.num_key_value_heads, cfg.head_dim).astype(q.dtype)
    q, k = rope(q, positions, cfg.rope_theta), rope(k, positions, cfg.rope_theta)
    if cache is None:
      out = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    else:
      at = (0, cache.end, 0, 0)
      cache = KVCache(jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), at),
                      jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), at),
                      cache.end + t)
      # Query i (at cache position end + i) sees cache positions <= its own.
      visible = (jnp.arange(cache.k.shape[1])[None, :]
                 <= (cache.end - t + jnp.arange(t))[:, None])
      out = jax.nn.dot_product_attention(q, cache.k.astype(q.dtype), cache.v.astype(q.dtype),
                                         mask=visible[None, None])
    return self.o_proj(out.reshape(b * t, -1)), cache


class Qwen3MLP(nnx.Module):

  def __init__(self, cfg: Qwen3Config, rngs: nnx.Rngs):
    self.gate_proj = _linear(cfg, cfg.hidden_size, cfg.intermediate_size, rngs)
    self.up_proj = _linear(cfg, cfg.hidden_size, cfg.intermediate_size, rngs)
    self.down_proj = _linear(cfg, cfg.intermediate_size, cfg.hidden_size, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen3DecoderLayer(nnx.Module):

  def __init__(self, cfg: Qwen3Config, rngs: nnx.Rngs):
    self.input_layernorm = _norm(cfg, cfg.hidden_size, rngs)
    self.self_attn = Qwen3Attention(cfg, rngs)
    self.post_attention_layernorm = _norm(cfg, cfg.hidden_size, rngs)
    self.mlp = Qwen3MLP(cfg, rngs)

  def __call__(self, x: jax.Array, positions: jax.Array,
               cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    attended, cache = self.self_attn(self.input_layernorm(x), positions, cache)
    x = x + attended
    return x + self.mlp(self.post_attention_layernorm(x)), cache


class Qwen3Model(nnx.Module):

  def __init__(self, cfg: Qwen3Config, rngs: nnx.Rngs):
    self.remat = cfg.remat
    self.embed_tokens = nnx.Embed(
        cfg.vocab_size, cfg.hidden_size, dtype=cfg.compute_dtype,
        param_dtype=jnp.float32,
        embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.layers = nnx.List(
        [Qwen3DecoderLayer(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
    self.norm = _norm(cfg, cfg.hidden_size, rngs)

  def __call__(self, input_ids: jax.Array, positions: jax.Array,
               cache: list[KVCache] | None = None,
               ) -> tuple[jax.Array, list[KVCache] | None]:
    """`input_ids [B, T] -> hidden states [B * T, hidden]` (and the layers'
    updated caches, given caches)."""
    # Tokens stay flattened: XLA's CPU matmuls (and their gradients) are up to
    # twice as fast on 2-D operands as on [B, T, hidden] ones.
    x = self.embed_tokens(input_ids.reshape(-1))
    if cache is None and self.remat:
      # The layers' parameters stacked and scanned, each layer recomputed in
      # the backward pass from its input alone. XLA's CPU scheduler undoes
      # rematerialisation in an unrolled loop of layers; in a scan it holds.
      graphdef = nnx.graphdef(self.layers[0])
      stacked = jax.tree.map(lambda *xs: jnp.stack(xs),
                             *[nnx.state(layer) for layer in self.layers])

      @jax.checkpoint
      def apply(x, state):
        return nnx.merge(graphdef, state)(x, positions)[0], None

      x, _ = jax.lax.scan(apply, x, stacked)
      return self.norm(x), None
    if cache is None:
      for layer in self.layers:
        x, _ = layer(x, positions)
      return self.norm(x), None
    caches = list(cache)
    for k, layer in enumerate(self.layers):
      x, caches[k] = layer(x, positions, caches[k])
    return self.norm(x), caches


class Qwen3ForCausalLM(nnx.Module):
  """`input_ids [B, T] int32 -> logits [B, T, V] float32`.

  For generation, `model(ids, cache=model.empty_cache(B, S))` returns the
  logits and the layers' key/value caches holding the tokens so far; feeding
  the next tokens with that cache attends to them without recomputing them.
  """

  def __init__(self, config: Qwen3Config, *, rngs: nnx.Rngs):
    self.config = config
    self.model = Qwen3Model(config, rngs)
    if not config.tie_word_embeddings:
      self.lm_head = _linear(config, config.hidden_size, config.vocab_size, rngs)

  def empty_cache(self, batch: int, size: int) -> list[KVCache]:
    """Caches for `size` positions of `batch` sequences, one per layer."""
    return [KVCache.empty(self.config, batch, size) for _ in self.model.layers]

  def __call__(self, input_ids: jax.Array, positions: jax.Array | None = None,
               cache: list[KVCache] | None = None):
    """Logits `[B, T, V]`; with `cache`, `(logits, updated cache)`."""
    if positions is None:
      start = 0 if cache is None else cache[0].end
      positions = jnp.broadcast_to(start + jnp.arange(input_ids.shape[1]), input_ids.shape)
    x, new_cache = self.model(input_ids, positions, cache)
    logits = self.head(x).reshape(*input_ids.shape, -1)
    return logits if cache is None else (logits, new_cache)

  def hidden_states(self, input_ids: jax.Array) -> jax.Array:
    """The final hidden states `[B * T, hidden]` of `input_ids [B, T]`, the
    head's inputs (the loss applies the head a chunk at a time)."""
    positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
    return self.model(input_ids, positions)[0]

  def head(self, x: jax.Array) -> jax.Array:
    """Float32 logits `[N, V]` of hidden states `x [N, hidden]`."""
    if self.config.tie_word_embeddings:
      logits = self.model.embed_tokens.attend(x)
    else:
      logits = self.lm_head(x)
    return logits.astype(jnp.float32)


def param_shapes(config_name: str) -> dict[str, Any]:
  """Config `config_name`'s parameters as `jax.ShapeDtypeStruct`s, unallocated.

  A plain dict keyed by the Hugging Face parameter paths.
  """
  return nnx.to_pure_dict(nnx.state(nnx.eval_shape(
      lambda: Qwen3ForCausalLM(CONFIGS[config_name], rngs=nnx.Rngs(0))), nnx.Param))
