"""Grid statistics of TER cubes: driver contributions (paper eq. 3-5), regional means, the
latitude bands shared with evaluation, budgets and trends, regridding of other products, values
at site-months, binned SHAP dependence.

Arrays follow the cube layout: (time, lat, lon) for monthly fields, (lat, lon) for maps,
(feature, time, lat, lon) for SHAP stacks. NaN marks ocean or missing values.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter import kernels
from ciml_ter.units import G_PER_PG

TROPIC_EDGE = 23.5  # degrees, the tropics' edge of the latitude bands


def lat_bands(high_latitude: float = 60.0) -> list[tuple[str, float, float]]:
    """(name, south, north) latitude bands in degrees, the same for evaluation and analysis:
    south of the tropics, the tropics, the mid-latitudes up to ``high_latitude`` (the config's
    ``analysis.high_latitude``) and the high latitudes up to the pole."""
    edges = [-90.0, -TROPIC_EDGE, TROPIC_EDGE, float(high_latitude), 90.0]
    edges = sorted(set(edges))

    def name(v):
        return "0" if v == 0 else f"{abs(v):g}{'S' if v < 0 else 'N'}"

    return [(f"{name(a)}-{name(b)}", a, b) for a, b in zip(edges[:-1], edges[1:])]


def in_band(lat: np.ndarray, south: float, north: float) -> np.ndarray:
    """Which latitudes fall in [south, north) (the pole itself counts in the top band)."""
    lat = np.asarray(lat, dtype=np.float64)
    return (lat >= south) & ((lat < north) | ((north == 90.0) & (lat <= north)))


def driver_shares(shap: np.ndarray) -> np.ndarray:
    """Normalised mean |SHAP| per feature and pixel (paper eq. 3-5), shape (feature, lat, lon).

    ``shap``: (feature, time, lat, lon) SHAP values in g C m-2 month-1. For each pixel, the mean
    over time of |SHAP| per feature divided by its sum over features; the shares of a pixel sum
    to 1 (NaN where every feature's mean |SHAP| is 0 or missing).
    """
    with warnings.catch_warnings():  # ocean pixels: all NaN, "mean of empty slice" is expected
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_abs = np.nanmean(np.abs(shap), axis=1)
    total = mean_abs.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, mean_abs / total, np.nan)


def group_shares(shares: np.ndarray, features: list[str], groups: dict[str, list[str]]) -> dict:
    """Sum of feature shares per group: {group: (lat, lon)}; features outside every group are
    reported under "other" so the groups still sum to 1."""
    index = {f: i for i, f in enumerate(features)}
    out = {}
    grouped = set()
    for name, members in groups.items():
        present = [index[f] for f in members if f in index]
        grouped.update(present)
        out[name] = shares[present].sum(axis=0) if present else np.zeros(shares.shape[1:])
    rest = [i for i in range(len(features)) if i not in grouped]
    if rest:
        out["other"] = shares[rest].sum(axis=0)
    return out


def dominant(shares: np.ndarray) -> np.ndarray:
    """Index of the largest share per pixel (-1 where all shares are NaN), shape (lat, lon)."""
    valid = np.isfinite(shares).any(axis=0)
    filled = np.where(np.isfinite(shares), shares, -np.inf)
    return np.where(valid, filled.argmax(axis=0), -1)


def weighted_mean_se(values: np.ndarray, weights: np.ndarray, mask: np.ndarray | None = None):
    """Area-weighted mean of ``values`` over ``mask`` and its standard error.

    The standard error uses the effective sample size n_eff = (sum w)^2 / sum w^2:
    SE = sqrt(weighted variance / n_eff). Returns (mean, se, n) with n the pixels used.
    """
    ok = np.isfinite(values) & np.isfinite(weights) & (weights > 0)
    if mask is not None:
        ok &= mask.astype(bool)
    v, w = values[ok], weights[ok]
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = float(np.sum(w * v) / np.sum(w))
    if n == 1:
        return mean, float("nan"), 1
    variance = float(np.sum(w * (v - mean) ** 2) / np.sum(w))
    n_eff = float(np.sum(w) ** 2 / np.sum(w ** 2))
    return mean, float(np.sqrt(variance / n_eff)), n


def block_mean_regrid(field: np.ndarray, area: np.ndarray, factor: int) -> np.ndarray:
    """Area-weighted block mean of a (..., lat, lon) field onto a grid ``factor`` times coarser.

    ``area``: pixel areas (lat, lon) in m2 of the fine grid. NaN pixels are left out of their
    block; the area-weighted mean over valid pixels is conserved when every block is complete.
    """
    n_lat, n_lon = field.shape[-2:]
    if n_lat % factor or n_lon % factor:
        raise ValueError(f"grid {n_lat} x {n_lon} is not divisible by the factor {factor}")
    shape = field.shape[:-2] + (n_lat // factor, factor, n_lon // factor, factor)
    w = np.broadcast_to(area, field.shape) * np.isfinite(field)
    num = np.nansum((np.nan_to_num(field) * w).reshape(shape), axis=(-3, -1))
    den = w.reshape(shape).sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def bilinear_regrid(field: np.ndarray, lat: np.ndarray, lon: np.ndarray, new_lat: np.ndarray,
                    new_lon: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a (..., lat, lon) field to new cell centres (degrees).

    Latitudes may be ascending or descending; points outside the source grid become NaN.
    """
    if lat[0] > lat[-1]:
        lat, field = lat[::-1], field[..., ::-1, :]
    iy = np.interp(new_lat, lat, np.arange(lat.size), left=np.nan, right=np.nan)
    ix = np.interp(new_lon, lon, np.arange(lon.size), left=np.nan, right=np.nan)
    out = np.full(field.shape[:-2] + (new_lat.size, new_lon.size), np.nan)
    oky, okx = np.isfinite(iy), np.isfinite(ix)
    y, x = iy[oky], ix[okx]
    y0 = np.minimum(np.floor(y).astype(int), lat.size - 2) if lat.size > 1 else np.zeros_like(y, int)
    x0 = np.minimum(np.floor(x).astype(int), lon.size - 2) if lon.size > 1 else np.zeros_like(x, int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    f = field
    v = ((1 - fy) * (1 - fx) * f[..., y0[:, None], x0[None, :]]
         + (1 - fy) * fx * f[..., y0[:, None], x0[None, :] + 1]
         + fy * (1 - fx) * f[..., y0[:, None] + 1, x0[None, :]]
         + fy * fx * f[..., y0[:, None] + 1, x0[None, :] + 1])
    out[..., np.flatnonzero(oky)[:, None], np.flatnonzero(okx)[None, :]] = v
    return out


# --------------------------------------------------------------------------- budgets and trends


def annual_totals(monthly: np.ndarray, years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of each complete year's 12 months per pixel: (years, lat, lon) in units x month.

    ``monthly``: (time, lat, lon); ``years``: (time,) year of each month. A year with fewer than
    12 months is left out; a pixel missing any month of a year is NaN that year.
    """
    kept = [y for y in np.unique(years) if np.sum(years == y) == 12]
    totals = np.stack([monthly[years == y].sum(axis=0) for y in kept]) if kept else \
        np.empty((0,) + monthly.shape[1:])
    return np.asarray(kept), totals


def budget(field: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Area integral over land pixels in Pg C of a (..., lat, lon) field in g C m-2 (NaN skipped)."""
    return np.nansum(field * area, axis=(-2, -1)) / G_PER_PG


def trend_maps(totals: np.ndarray, p_threshold: float) -> dict:
    """Per-pixel Mann-Kendall / Theil-Sen on annual totals (years, lat, lon): slope (units of
    totals per year), p, tau and the significance mask (p < p_threshold, finite slope)."""
    result = kernels.mann_kendall_theil_sen(totals.astype(np.float64))
    significant = (result.p < p_threshold) & np.isfinite(result.slope)
    return {"slope": result.slope, "p": result.p, "tau": result.tau, "significant": significant}


def series_trend(values: np.ndarray) -> dict:
    """Mann-Kendall / Theil-Sen of one series (e.g. global annual budgets): slope per step,
    p-value, and slope as % of the series mean per step."""
    result = kernels.mann_kendall_theil_sen(np.asarray(values, dtype=np.float64)[:, None])
    slope = float(result.slope[0])
    return {"slope": slope, "p": float(result.p[0]), "tau": float(result.tau[0]),
            "percent_per_step": 100.0 * slope / float(np.mean(values))}


# --------------------------------------------------------------------------- other products, sites, SHAP dependence
def regrid_to(da: xr.DataArray, lat: np.ndarray, lon: np.ndarray, area: np.ndarray) -> np.ndarray:
    """A (time, lat, lon) product on our grid: as is, by area-weighted block mean when it is an
    integer factor finer and aligned, else bilinear."""
    src_lat, src_lon = da.lat.values, da.lon.values
    values = np.asarray(da.values, dtype=np.float64)
    if src_lat[0] < src_lat[-1] and lat[0] > lat[-1]:
        src_lat, values = src_lat[::-1], values[:, ::-1, :]
    if src_lat.size == lat.size and src_lon.size == lon.size and np.allclose(src_lat, lat) and np.allclose(src_lon, lon):
        return values
    factor = src_lat.size // lat.size
    if (factor > 1 and src_lat.size == factor * lat.size and src_lon.size == factor * lon.size
            and np.allclose(src_lat.reshape(-1, factor).mean(axis=1), lat)
            and np.allclose(src_lon.reshape(-1, factor).mean(axis=1), lon)):
        fine_area = kernels.pixel_area(src_lat.astype(np.float64), src_lon.astype(np.float64))
        return block_mean_regrid(values, fine_area, factor)
    return bilinear_regrid(values, src_lat, src_lon, lat, lon)


def sample_sites(table: pd.DataFrame, months: pd.DatetimeIndex, lat, lon, field: np.ndarray) -> np.ndarray:
    """Values of a (time, lat, lon) field at each site-month's nearest pixel (NaN outside)."""
    i = np.abs(lat[None, :] - table["lat"].to_numpy()[:, None]).argmin(axis=1)
    j = np.abs(lon[None, :] - table["lon"].to_numpy()[:, None]).argmin(axis=1)
    t = months.get_indexer(pd.DatetimeIndex(table["time"]).to_period("M").to_timestamp())
    out = np.full(len(table), np.nan)
    ok = t >= 0
    out[ok] = field[t[ok], i[ok], j[ok]]
    return out


def shap_dependence(shap: np.ndarray, values: np.ndarray, bins: int = 20) -> list[dict]:
    """Binned SHAP dependence of one feature: bin centre, mean and std of SHAP, count."""
    ok = np.isfinite(shap) & np.isfinite(values)
    if ok.sum() < bins:
        return []
    v, s = values[ok], shap[ok]
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, edges.size - 2)
    rows = []
    for b in range(edges.size - 1):
        sel = which == b
        if sel.any():
            rows.append({"value": float(np.mean(v[sel])), "shap_mean": float(np.mean(s[sel])),
                         "shap_std": float(np.std(s[sel])), "n": int(sel.sum())})
    return rows
