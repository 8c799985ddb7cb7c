"""The ingest stage on test granules in the real formats: values are the area means of known
analytic fields, fill and QC-rejected pixels are excluded, tiles anywhere (60-70 N, the
antimeridian), CMG block means, rasters, resume, bad and unknown files."""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings

import granules as G
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from ciml_ter.data.cube import IngestStore, open_cube
from ciml_ter.errors import ConfigError, DeviceError, InputError

from _support import ingest_with as ingest

PIXEL_DEG = math.degrees(G.TILE_M / G.R)  # one tile edge in degrees of latitude (10)


def quiet(lines):
    return lines.append


def check_area_means(values, f, north, west, res, pixel_deg, quantum, min_finite=0.5, skip=None):
    """Every finite cell of ``values`` (but those in ``skip``, partly masked) equals the area mean of
    f over the cell within |df/dlat| dlat + |df/dlon| dlon + quantum (a cell's pixel set differs
    from the cell by at most a pixel-wide strip; dlon is a pixel's longitude extent at the cell's
    poleward edge)."""
    n_lat, n_lon = values.shape
    checked = 0
    for i in range(n_lat):
        for j in range(n_lon):
            if not np.isfinite(values[i, j]) or (skip is not None and skip[i, j]):
                continue
            top, left = north - i * res, west + j * res
            bottom, right = top - res, left + res
            g_lat, g_lon = G.lipschitz(f, bottom, top, left, right)
            far = max(abs(top), abs(bottom))
            bound = g_lat * pixel_deg + g_lon * pixel_deg / math.cos(math.radians(far)) + quantum
            expected = G.area_mean(f, bottom, top, left, right)
            assert abs(values[i, j] - expected) <= bound, (i, j, values[i, j], expected, bound)
            checked += 1
    assert checked >= min_finite * values.size
    return checked


def touched(lat, lon, mask, north, west, res, shape):
    """Cells of a window that hold the centre of a pixel in ``mask``."""
    out = np.zeros(shape, dtype=bool)
    i = np.floor((north - lat[mask]) / res).astype(int)
    j = np.floor((lon[mask] - west) / res).astype(int)
    ok = (i >= 0) & (i < shape[0]) & (j >= 0) & (j < shape[1])
    out[i[ok], j[ok]] = True
    return out


def in_window(lat, lon, north, south, west, east):
    return (lat > south) & (lat <= north) & (lon >= west) & (lon < east)


# --- MODIS tiles ------------------------------------------------------------------------------------


def lst_field(lat, lon):
    return 280.0 + 0.3 * lat - 0.2 * lon + 2.0 * np.sin(np.radians(8.0 * lon))


def test_mod11a1_high_latitude_tile_area_means_fill_and_qc(tmp_path):
    """h18v02 spans 60-70 N; a block of fill and a block of QC-rejected garbage are excluded."""
    n = 120
    lat, lon = G.pixel_latlon(18, 2, n)
    day = lst_field(lat, lon)
    day[:30, :30] = np.nan  # fill: 70-67.5 N, 0 to 5.9-7.3 E
    qc = np.zeros((n, n), np.uint8)
    qc[60:90, 10:40] = 0b10 | (0b11 << 6)  # not produced (cloud), LST error > 3 K: 65-62.5 N, 2-7 E
    day[60:90, 10:40] = 1300.0  # garbage in valid_range: would break every bound if kept
    night = lst_field(lat, lon) - 12.0
    path = G.mod11a1(tmp_path, "2019-07-01", 18, 2, n, day, night, qc_day=qc)
    lines = []
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 60, 10, 70), log=lines.append)
    assert summary.ok and summary.written == {"time": ["2019-07-01"]}
    ds = open_cube(tmp_path / "cube.zarr")
    pixel = PIXEL_DEG / n
    masked = touched(lat, lon, ~np.isfinite(day) | (qc != 0), 70, 0, 1.0, (10, 10))
    check_area_means(ds.lst_day.values[0], lst_field, 70, 0, 1.0, pixel, 0.02, min_finite=0.4, skip=masked)
    check_area_means(ds.lst_night.values[0], lambda a, b: lst_field(a, b) - 12.0, 70, 0, 1.0, pixel, 0.02,
                     min_finite=1.0)
    assert np.isnan(ds.lst_day.values[0, 0, :5]).all() and (ds.lst_day_count.values[0, 0, :5] == 0).all()
    assert np.nanmax(ds.lst_day.values) < 320  # no garbage from the rejected block
    kept = np.isfinite(day) & (qc == 0)
    assert ds.lst_day_count.values.sum() == np.sum(kept & in_window(lat, lon, 70, 60, 0, 10))
    assert ds.lst_night_count.values.sum() == np.sum(in_window(lat, lon, 70, 60, 0, 10))
    assert ds.lst_day.attrs["units"] == "K" and ds.lst_day.attrs["standard_name"] == "surface_temperature"
    assert "QC_Day" in ds.lst_day.attrs["qc_rule"] and ds.lst_day.attrs["source_products"] == "MOD11A1"
    products = json.loads(ds.attrs["ingest_products"])
    assert products["MOD11A1.061"]["layers"]["lst_day"]["scale_factor"] == pytest.approx(0.02)
    files = json.loads(ds.attrs["ingest_inventory"])["time"]["2019-07-01"]
    assert files == {"MOD11A1.A2019182.h18v02.061.2021001000000.hdf": {
        "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "variables": ["lst_day", "lst_night"]}}


def anti_field(lat, lon):
    return 300.0 + 0.1 * lon + 0.05 * lat  # jumps by 36 K across the antimeridian


def test_tiles_touching_the_antimeridian(tmp_path):
    """h00v08 and h35v08 reach past +-180 deg (off-globe pixels) at 0-10 N."""
    n = 120
    for h in (0, 35):
        lat, lon = G.pixel_latlon(h, 8, n)
        G.mod11a1(tmp_path, "2019-01-01", h, 8, n, anti_field(lat, lon), anti_field(lat, lon) - 5)
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(-180, 0, 180, 10), log=quiet([]))
    assert summary.ok
    ds = open_cube(tmp_path / "cube.zarr")
    day, count = ds.lst_day.values[0], ds.lst_day_count.values[0]
    pixel = PIXEL_DEG / n
    # h00 reaches east to -170 / cos(lat) >= -172.6 and h35 west to 170 / cos(lat) <= 172.6 deg
    # at 0-10 N: the 7 cells next to the antimeridian on each side are covered whole
    check_area_means(day[:, :7], anti_field, 10, -180, 1.0, pixel, 0.02, min_finite=1.0)
    check_area_means(day[:, -7:], anti_field, 10, 173, 1.0, pixel, 0.02, min_finite=1.0)
    assert np.isnan(day[:, 12:-12]).all()
    assert day[0, 0] < 285 and day[0, -1] > 315  # nothing mixed across the antimeridian
    for h, col, west in ((0, 0, -180.0), (35, -1, 179.0)):
        lat, lon = G.pixel_latlon(h, 8, n)
        assert count[0, col] == np.sum(in_window(lat, lon, 10, 9, west, west + 1))
    on_globe = 0
    for h in (0, 35):
        lat, lon = G.pixel_latlon(h, 8, n)
        on_globe += np.sum(np.abs(lon) <= 180)
    assert count.sum() == on_globe


def refl_fields():
    return {1: lambda a, b: 0.05 + 0.02 * np.cos(np.radians(3 * a)),
            2: lambda a, b: 0.30 + 0.05 * np.sin(np.radians(4 * b)) + 0.002 * a,
            6: lambda a, b: 0.20 + 0.001 * (a - 45) - 0.002 * b}


def test_mcd43a4_reflectances_and_band_quality(tmp_path):
    n = 96
    lat, lon = G.pixel_latlon(18, 4, n)
    fields = refl_fields()
    bands = {b: f(lat, lon) for b, f in fields.items()}
    quality = {b: np.zeros((n, n), np.uint8) for b in bands}
    for b in bands:
        bands[b][40:60, 40:60] = 0.95  # garbage under a magnitude inversion
        quality[b][40:60, 40:60] = 1
    G.mcd43a4(tmp_path, "2019-05-01", 18, 4, n, bands, quality)
    ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    ds = open_cube(tmp_path / "cube.zarr")
    masked = touched(lat, lon, quality[2] != 0, 50, 0, 1.0, (10, 10))
    for var, b in (("red", 1), ("nir", 2), ("swir1", 6)):
        check_area_means(ds[var].values[0], fields[b], 50, 0, 1.0, PIXEL_DEG / n, 1e-4, min_finite=0.7,
                         skip=masked)
        assert ds[var].attrs["units"] == "1"
        assert f"Band{b}" in ds[var].attrs["qc_rule"]
    kept = quality[2] == 0
    assert ds.nir_count.values.sum() == np.sum(kept & in_window(lat, lon, 50, 40, 0, 10))


def test_viirs_products(tmp_path):
    n = 60
    lat, lon = G.pixel_latlon(18, 4, n)
    fields = refl_fields()
    G.vnp43ia4(tmp_path, "2019-05-01", 18, 4, n, {1: fields[1](lat, lon), 2: fields[2](lat, lon),
                                                   3: fields[6](lat, lon)})
    qc = np.full((n, n), 0b11 << 14, np.uint16)
    qc[:, :10] = 0b01  # produced but LST accuracy > 2 K
    day = lst_field(lat, lon)
    day[:, :10] = 1000.0
    G.vnp21a1(tmp_path, "2019-05-01", 18, 4, n, day, qc)
    G.vnp21a1(tmp_path, "2019-05-01", 18, 4, n, lst_field(lat, lon) - 10, night=True)
    lai_qc = np.zeros((n, n), np.uint8)
    lai_qc[30:, :] = 0b0011  # SCF_QC 3: back-up algorithm
    lai = 1.0 + 0.05 * (lat - 40)
    lai[30:, :] = 9.0
    G.vnp15a2h(tmp_path, "2019-05-01", 18, 4, n, lai, lai_qc)
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    assert summary.ok and set(summary.written) == {"time", "time8"}
    ds = open_cube(tmp_path / "cube.zarr")
    pixel = PIXEL_DEG / n
    check_area_means(ds.nir.values[0], fields[2], 50, 0, 1.0, pixel, 1e-4, min_finite=1.0)
    check_area_means(ds.lst_day.values[0], lst_field, 50, 0, 1.0, pixel, 0.02,
                     skip=touched(lat, lon, qc != 0b11 << 14, 50, 0, 1.0, (10, 10)))
    check_area_means(ds.lst_night.values[0], lambda a, b: lst_field(a, b) - 10, 50, 0, 1.0, pixel, 0.02,
                     min_finite=1.0)
    check_area_means(ds.lai.values[0], lambda a, b: 1.0 + 0.05 * (a - 40), 50, 0, 1.0, pixel, 0.05,
                     min_finite=0.3, skip=touched(lat, lon, lai_qc != 0, 50, 0, 1.0, (10, 10)))
    assert ds.lai.dims == ("time8", "lat", "lon") and ds.lai.attrs["standard_name"] == "leaf_area_index"
    assert np.isnan(ds.lai.values[0, -3:]).all()  # 40-43 N: only back-up-algorithm pixels
    assert ds.lai.attrs["source_products"] == "VNP15A2H"


def test_min_valid_fraction(tmp_path):
    n = 120
    lat, lon = G.pixel_latlon(18, 2, n)
    day = lst_field(lat, lon)
    day[:, ::2] = np.nan  # half of every cell's pixels are fill
    path = G.mod11a1(tmp_path, "2019-07-01", 18, 2, n, day, day)
    ingest([path], tmp_path / "a.zarr", res=1.0, bbox=(0, 60, 10, 70), log=quiet([]))
    ingest([path], tmp_path / "b.zarr", res=1.0, bbox=(0, 60, 10, 70), min_valid_fraction=0.8,
           log=quiet([]))
    a, b = open_cube(tmp_path / "a.zarr").lst_day.values, open_cube(tmp_path / "b.zarr").lst_day.values
    assert np.isfinite(a).mean() > 0.5 and np.isnan(b).all()


# --- CMG ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cmg_file(tmp_path_factory):
    """A full-size (3600 x 7200) MCD43C4 with ocean fill and a band of rejected quality."""
    folder = tmp_path_factory.mktemp("cmg")
    lat, lon = G.cmg_latlon()
    lat, lon = lat.astype(np.float32)[:, None], lon.astype(np.float32)[None, :]
    shape = (3600, 7200)
    bands = {1: np.broadcast_to(0.05 + 0.03 * np.cos(np.radians(lat)), shape).copy(),
             2: np.broadcast_to(0.3 + 0.1 * np.sin(np.radians(lon)), shape).copy(),
             6: np.broadcast_to(0.2 + 0.001 * lat, shape).copy()}
    quality = np.zeros(shape, np.uint8)
    quality[:, 3600:3610] = 4  # 0-0.5 E: all magnitude inversions
    for b in bands:
        bands[b][:, 3600:3610] = 0.9
        bands[b][:, 3610:3620] = np.nan  # 0.5-1 E: fill
    quality[:, 3610:3620] = 255
    return G.mcd43c4(folder, "2019-06-10", bands, quality), bands, quality


def cmg_block_means(band, quality, r0, c0, n_lat, n_lon, f):
    """Block means of the stored (int16-rounded) CMG values, rejected quality and fill excluded."""
    block = band[r0:r0 + n_lat * f, c0:c0 + n_lon * f].astype(np.float64)
    stored = np.round(block / 1e-4) * 1e-4
    stored[quality[r0:r0 + n_lat * f, c0:c0 + n_lon * f] > 2] = np.nan
    blocks = stored.reshape(n_lat, f, n_lon, f)
    count = np.isfinite(blocks).sum(axis=(1, 3))
    total = np.nansum(blocks, axis=(1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def test_mcd43c4_block_mean(cmg_file, tmp_path):
    path, bands, quality = cmg_file
    summary = ingest([path], tmp_path / "cube.zarr", res=0.25, bbox=(-2, 40, 3, 45), log=quiet([]))
    assert summary.ok
    ds = open_cube(tmp_path / "cube.zarr")
    r0, c0 = int(round((90 - 45) / 0.05)), int(round((180 - 2) / 0.05))
    for var, b in (("red", 1), ("nir", 2), ("swir1", 6)):
        expected = cmg_block_means(bands[b], quality, r0, c0, 20, 20, 5)
        got = ds[var].values[0]
        assert np.allclose(got[:, :8], expected[:, :8], atol=1e-6, rtol=0)
        assert np.allclose(got[:, 12:], expected[:, 12:], atol=1e-6, rtol=0)
        assert np.isnan(got[:, 8:12]).all()  # 0-0.5 E rejected quality, 0.5-1 E fill
        assert (ds[f"{var}_count"].values[0][:, :8] == 25).all()
        assert (ds[f"{var}_count"].values[0][:, 8:12] == 0).all()
    assert "BRDF_Quality" in ds.red.attrs["qc_rule"]


def test_cmg_grid_must_align(cmg_file, tmp_path):
    path = cmg_file[0]
    with pytest.raises(InputError, match="integer multiple"):
        ingest([path], tmp_path / "a.zarr", res=0.12, bbox=(-1.2, 40.2, 1.2, 42.6), log=quiet([]))
    with pytest.raises(InputError, match="grid lines"):
        ingest([path], tmp_path / "b.zarr", res=0.1, bbox=(-1.02, 40, 0.98, 42), log=quiet([]))


def test_tiles_take_precedence_over_cmg_and_cmg_fills_gaps(cmg_file, tmp_path):
    path, bands, _ = cmg_file
    n = 96
    lat, lon = G.pixel_latlon(17, 4, n)  # h17v04: 40-50 N, west of 0
    G.mcd43a4(tmp_path, "2019-06-10", 17, 4, n, {b: np.full((n, n), 0.5) for b in (1, 2, 6)})
    ingest([path, tmp_path], tmp_path / "cube.zarr", res=0.25, bbox=(-2, 40, 3, 45), log=quiet([]))
    ds = open_cube(tmp_path / "cube.zarr")
    red = ds.red.values[0]
    assert np.allclose(red[:, :8], 0.5, atol=1e-6)  # west of 0: the 500 m tile
    expected = cmg_block_means(bands[1], cmg_file[2], 900, 3560, 20, 20, 5)
    assert np.allclose(red[:, 12:], expected[:, 12:], atol=1e-6, rtol=0)  # east of 1 E: the CMG
    assert np.isnan(red[:, 8:12]).all()  # neither has a value there
    assert ds.red.attrs["source_products"] == "MCD43A4, MCD43C4"


def test_mod11c1_cmg(tmp_path):
    """A MOD11C1 on a coarse CMG (the reader takes the grid from StructMetadata)."""
    lat, lon = G.cmg_latlon(360, 720)
    day = np.broadcast_to(250 + 0.5 * np.abs(lat)[:, None], (360, 720)).astype(np.float64).copy()
    qc = np.zeros(day.shape, np.uint8)
    qc[:, :360] = 0b10  # western hemisphere: cloud
    G.mod11c1(tmp_path, "2019-02-01", day, day - 10, qc_day=qc)
    ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(-10, -5, 10, 5), log=quiet([]))
    ds = open_cube(tmp_path / "cube.zarr")
    assert np.isnan(ds.lst_day.values[0][:, :10]).all()
    assert np.allclose(ds.lst_day.values[0][:, 10:], 250 + 0.5 * np.abs(ds.lat.values)[:, None], atol=0.02)
    assert np.isfinite(ds.lst_night.values).all()


# --- bad, unknown, resume ------------------------------------------------------------------------------


def lst_tiles(folder, day: str, tiles, n: int, offset: float = 0.0) -> list:
    """MOD11A1 tiles (h, 4) of ``day`` in ``folder`` (made if missing): LST from ``lst_field``."""
    folder.mkdir(exist_ok=True)
    paths = []
    for h in tiles:
        lat, lon = G.pixel_latlon(h, 4, n)
        paths.append(G.mod11a1(folder, day, h, 4, n, lst_field(lat, lon) + offset, lst_field(lat, lon)))
    return paths


def test_truncated_granule_is_named_others_ingested(tmp_path):
    n = 40
    src = tmp_path / "in"
    lst_tiles(src, "2019-03-01", (18, 19), n)
    lst_tiles(src, "2019-03-02", (18,), n)
    bad = src / G.granule_name("MOD11A1", "2019-03-01", "061", (19, 4))
    good_copy = bad.read_bytes()
    bad.write_bytes(good_copy[: len(good_copy) // 3])
    lines = []
    summary = ingest([src], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 20, 50), log=lines.append)
    assert not summary.ok
    assert [p for p, _ in summary.bad] == [str(bad)]
    assert not any(bad.name in line for line in lines)  # reported once, by the caller from summary.bad
    assert summary.incomplete == {"time": ["2019-03-01"]}
    ds = open_cube(tmp_path / "cube.zarr")
    assert np.isfinite(ds.lst_day.values[0][:, :10]).all()  # h18 of the same date is ingested
    assert np.isnan(ds.lst_day.values[0][:, 16:]).all()  # h18 reaches 10 / cos(50) = 15.6 E at most
    assert json.loads(ds.attrs["ingest_completed"])["time"]["lst_day"] == ["2019-03-02"]
    bad.write_bytes(good_copy)  # the file replaced: a rerun redoes that date only
    summary = ingest([src], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 20, 50), log=quiet([]))
    assert summary.ok and summary.written == {"time": ["2019-03-01"]}
    assert summary.skipped_present == {"time": ["2019-03-02"]}
    assert np.isfinite(open_cube(tmp_path / "cube.zarr").lst_day.values[0][:, 16:]).all()


def test_a_date_whose_only_granule_failed_gets_no_slice(tmp_path):
    n = 20
    lat, lon = G.pixel_latlon(18, 4, n)
    G.mod11a1(tmp_path, "2019-03-01", 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    bad = G.mod11a1(tmp_path, "2019-03-02", 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    bad.write_bytes(bad.read_bytes()[:1000])
    lines = []
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=lines.append)
    assert summary.written == {"time": ["2019-03-01"]} and summary.dates_written == ["2019-03-01"]
    assert [p for p, _ in summary.bad] == [str(bad)] and summary.incomplete == {"time": ["2019-03-02"]}
    assert not any(bad.name in line for line in lines)  # the one report is the caller's, from summary.bad
    ds = open_cube(tmp_path / "cube.zarr")
    assert list(pd.DatetimeIndex(ds.time.values).strftime("%Y-%m-%d")) == ["2019-03-01"]
    assert "2019-03-02" not in json.loads(ds.attrs["ingest_inventory"])["time"]


def test_renamed_granules_are_refused(tmp_path):
    """Product and date come from the name; a file renamed to another date or sensor is refused
    against its own metadata (CoreMetadata.0 for MODIS, FILE_ATTRIBUTES for VIIRS)."""
    n = 12
    lat, lon = G.pixel_latlon(18, 4, n)
    lst = lst_field(lat, lon)

    def renamed(folder, write, old, new):
        (tmp_path / folder).mkdir()
        path = write(tmp_path / folder)
        return path.rename(path.with_name(path.name.replace(old, new)))

    cases = [(renamed("a", lambda f: G.mod11a1(f, "2021-08-15", 18, 4, n, lst, lst), "A2021227", "A2021001"),
              r"file name says 2021-01-01, its metadata \(RANGEBEGINNINGDATE\) says 2021-08-15"),
             (renamed("b", lambda f: G.mod11a1(f, "2021-01-01", 18, 4, n, lst, lst), "MOD11A1", "MYD11A1"),
              r"file name says product MYD11A1, its metadata \(SHORTNAME\) says MOD11A1"),
             (renamed("c", lambda f: G.vnp21a1(f, "2021-08-15", 18, 4, n, lst), "A2021227", "A2021228"),
              r"file name says 2021-08-16, its metadata \(RangeBeginningDate\) says 2021-08-15"),
             # MCD43: 16 days of observations, the ninth is the date in the name
             (renamed("d", lambda f: G.mcd43a4(f, "2021-08-15", 18, 4, n, {2: 0.3 + 0 * lat}), "A2021227", "A2021240"),
              r"file name says 2021-08-28, outside its metadata's RANGEBEGINNINGDATE..RANGEENDINGDATE "
              r"2021-08-07..2021-08-22")]
    for path, message in cases:
        out = path.parent / "cube.zarr"
        with pytest.raises(InputError, match=path.name.replace(".", r"\.") + ": .*" + message):
            ingest([path.parent], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
        assert not out.exists()
    (tmp_path / "e").mkdir()
    kept = G.mcd43a4(tmp_path / "e", "2021-08-15", 18, 4, n, {2: 0.3 + 0 * lat})
    summary = ingest([kept], tmp_path / "e" / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    assert summary.written == {"time": ["2021-08-15"]} and not summary.unverified


def test_granules_without_identity_metadata_are_named(tmp_path):
    lat, lon = G.pixel_latlon(18, 4, 12)
    bare = G.mod11a1(tmp_path, "2019-03-01", 18, 4, 12, lst_field(lat, lon), lst_field(lat, lon), metadata=False)
    lines = []
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=lines.append)
    assert summary.unverified == [bare.name] and summary.written == {"time": ["2019-03-01"]}
    assert [line for line in lines if bare.name in line] == [
        f"note: 1 granule(s) lack a product short name or a date in their metadata (CoreMetadata.0 / "
        f"FILE_ATTRIBUTES); product and date come from their names alone: {bare.name}"]


def test_granules_outside_the_bbox_are_named_and_write_nothing(tmp_path):
    n = 12
    inside, outside = [], []
    for day in ("2019-03-01", "2019-03-02"):
        for h, into in ((18, inside), (25, outside)):  # h25v04: 40-50 N, 70-91 E
            lat, lon = G.pixel_latlon(h, 4, n)
            if h == 18 and day == "2019-03-02":
                continue  # that date has only the far tile
            into.append(G.mod11a1(tmp_path, day, h, 4, n, lst_field(lat, lon), lst_field(lat, lon)))
    lines = []
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=lines.append)
    names = sorted(p.name for p in outside)
    assert summary.outside_window == names and summary.written == {"time": ["2019-03-01"]}
    assert [line for line in lines if "outside" in line] == [
        f"2 granule(s) entirely outside --bbox 0,40,10,50, not used: {', '.join(names)}"]
    ds = open_cube(tmp_path / "cube.zarr")
    assert ds.sizes["time"] == 1 and list(json.loads(ds.attrs["ingest_inventory"])["time"]["2019-03-01"]) == [
        inside[0].name]
    with pytest.raises(InputError, match=r"no usable input among 2 file\(s\): 2 entirely outside --bbox "
                                         r"0,40,10,50 \(e\.g\. " + names[0].replace(".", r"\.")):
        ingest(outside, tmp_path / "far.zarr", res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    assert not (tmp_path / "far.zarr").exists()


def test_no_usable_input_is_refused_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no input files found \(an empty folder\?\): nothing to ingest"):
        ingest([tmp_path / "empty"], tmp_path / "a.zarr", res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    (tmp_path / "notaproduct.log").write_text("a log")
    (tmp_path / "MOD09GA.A2019060.h18v04.061.2021001000000.hdf").write_bytes(b"\x0e\x03\x13\x01")
    with pytest.raises(InputError, match=r"no usable input among 2 file\(s\): 2 not recognised \(e\.g\. "
                                         r"notaproduct\.log: not a recognised product file name\)"):
        ingest([tmp_path / "notaproduct.log", tmp_path / "MOD09GA.A2019060.h18v04.061.2021001000000.hdf"],
               tmp_path / "b.zarr", res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    lat, lon = G.pixel_latlon(18, 4, 12)
    G.mod11a1(tmp_path / "empty", "2019-03-01", 18, 4, 12, lst_field(lat, lon), lst_field(lat, lon))
    with pytest.raises(InputError, match=r"1 dated outside --months 2020-01:2020-02"):
        ingest([tmp_path / "empty"], tmp_path / "c.zarr", res=1.0, bbox=(0, 40, 10, 50), months="2020-01:2020-02",
               log=quiet([]))
    assert not any((tmp_path / name).exists() for name in ("a.zarr", "b.zarr", "c.zarr"))


def test_unknown_files_are_listed(tmp_path):
    lat, lon = G.pixel_latlon(18, 4, 20)
    G.mod11a1(tmp_path, "2019-03-01", 18, 4, 20, lst_field(lat, lon), lst_field(lat, lon))
    (tmp_path / "MOD09GA.A2019060.h18v04.061.2021001000000.hdf").write_bytes(b"\x0e\x03\x13\x01")
    (tmp_path / "readme.txt").write_text("notes")
    lines = []
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=lines.append)
    unknown = {p.split("/")[-1]: reason for p, reason in summary.unknown}
    assert set(unknown) == {"MOD09GA.A2019060.h18v04.061.2021001000000.hdf", "readme.txt"}
    assert "MOD09GA is not supported" in unknown["MOD09GA.A2019060.h18v04.061.2021001000000.hdf"]
    assert sum("readme.txt" in line for line in lines) == 1 and summary.ok


def test_rerun_skips_written_dates_and_adds_new_ones(tmp_path):
    n = 30
    lat, lon = G.pixel_latlon(18, 4, n)
    src = tmp_path / "in"
    src.mkdir()
    for day in ("2019-03-01", "2019-03-02"):
        G.mod11a1(src, day, 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    out = tmp_path / "cube.zarr"
    first = ingest([src], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    assert first.written == {"time": ["2019-03-01", "2019-03-02"]}
    G.mod11a1(src, "2019-03-03", 18, 4, n, lst_field(lat, lon) + 1, lst_field(lat, lon))
    second = ingest([src], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    assert second.written == {"time": ["2019-03-03"]}
    assert second.skipped_present == {"time": ["2019-03-01", "2019-03-02"]}
    ds = open_cube(out)
    assert ds.sizes["time"] == 3 and pd.DatetimeIndex(ds.time.values).is_monotonic_increasing
    assert np.nanmean(ds.lst_day.values[2] - ds.lst_day.values[1]) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(InputError, match="another grid"):
        ingest([src], out, res=0.5, bbox=(0, 40, 10, 50), log=quiet([]))


def test_rerun_redoes_a_date_whose_files_changed(tmp_path):
    """A tile added later for a written date, and a file replaced under the same name and size,
    make that date be redone (said in one line); unchanged dates are skipped."""
    n = 20
    src = tmp_path / "in"
    for day in ("2019-03-01", "2019-03-02"):
        lst_tiles(src, day, (18,), n)
    out, bbox = tmp_path / "cube.zarr", (0, 40, 20, 50)
    ingest([src], out, res=1.0, bbox=bbox, log=quiet([]))
    assert np.isnan(open_cube(out).lst_day.values[:, :, 16:]).all()  # h18 reaches 15.6 E at most
    [added] = lst_tiles(src, "2019-03-01", (19,), n)
    lines = []
    summary = ingest([src], out, res=1.0, bbox=bbox, log=lines.append)
    assert summary.written == {"time": ["2019-03-01"]} and summary.redone == {"time": ["2019-03-01"]}
    assert summary.skipped_present == {"time": ["2019-03-02"]}
    assert [line for line in lines if "redone" in line] == [
        f"time: 1 date(s) written before are redone, their input files changed (+ new, ~ changed, - no longer "
        f"among the inputs), e.g. 2019-03-01: + {added.name}"]
    ds = open_cube(out)
    assert ds.sizes["time"] == 2 and np.isfinite(ds.lst_day.values[0, :, 16:]).all()
    assert np.isnan(ds.lst_day.values[1, :, 16:]).all()
    assert sorted(json.loads(ds.attrs["ingest_inventory"])["time"]["2019-03-01"]) == sorted(
        [added.name, G.granule_name("MOD11A1", "2019-03-01", "061", (18, 4))])
    before = ds.lst_day.values[0, :, 16:].copy()
    size, stamp = added.stat().st_size, added.stat().st_mtime_ns
    lst_tiles(src, "2019-03-01", (19,), n, offset=5.0)
    os.utime(added, ns=(stamp + 10**9, stamp + 10**9))
    assert added.stat().st_size == size  # same name and size: only the checksum tells
    again = ingest([src], out, res=1.0, bbox=bbox, log=quiet([]))
    assert again.redone == {"time": ["2019-03-01"]} and again.written == {"time": ["2019-03-01"]}
    assert np.allclose(open_cube(out).lst_day.values[0, :, 16:], before + 5, atol=0.02)
    os.utime(added, ns=(stamp + 2 * 10**9, stamp + 2 * 10**9))  # touched, content unchanged: not redone
    touched_only = ingest([src], out, res=1.0, bbox=bbox, log=quiet([]))
    assert touched_only.written == {} and touched_only.skipped_present == {"time": ["2019-03-01", "2019-03-02"]}


def test_a_file_broken_after_it_was_ingested_unmarks_its_date(tmp_path):
    """A tile replaced by a truncated copy: its date is redone from the other tile, reported, and
    no longer recorded complete; once the file is whole again the next run completes it."""
    src = tmp_path / "in"
    lst_tiles(src, "2019-03-01", (18, 19), 20)
    out, bbox = tmp_path / "cube.zarr", (0, 40, 20, 50)
    ingest([src], out, res=1.0, bbox=bbox, log=quiet([]))
    tile = src / G.granule_name("MOD11A1", "2019-03-01", "061", (19, 4))
    whole = tile.read_bytes()
    tile.write_bytes(whole[:2000])
    broken = ingest([src], out, res=1.0, bbox=bbox, log=quiet([]))
    assert [p for p, _ in broken.bad] == [str(tile)] and broken.redone == {"time": ["2019-03-01"]}
    completed = json.loads(open_cube(out).attrs["ingest_completed"])["time"]
    assert completed["lst_day"] == [] and completed["lst_night"] == []
    tile.write_bytes(whole)
    mended = ingest([src], out, res=1.0, bbox=bbox, log=quiet([]))
    assert mended.ok and mended.written == {"time": ["2019-03-01"]}
    assert json.loads(open_cube(out).attrs["ingest_completed"])["time"]["lst_day"] == ["2019-03-01"]
    assert np.isfinite(open_cube(out).lst_day.values[0, :, 16:]).all()


def test_dates_added_before_written_ones_are_noted_once(tmp_path):
    n = 12
    lat, lon = G.pixel_latlon(18, 4, n)
    for day in ("2019-03-05", "2019-03-06"):
        G.mod11a1(tmp_path, day, 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    out = tmp_path / "cube.zarr"
    ingest([tmp_path], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    for day in ("2019-03-01", "2019-03-02"):
        G.mod11a1(tmp_path, day, 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    lines = []
    ingest([tmp_path], out, res=1.0, bbox=(0, 40, 10, 50), log=lines.append)
    assert [line for line in lines if "date order" in line] == [
        "note: time is not in date order in cube.zarr (dates added by an earlier run precede some of this "
        "run's); readers sort by date"]


def test_store_metadata_are_consolidated_after_every_run(tmp_path):
    n = 12
    lat, lon = G.pixel_latlon(18, 4, n)
    G.mod11a1(tmp_path, "2019-03-01", 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    out = tmp_path / "cube.zarr"
    ingest([tmp_path], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xr.open_zarr warns on a store without consolidated metadata
        assert xr.open_zarr(out).sizes["time"] == 1
    G.mod11a1(tmp_path, "2019-03-02", 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    ingest([tmp_path], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(out, consolidated=True)  # the consolidated copy is current, not the first run's
        assert ds.sizes["time"] == 2 and np.isfinite(ds.lst_day.values).any(axis=(1, 2)).all()
        assert "2019-03-02" in json.loads(ds.attrs["ingest_completed"])["time"]["lst_day"]


def test_interrupted_run_is_not_recorded_complete(tmp_path, monkeypatch):
    n = 30
    lat, lon = G.pixel_latlon(18, 4, n)
    G.mod11a1(tmp_path, "2019-03-01", 18, 4, n, lst_field(lat, lon), lst_field(lat, lon))
    out = tmp_path / "cube.zarr"
    real = IngestStore.update_attrs

    def crash(self, updates):
        if "ingest_completed" in updates:
            raise KeyboardInterrupt  # killed after the data were written
        real(self, updates)

    monkeypatch.setattr(IngestStore, "update_attrs", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest([tmp_path], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    assert np.isfinite(open_cube(out).lst_day.values).any()  # data on disk ...
    assert json.loads(open_cube(out).attrs["ingest_completed"]) == {}  # ... not recorded
    monkeypatch.setattr(IngestStore, "update_attrs", real)
    summary = ingest([tmp_path], out, res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    assert summary.written == {"time": ["2019-03-01"]} and not summary.skipped_present
    assert open_cube(out).sizes["time"] == 1  # rewritten in place, not appended twice


def test_months_filter(tmp_path):
    lat, lon = G.pixel_latlon(18, 4, 20)
    for day in ("2019-01-31", "2019-02-01", "2019-03-01"):
        G.mod11a1(tmp_path, day, 18, 4, 20, lst_field(lat, lon), lst_field(lat, lon))
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50),
                     months="2019-02:2019-02", log=quiet([]))
    assert summary.written == {"time": ["2019-02-01"]} and summary.outside_months == 2


# --- rasters and cubes ----------------------------------------------------------------------------------


def ci_field(lat, lon):
    return 0.5 + 0.004 * lat + 0.003 * lon


def test_geotiff_in_web_mercator_is_reprojected(tmp_path):
    from pyproj import Transformer

    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x0, y1 = to_merc.transform(-1.0, 46.0)
    x1, y0 = to_merc.transform(11.0, 39.0)
    px = 5000.0
    nx, ny = int((x1 - x0) / px), int((y1 - y0) / px)
    xs = x0 + (np.arange(nx) + 0.5) * px
    ys = y1 - (np.arange(ny) + 0.5) * px
    lon, lat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform(
        *np.meshgrid(xs, ys))
    G.geotiff(tmp_path / "ci_2019-01-09.tif", ci_field(lat, lon).astype(np.float32),
              G.north_up(x0, y1, px, px), crs="EPSG:3857", nodata=-9999.0)
    summary = ingest([], tmp_path / "cube.zarr", res=0.5, bbox=(0, 40, 10, 45),
                     rasters=[f"ci={tmp_path}/ci_*.tif"], log=quiet([]))
    ds = open_cube(tmp_path / "cube.zarr")
    assert summary.written == {"time_ci": ["2019-01-09"]} and ds.ci.dims == ("time_ci", "lat", "lon")
    pixel_deg = px / 111_320.0 * math.cos(math.radians(40))  # a Mercator pixel at 40-45 N
    check_area_means(ds.ci.values[0], ci_field, 45, 0, 0.5, pixel_deg, 1e-6, min_finite=1.0)
    assert (ds.ci_count.values[0] > 50).all()


def test_soilgrids_soc_in_dg_per_kg(tmp_path):
    kw = dict(west=0.0, north=45.0, res=0.05, n_lat=100, n_lon=200)
    G.latlon_geotiff(tmp_path / "soc30.tif", lambda a, b: 150.0 + 0 * a, units="dg/kg", dtype=np.int16,
                     nodata=-32768, **kw)
    G.latlon_geotiff(tmp_path / "soc_0-5cm_mean.tif", lambda a, b: 400.0 + 0 * a, dtype=np.int16,
                     nodata=-32768, **kw)  # SoilGrids name, no units in the file
    G.latlon_geotiff(tmp_path / "soc10.tif", lambda a, b: 2.5 + 0 * a, tags={"units": "%"}, **kw)
    summary = ingest([], tmp_path / "cube.zarr", res=0.5, bbox=(0, 40, 10, 45), log=quiet([]),
                     rasters=[f"soc30={tmp_path}/soc30.tif", f"soc0={tmp_path}/soc_0-5cm_mean.tif",
                              f"soc10={tmp_path}/soc10.tif"])
    ds = open_cube(tmp_path / "cube.zarr")
    assert sorted(summary.static_written) == ["soc0", "soc10", "soc30"]
    assert np.allclose(ds.soc30.values, 15.0) and ds.soc30.attrs["units"] == "g kg-1"
    assert np.allclose(ds.soc0.values, 40.0) and np.allclose(ds.soc10.values, 25.0)
    assert ds.soc30.dims == ("lat", "lon")
    G.latlon_geotiff(tmp_path / "mystery.tif", lambda a, b: 1.0 + 0 * a, **kw)
    with pytest.raises(InputError, match=r"no units for 'soc30'"):
        ingest([], tmp_path / "x.zarr", res=0.5, bbox=(0, 40, 10, 45), log=quiet([]),
               rasters=[f"soc30={tmp_path}/mystery.tif"])


def test_earth_engine_export_dates(tmp_path):
    kw = dict(west=0.0, north=45.0, res=0.1, n_lat=50, n_lon=100)
    for name, value in (("nir_2019-01-05.tif", 0.31), ("nir_20190106.tif", 0.32), ("nir_2019_01_07.tif", 0.33)):
        G.latlon_geotiff(tmp_path / name, lambda a, b, v=value: v + 0 * a, **kw)
    summary = ingest([], tmp_path / "cube.zarr", res=0.5, bbox=(0, 40, 10, 45), log=quiet([]),
                     rasters=[f"nir='{tmp_path}/nir_*.tif'"])
    ds = open_cube(tmp_path / "cube.zarr")
    assert summary.written == {"time": ["2019-01-05", "2019-01-06", "2019-01-07"]}
    assert list(pd.DatetimeIndex(ds.time.values).strftime("%Y-%m-%d")) == ["2019-01-05", "2019-01-06",
                                                                             "2019-01-07"]
    assert np.allclose(ds.nir.values.mean(axis=(1, 2)), [0.31, 0.32, 0.33], atol=1e-6)
    (tmp_path / "undated").mkdir()
    G.latlon_geotiff(tmp_path / "undated" / "nir_export.tif", lambda a, b: 0.3 + 0 * a, **kw)
    with pytest.raises(InputError, match="no date in the file name"):
        ingest([], tmp_path / "y.zarr", res=0.5, bbox=(0, 40, 10, 45), log=quiet([]),
               rasters=[f"nir={tmp_path}/undated/*.tif"])


def test_cf_cube_passes_through_with_unit_conversion(tmp_path):
    lat = 44.975 - 0.05 * np.arange(100)
    lon = 0.025 + 0.05 * np.arange(200)
    t = pd.date_range("2019-04-01", periods=2, freq="D")
    lst = xr.DataArray(np.full((2, 100, 200), 15.0, np.float32), dims=("time", "lat", "lon"),
                       attrs={"units": "degC"})
    xr.Dataset({"lst_day": lst, "other": lst}, coords={"time": t, "lat": lat, "lon": lon}).to_netcdf(
        tmp_path / "lst.nc", engine="h5netcdf")
    summary = ingest([tmp_path / "lst.nc"], tmp_path / "cube.zarr", res=0.5, bbox=(0, 40, 10, 45),
                     log=quiet([]))
    ds = open_cube(tmp_path / "cube.zarr")
    assert summary.written == {"time": ["2019-04-01", "2019-04-02"]} and "other" not in ds
    assert np.allclose(ds.lst_day.values, 288.15) and ds.lst_day.attrs["units"] == "K"
    bad = xr.Dataset({"lst_day": lst.assign_attrs(units="F")}, coords={"time": t, "lat": lat, "lon": lon})
    bad.to_netcdf(tmp_path / "bad.nc", engine="h5netcdf")
    with pytest.raises(InputError, match="units 'F'"):
        ingest([tmp_path / "bad.nc"], tmp_path / "z.zarr", res=0.5, bbox=(0, 40, 10, 45), log=quiet([]))


def test_cf_cube_read_by_blocks_in_any_orientation(tmp_path):
    """A cube stored south to north, on the output grid itself (each value its cell's, count 1;
    NaN -> count 0), read by blocks of dates: values and dates as stored, one date's slice at the
    right place; two variables of one file both recorded as coming from it."""
    lat = 40.25 + 0.5 * np.arange(10)  # ascending: flipped on reading
    lon = 0.25 + 0.5 * np.arange(20)
    t = pd.date_range("2019-01-01", periods=40, freq="D")
    rng = np.random.default_rng(3)
    nir = rng.uniform(0.2, 0.5, (40, 10, 20)).astype(np.float32)
    nir[5, 2, 3] = np.nan
    red = rng.uniform(0.02, 0.1, (40, 10, 20)).astype(np.float32)
    xr.Dataset({"nir": (("time", "lat", "lon"), nir, {"units": "1"}),
                "red": (("time", "lat", "lon"), red, {"units": "1"})},
               coords={"time": t, "lat": lat, "lon": lon}).to_netcdf(tmp_path / "c.nc", engine="h5netcdf")
    summary = ingest([tmp_path / "c.nc"], tmp_path / "cube.zarr", res=0.5, bbox=(0, 40, 10, 45),
                     months="2019-01:2019-01", log=quiet([]))
    assert summary.written == {"time": [d.date().isoformat() for d in t[:31]]} and summary.outside_months == 18
    ds = open_cube(tmp_path / "cube.zarr")
    assert np.array_equal(ds.nir.values, nir[:31, ::-1], equal_nan=True)
    assert np.array_equal(ds.red.values, red[:31, ::-1])
    assert ds.nir_count.values[5, 7, 3] == 0 and ds.nir_count.values.sum() == 31 * 200 - 1
    files = json.loads(ds.attrs["ingest_inventory"])["time"]["2019-01-06"]
    assert files["c.nc"]["variables"] == ["nir", "red"] and files["c.nc"]["size"] == (tmp_path / "c.nc").stat().st_size


def test_input_errors(tmp_path):
    with pytest.raises(InputError, match="is not a whole number of 0.3-degree cells"):
        ingest([], tmp_path / "a.zarr", res=0.3, bbox=(0, 40, 10, 45), log=quiet([]))
    with pytest.raises(InputError, match="no such file"):
        ingest([tmp_path / "missing"], tmp_path / "b.zarr", res=0.5, bbox=(0, 40, 10, 45), log=quiet([]))
    with pytest.raises(ConfigError, match="ingest.months"):
        ingest([], tmp_path / "c.zarr", res=0.5, months="2019-13", log=quiet([]))
    with pytest.raises(InputError, match="--months '2019-13:2019-14': expected YYYY-MM:YYYY-MM"):
        ingest([], tmp_path / "c.zarr", res=0.5, months="2019-13:2019-14", log=quiet([]))


def test_cuda_without_a_gpu_says_so(tmp_path, monkeypatch):
    from ciml_ter import device

    monkeypatch.setattr(device, "cupy_or_none", lambda: None)  # a host without a usable GPU
    with pytest.raises(DeviceError, match="device 'cuda' was requested but no CUDA GPU is usable"):
        ingest([], tmp_path / "a.zarr", res=0.5, bbox=(0, 40, 10, 45), device="cuda", log=quiet([]))
    assert not (tmp_path / "a.zarr").exists()


def test_reprocessed_duplicate_granules_keep_the_latest(tmp_path):
    n = 20
    lat, _ = G.pixel_latlon(18, 4, n)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = G.mod11a1(tmp_path / "a", "2019-03-01", 18, 4, n, 280 + 0 * lat, 270 + 0 * lat)
    new = G.mod11a1(tmp_path / "b", "2019-03-01", 18, 4, n, 290 + 0 * lat, 270 + 0 * lat)
    new = new.rename(new.with_name(new.name.replace(".2021001000000.", ".2022045103000.")))
    lines = []
    ingest([tmp_path / "a", tmp_path / "b"], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50),
           log=lines.append)
    ds = open_cube(tmp_path / "cube.zarr")
    assert np.allclose(ds.lst_day.values[np.isfinite(ds.lst_day.values)], 290.0)
    assert any(old.name in line and new.name in line and "superseded" in line for line in lines)
    assert "ciml-ter ingest" in ds.attrs["history"]


def test_terra_first_aqua_fills_its_gaps(tmp_path):
    n = 40
    lat, lon = G.pixel_latlon(18, 4, n)
    terra = 280 + 0 * lat
    terra[lat < 45] = np.nan  # Terra: nothing south of 45 N
    G.mod11a1(tmp_path, "2019-03-01", 18, 4, n, terra, terra)
    G.mod11a1(tmp_path, "2019-03-01", 18, 4, n, 300 + 0 * lat, 300 + 0 * lat, product="MYD11A1")
    ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=(0, 40, 10, 50), log=quiet([]))
    ds = open_cube(tmp_path / "cube.zarr")
    day = ds.lst_day.values[0]
    assert np.allclose(day[:5], 280.0) and np.allclose(day[5:], 300.0)  # not pooled
    assert ds.lst_day.attrs["source_products"] == "MOD11A1, MYD11A1"
