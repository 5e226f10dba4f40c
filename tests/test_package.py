import doctest
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _harness import available_backends

import infoscope

FRAMEWORKS = (
    "torch",
    "jax",
    "jaxlib",
    "cupy",
    "matplotlib",
    "tensorflow",
    "flax",
    "dask",
)


def test_import_pulls_in_no_framework():
    code = (
        "import sys, infoscope, infoscope.backends, infoscope.estimators._base\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"importing infoscope imported {out}"


def test_import_is_light_and_subpackages_load_on_use():
    code = (
        "import sys, infoscope\n"
        "heavy = [m for m in ('sklearn', 'scipy', 'numpy') if m in sys.modules]\n"
        "infoscope.backends.eigvalsh\n"
        "print(','.join(heavy), 'infoscope.backends' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True"], f"import infoscope pulled in {out[:-1]}"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(
        AttributeError, match="module 'infoscope' has no attribute 'nope'"
    ):
        infoscope.nope  # noqa: B018


def test_version_is_exposed():
    assert infoscope.__version__.count(".") >= 2


def test_the_test_extras_give_the_four_cpu_backends():
    # The [test] extra installs array-api-strict, torch and jax: a run of the
    # README's test command that silently skipped any of them would test less
    # than it claims. This fails instead of skipping.
    required = {
        "numpy",
        "array_api_strict",
        "array_api_strict-no_float64",
        "torch-cpu",
        "jax-cpu-x64",
        "jax-cpu-x32",
    }
    missing = required - set(available_backends())
    assert not missing, f"backends missing from this run: {sorted(missing)}"


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the monitor example writes run.db
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {}  # one session, as a reader would run the blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    # The tour's claims about what it computed.
    assert tuple(namespace["D"].shape) == (500, 500)
    assert tuple(namespace["neighbours"].shape) == (500, 10)
    assert (namespace["neighbours"][:, 0] == namespace["torch"].arange(500)).all()
    assert namespace["spectrum"].dtype == namespace["torch"].float64
    assert namespace["dsmi"].mutual_information_ > 1.0
    history = namespace["history"]
    assert {"hsic_x", "hsic_y", "dsmi", "snr_optimality", "ntk_entropy", "loss"} <= set(
        history.measure
    )
    assert (tmp_path / "run.db").exists()
    assert infoscope.load_run("run.db").steps == [0, 2, 4]
    assert namespace["record"].step == 4  # the last step recorded


def test_readme_console_examples_run():
    # Every ```pycon block of the README is a doctest; each section is one
    # session of its own, as a reader would paste it.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```pycon\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3, "README.md lost its console examples"
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
    )
    for i, block in enumerate(blocks):
        runner.run(parser.get_doctest(block, {}, f"README[{i}]", "README.md", 0))
    result = runner.summarize(verbose=False)
    assert result.attempted > 20 and result.failed == 0


def test_every_public_name_resolves_to_its_own_module():
    for name, module in infoscope._EXPORTS.items():
        value = getattr(infoscope, name)
        assert value.__name__ == name
        assert value.__module__ == "infoscope" + module
        assert name in dir(infoscope)
