"""Per-pixel Mann-Kendall test and Theil-Sen slope on a (time, ...) stack, NaNs dropped.

Mann-Kendall follows pymannkendall's ``original_test``: S = sum over pairs of sign(y_j - y_i),
tie-corrected var(S) = (n(n-1)(2n+5) - sum_ties t(t-1)(2t+5)) / 18, Z = (S - sign(S)) /
sqrt(var(S)) (0 when S = 0), two-sided p = erfc(|Z| / sqrt(2)), tau = S / (n(n-1)/2).
Theil-Sen uses the real time positions (index along axis 0) of the valid values: slope =
median over pairs of (y_j - y_i) / (t_j - t_i), in units of y per time step, intercept =
median(y_valid) - slope * median(t_valid) (value at time index 0), as
``scipy.stats.theilslopes(y_valid, t_valid)``. Fewer than two valid values give NaN.

Arithmetic is float64 on both devices (a few annual values per pixel are little work, even
at float64's 1/64 rate on consumer GPUs). The GPU needs scratch for every pixel it runs at
once, so it runs the pixels in chunks whose scratch fits in ``scratch_bytes``.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_float, cuda_grid
from ._numeric import CHUNK, CPU, GPU, transpose_tile

_FIELDS = 7
# GPU scratch per chunk of pixels (bytes). 20 years need 1840 bytes per pixel: a 0.05 deg
# globe (7200 x 3600 pixels, 48 GB of scratch at once; 13 GB for its 7 M land pixels) runs
# in 89 chunks of 291,777 pixels.
DEFAULT_SCRATCH_BYTES = 512 * 2**20


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


def pixels_per_chunk(n_time: int, scratch_bytes: int) -> int:
    """Most pixels whose GPU scratch fits in ``scratch_bytes`` (bytes): per pixel, float64
    room for the pair slopes (max(n, n(n-1)/2) values) and the valid values and times (n each).
    """
    per_pixel = 8 * (_n_pairs(n_time) + 2 * n_time)
    if (not isinstance(scratch_bytes, numbers.Integral) or isinstance(scratch_bytes, bool)
            or scratch_bytes < per_pixel):
        raise ValueError(f"scratch_bytes: expected an integer of at least {per_pixel} (the "
                         f"scratch of one pixel of {n_time} time steps), found {scratch_bytes!r}")
    return int(scratch_bytes) // per_pixel


def pixel_chunks(n_pix: int, per_chunk: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) pixel ranges of at most ``per_chunk`` pixels covering
    0..n_pix once."""
    return [(start, min(n_pix, start + per_chunk)) for start in range(0, n_pix, per_chunk)]


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
def _trend_gpu(y, first, out, yv, tv, buf):
    q = cuda.grid(1)
    p = first + q
    if q < buf.shape[1] and p < y.shape[1]:
        _pixel_gpu(y[:, p], out[:, p], yv[:, q], tv[:, q], buf[:, q])


def launch_trend_gpu(y, scratch_bytes: int = DEFAULT_SCRATCH_BYTES):
    """Run the CUDA kernel on ``y`` of shape (time, pixels), float64, on the device that holds
    it (CuPy, or NumPy under the CUDA simulator); returns (7, pixels) rows in ``TrendResult``
    order on that device. Pixels go in chunks whose scratch fits in ``scratch_bytes``."""
    xp = array_module(y)
    n_time, n_pix = y.shape
    per_chunk = pixels_per_chunk(n_time, scratch_bytes)
    width = min(n_pix, per_chunk)
    out = xp.empty((_FIELDS, n_pix), dtype=np.float64)
    yv = xp.empty((n_time, width), dtype=np.float64)
    tv = xp.empty((n_time, width), dtype=np.float64)
    buf = xp.empty((_n_pairs(n_time), width), dtype=np.float64)
    for start, stop in pixel_chunks(n_pix, per_chunk):
        blocks, threads = cuda_grid(stop - start)
        _trend_gpu[blocks, threads](y, start, out, yv, tv, buf)
    return out


def mann_kendall_theil_sen(y, scratch_bytes: int = DEFAULT_SCRATCH_BYTES) -> TrendResult:
    """Mann-Kendall statistics and Theil-Sen line per pixel of ``y`` (time, ...), NaN = gap.

    Time is the index along axis 0 (e.g. years); each field of the result has shape (...).
    ``scratch_bytes`` bounds the GPU scratch (bytes; default 512 MiB): the GPU runs the pixels
    in chunks that fit; the CPU needs one pixel's scratch per thread, but checks it as well.
    """
    xp = array_module(y)
    check_float("y", y)
    n_time = y.shape[0] if y.ndim else 0
    if n_time < 2:
        raise ValueError(f"y: expected at least 2 time steps on axis 0, found {n_time}")
    pixels_per_chunk(n_time, scratch_bytes)  # checked on both devices
    yy = xp.ascontiguousarray(y.reshape(n_time, -1), dtype=np.float64)
    if xp is np:
        out = np.empty((_FIELDS, yy.shape[1]))
        _trend_cpu(yy, _n_pairs(n_time), out)
    else:
        out = launch_trend_gpu(yy, scratch_bytes)
    return TrendResult(*(out[i].reshape(y.shape[1:]) for i in range(_FIELDS)))
