import os

import pytest

from train.hardware import compilers

# The tests compile for TPUs and GPUs ahead of time in this process too, so
# it puts their compilers on its path (before the first jax import), with
# the CPU as its only runtime backend. The processes tests start do not see
# them, as no process a user starts does.
compilers.use()
# Simulated CPU devices for the parallel tests; must precede the first jax import.
# The tests' programs run a few steps and take longer to compile than to run:
# LLVM's -O0 halves XLA's CPU compile time, and gives the same results to
# float32 rounding (tests compare programs compiled alike). The processes
# tests start inherit it (tests.helpers.environment); a user's commands
# (README's, the docs') run without it.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
# Many tests (and the training processes they start, which inherit it) compile
# the same programs: JAX's persistent cache compiles each once. A program
# loaded from it is the one compiled, so results are unchanged.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache",
    "jax_compilation"))


# The modules of the end-to-end runs (minutes each), started first so that
# parallel workers finish together rather than one waiting on a late long test.
END_TO_END = ("test_benchmark_results.py", "test_readme.py", "test_train.py", "test_notebooks.py",
              "test_scale.py")


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: item.path.name not in END_TO_END)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
  """The `TFDS_DATA_DIR` of the end-to-end runs on the stdlib corpus: its
  prepared splits, tokenizer and packed windows, shared by the whole session
  (every xdist worker): the first run prepares them under train.data's lock,
  the others wait and read them."""
  root = tmp_path_factory.getbasetemp()
  if "PYTEST_XDIST_WORKER" in os.environ:
    root = root.parent  # the session's directory, above each worker's own
  (root / "tfds").mkdir(exist_ok=True)
  return root / "tfds"
