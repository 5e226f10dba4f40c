"""The documentation site covers the package: every public name is in the API
reference, and the README's docs command is the one CI runs."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
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
    "infoscope.adapters",
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


def _docs_module(name):
    """Import ``docs/<name>.py`` (the docs folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_source_archive_holds_the_source_tree(tmp_path):
    source = _docs_module("_source")
    path = source.write_source_archive(ROOT, tmp_path / "infoscope-9.9.tar.gz")
    with tarfile.open(path) as archive:
        names = archive.getnames()
        pyproject = archive.extractfile("infoscope-9.9/pyproject.toml").read()
    assert all(name.startswith("infoscope-9.9/") for name in names)
    names = {name.removeprefix("infoscope-9.9/") for name in names}
    for wanted in (
        "pyproject.toml",
        "README.md",
        "src/infoscope/__init__.py",
        "tests/test_docs.py",
        "docs/conf.py",
        "examples/plot_hsic_digits.py",
    ):
        assert wanted in names
    assert pyproject == (ROOT / "pyproject.toml").read_bytes()
    built = ("__pycache__/", ".git/", "docs/_build/", "docs/generated/", ".egg-info/")
    assert not [name for name in names for part in built if part in f"/{name}"]


def test_source_archive_outside_git_follows_gitignore(tmp_path):
    source = _docs_module("_source")
    tree = tmp_path / "tree"
    for name in (
        "pyproject.toml",
        "src/pkg/__init__.py",
        "src/pkg/__pycache__/x.pyc",
        "src/pkg.egg-info/PKG-INFO",
        "docs/_build/html/index.html",
        "docs/build.rst",
        "notes.log",
        ".git/HEAD",
    ):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    (tree / ".gitignore").write_text(
        "# comment\n__pycache__/\n*.egg-info/\ndocs/_build/\n*.log\n"
    )
    assert source.source_files(tree) == [
        ".gitignore",
        "docs/build.rst",
        "pyproject.toml",
        "src/pkg/__init__.py",
    ]
    with pytest.raises(
        FileNotFoundError, match=r"write_source_archive: .* no pyproject"
    ):
        source.write_source_archive(tree / "src", tmp_path / "x-1.tar.gz")


TINY_EXAMPLE = '''"""
A tiny example
==============

Text.
"""

from matplotlib.figure import Figure

print("printed by the example")
fig = Figure()
ax = fig.add_subplot()
ax.plot([0, 1], [0, 1])
ax.set_title("CKA plane")
'''

TINY_INDEX = """Tiny
====

Inline :math:`\\alpha^2` and a display:

.. math::

   H = -\\sum_i p_i \\log_2 p_i

The source: |source-archive|_.

.. toctree::

   auto_examples/index
"""


def test_site_renders_math_offline_and_gallery_output_as_printed(tmp_path):
    """A two-page site built with docs/conf.py, offline: MathJax is local,
    the gallery shows what an example prints and not its last value, and the
    code and output blocks are the ones docs/_static/infoscope.css wraps."""
    for name in ("sphinx", "sphinx_gallery", "numpydoc", "pydata_sphinx_theme"):
        pytest.importorskip(name)
    if importlib.util.find_spec("sphinx-mathjax-offline") is None:
        pytest.skip("sphinx-mathjax-offline is not installed")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.rst").write_text(TINY_INDEX)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "README.txt").write_text("Gallery\n=======\n")
    (tmp_path / "examples" / "plot_tiny.py").write_text(TINY_EXAMPLE)
    out = tmp_path / "html"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # -c docs: the site's own configuration; a subprocess, because conf.py
    # sets environment variables (the gallery runs on the CPU).
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", "-c",
         str(ROOT / "docs"), str(tmp_path / "src"), str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr

    index = (out / "index.html").read_text()
    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", index)
    assert "_static/mathjax/tex-chtml.js" in scripts
    assert not [s for s in scripts if re.match(r"(https?:)?//", s)], scripts
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file()
    fonts = out / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10

    archive = re.search(r'href="(infoscope-[^"]+\.tar\.gz)"', index)
    assert archive and tarfile.is_tarfile(out / archive[1])

    page = (out / "auto_examples" / "plot_tiny.html").read_text()
    assert "printed by the example" in page
    assert "CKA plane" in page  # the code
    assert "Text(" not in page  # ... but not the value of its last line
    assert "_static/infoscope.css" in page
    assert re.search(
        r'<div class="highlight-Python[^"]*"><div class="highlight"><pre>', page
    )
    assert re.search(
        r'<div class="sphx-glr-script-out highlight-none[^"]*"><div class="highlight"><pre>',
        page,
    )
    css = (out / "_static" / "infoscope.css").read_text()
    rule = re.search(r"div\.highlight pre \{([^}]*)\}", css)
    assert rule and "white-space: pre-wrap" in rule[1]
