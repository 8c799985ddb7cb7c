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

Precision: float64 arithmetic by default; ``compute_dtype=np.float32`` runs the CPU and CUDA
kernels in float32 (for GPUs with slow float64). On realistic daily NIRv, float32 envelope and
SCVTG together moved Vtop ... V25 by at most 1.2e-7 (index units), L75 ... L25 by 1.5e-4 days
and Area_NIRv by 1.1e-4 (index units x day, of 10-130), tested against bounds of 1e-6, 2e-3
and 1e-3 in tests/kernels.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_compute_dtype, check_float, cuda_grid
from ._numeric import CHUNK, CPU, GPU

DEFAULT_LEVELS = (0.75, 0.5, 0.25)
DEFAULT_SHARE = 0.05


def _build(jit, helpers):
    select = helpers.select

    def scvtg_pixel(v, levels, k, out, buf):
        # Arithmetic in the arrays' dtype: constants are made with ``real`` (see _numeric).
        real = out.dtype.type
        n = v.shape[0]
        n_lev = levels.shape[0]
        area = real(0)
        for i in range(n):
            if math.isnan(v[i]):
                for j in range(out.shape[0]):
                    out[j] = np.nan
                return
            buf[i] = v[i]
            area += v[i]
        select(buf, n, k - 1)
        bottom = real(0)
        for i in range(k):
            bottom += buf[i]
        bottom /= real(k)
        select(buf, n, n - k)
        top = real(0)
        for i in range(n - k, n):
            top += buf[i]
        top /= real(k)
        out[0] = top
        out[1] = bottom
        for j in range(n_lev):
            level = bottom + levels[j] * (top - bottom)
            first = real(np.nan)
            last = real(np.nan)
            for i in range(n - 1):
                a = v[i]
                b = v[i + 1]
                if (a < level) != (b < level):
                    t = real(i) + (level - a) / (b - a)
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
        buf = np.empty(n_time, dtype=v.dtype)
        for p in range(c * CHUNK, min(n_pix, (c + 1) * CHUNK)):
            _pixel_cpu(v[:, p], levels, k, out[:, p], buf)


@cuda.jit
def _scvtg_gpu(v, levels, k, out, buf):
    p = cuda.grid(1)
    if p < v.shape[1]:
        _pixel_gpu(v[:, p], levels, k, out[:, p], buf[:, p])


def launch_scvtg_gpu(v, levels, k: int):
    """Run the CUDA kernel on ``v`` of shape (days, pixels), float32 or float64, on the device
    that holds it (CuPy, or NumPy under the CUDA simulator); computes in ``v``'s dtype and
    returns (3 + 2 * len(levels), pixels) rows in the order of ``scvtg``, in that dtype."""
    xp = array_module(v)
    out = xp.empty((3 + 2 * len(levels), v.shape[1]), dtype=v.dtype)
    buf = xp.empty_like(v)
    blocks, threads = cuda_grid(v.shape[1])
    _scvtg_gpu[blocks, threads](v, xp.asarray(levels, dtype=v.dtype), k, out, buf)
    return out


def scvtg_names(levels) -> list[str]:
    """Names of the SCVTG outputs for ``levels``: Vtop, Vbottom, V75..., L75..., Area_NIRv."""
    tags = [str(round(100 * level)) for level in levels]
    return ["Vtop", "Vbottom"] + [f"V{t}" for t in tags] + [f"L{t}" for t in tags] + ["Area_NIRv"]


def scvtg(envelope, levels=DEFAULT_LEVELS, share: float = DEFAULT_SHARE,
          compute_dtype=np.float64) -> dict:
    """The nine SCVTG variables of one year of daily envelope, shape (days, ...), days 365/366.

    Returns a dict name -> array of shape (...) and dtype ``compute_dtype`` (float64 or
    float32, the precision of the arithmetic, see above): ``Vtop``, ``Vbottom``, ``V75``,
    ``V50``, ``V25`` (index units), ``L75``, ``L50``, ``L25`` (days), ``Area_NIRv``
    (index units x day); the V/L names follow ``levels``. ``share`` is the fraction of days
    averaged for Vtop and Vbottom.
    """
    xp = array_module(envelope)
    check_float("envelope", envelope)
    real = check_compute_dtype(compute_dtype)
    n_time = envelope.shape[0] if envelope.ndim else 0
    if n_time not in (365, 366):
        raise ValueError(f"envelope: expected 365 or 366 days on axis 0, found {n_time}")
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0 or np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"levels: expected a sequence of values in [0, 1], found {levels}")
    if not 0.0 < share <= 0.5:
        raise ValueError(f"share: expected a fraction in (0, 0.5], found {share}")
    k = max(1, math.floor(share * n_time + 0.5))
    v = xp.ascontiguousarray(envelope.reshape(n_time, -1), dtype=real)
    if xp is np:
        out = np.empty((3 + 2 * levels.size, v.shape[1]), dtype=real)
        _scvtg_cpu(v, levels.astype(real), k, out)
    else:
        out = launch_scvtg_gpu(v, levels, k)
    shape = envelope.shape[1:]
    return {name: out[i].reshape(shape) for i, name in enumerate(scvtg_names(levels))}
