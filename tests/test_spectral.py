"""NIRv and LSWI: closed-form values, range checks, CPU vs CUDA kernel."""
from __future__ import annotations

import numpy as np
import pytest

from ciml_ter import kernels


def _reflectances(shape, seed=0):
    rng = np.random.default_rng(seed)
    red = rng.uniform(0.0, 0.3, shape)
    nir = rng.uniform(0.0, 0.6, shape)
    swir = rng.uniform(0.0, 0.5, shape)
    nir.flat[:5] = [1.2, -0.1, np.nan, 0.0, 0.4]
    red.flat[:5] = [0.1, 0.1, 0.1, 0.0, 1.5]
    return nir, red, swir


def test_nirv_matches_formula_and_counts_invalid():
    nir, red, _ = _reflectances((30, 7))
    result = kernels.nirv(nir, red)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (nir - red) / (nir + red) * nir
    bad = (nir < 0) | (nir > 1) | (red < 0) | (red > 1)
    expected[bad] = np.nan
    np.testing.assert_allclose(result.value, expected, rtol=1e-12, equal_nan=True)
    assert result.n_invalid == 3  # 1.2, -0.1 and red 1.5; the NaN and 0/0 are not "invalid"
    assert np.isnan(result.value.flat[2]) and np.isnan(result.value.flat[3])


def test_lswi_closed_form():
    value, n_bad = kernels.lswi(np.array([0.4, 0.3]), np.array([0.2, 0.3]))
    np.testing.assert_allclose(value, [0.2 / 0.6, 0.0])
    assert n_bad == 0


def test_float32_stays_float32():
    nir, red, _ = _reflectances((10,))
    assert kernels.nirv(nir.astype(np.float32), red.astype(np.float32)).value.dtype == np.float32


@pytest.mark.parametrize("args, message", [
    ((np.ones(3, dtype=np.int64), np.ones(3)), "nir: expected a floating-point array"),
    ((np.ones(3), np.ones(4)), "mismatched shapes: nir \\(3,\\), red \\(4,\\)"),
])
def test_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        kernels.nirv(*args)


@pytest.mark.cudasim
def test_cuda_kernel_matches_cpu_under_simulator():
    from numba import config

    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1"
    from ciml_ter.kernels.spectral import launch_index_gpu

    nir, red, swir = _reflectances((40,))
    for other, scale, cpu in ((red, True, kernels.nirv(nir, red)), (swir, False, kernels.lswi(nir, swir))):
        value, n_bad = launch_index_gpu(nir, other, scale)
        np.testing.assert_allclose(value, cpu.value, rtol=1e-12, equal_nan=True)
        assert n_bad == cpu.n_invalid


@pytest.mark.gpu
def test_cupy_path_matches_cpu():
    import cupy as cp

    nir, red, _ = _reflectances((200, 50))
    gpu = kernels.nirv(cp.asarray(nir), cp.asarray(red))
    cpu = kernels.nirv(nir, red)
    np.testing.assert_allclose(gpu.value.get(), cpu.value, rtol=1e-12, equal_nan=True)
    assert gpu.n_invalid == cpu.n_invalid
