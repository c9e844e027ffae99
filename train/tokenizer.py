"""The tokenizer of a dataset: a local `tokenizer.json`, or a byte-level BPE
trained with `tokenizers` on the start of the train split and cached."""

from __future__ import annotations

from collections.abc import Iterator
import os
import pathlib

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from train import files
from train.corpora import document_text

EOS = "<|endoftext|>"
# The BPE's training sample: the first 64 MiB of the train split's text.
BPE_SAMPLE_BYTES = 64 << 20


def _sample(source, max_bytes: int) -> Iterator[str]:
  """The split's first documents, up to `max_bytes` of UTF-8 text."""
  total = 0
  for i in range(len(source)):
    text = document_text(source[i])
    total += len(text.encode())
    if total > max_bytes and i:
      return
    yield text


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


def get_tokenizer(source, vocab_size: int, cache_path: pathlib.Path,
                  tokenizer_file: str | os.PathLike | None = None) -> Tokenizer:
  """A local `tokenizer.json`, or a BPE trained on the first
  `BPE_SAMPLE_BYTES` of `source` and cached."""
  if tokenizer_file is not None:
    if not pathlib.Path(tokenizer_file).is_file():
      raise ValueError(f"tokenizer file {tokenizer_file} does not exist")
    return Tokenizer.from_file(os.fspath(tokenizer_file))
  if not cache_path.is_file():
    tokenizer = train_tokenizer(_sample(source, BPE_SAMPLE_BYTES), vocab_size)
    files.write_atomically(cache_path, lambda tmp: tokenizer.save(os.fspath(tmp)))
  return Tokenizer.from_file(os.fspath(cache_path))
