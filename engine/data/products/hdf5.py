"""VIIRS HDF5 (HDF-EOS5) granules through h5py.

Layout: ``HDFEOS/GRIDS/<grid name>/Data Fields/<dataset>`` for the layers and
``HDFEOS INFORMATION/StructMetadata.0`` (a string dataset) for the grid geometry.
"""
from __future__ import annotations

import h5py
import numpy as np
from ciml_ter.grid import GridWindow

from .catalog import Product
from .decode import GranuleData, decode_layers
from .geometry import GranuleError, locate
from .identity import Identity, Probe, from_core_metadata, from_file_attributes
from .names import GranuleName

STRUCT_METADATA = "HDFEOS INFORMATION/StructMetadata.0"
CORE_METADATA = "HDFEOS INFORMATION/CoreMetadata.0"
FILE_ATTRIBUTES = "HDFEOS/ADDITIONAL/FILE_ATTRIBUTES"
GRIDS = "HDFEOS/GRIDS"


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return "".join(_text(v) for v in value.reshape(-1))
    return str(value)


def _dataset(f: h5py.File, grid: str, name: str) -> h5py.Dataset:
    path = f"{GRIDS}/{grid}/Data Fields/{name}"
    if path in f:
        return f[path]
    for other in f.get(GRIDS, {}):  # the grid holding the field, if StructMetadata named another
        alt = f"{GRIDS}/{other}/Data Fields/{name}"
        if alt in f:
            return f[alt]
    raise GranuleError(f"no dataset {name!r} under {GRIDS}/*/Data Fields")


def _open(name: GranuleName) -> h5py.File:
    try:
        return h5py.File(name.path, "r")
    except OSError as exc:
        raise GranuleError(f"cannot open as HDF5 ({exc})") from None


def _locate(f: h5py.File, product: Product, window: GridWindow | None):
    if STRUCT_METADATA not in f:
        raise GranuleError(f"no {STRUCT_METADATA} (not an HDF-EOS5 grid file)")
    return locate(_text(f[STRUCT_METADATA][()]), product, window)


def _identity(f: h5py.File, name: GranuleName) -> Identity:
    """The granule's identity from FILE_ATTRIBUTES, else from an ECS CoreMetadata.0 dataset."""
    attrs = {k: _text(v) for k, v in f[FILE_ATTRIBUTES].attrs.items()} if FILE_ATTRIBUTES in f else {}
    identity = from_file_attributes(attrs, name.path)
    if not identity.verifiable and CORE_METADATA in f:
        return from_core_metadata(_text(f[CORE_METADATA][()]), name.path)
    return identity


def probe_hdf5(name: GranuleName, product: Product, window: GridWindow) -> Probe:
    """A VIIRS granule's identity (FILE_ATTRIBUTES) and whether it reaches ``window``
    (StructMetadata.0), its layers unread. Raises GranuleError when the file cannot be read."""
    f = _open(name)
    try:
        identity = _identity(f, name)
        _, where = _locate(f, product, window)
    except (OSError, KeyError, RuntimeError) as exc:  # h5py's errors for damaged files
        raise GranuleError(f"read error ({type(exc).__name__}: {exc})") from None
    finally:
        f.close()
    return Probe(identity, where is not None)


def read_hdf5(name: GranuleName, product: Product, window: GridWindow | None = None) -> GranuleData:
    """Decode the product's layers of one VIIRS HDF5 granule (fill, valid_range and QC applied).
    Raises GranuleError when the file cannot be read as this product."""
    f = _open(name)
    try:
        geometry, where = _locate(f, product, window)
        if where is None:
            return GranuleData(name, product, geometry, {}, provenance={"skipped": "outside the window"})
        rows, cols, factor = where

        def read(sds_name: str):
            ds = _dataset(f, geometry.name, sds_name)
            if ds.shape != (geometry.y_dim, geometry.x_dim):
                raise GranuleError(f"{sds_name} has shape {ds.shape}; StructMetadata says "
                                   f"{(geometry.y_dim, geometry.x_dim)}")
            return ds[rows, cols], dict(ds.attrs)

        layers, provenance = decode_layers(product, read)
    except (OSError, KeyError, RuntimeError) as exc:  # h5py's errors for damaged files
        raise GranuleError(f"read error ({type(exc).__name__}: {exc})") from None
    finally:
        f.close()
    return GranuleData(name, product, geometry, layers, rows, cols, factor, provenance)
