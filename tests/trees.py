"""Parameter and gradient trees shared by the library tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from layeropt_jax.labels import label_params, path_to_str


def qwen3_params(tied: bool, seed: int = 0, num_layers: int = 2, vocab: int = 48,
                 stacked: bool = False):
  """A tiny tree with Qwen3's parameter names and shapes (head_dim != H/heads);
  `stacked`: the layers as one tree whose every leaf has a leading layer
  axis, as `nnx.scan` or levanter's `Stacked` hold them."""
  hidden, heads, kv_heads, head_dim, inter = 24, 4, 2, 8, 40
  shapes = {
      "self_attn": {
          "q_proj": {"kernel": (hidden, heads * head_dim)},
          "k_proj": {"kernel": (hidden, kv_heads * head_dim)},
          "v_proj": {"kernel": (hidden, kv_heads * head_dim)},
          "o_proj": {"kernel": (heads * head_dim, hidden)},
          "q_norm": {"scale": (head_dim,)},
          "k_norm": {"scale": (head_dim,)},
      },
      "mlp": {
          "gate_proj": {"kernel": (hidden, inter)},
          "up_proj": {"kernel": (hidden, inter)},
          "down_proj": {"kernel": (inter, hidden)},
      },
      "input_layernorm": {"scale": (hidden,)},
      "post_attention_layernorm": {"scale": (hidden,)},
  }
  tree = {
      "model": {
          "embed_tokens": {"embedding": (vocab, hidden)},
          "layers": (jax.tree.map(lambda s: (num_layers, *s), shapes,
                                  is_leaf=lambda x: isinstance(x, tuple))
                     if stacked else [shapes] * num_layers),
          "norm": {"scale": (hidden,)},
      }
  }
  if not tied:
    tree["lm_head"] = {"kernel": (hidden, vocab)}
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(
          1.0 + 0.1 * rng.standard_normal(s) if len(s) == 1 or (stacked and len(s) == 2)
          else 0.05 * rng.standard_normal(s), jnp.float32),
      tree, is_leaf=lambda x: isinstance(x, tuple))


def random_grads(params, rng: np.random.Generator, low=0.01, high=10.0):
  """Gradients whose per-tensor L2 norms are log-uniform in [low, high]."""
  def one(p):
    g = rng.standard_normal(np.shape(p))
    norm = np.exp(rng.uniform(np.log(low), np.log(high)))
    return jnp.asarray(g / max(np.linalg.norm(g), 1e-30) * norm, jnp.asarray(p).dtype)
  return jax.tree.map(one, params)


def flat(tree) -> dict[str, np.ndarray]:
  return {path_to_str(path): np.asarray(leaf, np.float64)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def quadratic_loss(params):
  """A smooth loss of the parameters alone (Sophia's obj_fn in the tests)."""
  return sum(jnp.sum(jnp.square(x.astype(jnp.float32)))
             for x in jax.tree.leaves(params))


def step(tx, params, grads, state):
  """One update, with the loss Sophia's Hessian estimate needs."""
  updates, state = tx.update(grads, state, params, obj_fn=quadratic_loss)
  return optax.apply_updates(params, updates), state


def flat_labels(params) -> dict[str, str]:
  return {path_to_str(path): label for path, label in
          jax.tree_util.tree_leaves_with_path(label_params(params))}
