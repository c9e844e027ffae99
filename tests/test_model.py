"""Qwen3 in Flax NNX against transformers' PyTorch Qwen3, and weight round trips."""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from train import hf
from train.model import CONFIGS, Qwen3Config, Qwen3ForCausalLM

HF_TINY = dict(
    vocab_size=97, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=12,  # != 32 / 4
    rms_norm_eps=1e-6, max_position_embeddings=64)


def _torch_model(tied, rope_theta, seed=0):
  torch.manual_seed(seed)
  config = transformers.Qwen3Config(
      **HF_TINY, tie_word_embeddings=tied,
      rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
      attn_implementation="eager")
  model = transformers.Qwen3ForCausalLM(config).eval()
  with torch.no_grad():  # norms away from 1, so a skipped norm shows
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1 + 0.5 * torch.randn_like(p))
  return model, config


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("rope_theta", [1e4, 1e6])
def test_logits_match_transformers(tied, rope_theta):
  torch_model, hf_config = _torch_model(tied, rope_theta)
  config = Qwen3Config.from_hf(hf_config.to_dict())
  assert config.head_dim == 12 and config.tie_word_embeddings == tied
  assert config.rope_theta == rope_theta
  model = Qwen3ForCausalLM(config, rngs=nnx.Rngs(0))
  hf.load_hf_state_dict(model, torch_model.state_dict())
  ids = np.random.default_rng(0).integers(0, HF_TINY["vocab_size"], (3, 20))
  with torch.no_grad():
    want = torch_model(torch.as_tensor(ids)).logits.numpy()
  got = np.asarray(model(jnp.asarray(ids, jnp.int32)))
  assert got.dtype == np.float32 and got.shape == want.shape
  assert np.max(np.abs(got - want)) <= 1e-4


def test_from_hf_accepts_rope_theta_and_rope_parameters():
  old = Qwen3Config.from_hf({**HF_TINY, "rope_theta": 5e5})
  new = Qwen3Config.from_hf({**HF_TINY, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})
  assert old == new and old.rope_theta == 5e5


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_export_import_round_trip(tied, tmp_path):
  from safetensors.numpy import save_file
  config = dataclasses.replace(Qwen3Config.from_hf(HF_TINY), tie_word_embeddings=tied)
  source = Qwen3ForCausalLM(config, rngs=nnx.Rngs(1))
  exported = hf.to_hf_state_dict(source)
  assert ("lm_head.weight" in exported) == (not tied)
  save_file(exported, tmp_path / "model.safetensors")
  target = Qwen3ForCausalLM(config, rngs=nnx.Rngs(2))
  hf.load_hf_state_dict(target, tmp_path / "model.safetensors")
  jax.tree.map(np.testing.assert_array_equal,
               nnx.to_pure_dict(nnx.state(source, nnx.Param)),
               nnx.to_pure_dict(nnx.state(target, nnx.Param)))
  # A tied checkpoint that carries lm_head.weight loads too.
  if tied:
    hf.load_hf_state_dict(target, {**exported, "lm_head.weight": exported["model.embed_tokens.weight"]})


def test_bad_state_dict_lists_every_problem():
  config = Qwen3Config.from_hf({**HF_TINY, "tie_word_embeddings": False})
  model = Qwen3ForCausalLM(config, rngs=nnx.Rngs(0))
  sd = hf.to_hf_state_dict(model)
  del sd["model.norm.weight"], sd["lm_head.weight"]
  sd["model.layers.0.self_attn.q_proj.bias"] = np.zeros(48)
  sd["model.layers.1.mlp.up_proj.weight"] = np.zeros((3, 4))
  with pytest.raises(ValueError) as e:
    hf.load_hf_state_dict(model, sd)
  msg = str(e.value)
  for part in ("model.norm.weight", "lm_head.weight",
               "model.layers.0.self_attn.q_proj.bias",
               "model.layers.1.mlp.up_proj.weight: got (3, 4), expected (56, 32)"):
    assert part in msg, part


def test_named_configs_parameter_counts():
  counts = {}
  for name in ("nano", "small", "qwen3-134m", "qwen3-0.6b"):
    shapes = nnx.eval_shape(lambda: Qwen3ForCausalLM(CONFIGS[name], rngs=nnx.Rngs(0)))
    counts[name] = sum(x.size for x in jax.tree.leaves(nnx.state(shapes, nnx.Param)))
  assert counts["qwen3-134m"] == 134_825_344
  assert counts["qwen3-0.6b"] == 596_049_920
  assert 500_000 <= counts["nano"] <= 1_500_000
  assert 15_000_000 <= counts["small"] <= 25_000_000


def test_bad_config_names_the_field():
  with pytest.raises(ValueError, match="num_key_value_heads=3"):
    Qwen3Config.from_hf({**HF_TINY, "num_key_value_heads": 3})
  with pytest.raises(ValueError, match="Qwen3Config.dtype"):
    Qwen3Config.from_hf(HF_TINY, dtype="float16")


def test_a_bfloat16_safetensors_checkpoint_loads(tmp_path):
  """Qwen3's released weights are bfloat16 safetensors, written by torch."""
  from safetensors.torch import save_file
  torch_model, hf_config = _torch_model(tied=True, rope_theta=1e6)
  save_file({k: v.to(torch.bfloat16).contiguous() for k, v in torch_model.state_dict().items()
             if k != "lm_head.weight"}, tmp_path / "model.safetensors")
  model = Qwen3ForCausalLM(Qwen3Config.from_hf(hf_config.to_dict()), rngs=nnx.Rngs(0))
  hf.load_hf_state_dict(model, tmp_path / "model.safetensors")
  expected = torch_model.model.embed_tokens.weight.detach().to(torch.bfloat16).float().numpy()
  np.testing.assert_array_equal(np.asarray(model.model.embed_tokens.embedding[...]), expected)
