"""Data preparation and training: speed, and memory against the corpus size.

  python -m train.perf.data_prep [--gigabytes 0.25,1] [--workers 1,2]
      [--work-dir runs/data_prep] [--out results]

For each size, synthetic FineWeb-schema parquet (`train.perf.synthetic_fineweb`,
written once under `--work-dir`) is prepared by `python -m train.data` from
an empty cache with each worker count (one worker is held to one thread,
`TOKENIZERS_PARALLELISM=false`), then a short `nano` training run reads it.
The peak resident memory of each command's whole process tree (the
preparation's workers included) is sampled from /proc every 20 ms. Writes
`<out>/data.json` and `<out>/data.md`.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time

from train import cli, files, markdown, provenance
from train.perf import synthetic_fineweb

VOCAB, SEQ_LEN = 2048, 128  # the nano model's vocabulary and the default sequence
TRAIN_FLAGS = ["--config", "nano", "--steps", "30", "--warmup", "3", "--eval-every", "0",
               "--eval-batches", "2", "--log-every", "10", "--checkpoint-every", "30",
               "--no-progress"]


def _rss_bytes(pid: int) -> int:
  try:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
  except OSError:
    return 0
  match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
  return int(match.group(1)) * 1024 if match else 0


def _tree(pid: int) -> list[int]:
  """`pid` and its descendants."""
  children: dict[int, list[int]] = {}
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
  tree, todo = [], [pid]
  while todo:
    tree.append(todo.pop())
    todo += children.get(tree[-1], [])
  return tree


def measure(command: list[str], env: dict[str, str]) -> dict:
  """Runs `command`; its wall time, output and the peak RSS of its process
  tree (and of its main process alone)."""
  start = time.perf_counter()
  proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  peak_tree = peak_main = 0
  output: list[str] = []
  reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
  reader.start()
  while proc.poll() is None:
    rss = [_rss_bytes(p) for p in _tree(proc.pid)]
    peak_tree, peak_main = max(peak_tree, sum(rss)), max(peak_main, rss[0])
    time.sleep(0.02)
  reader.join()
  seconds = time.perf_counter() - start
  if proc.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{''.join(output)[-3000:]}")
  return {"seconds": seconds, "peak_rss_tree": peak_tree, "peak_rss_main": peak_main,
          "output": "".join(output)}


def prepared_counts(output: str) -> dict[str, int]:
  """Documents, tokens and shards over both splits, from train.data's summary."""
  counts = {"documents": 0, "tokens": 0, "shards": 0}
  for docs, tokens, shards in re.findall(
      r"^(?:train|validation): (\d+) documents, (\d+) tokens, (\d+) shards", output, re.M):
    counts["documents"] += int(docs)
    counts["tokens"] += int(tokens)
    counts["shards"] += int(shards)
  return counts


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.perf.data_prep", __doc__)
  p.add_argument("--gigabytes", default="0.25,1", help="corpus sizes, 1e9 bytes of text")
  p.add_argument("--workers", default="1,2", help="worker counts")
  p.add_argument("--work-dir", default="runs/data_prep",
                 help="where the synthetic corpora and their caches are written")
  p.add_argument("--out", default="results", help="directory of data.md and its JSON")
  args = p.parse_args(argv)
  work = pathlib.Path(args.work_dir).absolute()
  sizes = [float(x) for x in args.gigabytes.split(",")]
  workers = [int(x) for x in args.workers.split(",")]
  python = [sys.executable, "-m"]
  rows = []
  for size in sizes:
    corpus = work / f"fineweb-{size:g}GB"
    if not (corpus / "complete").is_file():
      shutil.rmtree(corpus, ignore_errors=True)
      synthetic_fineweb.write(corpus, int(size * 1e9))
      (corpus / "complete").touch()
    for n in workers:
      cache = work / f"cache-{size:g}GB-{n}"
      shutil.rmtree(cache, ignore_errors=True)
      env = dict(os.environ)
      if n == 1:
        env["TOKENIZERS_PARALLELISM"] = "false"
      result = measure([*python, "train.data", "--data", "fineweb", "--data-dir", str(corpus),
                        "--cache-dir", str(cache), "--seq-len", str(SEQ_LEN),
                        "--vocab-size", str(VOCAB), "--data-workers", str(n),
                        "--no-progress"], env)
      counts = prepared_counts(result["output"])
      row = {"gigabytes": size, "workers": n, **counts,
             **{k: v for k, v in result.items() if k != "output"},
             "tokens_per_s": counts["tokens"] / result["seconds"],
             "tokens_per_s_per_worker": counts["tokens"] / result["seconds"] / n}
      print(json.dumps(row), flush=True)
      rows.append(row)
    workdir = work / f"train-{size:g}GB"
    shutil.rmtree(workdir, ignore_errors=True)
    trained = measure([*python, "train.train", "--workdir", str(workdir), "--data", "fineweb",
                       "--data-dir", str(corpus), "--cache-dir", str(cache),
                       "--seq-len", str(SEQ_LEN), *TRAIN_FLAGS], dict(os.environ))
    rows.append({"gigabytes": size, "training": True,
                 **{k: v for k, v in trained.items() if k != "output"}})
    print(json.dumps(rows[-1]), flush=True)
  results = provenance.write_results(pathlib.Path(args.out) / "data.json", "train.perf.data_prep",
                                   argv, {"vocab_size": VOCAB, "seq_len": SEQ_LEN,
                                          "train_flags": TRAIN_FLAGS, "rows": rows})
  files.write_atomically(pathlib.Path(args.out) / "data.md", results_markdown(results))
  print(f"wrote {pathlib.Path(args.out) / 'data.md'}")


def _gib(x: float) -> str:
  return f"{x / 2**30:.2f}"


def results_markdown(results: dict) -> str:
  machine = results["machine"]
  prep = [r for r in results["rows"] if not r.get("training")]
  training = [r for r in results["rows"] if r.get("training")]
  lines = [
      "# Data preparation and training memory", "",
      f"Command: `{results['command']}`. Machine: {machine['processor']}, {machine['cpus']} "
      f"CPU cores (Python {machine['python']}, jax {machine['jax']}).", "",
      "Synthetic FineWeb-schema parquet (`python -m train.perf.synthetic_fineweb`), prepared "
      f"by `python -m train.data` from an empty cache (BPE of {results['vocab_size']} tokens "
      f"trained on the first 64 MiB, then token shards); one worker is held to one thread. "
      "Peak RSS: the whole process tree's (the workers included), sampled every 20 ms.", "",
      *markdown.table(
          ["text (GB)", "workers", "documents", "tokens", "shards", "wall (s)", "tokens/s",
           "tokens/s per worker", "peak RSS, tree (GiB)", "peak RSS, main process (GiB)"],
          ([f"{r['gigabytes']:g}", r["workers"], f"{r['documents']:,}", f"{r['tokens']:,}",
            r["shards"], f"{r['seconds']:.0f}", f"{r['tokens_per_s']:,.0f}",
            f"{r['tokens_per_s_per_worker']:,.0f}", _gib(r["peak_rss_tree"]),
            _gib(r["peak_rss_main"])] for r in prep))]
  by = {(r["gigabytes"], r["workers"]): r for r in prep}
  sizes = sorted({r["gigabytes"] for r in prep})
  workers = sorted({r["workers"] for r in prep})
  checks = []
  small, large = sizes[0], sizes[-1]
  for n in workers:
    if (small, n) in by and (large, n) in by:
      ratio = by[large, n]["peak_rss_tree"] / by[small, n]["peak_rss_tree"]
      checks.append([f"peak RSS, {large:g} GB / {small:g} GB, {n} worker(s) (target <= 1.3, "
                     f"and {large:g} GB under 2 GiB: {_gib(by[large, n]['peak_rss_tree'])})",
                     f"{ratio:.2f}"])
  for size in sizes:
    if (size, workers[0]) in by and (size, workers[-1]) in by and workers[0] != workers[-1]:
      speedup = by[size, workers[-1]]["tokens_per_s"] / by[size, workers[0]]["tokens_per_s"]
      checks.append([f"tokens/s, {workers[-1]} workers / {workers[0]}, {size:g} GB "
                     "(target >= 1.6 on 2 cores)", f"{speedup:.2f}"])
  if len(training) >= 2:
    t = {r["gigabytes"]: r for r in training}
    checks.append([f"training peak RSS, {large:g} GB / {small:g} GB (target <= 1.2; "
                   f"{_gib(t[small]['peak_rss_tree'])} and {_gib(t[large]['peak_rss_tree'])} "
                   "GiB)", f"{t[large]['peak_rss_tree'] / t[small]['peak_rss_tree']:.2f}"])
  lines += ["", *markdown.table(["check", "value"], checks)]
  lines += ["", f"Training: `python -m train.train --data fineweb {' '.join(results['train_flags'])}` "
            "on each prepared cache (its windows memory-mapped from the token shards)."]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
