"""Point-extract files in the layouts of their documentation, for the tests.

* AppEEARS point sample (AppEEARS API / user guide; public request outputs):
  ``<request>-<PRODUCT>-<VVV>-results.csv`` with ``Category, ID, Latitude, Longitude, Date,
  MODIS_Tile``, line/sample as floats, each layer as ``<PRODUCT>_<VVV>_<layer>`` with scaled values
  (float32 products written with 10 significant digits) and fills unscaled (``32767.0``), each QC
  layer as floats (``65.0``) followed by AppEEARS' decoded columns (``_bitmask`` = ``0b...``,
  ``_MODLAND``, ``_MODLAND_Description``; VI Quality also ``_Land/Water_Mask``).
* ORNL DAAC subsets as MODISTools writes them: ``mt_subset`` (21 columns, one row per band, date
  and pixel) and the 1.0 layout (``# key: value`` lines, then ``modis_date, calendar_date, band,
  tile, proc_date, pixel, data``). Values are the stored integers, ``scale`` the band's factor.
* Earth Engine ``Export.table`` of ``sampleRegions``: ``system:index`` (``<image id>_<n>``), the
  bands' stored integers, the site property and ``.geo``.
* The long CSV ``site, date, variable, value, units``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

TILE = "h18v04"


def _dates(dates) -> list[str]:
    return [pd.Timestamp(d).strftime("%Y-%m-%d") for d in dates]


def scaled_text(raw: float, scale: float, fill) -> str:
    """A value as AppEEARS writes it: float32 raw x scale with 10 significant digits; NaN for a
    missing value; the fill unscaled with one decimal (``32767.0``)."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return "NaN"
    if fill is not None and raw == fill:
        return f"{float(fill):.1f}"
    return f"{float(np.float32(raw) * np.float32(scale)):.10g}"


def appeears(folder: Path, request: str, product: str, version: str, points: list[tuple], dates,
             layers: dict, qc: dict, scales: dict, fills: dict, bitmask_only: bool = False) -> Path:
    """Write an AppEEARS results CSV. ``points``: (ID, Category, lat, lon); ``layers``: AppEEARS
    layer name -> raw integers (points x dates); ``qc``: QC layer name -> QC words (points x
    dates); ``scales``/``fills``: per layer. ``bitmask_only`` leaves out the raw QC columns."""
    prefix = f"{product}_{version}_"
    res = "500m"
    header = ["Category", "ID", "Latitude", "Longitude", "Date", "MODIS_Tile", f"{prefix}Line_Y_{res}",
              f"{prefix}Sample_X_{res}"]
    header += [prefix + name for name in layers]
    if not bitmask_only:
        header += [prefix + name for name in qc]
    for name in qc:
        header += [f"{prefix}{name}_bitmask", f"{prefix}{name}_MODLAND", f"{prefix}{name}_MODLAND_Description"]
        if "VI_Quality" in name:
            header += [f"{prefix}{name}_Land/Water_Mask", f"{prefix}{name}_Land/Water_Mask_Description"]
    path = Path(folder) / f"{request}-{product}-{version}-results.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, (pid, category, lat, lon) in enumerate(points):
            for t, day in enumerate(_dates(dates)):
                row = [category, pid, f"{lat:.4f}", f"{lon:.4f}", day, TILE, f"{1790 + i:.1f}", "1637.0"]
                row += [scaled_text(float(v[i, t]), scales[n], fills[n]) for n, v in layers.items()]
                words = {n: int(v[i, t]) for n, v in qc.items()}
                if not bitmask_only:
                    row += [f"{w_:.1f}" for w_ in words.values()]
                for n, w_ in words.items():
                    bits = 16 if "VI_Quality" in n else 8
                    row += [f"0b{w_:0{bits}b}", f"0b{w_ & 3:02b}",
                            "LST produced, good quality, not necessary to examine more detailed QA"]
                    if "VI_Quality" in n:
                        row += [f"0b{(w_ >> 11) & 7:03b}", "Land (Nothing else but land)"]
                w.writerow(row)
    return path


def ornl_long(path: Path, product: str, site: str, lat: float, lon: float, dates, nrows: int, ncols: int,
              bands: dict) -> Path:
    """An ``mt_subset`` table. ``bands``: name -> (units, scale text, values (dates x pixels))."""
    cols = ["xllcorner", "yllcorner", "cellsize", "nrows", "ncols", "band", "units", "scale", "latitude",
            "longitude", "site", "product", "start", "end", "complete", "modis_date", "calendar_date", "tile",
            "proc_date", "pixel", "value"]
    days = _dates(dates)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for band, (units, scale, values) in bands.items():
            for p in range(nrows * ncols):
                for t, day in enumerate(days):
                    doy = pd.Timestamp(day).day_of_year
                    w.writerow(["-7124447.41", "5559752.6", "463.312716528", nrows, ncols, band, units, scale,
                                lat, lon, site, product, days[0], days[-1], "TRUE",
                                f"A{day[:4]}{doy:03d}", day, TILE, "2020001000000", p + 1, int(values[t, p])])
    return Path(path)


def ornl_v1(path: Path, product: str, band: str, scale: str, site: str, lat: float, lon: float, dates,
            nrows: int, ncols: int, values: np.ndarray, table_bands: dict | None = None) -> Path:
    """A MODISTools 1.0 file: ``# key: value`` lines, then the 7-column table (pixels gathered:
    all dates of pixel 1, then pixel 2 ...). ``table_bands``: more bands in the table (name ->
    values) beside ``band``, as a subset of several bands."""
    days = _dates(dates)
    header = {"xllcorner": "-7124447.41", "yllcorner": "5559752.6", "cellsize": "463.312716528",
              "nrows": nrows, "ncols": ncols, "band": band, "units": "m^2/m^2", "scale": scale,
              "latitude": lat, "longitude": lon, "site": site, "product": product, "start": days[0],
              "end": days[-1], "complete": "TRUE"}
    with open(path, "w", newline="") as f:
        for key, value in header.items():
            f.write(f"# {key}: {value}\n")
        w = csv.writer(f)
        w.writerow(["modis_date", "calendar_date", "band", "tile", "proc_date", "pixel", "data"])
        for name, vals in {band: values, **(table_bands or {})}.items():
            for p in range(nrows * ncols):
                for t, day in enumerate(days):
                    doy = pd.Timestamp(day).day_of_year
                    w.writerow([f"A{day[:4]}{doy:03d}", day, name, TILE, "2020001000000", p + 1, int(vals[t, p])])
    return Path(path)


def earth_engine(path: Path, sites: list[tuple], dates, bands: dict, site_column: str | None = "site",
                 date_column: bool = False, geo: bool = True) -> Path:
    """A ``sampleRegions`` table export. ``sites``: (name, lat, lon); ``bands``: band -> stored
    integers (sites x dates), NaN = masked (empty cell)."""
    rows = []
    for i, (name, lat, lon) in enumerate(sites):
        for t, day in enumerate(_dates(dates)):
            row = {"system:index": f"{day.replace('-', '_')}_{i}"}
            row.update({b: ("" if np.isnan(v[i, t]) else (int(v[i, t]) if v[i, t] == int(v[i, t]) else v[i, t]))
                        for b, v in bands.items()})
            if site_column:
                row[site_column] = name
            if date_column:
                row["date"] = day
            if geo:
                row[".geo"] = json.dumps({"type": "Point", "coordinates": [lon, lat]})
            rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return Path(path)


def long_csv(path: Path, rows: list[tuple], with_coordinates: dict | None = None) -> Path:
    """The long CSV: rows of (site, date or "", variable, value, units); ``with_coordinates``:
    site -> (lat, lon) adds the optional columns."""
    frame = pd.DataFrame(rows, columns=["site", "date", "variable", "value", "units"])
    if with_coordinates:
        frame["lat"] = frame["site"].map(lambda s: with_coordinates[s][0])
        frame["lon"] = frame["site"].map(lambda s: with_coordinates[s][1])
    frame.to_csv(path, index=False)
    return Path(path)


def abcflux(path: Path, sites: list[tuple], months) -> Path:
    """An ABCflux CSV with monthly reco (g C m-2 month-1) for ``sites`` (name, lat, lon)."""
    rows = []
    for k, (name, lat, lon) in enumerate(sites):
        for m in pd.DatetimeIndex(months):
            rows.append({"site_name": name, "latitude": lat, "longitude": lon, "year": m.year,
                         "month": m.month, "reco": 20 + 5 * k + 10 * np.sin(m.month / 2)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return Path(path)
