"""End to end: a year of test-made MODIS tiles (MCD43A4 daily, MOD11A1, MCD15A2H 8-day), one
MCD43C4 CMG, Earth Engine style rasters for ci/pv/npv/bs and SoilGrids SOC -> ingest -> a cube
that meets the input contract -> features -> predict with a model trained on the features."""
from __future__ import annotations

import datetime as dt

import granules as G
import numpy as np
import pandas as pd
import pytest
from ciml_ter.data.contract import check_cube
from ciml_ter.data.cube import open_cube
from ciml_ter.config import config_from_dict
from ciml_ter.stages.features import make_features
from ciml_ter.stages.predict import predict
from _support import RUNTIME, ingest_with as ingest
from world import TINY, train_on_features

TILE = (18, 4)  # 40-50 N, 0 to 10 / cos(lat) E
BBOX = (0, 40, 10, 50)
N = 24  # pixels per tile edge (46 km): the test stays fast, the geometry comes from the metadata
CMG_DAY = dt.date(2019, 6, 10)  # no MCD43A4 that day: the CMG gives the reflectances


def _season(day: dt.date) -> float:
    return float(np.sin(2 * np.pi * (day.timetuple().tm_yday - 100) / 365.0))


@pytest.mark.slow
def test_granules_to_contract_cube_to_features(tmp_path):
    src = tmp_path / "granules"
    src.mkdir()
    lat, lon = G.pixel_latlon(*TILE, N)
    days = pd.date_range("2019-01-01", "2019-12-31", freq="D").date
    for day in days:
        s = _season(day)
        if day == CMG_DAY:
            continue
        G.mcd43a4(src, day.isoformat(), *TILE, N, {1: 0.08 - 0.03 * s + 0.001 * (lat - 45),
                                                   2: 0.28 + 0.08 * s + 0.002 * lon,
                                                   6: 0.22 - 0.02 * s + 0 * lat})
    for day in days[::15]:
        t = 285 + 12 * _season(day) - 0.4 * (lat - 45)
        G.mod11a1(src, day.isoformat(), *TILE, N, t, t - 11)
    for day in days[::8]:
        G.mcd15a2h(src, day.isoformat(), *TILE, N, np.clip(2.0 + 1.5 * _season(day) + 0 * lat, 0, 7))
    shape = (3600, 7200)
    G.mcd43c4(src, CMG_DAY.isoformat(),
              {1: np.broadcast_to(np.float32(0.06), shape), 2: np.broadcast_to(np.float32(0.35), shape),
               6: np.broadcast_to(np.float32(0.21), shape)}, np.zeros(shape, np.uint8))
    exports = tmp_path / "exports"
    exports.mkdir()
    grid = dict(west=0.0, north=50.0, res=0.1, n_lat=100, n_lon=100)
    for month in range(1, 13):
        for var, value in (("ci", 0.65), ("pv", 0.4), ("npv", 0.2), ("bs", 0.15)):
            G.latlon_geotiff(exports / f"{var}_2019-{month:02d}-01.tif",
                             lambda a, b, v=value, m=month: v + 0.01 * np.cos(m) + 0 * a, **grid)
    soil = tmp_path / "soil"
    soil.mkdir()
    for depth, value in (("0-5", 250), ("5-15", 180), ("15-30", 120)):
        G.latlon_geotiff(soil / f"soc_{depth}cm_mean.tif", lambda a, b, v=value: v + 0 * a,
                         dtype=np.int16, nodata=-32768, **grid)
    rasters = [f"{var}={exports}/{var}_*.tif" for var in ("ci", "pv", "npv", "bs")]
    rasters += [f"soc0={soil}/soc_0-5cm_mean.tif", f"soc10={soil}/soc_5-15cm_mean.tif",
                f"soc30={soil}/soc_15-30cm_mean.tif"]
    lines = []
    cube = tmp_path / "cube.zarr"
    summary = ingest([src], cube, res=1.0, bbox=BBOX, rasters=rasters, landcover="default", log=lines.append)
    assert summary.ok and not summary.unknown, lines
    assert len(summary.written["time"]) == 365 and len(summary.written["time8"]) == 46
    ds = open_cube(cube)
    assert check_cube(ds, "cube") == []
    assert ds.nir.dims[0] == "time" and ds.lai.dims[0] == "time8" and ds.ci.dims[0] == "time_ci"
    cmg = ds.sel(time=pd.Timestamp(CMG_DAY))
    assert np.allclose(cmg.nir.values, 0.35, atol=1e-6) and (cmg.nir_count.values == 400).all()
    assert ds.nir.attrs["source_products"] == "MCD43A4, MCD43C4"
    assert np.allclose(ds.soc30.values, 12.0) and ds.land.values.sum() > 50
    summer = ds.nir.sel(time="2019-07-20").values
    winter = ds.nir.sel(time="2019-01-20").values
    assert np.nanmean(summer) > np.nanmean(winter) + 0.1

    config = config_from_dict(TINY)
    make_features(cube, tmp_path / "features.zarr", config, RUNTIME)
    features = open_cube(tmp_path / "features.zarr")
    assert features.sizes["time"] == 12
    land = features.land.values.astype(bool)
    for name in ("lst_day", "lai", "nirv", "lswi", "ci", "soc30", "Vtop", "L50"):
        assert np.isfinite(features[name].values[:, land]).any(), name
    train_on_features(tmp_path / "features.zarr", land, tmp_path / "model", config)
    summary = predict(tmp_path / "model", tmp_path / "features.zarr", tmp_path / "run", config, RUNTIME)
    ter = open_cube(tmp_path / "run" / "ter.nc").ter.values
    assert summary.rows == 12 * land.sum() and np.isfinite(ter[:, land]).all() and (ter[:, land] > 0).all()

    rerun = ingest([src], cube, res=1.0, bbox=BBOX, rasters=rasters, landcover="default", log=lines.append)
    assert rerun.written == {} and len(rerun.skipped_present["time"]) == 365
    assert sorted(rerun.static_skipped) == ["land", "pft", "soc0", "soc10", "soc30"]
