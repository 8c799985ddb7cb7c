"""CUDA kernels under numba's simulator (cudasim) and CuPy paths on a real GPU (gpu), each
compared with the CPU kernel on the same small inputs."""
from __future__ import annotations

import numpy as np
import pytest

from ciml_ter import kernels


def _require_simulator():
    from numba import config

    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1"


def _cloudy_year(n_pix, seed, days=365):
    rng = np.random.default_rng(seed)
    t = np.arange(days)[:, None]
    y = 0.05 + 0.3 * (0.5 - 0.5 * np.cos(2 * np.pi * (t - rng.uniform(-20, 20, n_pix)) / days))
    y[rng.random(y.shape) < 0.2] *= 0.5
    y[rng.random(y.shape) < 0.2] = np.nan
    return y


def _trend_stack(seed):
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(size=(15, 5)), 1)
    y[rng.random(y.shape) < 0.2] = np.nan
    y[:, 4] = np.nan
    return y


@pytest.mark.cudasim
def test_envelope_kernel_matches_cpu():
    _require_simulator()
    from ciml_ter.kernels._numeric import savgol_coefficients
    from ciml_ter.kernels.envelope import launch_envelope_gpu

    y = _cloudy_year(3, 0, days=40)
    y[:, 2] = np.nan
    for max_iter in (0, 4):
        gpu = launch_envelope_gpu(y, savgol_coefficients(9, 2), max_iter)
        cpu = kernels.sg_upper_envelope(y, window=9, order=2, max_iter=max_iter)
        np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.cudasim
def test_scvtg_kernel_matches_cpu():
    _require_simulator()
    from ciml_ter.kernels.scvtg import launch_scvtg_gpu

    v = np.nan_to_num(_cloudy_year(2, 1, days=366), nan=0.1)
    v[:, 1] = 0.2  # flat year: L = NaN
    gpu = launch_scvtg_gpu(v, np.array([0.75, 0.5, 0.25]), 18)
    cpu = kernels.scvtg(v)
    np.testing.assert_allclose(gpu, np.stack(list(cpu.values())), rtol=1e-12, equal_nan=True)


@pytest.mark.cudasim
def test_trend_kernel_matches_cpu():
    _require_simulator()
    from ciml_ter.kernels.trend import launch_trend_gpu

    y = _trend_stack(2)
    gpu = launch_trend_gpu(y)
    cpu = kernels.mann_kendall_theil_sen(y)
    np.testing.assert_allclose(gpu, np.stack(cpu), rtol=1e-12, equal_nan=True)


@pytest.mark.cudasim
def test_composite_kernel_matches_cpu():
    _require_simulator()
    from ciml_ter.kernels.composite import group_order, launch_composite_gpu

    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 3))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:4, 0] = np.nan
    months = np.repeat(np.arange(1, 7), 4)
    _, order, starts = group_order(months)
    med, count = launch_composite_gpu(x, order, starts)
    cpu = kernels.monthly_median(x, months)
    np.testing.assert_allclose(med, cpu.median, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(count, cpu.count)


@pytest.mark.cudasim
def test_resample_kernel_matches_cpu():
    _require_simulator()
    from ciml_ter.kernels.resample import METHODS, launch_resample_gpu

    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, size=(1, 4, 6)).astype(float)
    x[rng.random(x.shape) < 0.3] = np.nan
    for code, method in enumerate(METHODS):
        gpu = launch_resample_gpu(x, 2, code, 0.5)
        cpu = kernels.block_resample(x, 2, method, 0.5)
        np.testing.assert_allclose(gpu, cpu, rtol=1e-12, equal_nan=True)


@pytest.mark.gpu
def test_cupy_paths_match_cpu():
    cp = pytest.importorskip("cupy")
    y = _cloudy_year(500, 5)
    env_cpu = kernels.sg_upper_envelope(y)
    env_gpu = kernels.sg_upper_envelope(cp.asarray(y))
    np.testing.assert_allclose(env_gpu.get(), env_cpu, atol=1e-10)
    for name, value in kernels.scvtg(env_gpu).items():
        np.testing.assert_allclose(value.get(), kernels.scvtg(env_cpu)[name], atol=1e-8,
                                   equal_nan=True)
    stack = _trend_stack(6)
    for a, b in zip(kernels.mann_kendall_theil_sen(cp.asarray(stack)),
                    kernels.mann_kendall_theil_sen(stack)):
        np.testing.assert_allclose(a.get(), b, rtol=1e-12, equal_nan=True)
    months = np.repeat(np.arange(1, 13), 31)[:365]
    med = kernels.monthly_median(cp.asarray(y), months)
    np.testing.assert_allclose(med.median.get(), kernels.monthly_median(y, months).median,
                               equal_nan=True)
    grid = np.random.default_rng(7).normal(size=(2, 20, 30))
    for method in ("mean", "median", "mode"):
        np.testing.assert_allclose(kernels.block_resample(cp.asarray(grid), 5, method).get(),
                                   kernels.block_resample(grid, 5, method), rtol=1e-12)
    lat = np.arange(-89.75, 90, 0.5)
    lon = np.arange(-179.75, 180, 0.5)
    np.testing.assert_allclose(kernels.pixel_area(cp.asarray(lat), cp.asarray(lon)).get(),
                               kernels.pixel_area(lat, lon), rtol=1e-12)
