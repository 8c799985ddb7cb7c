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
def test_float32_kernels_match_float32_cpu():
    """With float32 input the CUDA kernels compute in float32, as the CPU kernels do with
    compute_dtype=float32 (the CPU may reassociate sums: agreement to a few float32 steps)."""
    _require_simulator()
    from ciml_ter.kernels._numeric import savgol_coefficients
    from ciml_ter.kernels.envelope import launch_envelope_gpu
    from ciml_ter.kernels.scvtg import launch_scvtg_gpu

    y = _cloudy_year(3, 8, days=40).astype(np.float32)
    y[:, 2] = np.nan
    gpu = launch_envelope_gpu(y, savgol_coefficients(9, 2), 4)
    cpu = kernels.sg_upper_envelope(y, window=9, order=2, max_iter=4, compute_dtype=np.float32)
    assert gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=2e-7, equal_nan=True)
    v = np.nan_to_num(_cloudy_year(2, 9), nan=0.1).astype(np.float32)
    gpu = launch_scvtg_gpu(v, np.array([0.75, 0.5, 0.25]), 18)
    cpu = np.stack(list(kernels.scvtg(v, compute_dtype=np.float32).values()))
    assert gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, rtol=1e-6)


def _trend_references(y):
    """pymannkendall's S, var(S), Z, p, tau and scipy's Theil-Sen line per pixel, shape (7, n)."""
    import pymannkendall as mk
    from scipy.stats import theilslopes

    rows = []
    for p in range(y.shape[1]):
        ok = ~np.isnan(y[:, p])
        if ok.sum() < 2:
            rows.append([np.nan] * 7)
            continue
        mk_ref = mk.original_test(y[:, p])
        line = theilslopes(y[ok, p], np.flatnonzero(ok).astype(float))
        rows.append([mk_ref.s, mk_ref.var_s, mk_ref.z, mk_ref.p, mk_ref.Tau, line.slope,
                     line.intercept])
    return np.array(rows).T


@pytest.mark.cudasim
def test_trend_kernel_in_chunks_matches_cpu_and_references():
    """Budgets of 1, 3 and 3.9 pixels' scratch (11, 4 and 4 launches) and the default (one)
    give the CPU kernel's results, which match pymannkendall and scipy.stats.theilslopes."""
    _require_simulator()
    from ciml_ter.kernels.trend import launch_trend_gpu

    y = np.concatenate([_trend_stack(2), _trend_stack(12)[:, :4], _trend_stack(13)[:, :2]],
                       axis=1)
    per_pixel = 8 * (15 * 14 // 2 + 2 * 15)  # pair slopes, valid values and times
    cpu = np.stack(kernels.mann_kendall_theil_sen(y))
    np.testing.assert_allclose(cpu, _trend_references(y), rtol=0, atol=1e-9, equal_nan=True)
    for budget in (per_pixel, 3 * per_pixel, 4 * per_pixel - 1, None):
        gpu = launch_trend_gpu(y) if budget is None else launch_trend_gpu(y, scratch_bytes=budget)
        np.testing.assert_allclose(gpu, cpu, rtol=1e-12, equal_nan=True)


def _launches():
    """Each launcher with small NumPy inputs and the shape of its (first) output."""
    from ciml_ter.kernels._numeric import savgol_coefficients
    from ciml_ter.kernels.composite import group_order, launch_composite_gpu
    from ciml_ter.kernels.envelope import launch_envelope_gpu
    from ciml_ter.kernels.resample import launch_resample_gpu
    from ciml_ter.kernels.scvtg import launch_scvtg_gpu
    from ciml_ter.kernels.spectral import launch_index_gpu
    from ciml_ter.kernels.trend import launch_trend_gpu

    x = np.random.default_rng(10).uniform(0.1, 0.5, (12, 2))
    year = np.nan_to_num(_cloudy_year(1, 11), nan=0.1)
    _, order, starts = group_order(np.repeat([1, 2, 3], 4))
    return [
        (launch_envelope_gpu, (x, savgol_coefficients(5, 2), 2), (12, 2)),
        (launch_scvtg_gpu, (year, np.array([0.5]), 18), (5, 1)),
        (launch_trend_gpu, (x,), (7, 2)),
        (launch_composite_gpu, (x, order, starts), (3, 2)),
        (launch_resample_gpu, (x.reshape(1, 4, 6), 2, 0, 0.5), (1, 2, 3)),
        (launch_index_gpu, (x[:, 0].copy(), x[:, 1].copy(), True), (12,)),
    ]


@pytest.mark.cudasim
def test_launchers_take_the_array_module_from_their_input():
    """No launcher has an ``xp`` argument that could default to NumPy: NumPy in, NumPy out."""
    _require_simulator()
    for launch, args, shape in _launches():
        out = launch(*args)
        first = out[0] if isinstance(out, tuple) else out
        assert type(first) is np.ndarray and first.shape == shape, launch.__name__
        with pytest.raises(TypeError, match="xp"):
            launch(*args, xp=np)


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
    env32_gpu = kernels.sg_upper_envelope(cp.asarray(y, dtype=np.float32), compute_dtype=np.float32)
    env32_cpu = kernels.sg_upper_envelope(y.astype(np.float32), compute_dtype=np.float32)
    assert env32_gpu.dtype == np.float32
    np.testing.assert_allclose(env32_gpu.get(), env32_cpu, rtol=0, atol=2e-7)
    np.testing.assert_allclose(env32_gpu.get(), env_cpu, rtol=0, atol=1e-6)
    for name, value in kernels.scvtg(env32_gpu, compute_dtype=np.float32).items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(value.get(), kernels.scvtg(env32_cpu, compute_dtype=np.float32)[name],
                                   rtol=1e-5, equal_nan=True)
    stack = np.concatenate([_trend_stack(s) for s in range(6, 106)], axis=1)  # 500 pixels
    for scratch in (8 * 135 * 7, 512 * 2**20):  # 7 pixels per chunk, and one chunk
        for a, b in zip(kernels.mann_kendall_theil_sen(cp.asarray(stack), scratch_bytes=scratch),
                        kernels.mann_kendall_theil_sen(stack)):
            assert isinstance(a, cp.ndarray)
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
