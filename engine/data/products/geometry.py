"""Placing product grids on the target lat/lon window: sinusoidal tiles for the binning kernel,
0.05 deg CMG subsets for block aggregation. Pure functions of the StructMetadata geometry."""
from __future__ import annotations

import math

from ciml_ter.errors import InputError
from ciml_ter.kernels._dispatch import array_module
from ciml_ter.grid import GridWindow
from ciml_ter.kernels.binning import BinSums, SinusoidalTile

from .catalog import CMG
from .structmeta import GridGeometry, StructMetadataError, grid_for

_TOL = 1e-6


class GranuleError(Exception):
    """A granule cannot be read (truncated, corrupt, missing a layer, unsupported grid)."""


def window_bounds(window: GridWindow) -> tuple[float, float, float, float]:
    """(south, north, west, east) of a window, degrees."""
    return (window.north - window.n_lat * window.res, window.north, window.west,
            window.west + window.n_lon * window.res)


def sinusoidal_tile(geometry: GridGeometry) -> SinusoidalTile:
    """The binning kernel's placement of a sinusoidal grid (square pixels required)."""
    if geometry.projection != "GCTP_SNSOID":
        raise GranuleError(f"grid {geometry.name!r} uses projection {geometry.projection}; expected "
                           f"GCTP_SNSOID (sinusoidal)")
    px, py = geometry.pixel_x, geometry.pixel_y
    if not (px > 0 and py > 0) or abs(px - py) > _TOL * px:
        raise GranuleError(f"grid {geometry.name!r}: pixels are not square ({px:.6f} x {py:.6f} m "
                           f"from UpperLeftPointMtrs/LowerRightMtrs and XDim/YDim)")
    return SinusoidalTile(geometry.upper_left[0], geometry.upper_left[1], px, geometry.sphere_radius_m)


def sinusoidal_bounds(geometry: GridGeometry) -> tuple[float, float, float, float]:
    """Conservative (south, north, west, east) degrees covered by a sinusoidal grid: latitude from
    y / R; longitude x / (R cos lat) at the latitude of the tile farthest from the equator (where
    a given x reaches farthest), clipped to [-180, 180]."""
    r = geometry.sphere_radius_m
    y0, y1 = geometry.lower_right[1], geometry.upper_left[1]
    x0, x1 = geometry.upper_left[0], geometry.lower_right[0]
    lat0, lat1 = math.degrees(y0 / r), math.degrees(y1 / r)
    south, north = max(-90.0, min(lat0, lat1)), min(90.0, max(lat0, lat1))
    far = max(abs(south), abs(north))
    near = 0.0 if south <= 0.0 <= north else min(abs(south), abs(north))
    cos_far = math.cos(math.radians(min(far, 90.0)))
    cos_near = math.cos(math.radians(near))

    def lon(x, cos):
        return 180.0 if cos <= 1e-12 else math.degrees(x / (r * cos))

    west = lon(x0, cos_far) if x0 < 0 else lon(x0, cos_near)
    east = lon(x1, cos_far) if x1 > 0 else lon(x1, cos_near)
    return south, north, max(-180.0, west), min(180.0, east)


def overlaps(bounds: tuple[float, float, float, float], window: GridWindow) -> bool:
    """True when (south, north, west, east) ``bounds`` may reach a cell of ``window``."""
    s, n, w, e = bounds
    ws, wn, ww, we = window_bounds(window)
    return s <= wn and n >= ws and w <= we and e >= ww


def _integer(value: float, what: str) -> int:
    k = round(value)
    if abs(value - k) > 1e-6 * max(1.0, abs(value)):
        raise InputError(what)
    return int(k)


def cmg_slices(geometry: GridGeometry, window: GridWindow, product: str) -> tuple[slice, slice, int]:
    """Rows and columns of a geographic (CMG) grid that cover ``window``, and the block factor.

    The target resolution must be an integer multiple of the product's and the window's edges
    must lie on the product's grid lines (block aggregation of the input contract)."""
    if geometry.projection != "GCTP_GEO":
        raise GranuleError(f"grid {geometry.name!r} uses projection {geometry.projection}; expected "
                           f"GCTP_GEO (a CMG)")
    d = geometry.pixel_x
    if abs(d - geometry.pixel_y) > _TOL * d:
        raise GranuleError(f"grid {geometry.name!r}: cells are not square ({d} x {geometry.pixel_y} deg)")
    factor = _integer(window.res / d, f"{product}: the output resolution {window.res:g} deg is not an "
                                      f"integer multiple of the product's {d:g} deg grid (block "
                                      f"aggregation needs an integer factor); choose --res as k x {d:g}")
    if factor < 1:
        raise InputError(f"{product}: the output resolution {window.res:g} deg is finer than the "
                         f"product's {d:g} deg grid")
    west, north = geometry.upper_left
    r0 = _integer((north - window.north) / d, f"{product}: the bbox north edge {window.north:g} is not on "
                                              f"the product's {d:g} deg grid lines")
    c0 = _integer((window.west - west) / d, f"{product}: the bbox west edge {window.west:g} is not on "
                                            f"the product's {d:g} deg grid lines")
    r1, c1 = r0 + window.n_lat * factor, c0 + window.n_lon * factor
    if r0 < 0 or c0 < 0 or r1 > geometry.y_dim or c1 > geometry.x_dim:
        raise InputError(f"{product}: the window (rows {r0}-{r1}, columns {c0}-{c1}) lies outside the "
                         f"product grid of {geometry.y_dim} x {geometry.x_dim} cells")
    return slice(r0, r1), slice(c0, c1), factor


def placement(geometry: GridGeometry, grid: str, short_name: str,
              window: GridWindow | None) -> tuple[slice, slice, int] | None:
    """Where a granule's layers are read: (rows, cols, factor) of a CMG granule over ``window``
    (checked to align), the whole tile of a sinusoidal one (its projection checked), or None
    when the tile lies outside the window."""
    if grid == CMG:
        if window is None:
            raise ValueError("a CMG granule is read over a window")
        return cmg_slices(geometry, window, short_name)
    sinusoidal_tile(geometry)  # checks the projection and pixel shape early
    if window is not None and not overlaps(sinusoidal_bounds(geometry), window):
        return None
    return slice(None), slice(None), 1


def locate(struct_metadata: str, product, window: GridWindow | None):
    """(grid geometry, placement) of a granule from its StructMetadata text: the product's grid
    and where its layers are read over ``window`` (None: outside it); GranuleError when the
    metadata does not describe the product's grid."""
    try:
        geometry = grid_for(struct_metadata, product.layers[0].sds)
    except StructMetadataError as exc:
        raise GranuleError(str(exc)) from None
    return geometry, placement(geometry, product.grid, product.short_names[0], window)


def block_sums(values, factor: int) -> BinSums:
    """Per-block sums and counts of a (..., n_lat * f, n_lon * f) array (NaN = invalid; leading
    axes such as time kept) as BinSums, on the device of ``values`` (NumPy or CuPy); ``n_seen``
    counts every cell of a block."""
    xp = array_module(values)
    *lead, ny, nx = values.shape
    blocks = values.reshape(*lead, ny // factor, factor, nx // factor, factor)
    valid = ~xp.isnan(blocks)
    sums = xp.where(valid, blocks, 0).astype(xp.float64).sum(axis=(-3, -1))
    n_valid = valid.sum(axis=(-3, -1)).astype(xp.int32)
    n_seen = xp.full(sums.shape, factor * factor, dtype=xp.int32)
    return BinSums(sums, n_valid, n_seen)
