"""A run as one xarray Dataset (values and arrays), what ``to_netcdf`` writes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["netcdf_engine", "run_dataset"]


def netcdf_engine(dataset: Any) -> str:
    """netCDF-4 through netCDF4 or h5netcdf if installed, else netCDF-3 (SciPy).

    netCDF-3 has no 64-bit integers: a run whose steps or integer arrays do
    not fit in 32 bits needs one of the netCDF-4 engines.
    """
    import importlib.util

    for engine, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf")):
        if importlib.util.find_spec(module) is not None:
            return engine
    for name, variable in dataset.variables.items():
        values = np.asarray(variable.values)
        if (
            values.dtype.kind in "iu"
            and values.size
            and (
                values.max() > np.iinfo(np.int32).max
                or values.min() < np.iinfo(np.int32).min
            )
        ):
            raise ValueError(
                f"Run.to_netcdf: {name!r} holds integers beyond 32 bits, which "
                f"netCDF-3 (the SciPy writer, the only one installed) cannot "
                f"store; pip install h5netcdf for netCDF-4."
            )
    return "scipy"


def run_dataset(run: Any) -> Any:
    """``run.history("xarray")`` plus one variable per stored (name, layer) array."""
    dataset = run.history("xarray")
    import xarray as xr

    k = 0
    for name in run.array_names():
        by_layer: dict[str, dict[int, np.ndarray]] = {}
        for step, layers in run.arrays(name).items():
            for layer, a in layers.items():
                by_layer.setdefault(layer, {})[step] = a
        for layer, by_step in by_layer.items():
            var = f"array_{k}"
            steps = list(by_step)
            stacked = _stack([by_step[s] for s in steps])
            dims = [f"{var}_step", *(f"{var}_dim_{i}" for i in range(stacked.ndim - 1))]
            dataset[var] = xr.Variable(
                dims,
                stacked,
                attrs={"infoscope_name": name, "infoscope_layer": layer},
            )
            dataset = dataset.assign_coords({f"{var}_step": np.asarray(steps)})
            k += 1
    dataset.attrs["infoscope_config"] = _json(run.config)
    return dataset


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        return np.stack(arrays)
    ndim = max(a.ndim for a in arrays)
    size = [max(a.shape[i] if i < a.ndim else 1 for a in arrays) for i in range(ndim)]
    out = np.full((len(arrays), *size), np.nan)
    for i, a in enumerate(arrays):
        a = a.reshape(a.shape + (1,) * (ndim - a.ndim))
        out[(i, *(slice(0, n) for n in a.shape))] = a
    return out


def _json(config: Any) -> str:
    import json

    return json.dumps(config, default=str)
