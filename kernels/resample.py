"""Block resampling of (..., y, x) grids to a coarser grid by an integer factor."""
from __future__ import annotations

import math
import numbers

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_float, cuda_grid
from ._numeric import CPU, GPU

METHODS = ("mean", "median", "mode")


def _build(jit, helpers):
    median = helpers.median
    sort = helpers.sort

    def block_value(x, b, oy, ox, f, method, min_valid, buf):
        n = 0
        for i in range(oy * f, oy * f + f):
            for j in range(ox * f, ox * f + f):
                v = x[b, i, j]
                buf[n] = v
                n += int(not math.isnan(v))
        if n == 0 or n < min_valid * f * f:
            return np.nan
        if method == 0:
            acc = 0.0
            for i in range(n):
                acc += buf[i]
            return acc / n
        if method == 1:
            return median(buf, n)
        sort(buf, n)
        best = buf[0]
        best_run = 0
        run = 0
        for i in range(n):
            run = run + 1 if i > 0 and buf[i] == buf[i - 1] else 1
            if run > best_run:
                best_run = run
                best = buf[i]
        return best

    return jit(block_value)


_block_cpu = _build(njit, CPU)
_block_gpu = _build(cuda.jit(device=True), GPU)


@njit(parallel=True, cache=True)
def _resample_cpu(x, f, method, min_valid, out):
    n_b, n_oy, n_ox = out.shape
    for r in prange(n_b * n_oy):
        b = r // n_oy
        oy = r % n_oy
        buf = np.empty(f * f)
        for ox in range(n_ox):
            out[b, oy, ox] = _block_cpu(x, b, oy, ox, f, method, min_valid, buf)


@cuda.jit
def _resample_gpu(x, f, method, min_valid, out, buf):
    c = cuda.grid(1)
    n_b, n_oy, n_ox = out.shape
    if c < n_b * n_oy * n_ox:
        b = c // (n_oy * n_ox)
        oy = (c // n_ox) % n_oy
        ox = c % n_ox
        out[b, oy, ox] = _block_gpu(x, b, oy, ox, f, method, min_valid, buf[:, c])


def launch_resample_gpu(x, factor: int, method: int, min_valid: float):
    """Run the CUDA kernel on ``x`` (bands, y, x), float64, on the device that holds it (CuPy,
    or NumPy under the CUDA simulator); ``method`` is the index in ``METHODS``. Returns
    (bands, y/f, x/f) on that device."""
    xp = array_module(x)
    n_b, n_y, n_x = x.shape
    out = xp.empty((n_b, n_y // factor, n_x // factor), dtype=np.float64)
    buf = xp.empty((factor * factor, out.size), dtype=np.float64)
    blocks, threads = cuda_grid(out.size)
    _resample_gpu[blocks, threads](x, factor, method, min_valid, out, buf)
    return out


def block_resample(x, factor: int, method: str = "mean", min_valid: float = 0.5):
    """Aggregate ``x`` (..., y, x) over factor x factor blocks; returns (..., y/f, x/f), float64.

    ``method``: "mean" or "median" (continuous variables) or "mode" (class maps stored as
    floats; ties go to the smallest class). NaN = missing. A block whose fraction of valid
    cells is below ``min_valid`` (0-1), or that has none, gives NaN.
    """
    xp = array_module(x)
    check_float("x", x)
    if not isinstance(factor, numbers.Integral) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"factor: expected a positive integer, found {factor!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, found {method!r}")
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid: expected a fraction in [0, 1], found {min_valid}")
    if x.ndim < 2:
        raise ValueError(f"x: expected at least 2 dimensions (..., y, x), found {x.ndim}")
    for axis in (-2, -1):
        if x.shape[axis] % factor:
            raise ValueError(f"x: axis {axis} has length {x.shape[axis]}, expected a multiple "
                             f"of factor={factor}")
    factor = int(factor)
    lead = x.shape[:-2]
    cube = xp.ascontiguousarray(x.reshape((-1,) + x.shape[-2:]), dtype=np.float64)
    code = METHODS.index(method)
    if xp is np:
        out = np.empty((cube.shape[0], cube.shape[1] // factor, cube.shape[2] // factor))
        _resample_cpu(cube, factor, code, float(min_valid), out)
    else:
        out = launch_resample_gpu(cube, factor, code, float(min_valid))
    return out.reshape(lead + out.shape[1:])
