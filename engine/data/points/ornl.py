"""ORNL DAAC MODIS/VIIRS Land Product Subsets, as the MODISTools R package writes them.

Layouts (ORNL DAAC "MODIS and VIIRS Land Products Fixed Sites Subsetting and Visualization Tool"
web service documentation; MODISTools ``mt_subset``, CRAN 1.1; MODISTools 1.0 ``mt_write``):

* today's long table, one row per band, date and pixel, 21 columns: ``xllcorner, yllcorner,
  cellsize, nrows, ncols, band, units, scale, latitude, longitude, site, product, start, end,
  complete, modis_date, calendar_date, tile, proc_date, pixel, value``;
* MODISTools 1.0: ``# key: value`` header lines (the same ``xllcorner ... complete`` fields) and
  then ``modis_date, calendar_date, band, tile, proc_date, pixel, data``.

Values are the stored integers; ``scale`` is the band's scale factor (or text such as "Not
Available" for QC bands); ``pixel`` numbers the ``nrows x ncols`` window around the requested
point row by row; ``calendar_date`` is the composite's first day. ``latitude``/``longitude`` are the
requested point, ``site`` the site id or name given to the service.

Reading: the product column must be in the catalog; the central ``window x window`` pixels are
kept (window odd and at most the subset's size), each decoded with the scale of the file (else the
catalog's) and the catalog's fill, valid range and QC rule; the window's good pixels are reduced
later, with the other sources of the site (median per date).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.data.products import catalog
from ciml_ter.errors import InputError

from .series import (Extract, Locations, Series, check_raw, layer_columns, locations_of, physical, product_rank,
                     provenance, qc_keep, qc_words, read_columns)

LONG = ("xllcorner", "yllcorner", "cellsize", "nrows", "ncols", "band", "units", "scale", "latitude",
        "longitude", "site", "product", "start", "end", "complete", "modis_date", "calendar_date", "tile",
        "proc_date", "pixel", "value")
V1_TABLE = ("modis_date", "calendar_date", "band", "tile", "proc_date", "pixel", "data")
V1_HEADER = ("nrows", "ncols", "latitude", "longitude", "site", "product", "band", "scale")
FORMAT = "ORNL DAAC subset"


def recognise_long(header: list[str]) -> bool:
    """Today's 21-column ``mt_subset`` table."""
    return all(c in header for c in LONG)


def recognise_v1(comments: dict, header: list[str]) -> bool:
    """The MODISTools 1.0 layout: ``# key: value`` lines then the 7-column table."""
    return "product" in comments and all(c in header for c in V1_TABLE)


def _scale(text) -> float:
    """A scale factor from the file's text, NaN where it gives none ("Not Available", "")."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return np.nan
    return value if np.isfinite(value) and value > 0 else np.nan


def _table_long(path: Path) -> pd.DataFrame:
    cols = {"nrows": "float", "ncols": "float", "band": "text", "scale": "text", "latitude": "float",
            "longitude": "float", "site": "text", "product": "text", "calendar_date": "date",
            "pixel": "float", "value": "float"}
    return pd.DataFrame(read_columns(path, cols))


def _table_v1(path: Path, comments: dict, skip: int) -> pd.DataFrame:
    missing = [k for k in V1_HEADER if k not in comments]
    if missing:
        raise InputError(f"{path}: MODISTools 1.0 header lacks '# {missing[0]}: ...' (expected lines "
                         f"for {', '.join(V1_HEADER)})")
    data = read_columns(path, {"band": "text", "calendar_date": "date", "pixel": "float", "data": "float"},
                        skip_rows=skip)
    frame = pd.DataFrame(data).rename(columns={"data": "value"})
    for key in ("nrows", "ncols", "latitude", "longitude"):
        try:
            frame[key] = float(comments[key])
        except ValueError:
            raise InputError(f"{path}: header '# {key}: {comments[key]}': expected a number") from None
    frame["site"], frame["product"] = comments["site"], comments["product"]
    frame["scale"] = np.where(frame["band"] == comments["band"], comments["scale"], "")
    return frame


def _window_pixels(frame: pd.DataFrame, window: int, path: Path) -> pd.DataFrame:
    """Rows of the central ``window x window`` pixels of each subset."""
    nrows, ncols = frame["nrows"].to_numpy(), frame["ncols"].to_numpy()
    size = np.minimum(nrows, ncols)
    if np.any(nrows % 2 == 0) or np.any(ncols % 2 == 0):
        raise InputError(f"{path}: a subset of {int(nrows[0])} x {int(ncols[0])} pixels has no centre "
                         f"pixel; expected odd nrows and ncols")
    if np.any(window > size):
        raise InputError(f"{path}: --points-window {window} is larger than the subset's "
                         f"{int(nrows[np.argmin(size)])} x {int(ncols[np.argmin(size)])} pixels")
    pixel = frame["pixel"].to_numpy() - 1
    if np.any(pixel < 0) or np.any(pixel >= nrows * ncols):
        raise InputError(f"{path}: column 'pixel': expected 1 to nrows x ncols, found "
                         f"{int(pixel[(pixel < 0) | (pixel >= nrows * ncols)][0]) + 1}")
    row, col = pixel // ncols, pixel % ncols
    half = window // 2
    inside = (np.abs(row - nrows // 2) <= half) & (np.abs(col - ncols // 2) <= half)
    return frame[inside]


def read(path: Path, frame: pd.DataFrame, product_name: str, window: int) -> Extract:
    """Decode the catalog layers of one product's rows of a subset table (``frame`` from
    ``tables``)."""
    product = catalog.product_for(product_name)
    bands = {catalog.layer_key(b): b for b in frame["band"].unique()}
    found = layer_columns(product, lambda names: next((bands[n] for n in names if n in bands), None), path)
    if not found:
        return Extract(path, FORMAT, product_name, Locations([], [], np.array([]), np.array([])))
    frame = _window_pixels(frame, window, path)
    locations, point = locations_of(frame["site"].astype(str).to_numpy(), np.full(len(frame), ""),
                                    frame["latitude"].to_numpy(), frame["longitude"].to_numpy())
    frame = frame.assign(point=point)
    extract = Extract(path, FORMAT, product_name, locations)
    rank = product_rank(product, product_name)
    on = ["point", "calendar_date", "pixel"]
    for var, (layer, band, qc_band) in found.items():
        rows = frame[frame["band"] == band]
        if rows.duplicated(on).any():
            raise InputError(f"{path}: band {band!r} has two values for one site, date and pixel")
        if qc_band is not None:
            qc = frame.loc[frame["band"] == qc_band, [*on, "value"]].rename(columns={"value": "qc"})
            rows = rows.merge(qc, on=on, how="left")
        scales = rows["scale"].map(_scale).to_numpy(dtype=np.float64)
        given = np.unique(scales[np.isfinite(scales)])
        if given.size > 1:
            raise InputError(f"{path}: band {band!r} has several scale factors ({', '.join(map(str, given))})")
        scale = float(given[0]) if given.size else None
        keep = None if qc_band is None else qc_keep(layer.qc, qc_words(rows["qc"].to_numpy(), path, qc_band))
        raw = check_raw(rows["value"].to_numpy(), path, f"value ({band})")
        extract.series.append(Series(var, product.time_dim, product_name, rank, rows["point"].to_numpy(np.int64),
                                     rows["calendar_date"].to_numpy().astype("datetime64[D]"),
                                     physical(layer, raw, keep, scale)))
        extract.layers[var] = provenance(layer, band, scale)
    return extract


def tables(path: Path, header: list[str], comments: dict, skip: int) -> pd.DataFrame:
    """The subset rows of either layout, one column per field."""
    return _table_long(path) if recognise_long(header) else _table_v1(path, comments, skip)
