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
import re
import subprocess
import sys
import sysconfig
import zipfile

import tensorflow_datasets as tfds

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


@dataclasses.dataclass(frozen=True)
class Distribution:
  """A pinned pure-Python wheel of the `python_packages` corpus."""
  name: str
  version: str
  wheel: str  # its file name (a py3-none-any wheel: the same file on every platform)
  sha256: str
  license: str  # as the distribution's metadata states it


# Permissively licensed (MIT, BSD, Apache-2.0, PSF) pure-Python distributions;
# their files after filtering and deduplication hold over 25M tokens of the
# `nano` BPE in the train split.
PYTHON_PACKAGES = (
    Distribution("sympy", "1.14.0", "sympy-1.14.0-py3-none-any.whl",
                 "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5", "BSD-3-Clause"),
    Distribution("Django", "6.1.3", "django-6.1.3-py3-none-any.whl",
                 "a0530e3fdac55d34ccc5893c36f6c57d7a7083064f3d414537e51473648b3290", "BSD-3-Clause"),
    Distribution("networkx", "3.7", "networkx-3.7-py3-none-any.whl",
                 "e3fd2c13a7814cee3746340d8d7f8598a67f16a58bf47fb7f8793fab6efca1b0", "BSD-3-Clause"),
    Distribution("Twisted", "26.10.0", "twisted-26.10.0-py3-none-any.whl",
                 "3732f42af218925a0fe78d6668db55853f7fb532245a89a2669babe7d3000fa8", "MIT"),
    Distribution("Sphinx", "9.2.0", "sphinx-9.2.0-py3-none-any.whl",
                 "4c3ec13b612712c0d3ce4cbdd9e3eb91e68577e07a8e31f32f21cf178453578c", "BSD-2-Clause"),
    Distribution("Pygments", "2.21.0", "pygments-2.21.0-py3-none-any.whl",
                 "2363c69b61c4a97c838da3b130dcd6468f4848992b21a82f2a63ec34377137d9", "BSD-2-Clause"),
    Distribution("setuptools", "84.2.1", "setuptools-84.2.1-py3-none-any.whl",
                 "ca140b45d5325a9478f880e351484f62fef15f336462e449ca0c03c873d589c2", "MIT"),
    Distribution("pip", "26.3", "pip-26.3-py3-none-any.whl",
                 "f3b60b20ffaadd4415ed7957212a38ac63fa4c5fa375bd0f4a797777940fad13", "MIT"),
    Distribution("dask", "2026.11.0", "dask-2026.11.0-py3-none-any.whl",
                 "3d826d9448c6834ccd1e0a9c932caa249e5a138aee254db791a0153c0a357f6d", "BSD-3-Clause"),
    Distribution("distributed", "2026.8.0", "distributed-2026.8.0-py3-none-any.whl",
                 "3bd8882861a2cf497453f28c6b61135fa8ef2bb1d6885ad3b9f27e887e9c0e01", "BSD-3-Clause"),
    Distribution("xarray", "2026.9.0", "xarray-2026.9.0-py3-none-any.whl",
                 "fe349fa871628b1a0a5217af3fe1283a2862d5485156e6eda354fffb81c3bb7c", "Apache-2.0"),
    Distribution("bokeh", "3.10.2", "bokeh-3.10.2-py3-none-any.whl",
                 "511f0c3ecbd396012b65b677826c92ccfa4e951a25484da068fed46b1183b154", "BSD-3-Clause"),
    Distribution("Jinja2", "3.1.6", "jinja2-3.1.6-py3-none-any.whl",
                 "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67", "BSD-3-Clause"),
    Distribution("Flask", "3.1.3", "flask-3.1.3-py3-none-any.whl",
                 "f4bcbefc124291925f1a26446da31a5178f9483862233b23c0c96a20701f670c", "BSD-3-Clause"),
    Distribution("Werkzeug", "3.1.9", "werkzeug-3.1.9-py3-none-any.whl",
                 "6392e50c78460ba618e5b21f08a71f59c99ce99cdc6cf6e3dd7e6ccca8754fab", "BSD-3-Clause"),
    Distribution("click", "8.5.1", "click-8.5.1-py3-none-any.whl",
                 "8bb5376d2006950386f8c6427613334a2acadc5f559cb80e638d00b4df957e37", "BSD-3-Clause"),
    Distribution("rich", "15.0.0", "rich-15.0.0-py3-none-any.whl",
                 "33bd4ef74232fb73fe9279a257718407f169c09b78a87ad3d296f548e27de0bb", "MIT"),
    Distribution("textual", "8.2.8", "textual-8.2.8-py3-none-any.whl",
                 "267375fd402dc8d981457212efa71f0e3365fd17bba144ba9bb3ed7563cb374a", "MIT"),
    Distribution("pydantic", "2.14.4", "pydantic-2.14.4-py3-none-any.whl",
                 "653a2ad9f6d8858529c77c72717d0ea991d6c6837fe683246b2f4b2bbfc3fadc", "MIT"),
    Distribution("openpyxl", "3.1.5", "openpyxl-3.1.5-py2.py3-none-any.whl",
                 "5282c12b107bffeef825f4617dc029afaf41d0ea60823bbb665ef3079dc79de2", "MIT"),
    Distribution("nltk", "3.10.4", "nltk-3.10.4-py3-none-any.whl",
                 "769ba5413f265b7d3e87cd163cc28efa01e29eeef8bb6080bc907949d9fcfb51", "Apache-2.0"),
    Distribution("pytest", "9.2.0", "pytest-9.2.0-py3-none-any.whl",
                 "07acdcf88ec174f907dc01af70bf52d49b014bbab03faeeade31c96b18c2e588", "MIT"),
    Distribution("sqlglot", "30.31.0", "sqlglot-30.31.0-py3-none-any.whl",
                 "51a876a43edecf8ee6fd4c872cf6713d899c4234256bba0be96a8c7c8d8781e8", "MIT"),
    Distribution("ipython", "9.19.1", "ipython-9.19.1-py3-none-any.whl",
                 "06158707d8bb83f0bb0f03cc358de185dcf2fe99187bbce03e9971c22616a7c5", "BSD-3-Clause"),
    Distribution("prompt_toolkit", "3.0.53", "prompt_toolkit-3.0.53-py3-none-any.whl",
                 "01c0891d7f9237d5e339f7d3e42cdae80b7534abb1c7c0e3352efba6231492f2", "BSD-3-Clause"),
    Distribution("jedi", "0.20.1", "jedi-0.20.1-py2.py3-none-any.whl",
                 "0fb16d86c4a4c73c37ba518c77419975e30fcc620658a8d14fbb5720cdd34142", "MIT"),
    Distribution("parso", "0.8.7", "parso-0.8.7-py2.py3-none-any.whl",
                 "a8926eb2a1b915486941fdbd31e86a4baf88fe8c210f25f2f35ecec5b574ca1c", "MIT"),
    Distribution("celery", "5.7.0", "celery-5.7.0-py3-none-any.whl",
                 "18310a9c919f9029e4735367484d93e6a25cdfd30afdc474622cc263d9b35f6e", "BSD-3-Clause"),
    Distribution("kombu", "5.7.0", "kombu-5.7.0-py3-none-any.whl",
                 "dede73bff4c89175be382c4203d2f167cf7017c384396ec75c36a1b5678f1587", "BSD-3-Clause"),
    Distribution("mpmath", "1.4.1", "mpmath-1.4.1-py3-none-any.whl",
                 "dc4f0ea2304480d4a9a48a94c1020571558ade522b44a6912efac63a586e140f", "BSD-3-Clause"),
    Distribution("Scrapy", "2.19.0", "scrapy-2.19.0-py3-none-any.whl",
                 "44c1ad4b008f1976e946c75b2adce0e448cbfe470c584b1b59469abf270e8013", "BSD-3-Clause"),
    Distribution("transformers", "5.25.0", "transformers-5.25.0-py3-none-any.whl",
                 "8ca7a96cc329e5a053c9e770711e73d7bd9d77240ff62049fca6d253965cda52", "Apache-2.0"),
    Distribution("jax", "0.12.1", "jax-0.12.1-py3-none-any.whl",
                 "617d896256e0e3781f5e6b0e5bcdbe49b038d63f69d37dd8de1edf0f1c9f0573", "Apache-2.0"),
    Distribution("flax", "0.12.12", "flax-0.12.12-py3-none-any.whl",
                 "42714e509a754d769a22b01013202a81f0cb4fd7c52988eb5592cca14167eb0f", "Apache-2.0"),
    Distribution("optax", "0.2.8", "optax-0.2.8-py3-none-any.whl",
                 "e3ca2d36c99daab1800ae9dbc0545034382d6bc780b24d969e1b0df65fa31cb4", "Apache-2.0"),
    Distribution("tensorflow-datasets", "4.9.10", "tensorflow_datasets-4.9.10-py3-none-any.whl",
                 "7ec065f0a628e28152b487ba9cbe72fa36d3854705d9f3abd04c6cf5d7a91527", "Apache-2.0"),
    Distribution("keras", "3.15.1", "keras-3.15.1-py3-none-any.whl",
                 "836460e480930acbd19bb7a17e62f9ecad40e8a9af9a651fc8d0586a96d27e20", "Apache-2.0"),
    Distribution("botocore", "1.44.18", "botocore-1.44.18-py3-none-any.whl",
                 "300bc45095e810c5d915cefacdd6ea9ef786fe566aa4e221bf0449b4e0e95076", "Apache-2.0"),
    Distribution("boto3", "1.44.18", "boto3-1.44.18-py3-none-any.whl",
                 "f5a718e7a500dbbaa4a229d64f60f3251f66b1d7923eafc7943ac35ffd156797", "Apache-2.0"),
    Distribution("requests", "2.34.2", "requests-2.34.2-py3-none-any.whl",
                 "2a0d60c172f83ac6ab31e4554906c0f3b3588d37b5cb939b1c061f4907e278e0", "Apache-2.0"),
    Distribution("attrs", "26.1.0", "attrs-26.1.0-py3-none-any.whl",
                 "c647aa4a12dfbad9333ca4e71fe62ddc36f4e63b2d260a37a8b83d2f043ac309", "MIT"),
    Distribution("pyparsing", "3.3.3", "pyparsing-3.3.3-py3-none-any.whl",
                 "ece8c00a69cf01b45d0b1dedabb469c90d8caf996d4fda40f147627a122849a4", "MIT"),
    Distribution("alembic", "1.20.1", "alembic-1.20.1-py3-none-any.whl",
                 "9970712cfb81ea26c8658d378aaa5b8f6ff9146e5bb111d70497c164016cf598", "MIT"),
)

# Path components that mark a wheel's file as a test or a vendored copy of
# another project; a generated file says so in its first lines; a file over
# MAX_SOURCE_BYTES is data written as Python (tables), not code.
_TEST_PARTS = frozenset({"test", "tests", "testing", "_tests", "testsuite", "unittests"})
_VENDORED_PARTS = frozenset({"_vendor", "vendor", "vendored", "_vendored", "extern",
                             "_extern", "third_party", "externals"})
_GENERATED = re.compile(r"generated|do not edit", re.IGNORECASE)
MAX_SOURCE_BYTES = 512 << 10
# Files whose estimated Jaccard similarity (5-token shingles, MinHash) with a
# file kept before them reaches this are near duplicates.
NEAR_DUPLICATE_JACCARD = 0.85


def fetch_wheels(distributions, dest: pathlib.Path,
                 pip_args: tuple[str, ...] = ()) -> dict[str, pathlib.Path]:
  """The pinned wheels in `dest`, fetched with pip (`--require-hashes`) if
  missing, each checked against its pinned sha256; by distribution name."""
  dest.mkdir(parents=True, exist_ok=True)
  missing = [d for d in distributions if not (dest / d.wheel).is_file()]
  if missing:
    requirements = dest / "requirements.txt"
    requirements.write_text("".join(f"{d.name}=={d.version} --hash=sha256:{d.sha256}\n"
                                    for d in missing))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--require-hashes", "--ignore-requires-python", "--disable-pip-version-check",
         "--quiet", "-r",
         str(requirements), "-d", str(dest), *pip_args],
        capture_output=True, text=True)
    if done.returncode:
      said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
      raise RuntimeError(
          f"python_packages: pip could not fetch {len(missing)} pinned wheels "
          f"({said[-1] if said else 'no message'}); the corpus needs the package "
          "index once, when it is first prepared")
  wheels = {}
  for d in distributions:
    path = dest / d.wheel
    if not path.is_file():
      raise RuntimeError(f"python_packages: pip fetched no {d.wheel} for {d.name}=={d.version}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != d.sha256:
      raise ValueError(f"python_packages: {path} has sha256 {digest}, pinned {d.sha256}")
    wheels[d.name] = path
  return wheels


def _kind_left_out(member: str, text: str) -> str | None:
  """Why a wheel's `.py` file is left out of the corpus, or None."""
  parts = set(member.split("/")[:-1])
  name = member.rsplit("/", 1)[-1]
  if parts & _TEST_PARTS or name.startswith("test_") or name.endswith("_test.py") \
      or name == "conftest.py":
    return "tests"
  if parts & _VENDORED_PARTS:
    return "vendored"
  if len(text.encode()) > MAX_SOURCE_BYTES or _GENERATED.search("\n".join(
      text.splitlines()[:5])):
    return "generated"
  return None


def wheel_sources(distribution: Distribution, wheel: pathlib.Path,
                  left_out: collections.Counter) -> list[tuple[str, str]]:
  """`(key, text)` of a wheel's kept `.py` files, key `name/path`; counts
  the others in `left_out` by why."""
  kept = []
  with zipfile.ZipFile(wheel) as archive:
    for member in sorted(archive.namelist()):
      if not member.endswith(".py") or ".dist-info/" in member:
        continue
      try:
        text = archive.read(member).decode("utf-8")
      except UnicodeDecodeError:
        left_out["not UTF-8"] += 1
        continue
      why = _kind_left_out(member, text) or (None if text.strip() else "empty")
      if why:
        left_out[why] += 1
      else:
        kept.append((f"{distribution.name}/{member}", text))
  return kept


def _shingles(text: str) -> set[bytes]:
  tokens = re.findall(r"\w+|[^\w\s]", text)
  return {" ".join(tokens[i:i + 5]).encode() for i in range(max(len(tokens) - 4, 1))}


def deduplicate(documents: list[tuple[str, str]], left_out: collections.Counter,
                jaccard: float = NEAR_DUPLICATE_JACCARD) -> list[tuple[str, str]]:
  """`documents` without exact duplicates (same text) and near duplicates
  (MinHash LSH at `jaccard`) of a document before them, counted in `left_out`."""
  from datasketch import MinHash, MinHashLSH
  seen, kept = set(), []
  lsh = MinHashLSH(threshold=jaccard, num_perm=128)
  for key, text in documents:
    digest = hashlib.sha256(text.encode()).digest()
    if digest in seen:
      left_out["exact duplicates"] += 1
      continue
    seen.add(digest)
    signature = MinHash(num_perm=128)
    signature.update_batch(list(_shingles(text)))
    if lsh.query(signature):
      left_out["near duplicates"] += 1
      continue
    lsh.insert(key, signature)
    kept.append((key, text))
  return kept


class PythonPackages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The Python sources of the pinned `DISTRIBUTIONS`, fetched with pip into
  the download directory when first prepared."""
  VERSION = tfds.core.Version("1.0.0")
  DISTRIBUTIONS = PYTHON_PACKAGES
  PIP_ARGS: tuple[str, ...] = ()  # where pip looks (a test's local wheels)

  def _info(self):
    return _documents_info(
        self, "Python sources of pinned permissively licensed PyPI distributions "
        "(no tests, vendored, generated or duplicate files).", "path",
        distributions=[dataclasses.asdict(d) for d in self.DISTRIBUTIONS])

  def _split_generators(self, dl_manager):
    wheels = fetch_wheels(self.DISTRIBUTIONS,
                          pathlib.Path(dl_manager.download_dir) / "python_packages",
                          self.PIP_ARGS)
    left_out = collections.Counter()
    sources = [doc for d in self.DISTRIBUTIONS
               for doc in wheel_sources(d, wheels[d.name], left_out)]
    kept = deduplicate(sources, left_out)
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
