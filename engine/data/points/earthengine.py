"""Google Earth Engine table exports of point samples (``Export.table.toDrive`` of the
FeatureCollection that ``ImageCollection.map(image.sampleRegions(...))`` or ``getRegion`` made).

Layout (Earth Engine guides "Exporting table and vector data", ``Image.sampleRegions``): one row per
image and point, a ``system:index`` column (``<image id>_<feature id>``; MODIS image ids are dates,
``2019_01_01``), one column per band under the collection's band names (``LST_Day_1km``,
``QC_Day``, ``sur_refl_b01``, ``DetailedQA``, ``Lai``, ...; the stored integers, unscaled, empty
where masked), the point's properties (a site name) and ``.geo`` (the point as GeoJSON) unless
the export dropped it. Such a file does not name its product: the user does (``PRODUCT=PATH``).

Reading: the site is the ``site`` or ``SITE_ID`` column (first found), else the ``.geo``
coordinates; the date is the ``date`` column (ISO date, or date-time whose date part is taken),
else ``system:time_start`` (ms since 1970-01-01 UTC), else the date inside ``system:index``.
Bands are decoded with the catalog's scale, fill, valid range and QC rule.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.data.products import catalog, names
from ciml_ter.errors import InputError

from .series import (Extract, Locations, Series, check_raw, layer_columns, locations_of, parse_dates, physical,
                     product_rank, provenance, qc_keep, qc_words, read_columns)

INDEX = "system:index"
GEO = ".geo"
SITE_COLUMNS = ("site", "SITE_ID")
FORMAT = "Earth Engine export"


def recognise(header: list[str]) -> bool:
    """An Earth Engine table export: it has ``system:index``."""
    return INDEX in header


def _coordinates(geo: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of GeoJSON points (each distinct text parsed once)."""
    codes, uniques = pd.factorize(pd.Series(geo, dtype=object))
    lat, lon = np.full(len(uniques), np.nan), np.full(len(uniques), np.nan)
    for k, text in enumerate(uniques):
        try:
            shape = json.loads(text)
            if shape.get("type") != "Point":
                raise ValueError
            lon[k], lat[k] = (float(v) for v in shape["coordinates"][:2])
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InputError(f"{path}: column '.geo': expected a GeoJSON point, found {str(text)[:80]!r}") from None
    if np.any(codes < 0):
        raise InputError(f"{path}: column '.geo' has empty cells; expected each sample's point")
    return lat[codes], lon[codes]


def _dates(header: list[str], data: dict, path: Path) -> np.ndarray:
    if "date" in header:
        text = pd.Series(data["date"], dtype=object).str.slice(0, 10).to_numpy()
        return parse_dates(text, path, "date")
    if "system:time_start" in header:
        ms = data["system:time_start"]
        if np.isnan(ms).any():
            raise InputError(f"{path}: column 'system:time_start' has empty cells")
        return ms.astype("int64").astype("datetime64[ms]").astype("datetime64[D]")
    codes, uniques = pd.factorize(pd.Series(data[INDEX], dtype=object))
    found = [names.date_from_name(str(u)) for u in uniques]
    if any(d is None for d in found):
        bad = uniques[[d is None for d in found].index(True)]
        raise InputError(f"{path}: no 'date' or 'system:time_start' column and no date (YYYY_MM_DD) in "
                         f"system:index {bad!r}")
    return np.array(found, dtype="datetime64[D]")[codes]


def read(path: Path, header: list[str], product_name: str) -> Extract:
    """Decode the catalog layers of ``product_name`` present among the export's band columns."""
    product = catalog.product_for(product_name)
    site = next((c for c in SITE_COLUMNS if c in header), None)
    if site is None and GEO not in header:
        raise InputError(f"{path}: no site column ({' or '.join(SITE_COLUMNS)}) and no '.geo' column: "
                         f"expected one to place the samples")
    found = layer_columns(product, lambda ns: next((n for n in ns if n in header), None), path)
    if not found:
        return Extract(path, FORMAT, product_name, Locations([], [], np.array([]), np.array([])))
    types = {INDEX: "text"}
    if site is not None:
        types[site] = "text"
    if GEO in header:
        types[GEO] = "text"
    if "date" in header:
        types["date"] = "text"
    elif "system:time_start" in header:
        types["system:time_start"] = "float"
    for _layer, column, qc in found.values():
        types[column] = "float"
        if qc is not None:
            types[qc] = "float"
    data = read_columns(path, types)
    n = len(data[INDEX])
    lat, lon = _coordinates(data[GEO], path) if GEO in header else (np.full(n, np.nan), np.full(n, np.nan))
    name = data[site] if site is not None else np.char.add(np.char.add(np.round(lat, 5).astype(str), ","),
                                                           np.round(lon, 5).astype(str)).astype(object)
    locations, point = locations_of(name, np.full(n, ""), lat, lon)
    dates = _dates(header, data, path)
    extract = Extract(path, FORMAT, product_name, locations)
    rank = product_rank(product, product_name)
    for var, (layer, column, qc) in found.items():
        keep = None if qc is None else qc_keep(layer.qc, qc_words(data[qc], path, qc))
        raw = check_raw(data[column], path, column)
        extract.series.append(Series(var, product.time_dim, product_name, rank, point, dates,
                                     physical(layer, raw, keep)))
        extract.layers[var] = provenance(layer, column, None)
    return extract
