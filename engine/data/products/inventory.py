"""The inventory of an ingest and the computation of one date, on the data floor.

``plan_inputs`` walks the inputs and groups them by output time dimension and date (granules by
their standard names, checked against each granule's own metadata; dated rasters; cube
variables), leaves out granules entirely outside the window, and refuses a set of inputs with
nothing usable in it; ``compute_date`` reads every source of one date (readers of this package),
bins sinusoidal tiles into the target window (``kernels.binning``), block-sums CMG cells,
reprojects rasters, takes the valid-pixel means and returns them merged (``merge``: the finer
source's value kept, the next filling its gaps) with provenance and the record of each file used
(``cube.file_record``). CF cubes are read once per block of dates (``load_cubes``), not once per
date. ``stages.ingest`` writes the results into the ``data.cube.IngestStore`` and records what is
complete.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ciml_ter.data.contract import RULES, canonical_units
from ciml_ter.data.cube import file_record, open_cube
from ciml_ter.data.products import catalog, identity, names, rasters
from ciml_ter.data.products.decode import GranuleData
from ciml_ter.data.products.geometry import GranuleError, block_sums, sinusoidal_tile, window_bounds
from ciml_ter.device import Device, to_host
from ciml_ter.errors import InputError
from ciml_ter.grid import GridWindow
from ciml_ter.kernels.binning import BinSums, bin_sinusoidal, binned_mean

DAILY_VARS = ("nir", "red", "swir1", "nirv", "lswi", "lst_day", "lst_night")
CUBE_BLOCK_BYTES = 256 << 20  # input values of one read of a cube variable (a block of dates)


# ----------------------------------------------------------------------------------------------
# Inventory: which inputs give which variable on which date


@dataclass
class _Granule:
    name: names.GranuleName
    product: catalog.Product
    bad: str | None = None  # why the granule could not be read, found while planning


@dataclass
class _CubeVar:
    path: Path
    var: str
    index: int | None  # time index in the source cube; None = static
    values: tuple | None = None  # (mean float32, count int32) on the window, once read (load_cubes)
    record: dict | None = None  # the cube file's record (cube.file_record), once read


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

    def file_variables(self) -> dict[Path, set[str]]:
        """Each input file of these sources -> the variables it gives."""
        out: dict = defaultdict(set)
        for g in self.granules:
            out[g.name.path] |= set(g.product.variables)
        for item in [*self.rasters, *self.cube]:
            out[item.path].add(item.var)
        return dict(out)


@dataclass
class Plan:
    dated: dict  # dim -> {date: Sources}
    static: dict  # var -> Sources
    var_dims: dict  # var -> dim
    landcover: object  # "default", a path or None
    unknown: list
    outside_months: int
    outside_window: list = field(default_factory=list)  # granules entirely outside the window
    unverified: list = field(default_factory=list)  # granules without product/date metadata


def _in_months(date: dt.date, months) -> bool:
    return months is None or months[0] <= date < months[1]


def _assign_dim(var_dims: dict, var: str, dim: str, what: str) -> None:
    if var_dims.setdefault(var, dim) != dim:
        raise InputError(f"{what}: gives {var!r} on time dimension {dim!r}, but another input gives it "
                         f"on {var_dims[var]!r} (one time step per variable: drop one of them)")


@functools.lru_cache(maxsize=32)
def _open_input_cube(path: str, inode: int, mtime_ns: int, size: int):
    return open_cube(path)


def open_input_cube(path: Path):
    """An input cube, opened once per process while the file is unchanged (planning and every
    block of dates share the handle: opening a NetCDF file costs far more than reading a block)."""
    st = Path(path).stat()
    return _open_input_cube(str(Path(path).resolve()), st.st_ino, st.st_mtime_ns, st.st_size)


def _cube_vars(path: Path, window: GridWindow):
    ds = open_input_cube(path)
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


def _map(work: Callable, items: list) -> list:
    return [work(x) for x in items]


def probe_granule(granule: _Granule, window: GridWindow) -> identity.Probe | str:
    """A granule's metadata (``identity.Probe``), or why the file cannot be read."""
    try:
        if granule.product.fmt == catalog.HDF4:
            from ciml_ter.data.products.hdf4 import probe_hdf4
            return probe_hdf4(granule.name, granule.product, window)
        from ciml_ter.data.products.hdf5 import probe_hdf5
        return probe_hdf5(granule.name, granule.product, window)
    except GranuleError as exc:
        return str(exc)


def _probe(dated: dict, window: GridWindow, pool: Callable) -> tuple[list, list]:
    """Check every granule of ``dated`` against its own metadata (``identity.check``: a renamed
    file is refused) and drop those entirely outside the window; a granule that cannot be read
    stays, marked bad, for its date to report. Returns the outside and the unverified names."""
    granules = [g for by_date in dated.values() for s in by_date.values() for g in s.granules]
    probes = dict(zip(map(id, granules), pool(functools.partial(probe_granule, window=window), granules)))
    outside, unverified = [], []
    for by_date in dated.values():
        for sources in by_date.values():
            kept = []
            for g in sources.granules:
                probe = probes[id(g)]
                if isinstance(probe, str):
                    g.bad = probe
                    kept.append(g)
                    continue
                identity.check(g.name, g.product, probe.identity)
                if not probe.identity.verifiable:
                    unverified.append(g.name.path.name)
                if probe.inside:
                    kept.append(g)
                else:
                    outside.append(g.name.path.name)
            sources.granules = kept
    return sorted(outside), sorted(unverified)


def _nothing_usable(paths, found: int, unknown: list, outside_months: int, outside: list, months,
                    window: GridWindow) -> InputError:
    where = ", ".join(str(p) for p in paths) or "the inputs"
    if not found:
        return InputError(f"{where}: no input files found (an empty folder?): nothing to ingest")
    parts = []
    if unknown:
        path, reason = unknown[0]
        parts.append(f"{len(unknown)} not recognised (e.g. {Path(path).name}: {reason})")
    if outside_months:
        last = months[1] - dt.timedelta(days=1)
        parts.append(f"{outside_months} dated outside --months {months[0]:%Y-%m}:{last:%Y-%m}")
    if outside:
        s, n, w, e = window_bounds(window)
        parts.append(f"{len(outside)} entirely outside --bbox {w:g},{s:g},{e:g},{n:g} (e.g. {outside[0]})")
    return InputError(f"{where}: no usable input among {found} file(s): {'; '.join(parts)}")


def plan_inputs(paths, raster_specs, landcover, window: GridWindow, months, store_dims: dict,
                log: Callable, out: Path | None = None, pool: Callable | None = None) -> Plan:
    """Sort every input into (time dim, date) or static; list unknown files. The output store
    ``out`` is never an input (it may sit inside an input folder). Granules are checked against
    their own metadata and those outside the window left out (``_probe``, mapped by ``pool``).
    Raises InputError when nothing usable is left (no file, or every file unknown or outside
    --months / the window)."""
    pool = pool or _map
    dated: dict = defaultdict(lambda: defaultdict(Sources))
    static: dict = defaultdict(Sources)
    var_dims = dict(store_dims)
    unknown, outside, landcover_granules = [], 0, []
    for item in paths:
        if not Path(item).exists():
            raise InputError(f"{item}: no such file or folder")
    found = [p for p in names.walk(paths) if out is None or p.resolve() != out.resolve()]
    for path in found:
        if names.is_cube(path):
            for var, dim, ds in _cube_vars(path, window):
                if dim is None:
                    static[var].cube.append(_CubeVar(path, var, None))
                    continue
                _assign_dim(var_dims, var, var_dims.get(var, dim), str(path))
                for i, day in enumerate(pd.DatetimeIndex(ds[dim].values).date):
                    if _in_months(day, months):
                        dated[var_dims[var]][day].cube.append(_CubeVar(path, var, i))
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
    n_rasters = 0
    for spec in raster_specs:
        spec = rasters.parse_spec(spec)
        for item in rasters.expand(spec):
            n_rasters += 1
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
    outside_window, unverified = _probe(dated, window, pool)
    dated = {dim: {d: s for d, s in by_date.items() if s.granules or s.rasters or s.cube}
             for dim, by_date in dated.items()}
    dated = {dim: by_date for dim, by_date in dated.items() if by_date}
    if not (dated or static or landcover_granules):
        raise _nothing_usable(paths, len(found) + n_rasters, unknown, outside, outside_window, months, window)
    return Plan(dated, dict(static), var_dims, landcover, unknown, outside, outside_window, unverified)


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
    files: dict = field(default_factory=dict)  # file name -> cube.file_record of each file used


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
                if g.bad is not None:
                    raise GranuleError(g.bad)
                data = read_granule(g, window)
            except GranuleError as exc:
                result.bad.append((str(g.name.path), str(exc)))
                result.failed |= set(product.variables)
                continue
            _accumulate(data, window, sums, xp)
            result.files[g.name.path.name] = file_record(g.name.path, product.variables)
            tag = f"{g.name.product}.{g.name.collection}"
            entry = result.provenance.setdefault(tag, {"variables": list(product.variables),
                                                       "guide": product.guide, "layers": {}})
            entry["layers"].update(data.provenance)
        for var in product.variables:
            if var in sums:
                mean, count = binned_mean(sums[var], min_valid_fraction)
                parts.setdefault(var, []).append((to_host(mean), to_host(count).astype(np.int32), key))


def _cube_window(path: Path, var: str, lat: np.ndarray, lon: np.ndarray, window: GridWindow):
    """Rows and columns of a cube's grid (sorted north to south, west to east) over ``window``
    and the integer block factor: the grid must be aligned with the window at the same or an
    integer-finer resolution."""
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
    return rows, cols, f


def _selection(order: np.ndarray):
    """How to read positions ``order`` of an axis: a slice (reversed after reading when the axis is
    stored the other way round) where they are consecutive, else the index array."""
    step = np.diff(order)
    if order.size == 1 or (step == 1).all():
        return slice(int(order[0]), int(order[-1]) + 1), False
    if (step == -1).all():
        return slice(int(order[-1]), int(order[0]) + 1), True
    return order, False


def cube_block(path: Path, var: str, indices: list, window: GridWindow, xp, min_valid_fraction) -> list:
    """A pass-through cube variable on the target grid at time ``indices`` (None: static), read in
    one go per ``CUBE_BLOCK_BYTES`` block: block mean of an aligned grid at the same or an
    integer-finer resolution; one (mean float32, count int32) per index."""
    ds = open_input_cube(path)
    da = ds[var]
    lat, lon = da["lat"].values.astype(float), da["lon"].values.astype(float)
    lat_order, lon_order = np.argsort(-lat, kind="stable"), np.argsort(lon, kind="stable")
    rows, cols, f = _cube_window(path, var, lat[lat_order], lon[lon_order], window)
    (lat_sel, lat_flip), (lon_sel, lon_flip) = _selection(lat_order[rows]), _selection(lon_order[cols])
    if indices == [None]:
        per_read, steps = 1, [None]
    else:
        per_read = max(1, CUBE_BLOCK_BYTES // (8 * window.n_lat * window.n_lon * f * f))
        steps = np.asarray(indices)
    out = []
    for start in range(0, len(steps), per_read):
        block = steps[start:start + per_read]
        where = {"lat": lat_sel, "lon": lon_sel}
        if block[0] is not None:
            where[da.dims[0]] = _selection(block)[0]
        piece = da.isel(where)
        if piece.attrs.get("units") is not None:
            piece = canonical_units(piece, var)
        values = np.asarray(piece.values, dtype=np.float32)
        if lat_flip:
            values = values[..., ::-1, :]
        if lon_flip:
            values = values[..., ::-1]
        if block[0] is None and var in ("pft", "land"):
            from ciml_ter.kernels import block_resample
            classes = values if f == 1 else block_resample(values.astype(np.float64), f, "mode", 0.0)
            out.append((np.asarray(classes, dtype=np.float32), np.isfinite(classes).astype(np.int32)))
            continue
        if f == 1:  # the grid itself: each value is its cell's mean, of one observation
            mean, count = values, np.isfinite(values).astype(np.int32)
        else:
            mean, count = binned_mean(block_sums(xp.asarray(values), f), min_valid_fraction)
            mean, count = to_host(mean), to_host(count).astype(np.int32)
        out.extend([(mean, count)] if block[0] is None else zip(mean, count))
    return out


def load_cubes(items: list, window: GridWindow, device: Device, min_valid_fraction: float) -> list:
    """``items`` (Sources) with every cube variable read onto the window: each (cube, variable)
    opened once and read by blocks of dates (``cube_block``), not once per date."""
    xp = device.for_rank().use().xp
    wanted: dict = defaultdict(list)
    for sources in items:
        for c in sources.cube:
            wanted[(c.path, c.var)].append(c.index)
    values, records = {}, {}
    for (path, var), indices in wanted.items():
        order = sorted(set(indices), key=lambda i: -1 if i is None else i)
        values.update(zip(((path, var, i) for i in order), cube_block(path, var, order, window, xp,
                                                                     min_valid_fraction)))
        records[path] = records.get(path) or file_record(path, [])
    out = []
    for sources in items:
        cube = [_CubeVar(c.path, c.var, c.index, values[(c.path, c.var, c.index)], records[c.path])
                for c in sources.cube]
        out.append(Sources(sources.granules, sources.rasters, cube))
    return out


def compute_date(sources: Sources, window: GridWindow, device: Device, min_valid_fraction: float) -> DateResult:
    """Every variable of one (time dim, date), or the static layers, from its sources, merged by
    precedence (``merge``: tiles before CMG, Terra before Aqua, then rasters, then cubes). A work
    item of the MPI queue: it reads and computes on this rank's device, rank 0 writes. Its cube
    variables come already read onto the window (``load_cubes``)."""
    xp = device.for_rank().use().xp
    result, parts = DateResult(), {}
    _granule_means(sources.granules, window, xp, min_valid_fraction, parts, result)
    for item in sorted(sources.rasters, key=lambda r: r.path.name):
        mean, count, prov = rasters.read_on_grid(item, window, result.messages.append)
        parts.setdefault(item.var, []).append((mean, np.rint(count).astype(np.int32), "raster"))
        result.provenance.setdefault("rasters", {})[item.path.name] = prov
        result.files[item.path.name] = file_record(item.path, [item.var])
    for c in sources.cube:
        mean, count = c.values
        parts.setdefault(c.var, []).append((mean, count, "cube"))
        result.provenance.setdefault("cubes", {}).setdefault(c.path.name, {"variables": []})["variables"].append(c.var)
        entry = result.files.setdefault(c.path.name, {**c.record, "variables": []})
        entry["variables"] = sorted({*entry["variables"], c.var})
    result.values = {var: merge(p) for var, p in parts.items()}
    return result


def merge(parts: list) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One variable from several sources in precedence order: the first source's value, each later
    source filling only cells still empty; the count comes from the source of each value."""
    if len(parts) == 1:
        return parts[0][0], parts[0][1], [parts[0][2]]
    mean, count, used = parts[0][0].copy(), parts[0][1].copy(), [parts[0][2]]
    for m, c, source in parts[1:]:
        fill = np.isnan(mean) & ~np.isnan(m)
        if fill.any():
            mean[fill] = m[fill]
            count[fill] = c[fill]
            used.append(source)
    return mean, count, used
