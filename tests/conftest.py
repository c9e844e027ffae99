import os

# Simulated CPU devices for the parallel tests; must precede the first jax import.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")


def pytest_collection_modifyitems(items):
  """Starts the end-to-end runs first, so parallel workers finish together."""
  items.sort(key=lambda item: item.path.name != "test_train.py")
