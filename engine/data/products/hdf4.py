"""MODIS HDF4 (HDF-EOS2) granules through pyhdf: tiles (sinusoidal) and CMG (0.05 deg)."""
from __future__ import annotations

from ciml_ter.grid import GridWindow
from pyhdf.error import HDF4Error
from pyhdf.SD import SD, SDC

from .catalog import CMG, Product
from .decode import GranuleData, decode_layers
from .geometry import GranuleError, locate
from .identity import Identity, Probe, from_core_metadata
from .names import GranuleName


def _joined(attrs: dict, name: str) -> str:
    """An HDF-EOS2 metadata text (``name``.0, .1, ... concatenated; "" when absent)."""
    parts = []
    i = 0
    while f"{name}.{i}" in attrs:
        parts.append(str(attrs[f"{name}.{i}"]))
        i += 1
    return "".join(parts)


def struct_metadata(attrs: dict) -> str:
    """The StructMetadata text of an HDF-EOS2 file (StructMetadata.0, .1, ... concatenated)."""
    text = _joined(attrs, "StructMetadata")
    if not text:
        raise GranuleError("no StructMetadata.0 global attribute (not an HDF-EOS grid file)")
    return text


def _open(name: GranuleName) -> SD:
    try:
        return SD(str(name.path), SDC.READ)
    except HDF4Error as exc:
        raise GranuleError(f"cannot open as HDF4 ({exc})") from None


def probe_hdf4(name: GranuleName, product: Product, window: GridWindow) -> Probe:
    """A MODIS granule's identity (CoreMetadata.0) and whether it reaches ``window``
    (StructMetadata.0), its layers unread. Raises GranuleError when the file cannot be read."""
    sd = _open(name)
    try:
        attrs = sd.attributes()
        core = _joined(attrs, "CoreMetadata")
        identity = from_core_metadata(core, name.path) if core else Identity()
        _, where = locate(struct_metadata(attrs), product, window)
    except HDF4Error as exc:
        raise GranuleError(f"read error ({exc})") from None
    finally:
        sd.end()
    return Probe(identity, where is not None)


def _read_sds(sd, name: str, rows: slice, cols: slice):
    try:
        sds = sd.select(name)
    except HDF4Error:
        raise GranuleError(f"no science dataset {name!r}") from None
    try:
        data = sds[rows, cols]
        attrs = sds.attributes()
    finally:
        sds.endaccess()
    return data, attrs


def read_hdf4(name: GranuleName, product: Product, window: GridWindow | None = None) -> GranuleData:
    """Decode the product's layers of one MODIS HDF4 granule (fill, valid_range and QC applied).

    Tiles are read whole; a CMG granule only over ``window`` (and checked to align with it).
    Raises GranuleError when the file cannot be read as this product."""
    sd = _open(name)
    try:
        geometry, where = locate(struct_metadata(sd.attributes()), product, window)
        if where is None:
            return GranuleData(name, product, geometry, {}, provenance={"skipped": "outside the window"})
        rows, cols, factor = where
        expected = (geometry.y_dim, geometry.x_dim) if product.grid != CMG else \
            (rows.stop - rows.start, cols.stop - cols.start)

        def read(sds_name: str):
            raw, attrs = _read_sds(sd, sds_name, rows, cols)
            if raw.shape != expected:
                raise GranuleError(f"{sds_name} has shape {raw.shape}; StructMetadata says {expected}")
            return raw, attrs

        layers, provenance = decode_layers(product, read)
    except HDF4Error as exc:
        raise GranuleError(f"read error ({exc})") from None
    finally:
        sd.end()
    return GranuleData(name, product, geometry, layers, rows, cols, factor, provenance)
