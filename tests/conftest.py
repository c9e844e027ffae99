import os

# Simulated CPU devices for the parallel tests; must precede the first jax import.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# Many tests (and the training processes they start, which inherit it) compile
# the same programs: JAX's persistent cache compiles each once. A program
# loaded from it is the one compiled, so results are unchanged.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache",
    "jax_compilation"))


def pytest_collection_modifyitems(items):
  """Starts the end-to-end runs first, so parallel workers finish together."""
  items.sort(key=lambda item: item.path.name != "test_train.py")
