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


def _devices_without_hardware() -> dict[str, str]:
    """Torch devices compiled into the installed build that this machine lacks."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return {}
    import torch

    missing = {}
    if torch.backends.cuda.is_built() and not torch.cuda.is_available():
        missing["cuda"] = "this torch build has CUDA but the machine no CUDA device"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_built() and not mps.is_available():
        missing["mps"] = "this torch build has MPS but the machine no MPS device"
    return missing


def pytest_collection_modifyitems(config, items) -> None:
    # scikit-learn's array-API estimator checks run on every device the torch
    # build was compiled for (CUDA whenever it is built in), and fail instead
    # of skipping when there is no such device: skip them as a missing backend.
    marked = [i for i in items if "device_name=" in i.nodeid or "device='" in i.nodeid]
    if not marked:
        return
    for device, reason in _devices_without_hardware().items():
        for item in marked:
            if f"device_name={device}" in item.nodeid or f"device='{device}'" in (
                item.nodeid
            ):
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_report_header(config) -> list[str]:
    lines = []
    for spec in BACKENDS:
        reason = missing_reason(spec)
        lines.append(
            f"  {spec.id}: {'yes' if reason is None else 'skipped (' + reason + ')'}"
        )
    return ["infoscope backends:", *lines]
