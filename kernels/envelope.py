"""Savitzky-Golay upper envelope of gappy daily vegetation-index series (Chen et al. 2004).

Per pixel: (1) gaps (NaN) are filled by linear interpolation, held constant before the first
and after the last valid value; (2) a Savitzky-Golay fit of the filled series N0 is the
long-term trend; (3) weights are 1 where N0 >= trend and 1 - |N0 - trend| / d_max below it
(d_max = largest |N0 - trend| of the pixel); (4) each iteration builds a new series that keeps
N0 where N0 >= the current fit and the fit elsewhere, and refits it; (5) the fitting-effect
index F = sum(weight * |fit - N0|) must decrease, otherwise the iteration stops and the
previous fit is kept; at most ``max_iter`` iterations. ``max_iter=0`` returns the trend fit,
i.e. ``scipy.signal.savgol_filter(N0, window, order)`` (edges: ``mode="interp"``).

Defaults for daily data: ``window=61`` days (odd; about two months, long enough to bridge
cloudy spells, short enough to follow green-up and senescence), ``order=3`` and
``max_iter=10``. The same window and order serve the trend fit and the refits.

Precision: float64 arithmetic by default, so results match scipy to 1e-12 and do not depend on
the device. ``compute_dtype=np.float32`` runs the CPU and CUDA kernels in float32 (for GPUs
with slow float64, e.g. consumer cards at 1/64 rate); on realistic daily NIRv (0-0.6, clouds,
window 61, order 3, max_iter 10) it moved the envelope by at most 1.2e-7 NIRv units (about two
float32 rounding steps at 0.6), tested against a 1e-6 bound in tests/kernels.
"""
from __future__ import annotations

import numbers

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_compute_dtype, check_float, cuda_grid
from ._numeric import CHUNK, CPU, GPU, savgol_coefficients

DEFAULT_WINDOW = 61
DEFAULT_ORDER = 3
DEFAULT_MAX_ITER = 10


def _build(jit, helpers):
    fill = helpers.fill
    savgol = helpers.savgol

    def envelope_pixel(x, coef, max_iter, out, n0, wt, cur, fit):
        # Arithmetic in the arrays' dtype: constants are made with ``real`` (see _numeric).
        real = out.dtype.type
        zero = real(0)
        one = real(1)
        n = x.shape[0]
        if fill(x, n0) == 0:
            for i in range(n):
                out[i] = np.nan
            return
        savgol(n0, coef, out)
        if max_iter == 0:
            return
        d_max = zero
        for i in range(n):
            d_max = max(d_max, abs(n0[i] - out[i]))
        for i in range(n):
            if n0[i] >= out[i] or d_max == zero:
                wt[i] = one
            else:
                wt[i] = one - (out[i] - n0[i]) / d_max
        best = real(np.inf)
        for _ in range(max_iter):
            for i in range(n):
                cur[i] = max(n0[i], out[i])
            savgol(cur, coef, fit)
            effect = zero
            for i in range(n):
                effect += wt[i] * abs(fit[i] - n0[i])
            if effect >= best:
                return
            best = effect
            for i in range(n):
                out[i] = fit[i]

    return jit(envelope_pixel)


_pixel_cpu = _build(njit, CPU)
_pixel_gpu = _build(cuda.jit(device=True), GPU)


@njit(parallel=True, cache=True)
def _envelope_cpu(x, coef, max_iter, out):
    n_time, n_pix = x.shape
    for c in prange((n_pix + CHUNK - 1) // CHUNK):
        n0 = np.empty(n_time, dtype=x.dtype)
        wt = np.empty(n_time, dtype=x.dtype)
        cur = np.empty(n_time, dtype=x.dtype)
        fit = np.empty(n_time, dtype=x.dtype)
        for p in range(c * CHUNK, min(n_pix, (c + 1) * CHUNK)):
            _pixel_cpu(x[:, p], coef, max_iter, out[:, p], n0, wt, cur, fit)


@cuda.jit
def _envelope_gpu(x, coef, max_iter, out, n0, wt, cur, fit):
    p = cuda.grid(1)
    if p < x.shape[1]:
        _pixel_gpu(x[:, p], coef, max_iter, out[:, p], n0[:, p], wt[:, p], cur[:, p], fit[:, p])


def launch_envelope_gpu(x, coef, max_iter: int):
    """Run the CUDA kernel on ``x`` of shape (time, pixels), float32 or float64, on the device
    that holds it (CuPy, or NumPy under the CUDA simulator); computes in ``x``'s dtype (``coef``
    is cast to it) and returns the envelope, same shape and dtype, on that device."""
    xp = array_module(x)
    out, n0, wt, cur, fit = (xp.empty_like(x) for _ in range(5))
    blocks, threads = cuda_grid(x.shape[1])
    _envelope_gpu[blocks, threads](x, xp.asarray(coef, dtype=x.dtype), max_iter, out, n0, wt,
                                   cur, fit)
    return out


def _check_params(n_time, window, order, max_iter):
    for name, value in (("window", window), ("order", order), ("max_iter", max_iter)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, found {value!r}")
    if window % 2 == 0 or window <= order:
        raise ValueError(f"window: expected an odd number of days greater than order={order}, "
                         f"found {window}")
    if n_time < window:
        raise ValueError(f"y: expected at least window={window} time steps on axis 0, "
                         f"found {n_time}")


def sg_upper_envelope(y, window: int = DEFAULT_WINDOW, order: int = DEFAULT_ORDER,
                      max_iter: int = DEFAULT_MAX_ITER, compute_dtype=np.float64):
    """Upper envelope of a daily index stack ``y`` of shape (time, ...), NaN = gap.

    Returns an array of the same shape and dtype, in the units of ``y`` (gaps filled; a
    pixel with no valid value stays all NaN). ``window`` (days, odd) and ``order`` are the
    Savitzky-Golay parameters, ``max_iter`` the iteration limit (0: trend fit only).
    ``compute_dtype`` (float64 or float32) is the precision of the arithmetic, see above.
    """
    xp = array_module(y)
    check_float("y", y)
    real = check_compute_dtype(compute_dtype)
    if y.ndim < 1:
        raise ValueError("y: expected an array with a time axis 0, found a scalar")
    n_time = y.shape[0]
    _check_params(n_time, window, order, max_iter)
    coef = savgol_coefficients(int(window), int(order)).astype(real)
    x = xp.ascontiguousarray(y.reshape(n_time, -1), dtype=real)
    if xp is np:
        env = np.empty_like(x)
        _envelope_cpu(x, coef, int(max_iter), env)
    else:
        env = launch_envelope_gpu(x, coef, int(max_iter))
    return env.reshape(y.shape).astype(y.dtype, copy=False)
