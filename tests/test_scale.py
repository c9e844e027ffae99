"""The train step at scale: the chunked loss, gradient accumulation and
rematerialisation equal the plain step and compose with sharding, sweeps and
exact resume."""

import dataclasses
import json
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import layeropt_jax

from train import model, step
from train.config import TrainConfig

from tests.helpers import (
    REPO, SHORT, TINY, command, environment, kill_when, one_device_mesh, own_lines, records,
    run, tiny_trainer, train_losses, without_timing)

# Float32 sums of n terms in another order differ by at most about n
# roundings of 2^-24 relative; these tests sum at most a few hundred terms
# (positions of a batch, microbatches), so 2e-5 bounds the relative error and
# atol covers gradient elements that cancel to ~0.
RTOL, ATOL = 2e-5, 1e-7


def tokens(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, TINY.vocab_size, shape), jnp.int32)


@pytest.mark.parametrize("tied", [True, False])
def test_the_chunked_loss_and_its_gradient_equal_the_direct_ones(tied):
  config = dataclasses.replace(TINY, tie_word_embeddings=tied, max_position_embeddings=64)
  graphdef, params = nnx.split(model.Qwen3ForCausalLM(config, rngs=nnx.Rngs(0)), nnx.Param)
  batch = tokens((4, 33))
  direct = jax.value_and_grad(lambda p: step.loss_fn(graphdef, p, batch))(params)
  # Logits the direct loss computes at once, as the model does.
  logits = nnx.merge(graphdef, params)(batch[:, :-1])
  assert logits.shape == (4, 32, TINY.vocab_size)
  for chunk in (5, 8, 31):  # with a remainder, dividing, one short of the sequence
    chunked = jax.value_and_grad(lambda p: step.loss_fn(graphdef, p, batch, chunk))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL),
                 chunked, direct)


def test_the_chunked_loss_keeps_one_chunk_of_logits_at_a_time():
  vocab = 8192  # logits dominate memory, as with Qwen3's 151,936 tokens
  config = dataclasses.replace(TINY, vocab_size=vocab, max_position_embeddings=256)
  graphdef, params = nnx.split(model.Qwen3ForCausalLM(config, rngs=nnx.Rngs(0)), nnx.Param)
  batch = jax.ShapeDtypeStruct((8, 257), jnp.int32)

  def temp_bytes(chunk):
    grad = jax.jit(jax.grad(lambda p, t: step.loss_fn(graphdef, p, t, chunk)))
    return grad.lower(params, batch).compile().memory_analysis().temp_size_in_bytes

  logits_bytes = 8 * 256 * vocab * 4
  # The direct loss keeps the whole [B, T, V] logits and their gradient; with
  # chunks of 8 of the 256 positions, 1/32 of them (and the rest of the step).
  assert temp_bytes(0) > 2 * logits_bytes
  assert temp_bytes(8) < temp_bytes(0) / 4


def test_microbatches_equal_the_full_batch():
  graphdef, params = nnx.split(model.Qwen3ForCausalLM(TINY, rngs=nnx.Rngs(0)), nnx.Param)
  batch = tokens((8, 17))
  loss = lambda p, t: step.loss_fn(graphdef, p, t)
  full = step.value_and_grad(loss, params, batch, 1)
  for microbatches in (2, 4, 8):
    accumulated = step.value_and_grad(loss, params, batch, microbatches)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL),
                 accumulated, full)


def test_grad_accum_remat_and_chunks_train_as_the_plain_step_on_fsdp_and_sweeps():
  assert jax.device_count() == 8
  seeds, lrs = (0, 1), (1e-3, 3e-3)
  plain, _ = train_losses(tiny_trainer(one_device_mesh(), seeds=seeds, lrs=lrs),
                          batch=16, data_seeds=seeds)
  fitted, _ = train_losses(
      tiny_trainer(step.make_mesh(), seeds=seeds, lrs=lrs, fsdp=True, grad_accum=2,
                   loss_chunk=5, model_config=dataclasses.replace(TINY, remat=True)),
      batch=16, data_seeds=seeds)
  # Four Adam-like steps (LADM) of a loss computed to RTOL: the updates'
  # normalisation can amplify rounding in tiny gradients, hence 1e-4.
  np.testing.assert_allclose(fitted, plain, rtol=1e-4)


def test_remat_changes_nothing_but_memory():
  config = dataclasses.replace(TINY, num_hidden_layers=4, max_position_embeddings=256)
  params = nnx.state(model.Qwen3ForCausalLM(config, rngs=nnx.Rngs(0)), nnx.Param)
  batch = tokens((8, 257))

  def grads_and_temp_bytes(remat):
    graphdef = nnx.graphdef(model.Qwen3ForCausalLM(dataclasses.replace(config, remat=remat),
                                                   rngs=nnx.Rngs(0)))
    grad = jax.jit(jax.grad(lambda p, t: step.loss_fn(graphdef, p, t)))
    compiled = grad.lower(params, batch).compile()
    return grad(params, batch), compiled.memory_analysis().temp_size_in_bytes

  (plain, plain_bytes), (remat, remat_bytes) = map(grads_and_temp_bytes, (False, True))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL),
               remat, plain)
  assert remat_bytes < 0.7 * plain_bytes
  # The layers are stacked inside the step only: the optimizer sees the same
  # tree of 2-D weights, and an orthogonalising method the same matrices. The
  # gradients agree to RTOL; Adam's normalisation and Newton-Schulz's
  # Frobenius scaling make that error relative to each update's largest entry.
  tx = layeropt_jax.aovs(1e-3)
  update = lambda g: tx.update(g, tx.init(params), params)[0]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=0, atol=10 * RTOL * np.max(np.abs(b))), update(remat), update(plain))


def test_sophia_refuses_microbatches():
  with pytest.raises(ValueError, match="--grad-accum 2 cannot be used with --optimizer "
                                       "sophia: its Hessian estimate needs the loss"):
    TrainConfig(optimizer="sophia", grad_accum=2)
  with pytest.raises(ValueError, match="--batch-size 16 is not divisible by --grad-accum 3"):
    TrainConfig(grad_accum=3)


def test_a_killed_run_with_microbatches_resumes_exactly(tmp_path, data_cache):
  args = [*SHORT, "--steps", "20", "--grad-accum", "2", "--remat", "--loss-chunk", "12",
          "--fsdp"]
  uninterrupted = tmp_path / "uninterrupted"
  run(command(uninterrupted, *args), data_cache, devices=2)
  killed = tmp_path / "killed"
  kill_when(command(killed, *args), data_cache, (killed / "checkpoints" / "10").is_dir,
            devices=2)
  assert "done" not in (killed / "metrics.jsonl").read_text()
  run(command(killed, *args), data_cache, devices=2)
  assert without_timing(records(killed)) == without_timing(records(uninterrupted))


def memory(*flags):
  result = subprocess.run([sys.executable, "-m", "train.memory", "--json", "-", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_memory_report_reads_xlas_analysis_per_device():
  flags = ["--config", "nano", "--batch-size", "16", "--seq-len", "128"]
  one = memory(*flags, "--devices", "1")
  assert one["devices"] == 1
  assert one["per_device_bytes"] == (one["arguments"] + one["outputs"] + one["temporaries"]
                                     - one["aliased"])
  assert one["hbm_bytes"] is None and one["fits"] is None  # a CPU has no HBM
  # Sharded parameters and state: each of 2 devices holds about half of them.
  fsdp = memory(*flags, "--devices", "2", "--fsdp")
  assert fsdp["devices"] == 2 and fsdp["arguments"] < 0.6 * one["arguments"]
  # Microbatches: a quarter of the activations alive at once.
  accumulated = memory(*flags, "--devices", "1", "--grad-accum", "4")
  assert accumulated["temporaries"] < 0.5 * one["temporaries"]
  result = subprocess.run([sys.executable, "-m", "train.memory", "--config", "nano",
                           "--batch-size", "12", "--devices", "8"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 2
  assert own_lines(result.stderr) == [
      "error: --batch-size 12 / --grad-accum 1 does not divide over 8 devices"]


def test_the_device_check_runs_reduced_on_cpu(tmp_path, data_cache):
  out = tmp_path / "device.md"
  result = subprocess.run([sys.executable, "-m", "train.device_check", "--reduced",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env=environment(data_cache, devices=2))
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(out.with_suffix(".json").read_text())
  assert report["default_command"]["steps"] == 20
  assert np.isfinite(report["default_command"]["final_val_loss"])
  reports = report["reports_step"]
  assert reports["devices"].startswith("2 x ") and reports["tokens_per_s"] > 0
  assert reports["mfu"] is None  # no bf16 peak is known for a CPU
  assert reports["predicted"] == {"error": "no --target names cpu"}
  assert set(report["optimizer_step"]["trees"]["nano"]["optimizers"]) == {"adamw", "ladm", "lamvs"}
  text = out.read_text()
  for heading in ("default command in bfloat16", "The reports' step", "Optimizer step"):
    assert heading in text
