"""One predictor definition through real-layout granules (issue 24, item 4): the same values
written as MODIS granules and rasters -> ingest -> features -> sites --features, and written as
point extracts (AppEEARS, Earth Engine, long CSV) -> sites --points, give the same site-month
predictors. Also: ingest reads the 16-day MOD13A1 reflectances the catalog now lists."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import granules as G
import pointfiles as P
from ciml_ter.config import config_from_dict
from ciml_ter.data.cube import open_cube
from ciml_ter.sitetable import build_site_table
from ciml_ter.stages.features import make_features

from _support import RUNTIME, ingest_with as ingest

TILE = (18, 4)  # 40-50 N
N = 40  # pixels per tile edge (28 km): about 12 pixel centres in each 1 deg cell at 45-47 N
BBOX = (5, 45, 8, 47)  # 2 x 3 cells of 1 deg
TOWERS = [("CH-One", 45.5, 5.5), ("FR-Two", 46.5, 6.5), ("IT-Six", 45.5, 7.5)]
YEAR = pd.date_range("2019-01-01", "2019-12-31", freq="D")
VI_DATES = pd.DatetimeIndex([d for d in YEAR if (d.day_of_year - 1) % 16 == 0])  # 23 composites
LAI_DATES = pd.DatetimeIndex([d for d in YEAR if (d.day_of_year - 1) % 8 == 0])
MONTHS = pd.date_range("2019-01-01", periods=12, freq="MS")


def cell(lat, lon):
    """The 1 deg cell index (0-5) of a place in the box; values are constant over a cell."""
    return (np.floor(lat) - 45) * 3 + (np.floor(lon) - 5)


def s(day) -> float:
    return float(np.sin(2 * np.pi * (pd.Timestamp(day).day_of_year - 100) / 365.0))


def lst_raw(c, day):
    d = 14200 + 40 * c + round(500 * s(day))
    return d, d - 500


def lst_qc(day) -> int:
    return 0b10 if pd.Timestamp(day).day_of_year % 10 == 3 else 0


def vi_raw(c, day):
    return 600 + 20 * c - round(250 * s(day)), 2600 + 60 * c + round(1800 * s(day))


def vi_quality(k: int) -> int:
    return 1 << 10 if k % 6 == 2 else 0  # mixed clouds: rejected


def lai_raw(c, day):
    return 12 + 2 * c + round(25 * max(s(day), 0.0))


def lai_qc(k: int) -> int:
    return 96 if k % 5 == 1 else 0


COVER = ("ci", "pv", "npv", "bs", "lswi")  # as monthly rasters (MOD13 has no 1.6 um band for LSWI)


def cover(var: str, c, month: int):
    return np.float32({"ci": 0.6, "pv": 0.4, "npv": 0.2, "bs": 0.1, "lswi": 0.15}[var] + 0.01 * c + 0.005 * month)


def write_granules(src, rasters):
    lat, lon = G.pixel_latlon(*TILE, N)
    c = cell(lat, lon)
    for day in YEAR:
        d, n = lst_raw(c, day)
        G.mod11a1(src, day.date().isoformat(), *TILE, N, 0.02 * d, 0.02 * n,
                  qc_day=np.full(c.shape, lst_qc(day), np.uint8), qc_night=np.full(c.shape, lst_qc(day), np.uint8))
    for k, day in enumerate(VI_DATES):
        red, nir = vi_raw(c, day)
        G.mod13a1(src, day.date().isoformat(), *TILE, N, red / 10000.0, nir / 10000.0,
                  quality=np.full(c.shape, vi_quality(k), np.uint16))
    for k, day in enumerate(LAI_DATES):
        G.mcd15a2h(src, day.date().isoformat(), *TILE, N, 0.1 * lai_raw(c, day),
                   qc=np.full(c.shape, lai_qc(k), np.uint8))
    grid = dict(west=5.0, north=47.0, res=0.25, n_lat=8, n_lon=12)
    specs = []
    for var in COVER:
        for m in range(1, 13):
            G.latlon_geotiff(rasters / f"{var}_2019-{m:02d}-01.tif", lambda a, b, v=var, m=m: cover(v, cell(a, b), m),
                             **grid)
        specs.append(f"{var}={rasters}/{var}_*.tif")
    for depth, var in (("0-5", "soc0"), ("5-15", "soc10"), ("15-30", "soc30")):
        G.latlon_geotiff(rasters / f"soc_{depth}cm_mean.tif", lambda a, b: 250 + 10 * cell(a, b), dtype=np.int16,
                         nodata=-32768, **grid)
        specs.append(f"{var}={rasters}/soc_{depth}cm_mean.tif")
    return specs


def write_extracts(folder):
    """The towers' cells' values as point extracts: AppEEARS MOD11A1 and MOD13A1 (scaled values,
    raw QC), an Earth Engine MCD15A2H export (stored integers), the long CSV for the rest."""
    folder.mkdir()
    points = [(name, "", lat, lon) for name, lat, lon in TOWERS]
    cs = [cell(lat, lon) for _n, lat, lon in TOWERS]
    day = np.array([[lst_raw(c, d)[0] for d in YEAR] for c in cs])
    night = np.array([[lst_raw(c, d)[1] for d in YEAR] for c in cs])
    qc = np.array([[lst_qc(d) for d in YEAR] for _c in cs])
    P.appeears(folder, "fluxnet", "MOD11A1", "061", points, YEAR, {"LST_Day_1km": day, "LST_Night_1km": night},
               {"QC_Day": qc, "QC_Night": qc}, {"LST_Day_1km": 0.02, "LST_Night_1km": 0.02},
               {"LST_Day_1km": 0, "LST_Night_1km": 0})
    red = np.array([[vi_raw(c, d)[0] for d in VI_DATES] for c in cs])
    nir = np.array([[vi_raw(c, d)[1] for d in VI_DATES] for c in cs])
    quality = np.array([[vi_quality(k) for k in range(len(VI_DATES))] for _c in cs])
    names = ("_500m_16_days_red_reflectance", "_500m_16_days_NIR_reflectance")
    P.appeears(folder, "fluxnet", "MOD13A1", "061", points, VI_DATES, dict(zip(names, (red, nir))),
               {"_500m_16_days_VI_Quality": quality}, dict.fromkeys(names, 1e-4), dict.fromkeys(names, -1000))
    lai = np.array([[lai_raw(c, d) for d in LAI_DATES] for c in cs], dtype=float)
    lai_q = np.array([[lai_qc(k) for k in range(len(LAI_DATES))] for _c in cs], dtype=float)
    P.earth_engine(folder.parent / "lai_export.csv", TOWERS, LAI_DATES, {"Lai_500m": lai, "FparLai_QC": lai_q},
                   site_column="SITE_ID")
    rows = []
    for (name, _lat, _lon), c in zip(TOWERS, cs):
        for m in MONTHS:
            rows += [(name, m.strftime("%Y-%m-%d"), var, repr(float(cover(var, c, m.month))), "1") for var in COVER]
        rows += [(name, "", var, 250 + 10 * c, "dg kg-1") for var in ("soc0", "soc10", "soc30")]
    P.long_csv(folder / "cover_soc.csv", rows)
    return folder


@pytest.mark.slow
def test_granules_through_ingest_and_point_extracts_give_the_same_predictors(tmp_path):
    src, rasters = tmp_path / "granules", tmp_path / "rasters"
    src.mkdir()
    rasters.mkdir()
    specs = write_granules(src, rasters)
    summary = ingest([src], tmp_path / "cube.zarr", res=1.0, bbox=BBOX, rasters=specs, landcover="default",
                     log=lambda line: None)
    assert summary.ok and not summary.unknown
    config = config_from_dict({"features": {"sg_window": 31, "sg_order": 2, "sg_max_iter": 2}})
    make_features(tmp_path / "cube.zarr", tmp_path / "features.zarr", config, RUNTIME)
    towers = P.abcflux(tmp_path / "abcflux.csv", TOWERS, MONTHS)
    cube_table, cube_report = build_site_table(abcflux_files=[towers], features=tmp_path / "features.zarr")
    points = write_extracts(tmp_path / "points")
    export = f"MCD15A2H={tmp_path / 'lai_export.csv'}"
    point_table, point_report = build_site_table(abcflux_files=[towers], points=[export, str(points)],
                                                 features_config=config.features)
    assert point_report.predictors == cube_report.predictors
    merged = cube_table.merge(point_table, on=["site", "time"], suffixes=("_cube", "_points"))
    assert len(merged) == 36
    for name in cube_report.predictors:
        a, b = merged[f"{name}_cube"].to_numpy(), merged[f"{name}_points"].to_numpy()
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(b, a, rtol=1e-5, err_msg=name)
    assert point_report.sources["nirv"]["products"] == ["MOD13A1"]
    assert point_report.sources["lswi"]["products"] == ["long CSV"]
    assert point_report.sources["lai"]["products"] == ["MCD15A2H"]
    assert not point_report.skipped_files and not point_report.missing_inputs


def test_ingest_reads_mod13a1_reflectances_with_the_files_scale_convention(tmp_path):
    """MOD13A1 writes scale_factor 10000 meaning raw / 10000; VI Quality rejects mixed clouds."""
    lat, _lon = G.pixel_latlon(*TILE, N)
    quality = np.zeros(lat.shape, np.uint16)
    quality[lat > 46] = 1 << 10  # mixed clouds in the northern row of cells
    G.mod13a1(tmp_path, "2019-06-10", *TILE, N, 0.0512 + 0 * lat, 0.3468 + 0 * lat, quality=quality)
    summary = ingest([tmp_path], tmp_path / "cube.zarr", res=1.0, bbox=BBOX, log=lambda line: None)
    assert summary.ok and summary.written == {"time": ["2019-06-10"]}
    ds = open_cube(tmp_path / "cube.zarr")
    assert ds.nir.attrs["source_products"] == "MOD13A1"
    np.testing.assert_allclose(ds.nir.values[0, 1], 0.3468, rtol=1e-6)  # the southern row (45-46 N)
    np.testing.assert_allclose(ds.red.values[0, 1], 0.0512, rtol=1e-6)
    assert np.isnan(ds.nir.values[0, 0]).all()  # rejected by the VI Quality rule
