"""The memory guard knows the real limit: cgroups, the machine, the device."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from infoscope.backends import (
    MemoryLimitError,
    _memory,
    available_memory,
    check_memory,
    check_ntk_memory,
)

GIB = 2**30


def fake_system(tmp_path, monkeypatch, *, meminfo_gib=20.5, cgroup=None, v1=False):
    """A /proc and /sys/fs/cgroup of our own; `cgroup` maps folders to files."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(
        f"MemTotal:       {int(64 * GIB / 1024)} kB\n"
        f"MemAvailable:   {int(meminfo_gib * GIB / 1024)} kB\n"
    )
    root = tmp_path / "cgroup"
    root.mkdir()
    lines = []
    for folder, files in (cgroup or {}).items():
        where = root / ("memory" if v1 else "") / folder.strip("/")
        where.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (where / name).write_text(text)
    if cgroup is not None and not v1:
        (root / "cgroup.controllers").write_text("cpu memory\n")
    process_group = max(cgroup or {"/": None}, key=len)
    if v1:
        lines.append(f"4:memory:{process_group}")
    else:
        lines.append(f"0::{process_group}")
    (proc / "self" / "cgroup").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(_memory, "_PROC", str(proc))
    monkeypatch.setattr(_memory, "_CGROUP_ROOT", str(root))


def test_no_cgroup_limit_reads_the_machine(tmp_path, monkeypatch):
    fake_system(tmp_path, monkeypatch)
    assert available_memory(np, "cpu") == int(20.5 * GIB)


def test_a_cgroup_v2_limit_below_the_machine_is_what_counts(tmp_path, monkeypatch):
    # The container: 1.5 GiB allowed, 20.5 GiB free on the machine.
    fake_system(
        tmp_path,
        monkeypatch,
        cgroup={
            "/": {},
            "/job": {
                "memory.max": str(int(1.5 * GIB)),
                "memory.current": str(GIB // 2),
            },
        },
    )
    assert available_memory(np, "cpu") == GIB


def test_the_tightest_ancestor_cgroup_counts(tmp_path, monkeypatch):
    fake_system(
        tmp_path,
        monkeypatch,
        cgroup={
            "/parent": {
                "memory.max": str(2 * GIB),
                "memory.current": str(GIB + GIB // 2),
            },
            "/parent/child": {"memory.max": "max", "memory.current": str(GIB // 4)},
        },
    )
    assert available_memory(np, "cpu") == GIB // 2


def test_cgroup_v2_without_a_limit_falls_back_to_the_machine(tmp_path, monkeypatch):
    fake_system(
        tmp_path,
        monkeypatch,
        cgroup={"/job": {"memory.max": "max", "memory.current": "1000"}},
    )
    assert available_memory(np, "cpu") == int(20.5 * GIB)


def test_a_cgroup_v1_limit_counts_and_its_no_limit_value_does_not(
    tmp_path, monkeypatch
):
    fake_system(
        tmp_path,
        monkeypatch,
        v1=True,
        cgroup={
            "/docker/abc": {
                "memory.limit_in_bytes": str(3 * GIB),
                "memory.usage_in_bytes": str(GIB),
            }
        },
    )
    assert available_memory(np, "cpu") == 2 * GIB
    fake_system(
        tmp_path / "unlimited",
        monkeypatch,
        v1=True,
        cgroup={
            "/docker/abc": {
                "memory.limit_in_bytes": "9223372036854771712",
                "memory.usage_in_bytes": str(GIB),
            }
        },
    )
    assert available_memory(np, "cpu") == int(20.5 * GIB)


def test_a_namespaced_cgroup_v1_reads_the_mount_root(tmp_path, monkeypatch):
    # Inside a cgroup namespace /proc/self/cgroup names a path that does not
    # exist under the mount: the mount's root is the group itself.
    fake_system(
        tmp_path,
        monkeypatch,
        v1=True,
        cgroup={
            "/": {
                "memory.limit_in_bytes": str(4 * GIB),
                "memory.usage_in_bytes": str(3 * GIB),
            }
        },
    )
    (tmp_path / "proc" / "self" / "cgroup").write_text("4:memory:/process_api/xyz\n")
    assert available_memory(np, "cpu") == GIB


def test_this_machine_is_read_through_the_same_rules():
    free = available_memory(np, "cpu")
    assert free is not None and 0 < free <= _memory._meminfo_available()


def test_check_memory_names_the_caller_the_need_and_the_fix(tmp_path, monkeypatch):
    fake_system(tmp_path, monkeypatch, meminfo_gib=1.0)
    check_memory(GIB // 2, xp=np, device="cpu", caller="f", what="x", advice="y")
    with pytest.raises(MemoryLimitError) as info:
        check_memory(
            3 * GIB,
            xp=np,
            device="cpu",
            caller="demo",
            what="the exact method",
            detail=" for 10 samples",
            advice=lambda free: f"use at most {free // 2**20} MiB",
        )
    error = info.value
    assert str(error) == (
        "demo: the exact method needs about 3.0 GiB for 10 samples, but only 1.0 "
        "GiB is free on cpu. use at most 1024 MiB."
    )
    assert isinstance(error, ValueError)
    assert (error.needed, error.available, error.caller) == (3 * GIB, GIB, "demo")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.needed, copy.available) == (str(error), 3 * GIB, GIB)


def test_the_ntk_guard_names_options_empirical_ntk_has(monkeypatch):
    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 10**6)
    with pytest.raises(
        MemoryLimitError,
        match=r"empirical_ntk: the 3000 x 3000 NTK needs about 34\.3 MiB \(with "
        r"0\.0 B of per-sample features\), but only 976\.6 KiB is free on cpu\. "
        r"Pass fewer samples in X1 \(and X2\) or output_mode='mean'",
    ):
        check_ntk_memory(
            3000,
            3000,
            np.float32,
            working_set=0,
            xp=np,
            device="cpu",
            caller="empirical_ntk",
            full=True,
        )


def test_torch_empirical_ntk_refuses_before_allocating(monkeypatch):
    torch = pytest.importorskip("torch")
    from infoscope.adapters.torch import empirical_ntk

    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    )
    X = torch.randn(200, 4)
    assert empirical_ntk(model, X[:5]).shape == (5, 5)
    # 200 x 200 float32 = 160 kB; 600 x 600 in "full" mode = 1.4 MB.
    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 1_000_000)
    assert empirical_ntk(model, X).shape == (200, 200)
    with pytest.raises(
        ValueError,
        match=r"torch\.empirical_ntk: the 600 x 600 NTK needs about .* "
        r"Pass fewer samples in X1 \(and X2\) or output_mode='mean'",
    ):
        empirical_ntk(model, X, output_mode="full")


def test_jax_empirical_ntk_refuses_before_allocating(monkeypatch):
    jax = pytest.importorskip("jax")
    from infoscope.adapters.jax import empirical_ntk

    def apply_fn(params, x):
        return jax.numpy.tanh(x @ params["w"]) @ params["v"]

    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 8)), "v": rng.normal(size=(8, 3))}
    X = rng.normal(size=(300, 4))
    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 1_000_000)
    assert empirical_ntk(apply_fn, params, X[:50]).shape == (50, 50)
    with pytest.raises(ValueError, match=r"empirical_ntk: the 900 x 900 NTK needs"):
        empirical_ntk(apply_fn, params, X, output_mode="full")


def test_ntk_entropy_with_a_kernel_callable_refuses_before_calling_it(monkeypatch):
    from infoscope import NTKEntropy

    calls = []

    def kernel(X):
        calls.append(len(X))
        return X @ X.T

    X = np.random.default_rng(0).normal(size=(400, 3))
    monkeypatch.setattr(_memory, "available_memory", lambda xp, device: 10**6)
    with pytest.raises(
        ValueError,
        match=r"NTKEntropy: the exact method needs about .* at most \d+ samples",
    ):
        NTKEntropy(kernel=kernel).fit(X)
    assert calls == []
    NTKEntropy(kernel=kernel).fit(X[:100])
    assert calls == [100]
