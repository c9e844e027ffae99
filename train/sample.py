"""Generates text from a trained run's latest checkpoint, with a key/value cache.

  python -m train.sample --workdir runs/x --prompt "def " [--max-new-tokens 64]
      [--temperature 0.8] [--top-k 40] [--seed 0]

Temperature 0 is greedy decoding (deterministic). Otherwise tokens are drawn
from the softmax of logits / temperature, restricted to the `top_k` likeliest
when `top_k` > 0, with `jax.random` keyed by `--seed`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from tokenizers import Tokenizer

from train import cli, checkpoint, step
from train.config import TrainConfig
from train.model import Qwen3ForCausalLM

def next_token(logits: jax.Array, key: jax.Array, temperature: float, top_k: int) -> jax.Array:
  """Tokens `[B]` from the last position's logits `[B, V]`."""
  if temperature == 0:
    return jnp.argmax(logits, axis=-1)
  logits = logits / temperature
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.random.categorical(key, logits, axis=-1)


def generate(model: Qwen3ForCausalLM, prompt: jax.Array, max_new_tokens: int, *,
             temperature: float = 0.0, top_k: int = 0, seed: int = 0) -> jax.Array:
  """The prompt `[B, P]` followed by `max_new_tokens` generated tokens.

  The prompt fills the cache in one pass; each new token then costs one
  position's forward pass.
  """
  if temperature < 0:
    raise ValueError(f"--temperature must be >= 0, got {temperature}")
  if top_k < 0:
    raise ValueError(f"--top-k must be >= 0, got {top_k}")
  batch, length = prompt.shape
  total = length + max_new_tokens
  if total > model.config.max_position_embeddings:
    raise ValueError(
        f"prompt ({length}) + --max-new-tokens ({max_new_tokens}) exceeds the model's "
        f"max_position_embeddings {model.config.max_position_embeddings}")
  if max_new_tokens == 0:
    return prompt
  graphdef, params = nnx.split(model)

  @jax.jit
  def run(params, prompt, key):
    model = nnx.merge(graphdef, params)
    logits, cache = model(prompt, cache=model.empty_cache(batch, total))
    keys = jax.random.split(key, max_new_tokens)
    first = next_token(logits[:, -1], keys[0], temperature, top_k)

    def decode(carry, key):
      token, cache = carry
      logits, cache = model(token[:, None], cache=cache)
      new = next_token(logits[:, -1], key, temperature, top_k)
      return (new, cache), new

    _, rest = jax.lax.scan(decode, (first, cache), keys[1:])
    return jnp.concatenate([prompt, first[:, None], rest.T], axis=1)

  return run(params, prompt, jax.random.key(seed))


def load(workdir: str | pathlib.Path) -> tuple[Qwen3ForCausalLM, Tokenizer]:
  """The model at the run's latest checkpoint and the run's tokenizer."""
  workdir = pathlib.Path(workdir)
  if not (workdir / checkpoint.RUN_FILE).is_file():
    raise ValueError(f"--workdir {workdir} holds no run ({checkpoint.RUN_FILE} is missing)")
  saved = json.loads((workdir / checkpoint.RUN_FILE).read_text())
  # Data paths recorded by the run need not exist where it is sampled.
  config = dataclasses.replace(TrainConfig(**saved), workdir=str(workdir), fsdp=False)
  checkpoints = checkpoint.Checkpoints(workdir / "checkpoints", config.keep_checkpoints)
  latest = checkpoints.latest_step()
  if latest is None:
    raise ValueError(f"--workdir {workdir} has no checkpoint (a sweep keeps its runs' "
                     "checkpoints in its sweep directory)")
  trainer = step.Trainer([config])
  state, _ = checkpoints.restore(latest, trainer.abstract_state)
  checkpoints.close()
  model = nnx.merge(trainer.graphdef, jax.tree.map(lambda x: x[0], state.params))
  return model, Tokenizer.from_file(str(workdir / checkpoint.TOKENIZER_FILE))


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.sample", __doc__)
  p.add_argument("--workdir", required=True,
                 help="a run's workdir: its latest checkpoint and its tokenizer.json")
  p.add_argument("--prompt", required=True, help="the text to continue")
  p.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated")
  p.add_argument("--temperature", type=float, default=0.0,
                 help="the softmax temperature of sampling; 0 is greedy decoding")
  p.add_argument("--top-k", type=int, default=0,
                 help="sample among the k most likely tokens only; 0 keeps them all")
  p.add_argument("--seed", type=int, default=0, help="the sampling's random seed")
  args = p.parse_args(argv)
  try:
    if args.max_new_tokens < 0:
      raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    model, tokenizer = load(args.workdir)
    prompt = np.asarray([tokenizer.encode(args.prompt).ids], np.int32)
    if prompt.shape[1] == 0:
      raise ValueError("--prompt is empty")
    tokens = generate(model, jnp.asarray(prompt), args.max_new_tokens,
                      temperature=args.temperature, top_k=args.top_k, seed=args.seed)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(tokenizer.decode(np.asarray(tokens[0]).tolist()))


if __name__ == "__main__":
  main()
