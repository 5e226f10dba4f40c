"""Benchmarks of the training monitor and the demo.

``MonitorRecord.track_ratio_to_direct`` is the cost of the monitor itself:
one ``Monitor.record`` of the demo's measures (HSIC plane, DSE, DSMI, Node
SNR, NTK entropy and class MI on a 500-sample probe of digits through the
64-64-32-10 MLP) over the same adapters and estimators called by hand. The
bookkeeping (the run's SQLite transaction, the copies to the host) should keep
it near 1. ``RunStore`` is that transaction alone: the time and the bytes one
demo record costs in the run file, and its share of the whole record.
``Demo.time_demo`` is ``infoscope demo``'s default run (30 epochs), which the
README says takes about a minute on two CPU cores.

``MonitorRecord.peakmem_record`` is asv's peak resident size of the whole
benchmark process; ``track_record_traced_peak`` the bytes one record itself
holds at most, as the framework's allocator sees them
(``_memory.traced_peak``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time

import numpy as np

from ._memory import framework_backend, traced_peak

FRAMEWORKS = ["torch", "jax"]


def _missing(framework: str) -> bool:
    return importlib.util.find_spec(framework) is None


class MonitorRecord:
    """One record of every family's measures, through the monitor and by hand."""

    params = FRAMEWORKS
    param_names = ["framework"]
    timeout = 300

    def setup(self, framework):
        if _missing(framework):
            raise NotImplementedError(f"{framework} is not installed")
        from infoscope import Monitor, adapters
        from infoscope.demo import demo_measures, demo_network, digits_split

        data = digits_split()
        self.X, self.y = data["X_probe"], data["y_probe"]
        self.folder = tempfile.mkdtemp()
        self.model, self.params, self.layers = demo_network(framework)
        self.adapter = getattr(adapters, framework)
        self.monitor = Monitor(
            demo_measures(), self.X, self.y, layers=self.layers,
            path=os.path.join(self.folder, "run.db"), progress=False,
        )  # fmt: skip
        self.step = 0
        self._record()  # warm-up: imports, JAX compilation, fitted HSIC plane
        self._direct()

    def teardown(self, framework):
        shutil.rmtree(self.folder, ignore_errors=True)

    def _record(self):
        self.step += 1
        self.monitor.record(self.step, self.model, params=self.params, force=True)

    def _direct(self):
        """The same measures with the adapters and estimators called by hand."""
        from infoscope import (
            DiffusionSpectralEntropy,
            DiffusionSpectralMutualInformation,
            HSICPlane,
            NodeSNR,
            NTKEntropy,
            NTKMutualInformation,
        )
        from infoscope.backends import asarray, namespace_and_device, to_numpy

        args = (self.model,) if self.params is None else (self.model, self.params)
        acts = self.adapter.activations(*args, self.X, self.layers)
        xp, device = namespace_and_device(next(iter(acts.values())))
        X, y = (
            asarray(self.X, xp=xp, device=device),
            asarray(self.y, xp=xp, device=device),
        )
        if not hasattr(self, "plane"):
            self.plane = HSICPlane().fit(X, y)
        values = [
            float(v)
            for v in to_numpy(self.plane.transform(list(acts.values()))).ravel()
        ]
        for H in acts.values():
            values.append(DiffusionSpectralEntropy().fit(H).entropy_)
            dsmi = DiffusionSpectralMutualInformation(random_state=0).fit(H, y)
            values.append(dsmi.mutual_information_)
        for _, inputs, W in self.adapter.dense_layers(*args, self.X):
            values.append(NodeSNR().fit(inputs, weights=W).optimality_mean_)
        K = self.adapter.empirical_ntk(*args, self.X)
        values.append(NTKEntropy().fit(K).entropy_)
        mi = NTKMutualInformation(max_combination_size=2).fit(K, self.y)
        values.append(float(np.mean(np.asarray(mi.mutual_information_))))
        return values

    def time_record(self, framework):
        self._record()

    def peakmem_record(self, framework):
        self._record()

    def track_record_traced_peak(self, framework):
        """Bytes one record holds at most (every family's measures, the run's
        append)."""
        return traced_peak(framework_backend(framework), self._record)

    track_record_traced_peak.unit = "bytes"

    def track_ratio_to_direct(self, framework):
        """Median time of a record over that of the measures called by hand."""
        ours, direct = [], []
        for _ in range(3):
            start = time.perf_counter()
            self._record()
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            self._direct()
            direct.append(time.perf_counter() - start)
        return float(np.median(ours) / np.median(direct))

    track_ratio_to_direct.unit = "ratio"


class RunStore:
    """What storing one demo record costs: time, file bytes, share of a record.

    The record is the demo's (torch, 500-sample probe): 40 values and the Node
    SNR weights and covariances of three dense layers plus the NTK's 500
    eigenvalues as arrays. The file is SQLite in WAL mode with
    ``synchronous=FULL``: each append is one transaction with its fsyncs.
    """

    timeout = 300

    def setup(self):
        if _missing("torch"):
            raise NotImplementedError("torch is not installed")
        from infoscope import Monitor
        from infoscope.demo import demo_measures, demo_network, digits_split
        from infoscope.runs import Run

        data = digits_split()
        model, _, layers = demo_network("torch")
        self.monitor = Monitor(
            demo_measures(), data["X_probe"], data["y_probe"], layers=layers,
            progress=False,
        )  # fmt: skip
        self.model = model
        self.record = self.monitor.record(0, model)
        self.folder = tempfile.mkdtemp()
        self.path = os.path.join(self.folder, "run.db")
        self.run = Run(self.path)
        self.step = 0

    def teardown(self):
        self.run.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _append(self):
        from infoscope.runs import Record

        self.step += 1
        self.run.append(Record(self.step, self.record.values, self.record.arrays))

    def time_append(self):
        self._append()

    def track_bytes_per_record(self):
        """Bytes of the run file added by 50 records, per record."""
        self._append()
        self.run.close()  # checkpoints the write-ahead log into the file
        before = os.path.getsize(self.path)
        for _ in range(50):
            self._append()
        self.run.close()
        return (os.path.getsize(self.path) - before) / 50

    track_bytes_per_record.unit = "bytes"

    def track_append_share_of_record(self):
        """Median time of the append over that of the whole Monitor.record."""
        appends, records = [], []
        for step in range(1, 6):
            start = time.perf_counter()
            self._append()
            appends.append(time.perf_counter() - start)
            start = time.perf_counter()
            self.monitor.record(step, self.model)
            records.append(time.perf_counter() - start)
        return float(np.median(appends) / np.median(records))

    track_append_share_of_record.unit = "ratio"


class Demo:
    """``infoscope demo``'s default run: 30 epochs, every measure per epoch."""

    params = FRAMEWORKS
    param_names = ["framework"]
    timeout = 600
    number = 1
    repeat = 1
    warmup_time = 0

    def setup(self, framework):
        if _missing(framework):
            raise NotImplementedError(f"{framework} is not installed")
        self.folder = tempfile.mkdtemp()

    def teardown(self, framework):
        shutil.rmtree(self.folder, ignore_errors=True)

    def time_demo(self, framework):
        from infoscope.demo import run_demo

        run_demo(self.folder, framework=framework, overwrite=True, progress=False)
