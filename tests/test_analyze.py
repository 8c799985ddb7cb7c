"""analyze: budgets (closed form), trends (pymannkendall), drivers, regions, product comparison."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pymannkendall as mk
import pytest
import xarray as xr

from ciml_ter import kernels
from ciml_ter.stages.analyze import analyze, product_monthly
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.gridstats import lat_bands

from _support import RUNTIME

RES = 2.0


def _grid():
    lat = np.arange(90 - RES / 2, -90, -RES)
    lon = np.arange(-180 + RES / 2, 180, RES)
    return lat, lon


def _write_run(path, ter, ter_std=None, shap=None, months=None, extra=None):
    lat, lon = _grid()
    months = months if months is not None else pd.date_range("2001-01-01", periods=ter.shape[0], freq="MS")
    data = {"ter": (("time", "lat", "lon"), ter.astype(np.float32), {"units": "g C m-2 month-1"}),
            "ter_std": (("time", "lat", "lon"), (ter_std if ter_std is not None else 0.1 * ter).astype(np.float32),
                        {"units": "g C m-2 month-1"})}
    for name, values in (shap or {}).items():
        data[f"shap_{name}"] = (("time", "lat", "lon"), values.astype(np.float32), {"units": "g C m-2 month-1"})
    for name, (values, units) in (extra or {}).items():
        data[name] = (("time", "lat", "lon"), values, {"units": units})
    path.mkdir(parents=True)
    xr.Dataset(data, coords={"time": months, "lat": lat, "lon": lon}).to_netcdf(path / "ter.nc", engine="h5netcdf")
    (path / "manifest.json").write_text(json.dumps({"format": "ciml-ter-run/1", "model_id": "test", "run_id": "r1"}))
    return path


def _land():
    lat, lon = _grid()
    return (np.abs(lat)[:, None] < 50) & (np.abs(lon)[None, :] < 100)


def test_constant_field_budget_is_land_area_times_twelve(tmp_path):
    land = _land()
    ter = np.where(land, 1.0, np.nan)[None].repeat(24, axis=0)
    summary = analyze(_write_run(tmp_path / "run", ter), tmp_path / "a", PipelineConfig(), RUNTIME)
    lat, lon = _grid()
    land_area = kernels.pixel_area(lat, lon)[land].sum()
    for value in summary.summary["budget"]["pg_c_yr"]:
        assert value == pytest.approx(land_area * 12 / 1e15, rel=1e-9)
    assert summary.summary["budget"]["land_area_m2"] == pytest.approx(land_area, rel=1e-12)
    budget = pd.read_csv(tmp_path / "a" / "budget.csv")
    assert budget.year.tolist() == [2001, 2002]
    np.testing.assert_allclose(budget.uncertainty_pg_c_yr, 0.1 * land_area * 12 / 1e15, rtol=1e-6)


def test_seasonal_cycle_per_latitude_band(tmp_path):
    """TER = 10 x month number in the north, 100 - month in the south (land only): each band's
    cycle is that field's month by month (area weights cancel on a field constant in space)."""
    land = _land()
    lat, lon = _grid()
    months = pd.date_range("2001-01-01", periods=24, freq="MS")
    north = (lat >= 0)[:, None] & land
    field = np.where(north, 10.0 * months.month.to_numpy()[:, None, None],
                     100.0 - months.month.to_numpy()[:, None, None])
    ter = np.where(land, field, np.nan)
    analyze(_write_run(tmp_path / "run", ter), tmp_path / "a", PipelineConfig(), RUNTIME)
    cycle = pd.read_csv(tmp_path / "a" / "seasonal_cycle.csv").set_index("month")
    bands = {name: (south, north) for name, south, north in lat_bands(60.0)}
    assert list(cycle.columns) == [b for b in bands if b != "60N-90N"]  # no land north of 50 N
    np.testing.assert_allclose(cycle["90S-23.5S"], 100.0 - np.arange(1, 13))
    np.testing.assert_allclose(cycle["23.5N-60N"], 10.0 * np.arange(1, 13))
    tropics = cycle["23.5S-23.5N"].to_numpy()  # both halves: between the two fields
    assert np.all((tropics > np.minimum(10 * np.arange(1, 13), 100 - np.arange(1, 13)) - 1e-9)
                  & (tropics < np.maximum(10 * np.arange(1, 13), 100 - np.arange(1, 13)) + 1e-9))


def test_budget_interval_width_map_and_extrapolation_share(tmp_path):
    """Intervals [0.5, 2] around TER 1 everywhere: the budget's bounds are 0.5 and 2 times the
    land area x 12 months, the width map 1.5; cells flagged in 6 of 24 months extrapolate a quarter
    of the time."""
    from ciml_ter.stages.report import report

    land = _land()
    ter = np.where(land, 1.0, np.nan)[None].repeat(24, axis=0)
    flag = np.where(land, 0.0, np.nan)[None].repeat(24, axis=0)
    west = land & (_grid()[1][None, :] < 0)
    flag[:6, west] = 1.0
    run = _write_run(tmp_path / "run", ter, extra={"ter_lower_90": ((0.5 * ter).astype(np.float32), "g C m-2 month-1"),
                                                   "ter_upper_90": ((2 * ter).astype(np.float32), "g C m-2 month-1"),
                                                   "extrapolation": (flag.astype(np.float32), "1")})
    summary = analyze(run, tmp_path / "a", PipelineConfig(), RUNTIME).summary
    lat, lon = _grid()
    area = kernels.pixel_area(lat, lon)
    full = area[land].sum() * 12 / 1e15
    budget = pd.read_csv(tmp_path / "a" / "budget.csv")
    np.testing.assert_allclose(budget.lower_90_pg_c_yr, 0.5 * full, rtol=1e-6)
    np.testing.assert_allclose(budget.upper_90_pg_c_yr, 2 * full, rtol=1e-6)
    assert summary["budget"]["intervals"]["90"]["upper_pg_c_yr"] == pytest.approx([2 * full] * 2, rel=1e-6)
    assert "fully correlated" in summary["budget"]["intervals"]["how"]
    maps = xr.open_dataset(tmp_path / "a" / "maps.nc", engine="h5netcdf")
    np.testing.assert_allclose(maps.interval_width_90.values[land], 1.5)
    np.testing.assert_allclose(maps.extrapolation_share.values[west], 0.25)
    np.testing.assert_allclose(maps.extrapolation_share.values[land & ~west], 0.0)
    assert np.isnan(maps.extrapolation_share.values[~land]).all()
    assert summary["extrapolation_share_of_land"] == pytest.approx(0.25 * area[west].sum() / area[land].sum())
    (run / "manifest.json").write_text(json.dumps({"format": "ciml-ter-run/1", "model_id": "m", "config_hash": "c", "run_id": "r1"}))
    html = report(run, tmp_path / "r.html", PipelineConfig(), RUNTIME, analysis=tmp_path / "a").out.read_text()
    for figure in ("map-interval-width-90", "map-extrapolation", "series-budget"):
        assert f'id="{figure}"' in html, figure
    assert "Dotted: every cell-month at the bound of its 90 % prediction interval" in html


def test_trends_agree_with_pymannkendall_and_the_global_trend_is_found(tmp_path):
    rng = np.random.default_rng(0)
    land = _land()
    years = 8
    growth = 1 + 0.02 * np.repeat(np.arange(years), 12)  # +2 % per year
    ter = np.where(land, 50.0, np.nan)[None] * growth[:, None, None] * rng.uniform(0.9, 1.1, (years * 12,) + land.shape)
    analyze(_write_run(tmp_path / "run", ter), tmp_path / "a", PipelineConfig(), RUNTIME)
    maps = xr.open_dataset(tmp_path / "a" / "maps.nc", engine="h5netcdf")
    totals = ter.reshape(years, 12, *land.shape).sum(axis=1)
    for i, j in list(zip(*np.nonzero(land)))[::500]:
        ref = mk.original_test(totals[:, i, j])
        assert maps.trend_p.values[i, j] == pytest.approx(ref.p, rel=1e-5)
        assert maps.trend_slope.values[i, j] == pytest.approx(ref.slope, rel=1e-5)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["trend"]["percent_per_step"] == pytest.approx(2 / 1.07, rel=0.1)
    assert summary["trend"]["p"] < 0.05
    regions = pd.read_csv(tmp_path / "a" / "regions.csv").set_index("region")
    assert regions.loc["lat 23.5S-23.5N", "trend_g_c_m2_yr2"] > 0
    assert regions.loc["lat 60N-90N", "pixels"] == 0
    config = PipelineConfig()
    config.analysis.high_latitude = 50.0  # the bands follow the config, as evaluate's do
    analyze(tmp_path / "run", tmp_path / "a50", config, RUNTIME)
    regions = pd.read_csv(tmp_path / "a50" / "regions.csv")["region"].tolist()
    assert [r for r in regions if r.startswith("lat ")] == [f"lat {name}" for name, _, _ in lat_bands(50.0)]


def test_driver_shares_and_dominant_driver(tmp_path):
    land = _land()
    ter = np.where(land, 10.0, np.nan)[None].repeat(12, axis=0)
    shap = {"lst_night": np.where(land, 3.0, np.nan)[None].repeat(12, axis=0),
            "lai": np.where(land, -1.0, np.nan)[None].repeat(12, axis=0),
            "Vtop": np.where(land, 1.0, np.nan)[None].repeat(12, axis=0)}
    summary = analyze(_write_run(tmp_path / "run", ter, shap=shap), tmp_path / "a", PipelineConfig(), RUNTIME)
    groups = summary.summary["drivers"]["groups"]
    assert groups["environment"]["mean"] == pytest.approx(0.6)
    assert groups["biotic"]["mean"] == pytest.approx(0.2) and groups["spatiotemporal"]["mean"] == pytest.approx(0.2)
    assert summary.summary["drivers"]["top_features"][0] == "lst_night"
    maps = xr.open_dataset(tmp_path / "a" / "maps.nc", engine="h5netcdf")
    assert (maps.dominant_feature.values[land] == 0).all()


def test_product_comparison_with_daily_units_on_a_finer_grid(tmp_path):
    land = _land()
    months = pd.date_range("2001-01-01", periods=36, freq="MS")
    ter = np.where(land, 30.0, np.nan)[None] * np.ones((36, 1, 1))
    run = _write_run(tmp_path / "run", ter, months=months)
    lat, lon = _grid()
    fine_lat = np.arange(90 - RES / 4, -90, -RES / 2)
    fine_lon = np.arange(-180 + RES / 4, 180, RES / 2)
    per_day = 30.0 / months.days_in_month.to_numpy()
    product = np.broadcast_to(per_day[:, None, None], (36, fine_lat.size, fine_lon.size))
    xr.Dataset({"reco": (("time", "lat", "lon"), product, {"units": "g C m-2 d-1"})},
               coords={"time": months + pd.Timedelta(days=14), "lat": fine_lat, "lon": fine_lon}
               ).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    np.testing.assert_allclose(product_monthly(tmp_path / "other.nc").values[:, 0, 0], 30.0)
    summary = analyze(run, tmp_path / "a", PipelineConfig(), RUNTIME, compare=[tmp_path / "other.nc"])
    entry = summary.summary["comparisons"]["other"]
    assert entry["months"] == 36 and entry["mean_difference"] == pytest.approx(0, abs=1e-5)
    np.testing.assert_allclose(entry["budget_theirs_pg_c_yr"], entry["budget_ours_pg_c_yr"], rtol=1e-6)


def test_a_product_in_kg_c_per_month_is_converted(tmp_path):
    months = pd.date_range("2001-01-01", periods=2, freq="MS")
    xr.Dataset({"reco": (("time", "lat", "lon"), np.full((2, 2, 2), 0.03), {"units": "kg C m-2 month-1"})},
               coords={"time": months, "lat": [1.0, 0.0], "lon": [0.0, 1.0]}).to_netcdf(tmp_path / "kg.nc",
                                                                                       engine="h5netcdf")
    np.testing.assert_allclose(product_monthly(tmp_path / "kg.nc").values, 30.0)


def test_two_years_give_a_budget_and_say_there_is_no_trend(tmp_path):
    land = _land()
    run = _write_run(tmp_path / "run", np.where(land, 30.0, np.nan)[None] * np.ones((24, 1, 1)))
    summary = analyze(run, tmp_path / "a", PipelineConfig(), RUNTIME)
    assert "trend" not in summary.summary
    assert summary.lines()[0].endswith("over 2 year(s); no trend (fewer than 3 complete years)")
    assert summary.summary["run_id"] == "r1" and summary.summary["made_from"]["inputs"] == {"run": "r1"}


def test_a_failed_analysis_leaves_nothing_and_an_older_one_is_replaced_whole(tmp_path, monkeypatch):
    from ciml_ter.stages import analyze as stage

    land = _land()
    run = _write_run(tmp_path / "run", np.where(land, 30.0, np.nan)[None] * np.ones((36, 1, 1)))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "stale.csv").write_text("from another analysis")
    analyze(run, tmp_path / "a", PipelineConfig(), RUNTIME)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["budget.csv", "maps.nc", "regions.csv",
                                                                  "seasonal_cycle.csv", "summary.json"]

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stage.xr.Dataset, "to_netcdf", fail)
    with pytest.raises(OSError):
        analyze(run, tmp_path / "b", PipelineConfig(), RUNTIME)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "run"]


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="prediction output not found"):
        analyze(tmp_path / "none", tmp_path / "a", PipelineConfig(), RUNTIME)
    xr.Dataset({"x": (("time", "lat", "lon"), np.ones((1, 2, 2)), {"units": "K"})},
               coords={"time": pd.date_range("2001-01-01", periods=1), "lat": [1.0, 0.0], "lon": [0.0, 1.0]}
               ).to_netcdf(tmp_path / "p.nc", engine="h5netcdf")
    with pytest.raises(InputError, match="no variable with TER units"):
        product_monthly(tmp_path / "p.nc")


def test_report_from_run_and_analysis(tmp_path):
    from ciml_ter.stages.report import report

    land = _land()
    rng = np.random.default_rng(1)
    ter = np.where(land, 40.0, np.nan)[None] * rng.uniform(0.8, 1.2, (36,) + land.shape)

    def reported(name, shap):
        run = _write_run(tmp_path / name, ter, shap=shap)
        manifest = {"format": "ciml-ter-run/1", "model_id": "m", "config_hash": "c",
                    "months": ["2001-01", "2003-12"], "run_id": name}
        (run / "manifest.json").write_text(json.dumps(manifest))
        analyze(run, tmp_path / f"a-{name}", PipelineConfig(), RUNTIME)
        return report(run, tmp_path / f"{name}.html", PipelineConfig(), RUNTIME,
                      analysis=tmp_path / f"a-{name}").out.read_text()

    varied = {"lst_night": ter - 30, "lai": np.where(land, rng.uniform(0, 20, land.shape), np.nan)[None].repeat(36, 0)}
    html = reported("varied", varied)
    for figure in ("map-ter-mean", "map-ter-std", "map-trend", "map-dominant-driver", "map-share-environment",
                   "series-budget", "figure-seasonal-cycle", "table-regions"):
        assert f'id="{figure}"' in html, figure
    assert "http://" not in html and "https://" not in html
    # one driver dominant everywhere, a group share flat over land: said in a sentence, not drawn flat
    flat = {"lst_night": ter - 30, "lai": np.where(land, 0.5, np.nan)[None].repeat(36, 0)}
    html = reported("flat", flat)
    assert 'id="map-dominant-driver"' not in html and 'id="map-share-spatiotemporal"' not in html
    text = _text_by_id(html)
    assert text["text-dominant-driver"].startswith("lst_night is the dominant driver")
    assert text["text-share-spatiotemporal"].startswith("The spatiotemporal drivers hold 0.00 of the mean |SHAP|")


def _text_by_id(html: str) -> dict[str, str]:
    """The text of every <p id=...> of a report page."""
    import re

    return {m.group(1): re.sub(r"<[^>]+>", "", m.group(2)) for m in re.finditer(r'<p id="([^"]+)">(.*?)</p>', html)}


def test_regions_per_igbp_class_of_the_real_land_cover(tmp_path):
    """By-PFT summaries use the MCD12C1 2019 map: one region per class on the run's grid, whose
    budgets add up to the budget of the land cells that map calls land."""
    import rasterio
    from ciml_ter.data.products.landcover import default_landcover_path

    land = _land()
    ter = np.where(land, 40.0, np.nan)[None].repeat(12, axis=0)
    summary = analyze(_write_run(tmp_path / "run", ter), tmp_path / "a", PipelineConfig(), RUNTIME)
    regions = pd.read_csv(tmp_path / "a" / "regions.csv").set_index("region")
    igbp = regions[regions.index.str.startswith("IGBP ")]
    assert {"IGBP croplands", "IGBP evergreen broadleaf forest", "IGBP barren"} <= set(igbp.index)
    assert "MCD12C1.A2019001.006" in summary.summary["pft_regions"]
    with rasterio.open(default_landcover_path()) as src:  # an independent mode of each 2-degree block
        classes = src.read(1).reshape(90, 40, 180, 40).transpose(0, 2, 1, 3).reshape(90, 180, 1600)
    mode = np.array([[np.bincount(c, minlength=256).argmax() for c in row] for row in classes])
    crop = (mode == 12) & land
    assert igbp.loc["IGBP croplands", "pixels"] == crop.sum()
    area = kernels.pixel_area(*_grid())
    assert igbp.loc["IGBP croplands", "budget_pg_c_yr"] == pytest.approx(
        (480.0 * area[crop]).sum() / 1e15, rel=1e-5)


def test_the_report_refuses_an_analysis_or_a_model_of_another_run(tmp_path):
    """report --run B --analysis A would show A's maps under B's name: refused, nothing written."""
    from ciml_ter.stages.report import report

    land = _land()
    ter = np.where(land, 30.0, np.nan)[None] * np.ones((36, 1, 1))
    run_a, run_b = _write_run(tmp_path / "A", ter), _write_run(tmp_path / "B", ter)
    (run_b / "manifest.json").write_text(json.dumps({"format": "ciml-ter-run/1", "model_id": "test", "run_id": "r2"}))
    analyze(run_a, tmp_path / "analysis-A", PipelineConfig(), RUNTIME)
    with pytest.raises(InputError) as err:
        report(run_b, tmp_path / "r.html", PipelineConfig(), RUNTIME, analysis=tmp_path / "analysis-A")
    assert str(err.value) == (f"{tmp_path / 'analysis-A'}: is the analysis of run r1 ({run_a}), not of {run_b} (run "
                              "r2); refusing to mix runs: give the analysis of this run")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "manifest.json").write_text(json.dumps({"model_id": "another"}))
    with pytest.raises(InputError, match=f"model: holds model another, but {run_a} was predicted with model test; "):
        report(run_a, tmp_path / "r.html", PipelineConfig(), RUNTIME, analysis=tmp_path / "analysis-A",
               model=tmp_path / "model")
    assert not (tmp_path / "r.html").exists()
    (tmp_path / "r").mkdir()
    with pytest.raises(InputError, match="r: is a folder; expected the path of a file to write"):
        report(run_a, tmp_path / "r", PipelineConfig(), RUNTIME)
