"""Analyses of TER cubes: driver contributions (paper eq. 3-5), regional means, regridding.

Arrays follow the cube layout: (time, lat, lon) for monthly fields, (lat, lon) for maps,
(feature, time, lat, lon) for SHAP stacks. NaN marks ocean or missing values.
"""
from __future__ import annotations

import warnings

import numpy as np


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
G_PER_PG = 1e15
LAT_BANDS = {"north of 60N": (60.0, 90.0), "23.5N-60N": (23.5, 60.0), "tropics 23.5S-23.5N": (-23.5, 23.5),
             "south of 23.5S": (-90.0, -23.5)}


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
    from ciml_ter import kernels

    result = kernels.mann_kendall_theil_sen(totals.astype(np.float64))
    significant = (result.p < p_threshold) & np.isfinite(result.slope)
    return {"slope": result.slope, "p": result.p, "tau": result.tau, "significant": significant}


def series_trend(values: np.ndarray) -> dict:
    """Mann-Kendall / Theil-Sen of one series (e.g. global annual budgets): slope per step,
    p-value, and slope as % of the series mean per step."""
    from ciml_ter import kernels

    result = kernels.mann_kendall_theil_sen(np.asarray(values, dtype=np.float64)[:, None])
    slope = float(result.slope[0])
    return {"slope": slope, "p": float(result.p[0]), "tau": float(result.tau[0]),
            "percent_per_step": 100.0 * slope / float(np.mean(values))}
