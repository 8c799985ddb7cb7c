"""Synthetic Earth: determinism, band invariance, real land mask, contract, known truth,
decoys, FLUXNET-format towers with a northern bias, SCVTG recovered from noisy data."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from global_land_mask import globe

from ciml_ter import kernels
from ciml_ter.data.contract import check_cube
from ciml_ter.data.flux import read_fluxnet_dir
from ciml_ter.data.synth import climate, grid, landcover_classes, row_variables, write_synthetic_world
from ciml_ter.errors import InputError

BBOX = (-10.0, 35.0, 20.0, 60.0)  # Europe: land, sea and coasts


def _open(path):
    return (xr.open_dataset(path / "cube.zarr", engine="zarr", consolidated=False, chunks=None),
            xr.open_dataset(path / "truth.nc", engine="h5netcdf"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summary = write_synthetic_world(root / "a", res=1.0, years=(2004, 2004), bbox=BBOX, n_sites=12, seed=3)
    write_synthetic_world(root / "b", res=1.0, years=(2004, 2004), bbox=BBOX, n_sites=12, seed=3, band_rows=4)
    write_synthetic_world(root / "c", res=1.0, years=(2004, 2004), bbox=BBOX, n_sites=0, seed=4)
    return root, summary


def test_summary_contract_and_units(world):
    root, summary = world
    cube, truth = _open(root / "a")
    assert summary["grid"] == [25, 30] and summary["days"] == 366 and summary["months"] == 12
    assert check_cube(cube) == []
    for name, var in cube.data_vars.items():
        assert "units" in var.attrs or "flag_meanings" in var.attrs, name
    assert truth.ter.attrs["units"] == "g C m-2 month-1"
    assert json.loads(truth.attrs["parents"]) == ["lst_night", "lswi", "lai", "soc30"]
    land = cube.land.values.astype(bool)
    assert np.isnan(cube.nir.values[:, ~land]).all() and np.isfinite(truth.ter.values[:, land]).all()
    assert 0.05 < np.isnan(cube.nir.values[:, land]).mean() < 0.5  # cloud gaps
    lst = cube.lst_day.values[:, land]
    assert 230 < np.nanmin(lst) and np.nanmax(lst) < 330
    assert np.nanmax(cube.lai.values) < 8 and np.nanmin(cube.bs.values) >= 0


def test_deterministic_and_independent_of_band_height(world):
    root, _ = world
    (a, ta), (b, tb), (c, _) = _open(root / "a"), _open(root / "b"), _open(root / "c")
    for name in ("nir", "lst_night", "lai", "soc30", "pft"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_array_equal(ta.ter.values, tb.ter.values)
    assert not np.array_equal(a.nir.values, c.nir.values, equal_nan=True)
    assert pd.read_csv(root / "a" / "fluxnet" / "sites.csv").equals(pd.read_csv(root / "b" / "fluxnet" / "sites.csv"))


def test_land_and_biomes_are_the_real_mcd12c1_ones(world):
    """Land and IGBP classes against the MCD12C1 2019 GeoTIFF read here with rasterio alone: a
    1-degree cell is land when at least half of its 400 sub-cells are, its class the most
    frequent land class (ties to the smaller code)."""
    import rasterio
    from ciml_ter.data.products.landcover import default_landcover_path

    root, _ = world
    cube, _ = _open(root / "a")
    with rasterio.open(default_landcover_path()) as src:
        classes = src.read(1)  # 3600 x 7200 from 90 N, 180 W
    west, south, east, north = BBOX
    rows = slice(int(round((90 - north) / 0.05)), int(round((90 - south) / 0.05)))
    cols = slice(int(round((west + 180) / 0.05)), int(round((east + 180) / 0.05)))
    block = classes[rows, cols].reshape(cube.sizes["lat"], 20, cube.sizes["lon"], 20)
    is_land = (block != 0) & (block != 255)
    land = cube.land.values.astype(bool)
    np.testing.assert_array_equal(land, is_land.mean(axis=(1, 3)) >= 0.5)
    for i, j in zip(*np.nonzero(land)):
        codes, counts = np.unique(block[i, :, j, :][is_land[i, :, j, :]], return_counts=True)
        assert cube.pft.values[i, j] == codes[np.argmax(counts)], (i, j)
    assert len(np.unique(cube.pft.values[land])) >= 4 and 0.3 < land.mean() < 0.9
    assert "MCD12C1" in cube.attrs["landcover"]


def test_climate_landcover_follows_global_land_mask(tmp_path):
    write_synthetic_world(tmp_path / "w", res=1.0, months=("2004-01", "2004-01"), bbox=BBOX, n_sites=0,
                          seed=3, landcover="climate")
    cube, _ = _open(tmp_path / "w")
    lat, lon = np.meshgrid(cube.lat.values, cube.lon.values, indexing="ij")
    centre_is_land = globe.is_land(lat, lon)
    land = cube.land.values.astype(bool)
    assert np.mean(centre_is_land[land]) > 0.85 and np.mean(~centre_is_land[~land]) > 0.85
    assert "global-land-mask" in cube.attrs["landcover"]


def test_truth_recomputed_from_the_written_predictors(world):
    root, _ = world
    cube, truth = _open(root / "a")
    days = pd.DatetimeIndex(cube.time.values)
    eight = pd.DatetimeIndex(cube.time8.values)
    for i, j in [(3, 20), (10, 25), (20, 5)]:
        if not cube.land.values[i, j]:
            continue
        night = pd.Series(cube.lst_night.values[:, i, j], index=days).groupby(days.month).median()
        nir, swir = cube.nir.values[:, i, j].astype(float), cube.swir1.values[:, i, j].astype(float)
        lswi = pd.Series((nir - swir) / (nir + swir), index=days).groupby(days.month).median()
        lai = pd.Series(cube.lai.values[:, i, j], index=eight).groupby(eight.month).median()
        soc30 = float(cube.soc30.values[i, j])
        expected = (120.0 * np.exp(308.56 * (1 / (288.15 - 227.13) - 1 / (night.values - 227.13)))
                    * np.clip((lswi.values + 0.25) / 0.6, 0.1, 1) * (0.3 + lai.values / (lai.values + 1.5))
                    * (1 + soc30 / 15))
        np.testing.assert_allclose(truth.ter.values[:, i, j], expected, rtol=1e-4)


def test_decoys_follow_a_parent_but_are_not_parents(world):
    root, _ = world
    cube, truth = _open(root / "a")
    land = cube.land.values.astype(bool)
    days = pd.DatetimeIndex(cube.time.values)
    labels = (days.month.to_numpy()).astype(np.int64)
    day = kernels.monthly_median(cube.lst_day.values[:, land].astype(float), labels).median.ravel()
    night = kernels.monthly_median(cube.lst_night.values[:, land].astype(float), labels).median.ravel()
    assert np.corrcoef(day, night)[0, 1] > 0.5
    lai, ci = cube.lai.values[:, land].ravel(), cube.ci.values[:, land].ravel()
    assert np.corrcoef(lai, ci)[0, 1] < -0.5
    assert set(json.loads(truth.attrs["decoys"])).isdisjoint(json.loads(truth.attrs["parents"]))


def test_towers_in_fluxnet_format_with_noise_gaps_and_qc(world):
    root, _ = world
    cube, truth = _open(root / "a")
    folder = root / "a" / "fluxnet"
    raw = pd.read_csv(next(folder.glob("FLX_SY-000_FLUXNET2015_SUBSET_MM_2004-2004_1-4.csv")))
    assert raw.TIMESTAMP.tolist() == [200401 + k for k in range(12)]
    obs, report = read_fluxnet_dir(folder)
    assert report.rows_read == 12 * 12 and 0 < len(obs) < 12 * 12  # gaps and QC removed some
    sites = pd.read_csv(folder / "sites.csv")
    for _, row in obs.iterrows():
        site = sites[sites.SITE_ID == row.site].iloc[0]
        i = int(np.abs(cube.lat.values - site.LOCATION_LAT).argmin())
        j = int(np.abs(cube.lon.values - site.LOCATION_LONG).argmin())
        true = float(truth.ter.values[pd.Timestamp(row.time).month - 1, i, j])
        assert abs(row.ter - true) <= 0.5 * true + 1e-6  # 10 % noise: 5 sigma


def test_sites_are_biased_to_northern_mid_latitudes(tmp_path):
    summary = write_synthetic_world(tmp_path, res=1.0, months=("2001-01", "2001-01"), n_sites=80, seed=1)
    assert summary["days"] == 31 and summary["months"] == 1
    sites = pd.read_csv(tmp_path / "fluxnet" / "sites.csv")
    cube = xr.open_dataset(tmp_path / "cube.zarr", engine="zarr", consolidated=False)
    land = cube.land.values.astype(bool)
    band = (cube.lat.values >= 35) & (cube.lat.values <= 60)
    land_share = land[band].sum() / land.sum()
    site_share = ((sites.LOCATION_LAT >= 35) & (sites.LOCATION_LAT <= 60)).mean()
    assert site_share > land_share + 0.15


def test_scvtg_from_noisy_data_is_close_to_the_clean_curve(world):
    """The engine's NIRv -> envelope -> SCVTG on the cloudy, spiky data against SCVTG of the
    noise-free curve behind it (same climate, same seed)."""
    root, _ = world
    cube, _ = _open(root / "a")
    lat, lon = grid(1.0, BBOX)
    clim = climate(lat, lon, 3)
    land, clim["pft"] = landcover_classes(lat, lon, 1.0)
    days = pd.DatetimeIndex(cube.time.values)
    eight = pd.DatetimeIndex(cube.time8.values)
    errors = {k: [] for k in ("Vtop", "Vbottom", "V50", "L50", "Area_NIRv")}
    for i in (5, 12, 18):
        cols = np.flatnonzero(land[i])
        c = {k: v[i, cols] for k, v in clim.items()}
        noisy, _ = row_variables(c, lat[i], i, 1.0, BBOX, 3, days, eight)
        clean, _ = row_variables(c, lat[i], i, 1.0, BBOX, 3, days, eight, clean=True)
        np.testing.assert_array_equal(noisy["nir"], cube.nir.values[:, i, cols])
        got = kernels.scvtg(kernels.sg_upper_envelope(kernels.nirv(noisy["nir"], noisy["red"]).value))
        truth = kernels.scvtg(kernels.nirv(clean["nir"].astype(np.float64), clean["red"].astype(np.float64)).value)
        for k in errors:
            ok = np.isfinite(truth[k]) & np.isfinite(got[k])
            scale = np.abs(truth["Vtop"][ok]) if k.startswith("V") else (365 if k.startswith("L") else np.abs(truth[k][ok]))
            errors[k].append(np.abs(got[k][ok] - truth[k][ok]) / scale)
    median = {k: float(np.median(np.concatenate(v))) for k, v in errors.items()}
    assert median["Vtop"] < 0.05 and median["V50"] < 0.08 and median["Area_NIRv"] < 0.08
    assert median["L50"] < 0.08  # share of the year
    print("median relative SCVTG error, noisy vs clean:", median)


@pytest.mark.parametrize("kwargs, message", [
    ({"res": 0.3}, "--res 0.3: expected a resolution from 0.05 to 1 degree"),
    ({"res": 2.0}, "--res 2.0"),
    ({"years": (2003, 2001)}, "the last year is before the first"),
    ({"bbox": (10.0, 0.0, 5.0, 5.0)}, "--bbox"),
    ({"bbox": (-30.0, -10.0, -20.0, 0.0)}, "has no land pixel"),  # South Atlantic
])
def test_bad_requests(tmp_path, kwargs, message):
    args = {"res": 1.0, "years": (2001, 2001), "bbox": (0.0, 40.0, 5.0, 45.0), "n_sites": 0, **kwargs}
    with pytest.raises(InputError, match=message):
        write_synthetic_world(tmp_path / "w", **args)
    assert not (tmp_path / "w" / "cube.zarr").exists()


def test_whole_array_ar1_equals_the_recursive_filter():
    """The GPU path's AR(1) (block cumulative sums) against scipy's recursive filter, across
    several blocks and a partial last one."""
    from scipy.signal import lfilter

    from ciml_ter.data.synth import _ar1_blocks

    shocks = np.random.default_rng(0).normal(size=(50, 3))
    phi = float(np.exp(-1 / 30))
    np.testing.assert_allclose(_ar1_blocks(shocks, phi, np, block=7), lfilter([1.0], [1.0, -phi], shocks, axis=0),
                               rtol=1e-12, atol=1e-12)


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    from ciml_ter.device import Device, cupy_or_none
    from ciml_ter.errors import DeviceError

    if cupy_or_none() is not None:
        pytest.skip("a GPU is present: covered by test_gpu_world_has_the_cpu_world_s_truth_and_statistics")
    with pytest.raises(DeviceError, match="device 'cuda' was requested but no CUDA GPU is usable"):
        write_synthetic_world(tmp_path / "w", res=1.0, years=(2001, 2001), bbox=(0.0, 40.0, 5.0, 45.0),
                              n_sites=0, device=Device("cuda", 0, "cuda"))
    assert not (tmp_path / "w").exists()


@pytest.mark.gpu
def test_gpu_world_has_the_cpu_world_s_truth_and_statistics(world, tmp_path):
    """Drawn on the GPU: same grid and land, the truth is the formula on the written predictors,
    and each variable's land mean is that of the CPU world within 2 %."""
    root, _ = world
    from ciml_ter.device import Device

    summary = write_synthetic_world(tmp_path / "g", res=1.0, years=(2004, 2004), bbox=BBOX, n_sites=12, seed=3,
                                    device=Device.resolve("cuda"))
    assert summary["device"] == "cuda"
    cpu, cpu_truth = _open(root / "a")
    gpu, gpu_truth = _open(tmp_path / "g")
    np.testing.assert_array_equal(gpu.land.values, cpu.land.values)
    land = cpu.land.values.astype(bool)
    for name in ("nir", "red", "swir1", "lst_day", "lst_night", "lai", "ci"):
        a, b = np.nanmean(cpu[name].values[:, land]), np.nanmean(gpu[name].values[:, land])
        assert abs(b - a) <= 0.02 * abs(a), (name, a, b)
    a, b = np.nanmean(cpu_truth.ter.values[:, land]), np.nanmean(gpu_truth.ter.values[:, land])
    assert abs(b - a) <= 0.02 * a


def test_true_response_is_the_centred_partial_dependence_of_the_formula():
    """Closed form: with soc30 alone varying, the response to soc30 is the formula's factor
    (1 + soc30 / 15) times the other factors, centred; a decoy's response is 0."""
    from ciml_ter.data.synth import true_response, true_ter

    rows = {"lst_night": np.full(4, 290.0), "lswi": np.full(4, 0.2), "lai": np.full(4, 2.0),
            "soc30": np.array([5.0, 10.0, 20.0, 40.0])}
    base = true_ter(290.0, 0.2, 2.0, 0.0)  # the other factors, soc30 = 0
    at = np.array([0.0, 15.0, 30.0])
    expected = base * (1 + at / 15) - base * (1 + rows["soc30"] / 15).mean()
    np.testing.assert_allclose(true_response(rows, "soc30", at), expected, rtol=1e-12)
    np.testing.assert_array_equal(true_response(rows, "lst_day", at), 0.0)
    rising = true_response(rows, "lst_night", np.array([270.0, 290.0, 310.0]))
    assert rising[0] < 0 < rising[2]  # respiration rises with night temperature
