"""Decoding of stored integers to physical values, from a layer's own attributes.

MODIS convention (HDF4 SDsetcal, used by the MODIS and VIIRS land products):
``physical = scale_factor * (raw - add_offset)``. Raw values equal to _FillValue or outside
valid_range are invalid (NaN); so are pixels the product's QC rule rejects. The MOD13/VNP13
files' ``scale_factor`` 10000 means raw / 10000 (``file_encoding``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .catalog import Layer, Product, Stored
from .names import GranuleName
from .structmeta import GridGeometry

# Attribute spellings: CF/HDF4 names first, then those some VIIRS files use.
_SCALE = ("scale_factor", "Scale")
_OFFSET = ("add_offset", "Offset")
_FILL = ("_FillValue", "_Fillvalue", "FillValue")


def _scalar(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    arr = np.asarray(value)
    if arr.dtype.kind in "SU":
        return str(arr.reshape(-1)[0].decode() if arr.dtype.kind == "S" else arr.reshape(-1)[0])
    if arr.size == 1:
        return arr.reshape(-1)[0].item()
    return tuple(v.item() for v in arr.reshape(-1))


def _first(attrs: dict, names):
    for name in names:
        if name in attrs:
            return _scalar(attrs[name])
    return None


@dataclass(frozen=True)
class Encoding:
    """How a layer is stored, as its attributes say."""

    scale_factor: float = 1.0
    add_offset: float = 0.0
    fill_value: float | None = None
    valid_range: tuple[float, float] | None = None
    units: str | None = None
    long_name: str | None = None

    def as_attrs(self) -> dict:
        out = {"scale_factor": self.scale_factor, "add_offset": self.add_offset}
        if self.fill_value is not None:
            out["_FillValue"] = self.fill_value
        if self.valid_range is not None:
            out["valid_range"] = list(self.valid_range)
        if self.units:
            out["units"] = self.units
        return out


def encoding_from_attrs(attrs: dict) -> Encoding:
    """The Encoding of a layer from its attribute dict (HDF4 or HDF5 spellings)."""
    scale = _first(attrs, _SCALE)
    offset = _first(attrs, _OFFSET)
    fill = _first(attrs, _FILL)
    valid = attrs.get("valid_range")
    if valid is not None:
        valid = tuple(float(v) for v in np.asarray(valid).reshape(-1)[:2])
    elif "valid_min" in attrs and "valid_max" in attrs:
        valid = (float(_scalar(attrs["valid_min"])), float(_scalar(attrs["valid_max"])))
    units = _first(attrs, ("units",))
    long_name = _first(attrs, ("long_name",))
    return Encoding(1.0 if scale is None else float(scale), 0.0 if offset is None else float(offset),
                    None if fill is None else float(fill), valid,
                    None if units is None else str(units), None if long_name is None else str(long_name))


def spec_encoding(stored: Stored, scale: float | None = None) -> Encoding:
    """The Encoding of a product specification (``scale`` given by a file replaces its scale)."""
    return Encoding(stored.scale if scale is None else scale, stored.offset, stored.fill, stored.valid,
                    stored.units)


def file_encoding(layer: Layer, attrs: dict) -> Encoding:
    """The Encoding of ``layer`` from its file's attributes. A ``scale_factor`` equal to 1 / the
    specification's scale (the MOD13/VNP13 "scale factor 10000") is read as that scale."""
    enc = encoding_from_attrs(attrs)
    spec = layer.stored
    if spec is not None and spec.scale < 1 and abs(enc.scale_factor * spec.scale - 1.0) < 1e-6:
        enc = replace(enc, scale_factor=spec.scale)
    return enc


def decode(raw: np.ndarray, enc: Encoding, keep: np.ndarray | None = None) -> np.ndarray:
    """float32 physical values of ``raw``; NaN at fill, outside valid_range, or where ``keep`` is
    False (QC)."""
    valid = np.ones(raw.shape, dtype=bool)
    if enc.fill_value is not None:
        valid &= raw != enc.fill_value
    if enc.valid_range is not None:
        valid &= (raw >= enc.valid_range[0]) & (raw <= enc.valid_range[1])
    if keep is not None:
        valid &= keep
    out = (enc.scale_factor * (raw.astype(np.float64) - enc.add_offset)).astype(np.float32)
    out[~valid] = np.nan
    return out


@dataclass
class GranuleData:
    """Decoded layers of one granule, with the geometry of the arrays and what was applied."""

    name: GranuleName
    product: Product
    geometry: GridGeometry
    layers: dict[str, np.ndarray]  # var -> float32 (rows, cols), NaN = invalid
    rows: slice = field(default_factory=lambda: slice(None))  # part of the grid held (CMG subsets)
    cols: slice = field(default_factory=lambda: slice(None))
    factor: int = 1  # CMG block factor to the output grid
    provenance: dict = field(default_factory=dict)  # var -> {"sds", encoding attrs, "qc"}

    @property
    def path(self) -> Path:
        return self.name.path


def layer_provenance(layer: Layer, enc: Encoding) -> dict:
    """What was applied to one layer (for the cube's provenance attributes)."""
    out = {"sds": layer.sds, **enc.as_attrs(), "scaling": "scale_factor * (raw - add_offset)"}
    out["qc"] = layer.qc.text if layer.qc is not None else "fill and valid_range only"
    return out


def decode_layers(product: Product, read) -> tuple[dict[str, np.ndarray], dict]:
    """Every layer of ``product`` decoded, with its provenance. ``read(sds)`` gives the raw array
    of one science dataset over the granule's placement and its attributes (the HDF4 and HDF5
    readers differ only there); each QC dataset is read once, however many layers use it."""
    layers, provenance, qc_words = {}, {}, {}
    for layer in product.layers:
        raw, attrs = read(layer.sds)
        keep = None
        if layer.qc is not None:
            if layer.qc.sds not in qc_words:
                qc_words[layer.qc.sds] = read(layer.qc.sds)[0]
            keep = layer.qc.accept(qc_words[layer.qc.sds])
        enc = file_encoding(layer, attrs)
        layers[layer.var] = decode(raw, enc, keep)
        provenance[layer.var] = layer_provenance(layer, enc)
    return layers, provenance
