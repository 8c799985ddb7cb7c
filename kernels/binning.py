"""Binning of sinusoidal-grid tiles (MODIS/VIIRS land products) onto a regular lat/lon grid.

Each source pixel's centre is mapped forward on the sphere of radius R: for row r, column c,
y = ul_y - (r + 0.5) * pixel, x = ul_x + (c + 0.5) * pixel (m), lat = y / R (radians) and
lon = x / (R cos lat). Pixels off the globe (|lon| > 180 deg, present in the edge tiles; rows at
or beyond a pole) or outside the window are ignored; lon exactly 180 counts as -180; the
window's longitudes are taken as given (no wrapping).

Latitude is constant along a source row, so its target row and R cos(lat) are computed once.
The window's column edges are then mapped onto the row's parallel, x = radians(lon) R cos(lat),
and pixel centres compared with them in metres (the same test as lon >= edge, without a
division per pixel). x grows with the column, so the CPU kernel walks a row once, eastward,
summing each cell's run of pixels before writing it; the CUDA kernel bins each pixel with
atomic adds. Both use the same formulas, so they assign every pixel alike (a real GPU may fuse
multiply-adds, which can move a pixel lying within a rounding error of a cell edge).

Sinusoidal pixels are equal-area, so the mean of the valid pixels of a cell is its area mean.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, cuda_grid

_DEGREES = 180.0 / math.pi  # degrees per radian
_RADIANS = math.pi / 180.0  # radians per degree


def _check_finite(name: str, value) -> None:
    if not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, found {value!r}")


def _check_positive(name: str, value) -> None:
    _check_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name}: expected a positive number, found {value!r}")


def _check_count(name: str, value) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, found {value!r}")


@dataclass(frozen=True)
class SinusoidalTile:
    """Placement of one sinusoidal tile: the upper-left corner of its first pixel (m, HDF-EOS
    UpperLeftPointMtrs), the pixel size (m, square pixels) and the sphere radius (m, ProjParams[0];
    MODIS 6371007.181)."""

    ul_x_m: float
    ul_y_m: float
    pixel_m: float
    radius_m: float

    def __post_init__(self):
        _check_finite("ul_x_m", self.ul_x_m)
        _check_finite("ul_y_m", self.ul_y_m)
        _check_positive("pixel_m", self.pixel_m)
        _check_positive("radius_m", self.radius_m)


class BinSums(NamedTuple):
    """Per-cell accumulators of a window, each (n_lat, n_lon), on the device of the values."""

    sums: object  # float64, sum of the valid values, units of the values
    n_valid: object  # int32, valid (non-NaN) pixels
    n_seen: object  # int32, on-globe pixels, valid or not


def _build(jit):
    def target_row(r, ul_y, pixel, radius, north, res, n_lat):
        """Target row of source row ``r`` (-1 outside the window, or at or beyond a pole) and
        R cos(lat) (m)."""
        lat = (ul_y - (r + 0.5) * pixel) / radius
        t = (north - lat * _DEGREES) / res
        if abs(lat) >= 0.5 * math.pi or t < 0.0 or t >= n_lat:
            return -1, 0.0
        return int(t), radius * math.cos(lat)

    def pixel_x(c, ul_x, pixel):
        """x (m) of the centre of column ``c``."""
        return ul_x + (c + 0.5) * pixel

    def edge_x(lon, r_cos):
        """x (m) of longitude ``lon`` (deg) on a parallel of R cos(lat) ``r_cos`` (m)."""
        return lon * _RADIANS * r_cos

    edge_x = jit(edge_x)

    def column(x, r_cos, west, res, n_lon):
        """Window column j with edge_x(west + j res) <= x < edge_x(west + (j+1) res); -1 if none."""
        if x < edge_x(west, r_cos) or x >= edge_x(west + n_lon * res, r_cos):
            return -1
        j = min(max(int((x / r_cos * _DEGREES - west) / res), 0), n_lon - 1)
        while j > 0 and x < edge_x(west + j * res, r_cos):
            j -= 1
        while j < n_lon - 1 and x >= edge_x(west + (j + 1) * res, r_cos):
            j += 1
        return j

    return jit(target_row), jit(pixel_x), edge_x, jit(column)


_row_cpu, _x_cpu, _edge_cpu, _column_cpu = _build(njit)
_row_gpu, _x_gpu, _edge_gpu, _column_gpu = _build(cuda.jit(device=True))


@njit
def _first_at(bound, ul_x, pixel, n):
    """First column of ``n`` whose centre has x >= ``bound`` (m); ``n`` if none."""
    g = (bound - ul_x) / pixel - 0.5
    c = 0 if g <= 0.0 else (n if g >= n else math.ceil(g))
    while c > 0 and _x_cpu(c - 1, ul_x, pixel) >= bound:
        c -= 1
    while c < n and _x_cpu(c, ul_x, pixel) < bound:
        c += 1
    return c


@njit
def _bin_row_cpu(row, ul_x, pixel, r_cos, west, res, sums, n_valid, n_seen):
    """Add one source row, on the parallel of R cos(lat) ``r_cos`` (m), into its target row."""
    n = row.shape[0]
    n_lon = sums.shape[0]
    east = _edge_cpu(180.0, r_cos)
    stop = _first_at(east, ul_x, pixel, n)  # columns before stop have x < east (lon < 180)
    c = _first_at(max(_edge_cpu(west, r_cos), -east), ul_x, pixel, n)
    j = _column_cpu(_x_cpu(c, ul_x, pixel), r_cos, west, res, n_lon) if c < stop else -1
    while j >= 0 and c < stop:  # cell j takes the pixels west of its east edge
        bound = _edge_cpu(west + (j + 1) * res, r_cos)
        s = 0.0
        valid = 0
        begin = c
        # two pixels a step (x grows with c, so both lie west of bound): half the dependent adds
        while c + 1 < stop and _x_cpu(c + 1, ul_x, pixel) < bound:
            v = row[c]
            w = row[c + 1]
            s += (v if not math.isnan(v) else 0.0) + (w if not math.isnan(w) else 0.0)
            valid += (not math.isnan(v)) + (not math.isnan(w))
            c += 2
        if c < stop and _x_cpu(c, ul_x, pixel) < bound:
            v = row[c]
            ok = not math.isnan(v)
            s += v if ok else 0.0
            valid += ok
            c += 1
        sums[j] += s
        n_valid[j] += valid
        n_seen[j] += c - begin
        j = j + 1 if j + 1 < n_lon else -1
    if stop < n and _x_cpu(stop, ul_x, pixel) == east:  # lon 180 counts as -180
        j = _column_cpu(-east, r_cos, west, res, n_lon)
        if j >= 0:
            v = row[stop]
            n_seen[j] += 1
            if not math.isnan(v):
                sums[j] += v
                n_valid[j] += 1


@njit(parallel=True, cache=True)
def _bin_cpu(values, ul_x, ul_y, pixel, radius, north, west, res, sums, n_valid, n_seen):
    n_rows = values.shape[0]
    target = np.empty(n_rows, dtype=np.int64)
    r_cos = np.empty(n_rows)
    for r in range(n_rows):
        target[r], r_cos[r] = _row_cpu(r, ul_y, pixel, radius, north, res, sums.shape[0])
    # Latitude falls with r, so the source rows of one target row are consecutive: one work
    # item per target row, and no two threads write one cell.
    first = np.empty(n_rows, dtype=np.int64)
    n_runs = 0
    for r in range(n_rows):
        if target[r] >= 0 and (r == 0 or target[r] != target[r - 1]):
            first[n_runs] = r
            n_runs += 1
    for k in prange(n_runs):
        src = first[k]
        i = target[src]
        while src < n_rows and target[src] == i:
            _bin_row_cpu(values[src], ul_x, pixel, r_cos[src], west, res, sums[i], n_valid[i], n_seen[i])
            src += 1


@cuda.jit
def _rows_gpu(ul_y, pixel, radius, north, res, n_lat, target, r_cos):
    r = cuda.grid(1)
    if r < target.shape[0]:
        target[r], r_cos[r] = _row_gpu(r, ul_y, pixel, radius, north, res, n_lat)


@cuda.jit
def _bin_gpu(values, target, r_cos, ul_x, pixel, west, res, sums, n_valid, n_seen):
    p = cuda.grid(1)
    n_rows, n_cols = values.shape
    if p < n_rows * n_cols:
        r = p // n_cols
        c = p % n_cols
        i = target[r]
        x = _x_gpu(c, ul_x, pixel)
        east = _edge_gpu(180.0, r_cos[r])
        if x == east:  # lon 180 counts as -180
            x = -east
        if i >= 0 and -east <= x < east:
            j = _column_gpu(x, r_cos[r], west, res, sums.shape[1])
            if j >= 0:
                cuda.atomic.add(n_seen, (i, j), 1)
                v = values[r, c]
                if not math.isnan(v):
                    cuda.atomic.add(n_valid, (i, j), 1)
                    cuda.atomic.add(sums, (i, j), v)


def launch_bin_gpu(values, tile: SinusoidalTile, window, out: BinSums) -> None:
    """Run the CUDA kernels on ``values`` (rows, cols), float32 or float64, on the device that
    holds it (CuPy, or NumPy under the CUDA simulator), adding into ``out`` there."""
    xp = array_module(values)
    n_rows = values.shape[0]
    target = xp.empty(n_rows, dtype=np.int64)
    r_cos = xp.empty(n_rows, dtype=np.float64)
    blocks, threads = cuda_grid(n_rows)
    _rows_gpu[blocks, threads](float(tile.ul_y_m), float(tile.pixel_m), float(tile.radius_m),
                               float(window.north), float(window.res), int(window.n_lat), target, r_cos)
    blocks, threads = cuda_grid(values.size)
    _bin_gpu[blocks, threads](values, target, r_cos, float(tile.ul_x_m), float(tile.pixel_m),
                              float(window.west), float(window.res), out.sums, out.n_valid, out.n_seen)


def _check_out(out, shape, xp) -> None:
    if not isinstance(out, BinSums):
        raise ValueError(f"out: expected a BinSums or None, found {type(out).__name__}")
    for name, dtype in (("sums", np.float64), ("n_valid", np.int32), ("n_seen", np.int32)):
        a = getattr(out, name)
        if array_module(a) is not xp:
            raise ValueError(f"out.{name}: expected a {xp.__name__} array on the device of values, "
                             f"found {type(a).__module__}.{type(a).__name__}")
        if tuple(a.shape) != shape or a.dtype != dtype:
            raise ValueError(f"out.{name}: expected shape {shape} and dtype {np.dtype(dtype)} (the "
                             f"window), found shape {tuple(a.shape)} and dtype {a.dtype}")


def _check_window(window) -> None:
    """A target window: any object with ``north, west, res`` (degrees) and ``n_lat, n_lon`` cells
    (``ciml_ter.grid.GridWindow``)."""
    for name, check in (("north", _check_finite), ("west", _check_finite), ("res", _check_positive),
                        ("n_lat", _check_count), ("n_lon", _check_count)):
        if not hasattr(window, name):
            raise ValueError(f"window: expected north, west, res, n_lat and n_lon, found a "
                             f"{type(window).__name__} without {name}")
        check(f"window.{name}", getattr(window, name))


def bin_sinusoidal(values, tile: SinusoidalTile, window, out: BinSums | None = None) -> BinSums:
    """Add the pixels of one sinusoidal tile into the cells of ``window``.

    ``values`` (rows, cols), float32 or float64, units kept; NaN = invalid (fill or rejected by
    QC). Per cell: ``n_seen`` counts the on-globe pixels whose centre falls in it, ``n_valid``
    the valid ones and ``sums`` adds their values. With ``out`` the sums accumulate into it in
    place (several tiles into one window) and it is returned; otherwise new zeroed arrays on the
    device of ``values`` are. NumPy: numba CPU kernel; CuPy: CUDA kernel.
    """
    xp = array_module(values)
    if not isinstance(tile, SinusoidalTile):
        raise ValueError(f"tile: expected a SinusoidalTile, found {type(tile).__name__}")
    _check_window(window)
    if values.ndim != 2:
        raise ValueError(f"values: expected a 2-D array (rows, cols), found {values.ndim} dimensions")
    if values.dtype not in (np.float32, np.float64):
        raise ValueError(f"values: expected a float32 or float64 array, found dtype {values.dtype}")
    shape = (window.n_lat, window.n_lon)
    if out is None:
        out = BinSums(xp.zeros(shape, dtype=np.float64), xp.zeros(shape, dtype=np.int32),
                      xp.zeros(shape, dtype=np.int32))
    else:
        _check_out(out, shape, xp)
    if xp is np:
        _bin_cpu(values, float(tile.ul_x_m), float(tile.ul_y_m), float(tile.pixel_m), float(tile.radius_m),
                 float(window.north), float(window.west), float(window.res), out.sums, out.n_valid, out.n_seen)
    else:
        launch_bin_gpu(values, tile, window, out)
    return out


def binned_mean(sums: BinSums, min_valid_fraction: float = 0.0) -> tuple:
    """Mean of the valid pixels per cell (their area mean), float32, and ``n_valid`` (int32).

    NaN where a cell has no valid pixel or n_valid / n_seen < ``min_valid_fraction`` (0-1).
    """
    if not isinstance(sums, BinSums):
        raise ValueError(f"sums: expected a BinSums, found {type(sums).__name__}")
    if not isinstance(min_valid_fraction, numbers.Real) or not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction: expected a fraction in [0, 1], found {min_valid_fraction!r}")
    xp = array_module(*sums)
    n_valid = sums.n_valid
    keep = (n_valid > 0) & (n_valid / xp.maximum(sums.n_seen, 1) >= min_valid_fraction)
    mean = xp.where(keep, sums.sums / xp.maximum(n_valid, 1), np.nan).astype(np.float32)
    return mean, n_valid.copy()
