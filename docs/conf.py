"""Sphinx configuration of infoscope's documentation site.

Build it (warnings are errors) from the repository root with the command
after the ``docs-command`` marker in README.md, which CI runs::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery (``examples/plot_*.py``) is executed at build time on the CPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import infoscope

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # the gallery's figure scraper (_scraper.py)

# The gallery runs on the CPU even where a GPU is present, on one thread per
# library so a build on a small machine is not slowed by oversubscription.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# infoscope.callbacks.KerasCallback is built on first access, which imports Keras.
os.environ.setdefault("KERAS_BACKEND", "jax")

project = "infoscope"
author = "the infoscope developers"
copyright = "2026, the infoscope developers"
release = infoscope.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**/README.rst"]
root_doc = "index"
default_role = "py:obj"

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False, "inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters section says it

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    # ntk_data_selection.py is the full study's module; plot_ntk_selection.py
    # imports and runs it at gallery size.
    "ignore_pattern": r"__init__\.py|ntk_data_selection\.py",
    "image_scrapers": ("_scraper.figure_scraper", "matplotlib"),
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "show_memory": False,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
}

html_theme = "pydata_sphinx_theme"
html_title = f"infoscope {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
html_show_sourcelink = False
