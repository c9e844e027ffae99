"""Text data: TFDS builders (array_record, no TensorFlow), a BPE tokenizer,
packing into fixed windows, and deterministic per-host batches with grain.

Batch `i` of seed `s` is a pure function of `(i, s)`: the packed windows are
shuffled once per epoch by grain's `MapDataset.shuffle(seed)` and read by
index, so resuming at step `i` needs nothing but `i`.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys
import sysconfig

import grain
import numpy as np
import tensorflow_datasets as tfds
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from train import files

EOS = "<|endoftext|>"
VALIDATION_PERCENT = 5


def _is_validation(key: str) -> bool:
  """A stable split by a hash of the document's key (path or id)."""
  return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 100 < VALIDATION_PERCENT


def stdlib_files(root: str | os.PathLike | None = None) -> list[pathlib.Path]:
  """The running CPython's `Lib/` sources, without tests and site-packages."""
  root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
  skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
  return sorted(p for p in root.rglob("*.py")
                if not skip & set(p.relative_to(root).parts))


class PythonStdlib(tfds.core.GeneratorBasedBuilder):
  """The embedded default corpus: this Python's standard library sources."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="CPython standard-library sources (Lib/, no tests).",
        features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text(), "path": tfds.features.Text()}),
        metadata=tfds.core.MetadataDict(python_version=sys.version.split()[0]),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(False),
            "validation": self._generate_examples(True)}

  def _generate_examples(self, validation: bool):
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for path in stdlib_files(root):
      key = str(path.relative_to(root))
      if _is_validation(key) == validation:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
          yield key, {"text": text, "path": key}


class Fineweb(tfds.core.GeneratorBasedBuilder):
  """FineWeb parquet shards (`text, id, ...`) from a local `manual_dir`."""
  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put FineWeb parquet shards (columns text, id, ...) in the manual_dir.")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="FineWeb documents from local parquet shards.",
        features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text(), "id": tfds.features.Text()}),
    )

  def _split_generators(self, dl_manager):
    shards = sorted(pathlib.Path(dl_manager.manual_dir).glob("*.parquet"))
    if not shards:
      raise ValueError(f"fineweb: no *.parquet files in {dl_manager.manual_dir}")
    return {"train": self._generate_examples(shards, False),
            "validation": self._generate_examples(shards, True)}

  def _generate_examples(self, shards, validation: bool):
    import pyarrow.parquet as pq
    for shard in shards:
      table = pq.read_table(shard, columns=["text", "id"])
      for text, doc_id in zip(table.column("text").to_pylist(),
                              table.column("id").to_pylist()):
        if _is_validation(doc_id) == validation and text:
          yield doc_id, {"text": text, "id": doc_id}


def load_split(name: str, split: str, data_dir: str | os.PathLike,
               manual_dir: str | os.PathLike | None = None):
  """Prepares (once) and opens a split as a random-access TFDS data source."""
  builders = {"python_stdlib": PythonStdlib, "fineweb": Fineweb}
  if name not in builders:
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(builders)}")
  if manual_dir is not None and not pathlib.Path(manual_dir).is_dir():
    raise ValueError(f"data directory {manual_dir} does not exist")
  builder = builders[name](data_dir=os.fspath(data_dir), file_format="array_record")
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(manual_dir),
        try_download_gcs=False))
  except AssertionError as e:  # how TFDS reports a split with no examples
    raise ValueError(f"dataset {name} is empty: {e}") from None
  return builder.as_data_source(split=split)


def train_tokenizer(texts, vocab_size: int) -> Tokenizer:
  """A byte-level BPE with `EOS` as its one special token."""
  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=[EOS],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tokenizer.train_from_iterator(texts, trainer)
  return tokenizer


def _text(example) -> str:
  text = example["text"]
  return text.decode("utf-8") if isinstance(text, bytes) else text


def get_tokenizer(source, vocab_size: int, cache_path: pathlib.Path,
                  tokenizer_file: str | os.PathLike | None = None) -> Tokenizer:
  """A local `tokenizer.json`, or a BPE trained on `source` and cached."""
  if tokenizer_file is not None:
    if not pathlib.Path(tokenizer_file).is_file():
      raise ValueError(f"tokenizer file {tokenizer_file} does not exist")
    return Tokenizer.from_file(os.fspath(tokenizer_file))
  if not cache_path.is_file():
    tokenizer = train_tokenizer((_text(source[i]) for i in range(len(source))),
                                vocab_size)
    files.write_atomically(cache_path, lambda tmp: tokenizer.save(os.fspath(tmp)))
  return Tokenizer.from_file(os.fspath(cache_path))


def pack(source, tokenizer: Tokenizer, window: int) -> np.ndarray:
  """Documents, each followed by EOS, concatenated and cut into `window` tokens."""
  eos = tokenizer.token_to_id(EOS)
  if eos is None:
    raise ValueError(f"the tokenizer has no {EOS!r} token")
  texts = [_text(source[i]) for i in range(len(source))]
  ids = [np.asarray(e.ids + [eos], np.int32)
         for e in tokenizer.encode_batch(texts)]
  stream = np.concatenate(ids) if ids else np.zeros(0, np.int32)
  n = len(stream) // window
  if n == 0:
    raise ValueError(
        f"the dataset has {len(stream)} tokens, fewer than one window of {window}")
  return stream[: n * window].reshape(n, window)


def prepare(name: str, window: int, vocab_size: int,
            cache_dir: str | os.PathLike,
            data_dir: str | os.PathLike | None = None,
            tokenizer_file: str | os.PathLike | None = None):
  """The tokenizer and the packed train and validation windows of a dataset.

  The TFDS dataset, the trained BPE and the packed windows are cached under
  `cache_dir`, keyed by dataset, tokenizer contents and window, so a second
  run starts without re-tokenising.

  Returns:
    `(tokenizer, {"train": windows, "validation": windows})`, windows being
    `int32 [n, window]` arrays.
  """
  cache = pathlib.Path(cache_dir)
  splits = {s: load_split(name, s, cache, data_dir) for s in ("train", "validation")}
  tokenizer = get_tokenizer(splits["train"], vocab_size,
                            cache / "tokenizers" / f"{name}-bpe{vocab_size}.json",
                            tokenizer_file)
  if tokenizer.get_vocab_size() > vocab_size:
    raise ValueError(
        f"the tokenizer has {tokenizer.get_vocab_size()} tokens, more than the "
        f"model's vocab_size {vocab_size}")
  digest = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]
  windows = {}
  for split, source in splits.items():
    path = cache / "packed" / f"{name}-{split}-{digest}-{window}.npy"
    if not path.is_file():
      packed = pack(source, tokenizer, window)

      def write(tmp, packed=packed):
        with open(tmp, "wb") as f:
          np.save(f, packed)

      files.write_atomically(path, write)
    windows[split] = np.load(path)
  return tokenizer, windows


def batches(windows: np.ndarray, global_batch: int, seed: int,
            process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """Random-access global batches, this process's rows only.

  Item `i` is rows `[p * b, (p + 1) * b)` (b = global_batch / process_count)
  of global batch `i`; every epoch is a new permutation of the windows.
  """
  if global_batch % process_count:
    raise ValueError(
        f"batch size {global_batch} is not divisible by {process_count} processes")
  if len(windows) < global_batch:
    raise ValueError(
        f"the dataset has {len(windows)} windows, fewer than one batch of {global_batch}")
  per_process = global_batch // process_count
  ds = grain.MapDataset.source(windows).shuffle(seed=seed).repeat()
  ds = ds.batch(global_batch, drop_remainder=True)
  return ds.map(lambda b: b[process_index * per_process:(process_index + 1) * per_process])
