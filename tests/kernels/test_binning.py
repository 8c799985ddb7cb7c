"""Sinusoidal -> lat/lon binning against pyproj + np.bincount, an analytic field, MODIS edge
tiles, accumulation of tiles, argument errors, and the CUDA kernel (simulator and CuPy)."""
from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numba
import numpy as np
import pyproj
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ciml_ter import kernels
from ciml_ter.grid import GridWindow
from ciml_ter.kernels import BinSums, SinusoidalTile, bin_sinusoidal, binned_mean

R = 6371007.181  # MODIS sphere, m
TILE_M = 1111950.5197665  # MODIS tile width, m
X0, Y0 = -20015109.354, 10007554.677  # upper-left corner of tile h00v00, m
# +over keeps longitudes beyond +-180 (off the globe) instead of wrapping them
SINU = pyproj.Proj("+proj=sinu +R=6371007.181 +nadgrids=@null +wktext +over")
EDGE_MARGIN = 1e-9  # cells: closer centres could be decided by rounding, not by the rule


def modis(h, v, per_tile, row=0, col=0) -> SinusoidalTile:
    """The block of MODIS tile (h, v) with ``per_tile`` pixels a side starting at (row, col)."""
    pixel = TILE_M / per_tile
    return SinusoidalTile(X0 + h * TILE_M + col * pixel, Y0 - v * TILE_M - row * pixel, pixel, R)


def centres(tile, shape):
    """(lat, lon) in degrees of every pixel centre, by pyproj's inverse sinusoidal projection."""
    x = tile.ul_x_m + (np.arange(shape[1]) + 0.5) * tile.pixel_m
    y = tile.ul_y_m - (np.arange(shape[0]) + 0.5) * tile.pixel_m
    xx, yy = np.meshgrid(x, y)
    lon, lat = SINU(xx, yy, inverse=True)
    return lat, lon


def covering(lat, lon, res, pad=1):
    """A window of ``res`` on cell multiples holding every on-globe centre, ``pad`` cells more."""
    on = np.abs(lon) <= 180
    north = (math.ceil(lat.max() / res) + pad) * res
    west = (math.floor(lon[on].min() / res) - pad) * res
    n_lat = math.ceil((north - lat.min()) / res) + pad
    n_lon = math.ceil((lon[on].max() - west) / res) + pad
    return GridWindow(north, west, res, n_lat, n_lon)


def reference(values, lat, lon, window):
    """BinSums by np.bincount of the pyproj centres, and the smallest distance (cells) of a
    centre to a cell edge or to lon +-180."""
    lon = np.where(lon == 180.0, -180.0, lon)
    ti = (window.north - lat) / window.res
    tj = (lon - window.west) / window.res
    on = (np.abs(lon) <= 180) & (ti >= 0) & (ti < window.n_lat) & (tj >= 0) & (tj < window.n_lon)
    cell = np.floor(ti[on]).astype(np.int64) * window.n_lon + np.floor(tj[on]).astype(np.int64)
    v = values[on]
    ok = ~np.isnan(v)
    size = window.n_lat * window.n_lon
    sums = BinSums(np.bincount(cell[ok], weights=v[ok], minlength=size).reshape(window.shape),
                   np.bincount(cell[ok], minlength=size).reshape(window.shape).astype(np.int32),
                   np.bincount(cell, minlength=size).reshape(window.shape).astype(np.int32))
    near = np.abs(np.abs(lon) - 180) / window.res
    margin = min(np.abs(ti - np.round(ti)).min(), np.abs(tj - np.round(tj)).min(), near.min())
    return sums, margin


def assert_same(got, want):
    assert got.sums.dtype == np.float64 and got.n_valid.dtype == got.n_seen.dtype == np.int32
    np.testing.assert_array_equal(got.n_seen, want.n_seen)
    np.testing.assert_array_equal(got.n_valid, want.n_valid)
    np.testing.assert_allclose(got.sums, want.sums, rtol=1e-12, atol=1e-12)  # order of addition


def noisy(shape, seed, dtype=np.float64, missing=0.1):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 2, shape).astype(dtype)
    values[rng.random(shape) < missing] = np.nan
    return values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("res", [0.5, 0.05, 0.01, 0.002])
def test_block_matches_pyproj_and_bincount(res, clip, dtype):
    """60 x 60 pixels of 463 m in h18v04, cells wider and narrower than a pixel; ``clip``: the
    window's north and west edges cut through the block."""
    tile = modis(18, 4, 2400, row=1000, col=700)
    values = noisy((60, 60), 1, dtype)
    lat, lon = centres(tile, values.shape)
    window = covering(lat, lon, res)
    if clip:
        north, west = round(float(np.median(lat)), 6), round(float(np.median(lon)), 6)
        window = GridWindow(north, west, res, window.n_lat, window.n_lon)
    want, margin = reference(values, lat, lon, window)
    assert margin > EDGE_MARGIN
    assert_same(bin_sinusoidal(values, tile, window), want)
    if clip:
        assert 0 < want.n_seen.sum() < values.size
    else:
        assert want.n_seen.sum() == values.size


@pytest.mark.parametrize("h, v", [(18, 4), (18, 2)])
def test_whole_1km_tiles_match_pyproj(h, v):
    """1200 x 1200 pixels of 927 m: mid-latitude h18v04 and h18v02 at 60-70 N."""
    tile = modis(h, v, 1200)
    values = noisy((1200, 1200), h + v)
    lat, lon = centres(tile, values.shape)
    assert (v == 2) == (60 < lat.min() < lat.max() < 70)
    window = covering(lat, lon, 0.05)
    want, margin = reference(values, lat, lon, window)
    assert margin > EDGE_MARGIN
    got = bin_sinusoidal(values, tile, window)
    assert_same(got, want)
    assert got.n_seen.sum() == values.size


@pytest.mark.parametrize("h, edge_column", [(35, -1), (0, 0)])
def test_antimeridian_tiles_drop_off_globe_pixels(h, edge_column):
    """h35v08 and h00v08 (0-10 N) hold pixels beyond +-180: they are ignored, and the pixels
    just inside the antimeridian land in the last (h35) or first (h00) cells of a global band."""
    tile = modis(h, 8, 1200)
    values = noisy((1200, 1200), h)
    lat, lon = centres(tile, values.shape)
    window = GridWindow(10.0, -180.0, 0.05, 200, 7200)
    want, margin = reference(values, lat, lon, window)
    assert margin > EDGE_MARGIN
    got = bin_sinusoidal(values, tile, window)
    assert_same(got, want)
    on_globe = int((np.abs(lon) <= 180).sum())
    assert 0 < on_globe < values.size and got.n_seen.sum() == on_globe
    assert (got.n_seen[:, edge_column] > 0).all()


def test_lon_exactly_180_counts_as_minus_180():
    """On the equator x = pi R is lon 180: it wraps to the first cell; x = -pi R (lon -180) is
    the first cell too, and centres beyond either are off the globe."""
    window = GridWindow(0.5, -180.0, 1.0, 1, 360)
    pi_r = math.pi * R
    assert math.degrees(pi_r / R) == 180.0
    east = SinusoidalTile(pi_r - 1.0, 1.0, 2.0, R)  # centres at x = pi R and pi R + 2, y = 0
    west = SinusoidalTile(-pi_r - 3.0, 1.0, 2.0, R)  # centres at -pi R - 2, -pi R, -pi R + 2
    got = bin_sinusoidal(np.array([[5.0, 7.0]]), east, window)
    bin_sinusoidal(np.array([[11.0, 13.0, 17.0]]), west, window, out=got)
    assert got.n_seen.sum() == 3 and got.n_seen[0, 0] == 3
    assert got.sums[0, 0] == 5.0 + 13.0 + 17.0


def test_centre_on_a_cell_edge_goes_to_the_cell_east_or_south_of_it():
    """Cells hold lat (north - (i+1) res, north - i res] and lon [west + j res, ...): of 3 x 3
    centres 2 m apart around (lat 0, lon 0), those on lat 0 go south, those on lon 0 east; a
    window with north = 0 holds lat 0. A centre on the edge at lon 0.35 (mapped to metres as
    the kernel maps edges) goes east too, where a division in degrees would round it west."""
    tile = SinusoidalTile(-3.0, 3.0, 2.0, R)  # centres at x, y in (-2, 0, 2)
    values = np.arange(9.0).reshape(3, 3)
    got = bin_sinusoidal(values, tile, GridWindow(1.0, -1.0, 1.0, 2, 2))
    np.testing.assert_array_equal(got.n_seen, [[1, 2], [2, 4]])
    np.testing.assert_array_equal(got.sums, [[0, 1 + 2], [3 + 6, 4 + 5 + 7 + 8]])
    got = bin_sinusoidal(values, tile, GridWindow(0.0, 0.0, 1.0, 1, 1))
    assert got.n_seen[0, 0] == 4 and got.sums[0, 0] == 4 + 5 + 7 + 8
    got = bin_sinusoidal(np.array([[1.0, 2.0, 4.0]]), SinusoidalTile(-5.0, 1.0, 2.0, R),
                         GridWindow(0.0, -1.0, 1.0, 1, 2))  # centres at x = -4, -2, 0
    np.testing.assert_array_equal(got.n_seen, [[2, 1]])
    np.testing.assert_array_equal(got.sums, [[3.0, 4.0]])
    edge = (0.0 + 7 * 0.05) * (math.pi / 180) * R
    assert int((edge / R * (180 / math.pi) - 0.0) / 0.05) == 6
    got = bin_sinusoidal(np.array([[1.0, 2.0]]), SinusoidalTile(edge - 1.0, 1.0, 2.0, R),
                         GridWindow(0.0, 0.0, 0.05, 1, 10))
    assert got.n_seen[0, 7] == got.n_seen.sum() == 2


def exact_area_mean(north, west, res, n_lat, n_lon):
    """Area mean of f = lat + 2 lon (degrees) over every cell of a window, on the sphere."""
    top = np.radians(north - res * np.arange(n_lat))
    bottom = top - np.radians(res)
    # the mean of lat weighted by cos(lat): [lat sin lat + cos lat] / [sin lat] between the edges
    mean_lat = np.degrees((top * np.sin(top) + np.cos(top) - bottom * np.sin(bottom) - np.cos(bottom))
                          / (np.sin(top) - np.sin(bottom)))
    mean_lon = west + res * (np.arange(n_lon) + 0.5)
    return mean_lat[:, None] + 2 * mean_lon[None, :]


def test_smooth_field_gives_cell_area_means():
    """f = lat + 2 lon on 480 x 480 pixels of 463 m in h18v04, into 0.05 deg cells inside the
    block. A cell's pixels are those whose centre lies in it, so their mean position is off the
    cell's area-weighted mean by at most half a pixel each way: |mean - area mean| <= (dlat +
    2 dlon) / 2 with the pixel's extent in degrees. Counts follow the cell areas (equal-area
    pixels) to one pixel row and column."""
    tile = modis(18, 4, 2400, row=900, col=900)
    lat, lon = centres(tile, (480, 480))
    values = lat + 2 * lon
    res = 0.05
    north = math.floor(lat.max() / res) * res
    west = math.ceil(lon[:, 0].max() / res) * res  # inside the block's first and last columns
    n_lat = math.floor((north - lat.min()) / res)
    n_lon = math.floor((lon[:, -1].min() - west) / res)
    assert n_lat > 20 and n_lon > 20
    window = GridWindow(north, west, res, n_lat, n_lon)
    sums = bin_sinusoidal(values, tile, window)
    mean, n_valid = binned_mean(sums)
    assert mean.dtype == np.float32 and n_valid.dtype == np.int32
    d_lat = math.degrees(tile.pixel_m / R)
    d_lon = math.degrees(tile.pixel_m / (R * math.cos(math.radians(lat.max()))))
    bound = (d_lat + 2 * d_lon) / 2 + 1e-4  # + float32 rounding of values near 50
    error = np.abs(mean - exact_area_mean(north, west, res, n_lat, n_lon))
    assert error.max() <= bound and error.mean() < bound / 3
    area = kernels.pixel_area(north - res * (np.arange(n_lat) + 0.5), west + res * (np.arange(n_lon) + 0.5))
    expected = area / tile.pixel_m ** 2
    rows, columns = res / d_lat, res / d_lon
    assert np.abs(sums.n_seen - expected).max() <= rows + columns + 1
    assert abs(sums.n_seen.sum() / expected.sum() - 1) < 2e-3


def test_nan_pixels_and_min_valid_fraction():
    """NaN pixels count in n_seen only; a cell with n_valid / n_seen below the fraction, or
    with no valid pixel, is NaN, one exactly at the fraction is kept."""
    tile = modis(18, 4, 2400, row=300, col=300)
    values = noisy((60, 60), 3, missing=0.3)
    lat, lon = centres(tile, values.shape)
    window = covering(lat, lon, 0.01, pad=0)
    want, _ = reference(values, lat, lon, window)
    ti = np.floor((window.north - lat) / window.res).astype(int)
    tj = np.floor((lon - window.west) / window.res).astype(int)
    full = np.argwhere(want.n_seen >= 6)
    empty = full[0]
    half = next(c for c in full[1:] if want.n_seen[tuple(c)] % 2 == 0)
    values[(ti == empty[0]) & (tj == empty[1])] = np.nan  # no valid pixel left
    rows, cols = np.nonzero((ti == half[0]) & (tj == half[1]))
    values[rows, cols] = 1.0
    values[rows[: rows.size // 2], cols[: rows.size // 2]] = np.nan  # n_valid / n_seen = 0.5
    want, _ = reference(values, lat, lon, window)
    got = bin_sinusoidal(values, tile, window)
    assert_same(got, want)
    assert got.n_seen.sum() == values.size and got.n_valid.sum() == (~np.isnan(values)).sum()
    assert got.n_valid[tuple(half)] / got.n_seen[tuple(half)] == 0.5
    for fraction in (0.0, 0.5, 0.8, 1.0):
        mean, n_valid = binned_mean(got, min_valid_fraction=fraction)
        np.testing.assert_array_equal(n_valid, want.n_valid)
        keep = (want.n_valid > 0) & (want.n_valid / np.maximum(want.n_seen, 1) >= fraction)
        np.testing.assert_array_equal(~np.isnan(mean), keep)
        expected = want.sums[keep] / want.n_valid[keep]
        np.testing.assert_allclose(mean[keep], expected, rtol=1e-6)
        assert np.isnan(mean[tuple(empty)])
        assert np.isnan(mean[tuple(half)]) == (fraction > 0.5)
    assert np.isnan(binned_mean(got, 1.0)[0]).sum() > np.isnan(binned_mean(got, 0.0)[0]).sum()


@pytest.mark.parametrize("axis", [0, 1])
def test_adjacent_tiles_accumulate_like_their_concatenation(axis):
    """h18v04 then h19v04 (or h18v05) added into one window equal binning both as one tile."""
    first = modis(18, 4, 1200)
    second = modis(18 + axis, 4 + (1 - axis), 1200)
    a, b = noisy((1200, 1200), 5), noisy((1200, 1200), 6)
    window = GridWindow(50.5, -1.0, 0.05, 420, 660)  # 29.5-50.5 N, 1 W-32 E
    out = bin_sinusoidal(a, first, window)
    assert bin_sinusoidal(b, second, window, out=out) is out
    both = bin_sinusoidal(np.concatenate([a, b], axis=axis), first, window)
    assert_same(out, both)
    assert out.n_seen.sum() == 2 * a.size
    twice = bin_sinusoidal(b, second, window, out=bin_sinusoidal(b, second, window))
    np.testing.assert_array_equal(twice.n_seen, 2 * bin_sinusoidal(b, second, window).n_seen)


def test_threads_share_no_cell():
    """One thread and all threads give bit-identical sums: each target row has one owner."""
    tile = modis(18, 2, 1200)
    values = noisy((1200, 1200), 7, np.float32)
    window = GridWindow(70.0, 0.0, 0.05, 200, 600)
    threads = numba.get_num_threads()
    many = bin_sinusoidal(values, tile, window)
    try:
        numba.set_num_threads(1)
        one = bin_sinusoidal(values, tile, window)
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(many, one):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 35), st.integers(0, 17), st.integers(1, 40), st.integers(1, 40),
       st.sampled_from([0.003, 0.02, 0.1, 1.0]), st.integers(-2, 2), st.integers(-2, 2),
       st.integers(0, 2**32 - 1))
def test_property_random_blocks_match_pyproj(h, v, n_rows, n_cols, res, shift_lat, shift_lon, seed):
    """Any block of any 1 km MODIS tile (polar and edge tiles included), with the window
    shifted by whole cells (cutting the block), matches the pyproj reference."""
    rng = np.random.default_rng(seed)
    tile = modis(h, v, 1200, row=int(rng.integers(0, 1200 - n_rows + 1)),
                 col=int(rng.integers(0, 1200 - n_cols + 1)))
    values = noisy((n_rows, n_cols), seed, missing=0.3)
    lat, lon = centres(tile, values.shape)
    assume((np.abs(lon) <= 180).any())
    window = covering(lat, lon, res)
    assume(window.n_lat * window.n_lon <= 10**6)  # polar blocks at fine res span many cells
    window = GridWindow(window.north + shift_lat * res, window.west + shift_lon * res, res,
                        window.n_lat, window.n_lon)
    want, margin = reference(values, lat, lon, window)
    assume(margin > EDGE_MARGIN)
    assert_same(bin_sinusoidal(values, tile, window), want)


def _ok_tile():
    return modis(18, 4, 1200)


def _ok_window():
    return GridWindow(50.0, 0.0, 0.05, 10, 10)


@pytest.mark.parametrize("call, message", [
    (lambda: bin_sinusoidal(np.ones(5), _ok_tile(), _ok_window()), "values: expected a 2-D array"),
    (lambda: bin_sinusoidal(np.ones((2, 2), np.int16), _ok_tile(), _ok_window()),
     "values: expected a float32 or float64 array, found dtype int16"),
    (lambda: bin_sinusoidal(np.ones((2, 2), np.float16), _ok_tile(), _ok_window()),
     "values: expected a float32 or float64 array, found dtype float16"),
    (lambda: bin_sinusoidal(np.ones((2, 2)), (0.0, 0.0, 1.0, R), _ok_window()), "tile: expected a SinusoidalTile"),
    (lambda: bin_sinusoidal(np.ones((2, 2)), _ok_tile(), (50.0, 0.0, 0.05, 10, 10)), "window: expected north, west, res, n_lat and n_lon, found a tuple without north"),
    (lambda: bin_sinusoidal(np.ones((2, 2)), _ok_tile(), _ok_window(), out=(1, 2, 3)), "out: expected a BinSums"),
    (lambda: bin_sinusoidal(np.ones((2, 2)), _ok_tile(), _ok_window(),
                            out=BinSums(np.zeros((10, 9)), np.zeros((10, 9), np.int32), np.zeros((10, 9), np.int32))),
     r"out.sums: expected shape \(10, 10\) and dtype float64"),
    (lambda: bin_sinusoidal(np.ones((2, 2)), _ok_tile(), _ok_window(),
                            out=BinSums(np.zeros((10, 10)), np.zeros((10, 10)), np.zeros((10, 10), np.int32))),
     "out.n_valid: expected shape .* and dtype int32"),
    (lambda: SinusoidalTile(0.0, 0.0, 463.3, 0.0), "radius_m: expected a positive number"),
    (lambda: SinusoidalTile(0.0, 0.0, -463.3, R), "pixel_m: expected a positive number"),
    (lambda: SinusoidalTile(math.nan, 0.0, 463.3, R), "ul_x_m: expected a finite number"),
    (lambda: SinusoidalTile(0.0, "0", 463.3, R), "ul_y_m: expected a finite number"),
    (lambda: bin_sinusoidal(np.ones((2, 2)), _ok_tile(), SimpleNamespace(north=50.0, west=0.0, res=0.0, n_lat=10,
                                                                         n_lon=10)),
     "window.res: expected a positive number"),
    (lambda: GridWindow(50.0, 0.0, 0.0, 10, 10), "res: expected a positive number"),
    (lambda: GridWindow(50.0, 0.0, -0.05, 10, 10), "res: expected a positive number"),
    (lambda: GridWindow(50.0, 0.0, 0.05, 0, 10), "n_lat: expected a positive integer"),
    (lambda: GridWindow(50.0, 0.0, 0.05, 10, 2.5), "n_lon: expected a positive integer"),
    (lambda: GridWindow(math.inf, 0.0, 0.05, 10, 10), "north: expected a finite number"),
    (lambda: GridWindow(50.0, None, 0.05, 10, 10), "west: expected a finite number"),
    (lambda: binned_mean((1, 2, 3)), "sums: expected a BinSums"),
    (lambda: binned_mean(bin_sinusoidal(np.ones((2, 2)), _ok_tile(), _ok_window()), 1.5),
     r"min_valid_fraction: expected a fraction in \[0, 1\], found 1.5"),
    (lambda: binned_mean(bin_sinusoidal(np.ones((2, 2)), _ok_tile(), _ok_window()), -0.1),
     r"min_valid_fraction: expected a fraction in \[0, 1\]"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_tile_and_window_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _ok_tile().pixel_m = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        _ok_window().res = 1.0
    assert _ok_window().shape == (10, 10)


def _require_simulator():
    from numba import config

    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1"


def _small_cases():
    """(values, tile, window): a clipped 463 m block, an antimeridian block with off-globe
    pixels (float32), and centres on lon 180 and on cell edges."""
    block = modis(18, 4, 2400, row=1000, col=700)
    lat, lon = centres(block, (9, 12))
    clipped = covering(lat, lon, 0.01)
    clipped = GridWindow(clipped.north - 0.02, clipped.west + 0.02, 0.01, clipped.n_lat, clipped.n_lon)
    pixel = TILE_M / 1200
    antimeridian = int((math.pi * R * math.cos(math.radians(5.0)) - X0 - 35 * TILE_M) / pixel)
    edge = modis(35, 8, 1200, row=600, col=antimeridian - 6)  # straddles lon 180 at 5 N
    return [(noisy((9, 12), 8), block, clipped),
            (noisy((6, 12), 9, np.float32), edge, GridWindow(5.0, 179.0, 0.01, 10, 100)),
            (np.array([[5.0, 7.0]]), SinusoidalTile(math.pi * R - 1.0, 1.0, 2.0, R),
             GridWindow(0.5, -180.0, 1.0, 1, 360)),
            (np.arange(9.0).reshape(3, 3), SinusoidalTile(-3.0, 3.0, 2.0, R), GridWindow(1.0, -1.0, 1.0, 2, 2)),
            (np.arange(9.0).reshape(3, 3), SinusoidalTile(-3.0, 3.0, 2.0, R), GridWindow(0.0, 0.0, 1.0, 1, 1)),
            (np.array([[1.0, 2.0, 4.0]]), SinusoidalTile(-5.0, 1.0, 2.0, R), GridWindow(0.0, -1.0, 1.0, 1, 2)),
            (np.array([[1.0, 2.0]]), SinusoidalTile(7 * 0.05 * (math.pi / 180) * R - 1.0, 1.0, 2.0, R),
             GridWindow(0.0, 0.0, 0.05, 1, 10))]


@pytest.mark.cudasim
def test_binning_kernel_matches_cpu():
    _require_simulator()
    from ciml_ter.kernels.binning import launch_bin_gpu

    for values, tile, window in _small_cases():
        cpu = bin_sinusoidal(values, tile, window)
        gpu = BinSums(np.zeros(window.shape), np.zeros(window.shape, np.int32), np.zeros(window.shape, np.int32))
        launch_bin_gpu(values, tile, window, gpu)
        assert gpu.n_seen.sum() > 0
        assert_same(gpu, cpu)
        launch_bin_gpu(values, tile, window, gpu)  # adds into what is there
        np.testing.assert_array_equal(gpu.n_seen, 2 * cpu.n_seen)


@pytest.mark.gpu
def test_cupy_path_matches_cpu():
    cp = pytest.importorskip("cupy")
    for h, v in ((18, 4), (35, 8)):
        tile = modis(h, v, 1200)
        values = noisy((1200, 1200), h, np.float32)
        window = GridWindow(50.0 if v == 4 else 10.0, -180.0, 0.05, 200, 7200)
        cpu = bin_sinusoidal(values, tile, window)
        gpu = bin_sinusoidal(cp.asarray(values), tile, window)
        assert all(isinstance(a, cp.ndarray) for a in gpu)
        bin_sinusoidal(cp.asarray(values), tile, window, out=gpu)
        np.testing.assert_array_equal(gpu.n_seen.get(), 2 * cpu.n_seen)
        np.testing.assert_array_equal(gpu.n_valid.get(), 2 * cpu.n_valid)
        np.testing.assert_allclose(gpu.sums.get(), 2 * cpu.sums, rtol=1e-12, atol=1e-9)
        mean, n_valid = binned_mean(gpu, 0.5)
        assert isinstance(mean, cp.ndarray) and mean.dtype == np.float32 and isinstance(n_valid, cp.ndarray)
        np.testing.assert_allclose(mean.get(), binned_mean(cpu, 0.5)[0], rtol=1e-6, equal_nan=True)
