"""What a point extract gives once read: its locations and, per contract variable, one value per
(location, date) in canonical units, NaN where the value is fill or the product's QC rule rejects
it. The readers of this package differ only in how a file lays these out.

Decoding is the ingest catalog's (``data.products``): each layer's scale, fill and valid range
from ``catalog.Layer.stored`` (or the scale the file gives), its QC word through the layer's
``catalog.QCRule``, the physical value through ``decode.decode``, as for a granule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.data.products import catalog
from ciml_ter.data.products.decode import decode, spec_encoding
from ciml_ter.errors import InputError

# |value / scale - nearest integer| allowed when undoing a file's scaling: the file's values were
# scaled in float32 (AppEEARS: 13763 x 0.02 is written 275.2599792), so a few float32 steps of the
# raw value, at least 1e-3.
SCALED_ABS_TOLERANCE = 1e-3
SCALED_REL_TOLERANCE = 4 * float(np.finfo(np.float32).eps)
BLOCK_BYTES = 16 << 20  # CSV bytes per parse block (pyarrow's default, 1 MiB, is slower on large files)


@dataclass
class Locations:
    """The places of an extract: ``names`` (the file's own site names or IDs), ``aliases`` (a
    second name, e.g. AppEEARS' Category; "" if none), ``lat``/``lon`` in degrees (NaN unknown)."""

    names: list[str]
    aliases: list[str]
    lat: np.ndarray
    lon: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def label(self, i: int) -> str:
        """A location as the report names it."""
        alias = f" ({self.aliases[i]})" if self.aliases[i] and self.aliases[i] != self.names[i] else ""
        return f"{self.names[i]}{alias}"


@dataclass
class Series:
    """One contract variable from one source: a value per observation (``point`` indexes the
    extract's Locations; a window's pixels share their location), float32 in canonical units."""

    var: str
    dim: str | None  # time dimension of the input cube (catalog.TIME_DIMS); None = static
    source: str  # product short name, or "long CSV"
    rank: tuple  # precedence among sources giving one variable (lower first, as ingest)
    point: np.ndarray  # int64
    date: np.ndarray  # datetime64[D]; NaT for static values
    value: np.ndarray  # float32, NaN = fill or rejected by QC


@dataclass
class Extract:
    """One point-extract file read: its format, product, locations and series, and for each
    variable how it was decoded (``layers``: var -> {"layer", "scale", "scale_from", "qc"})."""

    path: Path
    fmt: str
    product: str
    locations: Locations
    series: list[Series] = field(default_factory=list)
    layers: dict = field(default_factory=dict)


def product_rank(product: catalog.Product, name: str) -> tuple:
    """Ingest's precedence: the finer product first, then by short name (Terra MOD* before MYD*)."""
    return (product.nominal_res_m, name)


def parse_dates(text, path: Path, column: str) -> np.ndarray:
    """ISO dates (YYYY-MM-DD) to datetime64[D]; InputError naming the first that is not one."""
    values = pd.Series(np.asarray(text, dtype=object))
    dates = pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")
    bad = dates.isna() & values.notna()
    if bad.any():
        raise InputError(f"{path}: column {column!r}: expected dates as YYYY-MM-DD, found "
                         f"{values[bad].iloc[0]!r}")
    return dates.to_numpy().astype("datetime64[D]")


def qc_words(values, path: Path, column: str) -> np.ndarray:
    """QC words as float64 (NaN missing) from numbers written as integers or floats (``65.0``) or
    bitmask strings (``0b01000001``); InputError for anything else."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiu":
        words = arr.astype(np.float64)
    else:
        codes, uniques = pd.factorize(pd.Series(arr, dtype=object), use_na_sentinel=True)
        table = np.empty(len(uniques), dtype=np.float64)
        for k, text in enumerate(uniques):
            text = str(text).strip()
            try:
                table[k] = int(text[2:], 2) if text.startswith("0b") else float(text)
            except ValueError:
                raise InputError(f"{path}: column {column!r}: expected QC words (integers or 0b... "
                                 f"bitmasks), found {text!r}") from None
        words = np.where(codes >= 0, table[np.maximum(codes, 0)], np.nan)
    finite = np.isfinite(words)
    if np.any(words[finite] != np.round(words[finite])):
        raise InputError(f"{path}: column {column!r}: expected integer QC words, found "
                         f"{words[finite][words[finite] != np.round(words[finite])][0]!r}")
    return words


def qc_keep(rule: catalog.QCRule, words: np.ndarray) -> np.ndarray:
    """True where the QC word is present and ``rule`` accepts it."""
    present = np.isfinite(words)
    keep = np.zeros(words.shape, dtype=bool)
    keep[present] = rule.accept(words[present].astype(np.int64))
    return keep


def unscale(values: np.ndarray, stored: catalog.Stored, path: Path, column: str) -> np.ndarray:
    """Raw integers (float64, NaN missing) from values a file wrote already scaled (AppEEARS): a
    value equal to the raw fill stays the fill (AppEEARS writes fills unscaled, ``32767.0``), the
    others are value / scale, which must be whole numbers (else the catalog's scale is not the
    file's: InputError)."""
    values = np.asarray(values, dtype=np.float64)
    fill = np.isfinite(values) & (values == stored.fill) if stored.fill is not None else np.zeros(values.shape, bool)
    raw = values / stored.scale + stored.offset
    whole = np.round(raw)
    allowed = np.maximum(SCALED_ABS_TOLERANCE, SCALED_REL_TOLERANCE * np.abs(raw))
    off = np.isfinite(raw) & ~fill & (np.abs(raw - whole) > allowed)
    if off.any():
        raise InputError(f"{path}: column {column!r}: value {values[off][0]!r} is not a multiple of the "
                         f"product's scale factor {stored.scale:g}; expected scaled values as AppEEARS "
                         f"writes them")
    whole[fill] = stored.fill
    return whole


def check_raw(values: np.ndarray, path: Path, column: str) -> np.ndarray:
    """Stored integers (float64, NaN missing) as ORNL subsets and Earth Engine give them;
    InputError if a value is not whole (the file holds scaled values, not the stored ones)."""
    values = np.asarray(values, dtype=np.float64)
    off = np.isfinite(values) & (values != np.round(values))
    if off.any():
        raise InputError(f"{path}: column {column!r}: expected the product's stored integers (the "
                         f"catalog scales them), found {values[off][0]!r}")
    return values


def physical(layer: catalog.Layer, raw: np.ndarray, keep: np.ndarray | None,
             scale: float | None = None) -> np.ndarray:
    """float32 physical values of raw integers (NaN missing: outside any valid range, so NaN out):
    the catalog's encoding of the layer (``scale`` from the file where it gives one), QC ``keep``
    applied, by ``decode`` as for granules."""
    return decode(raw, spec_encoding(layer.stored, scale), keep)


def layer_columns(product: catalog.Product, lookup, path: Path) -> dict:
    """{var: (layer, value column, QC column or None)} for the product's layers present in a file;
    ``lookup(names)`` gives the file's column for the first of ``names`` it has, or None. A layer
    without its QC column is an InputError (the QC rule is part of the product's definition)."""
    found = {}
    for layer in product.layers:
        column = lookup((catalog.layer_key(layer.sds), *layer.aliases))
        if column is None:
            continue
        qc = None
        if layer.qc is not None:
            qc = lookup((catalog.layer_key(layer.qc.sds), *layer.qc.aliases))
            if qc is None:
                raise InputError(f"{path}: column {column!r} ({layer.var}) has no QC column: expected "
                                 f"{catalog.layer_key(layer.qc.sds)!r}"
                                 f"{''.join(f' or {a!r}' for a in layer.qc.aliases)} "
                                 f"(rule {layer.qc.text})")
        found[layer.var] = (layer, column, qc)
    return found


def provenance(layer: catalog.Layer, column: str, scale: float | None) -> dict:
    """How one layer of an extract was decoded (for the site table's metadata)."""
    return {"layer": column, "scale": layer.stored.scale if scale is None else scale,
            "scale_from": "catalog" if scale is None else "file",
            "qc": layer.qc.text if layer.qc is not None else "fill and valid_range only"}


def _codes(values) -> tuple[np.ndarray, list]:
    """(codes, distinct values) of a column given as such a pair or as an array (NaN/None -> "")."""
    if isinstance(values, tuple):
        return values
    codes, uniques = pd.factorize(np.asarray(values), use_na_sentinel=False)
    return codes.astype(np.int64), list(uniques)


def locations_of(name, alias, lat: np.ndarray, lon: np.ndarray) -> tuple[Locations, np.ndarray]:
    """Locations from per-row name, alias (arrays, or (codes, distinct values) pairs), latitude
    and longitude, and each row's location index (a location: a distinct combination of the four)."""
    (name_codes, names), (alias_codes, aliases) = _codes(name), _codes(alias)
    key = name_codes
    for part in (alias_codes, pd.factorize(lat, use_na_sentinel=False)[0],
                 pd.factorize(lon, use_na_sentinel=False)[0]):
        key = pd.factorize(key * np.int64(part.max(initial=0) + 1) + part)[0].astype(np.int64)
    _, first = np.unique(key, return_index=True)
    label = ["" if pd.isna(v) else str(v) for v in names]
    other = ["" if pd.isna(v) else str(v) for v in aliases]
    return Locations([label[c] for c in name_codes[first]], [other[c] for c in alias_codes[first]],
                     np.asarray(lat, dtype=np.float64)[first], np.asarray(lon, dtype=np.float64)[first]), key


def read_columns(path: Path, types: dict, skip_rows: int = 0) -> dict[str, np.ndarray]:
    """The named columns of a CSV file as NumPy arrays (pyarrow's multi-threaded reader): ``types``
    maps each column to "float" (float64, NaN missing), "text" (object), "codes" (text as (int64
    codes, distinct values): fast for names repeated on every row) or "date" (YYYY-MM-DD ->
    datetime64[D]); ``skip_rows`` lines are skipped before the header. Unreadable values are an
    InputError naming the file and the column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    arrow = {"float": pa.float64(), "text": pa.string(), "codes": pa.string(), "date": pa.date32()}
    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(skip_rows=skip_rows, block_size=BLOCK_BYTES),
                               convert_options=pacsv.ConvertOptions(
                                   include_columns=list(types), strings_can_be_null=True,
                                   column_types={c: arrow[t] for c, t in types.items()}))
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise InputError(f"{path}: cannot read the columns {', '.join(types)} "
                         f"({str(exc).splitlines()[0]})") from None
    out = {}
    for column, kind in types.items():
        values = table.column(column)
        if kind == "date":
            out[column] = values.to_numpy().astype("datetime64[D]")
        elif kind == "float":
            out[column] = values.to_numpy().astype(np.float64)
        elif kind == "codes":
            encoded = pc.dictionary_encode(values).combine_chunks()
            codes = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy().astype(np.int64)
            out[column] = (codes, [*encoded.dictionary.to_pylist(), None])
        else:
            out[column] = values.to_numpy(zero_copy_only=False).astype(object)
    return out
