"""The gridded input contract (docs/architecture.md, "Input contract"): variables, dims, grid, units, ranges.

``check_cube`` collects every problem before raising, so a user sees them all at once (a time
dimension that repeats a date is one); ``in_time_order`` sorts time dimensions that are out of
order, with a note; ``canonical_units`` converts accepted units (e.g. LST in degC) to the
canonical ones. ``TER_RANGE`` is the plausible range of the target, monthly TER at a tower, which
the flux readers check as this table checks the predictors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter.errors import InputError
from ciml_ter.units import AREA_RATIO, FRACTION, KELVIN, ONE, SOIL_CARBON


@dataclass(frozen=True)
class VariableRule:
    """Canonical unit, accepted units as {unit: (scale, offset)} to canonical, plausible range."""

    canonical: str
    accepted: dict
    valid_range: tuple[float, float]
    static: bool = False
    needs_units: bool = True


RULES: dict[str, VariableRule] = {
    "nir": VariableRule("1", ONE, (-0.5, 1.5)),
    "red": VariableRule("1", ONE, (-0.5, 1.5)),
    "swir1": VariableRule("1", ONE, (-0.5, 1.5)),
    "nirv": VariableRule("1", ONE, (-1.0, 1.0)),
    "lswi": VariableRule("1", ONE, (-1.0, 1.0)),
    "lst_day": VariableRule("K", KELVIN, (150.0, 380.0)),
    "lst_night": VariableRule("K", KELVIN, (150.0, 380.0)),
    "lai": VariableRule("m2 m-2", AREA_RATIO, (0.0, 15.0)),
    "ci": VariableRule("1", FRACTION, (0.0, 1.0)),
    "pv": VariableRule("1", FRACTION, (0.0, 1.0)),
    "npv": VariableRule("1", FRACTION, (0.0, 1.0)),
    "bs": VariableRule("1", FRACTION, (0.0, 1.0)),
    "soc0": VariableRule("g kg-1", SOIL_CARBON, (0.0, 1000.0), static=True),
    "soc10": VariableRule("g kg-1", SOIL_CARBON, (0.0, 1000.0), static=True),
    "soc30": VariableRule("g kg-1", SOIL_CARBON, (0.0, 1000.0), static=True),
    "land": VariableRule("1", ONE, (0.0, 1.0), static=True, needs_units=False),
    "pft": VariableRule("1", ONE, (0.0, 255.0), static=True, needs_units=False),
}
# Each entry: one of these alternatives must be present.
REQUIRED = ((("nirv",), ("nir", "red")), (("lswi",), ("nir", "swir1")), (("lst_day",),),
            (("lst_night",),), (("lai",),), (("ci",),), (("pv",),), (("npv",),), (("bs",),),
            (("soc0",),), (("soc10",),), (("soc30",),), (("land",),))
RANGE_SAMPLE = 200_000  # values read per variable for the range check
MAX_OUT_OF_RANGE = 0.01  # share of sampled values allowed outside the plausible range
# Monthly TER at a tower, g C m-2 month-1 (units.TER_UNITS): respiration is not negative, and the
# largest monthly value of the 20 FLUXNET2015 sample sites is 606 (AU-Tum, 19.5 g C m-2 d-1);
# 1000 is 32 g C m-2 d-1 for a whole month. Daily values taken as monthly ones (x 30) or a sign
# flip put far more than MAX_OUT_OF_RANGE of a site's months outside.
TER_RANGE = (0.0, 1000.0)


def _grid_problems(ds: xr.Dataset, name: str) -> list[str]:
    problems = []
    for dim, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
        if dim not in ds.coords:
            problems.append(f"{name}: missing coordinate '{dim}' (dims found: {', '.join(map(str, ds.dims))})")
            continue
        values = np.asarray(ds[dim].values, dtype=float)
        if values.size >= 2:
            step = np.diff(values)
            if np.any(step == 0) or not np.allclose(step, step[0], rtol=1e-6, atol=1e-9):
                problems.append(f"{name}: '{dim}' is not a regular grid (spacing from {step.min():.6g} "
                                f"to {step.max():.6g} degrees; expected one constant spacing)")
        upper_ok = values.max() < hi if dim == "lon" else values.max() <= hi
        if values.size and (values.min() < lo or not upper_ok):
            interval = "[-180, 180)" if dim == "lon" else "[-90, 90]"
            problems.append(f"{name}: '{dim}' values span [{values.min():g}, {values.max():g}]; "
                            f"expected within {interval}")
    return problems


def sample_values(da: xr.DataArray) -> np.ndarray:
    """Up to about RANGE_SAMPLE values of ``da``, strided evenly over every dimension."""
    stride = max(1, int(np.ceil((da.size / RANGE_SAMPLE) ** (1 / max(da.ndim, 1)))))
    return np.asarray(da[tuple(slice(None, None, stride) for _ in da.dims)].values, dtype=float)


def _variable_problems(ds: xr.Dataset, name: str, var: str, rule: VariableRule) -> list[str]:
    da = ds[var]
    spatial = ("lat", "lon")
    if tuple(da.dims[-2:]) != spatial:
        return [f"{name}: variable '{var}' has dims {da.dims}; expected (..., lat, lon)"]
    if rule.static and da.ndim != 2 and var != "pft":
        return [f"{name}: variable '{var}' should be static (lat, lon); found dims {da.dims}"]
    if not rule.static:
        if da.ndim != 3 or not np.issubdtype(ds[da.dims[0]].dtype, np.datetime64):
            return [f"{name}: variable '{var}' has dims {da.dims}; expected (time, lat, lon) with a "
                    f"datetime time coordinate"]
    units = da.attrs.get("units")
    if units is None and rule.needs_units:
        return [f"{name}: variable '{var}' has no 'units' attribute; expected '{rule.canonical}' "
                f"(accepted: {', '.join(repr(u) for u in rule.accepted)})"]
    if units is not None and str(units).strip() not in rule.accepted:
        return [f"{name}: variable '{var}' has units {units!r}; accepted: "
                f"{', '.join(repr(u) for u in rule.accepted)}"]
    scale, offset = rule.accepted.get(str(units).strip() if units is not None else "1", (1.0, 0.0))
    values = sample_values(da) * scale + offset
    values = values[np.isfinite(values)]
    lo, hi = rule.valid_range
    if values.size:
        outside = np.mean((values < lo) | (values > hi))
        if outside > MAX_OUT_OF_RANGE:
            return [f"{name}: variable '{var}': {outside:.1%} of sampled values outside the plausible "
                    f"range [{lo:g}, {hi:g}] {rule.canonical} (found {values.min():.4g} to "
                    f"{values.max():.4g} after converting from {units!r}); check the units"]
    return []


def _time_problems(ds: xr.Dataset, name: str) -> list[str]:
    """A time dimension that repeats a date: two values for one date, of which none can be
    told to be the right one (so none is chosen)."""
    problems = []
    for dim in _time_dims(ds):
        times = pd.DatetimeIndex(ds[dim].values)
        repeated = times[times.duplicated()].unique()
        if len(repeated):
            shown = ", ".join(f"{t:%Y-%m-%d}" for t in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
            problems.append(f"{name}: time dimension '{dim}' repeats {len(repeated)} date(s) ({shown}); expected "
                            "one value per date: remove the repeated dates")
    return problems


def _time_dims(ds: xr.Dataset) -> list[str]:
    return [str(d) for d in ds.dims if d in ds.coords and np.issubdtype(ds[d].dtype, np.datetime64)]


def in_time_order(ds: xr.Dataset, name: str) -> tuple[xr.Dataset, list[str]]:
    """``ds`` with every time dimension in increasing order, and one note per dimension that had
    to be sorted (a store extended with earlier dates is out of order; medians, seasonality and
    SCVTG need the days in order)."""
    notes = []
    for dim in _time_dims(ds):
        times = pd.DatetimeIndex(ds[dim].values)
        if not times.is_monotonic_increasing:
            moved = int(np.sum(np.argsort(times.values, kind="stable") != np.arange(len(times))))
            ds = ds.sortby(dim)
            notes.append(f"{name}: time dimension '{dim}' was not in order ({moved} of {len(times)} dates out of "
                         "place); sorted by date")
    return ds, notes


def check_cube(ds: xr.Dataset, name: str = "cube") -> list[str]:
    """Every contract problem of ``ds`` (an empty list when it complies)."""
    problems = _grid_problems(ds, name) + _time_problems(ds, name)
    for alternatives in REQUIRED:
        if not any(all(v in ds.data_vars for v in alt) for alt in alternatives):
            wanted = " or ".join("(" + ", ".join(alt) + ")" if len(alt) > 1 else alt[0]
                                 for alt in alternatives)
            problems.append(f"{name}: missing variable {wanted}")
    if problems and any("coordinate" in p for p in problems):
        return problems
    for var, rule in RULES.items():
        if var in ds.data_vars:
            problems.extend(_variable_problems(ds, name, var, rule))
    return problems


def require_contract(ds: xr.Dataset, name: str) -> None:
    """Raise InputError with every contract problem, on one line (the CLI's ``error:`` line): the
    problem itself when there is one, else their count and the problems separated by " | "."""
    problems = check_cube(ds, name)
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError(f"{name}: {len(problems)} problems with the input contract: " + " | ".join(problems))


def canonical_units(da: xr.DataArray, var: str) -> xr.DataArray:
    """``da`` converted to the canonical unit of ``var`` (units attribute updated)."""
    rule = RULES[var]
    units = str(da.attrs.get("units", rule.canonical)).strip()
    scale, offset = rule.accepted[units]
    if (scale, offset) == (1.0, 0.0):
        return da
    out = da * scale + offset
    out.attrs = {**da.attrs, "units": rule.canonical}
    return out
