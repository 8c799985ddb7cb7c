"""The monthly predictors of one band of grid rows, from a daily / 8-day input cube.

``stages.features`` writes the whole cube band by band. For each band of grid rows (all longitudes), on the CPU or the GPU: NIRv and LSWI from the
reflectances (unless given), monthly median composites, the yearly SCVTG of the daily NIRv
upper envelope (land pixels only), static layers, then block resampling to the target grid.
Bands are appended to the output Zarr store in order, so memory stays bounded: a band's height
comes from ``features.band_rows``, or else from a memory budget (half the free GPU memory on
"cuda", 1 GiB on "cpu") divided by the estimated peak bytes of one row (``band_bytes_per_row``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter import kernels
from ciml_ter.config import FeaturesConfig
from ciml_ter.data.contract import RULES, canonical_units
from ciml_ter.device import Device, to_host
from ciml_ter.errors import InputError
from ciml_ter.kernels.scvtg import scvtg_names

MONTHLY = ("lst_day", "lst_night", "lswi", "lai", "nirv", "ci", "pv", "npv", "bs")
STATIC = ("soc0", "soc10", "soc30")
CPU_BUDGET_BYTES = 1 << 30  # one band on "cpu": the numba kernels already use every core on it
DEVICE_MEMORY_SHARE = 0.5  # of the free GPU memory, for one band; the rest is headroom
# Peak bytes per (day, pixel) of a band, reached in the SG envelope: the float32 daily NIRv and
# its land-pixel copy, the envelope's float64 input copy, then on "cuda" the kernel's five float64
# arrays (out, n0, wt, cur, fit), on "cpu" its float64 output and float32 result (the CPU
# kernel's scratch is per thread, not per pixel).
DAILY_BYTES = {"cpu": 4 + 4 + 8 + 8 + 4, "cuda": 4 + 4 + 8 + 5 * 8}
# Scratch per (month, pixel) beside the float32 outputs: masking (2 float32) and block
# resampling (float64 input, output and buffer), more than the composites' float64 median + count.
MONTHLY_SCRATCH_BYTES = 4 + 4 + 8 + 8 + 8


def feature_units(name: str) -> str:
    """Units of a feature of the cube."""
    if name in RULES:
        return RULES[name].canonical
    return {"L": "day", "A": "day"}.get(name[0], "1")  # L*: days; Area: index x day; V*: index


@dataclass
class FeaturePlan:
    """What the input offers and what the output grid is."""

    factor: int
    months: pd.DatetimeIndex  # month starts of the output
    years: list[int]  # years with a complete daily NIRv record (SCVTG)
    band_rows: int
    features: list[str]
    band_budget_bytes: int | None  # memory the band height was sized to (None: set in config)
    budget_source: str  # "config", "cpu budget" or "free device memory"


def band_budget(kind: str, xp) -> tuple[int, str]:
    """Bytes one band may use on a device of ``kind`` (array module ``xp``) and where that figure
    comes from.

    "cuda": DEVICE_MEMORY_SHARE of the free GPU memory (``memGetInfo``) plus the bytes CuPy's
    pool holds free; "cpu": CPU_BUDGET_BYTES.
    """
    if kind == "cpu":
        return CPU_BUDGET_BYTES, "cpu budget"
    free, _total = xp.cuda.runtime.memGetInfo()
    free += xp.get_default_memory_pool().free_bytes()
    return int(free * DEVICE_MEMORY_SHARE), "free device memory"


def band_bytes_per_row(n_lon: int, n_days: int, n_months: int, n_features: int, kind: str) -> int:
    """Estimated peak bytes of ``_band`` per grid row on a device of ``kind`` ("cpu" or "cuda"):
    the daily stacks (DAILY_BYTES per day and pixel) and the float32 monthly outputs with their
    scratch."""
    return n_lon * (DAILY_BYTES[kind] * n_days + (4 * n_features + MONTHLY_SCRATCH_BYTES) * n_months)


def band_rows_for(n_lat: int, n_lon: int, n_days: int, n_months: int, n_features: int,
                  budget_bytes: int, factor: int = 1, kind: str = "cpu") -> int:
    """Rows per band whose estimated working set fits ``budget_bytes``: a multiple of the
    resampling ``factor``, at least ``factor`` and at most ``n_lat`` (a multiple of it)."""
    per_row = band_bytes_per_row(n_lon, n_days, n_months, n_features, kind)
    return int(min(n_lat, max(factor, budget_bytes // per_row // factor * factor)))


def _month_labels(times) -> np.ndarray:
    t = pd.DatetimeIndex(times)
    return (t.year * 12 + t.month - 1).to_numpy(np.int64)


def _resolution(ds: xr.Dataset) -> float:
    return float(abs(ds.lat.values[1] - ds.lat.values[0])) if ds.lat.size > 1 else 1.0


def plan(ds: xr.Dataset, name: str, res: float | None, config: FeaturesConfig, device: Device) -> FeaturePlan:
    """Check the target resolution and choose months, SCVTG years and band height (from
    ``config.band_rows``, else from the memory budget of ``device``)."""
    native = _resolution(ds)
    factor = 1 if res is None else res / native
    if res is not None and (abs(factor - round(factor)) > 1e-6 or round(factor) < 1):
        raise InputError(f"{name}: --res {res} is not an integer multiple of the cube's resolution "
                         f"{native:g} degrees (factor {factor:.4g}); block resampling needs an integer")
    factor = int(round(factor))
    for dim in ("lat", "lon"):
        if ds[dim].size % factor:
            raise InputError(f"{name}: {ds[dim].size} {dim} cells are not divisible by the resampling "
                             f"factor {factor} (--res {res})")
    daily_var = "nirv" if "nirv" in ds else "nir"
    days = pd.DatetimeIndex(ds[ds[daily_var].dims[0]].values)
    months = pd.DatetimeIndex(sorted(set(days.to_period("M").to_timestamp())))
    years = [y for y in sorted(set(days.year))
             if len(set(days[days.year == y].day_of_year)) == np.sum(days.year == y)
             and np.sum(days.year == y) == (366 if pd.Timestamp(y, 12, 31).day_of_year == 366 else 365)]
    if not years:
        raise InputError(f"{name}: no complete year of daily {daily_var} (365/366 days) for SCVTG; "
                         f"found {len(days)} days from {days.min():%Y-%m-%d} to {days.max():%Y-%m-%d}")
    features = [*MONTHLY, *STATIC, *scvtg_names(config.levels)]
    if config.band_rows:
        band = min(ds.lat.size, max(factor, config.band_rows // factor * factor))
        budget, source = None, "config"
    else:
        budget, source = band_budget(device.kind, device.xp)
        band = band_rows_for(ds.lat.size, ds.lon.size, len(days), len(months), len(features), budget,
                             factor, device.kind)
    return FeaturePlan(factor, months, years, band, features, budget, source)


def _read(ds: xr.Dataset, var: str, rows: slice, xp) -> object:
    da = canonical_units(ds[var].isel(lat=rows), var)
    return xp.asarray(np.asarray(da.values, dtype=np.float32))


def _monthly(stack, times, months: pd.DatetimeIndex, xp):
    """Monthly medians of a (time, y, x) stack on the output months (NaN where absent)."""
    result = kernels.monthly_median(stack, _month_labels(times))
    out = xp.full((len(months),) + stack.shape[1:], np.nan, dtype=xp.float32)
    wanted = {label: i for i, label in enumerate(_month_labels(months))}
    for j, label in enumerate(result.labels):
        if int(label) in wanted:
            out[wanted[int(label)]] = result.median[j]
    return out


def years_by_length(days: pd.DatetimeIndex, years: list[int]) -> dict[int, list[int]]:
    """The SCVTG ``years`` grouped by their number of days in ``days`` (365 or 366), in order."""
    groups: dict[int, list[int]] = {}
    for year in years:
        groups.setdefault(int(np.sum(days.year == year)), []).append(year)
    return groups


def _scvtg_band(nirv_daily, days: pd.DatetimeIndex, land, plan_: FeaturePlan,
                config: FeaturesConfig, xp) -> dict:
    """SCVTG layers (months, y, x) from the daily NIRv of a band; land pixels only.

    The years of one length sit side by side, (days, years x land pixels), so the envelope
    and SCVTG kernels run once per year length, not once per year.
    """
    names = scvtg_names(config.levels)
    shape = (len(plan_.months),) + nirv_daily.shape[1:]
    out = {n: xp.full(shape, np.nan, dtype=xp.float32) for n in names}
    columns = xp.flatnonzero(land.ravel())
    if columns.size == 0:
        return out
    flat = nirv_daily.reshape(len(days), -1)
    month_year = np.asarray(plan_.months.year)
    for group in years_by_length(days, plan_.years).values():
        series = xp.concatenate([flat[np.flatnonzero(days.year == year)][:, columns] for year in group],
                                axis=1)
        envelope = kernels.sg_upper_envelope(series, window=config.sg_window, order=config.sg_order,
                                             max_iter=config.sg_max_iter)
        values = kernels.scvtg(envelope, levels=config.levels, share=config.extreme_share)
        for n in names:
            per_year = values[n].reshape(len(group), columns.size)
            for k, year in enumerate(group):
                layer = xp.full(land.size, np.nan, dtype=xp.float32)
                layer[columns] = per_year[k]
                for m in np.flatnonzero(month_year == year):
                    out[n][m] = layer.reshape(land.shape)
    return out


def band_features(ds: xr.Dataset, rows: slice, plan_: FeaturePlan, config: FeaturesConfig, xp) -> xr.Dataset:
    """The output Dataset of one band of input rows; each input variable is read (copied to
    the device) once, each output moved to the host once."""
    land = _read(ds, "land", rows, xp) > 0.5
    daily_dim = ds["nirv" if "nirv" in ds else "nir"].dims[0]
    days = pd.DatetimeIndex(ds[daily_dim].values)
    fields = {}
    if "nirv" in ds:
        nirv = _read(ds, "nirv", rows, xp)
    else:
        nir = _read(ds, "nir", rows, xp)
        nirv = kernels.nirv(nir, _read(ds, "red", rows, xp)).value
        if "lswi" not in ds:  # from the same copy of nir
            fields["lswi"] = _monthly(kernels.lswi(nir, _read(ds, "swir1", rows, xp)).value, days,
                                      plan_.months, xp)
        del nir
    fields["nirv"] = _monthly(nirv, days, plan_.months, xp)
    fields.update(_scvtg_band(nirv, days, land, plan_, config, xp))
    del nirv
    for var in MONTHLY:
        if var in fields:
            continue
        if var == "lswi" and "lswi" not in ds:
            stack = kernels.lswi(_read(ds, "nir", rows, xp), _read(ds, "swir1", rows, xp)).value
            times = days
        else:
            stack, times = _read(ds, var, rows, xp), ds[ds[var].dims[0]].values
        fields[var] = _monthly(stack, times, plan_.months, xp)
    for var in STATIC:
        layer = _read(ds, var, rows, xp)
        fields[var] = xp.broadcast_to(layer, (len(plan_.months),) + layer.shape)
    ocean = ~land
    lat = ds.lat.values[rows]
    lon = ds.lon.values
    f = plan_.factor
    land_fraction = kernels.block_resample(land.astype(xp.float32), f, "mean", 0.0)
    out_land = to_host(land_fraction) >= 0.5
    data = {}
    for name in plan_.features:
        value = xp.where(ocean, np.nan, fields[name]).astype(xp.float32)
        if f > 1:
            value = kernels.block_resample(value, f, "mean", 0.5)
        value = to_host(value).astype(np.float32)
        value[:, ~out_land] = np.nan
        data[name] = (("time", "lat", "lon"), value, {"units": feature_units(name)})
    data["land"] = (("lat", "lon"), out_land.astype(np.uint8), {"units": "1", "long_name": "land mask"})
    if "pft" in ds:
        pft = xp.asarray(np.asarray(ds["pft"].isel(lat=rows).values, dtype=np.float32))
        if pft.ndim == 3:
            pft = pft[0]
        if f > 1:
            pft = kernels.block_resample(pft, f, "mode", 0.0)
        pft_host = to_host(pft).astype(np.float32)
        pft_host[~out_land] = np.nan
        data["pft"] = (("lat", "lon"), pft_host, dict(ds["pft"].attrs))
    coords = {"time": plan_.months.values, "lat": lat.reshape(-1, f).mean(axis=1),
              "lon": lon.reshape(-1, f).mean(axis=1)}
    return xr.Dataset({k: xr.Variable(*v) for k, v in data.items()}, coords=coords)
