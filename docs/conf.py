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
sys.path.insert(0, str(DOCS))  # _scraper.py (the gallery's figures), _source.py

from _source import write_source_archive  # noqa: E402

try:  # Sphinx >= 9
    from sphinx.ext.autodoc._sentinels import INSTANCE_ATTR
except ImportError:
    try:
        from sphinx.ext.autodoc import INSTANCEATTR as INSTANCE_ATTR
    except ImportError:  # a Sphinx that names it otherwise: nothing is skipped
        INSTANCE_ATTR = object()

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
    # MathJax 3 from the package, copied into _static/mathjax: equations render
    # without a network. It sets mathjax_path to that copy.
    "sphinx-mathjax-offline",
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
    # ntk_data_selection.py and claims.py are the full studies' modules; the
    # plot_ntk_selection.py and plot_claim_*.py examples run them at gallery
    # size.
    "ignore_pattern": r"__init__\.py|ntk_data_selection\.py|claims\.py",
    "image_scrapers": ("_scraper.figure_scraper", "matplotlib"),
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "show_memory": False,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    # Only what an example prints is shown: the value of a cell's last
    # expression (a matplotlib call's return value) is not.
    "capture_repr": (),
    # The computation-times pages load jQuery and DataTables from CDNs.
    "write_computation_times": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"infoscope {release}"
html_theme_options = {
    # Six top-level pages and the title fit on one line at 1280 px with four
    # links before the "More" menu.
    "header_links_before_dropdown": 4,
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
# The gallery's pages go without the left sidebar (the gallery's own list of
# examples), and so does Installing (it has no subpages): their code, 88
# characters a line, then fits beside the page's table of contents at 1280 px
# instead of wrapping.
html_sidebars = {"auto_examples/*": [], "install": []}
html_static_path = ["_static"]
html_css_files = ["infoscope.css"]
html_show_sourcelink = False

# The site ships the source it was built from (install.rst links to it).
SOURCE_ARCHIVE = f"infoscope-{release}.tar.gz"
rst_epilog = f"""
.. |source-archive| replace:: ``{SOURCE_ARCHIVE}``
.. _source-archive: {SOURCE_ARCHIVE}
"""


def _write_source_archive(app) -> None:
    if app.builder.format == "html":
        write_source_archive(DOCS.parent, Path(app.outdir) / SOURCE_ARCHIVE)


def _skip_instance_attributes(app, what, name, obj, skip, options):
    """Leave out of a class's attribute table what the class does not hold.

    autosummary lists annotation-only members (a dataclass field without a
    class-level default, such as ``Probe.step``) with a placeholder of its own
    as their value, then cannot import them. Their docstring's Attributes
    section documents them.
    """
    return True if obj is INSTANCE_ATTR else None


def setup(app):
    app.connect("builder-inited", _write_source_archive)
    app.connect("autodoc-skip-member", _skip_instance_attributes)
