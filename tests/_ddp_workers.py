"""Processes of a two-rank torch.distributed job (gloo, CPU) that record a Monitor.

Each rank trains the same small network on its half of a data set through
DistributedDataParallel and calls ``monitor.record`` at every step, as a user
would; rank 0 also saves the weights at each step so that a single process
can measure the same weights afterwards.
"""

from __future__ import annotations

import os
import sys

import numpy as np

STEPS = 4


def probe():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    return X, y


def network():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 2)
    )


def measures():
    from infoscope import DiffusionSpectralEntropy, HSICPlane, NodeSNR, NTKEntropy

    return [HSICPlane(), DiffusionSpectralEntropy(), NodeSNR(), NTKEntropy()]


def train_rank(rank: int, folder: str, connection) -> None:
    import torch
    import torch.distributed as dist

    from infoscope import Monitor

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(folder, 'rendezvous')}",
        rank=rank,
        world_size=2,
    )
    X, y = probe()
    model = torch.nn.parallel.DistributedDataParallel(network())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    monitor = Monitor(
        measures(), X, y, layers=["1", "2"], path=os.path.join(folder, "run.db"),
        progress=False,
    )  # fmt: skip
    half = slice(rank * 32, (rank + 1) * 32)
    results = []
    for step in range(STEPS):
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(X[half])), torch.from_numpy(y[half])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record = monitor.record(step, model, loss=float(step))
        results.append(None if record is None else record.step)
        if rank == 0:
            torch.save(
                model.module.state_dict(), os.path.join(folder, f"weights{step}.pt")
            )
    monitor.close()
    dist.barrier()
    dist.destroy_process_group()
    connection.send(results)


LIGHTNING_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import numpy as np, torch
import lightning.pytorch as pl
from _ddp_workers import measures, network, probe
from infoscope import Monitor
from infoscope.callbacks import LightningCallback

folder = {folder!r}
torch.set_num_threads(1)

class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = network()
    def forward(self, x):
        return self.net(x)
    def training_step(self, batch, batch_idx):
        x, labels = batch
        loss = torch.nn.functional.cross_entropy(self(x), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

class SaveWeights(pl.Callback):
    def on_train_epoch_end(self, trainer, module):
        if trainer.is_global_zero:
            torch.save(module.net.state_dict(),
                       os.path.join(folder, f"weights{{trainer.current_epoch}}.pt"))

X, y = probe()
data = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
    batch_size=16)
monitor = Monitor(measures(), X, y, layers=["net.1", "net.2"],
                  path=os.path.join(folder, "run.db"), progress=False)
trainer = pl.Trainer(
    max_epochs=3, accelerator="cpu", devices=2, strategy="ddp",
    callbacks=[SaveWeights(), LightningCallback(monitor, log_records=True)],
    logger=pl.loggers.CSVLogger(folder, name="csv"), enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Classifier(), data)
monitor.close()
print("rank", trainer.global_rank, "steps", monitor.steps if trainer.is_global_zero else None)
"""


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through tests/test_monitor_open.py")
