"""What the end-to-end tests share: running the CLI in a subprocess and
reading what a run wrote."""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
# A short run: 60 steps of 8 x 32 tokens, logging every 2 steps.
SHORT = ["--steps", "60", "--warmup", "5", "--batch-size", "8", "--seq-len", "32",
         "--log-every", "2", "--eval-every", "10", "--eval-batches", "2",
         "--checkpoint-every", "10", "--no-progress"]


def command(workdir, *args):
  return [sys.executable, "-m", "train.train", "--workdir", str(workdir), *args]


def environment(cache, devices=1):
  return {**os.environ, "TFDS_DATA_DIR": str(cache),
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def run(args, cache, devices=1):
  result = subprocess.run(args, cwd=REPO, env=environment(cache, devices),
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def records(workdir):
  return [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").open()]
