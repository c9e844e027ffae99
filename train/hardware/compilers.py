"""The compilers for chips this machine does not have, kept out of jax's way.

`python -m train.memory --target` compiles a step with libtpu (TPUs) or the
CUDA plugin (NVIDIA GPUs) on a machine that has neither chip. Installed where
jax looks for its backends, both would start in every process that imports
jax and log why they fail (no CUDA driver, no TPU VM). They are installed in
a directory of their own instead, in the versions the installed jax pins, and
only a process that compiles for a target puts it on its path:

  python -m train.hardware.compilers            # install them (1.2 GB)
  python -m train.hardware.compilers --check    # say where, and whether they are there

The directory is `$LAYEROPT_COMPILERS_DIR`, by default
`~/.cache/layeropt_jax/compilers/jax-<version>`: a jax upgrade gets its own.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import subprocess
import sys

from train import cli

# Each compiler and the extra of jax that pins its version. The CUDA plugin
# without its `with-cuda` extra: compiling needs no CUDA runtime.
PACKAGES = {"tpu": ("libtpu", "tpu"), "cuda": ("jax-cuda12-plugin", "cuda12")}

# The environment of a process that compiles for a target: the CPU as its
# only runtime backend; libtpu told it runs on no TPU VM (else it logs that it
# cannot find one; the topology it compiles for is given explicitly), and
# that other processes may load it at once (it owns the chips of a TPU VM,
# and of compile-only topologies would otherwise allow one process at a time).
TARGET_ENVIRONMENT = {"JAX_PLATFORMS": "cpu", "TPU_SKIP_MDS_QUERY": "1",
                      "TPU_WORKER_HOSTNAMES": "localhost",
                      "TPU_ACCELERATOR_TYPE": "v5litepod-8",
                      "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}


class CompilerMissing(Exception):
  """The compiler of a target is not installed, or not in the version jax needs."""


def directory() -> pathlib.Path:
  """Where the compilers for the installed jax live."""
  default = (pathlib.Path.home() / ".cache" / "layeropt_jax" / "compilers"
             / f"jax-{importlib.metadata.version('jax')}")
  return pathlib.Path(os.environ.get("LAYEROPT_COMPILERS_DIR", default))


def _required_version(package: str, extra: str) -> str:
  """The versions of `package` that the installed jax's `extra` asks for."""
  from packaging.requirements import Requirement

  for requirement in map(Requirement, importlib.metadata.requires("jax") or ()):
    if (requirement.name == package and requirement.marker is not None
        and requirement.marker.evaluate({"extra": extra})):
      bounds = {spec.version for spec in requirement.specifier}
      pinned = len(bounds) == 1 and {s.operator for s in requirement.specifier} == {">=", "<="}
      return f"=={bounds.pop()}" if pinned else str(requirement.specifier)
  return f"=={importlib.metadata.version('jax')}"


def requirements() -> list[str]:
  """The pip requirements of every compiler, as the installed jax pins them."""
  return [f"{package}{_required_version(package, extra)}"
          for package, extra in PACKAGES.values()]


def install() -> None:
  """pip-installs the compilers into `directory()`."""
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade",
                  "--target", str(directory()), *requirements()], check=True)


def installed_version(package: str) -> str | None:
  """The version of `package` in `directory()`, None if it is not there."""
  found = importlib.metadata.distributions(name=package, path=[str(directory())])
  return next((d.version for d in found), None)


def check(platform: str, target_name: str) -> None:
  """Raises a one-line `CompilerMissing` unless the compiler for `platform`
  ("tpu" or "cuda") is installed in the version the installed jax needs."""
  from packaging.specifiers import SpecifierSet

  package, extra = PACKAGES[platform]
  wanted = _required_version(package, extra)
  installed = installed_version(package)
  if installed is None or installed not in SpecifierSet(wanted):
    have = "none is installed" if installed is None else f"{installed} is installed"
    raise CompilerMissing(
        f"--target {target_name} compiles with {package}{wanted} (what jax "
        f"{importlib.metadata.version('jax')}'s {extra} extra pins), but {have} "
        f"in {directory()}: python -m train.hardware.compilers")


def use() -> None:
  """Puts the compilers on this process's path, for a process that compiles
  for targets itself; it must run before jax is imported."""
  if "jax" in sys.modules:
    raise RuntimeError("train.hardware.compilers.use() must run before jax is imported")
  sys.path.insert(0, str(directory()))
  for name, value in TARGET_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


def environment(environ: dict[str, str]) -> dict[str, str]:
  """`environ` for a process that compiles for targets: the compilers on its path."""
  path = os.pathsep.join(filter(None, [str(directory()), environ.get("PYTHONPATH")]))
  return {**environ, **TARGET_ENVIRONMENT, "PYTHONPATH": path}


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.hardware.compilers", __doc__)
  p.add_argument("--check", action="store_true",
                 help="print where they are and their versions, installing nothing")
  args = p.parse_args(argv)
  if not args.check:
    install()
  print(directory())
  for package, _ in PACKAGES.values():
    print(f"  {package}: {installed_version(package) or 'not installed'}")


if __name__ == "__main__":
  main()
