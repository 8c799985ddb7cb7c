"""Feature cube: monthly composites, computed NIRv/LSWI, SCVTG wiring, resampling, bands."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ciml_ter import kernels
from ciml_ter.config import FeaturesConfig
from ciml_ter.data.cube import open_cube, write_zarr
from ciml_ter.errors import InputError
from ciml_ter.features import build_features, scvtg_names

from _support import make_cube

CONFIG = FeaturesConfig(sg_window=31, sg_order=2, sg_max_iter=3)


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
    full = build_features(cube_path, out / "f.zarr", config=CONFIG)
    coarse = build_features(cube_path, out / "f2.zarr", res=1.0, config=CONFIG)
    banded = build_features(cube_path, out / "f_band.zarr",
                            config=FeaturesConfig(**{**CONFIG.__dict__, "band_rows": 1}))
    return (open_cube(out / "f.zarr"), open_cube(out / "f2.zarr"), open_cube(out / "f_band.zarr"),
            full, coarse, banded)


def test_summary_and_layout(built):
    ds, _, _, full, coarse, banded = built
    assert full["months"] == 12 and full["scvtg_years"] == [2004] and full["factor"] == 1
    assert coarse["grid"] == [2, 3] and banded["bands"] == 4
    assert set(ds.data_vars) == {*full["features"], "land"}
    assert json.loads(ds.attrs["features"]) == full["features"]  # the training order
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
    same = {k: v for k, v in a.attrs.items() if k != "features_config"}  # which differs in band_rows
    assert {k: b.attrs.get(k) for k in same} == same and json.loads(b.attrs["features"])  # kept on append


def test_bad_requests(cube_path, tmp_path):
    with pytest.raises(InputError, match="--res 0.75 is not an integer multiple"):
        build_features(cube_path, tmp_path / "x.zarr", res=0.75, config=CONFIG)
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(InputError, match="exists.zarr: already exists"):
        build_features(cube_path, tmp_path / "exists.zarr", config=CONFIG)
    short = make_cube(days=40)
    write_zarr(short, tmp_path / "short.zarr")
    with pytest.raises(InputError, match="no complete year of daily nir"):
        build_features(tmp_path / "short.zarr", tmp_path / "y.zarr", config=CONFIG)
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
    from ciml_ter.sites import build_site_table

    folder = _fluxnet_folder(tmp_path / "flux", [("XX-Lnd", 9.3, -3.7), ("XX-Wet", 9.75, -2.25),
                                                 ("XX-Out", 20.0, 0.0)])
    features_path = tmp_path / "f.zarr"
    build_features(cube_path, features_path, config=CONFIG)
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
    from ciml_ter.sites import build_site_table

    folder = _fluxnet_folder(tmp_path / "flux", [("XX-Lnd", 9.3, -3.7)])
    with pytest.raises(InputError, match="no 'features' attribute"):
        build_site_table([folder], features=cube_path)
