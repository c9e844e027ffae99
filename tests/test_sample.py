"""Text generation: the key/value cache against recomputation, and the CLI."""

import dataclasses
import shutil
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from train import model, sample
from train import tokenizer as bpe

from tests.helpers import REPO, SHORT, command, environment, own_lines, run

CONFIG = model.Qwen3Config(vocab_size=256, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=16, max_position_embeddings=64)


def random_model(tie=True):
  mdl = model.Qwen3ForCausalLM(dataclasses.replace(CONFIG, tie_word_embeddings=tie),
                               rngs=nnx.Rngs(0))
  # Larger weights than the initialisation's, so that logits differ a lot by position.
  params = nnx.state(mdl, nnx.Param)
  keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(params))))
  nnx.update(mdl, jax.tree.map(lambda p: p + 0.3 * jax.random.normal(next(keys), p.shape),
                               params))
  return mdl


@pytest.mark.parametrize("tie", [True, False])
def test_cached_logits_equal_the_full_sequence_recomputed(tie):
  mdl = random_model(tie)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 12)), jnp.int32)
  full = mdl(tokens)
  logits, cache = mdl(tokens[:, :5], cache=mdl.empty_cache(2, 12))
  np.testing.assert_allclose(logits, full[:, :5], atol=1e-5)
  for t in range(5, 12):  # then one token at a time
    logits, cache = mdl(tokens[:, t:t + 1], cache=cache)
    np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)
  assert int(cache[0].end) == 12


def test_greedy_generation_equals_recomputing_and_is_deterministic():
  mdl = random_model()
  prompt = jnp.asarray(np.random.default_rng(1).integers(0, 256, (2, 4)), jnp.int32)
  out = sample.generate(mdl, prompt, 12)
  # Recomputed over the whole sequence, each generated token is the argmax
  # of the logits before it.
  np.testing.assert_array_equal(out[:, :4], prompt)
  np.testing.assert_array_equal(out[:, 4:], jnp.argmax(mdl(out)[:, 3:-1], -1))
  np.testing.assert_array_equal(sample.generate(mdl, prompt, 12), out)
  assert len(set(np.asarray(out[0, 4:]).tolist())) > 1


def test_sampling_follows_the_seed_and_top_k():
  mdl = random_model()
  prompt = jnp.zeros((1, 3), jnp.int32)
  draw = lambda seed, top_k=0: np.asarray(
      sample.generate(mdl, prompt, 20, temperature=1.0, top_k=top_k, seed=seed))
  np.testing.assert_array_equal(draw(0), draw(0))
  assert not np.array_equal(draw(0), draw(1))
  # top_k = 1 is greedy decoding.
  np.testing.assert_array_equal(draw(3, top_k=1), np.asarray(sample.generate(mdl, prompt, 20)))


def test_bad_sampling_arguments_are_named():
  mdl = random_model()
  prompt = jnp.zeros((1, 3), jnp.int32)
  with pytest.raises(ValueError, match="--temperature must be >= 0, got -1"):
    sample.generate(mdl, prompt, 5, temperature=-1)
  with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings 64"):
    sample.generate(mdl, prompt, 62)


def test_sample_cli_from_a_trained_workdir(tmp_path):
  cache = tmp_path / "tfds"
  fineweb, tokenizer = tmp_path / "fineweb", tmp_path / "tokenizer.json"
  fineweb.mkdir()
  texts = [f"def f{i}(x):\n    return x + {i}  # document {i}\n" * 8 for i in range(300)]
  pq.write_table(pa.table({"text": texts, "id": [f"<urn:uuid:{i}>" for i in range(300)]}),
                 fineweb / "shard-0.parquet")
  bpe.train_tokenizer(texts, 512).save(str(tokenizer))
  workdir = tmp_path / "run"
  run(command(workdir, *SHORT, "--steps", "20", "--data", "fineweb", "--data-dir", str(fineweb),
              "--tokenizer", str(tokenizer)), cache)
  args = [sys.executable, "-m", "train.sample", "--workdir", str(workdir),
          "--prompt", "def ", "--max-new-tokens", "16"]
  first = run(args, cache).stdout
  assert first.startswith("def ") and len(first) > len("def \n")
  assert run(args, cache).stdout == first  # temperature 0: deterministic
  result = subprocess.run([*args[:4], str(tmp_path / "none"), *args[5:]], cwd=REPO,
                          env=environment(cache), capture_output=True, text=True)
  assert result.returncode == 2
  assert own_lines(result.stderr) == [
      f"error: --workdir {tmp_path / 'none'} holds no run (run.json is missing)"]

  # A workdir moved elsewhere, whose recorded data and tokenizer paths are
  # gone, still samples the same: sampling needs the workdir alone.
  shutil.rmtree(fineweb)
  tokenizer.unlink()
  moved = tmp_path / "moved"
  workdir.rename(moved)
  assert run([*args[:4], str(moved), *args[5:]], cache).stdout == first
