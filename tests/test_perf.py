"""The performance benchmarks run and report what they measure (no timing asserts)."""

import json
import re

import jax
import pytest

import layeropt_jax
from train import model, step
from train.perf import optimizer_step


def test_optimizer_step_reports_ratios_roofline_and_memory(tmp_path):
  out = tmp_path / "optim.json"
  optimizer_step.main(["--trees", "nano", "--names", "adamw,ladm,lamo", "--reps", "1",
                       "--iters", "1", "--out", str(out)])
  tree = json.loads(out.read_text())["trees"]["nano"]
  assert tree["params"] == 1_049_984 and tree["stream_bytes_per_s"] > 0  # nano
  results = tree["optimizers"]
  # Two float32 buffers, three for LADM; LAMO adds one scalar per tensor.
  assert results["adamw"]["state_bytes_per_param"] == pytest.approx(8, abs=1e-4)
  assert results["ladm"]["state_bytes_per_param"] == pytest.approx(12, abs=1e-4)
  assert results["lamo"]["state_bytes_per_param"] == pytest.approx(8, abs=1e-3)
  for r in results.values():
    assert r["time_ratio_vs_adamw"] > 0 and 0 < r["fraction_of_stream_bandwidth"]
    assert r["bytes_moved"] == pytest.approx(
        (3 * 4 + 2 * r["state_bytes_per_param"]) * tree["params"])
    assert r["temp_bytes_over_param_buffer"] <= 1.0


def test_trainer_step_compares_with_eager_and_compiled_pytorch_and_the_matmul_peak(tmp_path):
  from train.perf import trainer_step

  out = tmp_path / "train.json"
  # torch.compile's eager backend runs the compiled path without generating code
  # (Inductor takes minutes on 2 cores); results/perf.md's figures are Inductor's.
  trainer_step.main(["--configs", "nano", "--batch-size", "8", "--seq-len", "16", "--reps", "1",
                     "--iters", "1", "--sweep-runs", "0",
                     "--torch-compile-backend", "eager", "--out", str(out)])
  report = json.loads(out.read_text())
  assert report["command"].startswith("python -m train.perf.trainer_step --configs nano")
  nano = report["trainer"]["nano"]
  # XLA's defaults, PyTorch eager and under torch.compile
  for other in ("xla_defaults", "torch", "torch_compiled"):
    assert nano["tokens_per_s"] > 0 and nano[f"{other}_tokens_per_s"] > 0
    assert nano[f"speedup_vs_{other}"] == pytest.approx(
        nano["tokens_per_s"] / nano[f"{other}_tokens_per_s"], rel=1e-9)
  assert nano["compiler_options"] == step.step_compiler_options("cpu")
  assert set(report["cpu_features"]) <= {"avx2", "fma", "avx512f", "avx512_bf16",
                                         "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"}
  assert nano["flops_per_s"] == pytest.approx(report["matmul_flops_per_s"]
                                              * nano["fraction_of_matmul_peak"])


def test_aovs_step_temporaries_fit_one_parameter_buffer_at_134m():
  # Newton-Schulz on every hidden matrix at once kept three parameter-sized
  # buffers alive (optax.contrib.muon: 2.96); a compile, no timing.
  params = model.param_shapes("qwen3-134m")
  n_params = sum(x.size for x in jax.tree.leaves(params))
  tx = layeropt_jax.aovs(1e-3)
  assert optimizer_step.temp_bytes(tx, params) <= 4 * n_params


def test_state_memory_reports_what_mu_and_nu_dtype_save(tmp_path):
  from train.perf import state_memory

  out = tmp_path / "state.json"
  state_memory.main(["--tree", "nano", "--names", "ladm,adamw", "--out", str(out)])
  results = json.loads(out.read_text())["optimizers"]
  state = lambda name, setting: results[name][setting]["state_bytes_per_param"]
  # Three moments of 4 bytes; bfloat16 first moments save 2 + 2, nu 2 more.
  assert [state("ladm", s) for s in state_memory.SETTINGS] == pytest.approx(
      [12, 8, 6], abs=1e-4)
  # optax.adamw has no nu_dtype: that setting is absent, not faked.
  assert set(results["adamw"]) == {"float32", "mu bfloat16"}
  assert state("adamw", "mu bfloat16") == pytest.approx(6, abs=1e-4)


def test_metrics_overhead_reports_the_ratio(tmp_path):
  from train.perf import metrics_overhead

  out = tmp_path / "overhead.json"
  metrics_overhead.main(["--configs", "nano", "--batch-size", "8", "--seq-len", "16",
                         "--reps", "1", "--iters", "1", "--out", str(out)])
  nano = json.loads(out.read_text())["configs"]["nano"]
  assert nano["ratios"] and nano["time_ratio"] == nano["ratios"][0] > 0


def test_xla_flags_times_each_variant_in_its_own_process(tmp_path, capsys):
  from train.perf import xla_flags

  out = tmp_path / "flags.json"
  tiny = ["--batch-size", "2", "--seq-len", "16", "--iters", "1"]
  variants = ["--variant=", "--variant=--xla_cpu_experimental_ynn_fusion_type="]
  xla_flags.main(["--configs", "nano", "--reps", "2", *tiny, *variants, "--out", str(out)])
  rows = json.loads(out.read_text())["configs"]["nano"]["variants"]
  assert [r["xla_flags"] for r in rows] == ["", "--xla_cpu_experimental_ynn_fusion_type="]
  assert rows[0]["speed_vs_first"] == 1.0 and all(r["tokens_per_s"] > 0 for r in rows)
  # Where the time goes: operations by kind, the YNNPACK fusions among them by default.
  xla_flags.main(["--profile", "nano", *tiny, "--variant="])
  printed = capsys.readouterr().out
  assert re.search(r"nano \[\]: [\d.]+ ms of operations per step", printed)
  assert "ynn_fusion" in printed
