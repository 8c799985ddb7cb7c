"""Per-pixel Mann-Kendall test and Theil-Sen slope on a (time, ...) stack, NaNs dropped.

Mann-Kendall follows pymannkendall's ``original_test``: S = sum over pairs of sign(y_j - y_i),
tie-corrected var(S) = (n(n-1)(2n+5) - sum_ties t(t-1)(2t+5)) / 18, Z = (S - sign(S)) /
sqrt(var(S)) (0 when S = 0), two-sided p = erfc(|Z| / sqrt(2)), tau = S / (n(n-1)/2).
Theil-Sen uses the real time positions (index along axis 0) of the valid values: slope =
median over pairs of (y_j - y_i) / (t_j - t_i), in units of y per time step, intercept =
median(y_valid) - slope * median(t_valid) (value at time index 0), as
``scipy.stats.theilslopes(y_valid, t_valid)``. Fewer than two valid values give NaN.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_float, cuda_grid
from ._numeric import CHUNK, CPU, GPU, transpose_tile

_FIELDS = 7


class TrendResult(NamedTuple):
    """Trend statistics per pixel, each a float64 array of the stack's non-time shape."""

    s: object  # Mann-Kendall S
    var_s: object  # tie-corrected variance of S
    z: object  # normal score
    p: object  # two-sided p-value
    tau: object  # Kendall tau
    slope: object  # Theil-Sen slope, units of y per time step
    intercept: object  # Theil-Sen intercept at time index 0, units of y


def _build(jit, helpers):
    median = helpers.median

    def trend_pixel(y, out, yv, tv, buf):
        n = 0
        for i in range(y.shape[0]):
            if not math.isnan(y[i]):
                yv[n] = y[i]
                tv[n] = i
                n += 1
        if n < 2:
            for j in range(out.shape[0]):
                out[j] = np.nan
            return
        # One pass over the pairs i < j: S, the slopes, and e_i = number of later values
        # equal to y_i. A tie group of size t has e = t-1, ..., 0, so its t(t-1)(2t+5) term
        # equals the sum of 18 e + 6 e (e - 1) over its members.
        s = 0
        ties = 0
        m = 0
        for i in range(n):
            equal = 0
            for j in range(i + 1, n):
                d = yv[j] - yv[i]
                s += int(d > 0) - int(d < 0)
                equal += int(d == 0)
                buf[m] = d / (tv[j] - tv[i])
                m += 1
            ties += 18 * equal + 6 * equal * (equal - 1)
        var_s = (n * (n - 1.0) * (2 * n + 5) - ties) / 18.0
        if s > 0:
            z = (s - 1.0) / math.sqrt(var_s)
        elif s < 0:
            z = (s + 1.0) / math.sqrt(var_s)
        else:
            z = 0.0
        slope = median(buf, m)
        for i in range(n):
            buf[i] = yv[i]
        y_mid = median(buf, n)
        for i in range(n):
            buf[i] = tv[i]
        t_mid = median(buf, n)
        out[0] = s
        out[1] = var_s
        out[2] = z
        out[3] = math.erfc(abs(z) / math.sqrt(2.0))
        out[4] = s / (0.5 * n * (n - 1))
        out[5] = slope
        out[6] = y_mid - slope * t_mid

    return jit(trend_pixel)


_pixel_cpu = _build(njit, CPU)
_pixel_gpu = _build(cuda.jit(device=True), GPU)


def _n_pairs(n_time):
    return max(n_time, n_time * (n_time - 1) // 2)


@njit(parallel=True, cache=True)
def _trend_cpu(y, n_buf, out):
    n_time, n_pix = y.shape
    for c in prange((n_pix + CHUNK - 1) // CHUNK):
        tile = transpose_tile(y, c * CHUNK, min(n_pix, (c + 1) * CHUNK))
        yv = np.empty(n_time)
        tv = np.empty(n_time)
        buf = np.empty(n_buf)
        for q in range(tile.shape[0]):
            _pixel_cpu(tile[q], out[:, c * CHUNK + q], yv, tv, buf)


@cuda.jit
def _trend_gpu(y, out, yv, tv, buf):
    p = cuda.grid(1)
    if p < y.shape[1]:
        _pixel_gpu(y[:, p], out[:, p], yv[:, p], tv[:, p], buf[:, p])


def launch_trend_gpu(y, xp=np):
    """Run the CUDA kernel on ``y`` of shape (time, pixels), float64 (CuPy, or NumPy under the
    CUDA simulator); returns (7, pixels) rows in ``TrendResult`` order."""
    n_time, n_pix = y.shape
    out = xp.empty((_FIELDS, n_pix), dtype=np.float64)
    yv = xp.empty_like(y)
    tv = xp.empty_like(y)
    buf = xp.empty((_n_pairs(n_time), n_pix), dtype=np.float64)
    blocks, threads = cuda_grid(n_pix)
    _trend_gpu[blocks, threads](y, out, yv, tv, buf)
    return out


def mann_kendall_theil_sen(y) -> TrendResult:
    """Mann-Kendall statistics and Theil-Sen line per pixel of ``y`` (time, ...), NaN = gap.

    Time is the index along axis 0 (e.g. years); each field of the result has shape (...).
    """
    xp = array_module(y)
    check_float("y", y)
    n_time = y.shape[0] if y.ndim else 0
    if n_time < 2:
        raise ValueError(f"y: expected at least 2 time steps on axis 0, found {n_time}")
    yy = xp.ascontiguousarray(y.reshape(n_time, -1), dtype=np.float64)
    if xp is np:
        out = np.empty((_FIELDS, yy.shape[1]))
        _trend_cpu(yy, _n_pairs(n_time), out)
    else:
        out = launch_trend_gpu(yy, xp)
    return TrendResult(*(out[i].reshape(y.shape[1:]) for i in range(_FIELDS)))
