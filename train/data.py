"""Text data: a corpus of `train.corpora`, its tokenizer (`train.tokenizer`),
token shards written by worker processes, and deterministic per-host batches of windows
read from them memory-mapped.

  python -m train.data --data fineweb --data-dir DIR --cache-dir DIR --seq-len T
      --vocab-size V [--tokenizer FILE] [--data-workers N]

Preparation streams, so its memory does not grow with the corpus:
- the TFDS builder writes the documents as array_record files, FineWeb one
  parquet row group at a time, in the parquet order;
- the BPE is trained on the first `BPE_SAMPLE_BYTES` of the train split's
  text (all of it for a smaller corpus);
- each split is tokenised in shards of `documents_per_shard` consecutive
  documents by `workers` processes, each shard (uint16 tokens when the
  vocabulary fits, else uint32) written atomically, then a manifest. A shard
  depends on its documents alone: the same inputs give the same bytes
  whatever the worker count, and a preparation killed mid-way continues
  from the shards it finished.

Processes that share a cache directory (the hosts of a multi-host run)
prepare it once: the first to take the cache's lock file prepares, the
others wait for it and then find every file in place.

Training reads a split as one stream of tokens (every document followed by
EOS, in order) cut into windows, memory-mapped from the shards. Batch `i` of
seed `s` is a pure function of `(i, s)`: the windows are shuffled once per
epoch by grain's `MapDataset.shuffle(seed)` and read by index, so resuming
at step `i` needs nothing but `i`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import pathlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer
import tqdm

from train import cli, corpora, files
from train.corpora import BUILDERS, load_split
from train.tokenizer import EOS, get_tokenizer

if TYPE_CHECKING:
  from train.config import TrainConfig

DOCUMENTS_PER_SHARD = 1024
MANIFEST = "manifest.json"


def default_cache_dir() -> str:
  """`$TFDS_DATA_DIR`, else TFDS's own default `~/tensorflow_datasets`."""
  return os.environ.get("TFDS_DATA_DIR",
                        os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def _token_dtype(tokenizer: Tokenizer) -> np.dtype:
  return np.dtype(np.uint16 if tokenizer.get_vocab_size() <= 1 << 16 else np.uint32)


def _shard_file(index: int) -> str:
  return f"shard-{index:05d}.npy"


# The data source, tokenizer and output directory of a tokenising process.
_WORKER: dict = {}


def _open(name: str, data_dir: str, split: str, tokenizer_json: str, out_dir: str) -> None:
  _WORKER.update(source=corpora.builder(name, data_dir).as_data_source(split=split),
                 tokenizer=Tokenizer.from_str(tokenizer_json), out_dir=pathlib.Path(out_dir))


def _open_worker(*args: str) -> None:
  # One thread per worker process: the processes are the parallelism.
  os.environ["TOKENIZERS_PARALLELISM"] = "false"
  _open(*args)


def _tokenize_shard(job: tuple[int, int, int]) -> tuple[int, int]:
  """Writes the tokens of documents `[start, stop)` (each followed by EOS) as
  shard `index`; returns `(index, tokens)`."""
  index, start, stop = job
  source, tokenizer = _WORKER["source"], _WORKER["tokenizer"]
  eos = tokenizer.token_to_id(EOS)
  encodings = tokenizer.encode_batch(
      [corpora.document_text(source[i]) for i in range(start, stop)])
  tokens = np.concatenate([np.asarray(e.ids + [eos], _token_dtype(tokenizer))
                           for e in encodings])

  def write(tmp, tokens=tokens):
    with open(tmp, "wb") as f:
      np.save(f, tokens)

  files.write_atomically(_WORKER["out_dir"] / _shard_file(index), write)
  return index, len(tokens)


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What a split's preparation holds, and what this call did of it."""
  documents: int
  tokens: int
  shards: int
  shards_written: int  # by this call; 0 when every shard was already there
  seconds: float


def tokenize_split(name: str, split: str, data_dir: str | os.PathLike,
                   tokenizer: Tokenizer, out_dir: pathlib.Path, workers: int,
                   documents_per_shard: int = DOCUMENTS_PER_SHARD,
                   progress: bool = False) -> Prepared:
  """Tokenises a prepared TFDS split into `out_dir` (its shards, then its
  manifest) in `workers` processes, writing only the shards not there yet."""
  start_time = time.perf_counter()
  if (out_dir / MANIFEST).is_file():
    manifest = json.loads((out_dir / MANIFEST).read_text())
    return Prepared(manifest["documents"], sum(s["tokens"] for s in manifest["shards"]),
                    len(manifest["shards"]), 0, 0.0)
  documents = len(corpora.builder(name, data_dir).as_data_source(split=split))
  jobs = [(k, k * documents_per_shard, min((k + 1) * documents_per_shard, documents))
          for k in range(math.ceil(documents / documents_per_shard))]
  todo = [job for job in jobs if not (out_dir / _shard_file(job[0])).is_file()]
  out_dir.mkdir(parents=True, exist_ok=True)
  bar = tqdm.tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="shard",
                  desc=f"tokenising {name} {split}", disable=not progress)
  opened = (name, os.fspath(data_dir), split, tokenizer.to_str(), os.fspath(out_dir))
  if workers == 1 or len(todo) == 1:
    _open(*opened)
    for job in todo:
      _tokenize_shard(job)
      bar.update()
  elif todo:
    # Spawned, not forked: a forked child inherits the parent's tokenizer
    # thread pool in an unusable state. (So, as with any spawning pool, a
    # script that calls this needs an `if __name__ == "__main__":` guard.)
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(todo)), initializer=_open_worker,
                      initargs=opened) as pool:
      for _ in pool.imap_unordered(_tokenize_shard, todo):
        bar.update()
  bar.close()
  shards = [{"file": _shard_file(k), "documents": stop - start,
             "tokens": int(np.load(out_dir / _shard_file(k), mmap_mode="r").shape[0])}
            for k, start, stop in jobs]
  files.write_atomically(out_dir / MANIFEST, json.dumps({
      "dataset": name, "split": split, "documents": documents,
      "documents_per_shard": documents_per_shard,
      "dtype": _token_dtype(tokenizer).name, "shards": shards}, indent=1))
  return Prepared(documents, sum(s["tokens"] for s in shards), len(shards), len(todo),
                  time.perf_counter() - start_time)


class TokenWindows:
  """A split's tokens, one stream cut into windows of `window` tokens,
  memory-mapped from its shards: random access, nothing loaded."""

  def __init__(self, directory: str | os.PathLike, window: int):
    directory = pathlib.Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    self._shards = [np.load(directory / s["file"], mmap_mode="r") for s in manifest["shards"]]
    self._offsets = np.cumsum([0] + [len(s) for s in self._shards])
    self.window = window
    self.stream_tokens = int(self._offsets[-1])  # the last window's leftovers included
    self._length = self.stream_tokens // window

  def __len__(self) -> int:
    return self._length

  def tokens(self, start: int, stop: int) -> np.ndarray:
    """Tokens `[start, stop)` of the stream, as int32."""
    out = np.empty(stop - start, np.int32)
    shard = int(np.searchsorted(self._offsets, start, side="right")) - 1
    filled = 0
    while filled < len(out):
      lo = start + filled - self._offsets[shard]
      piece = self._shards[shard][lo:lo + len(out) - filled]
      out[filled:filled + len(piece)] = piece
      filled += len(piece)
      shard += 1
    return out

  def __getitem__(self, index):
    """Window `index` `[window]`, or the windows of a slice `[n, window]`."""
    if isinstance(index, slice):
      start, stop, step = index.indices(len(self))
      if step != 1:
        raise ValueError("TokenWindows slices take consecutive windows")
      return self.tokens(start * self.window, stop * self.window).reshape(-1, self.window)
    if not -len(self) <= index < len(self):
      raise IndexError(f"window {index} of {len(self)}")
    index %= len(self)
    return self.tokens(index * self.window, (index + 1) * self.window)


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
  """Holds an exclusive lock on `path` (created if missing)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def prepare(name: str, window: int, vocab_size: int, cache_dir: str | os.PathLike,
            data_dir: str | os.PathLike | None = None,
            tokenizer_file: str | os.PathLike | None = None,
            workers: int | None = None, progress: bool = False,
            documents_per_shard: int = DOCUMENTS_PER_SHARD):
  """The tokenizer and the train and validation windows of a dataset.

  The TFDS dataset, the trained BPE and the token shards are cached under
  `cache_dir`, keyed by dataset and tokenizer contents (not by window: any
  sequence length reads the same shards). `workers` tokenising processes
  (default: every core) prepare what is missing.

  Returns:
    `(tokenizer, {"train": windows, "validation": windows}, {split: Prepared})`,
    windows being :class:`TokenWindows` of `window` tokens.
  """
  cache = pathlib.Path(cache_dir)
  workers = workers or os.cpu_count()
  with _locked(cache / f".{name}.lock"):
    splits = {s: load_split(name, s, cache, data_dir) for s in ("train", "validation")}
    # The builder's version names what it cached: a new split is a new BPE
    # and new shards, never a stale one read back.
    dataset = f"{name}-{BUILDERS[name].VERSION}"
    tokenizer = get_tokenizer(splits["train"], vocab_size,
                              cache / "tokenizers" / f"{dataset}-bpe{vocab_size}.json",
                              tokenizer_file)
    if tokenizer.get_vocab_size() > vocab_size:
      raise ValueError(
          f"the tokenizer has {tokenizer.get_vocab_size()} tokens, more than the "
          f"model's vocab_size {vocab_size}")
    if tokenizer.token_to_id(EOS) is None:
      raise ValueError(f"the tokenizer has no {EOS!r} token")
    digest = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()[:16]
    directories, prepared = {}, {}
    for split in splits:
      directories[split] = (cache / "tokens" /
                            f"{dataset}-{split}-{digest}-{documents_per_shard}")
      prepared[split] = tokenize_split(name, split, cache, tokenizer, directories[split],
                                       workers, documents_per_shard, progress)
  windows = {split: TokenWindows(d, window) for split, d in directories.items()}
  for split, w in windows.items():
    if len(w) == 0:
      raise ValueError(f"the {split} split has {prepared[split].tokens} tokens, fewer "
                       f"than one window of {window}")
  return tokenizer, windows, prepared


def prepare_for(config: TrainConfig, progress: bool = False):
  """:func:`prepare` for the dataset, windows and cache a run's config names:
  windows of `seq_len + 1` tokens (inputs and their next-token targets)."""
  return prepare(config.data, config.seq_len + 1, config.model_config.vocab_size,
                 config.cache_dir, config.data_dir, config.tokenizer, config.data_workers,
                 progress)


def validation_set(config: TrainConfig) -> dict[str, Any]:
  """What a run's validation set (`eval_batches` batches spread over the
  validation split) holds of its dataset: :func:`coverage`, with the
  dataset's name and version."""
  tokenizer, windows, _ = prepare_for(config)
  held_out = coverage(windows["validation"], config.eval_batches * config.batch_size,
                      tokenizer.token_to_id(EOS))
  return {"dataset": config.data, "version": str(BUILDERS[config.data].VERSION),
          **held_out}


def corpus(config: TrainConfig) -> dict[str, Any]:
  """What a run's dataset holds: its train split's tokens (a run's budget
  over them is how often it reads each window) and its builder's metadata
  (python_packages: the distributions and licences, the files kept and those
  left out, by why)."""
  _, windows, _ = prepare_for(config)
  metadata = corpora.builder(config.data, config.cache_dir).info.metadata or {}
  return {"dataset": config.data, "version": str(BUILDERS[config.data].VERSION),
          "train_tokens": windows["train"].stream_tokens, **metadata}


def spread_indices(windows, count: int) -> np.ndarray:
  """The indices of :func:`spread`'s windows: `min(count, len(windows))`
  evenly spaced over `range(len(windows))`."""
  length = len(windows)
  count = min(count, length)
  return (2 * np.arange(count) + 1) * length // (2 * count)


def spread(windows, count: int) -> np.ndarray:
  """`count` windows evenly spaced over the whole of `windows` (all of them
  if there are fewer), `[n, window]`: a held-out set that samples every part
  of the split alike, whatever order its documents come in."""
  return np.stack([windows[int(i)] for i in spread_indices(windows, count)])


def coverage(windows: TokenWindows, count: int, eos: int) -> dict[str, int]:
  """What `spread(windows, count)` holds of its split: its windows and
  tokens, the split's documents and tokens, and how many of those documents
  its windows hold tokens of (a document ends at its `eos` token)."""
  indices = spread_indices(windows, count)
  split_documents = int(np.count_nonzero(windows.tokens(0, windows.stream_tokens) == eos))
  return {"windows": len(indices), "tokens": len(indices) * windows.window,
          "split_documents": split_documents, "split_tokens": windows.stream_tokens,
          "documents": len(np.unique(document_ids(windows, indices, eos)))}


def document_ids(windows: TokenWindows, indices: np.ndarray, eos: int) -> np.ndarray:
  """The document of every token of windows `indices`, `[n, window]`: its
  index among the split's documents (a document ends with its `eos`)."""
  ends = np.flatnonzero(windows.tokens(0, windows.stream_tokens) == eos)
  positions = np.asarray(indices)[:, None] * windows.window + np.arange(windows.window)
  return np.searchsorted(ends, positions)


def batches(windows, global_batch: int, seed: int,
            process_index: int = 0, process_count: int = 1):
  """Random-access global batches of `windows` (a :class:`TokenWindows` or
  any sequence of equal-length arrays), this process's rows only, as a
  `grain.MapDataset`.

  Item `i` is rows `[p * b, (p + 1) * b)` (b = global_batch / process_count)
  of global batch `i`; every epoch is a new permutation of the windows.
  """
  if global_batch % process_count:
    raise ValueError(
        f"batch size {global_batch} is not divisible by {process_count} processes")
  if len(windows) < global_batch:
    raise ValueError(
        f"the dataset has {len(windows)} windows, fewer than one batch of {global_batch}")
  import grain  # the preparation's worker processes need none of JAX

  per_process = global_batch // process_count
  ds = grain.MapDataset.source(windows).shuffle(seed=seed).repeat()
  ds = ds.batch(global_batch, drop_remainder=True)
  return ds.map(lambda b: b[process_index * per_process:(process_index + 1) * per_process])


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.data", "Prepares a dataset for the trainer (its TFDS files, "
                 "tokenizer and token shards in --cache-dir) without training; rerun to "
                 "resume.")
  p.add_argument("--data", required=True, choices=list(BUILDERS), help="the dataset")
  p.add_argument("--data-dir", help="FineWeb parquet shards (for --data fineweb)")
  p.add_argument("--cache-dir", default=default_cache_dir(),
                 help="the trainer's --cache-dir")
  p.add_argument("--seq-len", type=int, required=True, help="the trainer's --seq-len")
  p.add_argument("--vocab-size", type=int, required=True,
                 help="the model's vocabulary size (of the BPE trained, or at least the "
                      "--tokenizer's)")
  p.add_argument("--tokenizer", help="a tokenizer.json instead of a trained BPE")
  p.add_argument("--data-workers", type=int, default=os.cpu_count(),
                 help="tokenising processes (default: every core)")
  p.add_argument("--documents-per-shard", type=int, default=DOCUMENTS_PER_SHARD,
                 help="documents per token shard")
  p.add_argument("--no-progress", action="store_true", help="show no progress bar")
  args = p.parse_args(argv)
  start = time.perf_counter()
  try:
    for flag, value in (("--seq-len", args.seq_len), ("--vocab-size", args.vocab_size),
                        ("--data-workers", args.data_workers),
                        ("--documents-per-shard", args.documents_per_shard)):
      if value <= 0:
        raise ValueError(f"{flag} must be positive, got {value}")
    if args.data == "fineweb" and args.data_dir is None:
      raise ValueError("--data fineweb needs --data-dir (a directory of parquet shards)")
    if args.data_dir is not None and not pathlib.Path(args.data_dir).is_dir():
      raise ValueError(f"--data-dir {args.data_dir} does not exist")
    _, windows, prepared = prepare(
        args.data, args.seq_len + 1, args.vocab_size, args.cache_dir, args.data_dir,
        args.tokenizer, args.data_workers, not args.no_progress, args.documents_per_shard)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  for split, done in prepared.items():
    print(f"{split}: {done.documents} documents, {done.tokens} tokens, {done.shards} "
          f"shards ({done.shards_written} written now), {len(windows[split])} windows "
          f"of {args.seq_len + 1}")
  print(f"prepared in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  main()
