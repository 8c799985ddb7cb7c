"""Pixel areas on the authalic sphere."""
from __future__ import annotations

import numpy as np
import pytest

from ciml_ter import kernels

R = 6371007.181


@pytest.mark.parametrize("res", [0.05, 0.5, 2.5])
def test_global_grid_sums_to_sphere_area(res):
    lat = np.arange(-90 + res / 2, 90, res)
    lon = np.arange(-180 + res / 2, 180, res)
    area = kernels.pixel_area(lat, lon)
    assert area.shape == (lat.size, lon.size)
    assert abs(area.sum() / (4 * np.pi * R ** 2) - 1) < 1e-9


def test_single_cell_closed_form_and_descending_latitudes():
    lat = np.array([60.5, 59.5])  # north-up grid
    lon = np.array([10.5, 11.5, 12.5])
    area = kernels.pixel_area(lat, lon)
    expected = R ** 2 * np.radians(1.0) * (np.sin(np.radians(61)) - np.sin(np.radians(60)))
    np.testing.assert_allclose(area[0], expected, rtol=1e-12)
    assert kernels.AUTHALIC_RADIUS_M == R


@pytest.mark.parametrize("lat, lon, message", [
    (np.array([0.5]), np.array([0.5, 1.5]), "lat: expected a 1-D array of at least 2"),
    (np.array([0.5, 1.5, 3.5]), np.array([0.5, 1.5]), "lat: expected regularly spaced"),
    (np.array([0.5, 1.5]), np.array([1, 2]), "lon: expected a floating-point array"),
])
def test_bad_input(lat, lon, message):
    with pytest.raises(ValueError, match=message):
        kernels.pixel_area(lat, lon)
