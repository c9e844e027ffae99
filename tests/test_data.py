"""TFDS builders on real files, tokenizer, packing and deterministic batches."""

import pathlib
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from train import data

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stdlib(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  return root, {s: data.load_split("python_stdlib", s, root) for s in ("train", "validation")}


def test_stdlib_builder_holds_the_running_pythons_lib(stdlib):
  _, splits = stdlib
  paths = {s: {ex["path"].decode() for ex in (d[i] for i in range(len(d)))}
           for s, d in splits.items()}
  assert not paths["train"] & paths["validation"]
  assert len(paths["validation"]) >= 10 and len(paths["train"]) >= 300
  assert "os.py" in paths["train"] | paths["validation"]
  for path in paths["train"] | paths["validation"]:
    assert not {"test", "tests", "site-packages"} & set(pathlib.Path(path).parts)
  info = data.PythonStdlib(data_dir=str(stdlib[0]), file_format="array_record").info
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
  splits = {s: data.load_split("fineweb", s, tmp_path / "tfds", manual_dir=manual)
            for s in ("train", "validation")}
  ids = {s: {d[i]["id"].decode() for i in range(len(d))} for s, d in splits.items()}
  assert not ids["train"] & ids["validation"]
  assert len(ids["train"] | ids["validation"]) == 300
  assert 0 < len(ids["validation"]) < 40


def test_tokenizer_is_trained_once_and_cached(stdlib, tmp_path):
  _, splits = stdlib
  cache = tmp_path / "tok.json"
  tok = data.get_tokenizer(splits["validation"], 512, cache)
  stamp = cache.stat().st_mtime_ns
  again = data.get_tokenizer(splits["validation"], 512, cache)
  assert cache.stat().st_mtime_ns == stamp
  assert tok.get_vocab_size() == again.get_vocab_size() == 512
  text = "def f(x):\n    return x  # ünïcode\n"
  assert tok.decode(tok.encode(text).ids) == text
  local = data.get_tokenizer(None, 0, tmp_path / "unused.json", tokenizer_file=cache)
  assert local.encode(text).ids == tok.encode(text).ids
  with pytest.raises(ValueError, match="tokenizer file .*missing.json does not exist"):
    data.get_tokenizer(None, 0, cache, tokenizer_file=tmp_path / "missing.json")


def test_pack_concatenates_documents_with_eos(stdlib, tmp_path):
  _, splits = stdlib
  tok = data.get_tokenizer(splits["validation"], 512, tmp_path / "tok.json")
  windows = data.pack(splits["validation"], tok, 65)
  eos = tok.token_to_id(data.EOS)
  first = tok.encode(splits["validation"][0]["text"].decode()).ids
  stream = windows.reshape(-1)
  np.testing.assert_array_equal(stream[:len(first)], first)
  assert stream[len(first)] == eos
  assert (stream == eos).sum() >= len(splits["validation"]) - 1
  with pytest.raises(ValueError, match="fewer than one window"):
    data.pack(splits["validation"], tok, 10**9)


_BATCH_SCRIPT = """
import numpy as np, sys
from train import data
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
    data.load_split("c4", "train", "/tmp")
  with pytest.raises(ValueError, match="data directory /nonexistent does not exist"):
    data.load_split("fineweb", "train", "/tmp", manual_dir="/nonexistent")
  with pytest.raises(ValueError, match="no \\*.parquet files in"):
    data.load_split("fineweb", "train", tmp_path / "tfds", manual_dir=tmp_path)
