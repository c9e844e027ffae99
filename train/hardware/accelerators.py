"""The chips users train on, and their devices on a machine that has none.

`CHIPS` is the one table of each chip's memory and dense bfloat16 peak (the
vendors' datasheets), read by `train.hardware.memory` and `train.hardware.device_check`.

`target_devices` returns compile-only devices of a TPU slice or of NVIDIA
GPUs: XLA compiles a step for them on this CPU (JAX's ahead-of-time
compilation), with the TPU compiler of `libtpu` or the GPU compiler of the
CUDA plugin, and no chip present. A target is named as libtpu names TPU
topologies (`v5e:2x4`, `v6e:2x2`, `v5p:2x2x2`, `v4:2x2x1`, ...) or as
`h100:N` / `h200:N` for N GPUs, 8 per host. The process that calls it must
have the compilers on its path (`train.hardware.compilers`).
"""

from __future__ import annotations

import dataclasses
import math
import re

from train.hardware import compilers

GiB = 2**30
GPUS_PER_HOST = 8
MAX_CHIPS_PER_HOST = 8  # of any TPU host (a v5e-8 or v6e-8 VM)


@dataclasses.dataclass(frozen=True)
class GpuSpec:
  """What XLA's GPU compiler needs to know of an NVIDIA chip (its published
  properties: CUDA's device attributes and the datasheet)."""
  compute_capability: tuple[int, int]
  sm_count: int
  clock_ghz: float  # boost clock
  memory_bandwidth: float  # bytes/s
  l2_cache_bytes: int
  # Per-SM and per-block limits, the same on every Hopper chip.
  shared_memory_per_sm: int = 233_472
  shared_memory_per_block_optin: int = 232_448
  registers_per_sm: int = 65_536
  threads_per_sm: int = 2048


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator chip, as its vendor's datasheet gives it."""
  device_kind: str  # what jax.Device.device_kind says of it
  hbm_bytes: int  # memory of one chip (the datasheet's GB of HBM are GiB)
  peak_bf16_flops: float  # dense bfloat16 matmul FLOP/s of one chip
  target: str | None = None  # the --target prefix that compiles for it
  gpu: GpuSpec | None = None  # NVIDIA chips only: what their compiler needs


_HOPPER = dict(compute_capability=(9, 0), sm_count=132, clock_ghz=1.98,
               l2_cache_bytes=50 * 2**20)
CHIPS: dict[str, Chip] = {chip.device_kind: chip for chip in (
    Chip("TPU v4", 32 * GiB, 275e12, target="v4"),
    Chip("TPU v5 lite", 16 * GiB, 197e12, target="v5e"),
    Chip("TPU v5", 95 * GiB, 459e12, target="v5p"),
    Chip("TPU v6 lite", 32 * GiB, 918e12, target="v6e"),
    Chip("NVIDIA H100 80GB HBM3", 80 * GiB, 989e12, target="h100",
         gpu=GpuSpec(memory_bandwidth=3.35e12, **_HOPPER)),
    Chip("NVIDIA H200", 141 * GiB, 989e12, target="h200",
         gpu=GpuSpec(memory_bandwidth=4.8e12, **_HOPPER)),
    Chip("NVIDIA H100 PCIe", 80 * GiB, 756e12),
    Chip("NVIDIA A100-SXM4-80GB", 80 * GiB, 312e12),
    Chip("NVIDIA A100-SXM4-40GB", 40 * GiB, 312e12),
)}
TARGETS = {chip.target: chip for chip in CHIPS.values() if chip.target}


@dataclasses.dataclass(frozen=True)
class Target:
  """A `--target` parsed: the chip, libtpu's topology name or the GPU count."""
  name: str
  chip: Chip
  slices: int = 1

  @property
  def platform(self) -> str:
    return "cuda" if self.chip.gpu else "tpu"

  @property
  def gpus(self) -> int:
    return int(self.name.split(":")[1])


def parse_target(name: str, slices: int = 1) -> Target:
  """`--target NAME` (and `--slices N`) checked; a ValueError names what is wrong."""
  prefix, _, shape = name.partition(":")
  chip = TARGETS.get(prefix)
  if chip is None:
    raise ValueError(f"unknown --target {name!r}: expected one of "
                     f"{', '.join(f'{t}:...' for t in TARGETS)}")
  if slices < 1:
    raise ValueError(f"--slices must be positive, got {slices}")
  if chip.gpu:
    if not re.fullmatch(r"[1-9]\d*", shape):
      raise ValueError(f"--target {name!r}: expected {prefix}:N, N GPUs")
    gpus = int(shape)
    if gpus > GPUS_PER_HOST and gpus % GPUS_PER_HOST:
      raise ValueError(f"--target {name!r}: more than {GPUS_PER_HOST} GPUs come "
                       f"{GPUS_PER_HOST} per host, got {gpus}")
    if slices != 1:
      raise ValueError("--slices is for TPU targets (multi-slice); for GPUs give the "
                       f"total count, {prefix}:N")
  elif not re.fullmatch(r"\d+x\d+(x\d+)?", shape):
    raise ValueError(f"--target {name!r}: expected a TPU topology such as {prefix}:2x4 "
                     f"or {prefix}:2x2x2 (chips along each axis)")
  return Target(name, chip, slices)


def _gpu_target_config(chip: Chip) -> str:
  """XLA's GpuTargetConfigProto (text format) of an NVIDIA chip."""
  g = chip.gpu
  major, minor = g.compute_capability
  return f"""
gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: {g.shared_memory_per_block_optin}
  shared_memory_per_core: {g.shared_memory_per_sm}
  threads_per_core_limit: {g.threads_per_sm}
  core_count: {g.sm_count}
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {int(g.memory_bandwidth)}
  l2_cache_size: {g.l2_cache_bytes}
  clock_rate_ghz: {g.clock_ghz}
  device_memory_size: {chip.hbm_bytes}
  cuda_compute_capability {{ major: {major} minor: {minor} }}
  registers_per_core_limit: {g.registers_per_sm}
  registers_per_block_limit: {g.registers_per_sm}
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
device_description_str: "{chip.device_kind}"
"""


def target_devices(target: Target) -> list:
  """The compile-only devices of `target`, in their topology's order."""
  import jax
  from jax.experimental import topologies

  compilers.check(target.platform, target.name)
  if target.platform == "cuda":
    hosts = max(1, target.gpus // GPUS_PER_HOST)
    topology = topologies.get_topology_desc(
        platform="cuda", topology_name="", target_config=_gpu_target_config(target.chip),
        topology=f"1x{hosts}x{target.gpus // hosts}")
  else:
    tpu = lambda **hosts: topologies.get_topology_desc(
        platform="tpu", topology_name=target.name, num_slices=target.slices, **hosts)
    try:
      try:
        topology = tpu()  # libtpu's hosts: as many as the slice has
      except jax.errors.JaxRuntimeError as e:
        chips = [int(n) for n in target.name.split(":")[1].split("x")]
        if "chips_per_host_bounds" not in str(e) or math.prod(chips) > MAX_CHIPS_PER_HOST:
          raise
        # A slice smaller than libtpu's host (v5e:1x1 of its 2x2) is one host.
        topology = tpu(chips_per_host_bounds=(*chips, 1)[:3])
    except jax.errors.JaxRuntimeError as e:
      if not str(e).startswith("INVALID_ARGUMENT"):
        raise
      raise ValueError(f"--target {target.name}: libtpu has no such topology "
                       f"({str(e).splitlines()[0]})") from e
  return list(topology.devices)


def target_of(devices: list) -> str | None:
  """The `--target` of the chips of `devices` (a TPU slice's topology, or
  `h100:N`), None where none names them (a CPU, another chip, several slices)."""
  chip = CHIPS.get(devices[0].device_kind)
  if chip is None or chip.target is None:
    return None
  if chip.gpu:
    return f"{chip.target}:{len(devices)}"
  if len({getattr(d, "slice_index", 0) for d in devices}) > 1:
    return None
  shape = [max(d.coords[axis] for d in devices) + 1 for axis in range(3)]
  if chip.target in ("v5e", "v6e"):  # libtpu names their 2-D tori by two axes
    shape = shape[:2]
  return f"{chip.target}:{'x'.join(map(str, shape))}"


def per_device(chip: Chip, devices: list) -> tuple[int, float]:
  """HBM bytes and peak FLOP/s of one of `devices`: a chip's, divided among
  its cores where each core is a device (TPU v4 without megacore)."""
  chips = {(getattr(d, "slice_index", 0), tuple(getattr(d, "coords", (d.id,))))
           for d in devices}
  cores = len(devices) // len(chips)
  return chip.hbm_bytes // cores, chip.peak_bf16_flops / cores
