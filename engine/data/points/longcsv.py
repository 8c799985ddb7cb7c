"""The documented long CSV, for any predictor input the products do not give (SOC, clumping
index, cover fractions, or values prepared elsewhere).

Layout: header ``site, date, variable, value, units`` and optionally ``lat, lon`` (degrees, for
matching by coordinates); one row per site, date and variable. ``variable`` is a contract name
(``lst_day``, ``nir``, ``lai``, ``ci``, ``soc0`` ...; DESIGN.md section 3), ``value`` a physical value
already quality-screened (empty = missing), ``units`` one the contract accepts for it (converted
to the canonical unit: e.g. degC -> K, % -> fraction), ``date`` YYYY-MM-DD (a composite's first
day), empty for the static variables (``soc0``, ``soc10``, ``soc30``).
Daily-axis variables (reflectances, NIRv, LSWI, LST) sit on the daily axis; the others on their
own dates, as ``ingest`` places dated rasters.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.data.contract import RULES
from ciml_ter.data.products.inventory import DAILY_VARS
from ciml_ter.errors import InputError

from .series import Extract, Series, locations_of, parse_dates, read_columns

COLUMNS = ("site", "date", "variable", "value", "units")
SOURCE = "long CSV"
FORMAT = "long CSV"
VARIABLES = tuple(v for v in RULES if v not in ("land", "pft"))


def recognise(header: list[str]) -> bool:
    """The long CSV: its five columns (plus optional lat, lon) and nothing else."""
    return set(COLUMNS) <= set(header) <= {*COLUMNS, "lat", "lon"}


def read(path: Path, header: list[str]) -> Extract:
    """Every row as a value of a contract variable in its canonical unit."""
    types = {"site": "text", "date": "text", "variable": "text", "value": "float", "units": "text"}
    if "lat" in header and "lon" in header:
        types.update(lat="float", lon="float")
    data = read_columns(path, types)
    frame = pd.DataFrame(data)
    n = len(frame)
    frame["units"] = frame["units"].fillna("").astype(str).str.strip()
    unknown = sorted(set(frame["variable"].dropna()) - set(VARIABLES))
    if unknown or frame["variable"].isna().any():
        found = unknown[0] if unknown else "an empty cell"
        raise InputError(f"{path}: column 'variable': expected contract names ({', '.join(VARIABLES)}), "
                         f"found {found!r}")
    lat = frame["lat"].to_numpy() if "lat" in frame else np.full(n, np.nan)
    lon = frame["lon"].to_numpy() if "lon" in frame else np.full(n, np.nan)
    locations, point = locations_of(frame["site"].fillna("").astype(str).to_numpy(), np.full(n, ""), lat, lon)
    extract = Extract(path, FORMAT, SOURCE, locations)
    for var, rows in frame.groupby("variable", sort=True):
        rule = RULES[var]
        bad = sorted(set(rows["units"]) - set(rule.accepted))
        if bad:
            raise InputError(f"{path}: variable {var!r} has units {bad[0]!r}; accepted: "
                             f"{', '.join(repr(u) for u in rule.accepted)}")
        scale = rows["units"].map({u: a for u, (a, _b) in rule.accepted.items()}).to_numpy(np.float64)
        offset = rows["units"].map({u: b for u, (_a, b) in rule.accepted.items()}).to_numpy(np.float64)
        value = (rows["value"].to_numpy(np.float64) * scale + offset).astype(np.float32)
        dated = rows["date"].notna().to_numpy()
        if rule.static and dated.any():
            raise InputError(f"{path}: variable {var!r} is static: expected an empty date, found "
                             f"{rows['date'][dated].iloc[0]!r}")
        if not rule.static and not dated.all():
            raise InputError(f"{path}: variable {var!r}: expected a date (YYYY-MM-DD) in every row, found "
                             f"an empty one (site {rows['site'][~dated].iloc[0]!r})")
        dates = (np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[D]") if rule.static
                 else parse_dates(rows["date"].to_numpy(), path, "date"))
        dim = None if rule.static else ("time" if var in DAILY_VARS else f"time_{var}")
        extract.series.append(Series(var, dim, SOURCE, (np.inf, SOURCE), point[rows.index.to_numpy()], dates,
                                     value))
        extract.layers[var] = {"layer": "value", "units": sorted(set(rows["units"])), "qc": "none (as given)"}
    return extract
