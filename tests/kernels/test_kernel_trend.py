"""Mann-Kendall and Theil-Sen per pixel against pymannkendall and scipy.stats.theilslopes."""
from __future__ import annotations

import numpy as np
import pymannkendall as mk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import theilslopes

from ciml_ter import kernels
from ciml_ter.kernels.trend import DEFAULT_SCRATCH_BYTES, pixel_chunks, pixels_per_chunk


def gappy_ties(n_time, n_pix, seed, nan_share=0.15):
    """Random series rounded to 1 decimal (ties) with NaN gaps and a trend."""
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(size=(n_time, n_pix)) + rng.normal(0, 0.1, n_pix) * np.arange(n_time)[:, None], 1)
    y[rng.random(y.shape) < nan_share] = np.nan
    return y


@pytest.mark.parametrize("n_time, seed", [(20, 0), (35, 1), (8, 2)])
def test_mann_kendall_matches_pymannkendall(n_time, seed):
    y = gappy_ties(n_time, 60, seed)
    y[:, 0] = 1.0  # all tied
    res = kernels.mann_kendall_theil_sen(y)
    for p in range(y.shape[1]):
        ref = mk.original_test(y[:, p])
        got = [res.s[p], res.var_s[p], res.z[p], res.p[p], res.tau[p]]
        np.testing.assert_allclose(got, [ref.s, ref.var_s, ref.z, ref.p, ref.Tau], rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_time, seed", [(20, 3), (41, 4)])
def test_theil_sen_uses_real_time_positions(n_time, seed):
    y = gappy_ties(n_time, 60, seed, nan_share=0.3)
    res = kernels.mann_kendall_theil_sen(y)
    t = np.arange(n_time, dtype=float)
    for p in range(y.shape[1]):
        ok = ~np.isnan(y[:, p])
        ref = theilslopes(y[ok, p], t[ok])
        np.testing.assert_allclose([res.slope[p], res.intercept[p]], [ref.slope, ref.intercept],
                                   rtol=0, atol=1e-9)


def test_theil_sen_agrees_with_sens_slope_without_gaps():
    y = gappy_ties(20, 30, 5, nan_share=0.0)
    res = kernels.mann_kendall_theil_sen(y)
    for p in range(y.shape[1]):
        ref = mk.sens_slope(y[:, p])
        np.testing.assert_allclose([res.slope[p], res.intercept[p]], [ref.slope, ref.intercept],
                                   rtol=0, atol=1e-9)


def test_gaps_change_the_slope_per_time_step():
    """y = 2 t sampled at t = 0, 1, 5, 6: the slope is 2 per step, not 2 after closing gaps."""
    y = np.array([0.0, 2.0, np.nan, np.nan, np.nan, 10.0, 12.0])
    res = kernels.mann_kendall_theil_sen(y)
    np.testing.assert_allclose([res.slope, res.intercept], [2.0, 0.0], atol=1e-12)


def test_too_few_values_give_nan_and_shape_is_kept():
    y = gappy_ties(12, 6, 6).reshape(12, 2, 3)
    y[:, 0, 0] = np.nan
    y[1:, 0, 1] = np.nan
    res = kernels.mann_kendall_theil_sen(y)
    assert all(a.shape == (2, 3) for a in res)
    assert all(np.isnan(a[0, 0]) and np.isnan(a[0, 1]) for a in res)
    assert np.isfinite(res.p[1]).all()


@pytest.mark.parametrize("y, message", [
    (np.ones((1, 3)), "y: expected at least 2 time steps on axis 0, found 1"),
    (np.ones((5, 3), dtype=np.int64), "y: expected a floating-point array"),
])
def test_bad_input(y, message):
    with pytest.raises(ValueError, match=message):
        kernels.mann_kendall_theil_sen(y)


def test_gpu_chunks_of_a_global_grid_fit_the_scratch_budget():
    """20 years at 0.05 deg: each pixel needs 190 pair slopes and 20 values and 20 times
    (float64, 1840 bytes); the chunks fill the 512 MiB default and cover every pixel once."""
    n_pix = 7200 * 3600
    budget = DEFAULT_SCRATCH_BYTES
    assert budget == 512 * 2**20
    per_chunk = pixels_per_chunk(20, budget)
    assert per_chunk * 1840 <= budget < (per_chunk + 1) * 1840
    chunks = pixel_chunks(n_pix, per_chunk)
    assert chunks[0][0] == 0 and chunks[-1][1] == n_pix
    assert all(stop == start for (_, stop), (start, _) in zip(chunks, chunks[1:]))
    assert all(0 < stop - start <= per_chunk for start, stop in chunks)
    assert len(chunks) == -(-n_pix // per_chunk)


def test_gpu_chunk_plan_edges():
    assert pixels_per_chunk(2, 48) == 1  # 2 time steps: the median scratch holds 2 values
    assert pixels_per_chunk(20, 1840 * 3 + 1839) == 3
    assert pixel_chunks(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert pixel_chunks(0, 3) == []


@pytest.mark.parametrize("scratch_bytes, found", [(1839, "1839"), (0, "0"), (2.0e9, "2000000000.0"),
                                                  (True, "True")])
def test_scratch_budget_must_hold_one_pixel(scratch_bytes, found):
    message = f"scratch_bytes: expected an integer of at least 1840 .* found {found}"
    with pytest.raises(ValueError, match=message):
        pixels_per_chunk(20, scratch_bytes)
    with pytest.raises(ValueError, match=message):
        kernels.mann_kendall_theil_sen(gappy_ties(20, 3, 7), scratch_bytes=scratch_bytes)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(2, 25),
                  elements=st.one_of(st.integers(-3, 3).map(float), st.just(np.nan))))
def test_property_against_references_and_invariants(y):
    res = kernels.mann_kendall_theil_sen(y)
    ok = ~np.isnan(y)
    if ok.sum() < 2:
        assert all(np.isnan(a) for a in res)
        return
    ref = mk.original_test(y)
    np.testing.assert_allclose([res.s, res.var_s, res.z, res.p, res.tau],
                               [ref.s, ref.var_s, ref.z, ref.p, ref.Tau], atol=1e-9)
    assert 0.0 <= res.p <= 1.0 and -1.0 <= res.tau <= 1.0
    # Reversing time flips the signs of S and of the slope.
    rev = kernels.mann_kendall_theil_sen(y[::-1].copy())
    np.testing.assert_allclose([rev.s, rev.slope], [-res.s, -res.slope], atol=1e-12)
