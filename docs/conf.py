"""Sphinx configuration: the methods, the trainer, the benchmark and the API
reference of layeropt_jax (reStructuredText and, through MyST, Markdown).

  sphinx-build -W -b html docs docs/_build
"""

project = "layeropt_jax"
author = "the layeropt_jax authors"
copyright = "2026, the layeropt_jax authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# Markdown headings become link targets, as GitHub renders them.
myst_heading_anchors = 3
# Docstrings follow Google style (Args:, Returns:, References:), as optax's.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Single backticks in docstrings name code, as in optax's.
default_role = "code"
exclude_patterns = ["_build"]
html_theme = "alabaster"
