"""Feature cube: monthly composites, computed NIRv/LSWI, SCVTG wiring, resampling, bands."""
from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ciml_ter import features, kernels
from ciml_ter.config import config_from_dict
from ciml_ter.data.cube import open_cube, write_zarr
from ciml_ter.errors import InputError
from ciml_ter.features import band_budget, band_bytes_per_row, band_rows_for, years_by_length
from ciml_ter.kernels import scvtg_names
from ciml_ter.device import CPU, Device
from ciml_ter.stages import Runtime
from ciml_ter.stages.features import make_features

from _support import RUNTIME, make_cube

SETTINGS = {"sg_window": 31, "sg_order": 2, "sg_max_iter": 3}
CONFIG = config_from_dict({"features": SETTINGS})


def banded_config(rows: int):
    """CONFIG with bands of ``rows`` grid rows."""
    return config_from_dict({"features": {**SETTINGS, "band_rows": rows}})


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory):
    ds = make_cube(n_lat=4, n_lon=6, days=366, start="2004-01-01")
    t = np.arange(366)
    seasonal = 0.25 + 0.2 * np.sin(2 * np.pi * (t - 100) / 366)
    ds["nir"] = (("time", "lat", "lon"), (seasonal[:, None, None] + 0.01 * ds.red.values).astype(np.float32),
                 {"units": "1"})
    ds["nir"][::7, 0, 0] = np.nan  # gaps
    ds["land"][0, 5] = 0
    ds["land"][3, :2] = 0
    ds["lst_day"] = (ds.lst_day - 273.15).assign_attrs(units="degC")
    path = tmp_path_factory.mktemp("features") / "in.zarr"
    write_zarr(ds, path)
    return path


@pytest.fixture(scope="module")
def built(cube_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    full = make_features(cube_path, out / "f.zarr", CONFIG, RUNTIME)
    coarse = make_features(cube_path, out / "f2.zarr", CONFIG, RUNTIME, res=1.0)
    band1 = make_features(cube_path, out / "f_band.zarr", banded_config(1), RUNTIME)
    return (open_cube(out / "f.zarr"), open_cube(out / "f2.zarr"), open_cube(out / "f_band.zarr"),
            full, coarse, band1)


def test_summary_and_layout(built):
    ds, _, _, full, coarse, band1 = built
    assert full.months == 12 and full.scvtg_years == [2004] and full.factor == 1
    assert coarse.grid == (2, 3) and band1.bands == 4
    assert (full.band_rows, full.band_budget_bytes, full.budget_source) == (4, 1 << 30, "cpu budget")
    assert (band1.band_rows, band1.band_budget_bytes, band1.budget_source) == (1, None, "config")
    assert set(ds.data_vars) == {*full.features, "land"}
    assert json.loads(ds.attrs["features"]) == full.features  # the training order
    assert ds.lst_day.attrs["units"] == "K" and ds.L50.attrs["units"] == "day"
    assert ds.Area_NIRv.attrs["units"] == "day" and ds.soc0.attrs["units"] == "g kg-1"
    assert ds.attrs["Conventions"] == "CF-1.8"


def test_monthly_medians_match_pandas(built, cube_path):
    ds = built[0]
    src = open_cube(cube_path)
    days = pd.DatetimeIndex(src.time.values)
    lst = pd.Series(src.lst_day.values[:, 1, 2] + 273.15, index=days).groupby(days.month).median()
    np.testing.assert_allclose(ds.lst_day.values[:, 1, 2], lst.values, rtol=1e-6)
    eight = pd.DatetimeIndex(src.time8.values)
    lai = pd.Series(src.lai.values[:, 2, 3], index=eight).groupby(eight.month).median()
    np.testing.assert_allclose(ds.lai.values[lai.index - 1, 2, 3], lai.values, rtol=1e-6)
    nir, red = src.nir.values[:, 1, 1].astype(float), src.red.values[:, 1, 1].astype(float)
    nirv = pd.Series((nir - red) / (nir + red) * nir, index=days).groupby(days.month).median()
    np.testing.assert_allclose(ds.nirv.values[:, 1, 1], nirv.values, rtol=1e-5)
    np.testing.assert_allclose(ds.soc10.values[:, 2, 2], src.soc10.values[2, 2], rtol=1e-6)


def test_scvtg_layers_are_the_kernels_on_the_pixel_series(built, cube_path):
    ds = built[0]
    src = open_cube(cube_path)
    nirv = kernels.nirv(src.nir.values[:, 0, 0], src.red.values[:, 0, 0]).value
    env = kernels.sg_upper_envelope(nirv.astype(np.float32), window=31, order=2, max_iter=3)
    expected = kernels.scvtg(env)
    for name in scvtg_names((0.75, 0.5, 0.25)):
        np.testing.assert_allclose(ds[name].values[:, 0, 0], expected[name], rtol=1e-5)
        np.testing.assert_array_equal(ds[name].values[0], ds[name].values[11])  # one per year


def test_ocean_is_nan_everywhere(built):
    ds = built[0]
    assert ds.land.values[0, 5] == 0 and ds.land.values.sum() == 24 - 3
    for name in ds.data_vars:
        if name != "land":
            assert np.isnan(ds[name].values[..., 0, 5]).all() and np.isnan(ds[name].values[..., 3, 0]).all()


def test_block_resampling_is_the_mean_of_valid_blocks(built):
    fine, coarse = built[0], built[1]
    blocks = fine.lai.values.reshape(12, 2, 2, 3, 2)
    valid = np.isfinite(blocks).sum(axis=(2, 4))
    with np.errstate(invalid="ignore"):
        expected = np.where(valid >= 2, np.nanmean(blocks, axis=(2, 4)), np.nan)
    land = coarse.land.values.astype(bool)
    np.testing.assert_allclose(coarse.lai.values[:, land], expected[:, land], rtol=1e-5)
    np.testing.assert_allclose(coarse.lat.values, [9.5, 8.5])


def test_bands_do_not_change_results(built):
    a, b = built[0], built[2]
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    same = {k: v for k, v in a.attrs.items() if k not in ("features_config", "made_from")}  # these hold band_rows
    assert {k: b.attrs.get(k) for k in same} == same and json.loads(b.attrs["features"])  # kept on append


def test_band_rows_fit_the_budget_as_multiples_of_the_factor():
    # 6 longitudes, 366 days, 12 months, 26 features: on "cuda" 56 B per day-pixel (NIRv, its
    # land copy, the envelope's float64 input and five float64 arrays), 4 * 26 + 32 per month-pixel
    per_row = 6 * (56 * 366 + (4 * 26 + 32) * 12)
    assert band_bytes_per_row(6, 366, 12, 26, "cuda") == per_row == 132768
    assert band_bytes_per_row(6, 366, 12, 26, "cpu") == 6 * (28 * 366 + (4 * 26 + 32) * 12)
    rows = dict(n_lat=40, n_lon=6, n_days=366, n_months=12, n_features=26, kind="cuda")
    assert band_rows_for(**rows, budget_bytes=10 * per_row + 5) == 10
    assert band_rows_for(**rows, budget_bytes=10 * per_row - 1) == 9
    assert band_rows_for(**rows, budget_bytes=10 * per_row, factor=4) == 8  # a multiple of the factor
    assert band_rows_for(**rows, budget_bytes=0, factor=4) == 4  # at least one block row
    assert band_rows_for(**rows, budget_bytes=1 << 40, factor=4) == 40  # at most the grid
    assert band_rows_for(**{**rows, "kind": "cpu"}, budget_bytes=10 * per_row) == 18  # no GPU scratch


def test_cpu_band_estimate_bounds_the_measured_peak(tmp_path):
    # two 365-day years share one envelope launch: the peak the estimate describes
    write_zarr(make_cube(n_lat=4, n_lon=30, days=730, start="2002-01-01"), tmp_path / "in.zarr")
    ds = open_cube(tmp_path / "in.zarr")
    plan_ = features.plan(ds, "in.zarr", None, CONFIG.features, CPU)
    features.band_features(ds, slice(0, 4), plan_, CONFIG.features, np)  # compiled before measuring
    tracemalloc.start()
    try:
        features.band_features(ds, slice(0, 4), plan_, CONFIG.features, np)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = 4 * band_bytes_per_row(30, 730, 24, len(plan_.features), "cpu")
    assert 0.8 * estimate < peak <= estimate, (peak, estimate)


def test_band_budget_is_half_the_free_device_memory_or_the_cpu_budget():
    gib = 1 << 30
    fake_cupy = SimpleNamespace(
        cuda=SimpleNamespace(runtime=SimpleNamespace(memGetInfo=lambda: (6 * gib, 80 * gib))),
        get_default_memory_pool=lambda: SimpleNamespace(free_bytes=lambda: 2 * gib))
    assert band_budget("cuda", fake_cupy) == (4 * gib, "free device memory")  # (6 + 2 pooled) / 2
    assert band_budget("cpu", fake_cupy) == (gib, "cpu budget")


def test_each_input_is_read_once_per_band_and_each_output_moved_once(cube_path, tmp_path, monkeypatch):
    reads, moves = Counter(), []
    read, to_host = features._read, features.to_host

    def counting_read(ds, var, rows, xp):
        reads[var] += 1
        return read(ds, var, rows, xp)

    def counting_to_host(a):
        moves.append(a.shape)
        return to_host(a)

    monkeypatch.setattr(features, "_read", counting_read)
    monkeypatch.setattr(features, "to_host", counting_to_host)
    summary = make_features(cube_path, tmp_path / "f.zarr", banded_config(2), RUNTIME)
    assert summary.bands == 2
    inputs = {"land", "nir", "red", "swir1", "lst_day", "lst_night", "lai", "ci", "pv", "npv", "bs",
              "soc0", "soc10", "soc30"}
    assert reads == {var: 2 for var in inputs}  # nir once for both NIRv and LSWI
    band = [(2, 6)] + [(12, 2, 6)] * len(summary.features)  # the land mask, then each feature
    assert moves == band + band


def _multi_year_cube(path):
    """2003 (365 days), 2004 (366), 2005 (365) and 40 days of 2006, with a seasonal NIR."""
    ds = make_cube(n_lat=4, n_lon=3, days=1096 + 40, start="2003-01-01", seed=5)
    doy = pd.DatetimeIndex(ds.time.values).day_of_year.to_numpy()
    seasonal = 0.25 + 0.2 * np.sin(2 * np.pi * (doy - 100) / 365)
    ds["nir"] = (("time", "lat", "lon"), (seasonal[:, None, None] + 0.02 * ds.red.values).astype(np.float32),
                 {"units": "1"})
    ds["nir"][::5, 1, 1] = np.nan
    ds["land"][2, 0] = 0
    write_zarr(ds, path)
    return path


def test_scvtg_years_of_one_length_share_a_launch(tmp_path, monkeypatch):
    path = _multi_year_cube(tmp_path / "in.zarr")
    days = pd.DatetimeIndex(open_cube(path).time.values)
    assert years_by_length(days, [2003, 2004, 2005]) == {365: [2003, 2005], 366: [2004]}
    envelope = kernels.sg_upper_envelope
    calls = []

    def counting_envelope(y, **kw):
        calls.append(y.shape)
        return envelope(y, **kw)

    monkeypatch.setattr(features.kernels, "sg_upper_envelope", counting_envelope)
    summary = make_features(path, tmp_path / "banded.zarr", banded_config(2), RUNTIME)
    # per band of 2 rows x 3 longitudes: one launch for 2003 + 2005 side by side, one for 2004
    assert summary.scvtg_years == [2003, 2004, 2005] and summary.bands == 2
    assert calls == [(365, 2 * 6), (366, 6), (365, 2 * 5), (366, 5)]  # band 2 has an ocean pixel
    whole = make_features(path, tmp_path / "whole.zarr", CONFIG, RUNTIME)
    assert whole.band_rows == 4 and len(calls) == 6
    banded, ds = open_cube(tmp_path / "banded.zarr"), open_cube(tmp_path / "whole.zarr")
    src = open_cube(path)
    nirv = kernels.nirv(src.nir.values, src.red.values).value
    months = pd.DatetimeIndex(ds.time.values)
    for year in (2003, 2004, 2005):  # the per-year computation, one kernel call per year
        env = envelope(nirv[days.year == year], window=31, order=2, max_iter=3)
        expected = kernels.scvtg(env)
        for name in scvtg_names((0.75, 0.5, 0.25)):
            want = np.where(src.land.values == 1, expected[name].astype(np.float32), np.nan)
            for layer in (ds[name].values[months.year == year], banded[name].values[months.year == year]):
                np.testing.assert_array_equal(layer, np.broadcast_to(want, layer.shape))
    assert np.isnan(ds.Vtop.values[months.year == 2006]).all()  # an incomplete year has no SCVTG
    for name in ds.data_vars:
        np.testing.assert_array_equal(ds[name].values, banded[name].values)


@pytest.mark.gpu
def test_gpu_features_equal_the_cpu_features(tmp_path):
    """--device cuda: the band sized from free device memory and the CPU's cube to float32
    tolerance, SCVTG of the stacked years included."""
    path = _multi_year_cube(tmp_path / "in.zarr")
    cpu = make_features(path, tmp_path / "cpu.zarr", CONFIG, RUNTIME)
    gpu = make_features(path, tmp_path / "gpu.zarr", CONFIG, Runtime(Device.resolve("cuda")))
    assert gpu.device == "cuda" and gpu.budget_source == "free device memory"
    assert gpu.band_budget_bytes > 0 and gpu.band_rows == cpu.band_rows == 4
    a, b = open_cube(tmp_path / "cpu.zarr"), open_cube(tmp_path / "gpu.zarr")
    for name in a.data_vars:
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-5, atol=1e-6, equal_nan=True,
                                   err_msg=name)


def test_bad_requests(cube_path, tmp_path):
    with pytest.raises(InputError, match="--res 0.75 is not an integer multiple"):
        make_features(cube_path, tmp_path / "x.zarr", CONFIG, RUNTIME, res=0.75)
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(InputError, match="exists.zarr: already exists"):
        make_features(cube_path, tmp_path / "exists.zarr", CONFIG, RUNTIME)
    short = make_cube(days=40)
    write_zarr(short, tmp_path / "short.zarr")
    with pytest.raises(InputError, match="no complete year of daily nir"):
        make_features(tmp_path / "short.zarr", tmp_path / "y.zarr", CONFIG, RUNTIME)
    assert not (tmp_path / "y.zarr").exists()


def _fluxnet_folder(path, sites):
    """Small FLUXNET2015 SUBSET_MM files: TER 2 g C m-2 d-1, QC 1, months 2004-01..2005-01."""
    path.mkdir()
    stamps = [200400 + m for m in range(1, 13)] + [200501]
    for site_id, lat, lon in sites:
        pd.DataFrame({"TIMESTAMP": stamps, "RECO_NT_VUT_REF": 2.0, "NEE_VUT_REF_QC": 1.0}).to_csv(
            path / f"FLX_{site_id}_FLUXNET2015_SUBSET_MM_2004-2005_1-4.csv", index=False)
    pd.DataFrame([{"SITE_ID": s, "LOCATION_LAT": a, "LOCATION_LONG": o, "IGBP": "GRA"}
                  for s, a, o in sites]).to_csv(path / "sites.csv", index=False)
    return path


def test_site_table_from_the_feature_cube(built, cube_path, tmp_path):
    from ciml_ter.sitetable import build_site_table

    folder = _fluxnet_folder(tmp_path / "flux", [("XX-Lnd", 9.3, -3.7), ("XX-Wet", 9.75, -2.25),
                                                 ("XX-Out", 20.0, 0.0)])
    features_path = tmp_path / "f.zarr"
    make_features(cube_path, features_path, CONFIG, RUNTIME)
    ds = built[0]
    table, report = build_site_table([folder], features=features_path)
    assert sorted(table.site.unique()) == ["XX-Lnd"] and len(table) == 12
    assert report.predictors == json.loads(ds.attrs["features"])
    assert report.dropped_sites == {"outside the grid": ["XX-Out"], "on a water pixel": ["XX-Wet"],
                                    "months outside the cube period": ["XX-Lnd (1)"]}
    assert any("left out, on a water pixel: 1 site(s): XX-Wet" in line for line in report.lines())
    np.testing.assert_allclose(table.lai.values, ds.lai.values[:, 1, 2], rtol=1e-6)
    np.testing.assert_allclose(table.Vtop.values, ds.Vtop.values[:, 1, 2], rtol=1e-6)
    np.testing.assert_allclose(table.ter.values[1], 2.0 * 29)  # February 2004
    median3, _ = build_site_table([folder], features=features_path, window=3)
    with np.errstate(all="ignore"):
        expected = np.nanmedian(ds.lai.values[:, 0:3, 1:4].reshape(12, -1), axis=1)
    np.testing.assert_allclose(median3.lai.values, expected, rtol=1e-6)


def test_site_table_from_a_cube_without_feature_list(cube_path, tmp_path):
    from ciml_ter.sitetable import build_site_table

    folder = _fluxnet_folder(tmp_path / "flux", [("XX-Lnd", 9.3, -3.7)])
    with pytest.raises(InputError, match="no 'features' attribute"):
        build_site_table([folder], features=cube_path)


def test_a_cube_out_of_time_order_gives_the_features_of_the_ordered_cube_and_says_so(built, cube_path, tmp_path):
    """An input cube whose dates are not in order (a store extended with earlier dates) is sorted
    before the medians, seasonality and SCVTG: the same features as the ordered cube, and a note."""
    ds = open_cube(cube_path).load()
    order = np.random.default_rng(0).permutation(ds.sizes["time"])
    shuffled = ds.isel(time=order).isel(time8=np.arange(ds.sizes["time8"])[::-1])
    write_zarr(shuffled, tmp_path / "shuffled.zarr")
    summary = make_features(tmp_path / "shuffled.zarr", tmp_path / "f.zarr", CONFIG, RUNTIME)
    moved = int(np.sum(np.sort(order) != order))
    assert sorted(summary.lines()[:2]) == [
        f"{tmp_path / 'shuffled.zarr'}: time dimension 'time' was not in order ({moved} of 366 dates out of place); "
        "sorted by date",
        f"{tmp_path / 'shuffled.zarr'}: time dimension 'time8' was not in order (44 of 45 dates out of place); "
        "sorted by date"]
    ordered, got = built[0], open_cube(tmp_path / "f.zarr")
    for name in ordered.data_vars:
        np.testing.assert_array_equal(got[name].values, ordered[name].values, err_msg=name)


def test_a_cube_that_repeats_dates_is_refused_with_the_dates(cube_path, tmp_path):
    ds = open_cube(cube_path).load()
    index = np.r_[np.arange(100), [40, 41, 42], np.arange(100, ds.sizes["time"])]
    write_zarr(ds.isel(time=index), tmp_path / "twice.zarr")
    with pytest.raises(InputError, match=r"time dimension 'time' repeats 3 date\(s\) \(2004-02-10, 2004-02-11, "
                                         r"2004-02-12\); expected one value per date"):
        make_features(tmp_path / "twice.zarr", tmp_path / "f.zarr", CONFIG, RUNTIME)
    assert not (tmp_path / "f.zarr").exists()
