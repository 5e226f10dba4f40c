"""Models of every framework behind one interface, and who records in a job."""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import Any

__all__ = ["Adapted", "adapt", "is_recording_process"]


class Adapted:
    """A model with its adapter module: the verbs without the model arguments."""

    def __init__(self, module: Any, args: tuple):
        self.module, self.args = module, args

    def activations(
        self, X: Any, layers: Any, batch_size: Any, pool: Any, mask: Any
    ) -> dict[str, Any]:
        return self.module.activations(
            *self.args, X, layers, batch_size, pool=pool, mask=mask
        )

    def dense_layers(self, X: Any) -> list[tuple[str, Any, Any]]:
        return self.module.dense_layers(*self.args, X)

    def empirical_ntk(self, X: Any, batch_size: Any, output: Any) -> Any:
        return self.module.empirical_ntk(
            *self.args, X, batch_size=batch_size, output=output
        )

    @property
    def callable(self) -> Any:
        """What metrics and measures receive: the model, or ``apply_fn`` with params."""
        if len(self.args) == 2 and self.args[1] is not None:
            return partial(self.args[0], self.args[1])
        return self.args[0]


def adapt(model: Any, params: Any) -> Adapted:
    """`model` with the adapter of its framework."""
    from .. import adapters

    if params is not None:
        return Adapted(adapters.jax, (model, params))
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        return Adapted(adapters.jax, (model, None))  # an NNX module holds its state
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return Adapted(adapters.keras, (model,))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return Adapted(adapters.torch, (_unwrapped(torch, model),))
    raise TypeError(
        f"Monitor.record: model must be a torch.nn.Module, a keras.Model, a Flax "
        f"NNX module, or a JAX apply_fn(params, x) given with params=...; got "
        f"{type(model).__name__}."
    )


def _unwrapped(torch: Any, model: Any) -> Any:
    """The module inside DistributedDataParallel or DataParallel.

    Their forward would take part in collective operations (the buffers'
    broadcast), which only the recording process runs: it would wait for the
    other processes forever.
    """
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def is_recording_process() -> bool:
    """Whether this process records: rank 0 of a distributed job, or the only one.

    The rank is torch.distributed's when its process group is initialised,
    else the launcher's ``RANK`` environment variable (torchrun, Lightning,
    SLURM through them), else JAX's process index in a multi-process JAX job.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    rank = os.environ.get("RANK")
    if rank is not None and rank.strip().isdigit():
        return int(rank) == 0
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            return jax.process_index() == 0
        except RuntimeError:  # no backend initialised yet
            return True
    return True
