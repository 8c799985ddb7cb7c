"""Site-month tables in site-only mode (tower meteorology + lat + month), Parquet form."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ciml_ter import sitetable
from ciml_ter.errors import InputError

from _support import FLUXNET_SAMPLE

DATA = FLUXNET_SAMPLE
METEO = ["TA_F", "SW_IN_F", "LW_IN_F", "VPD_F", "P_F", "TS_F_MDS_1", "SWC_F_MDS_1"]


@pytest.fixture(scope="module")
def built():
    return sitetable.build_site_table([DATA], [])


def test_columns_and_predictor_order(built):
    df, report = built
    context = [f"{p}{v}" for v in METEO for p in ("clim_", "prev1_", "prev3_")]
    assert list(df.columns) == ["site", "lat", "lon", "pft", "time", "ter", "ter_random_error", *METEO, "month",
                                *context]
    # the random error is never a predictor, not even of a table without the predictor list
    assert df["ter_random_error"].notna().mean() > 0.5
    assert "ter_random_error" not in sitetable.site_table_from_frame(df.drop(columns=list(context))).features
    assert report.predictors == [*METEO, "lat", "month"]
    assert df.attrs["predictors"] == report.predictors
    assert report.mode == "site-only"
    assert len(df) == report.rows == 2636
    assert df["time"].dtype == "datetime64[ns]" and (df["time"].dt.day == 1).all()
    assert (df["month"] == df["time"].dt.month).all()
    assert df["month"].between(1, 12).all()
    assert not df.duplicated(["site", "time"]).any()
    assert df["ter"].notna().all()


def test_meteorology_matches_raw_file(built):
    df, _ = built
    raw = pd.read_csv(DATA / "FLX_AU-How_FLUXNET2015_SUBSET_MM_2001-2014_1-4.csv")
    raw = raw.replace(-9999, np.nan)
    raw["time"] = pd.to_datetime(raw["TIMESTAMP"].astype(str), format="%Y%m")
    got = df[df["site"] == "AU-How"].merge(raw, on="time", suffixes=("", "_raw"))
    assert len(got) == 127
    for var in METEO:
        np.testing.assert_allclose(got[var].to_numpy(), got[f"{var}_raw"].to_numpy(),
                                   equal_nan=True)
    assert got["lat"].eq(-12.4943).all() and got["pft"].eq("WSA").all()


def test_context_comes_from_every_month_of_the_site_file(built):
    """clim_/prev1_/prev3_ columns from the whole file, the months whose flux failed QC included
    (GL-ZaH: 180 months in the file, 59 kept, mostly summers: their mean air temperature is no
    climatology of a high-Arctic site)."""
    df, _ = built
    raw = pd.read_csv(DATA / "FLX_GL-ZaH_FLUXNET2015_SUBSET_MM_2000-2014_2-4.csv").replace(-9999, np.nan)
    raw["time"] = pd.to_datetime(raw["TIMESTAMP"].astype(str), format="%Y%m")
    site = df[df["site"] == "GL-ZaH"].set_index("time")
    assert len(raw) == 180 and len(site) == 59
    np.testing.assert_allclose(site["clim_TA_F"], raw["TA_F"].mean(), rtol=1e-12)
    assert site["TA_F"].mean() > raw["TA_F"].mean() + 10  # the kept months' mean: 10.9 K warmer
    by_month = raw.set_index("time")["P_F"]
    previous = site.index - pd.DateOffset(months=1)
    np.testing.assert_allclose(site["prev1_P_F"].to_numpy()[1:], by_month.loc[previous[1:]].to_numpy())
    three = [by_month.reindex(site.index - pd.DateOffset(months=k)).to_numpy() for k in (1, 2, 3)]
    np.testing.assert_allclose(site["prev3_P_F"].to_numpy()[3:], np.nanmean(three, axis=0)[3:])
    assert not set(METEO) & {c for c in df.columns if c.startswith(("clim_", "prev"))}


def test_absent_meteorology_is_nan_and_reported(built):
    df, report = built
    # FR-Pue and US-Los files have no SWC_F_MDS_1 column; CA-Obs and US-Ne1 have it all -9999
    for site in ("FR-Pue", "US-Los", "CA-Obs", "US-Ne1"):
        assert df.loc[df["site"] == site, "SWC_F_MDS_1"].isna().all()
    assert report.missing_predictors == {"SWC_F_MDS_1": ["CA-Obs", "FR-Pue", "US-Los", "US-Ne1"]}
    assert df.loc[df["site"] == "FI-Hyy", "SWC_F_MDS_1"].notna().any()
    assert any("SWC_F_MDS_1" in line and "4 site(s)" in line for line in report.lines())


def test_report_lines_have_counts(built):
    _, report = built
    text = "\n".join(report.lines())
    assert "2636 site-months kept at 20 sites" in text
    assert "removed 460 rows: NEE_VUT_REF_QC < 0.75 or missing" in text
    assert report.as_dict()["kept_per_site"]["GL-ZaH"] == 59


def test_parquet_round_trip_keeps_predictor_order(built, tmp_path):
    df, report = built
    out = sitetable.write_site_table(df, tmp_path / "sub" / "sites.parquet")
    meta = json.loads(pq.read_schema(out).metadata[b"ciml_ter"])
    assert meta["predictors"] == report.predictors
    assert meta["context"] == [c for c in df.columns if c.startswith(("clim_", "prev1_", "prev3_"))]
    assert meta["target_units"] == "g C m-2 month-1"
    back = sitetable.read_site_table(out)
    assert back.meta == meta and back.features == report.predictors
    pd.testing.assert_frame_equal(back.frame, df)


def test_read_site_table_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        sitetable.read_site_table(tmp_path / "none.parquet")
    pd.DataFrame({"site": ["a", "b"], "ter": [1.0, 2.0], "x": [3.0, 4.0]}).to_parquet(tmp_path / "plain.parquet")
    plain = sitetable.read_site_table(tmp_path / "plain.parquet")  # a table from elsewhere
    assert plain.meta == {} and plain.features == ["x"]
    (tmp_path / "text.parquet").write_text("site,ter\n")
    with pytest.raises(InputError, match="text.parquet: expected a Parquet site-month table"):
        sitetable.read_site_table(tmp_path / "text.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = pa.table({"a": [1]}).replace_schema_metadata({b"ciml_ter": b"[1, 2]"})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="schema metadata 'ciml_ter': expected JSON with a 'predictors'"):
        sitetable.read_site_table(tmp_path / "bad.parquet")


def test_site_only_predictors_month_and_missing_meteo():
    obs = pd.DataFrame({"site": "X", "lat": 10.0, "lon": 20.0, "pft": "UNK",
                        "time": pd.to_datetime(["2001-01-01", "2001-07-01"]), "ter": [1.0, 2.0]})
    table, predictors = sitetable.site_only_predictors(obs, meteo=("TA_F",))
    assert predictors == ["TA_F", "lat", "month"]
    assert table["TA_F"].isna().all()
    assert table["month"].tolist() == [1, 7]


def test_fluxnet_and_abcflux_together(tmp_path):
    abc = tmp_path / "abc.csv"
    abc.write_text("site_name,latitude,longitude,year,month,reco\n"
                   "text,text,text,text,text,text\n"
                   "Toolik,68.6,-149.6,2010,7,55.5\n"
                   "Toolik,68.6,-149.6,2010,8,inf\n")
    df, report = sitetable.build_site_table([DATA], [abc])
    assert len(df) == 2636 + 1
    tool = df[df["site"] == "Toolik"].iloc[0]
    assert tool["ter"] == 55.5 and tool["pft"] == "UNK" and tool["month"] == 7
    assert np.isnan(tool["TA_F"])
    assert report.flux.dirty_cells == {"reco": 1}
    assert len(report.flux.files) == 21


def test_same_input_twice_keeps_each_site_month_once():
    df, report = sitetable.build_site_table([DATA, DATA], [])
    assert len(df) == 2636
    assert report.flux.removed["same site-month in two inputs (first kept)"] == 2636


def test_entry_errors(tmp_path):
    with pytest.raises(InputError, match="no flux input"):
        sitetable.build_site_table([], [])
    with pytest.raises(InputError, match="f.zarr: cube not found"):
        sitetable.build_site_table([DATA], [], features=tmp_path / "f.zarr")
    with pytest.raises(InputError, match="no FLUXNET monthly CSV"):
        sitetable.build_site_table([tmp_path], [])
    abc = tmp_path / "abc.csv"
    abc.write_text("site_name,latitude,longitude,year,month,reco\nA,60,20,2000,1,-\n")
    with pytest.raises(InputError, match="no site-month passed"):
        sitetable.build_site_table([], [abc])


def test_cli_sites_on_the_real_sample(tmp_path):
    from _support import run_cli

    out = tmp_path / "s.parquet"
    result = run_cli("sites", "--fluxnet", str(DATA), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "2,636 site-months of 20 sites" in result.stdout
    table = sitetable.read_site_table(out)
    assert len(table.frame) == 2636 and table.features[:2] == ["TA_F", "SW_IN_F"]
    # the table holds the integer month; the model takes the hemisphere-aware season instead, and says so
    assert "month" in table.features
    takes = next(line for line in result.stdout.splitlines() if line.startswith("a model trained on it"))
    assert "season_sin, season_cos" in takes and ", month" not in takes and "clim_TA_F" in takes


def test_cli_sites_user_errors_exit_2(tmp_path):
    from _support import run_cli

    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["--fluxnet", str(empty)], ["--fluxnet", str(tmp_path / "absent")], []):
        result = run_cli("sites", *args, "--out", str(tmp_path / "s.parquet"))
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.parquet").exists()
