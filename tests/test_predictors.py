"""Context predictors: closed forms, and the same columns from a table and from a cube tile."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.predictors import (
    PredictorSpec,
    igbp_labels,
    igbp_onehot,
    pixel_matrix,
    plan,
    record_context,
    season_terms,
    series_context,
    table_matrix,
)
from ciml_ter.sitetable import site_table_from_frame


def test_season_is_shifted_half_a_year_south_of_the_equator():
    north = np.stack(season_terms(np.arange(1, 13), np.full(12, 45.0)))
    south = np.stack(season_terms(np.r_[7:13, 1:7], np.full(12, -30.0)))
    np.testing.assert_allclose(north, south, atol=1e-12)
    sin, cos = season_terms(np.array([1]), np.array([10.0]))
    assert sin[0] == pytest.approx(np.sin(np.pi / 12)) and cos[0] == pytest.approx(np.cos(np.pi / 12))


def test_onehot_and_labels():
    onehot = igbp_onehot(np.array(["ENF", "GRA", "WAT", "ENF"]), ["ENF", "GRA"])
    np.testing.assert_array_equal(onehot, [[1, 0], [0, 1], [0, 0], [1, 0]])
    attrs = {"flag_values": np.array([1, 10], np.int16), "flag_meanings": "ENF GRA"}
    assert igbp_labels(np.array([1.0, 10.0, np.nan, 12.0]), attrs).tolist() == ["ENF", "GRA", "", "12"]


def test_series_context_closed_forms():
    """Climatology, previous month and mean of the three previous months, by hand."""
    nan = np.nan
    values = np.array([[1.0, nan], [2.0, nan], [nan, nan], [4.0, nan], [8.0, nan]])
    np.testing.assert_allclose(series_context(values, "clim_")[:, 0], np.full(5, 15.0 / 4))
    assert np.isnan(series_context(values, "clim_")[:, 1]).all()  # a location without values
    np.testing.assert_allclose(series_context(values, "prev1_")[:, 0], [nan, 1.0, 2.0, nan, 4.0])
    # months 1..3 back that have a value: {}, {1}, {2, 1}, {2, 1}, {4, 2}
    np.testing.assert_allclose(series_context(values, "prev3_")[:, 0], [nan, 1.0, 1.5, 1.5, 3.0])
    with pytest.raises(ValueError, match="unknown context prefix"):
        series_context(values, "prev2_")


def test_record_context_lays_each_site_on_consecutive_months():
    """A month absent from a site's rows is a missing month, not the previous one; sites do not
    mix, and the row order does not matter."""
    months = pd.to_datetime(["2003-01-01", "2003-02-01", "2003-04-01", "2003-05-01"])
    frame = pd.DataFrame({"site": ["A"] * 4 + ["B"] * 4, "time": [*months, *months],
                          "p": [1.0, 2.0, 4.0, 8.0, 10.0, 20.0, 40.0, 80.0]}).iloc[::-1]
    got = record_context(frame, ["prev1_p", "prev3_p", "clim_p"]).loc[frame.index]
    a, b = got[frame["site"] == "A"].iloc[::-1], got[frame["site"] == "B"].iloc[::-1]
    np.testing.assert_allclose(a["prev1_p"], [np.nan, 1.0, np.nan, 4.0])  # March is missing
    np.testing.assert_allclose(a["prev3_p"], [np.nan, 1.0, 1.5, 3.0])  # May: {April, Feb}
    np.testing.assert_allclose(b["prev1_p"], [np.nan, 10.0, np.nan, 40.0])
    np.testing.assert_allclose(a["clim_p"], np.full(4, 15.0 / 4))


def frame_of_pixels(n_pixels=4, n_months=24, seed=1) -> pd.DataFrame:
    """A site table where each site is one pixel: lst (varying), soc (static), month, IGBP."""
    rng = np.random.default_rng(seed)
    months = pd.date_range("2003-01-01", periods=n_months, freq="MS")
    lat = np.array([52.0, -33.0, 5.0, 61.0])[:n_pixels]
    rows = []
    for p in range(n_pixels):
        lst = 280 + 10 * np.sin(np.arange(n_months)) + p + rng.normal(0, 1, n_months)
        lst[rng.random(n_months) < 0.15] = np.nan
        rows.append(pd.DataFrame({"site": f"P{p}", "lat": lat[p], "lon": 10.0, "pft": "ALL",
                                  "igbp": ["ENF", "GRA", "EBF", "ENF"][p], "time": months,
                                  "ter": rng.uniform(10, 90, n_months), "lst": lst, "soc": 5.0 + p,
                                  "month": months.month}))
    return pd.concat(rows, ignore_index=True)


def test_plan_drops_month_for_the_season_and_skips_static_drivers():
    config = PipelineConfig()
    config.predictors.igbp = True
    config.predictors.antecedent = ["soc", "absent", "lst"]
    table = site_table_from_frame(frame_of_pixels(), "pixels", ["lst", "soc", "lat", "month"])
    spec = plan(table, config)
    assert spec.drivers == ["lst", "soc", "lat"]
    assert spec.climatology == ["lst"]  # soc is static at every site; lat and month are no drivers
    assert spec.antecedent == ["lst"]  # the time-varying drivers of the list that the table has
    assert spec.igbp_classes == ["EBF", "ENF", "GRA"]  # the cube's class at the pixel, not "ALL"
    assert spec.features == ["lst", "soc", "lat", "season_sin", "season_cos", "igbp_EBF", "igbp_ENF",
                             "igbp_GRA", "clim_lst", "prev1_lst", "prev3_lst"]
    assert PredictorSpec.from_dict(spec.as_dict()) == spec
    old_manifest = {k: v for k, v in spec.as_dict().items() if k != "antecedent"}
    assert PredictorSpec.from_dict(old_manifest).antecedent == []  # models from before the key
    config.predictors.antecedent = ["*"]
    assert plan(table, config).antecedent == ["lst"]  # every time-varying driver
    config.predictors.season = config.predictors.igbp = config.predictors.climatology = False
    config.predictors.antecedent = []
    assert plan(table, config).features == ["lst", "soc", "lat", "month"]
    with pytest.raises(InputError, match="needs the column.*time"):
        plan(site_table_from_frame(frame_of_pixels().drop(columns="time"), "x", ["lst"]), PipelineConfig())


def test_a_tile_gets_the_columns_a_table_gets():
    """The table of pixel 'sites' and the tile of the same pixels give the same rows, so the
    model sees the same predictors in training and in ``predict``."""
    frame = frame_of_pixels()
    spec = PredictorSpec(["lst", "soc", "lat"], True, ["ENF", "GRA"], ["lst"], ["lst"])
    from_table = table_matrix(frame, spec)
    n_months = 24
    drivers = {name: frame[name].to_numpy().reshape(4, n_months).T for name in ("lst", "soc", "lat")}
    months = pd.date_range("2003-01-01", periods=n_months, freq="MS")
    from_tile = pixel_matrix(drivers, frame.groupby("site")["lat"].first().to_numpy(), months,
                             np.array(["ENF", "GRA", "EBF", "ENF"]), spec)
    # the tile orders rows month-major (month x pixels + pixel), the table site-major
    reorder = np.arange(4 * n_months).reshape(4, n_months).T.reshape(-1)
    np.testing.assert_array_equal(from_tile, from_table[reorder])
    lst = frame["lst"].to_numpy().reshape(4, n_months)
    clim, prev1, prev3 = (from_table[:, spec.features.index(c)].reshape(4, n_months)
                          for c in ("clim_lst", "prev1_lst", "prev3_lst"))
    np.testing.assert_allclose(clim[:, 0], np.nanmean(lst, axis=1), rtol=1e-6)
    np.testing.assert_allclose(prev1[:, 1:], lst[:, :-1], rtol=1e-6)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(prev3[:, 5], np.nanmean(lst[:, 2:5], axis=1), rtol=1e-6)


def test_a_table_row_gets_the_context_of_the_complete_record():
    """A site table keeps only the months whose flux passed QC but stores each site's context
    from all its months; its rows then get the columns of the same pixels in a tile of every
    month, where the context from the kept rows alone would differ."""
    frame = frame_of_pixels()
    spec = PredictorSpec(["lst", "soc", "lat"], True, [], ["lst"], ["lst"])
    n_months = 24
    drivers = {name: frame[name].to_numpy().reshape(4, n_months).T for name in ("lst", "soc", "lat")}
    months = pd.date_range("2003-01-01", periods=n_months, freq="MS")
    from_tile = pixel_matrix(drivers, frame.groupby("site")["lat"].first().to_numpy(), months, None, spec)
    site_major = from_tile[np.arange(4 * n_months).reshape(n_months, 4).T.reshape(-1)]  # the table's order
    stored = pd.concat([frame, record_context(frame, spec.context_columns)], axis=1)
    kept = np.random.default_rng(3).random(len(frame)) < 0.6  # the months that passed QC
    np.testing.assert_array_equal(table_matrix(stored[kept], spec), site_major[kept])
    alone = table_matrix(frame[kept], spec)
    context = [spec.features.index(c) for c in spec.context_columns]
    assert not np.allclose(alone[:, context], site_major[kept][:, context], equal_nan=True)
