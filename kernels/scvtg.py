"""SCVTG: seasonal characteristics of vegetation types and growth, from one year of envelope.

Per pixel, for a year of daily envelope values v (365 or 366 days, index units):
- Vtop, Vbottom: mean of the k largest / smallest values, k = max(1, round(share * days));
- Vxx = Vbottom + level * (Vtop - Vbottom) for each level (default 0.75, 0.5, 0.25);
- Lxx (days): time between the first and the last crossing of Vxx. Day i sits at time i; a
  crossing lies between days i and i + 1 when exactly one of v[i], v[i + 1] is below Vxx, at
  the linearly interpolated time. One crossing gives Lxx = 0; a level that is never crossed
  (a flat year, where Vtop = Vbottom) gives Lxx = NaN;
- Area_NIRv: sum of v over the year (index units x day).
A pixel with any NaN in its year gets NaN for all nine values.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_float, cuda_grid
from ._numeric import CHUNK, CPU, GPU

DEFAULT_LEVELS = (0.75, 0.5, 0.25)
DEFAULT_SHARE = 0.05


def _build(jit, helpers):
    select = helpers.select

    def scvtg_pixel(v, levels, k, out, buf):
        n = v.shape[0]
        n_lev = levels.shape[0]
        area = 0.0
        for i in range(n):
            if math.isnan(v[i]):
                for j in range(out.shape[0]):
                    out[j] = np.nan
                return
            buf[i] = v[i]
            area += v[i]
        select(buf, n, k - 1)
        bottom = 0.0
        for i in range(k):
            bottom += buf[i]
        bottom /= k
        select(buf, n, n - k)
        top = 0.0
        for i in range(n - k, n):
            top += buf[i]
        top /= k
        out[0] = top
        out[1] = bottom
        for j in range(n_lev):
            level = bottom + levels[j] * (top - bottom)
            first = np.nan
            last = np.nan
            for i in range(n - 1):
                a = v[i]
                b = v[i + 1]
                if (a < level) != (b < level):
                    t = i + (level - a) / (b - a)
                    if math.isnan(first):
                        first = t
                    last = t
            out[2 + j] = level
            out[2 + n_lev + j] = last - first
        out[2 + 2 * n_lev] = area

    return jit(scvtg_pixel)


_pixel_cpu = _build(njit, CPU)
_pixel_gpu = _build(cuda.jit(device=True), GPU)


@njit(parallel=True, cache=True)
def _scvtg_cpu(v, levels, k, out):
    n_time, n_pix = v.shape
    for c in prange((n_pix + CHUNK - 1) // CHUNK):
        buf = np.empty(n_time)
        for p in range(c * CHUNK, min(n_pix, (c + 1) * CHUNK)):
            _pixel_cpu(v[:, p], levels, k, out[:, p], buf)


@cuda.jit
def _scvtg_gpu(v, levels, k, out, buf):
    p = cuda.grid(1)
    if p < v.shape[1]:
        _pixel_gpu(v[:, p], levels, k, out[:, p], buf[:, p])


def launch_scvtg_gpu(v, levels, k: int, xp=np):
    """Run the CUDA kernel on ``v`` of shape (days, pixels), float64 (CuPy, or NumPy under the
    CUDA simulator); returns (3 + 2 * len(levels), pixels) rows in the order of ``scvtg``."""
    out = xp.empty((3 + 2 * len(levels), v.shape[1]), dtype=np.float64)
    buf = xp.empty_like(v)
    blocks, threads = cuda_grid(v.shape[1])
    _scvtg_gpu[blocks, threads](v, xp.asarray(levels, dtype=np.float64), k, out, buf)
    return out


def _names(levels):
    tags = [str(round(100 * level)) for level in levels]
    return ["Vtop", "Vbottom"] + [f"V{t}" for t in tags] + [f"L{t}" for t in tags] + ["Area_NIRv"]


def scvtg(envelope, levels=DEFAULT_LEVELS, share: float = DEFAULT_SHARE) -> dict:
    """The nine SCVTG variables of one year of daily envelope, shape (days, ...), days 365/366.

    Returns a dict name -> float64 array of shape (...): ``Vtop``, ``Vbottom``, ``V75``,
    ``V50``, ``V25`` (index units), ``L75``, ``L50``, ``L25`` (days), ``Area_NIRv``
    (index units x day); the V/L names follow ``levels``. ``share`` is the fraction of days
    averaged for Vtop and Vbottom.
    """
    xp = array_module(envelope)
    check_float("envelope", envelope)
    n_time = envelope.shape[0] if envelope.ndim else 0
    if n_time not in (365, 366):
        raise ValueError(f"envelope: expected 365 or 366 days on axis 0, found {n_time}")
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0 or np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"levels: expected a sequence of values in [0, 1], found {levels}")
    if not 0.0 < share <= 0.5:
        raise ValueError(f"share: expected a fraction in (0, 0.5], found {share}")
    k = max(1, math.floor(share * n_time + 0.5))
    v = xp.ascontiguousarray(envelope.reshape(n_time, -1), dtype=np.float64)
    if xp is np:
        out = np.empty((3 + 2 * levels.size, v.shape[1]))
        _scvtg_cpu(v, levels, k, out)
    else:
        out = launch_scvtg_gpu(v, levels, k, xp)
    shape = envelope.shape[1:]
    return {name: out[i].reshape(shape) for i, name in enumerate(_names(levels))}
