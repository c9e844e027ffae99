"""The README's Python code blocks run as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_python_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert blocks
  namespace = {}
  for block in blocks:
    exec(compile(block, str(README), "exec"), namespace)
