"""Cell areas of a regular latitude/longitude grid on the sphere."""
from __future__ import annotations

import numpy as np

from ._dispatch import array_module, check_float

AUTHALIC_RADIUS_M = 6371007.181  # WGS84 authalic (equal-area) sphere radius, m


def _spacing(name, c, xp):
    if c.ndim != 1 or c.size < 2:
        raise ValueError(f"{name}: expected a 1-D array of at least 2 cell centres, "
                         f"found shape {tuple(c.shape)}")
    step = xp.diff(c)
    first = float(step[0])
    if first == 0.0 or float(xp.max(xp.abs(step - first))) > 1e-6 * abs(first):
        raise ValueError(f"{name}: expected regularly spaced cell centres (degrees), found "
                         f"steps from {float(step.min())} to {float(step.max())}")
    return abs(first)


def pixel_area(lat, lon, radius: float = AUTHALIC_RADIUS_M):
    """Areas (m^2), shape (lat.size, lon.size), of the cells centred on 1-D ``lat``, ``lon``
    (degrees, regular spacing); cell edges lie halfway between centres, clipped to +-90."""
    xp = array_module(lat, lon)
    check_float("lat", lat)
    check_float("lon", lon)
    dlat = _spacing("lat", lat, xp)
    dlon = _spacing("lon", lon, xp)
    lat64 = lat.astype(np.float64)
    north = xp.radians(xp.clip(lat64 + dlat / 2, -90.0, 90.0))
    south = xp.radians(xp.clip(lat64 - dlat / 2, -90.0, 90.0))
    band = radius ** 2 * np.radians(dlon) * xp.abs(xp.sin(north) - xp.sin(south))
    return xp.broadcast_to(band[:, None], (lat.size, lon.size)).copy()
