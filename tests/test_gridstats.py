"""Driver shares (eq. 3-5), groups, dominant driver, weighted means, regridding."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ciml_ter.gridstats import (bilinear_regrid, block_mean_regrid, dominant, driver_shares,
                               group_shares, weighted_mean_se)


def test_driver_shares_closed_form():
    shap = np.zeros((3, 2, 1, 1))
    shap[:, 0, 0, 0] = [1.0, -2.0, 1.0]
    shap[:, 1, 0, 0] = [3.0, 2.0, -1.0]
    # mean |SHAP| = [2, 2, 1] -> shares [0.4, 0.4, 0.2]
    np.testing.assert_allclose(driver_shares(shap)[:, 0, 0], [0.4, 0.4, 0.2])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (4, 3, 2, 2), elements=st.floats(-50, 50)))
def test_shares_sum_to_one_per_pixel(shap):
    shares = driver_shares(shap)
    total = np.abs(shap).mean(axis=1).sum(axis=0)
    np.testing.assert_allclose(shares.sum(axis=0)[total > 0], 1.0, rtol=1e-12)
    assert np.isnan(shares[:, total == 0]).all()


def test_group_shares_and_other():
    shares = np.array([0.5, 0.3, 0.2])[:, None, None]
    groups = group_shares(shares, ["lst", "lai", "x"], {"env": ["lst"], "bio": ["lai", "missing"]})
    assert {k: float(v[0, 0]) for k, v in groups.items()} == {"env": 0.5, "bio": 0.3, "other": 0.2}


def test_dominant_driver():
    shares = np.array([[[0.2, np.nan]], [[0.7, np.nan]], [[0.1, np.nan]]])
    assert dominant(shares).tolist() == [[1, -1]]


def test_weighted_mean_and_standard_error():
    v, w = np.array([1.0, 3.0, np.nan, 5.0]), np.array([1.0, 1.0, 1.0, 2.0])
    mean, se, n = weighted_mean_se(v, w)
    assert n == 3 and mean == pytest.approx((1 + 3 + 10) / 4)
    var = (1 * (1 - 3.5) ** 2 + 1 * (3 - 3.5) ** 2 + 2 * (5 - 3.5) ** 2) / 4
    assert se == pytest.approx(np.sqrt(var / (16 / 6)))
    assert weighted_mean_se(v, w, mask=np.array([0, 0, 1, 0]))[2] == 0


def test_block_mean_conserves_area_weighted_mean():
    rng = np.random.default_rng(0)
    lat = np.linspace(89.5, -89.5, 180)
    area = np.repeat(np.cos(np.deg2rad(lat))[:, None], 360, axis=1)
    field = rng.uniform(0, 100, (2, 180, 360))
    coarse = block_mean_regrid(field, area, 4)
    coarse_area = area.reshape(45, 4, 90, 4).sum(axis=(1, 3))
    for t in range(2):
        fine_mean = np.sum(field[t] * area) / area.sum()
        assert np.sum(coarse[t] * coarse_area) / coarse_area.sum() == pytest.approx(fine_mean, rel=1e-12)
    with pytest.raises(ValueError, match="not divisible by the factor 7"):
        block_mean_regrid(field, area, 7)


def test_bilinear_reproduces_a_linear_field():
    lat = np.linspace(10, -10, 21)
    lon = np.linspace(-20, 20, 41)
    field = 3 * lat[:, None] + 2 * lon[None, :] + 1
    new_lat, new_lon = np.array([9.25, 0.1, -9.9, 11.0]), np.array([-19.5, 0.3, 19.75])
    out = bilinear_regrid(field, lat, lon, new_lat, new_lon)
    expected = 3 * new_lat[:, None] + 2 * new_lon[None, :] + 1
    np.testing.assert_allclose(out[:3], expected[:3], rtol=1e-12)
    assert np.isnan(out[3]).all()  # outside the source grid
