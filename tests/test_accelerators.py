"""The train step compiled for TPUs and GPUs this machine does not have
(`python -m train.memory --target`), and the chip table it reads."""

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from train import step
from train.hardware import accelerators, compilers, memory, memory_results
from train.config import from_args

from tests.helpers import REPO, own_lines

TINY = ["--config", "nano", "--batch-size", "16", "--seq-len", "64"]
# The fields the JSON of `--json PATH` promises.
FIELDS = {"target", "device_kind", "devices", "processes", "per_device_bytes", "peak_bytes",
          "hbm_bytes", "fits", "grad_accum", "model_flops_per_step", "collectives",
          "compile_s", "required_bytes"}


def memory_command(tmp_path, *flags):
  """`python -m train.memory FLAGS --json PATH`: the JSON it wrote and what it printed."""
  out = tmp_path / "memory.json"
  result = subprocess.run([sys.executable, "-m", "train.memory", *flags, "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(out.read_text()), result.stdout


def compiled_here(flags, target, runs=1):
  """The step of `flags` compiled in this process for `target`'s devices,
  straight from the Trainer."""
  config = from_args([*flags, "--data", "python_stdlib"])
  devices = accelerators.target_devices(accelerators.parse_target(target))
  trainer = step.Trainer([dataclasses.replace(config, seed=k) for k in range(runs)],
                         mesh=step.make_mesh(devices))
  batch = jax.ShapeDtypeStruct((1, runs, config.batch_size, config.seq_len + 1), jnp.int32,
                               sharding=trainer.batch_sharding)
  return trainer.train_steps.lower(trainer.abstract_state, batch).compile()


# This process's persistent compilation cache (tests/conftest.py) cannot load
# an executable of compile-only devices: it says so, and compiles.
no_cache_warning = pytest.mark.filterwarnings(
    "ignore:Error reading persistent compilation cache entry")


def check_sweep(tmp_path, target, *flags):
  """`python -m train.memory` on a sweep of 2 runs of `TINY + flags` for
  `target`: its JSON's figures are the step's compiled here, its runs are
  vmapped as on the chip (this CPU would loop them), its FLOPs and bound are
  the formula's. Returns the JSON."""
  result, printed = memory_command(tmp_path, *TINY, *flags, "--target", target, "--runs", "2")
  assert FIELDS <= set(result) and result["target"] == target
  figures = compiled_here([*TINY, *flags], target, runs=2).memory_analysis()
  assert (result["arguments"], result["outputs"], result["temporaries"],
          result["aliased"], result["peak_bytes"]) == (
      figures.argument_size_in_bytes, figures.output_size_in_bytes,
      figures.temp_size_in_bytes, figures.alias_size_in_bytes, figures.peak_memory_in_bytes)
  assert result["per_device_bytes"] == (result["arguments"] + result["outputs"]
                                        + result["temporaries"] - result["aliased"])
  assert f"{result['per_device_bytes'] / 2**20:.1f} MiB" in printed
  # Where it prints the total and XLA's peak, it says why they differ.
  assert memory._PEAK_VERSUS_TOTAL[memory._platform(result["device_kind"])] in printed
  assert result["vmap_runs"] == 2
  chip = accelerators.CHIPS[result["device_kind"]]
  assert result["hbm_bytes"] == chip.hbm_bytes and result["fits"] is True
  config = from_args(TINY)
  flops = 2 * config.tokens_per_step * config.model_config.train_flops_per_token(64)
  assert result["model_flops_per_step"] == flops
  assert result["step_time_bound_s"] == pytest.approx(
      flops / (chip.peak_bf16_flops * result["devices"]))
  return result


@no_cache_warning
def test_an_fsdp_sweep_compiles_for_a_tpu_slice_as_its_json_says(tmp_path):
  result = check_sweep(tmp_path, "v5e:2x2", "--fsdp")
  assert (result["devices"], result["device_kind"]) == (4, "TPU v5 lite")
  # What the chip must hold: XLA's peak, which the TPU compiler checks itself.
  assert result["required_bytes"] == result["peak_bytes"]
  # Parameters gathered for use, gradients reduced and scattered to their shards.
  assert result["collectives"]["all-gather"] > 0
  assert result["collectives"]["reduce-scatter"] > 0


@no_cache_warning
def test_a_sweep_compiles_for_gpus_as_its_json_says(tmp_path):
  result = check_sweep(tmp_path, "h200:2")
  assert (result["devices"], result["device_kind"]) == (2, "NVIDIA H200")
  # What the chip must hold: the total, which a GPU's runtime allocates whole.
  assert result["required_bytes"] == result["per_device_bytes"]
  assert result["collectives"]["all-reduce"] >= 1  # the data-parallel gradient


def test_a_step_too_big_for_the_chip_does_not_fit_and_fit_finds_the_grad_accum_that_does(
    tmp_path):
  # 2048 sequences of 256 on one TPU v5e: their attention scores and logits
  # alone are about 16 GiB, over the 15.75 GiB the compiler can use.
  flags = ["--config", "nano", "--batch-size", "2048", "--seq-len", "256", "--loss-chunk",
           "0", "--target", "v5e:1x1"]
  result, printed = memory_command(tmp_path, *flags, "--fit")
  too_big, fitting = result["tried"]
  assert too_big["grad_accum"] == 1 and too_big["fits"] is False
  assert too_big["required_bytes"] > 15.75 * 2**30  # the compiler's own figure
  assert fitting == {"grad_accum": 2, "fits": True,
                     "required_bytes": result["peak_bytes"]}
  assert result["grad_accum"] == 2 and result["fits"] is True
  assert result["required_bytes"] <= result["hbm_bytes"] == 16 * 2**30
  needs = too_big["required_bytes"] / 2**30
  assert f"tried --grad-accum 1 (does not fit: needs {needs:.2f} GiB), 2 (fits)" in printed


def test_the_model_flops_formula_is_xlas_count_of_a_step_without_loops():
  """XLA's `cost_analysis` counts a loop's body once; a step with no remat
  scan, loss chunks, microbatches or repeated steps is one pass, where its
  count is the step's. It counts elementwise work too, which the formula
  leaves out: at most ~30 FLOPs per softmax element (scores, vocabulary)
  and per hidden unit per layer (norms, RoPE, SiLU, residuals, both passes),
  and ~20 per parameter for AdamW's update."""
  flags = ["--config", "nano", "--batch-size", "4", "--seq-len", "128", "--no-remat",
           "--loss-chunk", "0", "--steps-per-call", "1", "--optimizer", "adamw"]
  config = from_args(flags)
  trainer = step.Trainer([config], mesh=step.make_mesh(jax.devices()[:1]))
  batch = jax.ShapeDtypeStruct((1, 1, 4, 129), jnp.int32, sharding=trainer.batch_sharding)
  counted = trainer.train_steps.lower(trainer.abstract_state, batch).compile().cost_analysis()
  cfg, tokens = config.model_config, config.tokens_per_step
  analytic = tokens * cfg.train_flops_per_token(config.seq_len)
  params = sum(x.size for x in jax.tree.leaves(trainer.abstract_state.params))
  elementwise = 30 * tokens * (
      cfg.num_hidden_layers * (cfg.num_attention_heads * config.seq_len + cfg.hidden_size
                               + cfg.intermediate_size) + cfg.vocab_size) + 20 * params
  assert analytic <= counted["flops"] <= analytic + elementwise


@pytest.mark.parametrize("name", ["v5e:2x4", "v6e:2x2", "v5p:2x2x2", "h100:8", "h200:16"])
def test_a_targets_devices_name_it_back(name):
  devices = accelerators.target_devices(accelerators.parse_target(name))
  assert accelerators.target_of(devices) == name
  chip = accelerators.CHIPS[devices[0].device_kind]
  assert accelerators.per_device(chip, devices) == (chip.hbm_bytes, chip.peak_bf16_flops)


def test_slices_multiply_a_tpu_topology():
  devices = accelerators.target_devices(accelerators.parse_target("v5e:2x2", slices=2))
  assert len(devices) == 8 and {d.slice_index for d in devices} == {0, 1}
  assert accelerators.target_of(devices) is None  # no one --target names two slices


def test_a_bad_target_is_one_line(tmp_path):
  for target, message in [
      ("v9x:2x2", "unknown --target 'v9x:2x2'"),
      ("h100:two", "--target 'h100:two': expected h100:N"),
      ("v5e:3x5", "--target v5e:3x5: libtpu has no such topology")]:
    result = subprocess.run([sys.executable, "-m", "train.memory", *TINY, "--target", target],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    (line,) = own_lines(result.stderr)
    assert line.startswith(f"error: {message}"), line


def test_a_missing_or_unmatched_compiler_says_how_to_install_it(monkeypatch):
  versions = {"libtpu": None, "jax-cuda12-plugin": "0.4.1"}
  monkeypatch.setattr(compilers, "installed_version", versions.get)
  jax_version = jax.__version__
  with pytest.raises(compilers.CompilerMissing, match=r"libtpu==0\.0\.\d+\.\*.*none is "
                                                      r"installed in .*: python -m "
                                                      r"train\.hardware\.compilers$"):
    accelerators.target_devices(accelerators.parse_target("v5e:2x2"))
  with pytest.raises(compilers.CompilerMissing,
                     match=rf"jax-cuda12-plugin=={jax_version}.*0\.4\.1 is installed"):
    accelerators.target_devices(accelerators.parse_target("h100:1"))


def test_the_compilers_are_the_versions_jax_pins_and_only_target_compiles_see_them():
  from packaging.requirements import Requirement

  for requirement in map(Requirement, compilers.requirements()):
    assert compilers.installed_version(requirement.name) in requirement.specifier
  assert str(compilers.directory()) in sys.path  # this process compiles for targets
  child = subprocess.run([sys.executable, "-c", "import sys, importlib.util; "
                          "print(importlib.util.find_spec('libtpu'), "
                          "importlib.util.find_spec('jax_cuda12_plugin'))"],
                         capture_output=True, text=True, check=True)
  assert child.stdout.split() == ["None", "None"]
  environment = compilers.environment({"PYTHONPATH": "/elsewhere"})
  assert environment["PYTHONPATH"] == f"{compilers.directory()}:/elsewhere"
  assert environment["JAX_PLATFORMS"] == "cpu"


def test_the_committed_accelerator_report_is_its_json():
  """results/accelerators.md renders its JSON, which holds every case, and
  docs/scale.md's table of what fits where is its table."""
  data = json.loads((REPO / "results" / "accelerators.json").read_text())
  assert (REPO / "results" / "accelerators.md").read_text() == memory_results.accelerator_markdown(data)
  assert memory_results.fit_table(data) in (REPO / "docs" / "scale.md").read_text()
  assert [(c["flags"], c["target"]) for c in data["cases"]] == memory_results.accelerator_cases()
  ladm_v5e = next(c for c in data["cases"]
                  if c["flags"] == ["--preset", "ladm-paper"] and c["target"] == "v5e:2x4")
  assert [(t["grad_accum"], t["fits"]) for t in ladm_v5e["tried"]] == [(1, False), (2, True)]
  # The TPU compiler's own check is XLA's peak: on v5e, every step it refused
  # needed more than any step it accepted peaks at.
  v5e = [c for c in data["cases"] if c["device_kind"] == "TPU v5 lite"]
  refused = [t["required_bytes"] for c in v5e for t in c["tried"] if not t["fits"]]
  accepted = [c["peak_bytes"] for c in v5e if c["fits"]]
  assert refused and accepted and min(refused) > max(accepted)
  assert any(c["per_device_bytes"] > min(refused) for c in v5e if c["fits"])
