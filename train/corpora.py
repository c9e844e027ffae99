"""The corpora as TFDS builders (array_record, no TensorFlow), each split
into train and validation by a hash of its documents' keys.

- `python_stdlib`: the embedded default corpus, the running CPython's `Lib/`
  sources; the Python version is in the dataset's metadata.
- `python_packages`: the Python sources of a pinned list of permissively
  licensed pure-Python distributions from PyPI, fetched with pip (hashes
  checked) when first prepared, without tests, vendored copies, generated
  files and exact or near duplicates: a corpus large enough that runs up to
  4x the `nano` budget read each training window at most once.
- `fineweb`: FineWeb parquet shards from a local directory (`manual_dir`),
  written row group by row group in the parquet order.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import os
import pathlib
import sys
import sysconfig

import tensorflow_datasets as tfds

from train import pypi_sources

# The share of documents held out for validation, chosen by a hash of their
# key. The standard library is small (669 files in CPython 3.11): 20% holds
# out about 140 files, enough for a validation set spread over many modules,
# while 5% of FineWeb is already millions of documents.
STDLIB_VALIDATION_PERCENT = 20
FINEWEB_VALIDATION_PERCENT = 5
PACKAGES_VALIDATION_PERCENT = 5


def _is_validation(key: str, percent: int) -> bool:
  """A stable split by a hash of the document's key (path or id)."""
  return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 100 < percent


def _generated_codec_table(path: pathlib.Path) -> bool:
  """A character-mapping codec that `gencodec.py` wrote: a table, nearly the
  same as its dozens of siblings."""
  with open(path, encoding="utf-8", errors="replace") as f:
    return "with gencodec.py" in f.readline()


def stdlib_files(root: str | os.PathLike | None = None) -> list[pathlib.Path]:
  """The running CPython's `Lib/` sources, without tests, site-packages and
  the generated codec tables (near-copies of one another: split by file,
  they would put near-duplicates of training files in the validation split)."""
  root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
  skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
  return sorted(p for p in root.rglob("*.py")
                if not skip & set(p.relative_to(root).parts)
                and not _generated_codec_table(p))


def _documents_info(builder, description: str, key: str, **metadata) -> tfds.core.DatasetInfo:
  """The info of a corpus of documents, each its text and the `key` that
  names it (a path, an id), with `metadata` recorded beside."""
  return tfds.core.DatasetInfo(
      builder=builder, description=description,
      features=tfds.features.FeaturesDict(
          {"text": tfds.features.Text(), key: tfds.features.Text()}),
      metadata=tfds.core.MetadataDict(**metadata) if metadata else None)


class PythonStdlib(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The embedded default corpus: this Python's standard library sources."""
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": f"{STDLIB_VALIDATION_PERCENT}% of the files held out "
                            "for validation (was 5%); no generated codec tables."}

  def _info(self):
    return _documents_info(self, "CPython standard-library sources (Lib/, no tests).",
                           "path", python_version=sys.version.split()[0])

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(False),
            "validation": self._generate_examples(True)}

  def _generate_examples(self, validation: bool):
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for path in stdlib_files(root):
      key = str(path.relative_to(root))
      if _is_validation(key, STDLIB_VALIDATION_PERCENT) == validation:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
          yield key, {"text": text, "path": key}


class PythonPackages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The Python sources of the pinned `DISTRIBUTIONS`, fetched with pip into
  the download directory when first prepared."""
  VERSION = tfds.core.Version("1.0.0")
  DISTRIBUTIONS = pypi_sources.PYTHON_PACKAGES
  PIP_ARGS: tuple[str, ...] = ()  # where pip looks (a test's local wheels)

  def _info(self):
    return _documents_info(
        self, "Python sources of pinned permissively licensed PyPI distributions "
        "(no tests, vendored, generated or duplicate files).", "path",
        distributions=[dataclasses.asdict(d) for d in self.DISTRIBUTIONS])

  def _split_generators(self, dl_manager):
    wheels = pypi_sources.fetch_wheels(self.DISTRIBUTIONS,
                          pathlib.Path(dl_manager.download_dir) / "python_packages",
                          self.PIP_ARGS)
    left_out = collections.Counter()
    sources = [doc for d in self.DISTRIBUTIONS
               for doc in pypi_sources.wheel_sources(d, wheels[d.name], left_out)]
    kept = pypi_sources.deduplicate(sources, left_out)
    self.info.metadata["files"] = {"kept": len(kept), **dict(sorted(left_out.items()))}
    return {split: self._generate_examples(kept, split == "validation")
            for split in ("train", "validation")}

  def _generate_examples(self, documents, validation: bool):
    for key, text in documents:
      if _is_validation(key, PACKAGES_VALIDATION_PERCENT) == validation:
        yield key, {"text": text, "path": key}


def _row_group_examples(path: pathlib.Path, group: int, validation: bool):
  """The documents of one parquet row group that belong to a split."""
  import pyarrow.parquet as pq
  table = pq.ParquetFile(path).read_row_group(group, columns=["text", "id"])
  for text, doc_id in zip(table.column("text").to_pylist(), table.column("id").to_pylist()):
    if text and _is_validation(doc_id, FINEWEB_VALIDATION_PERCENT) == validation:
      yield doc_id, {"text": text, "id": doc_id}


class Fineweb(tfds.core.ShardBasedBuilder, skip_registration=True):
  """FineWeb parquet shards (`text, id, ...`) from a local `manual_dir`, one
  TFDS shard per parquet row group, in the parquet order."""
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": "Written row group by row group, in the parquet order."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put FineWeb parquet shards (columns text, id, ...) in the manual_dir.")

  def _info(self):
    return _documents_info(self, "FineWeb documents from local parquet shards.", "id")

  def _shard_iterators_per_split(self, dl_manager):
    import pyarrow.parquet as pq
    shards = sorted(pathlib.Path(dl_manager.manual_dir).glob("*.parquet"))
    if not shards:
      raise ValueError(f"fineweb: no *.parquet files in {dl_manager.manual_dir}")
    metadata = {path: pq.ParquetFile(path).metadata for path in shards}
    groups = [(path, g) for path in shards for g in range(metadata[path].num_row_groups)]
    if not sum(m.num_rows for m in metadata.values()):
      raise ValueError(f"dataset fineweb is empty: the *.parquet files in "
                       f"{dl_manager.manual_dir} hold no rows")
    return {split: [functools.partial(_row_group_examples, path, g, split == "validation")
                    for path, g in groups]
            for split in ("train", "validation")}


BUILDERS = {"python_stdlib": PythonStdlib, "python_packages": PythonPackages,
            "fineweb": Fineweb}


def builder(name: str, data_dir: str | os.PathLike):
  """Dataset `name`'s TFDS builder, writing array_record files under `data_dir`."""
  if name not in BUILDERS:
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(BUILDERS)}")
  return BUILDERS[name](data_dir=os.fspath(data_dir), file_format="array_record")


def load_split(name: str, split: str, data_dir: str | os.PathLike,
               manual_dir: str | os.PathLike | None = None):
  """Prepares (once) and opens a split as a random-access TFDS data source."""
  dataset = builder(name, data_dir)
  if manual_dir is not None and not pathlib.Path(manual_dir).is_dir():
    raise ValueError(f"data directory {manual_dir} does not exist")
  try:
    dataset.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(manual_dir),
        try_download_gcs=False))
  except AssertionError as e:  # how TFDS reports a split with no examples
    raise ValueError(f"dataset {name} is empty: {e}") from None
  source = dataset.as_data_source(split=split)
  if len(source) == 0:
    raise ValueError(f"dataset {name} is empty: its {split} split has no documents")
  return source


def document_text(example) -> str:
  """The text of a document of any corpus (TFDS gives it as bytes)."""
  text = example["text"]
  return text.decode("utf-8") if isinstance(text, bytes) else text
