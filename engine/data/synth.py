"""``ciml-ter synth``: a synthetic Earth whose true TER is known.

The world is generated in bands of grid rows (all longitudes of the window), each row from its
own random generator seeded by (seed, global row index), so the result does not depend on the
band height, and only the land pixels of a band are computed. Outputs in ``out_dir``:

- ``cube.zarr``: the input contract (docs/architecture.md, "Input contract"). Daily reflectances ``nir``, ``red``,
  ``swir1`` (1) with cloud gaps (NaN) and negative spikes; daily ``lst_day``, ``lst_night`` (K)
  with the same gaps; 8-day ``lai`` (m2 m-2), ``ci``, ``pv``, ``npv``, ``bs`` (1) on the
  ``time8`` axis; static ``soc0``, ``soc10``, ``soc30`` (g kg-1), ``land`` and ``pft`` (IGBP
  codes from climate zones).
- ``truth.nc``: monthly true TER (g C m-2 month-1) on (time, lat, lon).
- ``fluxnet/``: one FLUXNET2015 SUBSET_MM CSV per synthetic site and ``sites.csv``.

Truth (TRUTH_FORMULA): with the monthly medians of the written ``lst_night`` (K), ``lswi``
(from ``nir`` and ``swir1``), ``lai`` and the static ``soc30``,

    TER = R_REF * exp(E0 * (1/(T_REF - T0) - 1/(lst_night - T0)))     Lloyd-Taylor
              * clip((lswi + 0.25) / 0.6, 0.1, 1)                      moisture limitation
              * (0.3 + lai / (lai + 1.5))                              substrate from vegetation
              * (1 + soc30 / 15)                                       soil carbon

Parents: lst_night, lswi, lai, soc30. Decoys: ``lst_day`` (follows lst_night) and ``ci``
(follows lai) are correlated with parents but have no effect. Known trends: +0.03 K/yr in
temperature and +0.5 %/yr in vegetation amount. Each parent also varies on its own (moisture
anomalies with a month's memory move ``swir1`` and so ``lswi``; a per-pixel canopy factor and
10 % noise move ``lai`` away from ``pv`` and NIRv; each soil depth has its own per-pixel part),
so no parent is an exact function of the other predictors.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter import __version__, kernels
from ciml_ter.kernels._dispatch import array_module
from ciml_ter.data.cube import write_zarr
from ciml_ter.device import CPU, Device, to_host
from ciml_ter.data.contract import RULES
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_directory, atomic_output
from ciml_ter.grid import GridWindow, parse_months
from ciml_ter.units import TER_UNITS

PARENTS = ("lst_night", "lswi", "lai", "soc30")
DECOYS = ("lst_day", "ci")
TRUTH_FORMULA = ("R_REF*exp(E0*(1/(T_REF-T0)-1/(lst_night-T0))) * clip((lswi+0.25)/0.6,0.1,1) "
                 "* (0.3+lai/(lai+1.5)) * (1+soc30/15)")
R_REF, E0, T_REF, T0 = 120.0, 308.56, 288.15, 227.13  # g C m-2 month-1, K, K, K
TEMPERATURE_TREND = 0.03  # K per year
VEGETATION_TREND = 0.005  # fraction per year
# IGBP classes used, with (peak vegetation amount 0-1, LAI at peak, seasonality 0-1).
CLASSES = {1: ("ENF", 0.55, 4.0, 0.5), 2: ("EBF", 0.85, 6.0, 0.1), 3: ("DNF", 0.5, 3.5, 0.9),
           4: ("DBF", 0.75, 5.0, 0.9), 5: ("MF", 0.65, 4.5, 0.7), 6: ("CSH", 0.3, 1.2, 0.6),
           7: ("OSH", 0.15, 0.6, 0.6), 8: ("WSA", 0.55, 2.5, 0.7), 9: ("SAV", 0.4, 1.5, 0.8),
           10: ("GRA", 0.45, 2.0, 0.8), 11: ("WET", 0.5, 2.5, 0.7), 12: ("CRO", 0.7, 4.0, 1.0),
           13: ("URB", 0.25, 1.0, 0.6), 14: ("CNV", 0.6, 3.0, 0.9), 15: ("SNO", 0.03, 0.1, 0.3),
           16: ("BAR", 0.03, 0.05, 0.2)}
# Where the land and the classes come from: "default", the MCD12C1 2019 IGBP map (Earth's real
# biomes, shipped inside the package); "climate", the 1 km global-land-mask and classes
# drawn from the generator's own climate zones.
LANDCOVER_SOURCES = ("default", "climate")
CLOUD_SHARE, SPIKE_SHARE = 0.3, 0.05
TOWER_NOISE = 0.1  # relative standard deviation of a tower's monthly TER around the truth


def grid(res: float, bbox) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (lat descending, lon ascending) of a window at ``res`` degrees, a resolution
    from 0.05 to 1 degree that divides 1 degree (``grid.GridWindow.over`` checks the window)."""
    if not 0.05 - 1e-9 <= res <= 1 + 1e-9 or abs(1 / res - round(1 / res)) > 1e-6:
        raise InputError(f"--res {res}: expected a resolution from 0.05 to 1 degree that divides 1 degree "
                         f"into a whole number of cells")
    return GridWindow.over(res, bbox).coords()


def land_fraction(lat: np.ndarray, lon: np.ndarray, res: float) -> np.ndarray:
    """Share of land in each cell from the 1 km global-land-mask, on k x k sub-samples."""
    from global_land_mask import globe

    k = max(3, min(7, int(round(res / 0.1)) + 1))
    offsets = (np.arange(k) + 0.5) / k - 0.5
    sub_lat = np.clip((lat[:, None] + offsets * res).ravel(), -89.999, 89.999)
    sub_lon = np.clip((lon[:, None] + offsets * res).ravel(), -179.999, 179.999)
    la, lo = np.meshgrid(sub_lat, sub_lon, indexing="ij")
    land = globe.is_land(la, lo).reshape(lat.size, k, lon.size, k)
    return land.mean(axis=(1, 3))


def landcover_classes(lat: np.ndarray, lon: np.ndarray, res: float, source: str = "default"
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """(land, IGBP class) of each cell: with "default", from the MCD12C1 0.05 degree sub-cells of
    the cell (land where at least half are land, the class the most frequent land class, ties
    to the smaller code); with "climate", land where the global-land-mask share is at least 0.5
    and no class (the climate's are used)."""
    if source not in LANDCOVER_SOURCES:
        raise InputError(f"landcover {source!r}: expected one of {', '.join(LANDCOVER_SOURCES)}")
    if source == "climate":
        return land_fraction(lat, lon, res) >= 0.5, None
    from ciml_ter.data.products.landcover import MCD12C1_RES, landcover_on_grid

    f = int(round(res / MCD12C1_RES))
    window = GridWindow(float(lat[0] + res / 2), float(lon[0] - res / 2), MCD12C1_RES, lat.size * f, lon.size * f)
    fine, _, _ = landcover_on_grid(window, "default")
    sub = fine.reshape(lat.size, f, lon.size, f).transpose(0, 2, 1, 3).reshape(lat.size, lon.size, f * f)
    is_land = (sub != 0) & (sub != 255)
    counts = np.stack([(sub == k).sum(axis=-1) for k in CLASSES], axis=-1)
    classes = np.asarray(list(CLASSES), dtype=np.float32)[np.argmax(counts, axis=-1)]
    return is_land.mean(axis=-1) >= 0.5, classes


def _smooth(lat, lon, seed, scale):
    """A smooth spatial field in [-1, 1] from a few seeded waves (same for any tiling)."""
    rng = np.random.default_rng([seed, 7919])
    field = np.zeros((lat.size, lon.size))
    for _ in range(4):
        fy, fx, p1, p2 = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        field += np.sin(np.radians(lat)[:, None] * fy * scale + p1) * np.cos(np.radians(lon)[None, :] * fx + p2)
    return field / 4


def _cell_noise(lat, lon, seed):
    """Independent uniform values in [-1, 1) per cell (lat x lon), a pure function of the cell
    centre and the seed, so any tiling of the grid gives the same values."""
    key = (np.round((np.asarray(lat)[:, None] + 90) * 1e4).astype(np.uint64) * np.uint64(4_000_000)
           + np.round((np.asarray(lon)[None, :] + 180) * 1e4).astype(np.uint64))
    x = key ^ np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
    for shift, mult in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53)):  # splitmix64 finaliser
        x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
    x = x ^ (x >> np.uint64(33))
    return (x >> np.uint64(11)).astype(np.float64) / 2.0 ** 52 - 1.0


def climate(lat: np.ndarray, lon: np.ndarray, seed: int) -> dict:
    """Static climate of each cell: mean temperature (degC), seasonal amplitude (K), moisture
    index (0-1), IGBP class and soil carbon (g kg-1)."""
    a = np.abs(lat)[:, None]
    wiggle = _smooth(lat, lon, seed, 1.0)
    t_mean = 28 - 0.62 * np.maximum(a - 10, 0) + 4 * wiggle
    amplitude = 1 + 0.32 * a * (1 + 0.3 * wiggle)
    moisture = np.clip(0.75 - 0.6 * np.exp(-((a - 25) / 9) ** 2) + 0.25 * _smooth(lat, lon, seed + 1, 2.0)
                       - 0.15 * (a > 60), 0.05, 1.0)
    pft = np.select([t_mean < -8, moisture < 0.22, (moisture < 0.45) & (t_mean > 18), moisture < 0.45,
                     (t_mean > 21) & (moisture > 0.6), t_mean < 4, t_mean < 11, wiggle > 0.2],
                    [15, 7, 9, 10, 2, 1, 5, 12], default=4)
    soc0 = np.clip(8 + 35 * moisture + 6 * _smooth(lat, lon, seed + 2, 3.0) + 14 * _cell_noise(lat, lon, seed + 6),
                   2, 150)  # wetter: more soil carbon; parent rock and land use: a local part
    # each depth and the canopy get a part of their own, so that no predictor is an exact
    # function of another (causal discovery can then tell the parents from their look-alikes)
    soc10 = 0.7 * soc0 * (1 + 0.3 * _cell_noise(lat, lon, seed + 3))
    soc30 = (0.45 * soc0 + 3) * (1 + 0.4 * _cell_noise(lat, lon, seed + 4))
    return {"t_mean": t_mean, "amplitude": amplitude, "moisture": moisture, "pft": pft.astype(np.float32),
            "soc0": soc0, "soc10": soc10, "soc30": soc30, "canopy": 1 + 0.4 * _cell_noise(lat, lon, seed + 5),
            "clumping": 0.08 * _cell_noise(lat, lon, seed + 7)}


def _season(doy, lat, seasonality, xp=np):
    """0-1 seasonal cycle per day (rows) and pixel (columns), peaking in local summer."""
    peak = xp.where(lat >= 0, 196.0, 15.0)
    cycle = 0.5 * (1 + xp.cos(2 * np.pi * (doy[:, None] - peak[None, :]) / 365.25))
    return 1 - seasonality[None, :] * (1 - cycle ** 1.5)


WETNESS_MEMORY_DAYS, WETNESS_SD = 30.0, 0.3


class _Draws:
    """The random draws of one grid row, on the host (NumPy) or the GPU (CuPy); seeded by
    ``key`` (a list of ints). The two devices draw different (each reproducible) numbers."""

    def __init__(self, key: list[int], xp=np):
        self.xp = xp
        self.rng = (np.random.default_rng(key) if xp is np
                    else xp.random.default_rng(int(np.random.SeedSequence(key).generate_state(1)[0])))

    def normal(self, scale: float, shape):
        if self.xp is np:
            return self.rng.normal(0, scale, shape)
        return scale * self.rng.standard_normal(shape)

    def uniform(self, low: float, high: float, shape=None):
        return self.rng.uniform(low, high, shape)

    def random(self, shape):
        return self.rng.random(shape)


def _ar1_blocks(shocks, phi: float, xp, block: int = 366):
    """``y[t] = phi * y[t-1] + shocks[t]`` along axis 0 with whole-array operations (no loop
    over days): within a block, y[s+k] = phi**k * (phi * y[s-1] + cumsum_j phi**-j shocks[s+j])."""
    out = xp.empty_like(shocks)
    carry = xp.zeros(shocks.shape[1:], dtype=shocks.dtype)
    for start in range(0, shocks.shape[0], block):
        part = shocks[start:start + block]
        k = xp.arange(part.shape[0], dtype=shocks.dtype)[:, None]
        out[start:start + block] = phi ** k * (phi * carry[None] + xp.cumsum(phi ** -k * part, axis=0))
        carry = out[start + part.shape[0] - 1]
    return out


def _wetness_anomaly(draws: _Draws, n_days: int, n: int):
    """Moisture anomalies (days, pixels): an AR(1) process with a memory of about a month and a
    standard deviation of WETNESS_SD, started from its stationary distribution."""
    phi = math.exp(-1.0 / WETNESS_MEMORY_DAYS)
    shocks = draws.normal(WETNESS_SD * math.sqrt(1 - phi ** 2), (n_days, n))
    shocks[0] = draws.normal(WETNESS_SD, n)
    if draws.xp is np:
        from scipy.signal import lfilter

        return lfilter([1.0], [1.0, -phi], shocks, axis=0)
    return _ar1_blocks(shocks, phi, draws.xp)


def _row(draws: _Draws, days: pd.DatetimeIndex, eight: pd.DatetimeIndex, lat, c: dict, year0: int,
         clean: bool = False) -> tuple[dict, dict]:
    """Every daily and 8-day variable (float32, on the device of ``draws``) of the land pixels
    of one row, given their climate ``c`` (host arrays); ``clean`` leaves out the noise, spikes
    and clouds (the curves behind the data)."""
    xp = draws.xp
    n, nd = c["t_mean"].size, len(days)
    noise = 0.0 if clean else 1.0
    info = np.array([CLASSES[int(k)] for k in c["pft"]], dtype=object)
    peak_v, peak_lai, seasonality = (xp.asarray(np.asarray(info[:, i], float)) for i in (1, 2, 3))
    c = {k: xp.asarray(v) for k, v in c.items()}
    doy = xp.asarray(days.day_of_year.to_numpy(float))
    years = xp.asarray((days.year - year0).to_numpy(float))
    lat_p = xp.full(n, lat)
    iav = 1 + 0.04 * xp.sin(2 * np.pi * years / 6.5 + draws.uniform(0, 2 * np.pi))[:, None]
    veg = peak_v[None, :] * _season(doy, lat_p, seasonality, xp) * iav * (1 + VEGETATION_TREND * years)[:, None]
    veg = xp.clip(veg * (0.6 + 0.4 * c["moisture"])[None, :], 0, 1)
    temp = (c["t_mean"][None, :] + TEMPERATURE_TREND * years[:, None]
            + c["amplitude"][None, :] * (xp.cos(2 * np.pi * (doy[:, None] - (200 if lat >= 0 else 20)) / 365.25))
            + noise * draws.normal(1.5, (nd, n)))
    nir = 0.12 + 0.33 * veg + noise * draws.normal(0.005, (nd, n))
    red = 0.11 - 0.08 * veg + noise * draws.normal(0.003, (nd, n))
    wet = xp.clip(c["moisture"][None, :] + _wetness_anomaly(draws, nd, n), 0, 1)  # rain spells and droughts
    swir1 = 0.28 - 0.16 * veg * (0.4 + 0.6 * wet) + noise * draws.normal(0.004, (nd, n))
    spikes = draws.random((nd, n)) < SPIKE_SHARE * noise  # thin cloud / shadow: darker NIR
    nir = xp.where(spikes, nir * draws.uniform(0.4, 0.8, (nd, n)), nir)
    lst_day = temp + 273.15 + 4 + 10 * (1 - veg) * (1 - c["moisture"][None, :]) + noise * draws.normal(1.0, (nd, n))
    lst_night = temp + 273.15 - 5 - 2 * c["moisture"][None, :] + noise * draws.normal(0.8, (nd, n))
    cloudy = draws.random((nd, n)) < CLOUD_SHARE * noise * (0.5 + c["moisture"][None, :])
    daily = {name: xp.where(cloudy, np.nan, v).astype(np.float32)
             for name, v in (("nir", nir), ("red", red), ("swir1", swir1), ("lst_day", lst_day),
                             ("lst_night", lst_night))}
    v8 = veg[days.get_indexer(eight)]
    lai = (peak_lai[None, :] * v8 / xp.maximum(peak_v[None, :], 1e-3) * c["canopy"][None, :]
           * (1 + noise * draws.normal(0.1, v8.shape)))
    lai = xp.clip(lai, 0, None)
    ci = xp.clip(0.85 + c["clumping"][None, :] - 0.05 * lai + noise * draws.normal(0.03, lai.shape), 0.3, 1)
    pv = xp.clip(0.95 * v8, 0, 1)
    npv = xp.clip((1 - v8) * (0.15 + 0.35 * c["moisture"][None, :]), 0, 1 - pv)
    eight_day = {"lai": lai, "ci": ci, "pv": pv, "npv": npv, "bs": xp.clip(1 - pv - npv, 0, 1)}
    return daily, {k: v.astype(np.float32) for k, v in eight_day.items()}


def row_variables(clim_row: dict, lat: float, row: int, res: float, bbox, seed: int, days, eight,
                  clean: bool = False, xp=np) -> tuple[dict, dict]:
    """Daily and 8-day variables of the land pixels of grid row ``row`` (climate ``clim_row``
    restricted to those pixels), as arrays of ``xp`` (NumPy or CuPy); the row's generator is
    seeded by (seed, row, window west edge)."""
    draws = _Draws([seed, row, int(round((bbox[0] + 180) / res))], xp)
    return _row(draws, days, eight, lat, clim_row, int(days.year[0]), clean=clean)


def true_ter(lst_night, lswi, lai, soc30):
    """The world's TER (g C m-2 month-1) from monthly predictors (see the module docstring);
    NumPy or CuPy arrays."""
    xp = array_module(lst_night)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        temperature = R_REF * xp.exp(E0 * (1 / (T_REF - T0) - 1 / xp.maximum(lst_night - T0, 1.0)))
        moisture = xp.clip((lswi + 0.25) / 0.6, 0.1, 1.0)
        return temperature * moisture * (0.3 + lai / (lai + 1.5)) * (1 + soc30 / 15)


def true_response(values: dict[str, np.ndarray], feature: str, at: np.ndarray) -> np.ndarray:
    """The world's centred partial response to ``feature`` (g C m-2 month-1), what a SHAP
    dependence curve estimates: for each value of ``at``, the mean of ``true_ter`` over the rows of
    ``values`` (the parents' monthly values, 1-D arrays of equal length) with ``feature`` set to it,
    minus the mean of ``true_ter`` over the rows; 0 for a feature that is not a parent."""
    at = np.asarray(at, dtype=np.float64)
    if feature not in PARENTS:
        return np.zeros_like(at)
    rows = {p: np.asarray(values[p], dtype=np.float64) for p in PARENTS}
    mean = float(np.nanmean(true_ter(**rows)))
    return np.array([float(np.nanmean(true_ter(**{**rows, feature: np.full_like(rows[feature], v)}))) - mean
                     for v in at])


def monthly_truth(daily: dict, eight_day: dict, soc30, days, eight, months):
    """Truth (months, pixels) from the monthly medians of the written variables, on the device
    of ``daily``."""
    xp = array_module(daily["nir"])

    def med(stack, times):
        result = kernels.monthly_median(stack.astype(np.float64), (times.year * 12 + times.month - 1).to_numpy())
        labels = (months.year * 12 + months.month - 1).to_numpy()
        return result.median[xp.asarray(np.searchsorted(result.labels, labels))]

    lswi = kernels.lswi(daily["nir"].astype(np.float64), daily["swir1"].astype(np.float64)).value
    return true_ter(med(daily["lst_night"], days), med(lswi, days), med(eight_day["lai"], eight),
                    xp.asarray(soc30)[None, :])


def _period(years, months_range):
    """The days of the world: those of ``months_range`` ("YYYY-MM:YYYY-MM" or a pair) if given,
    else those of the ``years`` (first, last)."""
    months = parse_months(months_range)
    if months is not None:
        return pd.date_range(months[0], months[1] - dt.timedelta(days=1), freq="D")
    first, last = years
    if last < first:
        raise InputError(f"--years {first}-{last}: the last year is before the first")
    return pd.date_range(f"{first}-01-01", f"{last}-12-31", freq="D")


def _sites(land, lat, lon, n_sites, seed) -> list[tuple[int, int]]:
    """Site pixels: land cells drawn with a FLUXNET-like bias (x4 weight at 35-60 N)."""
    rows, cols = np.nonzero(land)
    if n_sites > rows.size:
        raise InputError(f"--sites {n_sites}: only {rows.size} land pixels in the window")
    weight = np.where((lat[rows] >= 35) & (lat[rows] <= 60), 4.0, 1.0)
    pick = np.random.default_rng([seed, 104729]).choice(rows.size, n_sites, replace=False, p=weight / weight.sum())
    return sorted(zip(rows[pick].tolist(), cols[pick].tolist()))


DAILY = ("nir", "red", "swir1", "lst_day", "lst_night")
EIGHT_DAY = ("lai", "ci", "pv", "npv", "bs")


def _blank(buffer: np.ndarray, rows: int) -> np.ndarray:
    """The first ``rows`` rows (axis 1) of a reused buffer, set to NaN (ocean until filled)."""
    view = buffer[:, :rows]
    view.fill(np.nan)
    return view


def _generate_band(buffers: dict, blat, y0: int, lon, res, bbox, seed, days, eight, month_starts,
                   pool, xp, landcover: str) -> tuple[xr.Dataset, np.ndarray, int]:
    """Every variable and the truth of a band of rows (first row ``y0``), generated with the
    array module ``xp`` and filled into the host ``buffers`` row by row on the threads of
    ``pool``; returns the band's dataset, its truth (months, rows, lon) and its number of land
    pixels."""
    land, classes = landcover_classes(blat, lon, res, landcover)
    clim = climate(blat, lon, seed)
    if classes is not None:
        clim["pft"] = classes
    daily = {k: _blank(buffers[k], blat.size) for k in DAILY}
    eight_day = {k: _blank(buffers[k], blat.size) for k in EIGHT_DAY}
    truth = _blank(buffers["ter"], blat.size)

    def fill_row(i: int) -> None:  # rows are independent (own generator, own slices)
        cols = np.flatnonzero(land[i])
        if cols.size == 0:
            return
        c = {k: v[i, cols] for k, v in clim.items()}
        d, e = row_variables(c, blat[i], y0 + i, res, bbox, seed, days, eight, xp=xp)
        for k, v in d.items():
            daily[k][:, i, cols] = to_host(v)
        for k, v in e.items():
            eight_day[k][:, i, cols] = to_host(v)
        truth[:, i, cols] = to_host(monthly_truth(d, e, c["soc30"], days, eight, month_starts))

    list(pool.map(fill_row, range(blat.size)))  # NumPy releases the GIL in the big array work
    static = {k: np.where(land, clim[k], np.nan).astype(np.float32) for k in ("soc0", "soc10", "soc30", "pft")}
    return _band_dataset(daily, eight_day, static, land, days, eight, blat, lon), truth, int(land.sum())


def write_synthetic_world(out_dir: Path, res: float = 0.5, years: tuple[int, int] = (2001, 2003),
                          bbox: tuple[float, float, float, float] = (-180, -90, 180, 90), n_sites: int = 60,
                          seed: int = 0, progress: Callable | None = None, band_rows: int = 0,
                          months: str | tuple[str, str] | None = None, device: Device = CPU,
                          landcover: str = "default") -> dict:
    """Write cube.zarr, truth.nc and fluxnet/ for a synthetic world; return a summary.

    ``months`` ("YYYY-MM:YYYY-MM" or a pair) overrides ``years`` with a month range; ``band_rows``
    (0: from a budget of 512 MiB per buffer set; two sets) is how many rows are generated at once.
    ``device`` on the GPU draws and computes the rows there (CuPy; other random numbers than
    on the CPU, equally reproducible) and copies each row to the host bands being written.
    ``landcover`` (``LANDCOVER_SOURCES``): the real MCD12C1 biomes and land ("default") or the
    generator's climate classes on the global-land-mask ("climate").
    """
    import h5netcdf

    xp = device.xp
    if landcover not in LANDCOVER_SOURCES:
        raise InputError(f"--landcover {landcover!r}: expected one of {', '.join(LANDCOVER_SOURCES)}")
    if landcover == "default":
        from ciml_ter.data.products.landcover import default_landcover_path

        default_landcover_path()  # a missing file is said before any work

    out_dir = Path(out_dir)
    lat, lon = grid(res, bbox)
    days = _period(years, months)
    eight = pd.DatetimeIndex([d for y in sorted(set(days.year)) for d in
                              pd.date_range(f"{y}-01-01", f"{y}-12-31", freq="8D") if d in days])
    month_starts = pd.date_range(days[0], days[-1], freq="MS")
    if (out_dir / "cube.zarr").exists():
        raise InputError(f"{out_dir / 'cube.zarr'}: already exists; choose a new --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    band = band_rows or max(1, (512 << 20) // max(1, lon.size * len(days) * 4 * 12))  # per buffer set
    # only a finished world carries the names cube.zarr and truth.nc
    with atomic_directory(out_dir / "cube.zarr") as cube_tmp, atomic_output(out_dir / "truth.nc") as truth_tmp:
        land_total = 0
        with (h5netcdf.File(truth_tmp, "w") as truth_file, ThreadPoolExecutor(os.cpu_count() or 1) as pool,
              ThreadPoolExecutor(1) as writer):
            truth_file.dimensions = {"time": len(month_starts), "lat": lat.size, "lon": lon.size}
            for name, values, attrs in (
                    ("time", (month_starts - pd.Timestamp("1970-01-01")).days.to_numpy(),
                     {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}),
                    ("lat", lat, {"units": "degrees_north"}), ("lon", lon, {"units": "degrees_east"})):
                truth_file.create_variable(name, (name,), data=values).attrs.update(attrs)
            truth_var = truth_file.create_variable("ter", ("time", "lat", "lon"), dtype="f4",
                                                   fillvalue=np.float32(np.nan))
            truth_var.attrs.update({"units": TER_UNITS, "long_name": "true terrestrial ecosystem respiration"})
            truth_file.attrs.update({"formula": TRUTH_FORMULA, "parents": json.dumps(PARENTS),
                                     "decoys": json.dumps(DECOYS), "seed": seed, "Conventions": "CF-1.8"})
            starts = list(range(0, lat.size, band))
            rows_max = min(band, lat.size)  # two sets of buffers: one being filled, one being written
            buffer_sets = [{**{k: np.empty((len(days), rows_max, lon.size), np.float32) for k in DAILY},
                            **{k: np.empty((len(eight), rows_max, lon.size), np.float32) for k in EIGHT_DAY},
                            "ter": np.empty((len(month_starts), rows_max, lon.size), np.float32)} for _ in range(2)]
            attrs = {"Conventions": "CF-1.8", "title": "ciml-ter synthetic world", "seed": seed,
                     "resolution_deg": res, "generator": f"ciml-ter {__version__} on {device}",
                     "landcover": ("MCD12C1 2019 IGBP (shipped with ciml-ter): land and classes" if landcover == "default"
                                   else "global-land-mask land, classes from the generator's climate"),
                     "truth_formula": TRUTH_FORMULA, "parents": json.dumps(PARENTS),
                     "decoys": json.dumps(DECOYS), "temperature_trend_K_per_yr": TEMPERATURE_TREND,
                     "vegetation_trend_per_yr": VEGETATION_TREND,
                     "time_axes": "time: daily (reflectances, LST); time8: 8-day (lai, ci, pv, npv, bs)"}
            def write_band(b: int, ds: xr.Dataset, truth: np.ndarray, rows: slice) -> None:
                if b == 0:
                    ds.attrs.update(attrs)
                    for var in ds.data_vars.values():  # one chunk per band of rows: few, large reads
                        var.encoding["chunks"] = tuple({"lat": band, "lon": min(lon.size, 360)}.get(d, n)
                                                       for d, n in var.sizes.items())
                    write_zarr(ds, cube_tmp, mode="w")
                else:
                    write_zarr(ds, cube_tmp, append_dim="lat")
                truth_var[:, rows, :] = truth

            writing = None  # the previous band's write, overlapping this band's generation
            for b, y0 in enumerate(starts):
                rows = slice(y0, min(y0 + band, lat.size))
                ds, truth, n_land = _generate_band(buffer_sets[b % 2], lat[rows], y0, lon, res, bbox, seed,
                                                   days, eight, month_starts, pool, xp, landcover)
                land_total += n_land
                if writing is not None:
                    writing.result()  # in order; and frees the other buffer set
                writing = writer.submit(write_band, b, ds, truth, rows)
                if progress:
                    progress(b + 1, len(starts), f"rows {y0}-{rows.stop}")
            if writing is not None:
                writing.result()
        if land_total == 0:
            raise InputError(f"--bbox {bbox}: the window has no land pixel at {res} degrees")
    sites = _write_fluxnet(out_dir / "fluxnet", out_dir, lat, lon, res, n_sites, seed, month_starts, days) if n_sites else 0
    return {"out": str(out_dir), "grid": [int(lat.size), int(lon.size)], "land_pixels": land_total,
            "days": len(days), "months": len(month_starts), "sites": sites, "parents": list(PARENTS),
            "decoys": list(DECOYS), "formula": TRUTH_FORMULA, "device": device.kind}


def _band_dataset(daily, eight_day, static, land, days, eight, blat, lon) -> xr.Dataset:
    data = {k: (("time", "lat", "lon"), v, {"units": RULES[k].canonical}) for k, v in daily.items()}
    data.update({k: (("time8", "lat", "lon"), v, {"units": RULES[k].canonical}) for k, v in eight_day.items()})
    data.update({k: (("lat", "lon"), v, {"units": RULES[k].canonical}) for k, v in static.items() if k != "pft"})
    codes = sorted(CLASSES)
    data["pft"] = (("lat", "lon"), static["pft"], {"long_name": "IGBP class", "flag_values": np.array(codes, np.int16),
                                                   "flag_meanings": " ".join(CLASSES[k][0] for k in codes)})
    data["land"] = (("lat", "lon"), land.astype(np.uint8), {"long_name": "land mask", "flag_values": np.array([0, 1], np.uint8),
                                                            "flag_meanings": "water land"})
    return xr.Dataset(data, coords={"time": days.values, "time8": eight.values,
                                    "lat": ("lat", blat, {"units": "degrees_north"}),
                                    "lon": ("lon", lon, {"units": "degrees_east"})})


def _write_fluxnet(folder: Path, out_dir: Path, lat, lon, res, n_sites, seed, months, days) -> int:
    """Synthetic towers: truth + 10 % noise, 8 % gaps, QC flags, in FLUXNET2015 SUBSET_MM CSVs; the
    noise's standard deviation is the files' random error ``NEE_VUT_REF_RANDUNC``, as FLUXNET gives
    one for each month's flux."""
    truth = xr.open_dataset(out_dir / "truth.nc", engine="h5netcdf")
    cube = xr.open_dataset(out_dir / "cube.zarr", engine="zarr", consolidated=False, chunks=None)
    land = cube.land.values.astype(bool) & np.isfinite(truth.ter.values).all(axis=0)
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, 15485863])
    stamp = months.strftime("%Y%m").astype(int)
    table = []
    names = {k: v[0] for k, v in CLASSES.items()}
    for n, (i, j) in enumerate(_sites(land, lat, lon, n_sites, seed)):
        site = f"SY-{n:03d}"
        ter = truth.ter.values[:, i, j].astype(float)
        obs = ter * (1 + rng.normal(0, TOWER_NOISE, ter.size))
        obs[rng.random(ter.size) < 0.08] = np.nan
        qc = np.where(rng.random(ter.size) < 0.12, rng.uniform(0.3, 0.74, ter.size), rng.uniform(0.75, 1, ter.size))
        lst = cube.lst_night.isel(lat=i, lon=j).values.astype(float)
        ta = pd.Series((lst + cube.lst_day.isel(lat=i, lon=j).values) / 2 - 273.15, index=days
                       ).groupby(days.to_period("M")).mean().to_numpy()
        days_in = months.days_in_month.to_numpy()
        frame = pd.DataFrame({"TIMESTAMP": stamp, "TA_F": ta, "RECO_NT_VUT_REF": obs / days_in,
                              "NEE_VUT_REF_RANDUNC": TOWER_NOISE * ter / days_in, "NEE_VUT_REF_QC": qc,
                              "SW_IN_F": 150 + 100 * np.cos(np.radians(lat[i])) *
                              np.cos(2 * np.pi * (months.month.to_numpy() - 7) / 12) * math.copysign(1, lat[i]),
                              "VPD_F": np.clip(ta, 0, None) / 3, "P_F": rng.gamma(2.0, 1.5, ter.size)})
        years = f"{months.year[0]}-{months.year[-1]}"
        frame.fillna(-9999).to_csv(folder / f"FLX_{site}_FLUXNET2015_SUBSET_MM_{years}_1-4.csv", index=False)
        table.append({"SITE_ID": site, "LOCATION_LAT": float(lat[i]), "LOCATION_LONG": float(lon[j]),
                      "IGBP": names[int(cube.pft.values[i, j])]})
    pd.DataFrame(table).to_csv(folder / "sites.csv", index=False)
    return len(table)


@dataclass
class Truth:
    """A synthetic world's ``truth.nc``: the true TER (time, lat, lon; g C m-2 month-1, float64),
    its grid and month starts, and its attributes (formula, parents, decoys, seed)."""

    lat: np.ndarray
    lon: np.ndarray
    months: pd.DatetimeIndex
    ter: np.ndarray
    attrs: dict

    @property
    def parents(self) -> list[str]:
        return json.loads(self.attrs.get("parents", "[]"))

    @property
    def decoys(self) -> list[str]:
        return json.loads(self.attrs.get("decoys", "[]"))


def read_truth(path: str | Path) -> Truth:
    """Read a world's ``truth.nc``; InputError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: truth not found; expected the truth.nc of a `ciml-ter synth` world")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as t:
            return Truth(t.lat.values.astype(np.float64), t.lon.values.astype(np.float64),
                         pd.DatetimeIndex(t.time.values), np.asarray(t.ter.values, dtype=np.float64), dict(t.attrs))
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise InputError(f"{path}: cannot read as a synthetic world's truth ({type(exc).__name__}: {exc})") from None
