"""``ciml-ter ingest``: MODIS/VIIRS granules, GeoTIFF rasters and CF cubes -> the input cube (Zarr).

Steps: walk the PATHs and recognise each file by its standard name (unknown files are listed and
skipped); group the inputs by output time dimension and date (daily products on ``time``, 8-day
composites on ``time8`` at their start dates, 4-day on ``time4``, dated rasters of other
variables on ``time_<var>``); for each date read every granule (readers in
``ciml_ter.data.products``: arrays + geometry + provenance; the inventory and one date's computation
in ``data.products.inventory``), bin sinusoidal tiles into the target
window (``kernels.binning``; all tiles of a date accumulate into one window), block-sum CMG
cells, reproject rasters, then take the valid-pixel mean with a minimum valid fraction. When
several sources give one variable on one date they are not pooled: the finer product's value is
kept and the next fills only its gaps (order: native resolution, then short name, so Terra
MOD* before Aqua MYD*; then rasters, then cubes); ``<var>_count`` holds the number of valid
observations behind each value. Of reprocessed duplicates of one granule only the newest is read.

Resume: the store's ``ingest_completed`` attribute records, per time dimension and variable, the
dates whose data are written; it is updated only after a batch of dates is on disk, so an
interrupted run never presents partial data as complete, and a rerun skips what is recorded.
A date with a granule that could not be read is written but not recorded, so a rerun with the
file replaced redoes it. A corrupt granule is named in one log line; the summary lists it and
the caller exits non-zero.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from ciml_ter import __version__
from ciml_ter.data.contract import RULES
from ciml_ter.data.cube import open_cube, write_zarr
from ciml_ter.data.products import catalog, rasters
from ciml_ter.data.products.landcover import landcover_on_grid
from ciml_ter.data.products.inventory import (Plan, Sources, compute_date, cube_on_grid, grid_coords,
                                              make_window, merge, parse_bbox, parse_months, plan_inputs)
from ciml_ter.device import get_namespace, resolve_device
from ciml_ter.errors import InputError
from ciml_ter.kernels.binning import GridWindow
from ciml_ter.parallel import task_pool

STATIC_KEY = "static"
BATCH_BYTES = 512 << 20  # output data of one batch of dates held in memory before it is written
CHUNK = 512  # spatial chunk edge of the Zarr arrays
TIME_UNITS = "days since 1970-01-01"
MAX_UNKNOWN_LINES = 20


@dataclass
class IngestSummary:
    """What one ingest run did. ``ok`` is False when a granule could not be read."""

    out: str
    written: dict = field(default_factory=dict)  # time dim -> ISO dates written
    skipped_present: dict = field(default_factory=dict)  # time dim -> dates already complete
    incomplete: dict = field(default_factory=dict)  # time dim -> dates written without a bad granule
    static_written: list = field(default_factory=list)
    static_skipped: list = field(default_factory=list)
    unknown: list = field(default_factory=list)  # (path, reason) of files not recognised
    bad: list = field(default_factory=list)  # (path, reason) of granules that could not be read
    outside_months: int = 0
    variables: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad

    @property
    def dates_written(self) -> list[str]:
        return sorted({d for dates in self.written.values() for d in dates})

    def to_dict(self) -> dict:
        return {"out": self.out, "ok": self.ok, "written": self.written,
                "skipped_present": self.skipped_present, "incomplete": self.incomplete,
                "static_written": self.static_written, "static_skipped": self.static_skipped,
                "unknown": [list(u) for u in self.unknown], "bad": [list(b) for b in self.bad],
                "outside_months": self.outside_months, "variables": self.variables}


# ----------------------------------------------------------------------------------------------
# The store


def _json_attr(attrs: dict, key: str, default):
    value = attrs.get(key)
    return default if value is None else json.loads(value)


class _Store:
    """The output Zarr store: grid checks, writes, and the completion record in its attributes."""

    def __init__(self, path: Path, window: GridWindow):
        self.path = Path(path)
        self.window = window
        self.lat, self.lon = grid_coords(window)

    # --- state
    def attrs(self) -> dict:
        import zarr
        return zarr.open_group(str(self.path), mode="r").attrs.asdict()

    def dataset(self) -> xr.Dataset:
        return open_cube(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def check_grid(self) -> None:
        ds = self.dataset()
        same = (ds.sizes.get("lat") == self.lat.size and ds.sizes.get("lon") == self.lon.size
                and np.allclose(ds["lat"].values, self.lat, atol=1e-9)
                and np.allclose(ds["lon"].values, self.lon, atol=1e-9))
        if not same:
            raise InputError(f"{self.path}: exists with another grid ({ds.sizes.get('lat')} x "
                             f"{ds.sizes.get('lon')} cells); use the same --res/--bbox to add to it or "
                             f"choose a new --out")

    def var_dims(self) -> dict:
        if not self.exists():
            return {}
        ds = self.dataset()
        return {v: ds[v].dims[0] for v in ds.data_vars if ds[v].ndim == 3 and not v.endswith("_count")}

    def completed(self) -> dict:
        return _json_attr(self.attrs(), "ingest_completed", {})

    # --- writes
    def _write(self, ds: xr.Dataset, **kwargs) -> None:
        if self.exists() and "append_dim" not in kwargs and "region" not in kwargs:
            ds.attrs = {**self.attrs(), **ds.attrs}  # xarray replaces the group attributes
        write_zarr(ds, self.path, **kwargs)

    def create(self, attrs: dict) -> None:
        coords = {"lat": ("lat", self.lat, {"units": "degrees_north", "standard_name": "latitude",
                                            "long_name": "latitude", "axis": "Y"}),
                  "lon": ("lon", self.lon, {"units": "degrees_east", "standard_name": "longitude",
                                            "long_name": "longitude", "axis": "X"})}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_zarr(xr.Dataset(coords=coords, attrs=attrs), self.path, mode="w")

    def update_attrs(self, updates: dict) -> None:
        import zarr
        zarr.open_group(str(self.path), mode="r+").attrs.update(updates)

    def update_var_attrs(self, var: str, updates: dict) -> None:
        import zarr
        zarr.open_group(str(self.path), mode="r+")[var].attrs.update(updates)

    def _chunks(self, ndim: int) -> tuple:
        space = (min(self.lat.size, CHUNK), min(self.lon.size, CHUNK))
        return space if ndim == 2 else (1,) + space

    def write_static(self, var: str, values: np.ndarray, attrs: dict) -> None:
        da = xr.Variable(("lat", "lon"), values, attrs)
        da.encoding["chunks"] = self._chunks(2)
        present = var in self.dataset().data_vars
        self._write(xr.Dataset({var: da}, coords={"lat": self.lat, "lon": self.lon}), mode="a")
        if present:  # xarray keeps an existing array's attributes; set them
            self.update_var_attrs(var, attrs)

    def _empty(self, var: str, n: int):
        shape = (n, self.lat.size, self.lon.size)
        if var.endswith("_count"):
            return np.broadcast_to(np.int32(0), shape)
        return np.broadcast_to(np.float32(np.nan), shape)

    def _variable(self, dim: str, values, attrs: dict, new: bool) -> xr.Variable:
        v = xr.Variable((dim, "lat", "lon"), values, attrs)
        if new:
            v.encoding["chunks"] = self._chunks(3)
        return v

    def write_dates(self, dim: str, per_date: dict, attrs: dict) -> None:
        """Write ``per_date`` ({date: {var: (lat, lon) array}}) on ``dim``. Dates new to the store are
        appended with every variable of the dim (NaN / 0 where a variable has no value that date);
        dates already there are rewritten in place, only for the variables computed now; a
        variable new to an existing dim is first added empty over its existing dates."""
        ds = self.dataset() if self.exists() else None
        in_store = ds is not None and dim in ds.dims
        existing = [] if not in_store else [pd.Timestamp(t).date() for t in ds[dim].values]
        dim_vars = set() if not in_store else {v for v in ds.data_vars if ds[v].dims[:1] == (dim,)}
        computed = {v for values in per_date.values() for v in values}
        if in_store:
            for var in sorted(computed - dim_vars):
                empty = self._variable(dim, self._empty(var, len(existing)), attrs[var], True)
                self._write(xr.Dataset({var: empty}), mode="a")
                dim_vars.add(var)
        new_dates = sorted(d for d in per_date if d not in existing)
        if new_dates:
            variables = {}
            for var in sorted(dim_vars | computed):
                blank = self._empty(var, 1)[0]
                values = np.stack([per_date[d].get(var, blank) for d in new_dates])
                variables[var] = self._variable(dim, values, attrs.get(var, {}), not in_store)
            piece = xr.Dataset(variables, coords={dim: pd.DatetimeIndex(pd.to_datetime(new_dates))})
            if in_store:
                self._write(piece, append_dim=dim)
            else:
                piece[dim].encoding.update({"units": TIME_UNITS, "calendar": "proleptic_gregorian",
                                            "dtype": "int64"})
                self._write(piece.assign_coords(lat=self.lat, lon=self.lon), mode="a")
        position = {d: i for i, d in enumerate(existing)}
        for d in sorted(per_date):
            if d in position and per_date[d]:
                i = position[d]
                piece = xr.Dataset({var: xr.Variable((dim, "lat", "lon"), values[None])
                                    for var, values in per_date[d].items()})
                self._write(piece, region={dim: slice(i, i + 1)})


# ----------------------------------------------------------------------------------------------
# The stage


def _var_attrs(var: str, sources: list[str], qc: dict, binned: bool) -> dict:
    attrs = {"units": RULES[var].canonical if var in RULES else "1", **catalog.cf_attrs(var)}
    attrs["source_products"] = ", ".join(sorted(set(sources)))
    if qc:
        attrs["qc_rule"] = "; ".join(f"{k}: {v}" for k, v in sorted(qc.items()))
    if binned:
        attrs["cell_methods"] = "area: mean (valid pixels)"
        attrs["ancillary_variables"] = f"{var}_count"
    return attrs


def _count_attrs(var: str) -> dict:
    return {"units": "1", "long_name": f"number of valid observations averaged into {var}",
            "standard_name": "number_of_observations"}


def _qc_of(provenance: dict, var: str) -> dict:
    out = {}
    for tag, entry in provenance.items():
        if isinstance(entry, dict) and var in entry.get("layers", {}):
            out[tag] = entry["layers"][var]["qc"]
    return out


def _batch_size(n_vars: int, window: GridWindow) -> int:
    per_date = max(1, n_vars) * window.n_lat * window.n_lon * 8  # float32 value + int32 count
    return max(1, BATCH_BYTES // per_date)


def _ingest_static(store: _Store, plan: Plan, window: GridWindow, xp, min_valid_fraction, done: set,
                   summary: IngestSummary, files: dict, log: Callable) -> None:
    layers = {}
    if plan.landcover is not None and not {"pft", "land"} <= done:
        pft, land, prov = landcover_on_grid(window, plan.landcover)
        layers["pft"] = (pft, {**catalog.cf_attrs("pft"), "units": "1", "comment": "255 = no class (fill)",
                               **prov})
        layers["land"] = (land, {**catalog.cf_attrs("land"), "units": "1", **prov})
        files["pft"] = files["land"] = [prov["landcover_source"]]
    elif plan.landcover is not None:
        summary.static_skipped += ["land", "pft"]
    for var, sources in sorted(plan.static.items()):
        if var in done:
            summary.static_skipped.append(var)
            continue
        parts = []
        for item in sources.rasters:
            mean, count, prov = rasters.read_on_grid(item, window, log)
            parts.append((mean, count.astype(np.int32), "raster"))
        for c in sources.cube:
            parts.append((*cube_on_grid(c.path, var, None, window, xp, min_valid_fraction), "cube"))
        mean, _, used = merge(parts)
        layers[var] = (mean, {**_var_attrs(var, used, {}, False), "source_files": ", ".join(sources.files())})
        files[var] = sources.files()
    for var, (values, attrs) in layers.items():
        store.write_static(var, values, attrs)
        summary.static_written.append(var)
    if layers:
        store.update_attrs({"ingest_static": json.dumps(sorted(done | set(layers)))})
        log(f"static: wrote {', '.join(sorted(layers))}")


def _provenance_update(store: _Store, products: dict, files_by_date: dict, dim: str) -> None:
    attrs = store.attrs()
    known = _json_attr(attrs, "ingest_products", {})
    for tag, entry in products.items():
        merged = known.setdefault(tag, {})
        for key, value in entry.items():
            if isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            else:
                merged[key] = value
    recorded = _json_attr(attrs, "ingest_files", {})
    recorded.setdefault(dim, {}).update(files_by_date)
    store.update_attrs({"ingest_products": json.dumps(known, sort_keys=True),
                        "ingest_files": json.dumps(recorded, sort_keys=True)})


def _wanted(sources: Sources, done: set) -> Sources:
    """The part of a date's sources that gives a variable not yet complete."""
    return Sources([g for g in sources.granules if set(g.product.variables) - done],
                    [r for r in sources.rasters if r.var not in done],
                    [c for c in sources.cube if c.var not in done])


def _ingest_dim(store: _Store, dim: str, by_date: dict, window: GridWindow, device: str, min_valid_fraction,
                summary: IngestSummary, log: Callable, pool: Callable) -> None:
    """Write the dates of one time dim not yet complete, in batches; ``pool`` maps the dates'
    computation over MPI ranks (``parallel.task_pool``)."""
    completed = store.completed().get(dim, {})
    todo = {}
    for date in sorted(by_date):
        done = {v for v in by_date[date].variables() if date.isoformat() in completed.get(v, [])}
        if done >= by_date[date].variables():
            summary.skipped_present.setdefault(dim, []).append(date.isoformat())
        else:
            todo[date] = _wanted(by_date[date], done)
    if summary.skipped_present.get(dim):
        log(f"{dim}: {len(summary.skipped_present[dim])} date(s) already in {store.path.name}, skipped")
    dates = sorted(todo)
    size = _batch_size(2 * len({v for d in dates for v in todo[d].variables()}), window)
    for start in range(0, len(dates), size):
        batch = dates[start:start + size]
        work = functools.partial(compute_date, window=window, device=device, min_valid_fraction=min_valid_fraction)
        results = dict(zip(batch, pool(work, [todo[d] for d in batch])))
        for d in batch:
            summary.bad.extend(results[d].bad)
            for line in results[d].messages:
                log(line)
        per_date, sources, provenance = {}, defaultdict(set), {}
        for d in batch:
            r = results[d]
            for tag, entry in r.provenance.items():
                provenance.setdefault(tag, {}).update(entry)
            layers = {}
            for var in todo[d].variables():
                if var in r.values:
                    mean, count, used = merge(r.values[var])
                    sources[var] |= set(used)
                else:  # every granule of it failed: written empty, not recorded complete
                    mean = np.full(window.shape, np.nan, dtype=np.float32)
                    count = np.zeros(window.shape, dtype=np.int32)
                layers[var], layers[f"{var}_count"] = mean, count
            per_date[d] = layers
        variables = sorted({v for d in batch for v in todo[d].variables()})
        binned = any(todo[d].granules for d in batch)
        attrs = {}
        for var in variables:
            attrs[var] = _var_attrs(var, sorted(sources[var]), _qc_of(provenance, var), binned)
            attrs[f"{var}_count"] = _count_attrs(var)
        store.write_dates(dim, per_date, attrs)
        # Only now, with the data on disk, record the dates as complete.
        record = store.completed()
        per_var = record.setdefault(dim, {})
        for d in batch:
            for var in todo[d].variables() - results[d].failed:
                if d.isoformat() not in per_var.setdefault(var, []):
                    per_var[var].append(d.isoformat())
            if results[d].failed:
                summary.incomplete.setdefault(dim, []).append(d.isoformat())
        for var in per_var:
            per_var[var].sort()
        store.update_attrs({"ingest_completed": json.dumps(record, sort_keys=True)})
        ds = store.dataset()
        for var in variables:
            existing = ds[var].attrs.get("source_products", "")
            union = sorted(set(filter(None, existing.split(", "))) | sources[var])
            store.update_var_attrs(var, {"source_products": ", ".join(union)})
        _provenance_update(store, provenance, {d.isoformat(): by_date[d].files() for d in batch}, dim)
        summary.written.setdefault(dim, []).extend(d.isoformat() for d in batch)
        log(f"{dim}: wrote {batch[0]}..{batch[-1]} ({len(batch)} date(s); {', '.join(variables)})")


def options_from(config) -> dict:
    """The keyword arguments of ``run`` that a PipelineConfig sets: [ingest] and [grid] bbox."""
    c = config.ingest
    return {"res": c.res, "bbox": tuple(config.grid.bbox), "months": c.months or None, "rasters": list(c.rasters),
            "landcover": c.landcover or None, "min_valid_fraction": c.min_valid_fraction}


def run(paths, out, *, res: float = 0.05, bbox=None, months=None, rasters=(), landcover=None,
        device: str = "cpu", min_valid_fraction: float = 0.0,
        log: Callable[[str], None] = print) -> IngestSummary | None:
    """Build (or extend) the input cube ``out`` (Zarr) from granules, rasters and cubes.

    ``paths``: files or folders (walked) of MODIS/VIIRS granules (standard names) and CF cubes
    (.nc/.zarr whose variables carry contract names). ``rasters``: ``VAR=GLOB`` specs (static
    layers such as ``soc30=...tif``; dated exports such as ``nir='exports/nir_*.tif'``).
    ``landcover``: ``"default"`` (the MCD12C1 2019 package), a path (MCD12C1 .hdf or IGBP .tif)
    or None. ``res`` degrees over ``bbox`` (W,S,E,N; default global); ``months``
    "YYYY-MM:YYYY-MM" keeps inputs dated inside. ``min_valid_fraction``: share of a cell's
    pixels that must be valid for a value. Under mpirun/srun the dates are computed by every
    rank from one queue and written by rank 0: the store is the same bit for bit as with one
    process. Returns an IngestSummary on rank 0 (None on the others); ``summary.ok`` is False
    when a granule could not be read (the caller should exit non-zero).
    """
    with task_pool() as pool:
        if pool is None:
            return None  # a worker rank: it served dates until rank 0 was done
        return _ingest(paths, out, res=res, bbox=bbox, months=months, rasters=rasters, landcover=landcover,
                       device=device, min_valid_fraction=min_valid_fraction, log=log, pool=pool)


def _ingest(paths, out, *, res, bbox, months, rasters, landcover, device, min_valid_fraction, log,
            pool) -> IngestSummary:
    if not 0.0 <= float(min_valid_fraction) <= 1.0:
        raise InputError(f"min_valid_fraction {min_valid_fraction!r}: expected a fraction in [0, 1]")
    device = resolve_device(device)  # "auto" -> cpu or cuda; "cuda" without a GPU is refused here
    xp = get_namespace(device)
    window = make_window(res, bbox)
    months_range = parse_months(months)
    store = _Store(Path(out), window)
    if store.exists():
        store.check_grid()
    plan = plan_inputs(list(paths), list(rasters), landcover, window, months_range, store.var_dims(), log,
                       Path(out))
    summary = IngestSummary(str(out), unknown=plan.unknown, outside_months=plan.outside_months)
    for path, reason in plan.unknown[:MAX_UNKNOWN_LINES]:
        log(f"skipped unknown file {path}: {reason}")
    if len(plan.unknown) > MAX_UNKNOWN_LINES:
        log(f"... and {len(plan.unknown) - MAX_UNKNOWN_LINES} more unknown files (listed in the summary)")
    if plan.outside_months:
        log(f"{plan.outside_months} input(s) dated outside --months {months}, skipped")
    if not store.exists():
        w, s, e, n = parse_bbox(bbox)
        store.create({"Conventions": "CF-1.8", "title": "ciml-ter input cube (ingest)",
                      "source": "MODIS/VIIRS land products, rasters and cubes via ciml-ter ingest",
                      "ciml_ter_version": __version__,
                      "ingest_grid": json.dumps({"res": res, "bbox": [w, s, e, n]}),
                      "ingest_completed": json.dumps({}), "ingest_static": json.dumps([])})
    done_static = set(_json_attr(store.attrs(), "ingest_static", []))
    static_files: dict = {}
    _ingest_static(store, plan, window, xp, float(min_valid_fraction), done_static, summary, static_files, log)
    if static_files:
        _provenance_update(store, {}, static_files, STATIC_KEY)
    for dim in sorted(plan.dated):
        _ingest_dim(store, dim, plan.dated[dim], window, device, float(min_valid_fraction), summary, log, pool)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    n_written = sum(len(v) for v in summary.written.values())
    line = (f"{stamp} ciml-ter ingest {__version__}: {n_written} date(s) and "
            f"{len(summary.static_written)} static layer(s) written (res={res}, "
            f"min_valid_fraction={min_valid_fraction}, device={device}, bad granules={len(summary.bad)})")
    history = store.attrs().get("history", "")
    store.update_attrs({"history": (history + "\n" if history else "") + line})
    ds = store.dataset()
    summary.variables = sorted(ds.data_vars)
    for dim in (d for d in ds.dims if d not in ("lat", "lon")):
        t = pd.DatetimeIndex(ds[dim].values)
        if not t.is_monotonic_increasing:
            log(f"note: {dim} is not in date order in {store.path.name} (dates added by an earlier run "
                f"precede some of this run's); readers sort by date")
    if plan.landcover is None and "land" not in ds.data_vars:
        log("note: no land mask in the cube; pass landcover='default' (--landcover default) to add "
            "pft and land from MCD12C1")
    if summary.bad:
        log(f"{len(summary.bad)} granule(s) could not be read; their dates are not recorded as "
            f"complete (rerun after replacing them): "
            + ", ".join(Path(p).name for p, _ in summary.bad))
    return summary
