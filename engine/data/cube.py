"""Open and write gridded cubes (Zarr stores or NetCDF4 files) lazily, without dask."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from ciml_ter.errors import InputError

NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5")


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
