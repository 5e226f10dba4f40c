"""Backend fixtures: every test that takes `backend` (or `xp`, `device`) runs once
per installed array library and device, and skips the ones that are missing."""

from __future__ import annotations

import os
from typing import Any

# scikit-learn's estimator checks exercise array-API inputs only when SciPy's
# array-API mode is on; it is read when SciPy is first imported, so set it here.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest
from _harness import BACKENDS, Backend, BackendSpec, missing_reason


@pytest.fixture(params=BACKENDS, ids=lambda spec: spec.id)
def backend(request) -> Backend:
    spec: BackendSpec = request.param
    reason = missing_reason(spec)
    if reason is not None:
        pytest.skip(reason)
    if spec.x64 is None:
        yield Backend(spec)
        return
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", spec.x64)
    try:
        yield Backend(spec)
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture
def xp(backend: Backend) -> Any:
    return backend.xp


@pytest.fixture
def device(backend: Backend) -> Any:
    return backend.device


def pytest_report_header(config) -> list[str]:
    lines = []
    for spec in BACKENDS:
        reason = missing_reason(spec)
        lines.append(
            f"  {spec.id}: {'yes' if reason is None else 'skipped (' + reason + ')'}"
        )
    return ["infoscope backends:", *lines]
