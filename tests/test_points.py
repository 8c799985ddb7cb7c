"""Point extracts at the towers (issue 24): the readers on files in their documented layouts, the
matching to towers, the window rule, the bad inputs, and one predictor definition: the same values
as a contract cube (-> features -> sites --features) and as point extracts (-> sites --points)
give the same site-month predictors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xarray as xr

import pointfiles as P
from ciml_ter.config import config_from_dict
from ciml_ter.data.cube import write_zarr
from ciml_ter.data.points.cube import great_circle_km, point_cube
from ciml_ter.data.points.extracts import read_points
from ciml_ter.errors import InputError
from ciml_ter.sitetable import build_site_table
from ciml_ter.stages.features import make_features

from _support import RUNTIME, run_cli

YEAR = pd.date_range("2019-01-01", "2019-12-31", freq="D")
EIGHT = pd.date_range("2019-01-01", "2019-12-31", freq="8D")
# Towers at three of the four pixel centres of a 2 x 2 grid of 0.5 deg cells.
SITES = [("US-Aaa", 45.75, 5.25), ("US-Bbb", 45.75, 5.75), ("US-Ccc", 45.25, 5.25)]
LAT, LON = np.array([45.75, 45.25]), np.array([5.25, 5.75])
TINY_FEATURES = {"features": {"sg_window": 31, "sg_order": 2, "sg_max_iter": 2}}
MOD11_QC = ("QC_Day", "QC_Night")


def season(dates) -> np.ndarray:
    return np.sin(2 * np.pi * (pd.DatetimeIndex(dates).day_of_year.to_numpy() - 100) / 365.0)


# --- the raw integers of the scenario (sites x dates) and their independent decoding ---------


def nbar_raw(k: int) -> dict:
    s = season(YEAR)
    return {1: 500 + 30 * k - np.round(200 * s), 2: 2800 + 100 * k + np.round(1500 * s),
            6: 2000 + 50 * k + np.round(300 * s)}


def nbar_quality(n_days: int) -> np.ndarray:
    """BRDF_Albedo_Band_Mandatory_Quality: 0 full inversion, 1 magnitude inversion (rejected)."""
    q = np.zeros(n_days, dtype=np.int64)
    q[np.arange(n_days) % 9 == 0] = 1
    return q


def lst_raw(k: int) -> tuple[np.ndarray, np.ndarray]:
    day = 14300 + 50 * k + np.round(600 * season(YEAR))
    return day, day - 550


def lst_qc(n_days: int) -> np.ndarray:
    """MOD11A1 QC words: 0 good; 2 (not produced, cloud) and 0b11000001 (LST error > 3 K) are
    rejected; 65 (other quality, error <= 2 K) is kept."""
    t = np.arange(n_days)
    q = np.zeros(n_days, dtype=np.int64)
    q[t % 7 == 3] = 0b10
    q[t % 11 == 4] = 0b11000001
    q[t % 13 == 2] = 0b01000001
    return q


def mod11_keep(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.int64)
    return ((q & 3) <= 1) & (((q >> 6) & 3) <= 1)


def lai_raw(k: int) -> np.ndarray:
    return 15 + 3 * k + np.round(20 * np.clip(season(EIGHT), 0, 1))


def lai_qc(n: int) -> np.ndarray:
    """FparLai_QC: SCF_QC (bits 5-7) 0 main method; 3 (0b011 << 5 = 96) back-up: rejected."""
    q = np.zeros(n, dtype=np.int64)
    q[np.arange(n) % 5 == 1] = 96
    return q


COVER = {"ci": 0.62, "pv": 0.41, "npv": 0.21, "bs": 0.13}
SOC = {"soc0": 25.0, "soc10": 18.0, "soc30": 12.0}


def cover_value(var: str, k: int, t: int) -> float:
    return round(COVER[var] + 0.01 * k + 0.02 * np.cos(t / 7.0), 4)


# --- writers ------------------------------------------------------------------------------------


def write_towers(folder, months=pd.date_range("2019-01-01", periods=12, freq="MS"), sites=SITES):
    return P.abcflux(folder / "abcflux.csv", sites, months)


def write_points(folder, sites=SITES, ids=None, categories=None) -> dict:
    """Every input of the scenario as point extracts: MCD43A4 and MOD11A1 AppEEARS samples, an
    ORNL 3 x 3 subset of MCD15A2H LAI per site, the cover fractions and SOC as the long CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids or [str(k) for k in range(len(sites))]
    categories = categories or [s[0] for s in sites]
    points = [(ids[k], categories[k], lat, lon) for k, (_n, lat, lon) in enumerate(sites)]
    n = len(YEAR)
    fill_days = np.arange(n) % 31 == 5
    layers, qc = {}, {}
    for band, name in ((1, "Nadir_Reflectance_Band1"), (2, "Nadir_Reflectance_Band2"),
                       (6, "Nadir_Reflectance_Band6")):
        raw = np.stack([nbar_raw(k)[band] for k in range(len(sites))])
        raw[:, fill_days] = 32767
        layers[name] = raw
        quality = np.tile(nbar_quality(n), (len(sites), 1))
        quality[:, fill_days] = 255
        qc[f"BRDF_Albedo_Band_Mandatory_Quality_Band{band}"] = quality
    scales = {name: 1e-4 for name in layers}
    fills = {name: 32767 for name in layers}
    paths = {"nbar": P.appeears(folder, "towers", "MCD43A4", "061", points, YEAR, layers, qc, scales, fills)}
    day = np.stack([lst_raw(k)[0] for k in range(len(sites))])
    night = np.stack([lst_raw(k)[1] for k in range(len(sites))])
    day[:, 40] = 0  # fill
    words = np.tile(lst_qc(n), (len(sites), 1))
    paths["lst"] = P.appeears(folder, "towers", "MOD11A1", "061", points, YEAR,
                              {"LST_Day_1km": day, "LST_Night_1km": night},
                              {"QC_Day": words, "QC_Night": words},
                              {"LST_Day_1km": 0.02, "LST_Night_1km": 0.02}, {"LST_Day_1km": 0, "LST_Night_1km": 0})
    for k, (name, lat, lon) in enumerate(sites):
        centre = lai_raw(k)
        values = np.tile(centre[:, None], (1, 9)) + np.array([[40, -1, 40, 1, 0, -1, 40, 1, 40]])
        quality = np.tile(lai_qc(len(EIGHT))[:, None], (1, 9))
        quality[:, [0, 2, 6, 8]] = 96  # the corners are back-up retrievals: left out of the median
        bands = {"Lai_500m": ("m^2/m^2", "0.1", values), "FparLai_QC": ("none", "Not Available", quality)}
        if k == 0:  # one file per band, as mt_subset(internal = FALSE) writes them
            for band, spec in bands.items():
                P.ornl_long(folder / f"{name}_MCD15A2H_{band}.csv", "MCD15A2H", name, lat, lon, EIGHT, 3, 3,
                            {band: spec})
        else:
            P.ornl_long(folder / f"{name}_MCD15A2H.csv", "MCD15A2H", name, lat, lon, EIGHT, 3, 3, bands)
    rows = []
    for k, (name, _lat, _lon) in enumerate(sites):
        for t, d in enumerate(EIGHT):
            for var in COVER:
                value = cover_value(var, k, t)
                rows.append((name, d.strftime("%Y-%m-%d"), var, value * 100 if var == "pv" else value,
                             "%" if var == "pv" else "1"))
        for var, value in SOC.items():
            rows.append((name, "", var, (value + k) * 10 if var == "soc30" else value + k,
                         "dg kg-1" if var == "soc30" else "g kg-1"))
    paths["long"] = P.long_csv(folder / "cover_soc.csv", rows)
    return paths


def scenario_cube(sites=SITES) -> xr.Dataset:
    """The same values as a contract cube on the 2 x 2 grid, decoded independently of the engine
    (raw x scale in float64, then float32; NaN where fill or rejected by QC)."""
    n = len(YEAR)
    shape = (n, LAT.size, LON.size)
    data = {v: np.full(shape, np.nan, np.float32) for v in ("red", "nir", "swir1", "lst_day", "lst_night")}
    lai = np.full((len(EIGHT), LAT.size, LON.size), np.nan, np.float32)
    cover = {v: np.full((len(EIGHT), LAT.size, LON.size), np.nan, np.float32) for v in COVER}
    soc = {v: np.full((LAT.size, LON.size), np.nan, np.float32) for v in SOC}
    fill_days = np.arange(n) % 31 == 5
    for k, (_name, lat, lon) in enumerate(sites):
        i, j = int(np.argmin(abs(LAT - lat))), int(np.argmin(abs(LON - lon))),
        good = (nbar_quality(n) == 0) & ~fill_days
        for band, var in ((1, "red"), (2, "nir"), (6, "swir1")):
            data[var][:, i, j] = np.where(good, (1e-4 * nbar_raw(k)[band]).astype(np.float32), np.nan)
        day, night = lst_raw(k)
        keep = mod11_keep(lst_qc(n))
        data["lst_day"][:, i, j] = np.where(keep, (0.02 * day).astype(np.float32), np.nan)
        data["lst_day"][40, i, j] = np.nan
        data["lst_night"][:, i, j] = np.where(keep, (0.02 * night).astype(np.float32), np.nan)
        lai[:, i, j] = np.where(lai_qc(len(EIGHT)) == 0, (0.1 * lai_raw(k)).astype(np.float32), np.nan)
        for var in COVER:
            scale = 0.01 if var == "pv" else 1.0
            cover[var][:, i, j] = [np.float32((cover_value(var, k, t) * (100 if var == "pv" else 1)) * scale)
                                   for t in range(len(EIGHT))]
        for var, value in SOC.items():
            soc[var][i, j] = np.float32((value + k) * 10 * 0.1) if var == "soc30" else np.float32(value + k)
    variables = {v: (("time", "lat", "lon"), a, {"units": "K" if v.startswith("lst") else "1"})
                 for v, a in data.items()}
    variables["lai"] = (("time8", "lat", "lon"), lai, {"units": "m2 m-2"})
    variables.update({v: (("time8", "lat", "lon"), a, {"units": "1"}) for v, a in cover.items()})
    variables.update({v: (("lat", "lon"), a, {"units": "g kg-1"}) for v, a in soc.items()})
    variables["land"] = (("lat", "lon"), np.ones((LAT.size, LON.size), np.uint8), {"units": "1"})
    return xr.Dataset(variables, coords={"time": YEAR.values, "time8": EIGHT.values, "lat": LAT, "lon": LON})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("points")
    paths = write_points(root / "points")
    towers = write_towers(root)
    config = config_from_dict(TINY_FEATURES)
    write_zarr(scenario_cube(), root / "cube.zarr")
    make_features(root / "cube.zarr", root / "features.zarr", config, RUNTIME)
    return {"root": root, "points": root / "points", "towers": towers, "paths": paths, "config": config}


# --- one predictor definition -------------------------------------------------------------------


def test_points_and_cube_give_the_same_predictors(world):
    cube_table, cube_report = build_site_table(abcflux_files=[world["towers"]], features=world["root"] / "features.zarr")
    point_table, point_report = build_site_table(abcflux_files=[world["towers"]], points=[str(world["points"])],
                                                 points_window=3, features_config=world["config"].features)
    assert point_report.predictors == cube_report.predictors
    assert "Vtop" in point_report.predictors and "lswi" in point_report.predictors
    merged = cube_table.merge(point_table, on=["site", "time"], suffixes=("_cube", "_points"))
    assert len(merged) == len(cube_table) == len(point_table) == 36
    for name in cube_report.predictors:
        a, b = merged[f"{name}_cube"].to_numpy(), merged[f"{name}_points"].to_numpy()
        assert np.isfinite(a).any(), name
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=name)
    assert point_report.mode == "points" and point_report.sources["nirv"] == {"path": "points",
                                                                             "products": ["MCD43A4"]}
    assert point_report.sources["Vtop"]["products"] == ["MCD43A4"]
    assert point_report.sources["lst_night"]["products"] == ["MOD11A1"]
    assert point_report.sources["lai"]["products"] == ["MCD15A2H"]
    assert point_report.sources["soc30"]["products"] == ["long CSV"]
    assert cube_report.sources["lai"]["path"] == "cube"
    assert not point_report.missing_inputs and not point_report.unmatched_points


def test_cli_writes_the_points_table_with_its_sources(world, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[features]\nsg_window = 31\nsg_order = 2\nsg_max_iter = 2\n")
    out = tmp_path / "sites.parquet"
    result = run_cli("sites", "--abcflux", str(world["towers"]), "--points", str(world["points"]),
                     "--points-window", "3", "--config", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "mode points" in result.stdout and "36 site-months of 3 sites" in result.stdout
    meta = json.loads(pq.read_schema(out).metadata[b"ciml_ter"])
    assert meta["mode"] == "points"
    assert meta["predictor_sources"]["lswi"] == {"path": "points", "products": ["MCD43A4"]}
    decoded = {e["product"]: e for e in meta["point_extracts"]}
    assert decoded["MCD15A2H"]["format"] == "ORNL DAAC subset"
    assert decoded["MCD15A2H"]["layers"]["lai"]["scale_from"] == "file"
    assert decoded["MOD11A1"]["layers"]["lst_day"]["layer"] == "MOD11A1_061_LST_Day_1km"
    table = pd.read_parquet(out)
    direct, _ = build_site_table(abcflux_files=[world["towers"]], points=[str(world["points"])], points_window=3,
                                 features_config=world["config"].features)
    np.testing.assert_allclose(table["Vtop"].to_numpy(), direct["Vtop"].to_numpy(), equal_nan=True)
    # the model trained on it records which path and products built each of its predictors
    from ciml_ter.device import CPU
    from ciml_ter.sitetable import read_site_table
    from ciml_ter.training import train_ensemble

    tiny = config_from_dict({"train": {"folds": 3, "seeds": 1, "workers": 1, "causal": False},
                             "xgboost": {"num_boost_round": 5, "early_stopping_rounds": 0}})
    sources = train_ensemble(read_site_table(out), tiny, tmp_path / "model", CPU).manifest["predictor_sources"]
    assert sources["mode"] == "points" and sources["lswi"] == {"path": "points", "products": ["MCD43A4"]}


# --- readers ------------------------------------------------------------------------------------


def _series(files, var):
    found = [s for e in files.extracts for s in e.series if s.var == var]
    assert len(found) == 1, var
    return found[0]


def test_appeears_values_qc_and_fill_follow_the_catalog(world):
    files = read_points([world["paths"]["lst"]])
    extract = files.extracts[0]
    assert extract.product == "MOD11A1" and extract.locations.names == ["0", "1", "2"]
    assert extract.locations.aliases == ["US-Aaa", "US-Bbb", "US-Ccc"]
    s = _series(files, "lst_day")
    got = s.value[s.point == 1]
    raw, _ = lst_raw(1)
    expected = np.where(mod11_keep(lst_qc(len(YEAR))), 0.02 * raw, np.nan)
    expected[40] = np.nan  # the fill, written 0.0
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
    assert s.date[0] == np.datetime64("2019-01-01") and s.dim == "time"
    assert extract.layers["lst_day"]["scale_from"] == "catalog"
    assert "bits 6-7" in extract.layers["lst_day"]["qc"]


def test_appeears_bitmask_columns_alone_give_the_same_values(tmp_path):
    words = np.array([[0, 2, 65, 0b11000001]])
    raw = np.array([[14500, 14600, 14700, 14800]])
    dates = YEAR[:4]
    kwargs = dict(points=[("1", "US-Aaa", 45.75, 5.25)], dates=dates, layers={"LST_Day_1km": raw},
                  qc={"QC_Day": words}, scales={"LST_Day_1km": 0.02}, fills={"LST_Day_1km": 0})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = read_points([P.appeears(tmp_path / "a", "r", "MOD11A1", "061", **kwargs)])
    bits = read_points([P.appeears(tmp_path / "b", "r", "MOD11A1", "061", bitmask_only=True, **kwargs)])
    np.testing.assert_array_equal(_series(full, "lst_day").value, _series(bits, "lst_day").value)
    np.testing.assert_allclose(_series(full, "lst_day").value, [290.0, np.nan, 294.0, np.nan], equal_nan=True)


def test_mod13_appeears_double_underscore_slash_columns_and_vi_quality(tmp_path):
    """MOD13A1 layers begin with '_' (double underscore after the version); VI Quality: MODLAND
    00/01 kept, 10 (cloudy) rejected, usefulness 13 rejected, mixed clouds or shadow rejected,
    adjacent cloud (bit 8) kept; the reflectance fill -1000 is written unscaled."""
    words = np.array([[0, 1, 2, 13 << 2, 1 << 10, 1 << 15, 1 << 8, 0]])
    red = np.array([[500, 510, 520, 530, 540, 550, 560, -1000]])
    dates = pd.date_range("2019-01-01", periods=8, freq="16D")
    path = P.appeears(tmp_path, "vi", "MOD13A1", "061", [("1", "US-Aaa", 45.75, 5.25)], dates,
                      {"_500m_16_days_red_reflectance": red, "_500m_16_days_NIR_reflectance": red * 6},
                      {"_500m_16_days_VI_Quality": words},
                      {"_500m_16_days_red_reflectance": 1e-4, "_500m_16_days_NIR_reflectance": 1e-4},
                      {"_500m_16_days_red_reflectance": -1000, "_500m_16_days_NIR_reflectance": -1000})
    header = path.read_text().splitlines()[0]
    assert "MOD13A1_061__500m_16_days_red_reflectance" in header and "Land/Water_Mask" in header
    files = read_points([path])
    red_s, nir_s = _series(files, "red"), _series(files, "nir")
    np.testing.assert_allclose(red_s.value, [0.05, 0.051, np.nan, np.nan, np.nan, np.nan, 0.056, np.nan],
                               rtol=1e-6, equal_nan=True)
    assert red_s.dim == "time"  # 16-day composites sit on the daily axis at their first day
    assert np.isnan(nir_s.value[-1]) and nir_s.value[0] == pytest.approx(0.3)


def test_ornl_layouts_window_median_and_file_scale(tmp_path):
    """The 21-column mt_subset table and the MODISTools 1.0 layout read alike; window 1 is the
    centre pixel, window 3 the median of the 3 x 3 pixels with good QC; the file's scale wins."""
    values = np.array([[10, 20, 30, 40, 50, 60, 95, 80, 90]])  # median of the good ones != mean
    quality = np.array([[0, 0, 0, 0, 0, 0, 0, 96, 96]])
    dates = EIGHT[:1]
    long = P.ornl_long(tmp_path / "a.csv", "MCD15A2H", "US-Aaa", 45.75, 5.25, dates, 3, 3,
                       {"Lai_500m": ("m^2/m^2", "0.1", values), "FparLai_QC": ("none", "Not Available", quality)})
    v1 = P.ornl_v1(tmp_path / "b.csv", "MCD15A2H", "Lai_500m", "0.1", "US-Aaa", 45.75, 5.25, dates, 3, 3, values,
                   table_bands={"FparLai_QC": quality})
    (tmp_path / "v1").mkdir()  # MODISTools 1.0, one file per band
    P.ornl_v1(tmp_path / "v1" / "lai.csv", "MCD15A2H", "Lai_500m", "0.1", "US-Aaa", 45.75, 5.25, dates, 3, 3, values)
    P.ornl_v1(tmp_path / "v1" / "qc.csv", "MCD15A2H", "FparLai_QC", "Not Available", "US-Aaa", 45.75, 5.25, dates,
              3, 3, quality)
    for path in (long, v1, tmp_path / "v1"):
        centre = point_cube(read_points([path], window=1), _towers())
        window = point_cube(read_points([path], window=3), _towers())
        assert float(centre.ds.lai.values[0, 0, 0]) == pytest.approx(5.0)
        assert float(window.ds.lai.values[0, 0, 0]) == pytest.approx(4.0)  # of 1 2 3 4 5 6 9.5 (8, 9 rejected)
    odd = P.ornl_long(tmp_path / "c.csv", "MCD15A2H", "US-Aaa", 45.75, 5.25, dates, 3, 3,
                      {"Lai_500m": ("m^2/m^2", "0.2", values), "FparLai_QC": ("none", "Not Available", quality)})
    files = read_points([odd])
    assert files.extracts[0].layers["lai"] == {"layer": "Lai_500m", "scale": 0.2, "scale_from": "file",
                                               "qc": "FparLai_QC: bits 5-7 (SCF_QC: main RT algorithm) in [0, 1]"}
    with pytest.raises(InputError, match="--points-window 5 is larger than the subset's 3 x 3"):
        read_points([odd], window=5)


def test_earth_engine_export_with_product_given(tmp_path):
    bands = {"sur_refl_b01": np.array([[400.0, 410.0, np.nan]]), "sur_refl_b02": np.array([[3000.0, 3100.0, 3200.0]]),
             "DetailedQA": np.array([[0.0, 2.0, 0.0]])}
    dates = pd.date_range("2019-01-01", periods=3, freq="16D")
    path = P.earth_engine(tmp_path / "ee.csv", [("US-Aaa", 45.75, 5.25)], dates, bands)
    with pytest.raises(InputError, match="does not name its product; give it as --points PRODUCT="):
        read_points([path])
    files = read_points([f"MOD13A1={path}"])
    red = _series(files, "red")
    np.testing.assert_allclose(red.value, [0.04, np.nan, np.nan], rtol=1e-6, equal_nan=True)
    assert list(red.date) == list(dates.values.astype("datetime64[D]"))  # from system:index
    geo_only = P.earth_engine(tmp_path / "geo.csv", [("x", 45.7501, 5.2502)], dates, bands, site_column=None)
    cube = point_cube(read_points([f"MOD13A1={geo_only}"]), _towers())
    assert cube.sites == ["US-Aaa"] and cube.matched["US-Aaa"][0].endswith("km")
    scaled = P.earth_engine(tmp_path / "scaled.csv", [("US-Aaa", 45.75, 5.25)], dates,
                            {**bands, "sur_refl_b02": np.array([[0.3, 0.31, 0.32]])})
    with pytest.raises(InputError, match="expected the product's stored integers"):
        read_points([f"MOD13A1={scaled}"])


def test_long_csv_converts_units_and_rejects_others(tmp_path):
    ok = P.long_csv(tmp_path / "ok.csv", [("US-Aaa", "2019-01-01", "lst_day", 20.0, "degC"),
                                          ("US-Aaa", "", "soc0", 2.5, "%")])
    files = read_points([ok])
    assert _series(files, "lst_day").value[0] == pytest.approx(293.15)
    assert _series(files, "soc0").value[0] == pytest.approx(25.0) and _series(files, "soc0").dim is None
    bad = P.long_csv(tmp_path / "bad.csv", [("US-Aaa", "2019-01-01", "lst_day", 68.0, "degF")])
    with pytest.raises(InputError, match=r"variable 'lst_day' has units 'degF'; accepted: 'K'"):
        read_points([bad])


# --- matching -------------------------------------------------------------------------------------


def _towers(sites=SITES):
    return pd.DataFrame(sites, columns=["site", "lat", "lon"])


def test_matching_by_id_alias_and_coordinates(tmp_path):
    """ID equal to a site, else Category, else the nearest tower within 1 km; the rest listed."""
    off = 0.004  # deg of latitude: 0.44 km
    points = [("US-Aaa", "", 10.0, 10.0), ("7", "US-Bbb", 10.0, 10.0), ("8", "mine", 45.25 + off, 5.25),
              ("9", "far", 45.25 + 0.05, 5.25)]
    path = P.appeears(tmp_path, "m", "MOD11A1", "061", points, YEAR[:2],
                      {"LST_Day_1km": np.full((4, 2), 14500)}, {"QC_Day": np.zeros((4, 2), int)},
                      {"LST_Day_1km": 0.02}, {"LST_Day_1km": 0})
    cube = point_cube(read_points([path]), _towers([*SITES, ("US-Ddd", 30.0, 30.0)]))
    assert cube.sites == ["US-Aaa", "US-Bbb", "US-Ccc"]
    assert cube.matched["US-Aaa"] == ["id"] and cube.matched["US-Bbb"] == ["alias"]
    assert cube.matched["US-Ccc"] == [f"{great_circle_km(45.25 + off, 5.25, 45.25, 5.25):.2f} km"]
    assert cube.unmatched == [f"9 (far) ({path.name})"]
    assert cube.without_points == ["US-Ddd"]
    assert cube.missing["lst_night: absent from the point extracts"] == ["US-Aaa", "US-Bbb", "US-Ccc"]


def test_great_circle_distance():
    assert great_circle_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(111.195, rel=1e-4)  # 1 deg on the equator
    assert great_circle_km(45.0, 5.0, 45.0, 5.0) == 0.0


# --- bad inputs -------------------------------------------------------------------------------------


def _one_error_line(capsys, *args: str) -> str:
    """Run the command line in this process; its one ``error:`` line (exit status 2)."""
    from ciml_ter.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_bad_inputs_give_one_line_and_exit_2(world, tmp_path, capsys):
    towers, config = str(world["towers"]), tmp_path / "c.toml"
    config.write_text("[features]\nsg_window = 31\nsg_order = 2\nsg_max_iter = 2\n")
    base = ["sites", "--abcflux", towers, "--config", str(config), "--out", str(tmp_path / "s.parquet")]
    line = _one_error_line(capsys, *base, "--points", f"MOD99A1={world['paths']['lst']}")
    assert "unknown product 'MOD99A1'" in line
    no_qc = tmp_path / "noqc"
    no_qc.mkdir()
    header, *rows = world["paths"]["lst"].read_text().splitlines()
    keep = [i for i, c in enumerate(header.split(",")) if c != "MOD11A1_061_QC_Night"
            and not c.startswith("MOD11A1_061_QC_Night_")]
    (no_qc / world["paths"]["lst"].name).write_text(
        "\n".join(",".join(np.array(r.split(","))[keep]) for r in [header] + rows[:3]) + "\n")
    line = _one_error_line(capsys, *base, "--points", str(no_qc))
    assert "'MOD11A1_061_LST_Night_1km' (lst_night) has no QC column: expected 'QC_Night'" in line
    no_date = tmp_path / "nodate"
    no_date.mkdir()
    (no_date / world["paths"]["lst"].name).write_text(
        world["paths"]["lst"].read_text().replace("Date,", "Day,", 1))
    line = _one_error_line(capsys, *base, "--points", str(no_date))
    assert "an AppEEARS results file without column 'Date'" in line
    bad_units = P.long_csv(tmp_path / "units.csv", [("US-Aaa", "2019-01-01", "lai", 2.0, "LAI")])
    assert "variable 'lai' has units 'LAI'" in _one_error_line(capsys, *base, "--points", str(bad_units))
    later = write_towers(tmp_path, months=pd.date_range("2015-01-01", periods=12, freq="MS"))
    line = _one_error_line(capsys, "sites", "--abcflux", str(later), "--points", str(world["points"]),
                           "--config", str(config), "--out", str(tmp_path / "t.parquet"))
    assert "cover none of the flux months" in line
    line = _one_error_line(capsys, *base, "--points", str(tmp_path / "nothing-here"))
    assert "no such file or folder" in line
    line = _one_error_line(capsys, *base, "--points", str(world["paths"]["long"]))
    assert "point extracts: no complete year of daily nir (365/366 days) for SCVTG" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no point extract in" in _one_error_line(capsys, *base, "--points", str(empty))
    assert not (tmp_path / "s.parquet").exists() and not (tmp_path / "t.parquet").exists()


def test_all_bad_qc_at_a_site_and_unknown_files_are_listed_skips(world, tmp_path):
    """QC rejecting every LAI of one tower leaves that input missing there (listed, with the
    reason), the other towers are built; an unknown product's file and a stray CSV are skipped and
    listed; a tower without points, and one whose months the extracts miss, are left out and
    listed."""
    folder = tmp_path / "points"
    write_points(folder)
    text = (folder / "US-Bbb_MCD15A2H.csv").read_text().splitlines()
    cols = text[0].split(",")
    band, value = cols.index("band"), cols.index("value")
    rows = [r.split(",") for r in text[1:]]
    for r in rows:
        if r[band] == "FparLai_QC":
            r[value] = "96"
    (folder / "US-Bbb_MCD15A2H.csv").write_text("\n".join([text[0], *(",".join(r) for r in rows)]) + "\n")
    (folder / "towers-MOD11A2-061-results.csv").write_text(
        (folder / "towers-MOD11A1-061-results.csv").read_text().replace("MOD11A1_061_", "MOD11A2_061_"))
    (folder / "notes.csv").write_text("a,b\n1,2\n")
    towers = write_towers(tmp_path, sites=[*SITES[:2], ("US-Ddd", 30.0, 30.0)])
    (tmp_path / "earlier").mkdir()
    earlier = write_towers(tmp_path / "earlier", months=pd.date_range("2015-01-01", periods=12, freq="MS"),
                           sites=SITES[2:])
    table, report = build_site_table(abcflux_files=[towers, earlier], points=[str(folder)], points_window=3,
                                     features_config=world["config"].features)
    assert sorted(table["site"].unique()) == ["US-Aaa", "US-Bbb"]
    assert table.loc[table["site"] == "US-Bbb", "lai"].isna().all()
    assert table.loc[table["site"] == "US-Aaa", "lai"].notna().any()
    assert report.missing_inputs == {"lai: every value fill or rejected by QC": ["US-Bbb"]}
    assert report.dropped_sites == {"no point extract matches the tower": ["US-Ddd"],
                                    "point extracts outside the tower's months": ["US-Ccc"]}
    skipped = dict((p.rsplit("/", 1)[-1], why) for p, why in report.skipped_files)
    assert skipped["towers-MOD11A2-061-results.csv"].startswith("product MOD11A2 is not supported")
    assert skipped["notes.csv"].startswith("CSV not recognised as a point extract")
    text = "\n".join(report.lines())
    assert "lai: every value fill or rejected by QC at 1 site(s): US-Bbb" in text
    assert "left out, no point extract matches the tower: 1 site(s): US-Ddd" in text


def test_features_and_points_together_are_refused(world):
    with pytest.raises(InputError, match="give --features or --points, not both"):
        build_site_table(abcflux_files=[world["towers"]], features=world["root"] / "features.zarr",
                         points=[str(world["points"])])


def test_the_point_cube_meets_the_contract_and_holds_decoded_values(world):
    files = read_points([str(world["points"])], window=3)
    cube = point_cube(files, _towers())
    expected = scenario_cube()
    for var in ("nir", "lst_day", "lai", "pv", "soc30"):
        got = cube.ds[var].values[..., :]
        ref = expected[var].values
        ref = ref[..., [0, 0, 1], [0, 1, 0]] if ref.ndim == 3 else ref[[0, 0, 1], [0, 1, 0]][None, :]
        np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-6, equal_nan=True, err_msg=var)
    assert cube.sources == {"red": ["MCD43A4"], "nir": ["MCD43A4"], "swir1": ["MCD43A4"], "lst_day": ["MOD11A1"],
                            "lst_night": ["MOD11A1"], "lai": ["MCD15A2H"], "ci": ["long CSV"], "pv": ["long CSV"],
                            "npv": ["long CSV"], "bs": ["long CSV"], "soc0": ["long CSV"], "soc10": ["long CSV"],
                            "soc30": ["long CSV"]}


def test_run_takes_the_points_of_its_config(tmp_path, monkeypatch):
    """``ciml-ter run`` builds the site table from ``[paths] points`` when it is set."""
    from ciml_ter.stages import pipeline
    from ciml_ter.stages.features import made_from

    paths = {name: str(tmp_path / name) for name in ("features.zarr", "sites.parquet", "model", "run", "analysis",
                                                      "report.html")}
    config = config_from_dict({**TINY_FEATURES, "paths": {
        "fluxnet": [str(tmp_path / "fluxnet")], "points": ["MOD13A1=ee.csv", "appeears/"],
        "cube": str(tmp_path / "cube.zarr"), "features": paths["features.zarr"], "sites": paths["sites.parquet"],
        "model": paths["model"], "run": paths["run"], "analysis": paths["analysis"], "report": paths["report.html"]}})
    # present and made with this config from this cube: the features stage is skipped
    write_zarr(xr.Dataset(attrs={"made_from": json.dumps(made_from(tmp_path / "cube.zarr", config))}),
               tmp_path / "features.zarr")
    seen = {}

    def fake_sites(out, config, runtime, **kwargs):
        seen.update(kwargs, config=config)
        raise InputError("stop here")

    monkeypatch.setattr(pipeline, "build_sites", fake_sites)
    with pytest.raises(InputError, match="stop here"):
        pipeline.run_pipeline(config, RUNTIME)
    assert seen["points"] == ["MOD13A1=ee.csv", "appeears/"]
    assert seen["config"].features.sg_window == 31 and "features" not in seen
