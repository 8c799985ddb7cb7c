"""NASA AppEEARS point-sample CSVs.

Layout (AppEEARS API and user guide, "Point Sample Extraction"; checked on public request
outputs): one file per product, ``<request name>-<PRODUCT>-<VVV>-results.csv``, with columns
``Category, ID, Latitude, Longitude, Date, MODIS_Tile`` (the user's point list: ID and Category
are the user's), then ``<PRODUCT>_<VVV>_<layer>`` per layer (``MOD11A1_061_LST_Day_1km``; a layer
whose name begins with ``_``, e.g. MOD13Q1's ``_250m_16_days_NDVI``, gives a double underscore),
line/sample columns, the raw QC layers (``MOD11A1_061_QC_Day``, written as floats: ``65.0``), and
per QC layer AppEEARS' decoded columns (``..._QC_Day_bitmask`` as ``0b01000001``, ``..._MODLAND``,
``..._MODLAND_Description``, names may hold ``/`` or ``-``). Data values are scaled (``283.88`` K);
fill values are written unscaled (``32767.0``); a composite's date is the first day of its period.
Companion files of a request (``...-lookup.csv``, ``-request.json``, ``-granule-list.txt``,
``-metadata.xml``, ``README.md``) are not data.

Reading: the product comes from the file name and must be in the catalog; the values are turned
back into the stored integers (value / catalog scale, which must be whole) and decoded with the
catalog's fill, valid range and QC rule applied to the raw QC word (or, where only the bitmask
column is present, to the bitmask). AppEEARS' decoded text columns are not used: the catalog's rule
is the one definition (they also disagree with their own bits in some files).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ciml_ter.data.products import catalog
from ciml_ter.errors import InputError
from .series import (Extract, Locations, Series, layer_columns, locations_of, physical, product_rank, provenance,
                     qc_keep, qc_words, read_columns, unscale)

NAME = re.compile(r"^(?P<request>.+)-(?P<product>[A-Za-z0-9]+)-(?P<version>\d{3})-results\.csv$")
LOOKUP = re.compile(r"-lookup\.csv$")
REQUIRED = ("ID", "Latitude", "Longitude", "Date")
FORMAT = "AppEEARS point sample"


def recognise(path: Path, header: list[str]) -> bool:
    """An AppEEARS results file (by its name); InputError if it lacks a point column."""
    if NAME.match(path.name) is None:
        return False
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}: an AppEEARS results file without column {missing[0]!r}; expected "
                         f"{', '.join(REQUIRED)}, found {', '.join(header[:8])}")
    return True


def is_companion(path: Path) -> bool:
    """An AppEEARS QC lookup table (``...-lookup.csv``): documentation, not data."""
    return LOOKUP.search(path.name) is not None


def product_of(path: Path) -> tuple[str, str]:
    """(short name, version) from the file name."""
    m = NAME.match(path.name)
    return m["product"], m["version"]


def read(path: Path, header: list[str], product: catalog.Product) -> Extract:
    """Decode every catalog layer of ``product`` present in the file."""
    short, version = product_of(path)
    prefix = f"{short}_{version}_"
    keys = {catalog.layer_key(c[len(prefix):]): c for c in header if c.startswith(prefix)}

    def lookup(names):
        for name in names:
            for key in (name, f"{name}_bitmask"):
                if key in keys:
                    return keys[key]
        return None

    found = layer_columns(product, lookup, path)
    if not found:
        return Extract(path, FORMAT, short, Locations([], [], np.array([]), np.array([])))
    types = {"ID": "codes", "Latitude": "float", "Longitude": "float", "Date": "date"}
    if "Category" in header:
        types["Category"] = "codes"
    for _layer, column, qc in found.values():
        types[column] = "float"
        if qc is not None:
            types[qc] = "text" if qc.endswith("_bitmask") else "float"
    data = read_columns(path, types)
    n = len(data["Latitude"])
    category = data.get("Category", (np.zeros(n, dtype=np.int64), [""]))
    locations, point = locations_of(data["ID"], category, data["Latitude"], data["Longitude"])
    extract = Extract(path, FORMAT, short, locations)
    rank = product_rank(product, short)
    for var, (layer, column, qc) in found.items():
        keep = None if qc is None else qc_keep(layer.qc, qc_words(data[qc], path, qc))
        raw = unscale(data[column], layer.stored, path, column)
        extract.series.append(Series(var, product.time_dim, short, rank, point, data["Date"],
                                     physical(layer, raw, keep)))
        extract.layers[var] = provenance(layer, column, None)
    return extract
