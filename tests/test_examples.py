"""The examples run: a reduced NTK data-selection study (1 seed, few epochs)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study():
    pytest.importorskip("torch")
    return load_example("ntk_data_selection")


@pytest.fixture(scope="module")
def rows(study):
    import torch

    threads = torch.get_num_threads()
    rows = study.run_study(
        n_select=12, seeds=(0,), epochs=15, n_candidates=40, pool_size=300
    )
    assert torch.get_num_threads() == threads  # the study's one thread is undone
    return rows


def test_reduced_study_rows(study, rows):
    assert [row.method for row in rows] == ["max-entropy", "greedy", "random"]
    assert all(row.seed == 0 for row in rows)
    by_method = {row.method: row for row in rows}
    for row in rows:
        assert 0.0 <= row.test_accuracy <= 1.0
        assert 0.0 <= row.entropy_before <= math.log2(12) + 1e-9
        assert 0.0 <= row.entropy_after <= math.log2(12) + 1e-9
        assert 1 <= row.classes_covered <= 10
        assert row.atypicality > 0
    # The random pick is the max-entropy selector's first candidate (same
    # seed): the max-entropy pick cannot have less NTK entropy before training.
    assert by_method["max-entropy"].entropy_before >= by_method["random"].entropy_before
    # Fifteen epochs of training leave the network better than chance.
    assert by_method["random"].test_accuracy > 0.15


def test_table_formats(study, rows):
    table = study.summarize(rows)
    assert [line[0] for line in table] == ["max-entropy", "greedy", "random"]
    markdown = study.format_table(table, "markdown").splitlines()
    assert markdown[0].startswith("| method") and len(markdown) == 5
    for column in study.COLUMNS:
        assert column in markdown[0]
    rst = study.format_table(table, "rst").splitlines()
    assert rst[0].startswith("+--") and set(rst[2]) <= {"+", "="}
    assert len(rst) == 3 + 2 * len(table)
    assert len({len(line) for line in rst}) == 1  # a well-formed grid table
    # The random baseline's paired difference with itself is 0.
    assert table[2][4] == "0.000 ± 0.000"
