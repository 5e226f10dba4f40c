"""The documentation site covers the package: every public name is in the API
reference, and the README's docs command is the one CI runs."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest

import infoscope

# infoscope.callbacks.KerasCallback imports Keras on first access.
os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.rst"

# The modules whose ``__all__`` is public API. infoscope.__all__ also names its
# submodules; those are documented through their own names.
PUBLIC_MODULES = (
    "infoscope",
    "infoscope.adapters.torch",
    "infoscope.adapters.jax",
    "infoscope.adapters.keras",
    "infoscope.selection",
    "infoscope.monitor",
    "infoscope.runs",
    "infoscope.plotting",
    "infoscope.callbacks",
    "infoscope.kernels",
    "infoscope.backends",
)


def documented_names(text: str) -> set[str]:
    """The fully qualified names listed in the autosummary blocks of `text`."""
    names, module, in_block = set(), None, False
    for line in text.splitlines():
        if match := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = match[1]
        elif line.startswith(".. autosummary::"):
            in_block = True
        elif in_block and re.match(r"   [A-Za-z_][\w.]*$", line):
            names.add(f"{module}.{line.strip()}")
        elif in_block and line and not line.startswith(" "):
            in_block = False
    return names


def public_names() -> set[str]:
    names = set()
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if type(obj).__name__ == "module" or attr == "__version__":
                continue
            names.add(f"{name}.{attr}")
    return names


def resolve(qualified: str):
    """The object `qualified` names, importing the longest module prefix."""
    parts = qualified.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(qualified)


def test_parser_reads_currentmodule_and_entries():
    text = (
        ".. currentmodule:: pkg\n\n.. autosummary::\n   :toctree: generated\n\n"
        "   f\n   sub.g\n\nText\n\n   h\n"
    )
    assert documented_names(text) == {"pkg.f", "pkg.sub.g"}


def test_every_public_name_is_in_the_api_reference():
    # A name exported twice (infoscope.Monitor is infoscope.monitor.Monitor)
    # is documented once.
    documented = {id(resolve(name)) for name in documented_names(API.read_text())}
    missing = sorted(
        name for name in public_names() if id(resolve(name)) not in documented
    )
    assert not missing, f"add to docs/api.rst: {missing}"


def test_every_api_entry_exists_and_has_an_example():
    for qualified in sorted(documented_names(API.read_text())):
        obj = resolve(qualified)
        doc = obj.__doc__ or ""
        assert "Examples\n" in doc.replace("    ", ""), f"{qualified} has no Examples"


def test_readme_docs_command_builds_with_warnings_as_errors():
    readme = (ROOT / "README.md").read_text()
    command = re.search(
        r"<!-- docs-command[^>]*-->\s*```bash\n(.+?)\n```", readme, re.S
    )
    assert command, "README.md has no docs-command block"
    assert "sphinx -W" in command[1] and "docs" in command[1]
    assert "docs-command" in (ROOT / ".ci" / "run").read_text()


def test_version_in_the_site_is_the_package_version():
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert "release = infoscope.__version__" in conf
    assert infoscope.__version__


def test_gallery_scraper_saves_each_pyplot_free_figure_once(tmp_path):
    pytest.importorskip("sphinx_gallery")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import sys

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from _scraper import figure_scraper
    finally:
        sys.path.remove(str(ROOT / "docs"))
    free, managed = Figure(), plt.figure()
    paths = iter(tmp_path / f"image_{i}.png" for i in range(10))
    block_vars = {
        "example_globals": {"free": free, "managed": managed, "n": 3},
        "image_path_iterator": paths,
    }
    conf = {"src_dir": str(tmp_path)}
    first = figure_scraper(None, block_vars, conf)
    plt.close(managed)  # what the matplotlib scraper does after saving it
    second = figure_scraper(None, block_vars, conf)
    assert "image_0.png" in first and "image_1.png" not in first
    assert second == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_0.png"]
