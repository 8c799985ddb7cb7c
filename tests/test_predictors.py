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
    location_means,
    pixel_matrix,
    plan,
    season_terms,
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


def test_location_means_match_pandas():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 2))
    values[rng.random((50, 2)) < 0.2] = np.nan
    location = rng.integers(0, 6, 50)
    expected = pd.DataFrame(values).groupby(location).transform("mean").to_numpy()
    np.testing.assert_allclose(location_means(values, location), expected)


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
    table = site_table_from_frame(frame_of_pixels(), "pixels", ["lst", "soc", "lat", "month"])
    spec = plan(table, config)
    assert spec.drivers == ["lst", "soc", "lat"]
    assert spec.climatology == ["lst"]  # soc is static at every site; lat and month are no drivers
    assert spec.igbp_classes == ["EBF", "ENF", "GRA"]  # the cube's class at the pixel, not "ALL"
    assert spec.features == ["lst", "soc", "lat", "season_sin", "season_cos", "igbp_EBF", "igbp_ENF",
                             "igbp_GRA", "clim_lst"]
    config.predictors.season = config.predictors.igbp = config.predictors.climatology = False
    assert plan(table, config).features == ["lst", "soc", "lat", "month"]
    with pytest.raises(InputError, match="needs the column.*time"):
        plan(site_table_from_frame(frame_of_pixels().drop(columns="time"), "x", ["lst"]), PipelineConfig())


def test_a_tile_gets_the_columns_a_table_gets():
    """The table of pixel 'sites' and the tile of the same pixels give the same rows, so the
    model sees the same predictors in training and in ``predict``."""
    frame = frame_of_pixels()
    spec = PredictorSpec(["lst", "soc", "lat"], True, ["ENF", "GRA"], ["lst"])
    from_table = table_matrix(frame, spec)
    n_months = 24
    drivers = {name: frame[name].to_numpy().reshape(4, n_months).T for name in ("lst", "soc", "lat")}
    months = pd.date_range("2003-01-01", periods=n_months, freq="MS")
    from_tile = pixel_matrix(drivers, frame.groupby("site")["lat"].first().to_numpy(), months,
                             np.array(["ENF", "GRA", "EBF", "ENF"]), spec)
    # the tile orders rows month-major (month x pixels + pixel), the table site-major
    reorder = np.arange(4 * n_months).reshape(4, n_months).T.reshape(-1)
    np.testing.assert_array_equal(from_tile, from_table[reorder])
    clim = from_table[:, -1].reshape(4, n_months)
    np.testing.assert_allclose(clim[:, 0], np.nanmean(frame["lst"].to_numpy().reshape(4, n_months), axis=1),
                               rtol=1e-6)
