"""Point extracts -> a contract cube whose pixels are the towers, for the feature code.

Matching: a location of an extract belongs to the tower whose site id equals its name (AppEEARS
ID, ORNL site, Earth Engine site column, long-CSV site), else its alias (AppEEARS Category), else
to the nearest tower within ``tolerance_km`` (great-circle distance on a sphere of radius
EARTH_RADIUS_KM). Several locations (a window of ORNL pixels, several AppEEARS points) may
belong to one tower; a location belonging to none is listed.

Reduction: per tower, variable, source and date the median of the good values (fill and QC
rejects are NaN and left out); then, as ``ingest`` merges sources, the finer product's value is
kept and the next source fills only its gaps (native resolution, then short name; the long CSV
last). Axes, as in an ingested cube: each variable on its product's time dimension
(``catalog.TIME_DIMS``: daily and 16-day products on the daily axis ``time``, 8-day on ``time8``,
4-day on ``time4``; long-CSV variables on the daily axis or their own dates). The daily axis holds
every day from the first to the last date of the extracts (a day without a value is NaN, as a
cloudy day), so 16-day composites sit on it at their first day. Variables no extract gives are
NaN; ``land`` is 1: the towers are land pixels.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter.data.contract import REQUIRED, RULES, require_contract
from ciml_ter.errors import InputError

from .extracts import PointFiles
from .series import Locations

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
MATCH_KM = 1.0  # default tolerance of matching by coordinates: about one 1 km LST pixel
DAILY = "time"


@dataclass
class PointCube:
    """The towers' input cube (dims time..., lat = 1, lon = towers) and what built it."""

    ds: xr.Dataset
    sites: list[str]  # the towers with points, in ``lon`` order
    matched: dict = field(default_factory=dict)  # site -> how its points were matched
    unmatched: list = field(default_factory=list)  # "location (file)" of points without a tower
    without_points: list = field(default_factory=list)  # towers no point belongs to
    missing: dict = field(default_factory=dict)  # "input: reason" -> sites
    sources: dict = field(default_factory=dict)  # contract variable -> sources whose values it holds
    files: list = field(default_factory=list)  # per file: format, product, how each layer was decoded


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Haversine distance (km) between points given in degrees (broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin(np.radians(np.asarray(lon2) - np.asarray(lon1)) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def match_locations(locations: Locations, sites: list[str], lat: np.ndarray, lon: np.ndarray,
                    tolerance_km: float) -> tuple[np.ndarray, list[str]]:
    """Tower index of each location (-1: none) and how it was found ("id", "alias", "N km")."""
    index = {s: k for k, s in enumerate(sites)}
    tower = np.full(len(locations), -1, dtype=np.int64)
    how = [""] * len(locations)
    for i in range(len(locations)):
        if locations.names[i] in index:
            tower[i], how[i] = index[locations.names[i]], "id"
        elif locations.aliases[i] in index:
            tower[i], how[i] = index[locations.aliases[i]], "alias"
        elif np.isfinite(locations.lat[i]) and np.isfinite(locations.lon[i]) and len(sites):
            d = great_circle_km(locations.lat[i], locations.lon[i], lat, lon)
            k = int(np.nanargmin(d)) if np.isfinite(d).any() else -1
            if k >= 0 and d[k] <= tolerance_km:
                tower[i], how[i] = k, f"{d[k]:.2f} km"
    return tower, how


def _dims(files: PointFiles) -> dict:
    """The time dimension of each variable; products must agree (ingest's rule), the long CSV
    takes the products' dimension."""
    dims: dict = {}
    for extract in files.extracts:
        for s in extract.series:
            if s.rank[0] == np.inf:
                continue
            if dims.setdefault(s.var, s.dim) != s.dim:
                raise InputError(f"{extract.path}: gives {s.var!r} on time dimension {s.dim!r}, but another "
                                 f"extract gives it on {dims[s.var]!r} (one time step per variable: drop one)")
    for extract in files.extracts:
        for s in extract.series:
            dims.setdefault(s.var, s.dim)
    return dims


def _reduce(tower: np.ndarray, date: np.ndarray, value: np.ndarray) -> pd.Series:
    """Median of the finite values per (tower, date), indexed by (tower, date); NaN where none."""
    day = date.astype("datetime64[D]").astype(np.int64)
    key = tower * np.int64(1 << 32) + (day - np.int64(-(1 << 31)))
    s = pd.Series(value.astype(np.float64), index=key)
    if s.index.has_duplicates:
        s = s.groupby(level=0, sort=False).median()
    return s


def _unkey(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tower = key // np.int64(1 << 32)
    day = key - tower * np.int64(1 << 32) + np.int64(-(1 << 31))
    return tower, day.astype("datetime64[D]")


def point_cube(files: PointFiles, towers: pd.DataFrame, tolerance_km: float = MATCH_KM) -> PointCube:
    """The towers' cube from the extracts. ``towers``: one row per site with ``site, lat, lon``."""
    sites = [str(s) for s in towers["site"]]
    lat, lon = towers["lat"].to_numpy(np.float64), towers["lon"].to_numpy(np.float64)
    dims = _dims(files)
    per_var = defaultdict(list)  # var -> [(rank, source, reduced series)]
    matched: dict = {}
    unmatched: list = []
    described = []
    for extract in files.extracts:
        tower, how = match_locations(extract.locations, sites, lat, lon, tolerance_km)
        for i in np.flatnonzero(tower < 0):
            unmatched.append(f"{extract.locations.label(int(i))} ({extract.path.name})")
        for i in np.flatnonzero(tower >= 0):
            matched.setdefault(sites[tower[i]], set()).add(how[i])
        described.append({"file": str(extract.path), "format": extract.fmt, "product": extract.product,
                          "layers": extract.layers})
        for s in extract.series:
            t = tower[s.point]
            inside = t >= 0
            if s.dim is None:
                date = np.zeros(int(inside.sum()), dtype="datetime64[D]")
            else:
                date = s.date[inside]
            per_var[s.var].append((s.rank, s.source, _reduce(t[inside], date, s.value[inside])))
    used = sorted(matched)
    if not used:
        raise InputError(f"no point extract matches a tower by id, name or coordinates (within "
                         f"{tolerance_km:g} km): towers {', '.join(sites[:10])}; points "
                         f"{', '.join(unmatched[:10])}")
    order = {s: k for k, s in enumerate(used)}
    remap = np.array([order.get(s, -1) for s in sites], dtype=np.int64)
    merged, sources = {}, {}
    for var, parts in per_var.items():
        parts.sort(key=lambda p: p[0])
        combined, names = None, []
        for _rank, source, series in parts:
            before = 0 if combined is None else int(combined.notna().sum())
            combined = series if combined is None else combined.combine_first(series)
            if int(combined.notna().sum()) > before and source not in names:
                names.append(source)
        merged[var] = combined
        sources[var] = names
    ds = _dataset(merged, dims, remap, used)
    require_contract(ds, "point extracts")
    return PointCube(ds, used, {s: sorted(v) for s, v in matched.items()}, unmatched,
                     [s for s in sites if s not in matched], _missing(merged, sites, used), sources, described)


def _dataset(merged: dict, dims: dict, remap: np.ndarray, used: list[str]) -> xr.Dataset:
    n = len(used)
    dated = {var: _unkey(s.index.to_numpy()) for var, s in merged.items() if dims[var] is not None}
    days = np.concatenate([d for _t, d in dated.values()]) if dated else np.array([], "datetime64[D]")
    if days.size == 0:
        raise InputError("the point extracts hold no dated value for a tower")
    axes = {DAILY: np.arange(days.min(), days.max() + 1)}
    for var, (_t, d) in dated.items():
        if dims[var] != DAILY:
            axes[dims[var]] = np.union1d(axes.get(dims[var], np.array([], "datetime64[D]")), d)
    data = {}
    for var, rule in RULES.items():
        if var in ("pft", "land") or (var in ("nirv", "lswi") and var not in merged):
            continue
        attrs = {"units": rule.canonical}
        if rule.static:
            values = np.full((1, n), np.nan, dtype=np.float32)
            if var in merged:
                tower, _ = _unkey(merged[var].index.to_numpy())
                values[0, remap[tower]] = merged[var].to_numpy(np.float32)
            data[var] = (("lat", "lon"), values, attrs)
            continue
        dim = dims.get(var) or DAILY
        axis = axes[dim]
        values = np.full((axis.size, 1, n), np.nan, dtype=np.float32)
        if var in merged:
            tower, day = dated[var]
            values[np.searchsorted(axis, day), 0, remap[tower]] = merged[var].to_numpy(np.float32)
        data[var] = ((dim, "lat", "lon"), values, attrs)
    data["land"] = (("lat", "lon"), np.ones((1, n), dtype=np.uint8), {"units": "1"})
    coords = {dim: axis.astype("datetime64[ns]") for dim, axis in axes.items()}
    # The towers sit side by side on a nominal regular row (the contract's grid checks hold).
    coords.update(lat=[0.0], lon=-180.0 + (np.arange(n) + 0.5) * (360.0 / n), site=("lon", used))
    return xr.Dataset(data, coords=coords)


def _label(alternatives) -> str:
    return " or ".join("(" + ", ".join(a) + ")" if len(a) > 1 else a[0] for a in alternatives)


def _missing(merged: dict, sites: list[str], used: list[str]) -> dict:
    """Per predictor input (the contract's alternatives) and reason, the towers that lack it:
    no value at all in the extracts, or only fill / QC-rejected values."""
    given, valid = {}, {}
    for var, series in merged.items():
        tower, _ = _unkey(series.index.to_numpy())
        given[var] = {sites[t] for t in np.unique(tower)}
        valid[var] = {sites[t] for t in np.unique(tower[series.notna().to_numpy()])}
    out = defaultdict(list)
    for alternatives in REQUIRED:
        if alternatives == (("land",),):
            continue
        for site in used:
            if any(all(site in valid.get(v, ()) for v in alt) for alt in alternatives):
                continue
            some = any(all(site in given.get(v, ()) for v in alt) for alt in alternatives)
            reason = "every value fill or rejected by QC" if some else "absent from the point extracts"
            out[f"{_label(alternatives)}: {reason}"].append(site)
    return dict(out)
