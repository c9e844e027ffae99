"""The `python_packages` corpus's sources: a pinned list of permissively
licensed pure-Python PyPI distributions, fetched with pip (hashes checked),
their `.py` files without tests, vendored copies and generated files, and
without exact or near duplicates (MinHash LSH, datasketch)."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import pathlib
import re
import subprocess
import sys
import zipfile


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
_GENERATED = re.compile(r"auto-?generated|automatically generated|generated (by|from|using)"
                        r"|do not edit", re.IGNORECASE)
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
