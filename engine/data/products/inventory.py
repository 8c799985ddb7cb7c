"""The inventory of an ingest and the computation of one date, on the data floor.

``plan_inputs`` walks the inputs and groups them by output time dimension and date (granules by
their standard names, dated rasters, cube variables); ``compute_date`` reads every source of one
date (readers of this package), bins sinusoidal tiles into the target window
(``kernels.binning``), block-sums CMG cells, reprojects rasters, takes the valid-pixel means and
returns them merged (``merge``: the finer source's value kept, the next filling its gaps) with
provenance. ``stages.ingest`` writes the results into the ``data.cube.IngestStore`` and records
what is complete.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ciml_ter.data.contract import RULES, canonical_units
from ciml_ter.data.cube import open_cube
from ciml_ter.data.products import catalog, names, rasters
from ciml_ter.data.products.decode import GranuleData
from ciml_ter.data.products.geometry import GranuleError, block_sums, sinusoidal_tile
from ciml_ter.device import Device, to_host
from ciml_ter.errors import InputError
from ciml_ter.grid import GridWindow
from ciml_ter.kernels.binning import BinSums, bin_sinusoidal, binned_mean

DAILY_VARS = ("nir", "red", "swir1", "nirv", "lswi", "lst_day", "lst_night")


# ----------------------------------------------------------------------------------------------
# Inventory: which inputs give which variable on which date


@dataclass
class _Granule:
    name: names.GranuleName
    product: catalog.Product


@dataclass
class _CubeVar:
    path: Path
    var: str
    index: int | None  # time index in the source cube; None = static


@dataclass
class Sources:
    granules: list = field(default_factory=list)
    rasters: list = field(default_factory=list)
    cube: list = field(default_factory=list)

    def variables(self) -> set[str]:
        out = {v for g in self.granules for v in g.product.variables}
        out |= {r.var for r in self.rasters} | {c.var for c in self.cube}
        return out

    def files(self) -> list[str]:
        return sorted({g.name.path.name for g in self.granules} | {r.path.name for r in self.rasters}
                      | {c.path.name for c in self.cube})


@dataclass
class Plan:
    dated: dict  # dim -> {date: Sources}
    static: dict  # var -> Sources
    var_dims: dict  # var -> dim
    landcover: object  # "default", a path or None
    unknown: list
    outside_months: int


def _in_months(date: dt.date, months) -> bool:
    return months is None or months[0] <= date < months[1]


def _assign_dim(var_dims: dict, var: str, dim: str, what: str) -> None:
    if var_dims.setdefault(var, dim) != dim:
        raise InputError(f"{what}: gives {var!r} on time dimension {dim!r}, but another input gives it "
                         f"on {var_dims[var]!r} (one time step per variable: drop one of them)")


def _cube_vars(path: Path, window: GridWindow):
    ds = open_cube(path)
    found = []
    for var in ds.data_vars:
        if var not in RULES:
            continue
        da = ds[var]
        if tuple(da.dims[-2:]) != ("lat", "lon"):
            raise InputError(f"{path}: variable {var!r} has dims {da.dims}; expected (..., lat, lon)")
        units = da.attrs.get("units")
        if units is not None and str(units).strip() not in RULES[var].accepted:
            raise InputError(f"{path}: variable {var!r} has units {units!r}; accepted: "
                             f"{', '.join(repr(u) for u in RULES[var].accepted)}")
        if units is None and RULES[var].needs_units:
            raise InputError(f"{path}: variable {var!r} has no 'units' attribute")
        found.append((var, da.dims[0] if da.ndim == 3 else None, ds))
    return found


def _latest_granules(granules: list, log: Callable) -> list:
    """One granule per (product, tile, date): archives hold reprocessed duplicates (a newer
    production time, or another collection); the highest collection, then the latest production
    wins, and each superseded file is named in the log."""
    best: dict = {}
    for g in granules:
        key = (g.name.product, g.name.tile, g.name.date)
        rank = (g.name.collection, g.name.production)
        if key in best:
            old = best[key]
            keep, drop = (g, old) if rank > (old.name.collection, old.name.production) else (old, g)
            log(f"duplicate granule {drop.name.path.name} superseded by {keep.name.path.name}")
            best[key] = keep
        else:
            best[key] = g
    return list(best.values())


def plan_inputs(paths, raster_specs, landcover, window: GridWindow, months, store_dims: dict,
                log: Callable, out: Path | None = None) -> Plan:
    """Sort every input into (time dim, date) or static; list unknown files. The output store
    ``out`` is never an input (it may sit inside an input folder)."""
    dated: dict = defaultdict(lambda: defaultdict(Sources))
    static: dict = defaultdict(Sources)
    var_dims = dict(store_dims)
    unknown, outside, landcover_granules = [], 0, []
    for item in paths:
        if not Path(item).exists():
            raise InputError(f"{item}: no such file or folder")
    for path in names.walk(paths):
        if out is not None and path.resolve() == out.resolve():
            continue
        if names.is_cube(path):
            for var, dim, ds in _cube_vars(path, window):
                if dim is None:
                    static[var].cube.append(_CubeVar(path, var, None))
                    continue
                _assign_dim(var_dims, var, var_dims.get(var, dim), str(path))
                for i, t in enumerate(pd.DatetimeIndex(ds[dim].values)):
                    if _in_months(t.date(), months):
                        dated[var_dims[var]][t.date()].cube.append(_CubeVar(path, var, i))
                    else:
                        outside += 1
            continue
        granule = names.parse_granule_name(path)
        if granule is None:
            unknown.append((str(path), "not a recognised product file name"))
            continue
        product = catalog.product_for(granule.product)
        if product is None:
            unknown.append((str(path), f"product {granule.product} is not supported (supported: "
                                       f"{', '.join(sorted(catalog.BY_SHORT_NAME))})"))
            continue
        if product.cadence == catalog.YEARLY:
            landcover_granules.append(granule)
            continue
        if not _in_months(granule.date, months):
            outside += 1
            continue
        for var in product.variables:
            _assign_dim(var_dims, var, product.time_dim, path.name)
        dated[product.time_dim][granule.date].granules.append(_Granule(granule, product))
    for spec in raster_specs:
        spec = rasters.parse_spec(spec)
        for item in rasters.expand(spec):
            if item.date is None:
                static[item.var].rasters.append(item)
                continue
            if not _in_months(item.date, months):
                outside += 1
                continue
            default = "time" if item.var in DAILY_VARS else f"time_{item.var}"
            _assign_dim(var_dims, item.var, var_dims.get(item.var, default), str(item.path))
            dated[var_dims[item.var]][item.date].rasters.append(item)
    if landcover_granules:
        latest = max(landcover_granules, key=lambda g: g.date)
        if landcover is None:
            landcover = latest.path
            if len(landcover_granules) > 1:
                log(f"land cover: {len(landcover_granules)} MCD12C1 granules; using the latest, "
                    f"{latest.path.name}")
        else:
            log(f"land cover: --landcover {landcover} given; MCD12C1 granules in the inputs are not used")
    for by_date in dated.values():
        for sources in by_date.values():
            sources.granules = _latest_granules(sources.granules, log)
    return Plan({d: dict(v) for d, v in dated.items()}, dict(static), var_dims, landcover, unknown,
                 outside)


# ----------------------------------------------------------------------------------------------
# Computing one date


def read_granule(granule: _Granule, window: GridWindow) -> GranuleData:
    """Decoded layers of one granule (HDF4 via pyhdf or HDF5 via h5py)."""
    if granule.product.fmt == catalog.HDF4:
        from ciml_ter.data.products.hdf4 import read_hdf4
        return read_hdf4(granule.name, granule.product, window)
    from ciml_ter.data.products.hdf5 import read_hdf5
    return read_hdf5(granule.name, granule.product, window)


def _accumulate(data: GranuleData, window: GridWindow, sums: dict, xp) -> None:
    """Add one granule's layers into the per-variable BinSums of its product."""
    for var, values in data.layers.items():
        values = xp.asarray(values)
        if data.product.grid == catalog.CMG:
            part = block_sums(values, data.factor)
            if var in sums:
                sums[var] = BinSums(sums[var].sums + part.sums, sums[var].n_valid + part.n_valid,
                                    sums[var].n_seen + part.n_seen)
            else:
                sums[var] = part
        else:
            sums[var] = bin_sinusoidal(values, sinusoidal_tile(data.geometry), window, out=sums.get(var))


@dataclass
class DateResult:
    """One date's (or the static layers') computation: each variable merged by precedence."""

    values: dict = field(default_factory=dict)  # var -> (mean float32, count int32, sources used)
    failed: set = field(default_factory=set)  # variables with a granule that could not be read
    provenance: dict = field(default_factory=dict)  # "SHORT.CCC" -> {"variables", "qc", ...}
    bad: list = field(default_factory=list)  # (path, reason) of granules that could not be read
    messages: list = field(default_factory=list)  # log lines, said by rank 0 in date order


def _granule_means(granules, window, xp, min_valid_fraction, parts: dict, result: DateResult):
    by_product = defaultdict(list)  # by short name: Terra and Aqua (or two VIIRS) kept apart
    for g in granules:
        by_product[g.name.product].append(g)
    for key in sorted(by_product, key=lambda k: (by_product[k][0].product.nominal_res_m, k)):
        group = by_product[key]
        product = group[0].product
        sums: dict = {}
        for g in sorted(group, key=lambda g: g.name.path.name):
            try:
                data = read_granule(g, window)
            except GranuleError as exc:
                result.bad.append((str(g.name.path), str(exc)))
                result.messages.append(f"bad granule {g.name.path}: {exc}")
                result.failed |= set(product.variables)
                continue
            _accumulate(data, window, sums, xp)
            tag = f"{g.name.product}.{g.name.collection}"
            entry = result.provenance.setdefault(tag, {"variables": list(product.variables),
                                                       "guide": product.guide, "layers": {}})
            entry["layers"].update(data.provenance if "skipped" not in data.provenance else {})
        for var in product.variables:
            if var in sums:
                mean, count = binned_mean(sums[var], min_valid_fraction)
                parts.setdefault(var, []).append((to_host(mean), to_host(count).astype(np.int32), key))


def cube_on_grid(path: Path, var: str, index, window: GridWindow, xp, min_valid_fraction):
    """A pass-through cube variable (one time step or static) on the target grid: block mean of an
    aligned grid at the same or an integer-finer resolution."""
    ds = open_cube(path)
    da = ds[var] if index is None else ds[var].isel({ds[var].dims[0]: index})
    da = da.sortby("lat", ascending=False).sortby("lon")
    if da.attrs.get("units") is not None:
        da = canonical_units(da, var)
    lat, lon = da["lat"].values.astype(float), da["lon"].values.astype(float)
    d = abs(lat[1] - lat[0]) if lat.size > 1 else window.res
    factor = window.res / d
    r0 = (lat[0] + d / 2 - window.north) / d
    c0 = (window.west - (lon[0] - d / 2)) / d
    if any(abs(v - round(v)) > 1e-6 for v in (factor, r0, c0)) or round(factor) < 1:
        raise InputError(f"{path}: grid of {var!r} ({d:g} deg from lat {lat[0]:g}, lon {lon[0]:g}) does "
                         f"not align with the output grid ({window.res:g} deg from {window.north:g} N, "
                         f"{window.west:g} E) at an integer factor")
    f, r0, c0 = int(round(factor)), int(round(r0)), int(round(c0))
    rows, cols = slice(r0, r0 + window.n_lat * f), slice(c0, c0 + window.n_lon * f)
    if r0 < 0 or c0 < 0 or rows.stop > lat.size or cols.stop > lon.size:
        raise InputError(f"{path}: {var!r} does not cover the output window")
    values = np.asarray(da.isel(lat=rows, lon=cols).values, dtype=np.float32)
    if var in ("pft", "land"):
        from ciml_ter.kernels import block_resample
        out = values if f == 1 else block_resample(values.astype(np.float64), f, "mode", 0.0)
        return np.asarray(out, dtype=np.float32), np.isfinite(out).astype(np.int32)
    mean, count = binned_mean(block_sums(xp.asarray(values), f), min_valid_fraction)
    return to_host(mean), to_host(count).astype(np.int32)


def compute_date(sources: Sources, window: GridWindow, device: Device, min_valid_fraction: float) -> DateResult:
    """Every variable of one (time dim, date), or the static layers, from its sources, merged by
    precedence (``merge``: tiles before CMG, Terra before Aqua, then rasters, then cubes). A work
    item of the MPI queue: it reads and computes on this rank's device, rank 0 writes."""
    xp = device.for_rank().use().xp
    result, parts = DateResult(), {}
    _granule_means(sources.granules, window, xp, min_valid_fraction, parts, result)
    for item in sorted(sources.rasters, key=lambda r: r.path.name):
        mean, count, prov = rasters.read_on_grid(item, window, result.messages.append)
        parts.setdefault(item.var, []).append((mean, np.rint(count).astype(np.int32), "raster"))
        result.provenance.setdefault("rasters", {})[item.path.name] = prov
    for c in sources.cube:
        mean, count = cube_on_grid(c.path, c.var, c.index, window, xp, min_valid_fraction)
        parts.setdefault(c.var, []).append((mean, count, "cube"))
        result.provenance.setdefault("cubes", {})[c.path.name] = {"variables": [c.var]}
    result.values = {var: merge(p) for var, p in parts.items()}
    return result


def merge(parts: list) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One variable from several sources in precedence order: the first source's value, each later
    source filling only cells still empty; the count comes from the source of each value."""
    mean, count, used = parts[0][0].copy(), parts[0][1].copy(), [parts[0][2]]
    for m, c, source in parts[1:]:
        fill = np.isnan(mean) & ~np.isnan(m)
        if fill.any():
            mean[fill] = m[fill]
            count[fill] = c[fill]
            used.append(source)
    return mean, count, used
