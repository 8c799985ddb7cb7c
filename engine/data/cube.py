"""Gridded cubes: open and write them (Zarr stores or NetCDF4 files) lazily, without dask, and the
store that ``ciml-ter ingest`` builds and extends (``IngestStore``), with the inventory of the
input files behind each of its dates (``file_record``, ``changed_files``)."""
from __future__ import annotations

import functools
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter.errors import InputError
from ciml_ter.files import files_of
from ciml_ter.grid import GridWindow

NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5")
CHUNK = 512  # spatial chunk edge of the ingest store's arrays
TIME_CHUNK_BYTES = 1 << 20  # a chunk of a dated array holds as many dates as fit in this (bytes)
TIME_UNITS = "days since 1970-01-01"


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a Zarr store (directory or ``.zarr``) or a NetCDF4 file; arrays load on access."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: cube not found (expected a Zarr store or a NetCDF file)")
    try:
        if path.is_dir() or path.suffix == ".zarr":
            return xr.open_dataset(path, engine="zarr", chunks=None, consolidated=False)
        if path.suffix in NETCDF_SUFFIXES:
            return xr.open_dataset(path, engine="h5netcdf", chunks=None)
    except Exception as exc:  # the libraries raise many types for a corrupt file
        raise InputError(f"{path}: cannot open as a cube ({type(exc).__name__}: {exc})") from None
    raise InputError(f"{path}: unknown cube format: expected a .zarr store or one of "
                     f"{', '.join(NETCDF_SUFFIXES)}, found suffix {path.suffix!r}")


def write_zarr(ds: xr.Dataset, path: str | Path, **kwargs) -> None:
    """Write (or with ``region=``/``append_dim=`` extend) a Zarr store, unconsolidated.

    A new store's arrays are compressed with Blosc LZ4 + byte shuffle (several times faster to
    write and read than Zarr's default Zstd, for about 1.5x the size) unless the variable's
    encoding names its own compressors. Extending a store keeps its attributes (xarray would
    replace them with those of the appended piece).
    """
    import zarr
    from zarr.codecs import BloscCodec

    ds = ds.copy()  # shallow: attributes and encodings are set on the copy only
    if "append_dim" in kwargs or "region" in kwargs:
        ds.attrs = {**zarr.open_group(str(path), mode="r").attrs.asdict(), **ds.attrs}
    else:
        for var in ds.variables.values():
            if var.dtype.kind in "fiu" and "compressors" not in var.encoding:
                var.encoding["compressors"] = [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    ds.to_zarr(path, consolidated=False, **kwargs)


def _stat(path: Path) -> tuple[int, int]:
    """(size in bytes, latest modification time in ns) of an input file or directory."""
    stats = [p.stat() for p in files_of(path)]
    return sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=0)


@functools.lru_cache(maxsize=8192)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 (hex) of a file's content, or of a directory's relative file names and contents;
    cached per (path, size, modification time)."""
    root = Path(path)
    digest = hashlib.sha256()
    for p in files_of(root):
        if root.is_dir():
            digest.update(p.relative_to(root).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(functools.partial(f.read, 1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def file_record(path: str | Path, variables) -> dict:
    """An input file as the store's inventory records it: ``size`` (bytes), ``mtime_ns``
    (modification time, ns), ``sha256`` of the content and the ``variables`` it gave."""
    path = Path(path)
    size, mtime_ns = _stat(path)
    return {"size": size, "mtime_ns": mtime_ns, "sha256": _sha256(str(path.resolve()), size, mtime_ns),
            "variables": sorted(variables)}


def _differs(record: dict, path: Path) -> bool:
    size, mtime_ns = _stat(path)
    if size != record["size"]:
        return True
    if mtime_ns == record["mtime_ns"]:
        return False
    return _sha256(str(path.resolve()), size, mtime_ns) != record["sha256"]


def changed_files(recorded: dict, current: dict) -> dict[str, list[str]]:
    """The variables whose input files differ from the inventory's: ``recorded`` (file name ->
    ``file_record``) against ``current`` (path -> variables it gives now). A file is new (``+``)
    when no recorded file of that name gave the variable, changed (``~``) when its size differs or,
    its modification time having changed, its SHA-256 does; for those variables the recorded files
    no longer among the inputs are listed too (``-``). Returns {variable: ["+ NAME", ...]}."""
    out: dict = {}
    for path, variables in current.items():
        record = recorded.get(path.name)
        for var in variables:
            if record is None or var not in record["variables"]:
                out.setdefault(var, []).append(f"+ {path.name}")
            elif _differs(record, path):
                out.setdefault(var, []).append(f"~ {path.name}")
    names = {p.name for p in current}
    for name, record in recorded.items():
        for var in record["variables"]:
            if var in out and name not in names:
                out[var].append(f"- {name}")
    return {var: sorted(marks) for var, marks in out.items()}


def _stack(layers: list) -> np.ndarray:
    """``np.stack`` of (lat, lon) layers; without a copy when they are consecutive layers of one
    (time, lat, lon) array, as a block of dates read at once is."""
    first, base = layers[0], layers[0].base
    if base is None or base.ndim != 3 or base.shape[1:] != first.shape or not base.flags.c_contiguous:
        return np.stack(layers)
    step, start = base.strides[0], first.ctypes.data - base.ctypes.data
    if start % step or start // step + len(layers) > base.shape[0]:
        return np.stack(layers)
    if all(a.base is base and a.dtype == base.dtype and a.ctypes.data == first.ctypes.data + i * step
           for i, a in enumerate(layers)):
        return base[start // step:start // step + len(layers)]
    return np.stack(layers)


def _json_attr(attrs: dict, key: str, default):
    value = attrs.get(key)
    return default if value is None else json.loads(value)


class IngestStore:
    """The input cube that ``ciml-ter ingest`` builds (Zarr): grid checks, writes of static layers
    and of dates, and the record in its attributes of what is complete (``ingest_completed``:
    time dim -> variable -> ISO dates; ``ingest_static``), where each value came from
    (``ingest_products``; ``ingest_inventory``: time dim, or "static" -> ISO date, or static
    variable -> input file name -> ``file_record``) and its history. Its metadata are consolidated
    (``consolidate``) once a run's writes are done and dropped (``unconsolidate``) before a run
    writes, so a reader never sees stale metadata."""

    def __init__(self, path: Path, window: GridWindow):
        self.path = Path(path)
        self.window = window
        self.lat, self.lon = window.coords()

    # --- state
    def attrs(self) -> dict:
        import zarr
        return zarr.open_group(str(self.path), mode="r", use_consolidated=False).attrs.asdict()

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

    def _arrays(self) -> dict[str, tuple[str, ...]]:
        """Each array of the store -> its dimension names, from the Zarr metadata alone."""
        import zarr
        if not self.exists():
            return {}
        group = zarr.open_group(str(self.path), mode="r", use_consolidated=False)
        return {name: tuple(array.metadata.dimension_names or ()) for name, array in group.arrays()}

    def variables(self) -> list[str]:
        """The data variables of the store (arrays that are not a coordinate), sorted."""
        return sorted(v for v, dims in self._arrays().items() if dims != (v,))

    def var_dims(self) -> dict:
        """Each dated variable (not its count) -> its time dimension."""
        return {v: dims[0] for v, dims in self._arrays().items() if len(dims) == 3 and not v.endswith("_count")}

    def completed(self) -> dict:
        """time dim -> variable -> ISO dates whose data are written."""
        return _json_attr(self.attrs(), "ingest_completed", {})

    def static_done(self) -> set[str]:
        """The static layers already written."""
        return set(_json_attr(self.attrs(), "ingest_static", []))

    def record(self, key: str, files: dict, computed: dict, complete: dict | None = None,
               incomplete: dict | None = None, products: dict | None = None) -> None:
        """Record, in one update of the attributes and only once the data are on disk, what a batch
        wrote under time dim ``key`` (or "static"): the input files of each date or static variable
        (``files`` {date: {name: file_record}}; they replace the recorded files that gave a
        variable computed now, ``computed`` {date: variables}); the dates complete per variable
        (``complete`` {var: ISO dates}) and those no longer complete (``incomplete``: rewritten
        without a granule that could not be read); the products' provenance (layers, QC rules,
        guides)."""
        attrs = self.attrs()
        updates = {}
        inventory = _json_attr(attrs, "ingest_inventory", {})
        recorded = inventory.setdefault(key, {})
        for date, new in files.items():
            kept = {name: r for name, r in recorded.get(date, {}).items()
                    if not set(r["variables"]) & set(computed[date])}
            recorded[date] = {**kept, **new}
        updates["ingest_inventory"] = json.dumps(inventory, sort_keys=True)
        if complete or incomplete:
            record = _json_attr(attrs, "ingest_completed", {})
            per_var = record.setdefault(key, {})
            for var in set(complete or {}) | set(incomplete or {}):
                dates = set(per_var.get(var, [])) | set((complete or {}).get(var, []))
                per_var[var] = sorted(dates - set((incomplete or {}).get(var, [])))
            updates["ingest_completed"] = json.dumps(record, sort_keys=True)
        if products:
            known = _json_attr(attrs, "ingest_products", {})
            for tag, entry in products.items():
                merged = known.setdefault(tag, {})
                for name, value in entry.items():
                    if isinstance(value, dict):
                        merged.setdefault(name, {}).update(value)
                    else:
                        merged[name] = value
            updates["ingest_products"] = json.dumps(known, sort_keys=True)
        self.update_attrs(updates)

    def inventory(self, key: str) -> dict:
        """ISO date (or static variable) -> input file name -> ``file_record``, of time dim ``key``
        (or "static")."""
        return _json_attr(self.attrs(), "ingest_inventory", {}).get(key, {})

    def unconsolidate(self) -> None:
        """Drop the consolidated copy of the metadata (before writes: it would go stale)."""
        import zarr
        group = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)
        group.attrs.update(group.attrs.asdict())  # rewrites the group's metadata alone

    def consolidate(self) -> None:
        """Consolidate the store's metadata (``xr.open_zarr`` then opens it without a warning)."""
        import zarr
        with warnings.catch_warnings():  # zarr: consolidated metadata are not in the v3 spec yet
            warnings.filterwarnings("ignore", "Consolidated metadata is currently not part")
            zarr.consolidate_metadata(str(self.path))

    def add_history(self, line: str) -> None:
        """Append a line to the CF ``history`` attribute."""
        history = self.attrs().get("history", "")
        self.update_attrs({"history": (history + "\n" if history else "") + line})

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
        """Update the group's attributes (the consolidated copy of the metadata is dropped)."""
        import zarr
        zarr.open_group(str(self.path), mode="r+", use_consolidated=False).attrs.update(updates)

    def add_source_products(self, sources: dict) -> None:
        """Add products ({var: names}) to each variable's ``source_products`` attribute."""
        import zarr
        group = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)
        for var, names in sources.items():
            attrs = group[var].attrs
            existing = set(filter(None, str(attrs.get("source_products", "")).split(", ")))
            if not set(names) <= existing:
                attrs.update({"source_products": ", ".join(sorted(existing | set(names)))})

    def _chunks(self, ndim: int) -> tuple:
        """Chunks of a new array: spatial edges up to CHUNK; on time as many dates as fit in
        TIME_CHUNK_BYTES of float32 (1 on a large grid, the whole record on a small one)."""
        space = (min(self.lat.size, CHUNK), min(self.lon.size, CHUNK))
        return space if ndim == 2 else (max(1, TIME_CHUNK_BYTES // (4 * space[0] * space[1])),) + space

    def write_static(self, layers: dict) -> None:
        """Write static layers ({var: ((lat, lon) array, attributes)}), replacing those present."""
        import zarr
        variables = {}
        for var, (values, attrs) in layers.items():
            variables[var] = xr.Variable(("lat", "lon"), values, attrs)
            variables[var].encoding["chunks"] = self._chunks(2)
        present = set(self._arrays()) & set(layers)
        self._write(xr.Dataset(variables, coords={"lat": self.lat, "lon": self.lon}), mode="a")
        group = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)
        for var in present:  # xarray keeps an existing array's attributes; set them
            group[var].attrs.update(layers[var][1])

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

    def write_dates(self, dim: str, per_date: dict, attrs: dict) -> bool:
        """Write ``per_date`` ({date: {var: (lat, lon) array}}) on ``dim``. Dates new to the store are
        appended with every variable of the dim (NaN / 0 where a variable has no value that date);
        dates already there are rewritten in place, only for the variables computed now; a
        variable new to an existing dim is first added empty over its existing dates. Returns True
        when dates were appended after later ones (``dim`` is then out of date order)."""
        arrays = self._arrays()
        in_store = dim in arrays
        existing = list(pd.DatetimeIndex(self.dataset()[dim].values).date) if in_store else []
        dim_vars = {v for v, dims in arrays.items() if dims[:1] == (dim,) and v != dim}
        computed = {v for values in per_date.values() for v in values}
        if in_store:
            for var in sorted(computed - dim_vars):
                empty = self._variable(dim, self._empty(var, len(existing)), attrs[var], True)
                self._write(xr.Dataset({var: empty}), mode="a")
                dim_vars.add(var)
        position = {d: i for i, d in enumerate(existing)}
        new_dates = sorted(d for d in per_date if d not in position)
        if new_dates:
            variables = {}
            for var in sorted(dim_vars | computed):
                blank = self._empty(var, 1)[0]
                values = _stack([per_date[d].get(var, blank) for d in new_dates])
                variables[var] = self._variable(dim, values, attrs.get(var, {}), not in_store)
            piece = xr.Dataset(variables, coords={dim: pd.DatetimeIndex(pd.to_datetime(new_dates))})
            if in_store:
                self._write(piece, append_dim=dim)
            else:
                piece[dim].encoding.update({"units": TIME_UNITS, "calendar": "proleptic_gregorian",
                                            "dtype": "int64"})
                self._write(piece, mode="a")
        for d in sorted(per_date):
            if d in position and per_date[d]:
                i = position[d]
                piece = xr.Dataset({var: xr.Variable((dim, "lat", "lon"), values[None])
                                    for var, values in per_date[d].items()})
                self._write(piece, region={dim: slice(i, i + 1)})
        return bool(new_dates) and bool(existing) and new_dates[0] < max(existing)
