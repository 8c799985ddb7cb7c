"""The window of a run in one place (``ciml_ter.grid``): the same checks and words for the CLI,
the config, ingest and the synthetic world."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ciml_ter.config import config_from_dict
from ciml_ter.errors import ConfigError, InputError
from ciml_ter.grid import BBOX_RULE, GLOBE, GridWindow, parse_bbox, parse_months


def test_bbox_from_text_numbers_or_nothing():
    assert parse_bbox(None) == GLOBE
    assert parse_bbox("-10,35,30,60") == (-10.0, 35.0, 30.0, 60.0)
    assert parse_bbox([0, 40, 10, 50]) == (0.0, 40.0, 10.0, 50.0)


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "10,0,5,8", "0,-91,10,0", "0,0,nan,10", [0, 0, 0, 10]])
def test_bad_bbox_names_the_option_and_the_rule(bbox):
    with pytest.raises(InputError) as err:
        parse_bbox(bbox, "--bbox")
    assert str(err.value).startswith("--bbox ") and BBOX_RULE in str(err.value)


def test_the_config_applies_the_same_rule():
    with pytest.raises(ConfigError, match=f"grid.bbox': expected {BBOX_RULE.replace('(', '.').replace(')', '.')}"):
        config_from_dict({"grid": {"bbox": [10, 0, 5, 8]}})
    assert config_from_dict({"grid": {"bbox": [-10, 35, 30, 60]}}).grid.bbox == (-10.0, 35.0, 30.0, 60.0)


def test_window_over_a_box_and_its_cell_centres():
    w = GridWindow.over(0.5, (0, 40, 10, 45))
    assert (w.north, w.west, w.res, w.shape) == (45.0, 0.0, 0.5, (10, 20))
    lat, lon = w.coords()
    np.testing.assert_allclose(lat[[0, -1]], [44.75, 40.25])
    np.testing.assert_allclose(lon[[0, -1]], [0.25, 9.75])
    with pytest.raises(InputError, match=r"N - S = 5 degrees is not a whole number of 0.3-degree cells"):
        GridWindow.over(0.3, (0, 40, 10, 45))
    with pytest.raises(InputError, match="--res 0: expected a positive number of degrees"):
        GridWindow.over(0, None)


def test_month_ranges():
    assert parse_months(None) is None
    assert parse_months("2019-02:2019-03") == (dt.date(2019, 2, 1), dt.date(2019, 4, 1))
    assert parse_months("2019-12") == (dt.date(2019, 12, 1), dt.date(2020, 1, 1))
    for bad in ("2019-13:2019-14", "x", "2019-01:2019-02:2019-03"):
        with pytest.raises(InputError, match="expected YYYY-MM:YYYY-MM"):
            parse_months(bad)
    with pytest.raises(InputError, match="the last month is before the first"):
        parse_months("2019-05:2019-02")


def test_raster_specs_with_units_pass_the_config():
    """The units form that the units error recommends ('soc30[dg/kg]=...') is a valid entry."""
    config = config_from_dict({"ingest": {"rasters": ["soc30[dg/kg]=soil/soc.tif", "ci=ee/ci_*.tif"]}})
    assert config.ingest.rasters == ["soc30[dg/kg]=soil/soc.tif", "ci=ee/ci_*.tif"]
    with pytest.raises(ConfigError, match="ingest.rasters"):
        config_from_dict({"ingest": {"rasters": ["SOC 30=x.tif"]}})
