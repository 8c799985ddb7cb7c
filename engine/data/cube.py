"""Gridded cubes: open and write them (Zarr stores or NetCDF4 files) lazily, without dask, and the
store that ``ciml-ter ingest`` builds and extends (``IngestStore``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter.errors import InputError
from ciml_ter.grid import GridWindow

NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5")
CHUNK = 512  # spatial chunk edge of the ingest store's arrays
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


def _json_attr(attrs: dict, key: str, default):
    value = attrs.get(key)
    return default if value is None else json.loads(value)


class IngestStore:
    """The input cube that ``ciml-ter ingest`` builds (Zarr): grid checks, writes of static layers
    and of dates, and the record in its attributes of what is complete (``ingest_completed``:
    time dim -> variable -> ISO dates; ``ingest_static``), where each value came from
    (``ingest_products``, ``ingest_files``) and its history."""

    def __init__(self, path: Path, window: GridWindow):
        self.path = Path(path)
        self.window = window
        self.lat, self.lon = window.coords()

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
        """time dim -> variable -> ISO dates whose data are written."""
        return _json_attr(self.attrs(), "ingest_completed", {})

    def static_done(self) -> set[str]:
        """The static layers already written."""
        return set(_json_attr(self.attrs(), "ingest_static", []))

    def record_complete(self, dim: str, dates_by_var: dict[str, list[str]]) -> None:
        """Record dates (ISO) of variables of ``dim`` as complete; call only once they are on disk."""
        record = self.completed()
        per_var = record.setdefault(dim, {})
        for var, dates in dates_by_var.items():
            per_var[var] = sorted(set(per_var.get(var, [])) | set(dates))
        self.update_attrs({"ingest_completed": json.dumps(record, sort_keys=True)})

    def record_provenance(self, products: dict, files_by_date: dict, dim: str) -> None:
        """Merge the products' provenance (layers, QC rules, guides) and the files of each date of
        ``dim`` into the store's attributes."""
        attrs = self.attrs()
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
        self.update_attrs({"ingest_products": json.dumps(known, sort_keys=True),
                           "ingest_files": json.dumps(recorded, sort_keys=True)})

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
