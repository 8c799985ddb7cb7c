"""Spectral indices from surface reflectance (unitless, valid range [0, 1]).

NIRv = NDVI x NIR = (NIR - red) / (NIR + red) x NIR, and
LSWI = (NIR - SWIR1) / (NIR + SWIR1). A reflectance outside [0, 1] makes the index NaN and is
counted; a NaN reflectance gives NaN and is not counted as invalid.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import cuda, njit, prange

from ._dispatch import array_module, check_float, check_same_shape, cuda_grid


class IndexResult(NamedTuple):
    """A spectral index and the number of elements whose reflectances fell outside [0, 1]."""

    value: object  # array, same shape as the inputs, unitless
    n_invalid: int


@njit(inline="always")
def _index(a, b, scale_by_a):
    """Normalised difference (a - b) / (a + b), times a when scale_by_a; NaN if invalid."""
    d = a + b
    if d == 0.0:
        return np.nan
    v = (a - b) / d
    return v * a if scale_by_a else v


@njit(inline="always")
def _out_of_range(a, b):
    return a < 0.0 or a > 1.0 or b < 0.0 or b > 1.0


@njit(parallel=True, cache=True)
def _index_cpu(a, b, scale_by_a, out):
    n_bad = 0
    for i in prange(a.size):
        if _out_of_range(a[i], b[i]):
            out[i] = np.nan
            n_bad += 1
        else:
            out[i] = _index(a[i], b[i], scale_by_a)
    return n_bad


@cuda.jit
def _index_gpu(a, b, scale_by_a, out, n_bad):
    i = cuda.grid(1)
    if i < a.size:
        ai, bi = a[i], b[i]
        if ai < 0.0 or ai > 1.0 or bi < 0.0 or bi > 1.0:
            out[i] = np.nan
            cuda.atomic.add(n_bad, 0, 1)
        else:
            d = ai + bi
            if d == 0.0:
                out[i] = np.nan
            else:
                v = (ai - bi) / d
                out[i] = v * ai if scale_by_a else v


def launch_index_gpu(a, b, scale_by_a: bool):
    """Run the CUDA kernel on flat arrays ``a``, ``b`` on the device that holds them (CuPy, or
    NumPy under the CUDA simulator); returns the index there and the invalid count."""
    xp = array_module(a, b)
    out = xp.empty_like(a)
    n_bad = xp.zeros(1, dtype=np.int64)
    blocks, threads = cuda_grid(a.size)
    _index_gpu[blocks, threads](a, b, scale_by_a, out, n_bad)
    return out, int(n_bad[0])


def _normalised_difference(name_a, a, name_b, b, scale_by_a):
    xp = array_module(a, b)
    check_float(name_a, a)
    check_float(name_b, b)
    check_same_shape(**{name_a: a, name_b: b})
    dtype = np.result_type(a.dtype, b.dtype)
    fa = xp.ascontiguousarray(a, dtype=dtype).ravel()
    fb = xp.ascontiguousarray(b, dtype=dtype).ravel()
    if xp is np:
        out = np.empty_like(fa)
        n_bad = int(_index_cpu(fa, fb, scale_by_a, out))
    else:
        out, n_bad = launch_index_gpu(fa, fb, scale_by_a)
    return IndexResult(out.reshape(a.shape), n_bad)


def nirv(nir, red) -> IndexResult:
    """NIRv (unitless) from NIR and red reflectance arrays of one shape (unitless, 0-1)."""
    return _normalised_difference("nir", nir, "red", red, True)


def lswi(nir, swir1) -> IndexResult:
    """LSWI (unitless) from NIR and SWIR1 reflectance arrays of one shape (unitless, 0-1)."""
    return _normalised_difference("nir", nir, "swir1", swir1, False)
