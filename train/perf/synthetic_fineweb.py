"""Writes synthetic FineWeb-schema parquet of a given size, for benchmarks and tests.

  python -m train.perf.synthetic_fineweb --out DIR --gigabytes 0.25 [--seed 0]

Documents are paragraphs of sentences of words drawn by Zipf's law from a
50,000-word invented vocabulary, with FineWeb's columns (`text, id, dump,
url, date, file_path, language, language_score, token_count`), in files of
about 128 MB of text and row groups of 1,000 documents. The same arguments
give the same files.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from train import cli

_SYLLABLES = np.asarray(["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "den", "mar",
                         "tis", "ol", "an", "er", "ing", "qu", "bra", "st", "el", "on", "ix"])
SCHEMA = pa.schema([("text", pa.string()), ("id", pa.string()), ("dump", pa.string()),
                    ("url", pa.string()), ("date", pa.string()), ("file_path", pa.string()),
                    ("language", pa.string()), ("language_score", pa.float64()),
                    ("token_count", pa.int64())])


class Documents:
  """A seeded stream of synthetic documents, drawn a row group at a time."""

  def __init__(self, seed: int):
    self.seed, self.rng, self.count = seed, np.random.default_rng(seed), 0
    self.vocabulary = np.asarray(["".join(self.rng.choice(_SYLLABLES, n))
                                  for n in self.rng.integers(1, 5, 50_000)], dtype=object)
    p = 1.0 / np.arange(1, len(self.vocabulary) + 1)
    self.cdf = np.cumsum(p / p.sum())

  def _text(self) -> str:
    rng = self.rng
    sentences = rng.integers(4, 25, rng.integers(2, 40))
    words = np.searchsorted(self.cdf, rng.random(sentences.sum()))
    ends = np.cumsum(sentences)
    breaks = set(np.cumsum(rng.integers(2, 9, len(sentences)))[:-1].tolist())
    parts = []
    for k, (start, stop) in enumerate(zip(ends - sentences, ends)):
      sentence = " ".join(self.vocabulary[words[start:stop]]).capitalize()
      parts.append(sentence + ".?!."[k % 4] + ("\n\n" if k + 1 in breaks else " "))
    return "".join(parts).rstrip()

  def table(self, n: int) -> pa.Table:
    """The next `n` documents as a FineWeb-schema table."""
    texts = [self._text() for _ in range(n)]
    ids = [f"<urn:uuid:{self.seed:04d}-{self.count + i:012d}>" for i in range(n)]
    self.count += n
    return pa.table({
        "text": texts, "id": ids, "dump": ["CC-MAIN-2024-10"] * n,
        "url": [f"https://example.org/{self.seed}/{doc_id[-13:-1]}" for doc_id in ids],
        "date": ["2024-02-20T00:00:00Z"] * n,
        "file_path": [f"s3://synthetic/{self.seed}.warc.gz"] * n,
        "language": ["en"] * n, "language_score": [0.9] * n,
        "token_count": [len(t) // 4 for t in texts]}, schema=SCHEMA)


def write(out: str | os.PathLike, total_bytes: int, seed: int = 0,
          file_bytes: int = 128 << 20, row_group_documents: int = 1000) -> list[pathlib.Path]:
  """Writes `total_bytes` of text (UTF-8, rounded up to a row group) as
  parquet files under `out`; returns their paths."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  stream = Documents(seed)
  written, paths = 0, []
  while written < total_bytes:
    path = out / f"synthetic-{seed:04d}-{len(paths):05d}.parquet"
    in_file = 0
    with pq.ParquetWriter(path, SCHEMA) as writer:
      while in_file < file_bytes and written < total_bytes:
        table = stream.table(row_group_documents)
        size = pc.sum(pc.binary_length(table["text"])).as_py()
        writer.write_table(table, row_group_size=row_group_documents)
        in_file += size
        written += size
    paths.append(path)
  return paths


def main(argv: list[str] | None = None) -> None:
  p = cli.parser("train.perf.synthetic_fineweb", __doc__)
  p.add_argument("--out", required=True, help="directory of the parquet files")
  p.add_argument("--gigabytes", type=float, required=True, help="text to write, in 1e9 bytes")
  p.add_argument("--seed", type=int, default=0, help="the text's random seed")
  args = p.parse_args(argv)
  paths = write(args.out, int(args.gigabytes * 1e9), args.seed)
  print(f"wrote {len(paths)} files to {args.out}")


if __name__ == "__main__":
  main()
