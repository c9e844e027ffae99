"""TFDS builders on real files, tokenizer, packing and deterministic batches."""

import dataclasses
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from train import corpora, data, tokenizer
from train.config import TrainConfig

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stdlib(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  return root, {s: corpora.load_split("python_stdlib", s, root) for s in ("train", "validation")}


def test_stdlib_builder_holds_the_running_pythons_lib(stdlib):
  _, splits = stdlib
  paths = {s: {ex["path"].decode() for ex in (d[i] for i in range(len(d)))}
           for s, d in splits.items()}
  assert not paths["train"] & paths["validation"]
  assert len(paths["validation"]) >= 10 and len(paths["train"]) >= 300
  assert "os.py" in paths["train"] | paths["validation"]
  for path in paths["train"] | paths["validation"]:
    assert not {"test", "tests", "site-packages"} & set(pathlib.Path(path).parts)
  info = corpora.PythonStdlib(data_dir=str(stdlib[0]), file_format="array_record").info
  assert info.metadata["python_version"] == sys.version.split()[0]


def test_fineweb_builder_on_local_parquet(tmp_path):
  manual = tmp_path / "parquet"
  manual.mkdir()
  for shard in range(2):
    ids = [f"<urn:uuid:{shard}-{i}>" for i in range(150)]
    pq.write_table(pa.table({
        "text": [f"document {d} says hello world {d * 7}" for d in ids],
        "id": ids, "dump": ["CC-MAIN-2024-10"] * 150,
        "url": [f"https://example.org/{i}" for i in range(150)],
    }), manual / f"shard-{shard}.parquet")
  splits = {s: corpora.load_split("fineweb", s, tmp_path / "tfds", manual_dir=manual)
            for s in ("train", "validation")}
  ids = {s: {d[i]["id"].decode() for i in range(len(d))} for s, d in splits.items()}
  assert not ids["train"] & ids["validation"]
  assert len(ids["train"] | ids["validation"]) == 300
  assert 0 < len(ids["validation"]) < 40


def test_tokenizer_is_trained_once_and_cached(stdlib, tmp_path):
  _, splits = stdlib
  cache = tmp_path / "tok.json"
  tok = tokenizer.get_tokenizer(splits["validation"], 512, cache)
  stamp = cache.stat().st_mtime_ns
  again = tokenizer.get_tokenizer(splits["validation"], 512, cache)
  assert cache.stat().st_mtime_ns == stamp
  assert tok.get_vocab_size() == again.get_vocab_size() == 512
  text = "def f(x):\n    return x  # ünïcode\n"
  assert tok.decode(tok.encode(text).ids) == text
  local = tokenizer.get_tokenizer(None, 0, tmp_path / "unused.json", tokenizer_file=cache)
  assert local.encode(text).ids == tok.encode(text).ids
  with pytest.raises(ValueError, match="tokenizer file .*missing.json does not exist"):
    tokenizer.get_tokenizer(None, 0, cache, tokenizer_file=tmp_path / "missing.json")


def test_windows_are_the_documents_stream_with_eos(stdlib, tmp_path):
  root, splits = stdlib
  tok, windows, prepared = data.prepare("python_stdlib", 65, 512, root, workers=1,
                                        documents_per_shard=8)
  source = splits["validation"]
  eos = tok.token_to_id(data.EOS)
  stream = np.concatenate([np.asarray(e.ids + [eos]) for e in
                           tok.encode_batch([source[i]["text"].decode()
                                             for i in range(len(source))])])
  ours = windows["validation"]
  assert prepared["validation"].shards == -(-len(source) // 8) > 2
  assert len(ours) == len(stream) // 65
  # Windows are the stream cut in 65s, across shard boundaries.
  np.testing.assert_array_equal(ours[0:len(ours)].reshape(-1), stream[:len(ours) * 65])
  for i in (0, len(ours) // 2, len(ours) - 1):
    np.testing.assert_array_equal(ours[i], stream[i * 65:(i + 1) * 65])
  assert ours[0].dtype == np.int32
  with pytest.raises(IndexError):
    ours[len(ours)]
  with pytest.raises(ValueError, match="fewer than one window"):
    data.prepare("python_stdlib", 10**9, 512, root, workers=1, documents_per_shard=8)


def test_the_held_out_set_spans_the_validation_split(stdlib):
  """The validation set's windows are spread over the whole split: every
  document longer than their spacing holds one, they are the same for every
  seed, and they come from validation files only."""
  from train import train
  root, splits = stdlib
  tok, windows, _ = data.prepare("python_stdlib", 129, 2048, root, workers=1)
  held_out = windows["validation"]
  count = 512
  covered = data.coverage(held_out, count, tok.token_to_id(data.EOS))
  ends = np.flatnonzero(held_out.tokens(0, held_out.stream_tokens) == tok.token_to_id(data.EOS))
  lengths = np.diff(ends, prepend=-1)
  # Window starts lie len(held_out) / count windows apart: a document at least
  # that long (plus a window) must hold one.
  spacing = (len(held_out) // count + 2) * 129
  must_hold = int((lengths >= spacing).sum())
  assert covered["windows"] == count and covered["split_documents"] == len(splits["validation"])
  assert covered["documents"] >= must_hold >= 0.5 * covered["split_documents"]
  assert covered["split_documents"] >= 100
  # The same set whatever the run's seed, learning rate or optimizer.
  trainer = types.SimpleNamespace(global_eval_batch=np.asarray)
  config = TrainConfig(config="nano", batch_size=16, seq_len=128, eval_batches=32)
  batches = [train.eval_batches(held_out, dataclasses.replace(config, **change), trainer)
             for change in ({}, {"seed": 7, "lr": 1e-2, "optimizer": "muon"})]
  np.testing.assert_array_equal(np.stack(batches[0]), np.stack(batches[1]))
  np.testing.assert_array_equal(np.concatenate(batches[0]), data.spread(held_out, count))
  # Disjoint from training: no file is in both splits, and no validation
  # window is a training window.
  paths = {s: {d[i]["path"] for i in range(len(d))} for s, d in splits.items()}
  assert not paths["train"] & paths["validation"]
  train_windows = windows["train"][0:len(windows["train"])]
  seen = {w.tobytes() for w in train_windows}
  assert not [w for w in np.concatenate(batches[0]) if w.tobytes() in seen]


def prepare_command(corpus, cache, *args):
  return [sys.executable, "-m", "train.data", "--data", "fineweb", "--data-dir", str(corpus),
          "--cache-dir", str(cache), "--seq-len", "32", "--vocab-size", "512",
          "--documents-per-shard", "2", "--no-progress", *args]


def shard_bytes(cache):
  return {p.relative_to(cache): p.read_bytes()
          for p in sorted(pathlib.Path(cache, "tokens").rglob("*.npy"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """About 700 synthetic FineWeb documents in two files of row groups of 50."""
  from train.perf import synthetic_fineweb
  out = tmp_path_factory.mktemp("fineweb")
  synthetic_fineweb.write(out, 1_400_000, file_bytes=700_000, row_group_documents=50)
  return out


def test_preparation_is_the_same_bytes_killed_or_not_and_whatever_the_workers(corpus, tmp_path):
  whole = tmp_path / "whole"
  subprocess.run(prepare_command(corpus, whole, "--data-workers", "1"), check=True, cwd=REPO,
                 capture_output=True)
  expected = shard_bytes(whole)
  assert len(expected) > 300

  killed = tmp_path / "killed"
  for _ in range(5):  # until a kill lands between the first shard and the manifest
    proc = subprocess.Popen(prepare_command(corpus, killed, "--data-workers", "2"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while proc.poll() is None and not any(pathlib.Path(killed, "tokens").rglob("*.npy")):
      time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)  # the workers too
    proc.wait()
    if not list(pathlib.Path(killed, "tokens").rglob("manifest.json")):
      break
    shutil.rmtree(killed)
  partial = shard_bytes(killed)
  assert 0 < len(partial) < len(expected)
  result = subprocess.run(prepare_command(corpus, killed, "--data-workers", "2"), cwd=REPO,
                          capture_output=True, text=True, check=True)
  written = int(re.search(r"train: .*\((\d+) written now\)", result.stdout).group(1))
  assert written < len(expected)  # it resumed: the finished shards were kept
  assert shard_bytes(killed) == expected


def test_processes_sharing_a_cache_prepare_it_once(corpus, tmp_path):
  procs = [subprocess.Popen(prepare_command(corpus, tmp_path, "--data-workers", "1"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  written = sorted(int(n) for out, _ in outputs
                   for n in re.findall(r"\((\d+) written now\)", out))
  # One process wrote every shard of both splits; the other found them.
  assert written[:2] == [0, 0] and min(written[2:]) > 0
  summaries = [re.findall(r"^(?:train|validation): [^(]*", out, re.M) for out, _ in outputs]
  assert len(summaries[0]) == 2 and summaries[0] == summaries[1]


_BATCH_SCRIPT = """
import numpy as np, sys
from train import corpora, data, tokenizer
from train.config import TrainConfig
windows = np.arange(40 * 5, dtype=np.int32).reshape(40, 5)
ds = data.batches(windows, 8, seed=int(sys.argv[1]), process_index=int(sys.argv[2]), process_count=2)
np.save(sys.argv[3], np.stack([ds[i] for i in range(12)]))
"""


def test_batches_are_fixed_by_index_and_seed_across_processes(tmp_path):
  windows = np.arange(40 * 5, dtype=np.int32).reshape(40, 5)
  full = data.batches(windows, 8, seed=3)
  hosts = []
  for p in range(2):
    out = tmp_path / f"host{p}.npy"
    subprocess.run([sys.executable, "-c", _BATCH_SCRIPT, "3", str(p), str(out)],
                   check=True, cwd=REPO)
    hosts.append(np.load(out))
  for i in range(12):
    np.testing.assert_array_equal(np.concatenate([hosts[0][i], hosts[1][i]]), full[i])
    assert not set(hosts[0][i][:, 0]) & set(hosts[1][i][:, 0])
  # One epoch is 5 batches: every window once, and the next epoch reshuffles.
  epoch = np.concatenate([full[i] for i in range(5)])
  assert sorted(epoch[:, 0]) == list(range(0, 200, 5))
  assert not np.array_equal(full[0], full[5])
  assert not np.array_equal(full[0], data.batches(windows, 8, seed=4)[0])


def test_bad_data_input(tmp_path):
  windows = np.zeros((4, 5), np.int32)
  with pytest.raises(ValueError, match="batch size 6 is not divisible by 4 processes"):
    data.batches(windows, 6, 0, process_count=4)
  with pytest.raises(ValueError, match="fewer than one batch of 8"):
    data.batches(windows, 8, 0)
  with pytest.raises(ValueError, match="unknown dataset 'c4'"):
    corpora.load_split("c4", "train", "/tmp")
  with pytest.raises(ValueError, match="data directory /nonexistent does not exist"):
    corpora.load_split("fineweb", "train", "/tmp", manual_dir="/nonexistent")
  with pytest.raises(ValueError, match="no \\*.parquet files in"):
    corpora.load_split("fineweb", "train", tmp_path / "tfds", manual_dir=tmp_path)
