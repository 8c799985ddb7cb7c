"""Flux-site readers on the 20 real FLUXNET2015 sites and on small files written here."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ciml_ter.data import flux
from ciml_ter.errors import InputError

from _support import FLUXNET_SAMPLE

DATA = FLUXNET_SAMPLE
SITES = DATA / "sites.csv"
DK_SOR = DATA / "FLX_DK-Sor_FLUXNET2015_SUBSET_MM_1996-2014_2-4.csv"


def _independent_expectation() -> dict[str, pd.DataFrame]:
    """Per site: the months that must pass and their TER, with plain pandas (no engine code)."""
    out = {}
    for path in sorted(DATA.glob("FLX_*_FLUXNET2015_SUBSET_MM_*.csv")):
        site = path.name.split("_")[1]
        raw = pd.read_csv(path)
        reco, qc = raw["RECO_NT_VUT_REF"], raw["NEE_VUT_REF_QC"]
        ok = (reco != -9999) & (qc != -9999) & (qc >= 0.75)
        ts = raw.loc[ok, "TIMESTAMP"].astype(int)
        years, months = ts // 100, ts % 100
        days = [pd.Period(year=int(y), month=int(m), freq="M").days_in_month
                for y, m in zip(years, months)]
        out[site] = pd.DataFrame({"TIMESTAMP": ts.to_numpy(),
                                  "ter": reco[ok].to_numpy() * np.array(days, dtype=float)})
    return out


@pytest.fixture(scope="module")
def real():
    obs, report = flux.read_fluxnet_dir(DATA, variables=("TA_F", "SWC_F_MDS_1"))
    return obs, report


@pytest.fixture(scope="module")
def expected():
    return _independent_expectation()


def test_twenty_sites_found(real, expected):
    obs, report = real
    assert len(expected) == 20
    assert sorted(obs["site"].unique()) == sorted(expected)
    assert len(report.files) == 20


def test_exact_site_month_counts_per_site(real, expected):
    obs, report = real
    want = {site: len(df) for site, df in expected.items()}
    got = obs.groupby("site").size().to_dict()
    assert got == want
    assert report.kept_per_site == want
    assert report.rows_kept == sum(want.values()) == len(obs)
    # a few values pinned as well, so the independent computation itself is checked
    assert want["DK-Sor"] == 205 and want["GL-ZaH"] == 59 and want["US-Los"] == 93
    assert want["SJ-Blv"] == 12 and sum(want.values()) == 2636


def test_months_and_ter_match_independent_computation(real, expected):
    obs, _ = real
    for site, want in expected.items():
        got = obs[obs["site"] == site].sort_values("time")
        stamps = (got["time"].dt.year * 100 + got["time"].dt.month).to_numpy()
        np.testing.assert_array_equal(stamps, want["TIMESTAMP"].to_numpy())
        np.testing.assert_allclose(got["ter"].to_numpy(), want["ter"].to_numpy(), rtol=1e-12)


def test_removed_counts_by_rule(real):
    _, report = real
    # 3180 raw rows: 84 without a target (CA-Obs 24, US-Los 48, US-NR1 12), 460 with low QC
    assert report.rows_read == 3180
    assert report.removed[f"{flux.TARGET} missing (-9999)"] == 84
    assert report.removed[f"{flux.QC} < 0.75 or missing"] == 460
    assert report.rows_read - sum(report.removed.values()) == report.rows_kept


def test_all_months_keeps_the_removed_months_with_ter_missing(real):
    """With all_months every month of the files is there (the meteorology of a month whose flux
    failed the rules too), the removed ones with ter NaN; counts and kept rows are unchanged."""
    obs, report = real
    every, every_report = flux.read_fluxnet_dir(DATA, variables=("TA_F", "SWC_F_MDS_1"), all_months=True)
    assert len(every) == 3180 and every["ter"].notna().sum() == len(obs) == 2636
    assert every_report.removed == report.removed and every_report.kept_per_site == report.kept_per_site
    kept = every[every["ter"].notna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, obs)
    assert every.loc[every["ter"].isna(), "TA_F"].notna().all()


def test_unit_conversion_by_hand(real):
    obs, _ = real
    dk = obs[obs["site"] == "DK-Sor"].set_index("time")["ter"]
    # raw RECO_NT_VUT_REF (g C m-2 d-1) in the DK-Sor file, copied by hand
    assert dk[pd.Timestamp("2004-02-01")] == pytest.approx(1.82217 * 29)  # leap February
    assert dk[pd.Timestamp("2008-02-01")] == pytest.approx(2.35129 * 29)  # leap February
    assert dk[pd.Timestamp("2005-02-01")] == pytest.approx(1.97417 * 28)
    assert dk[pd.Timestamp("2004-07-01")] == pytest.approx(10.0118 * 31)
    # US-Los February 2008 has NEE_VUT_REF_QC = 0: dropped
    los = obs[obs["site"] == "US-Los"]
    assert pd.Timestamp("2008-02-01") not in set(los["time"])


def test_site_metadata_and_columns(real):
    obs, _ = real
    assert list(obs.columns[:8]) == list(flux.OBS_COLUMNS)
    assert obs["time"].dtype == "datetime64[ns]"
    assert (obs["time"].dt.day == 1).all()
    obs_site = obs.drop_duplicates("site").set_index("site")
    assert obs_site.loc["CA-Obs", "lat"] == pytest.approx(53.9872)
    assert obs_site.loc["CA-Obs", "lon"] == pytest.approx(-105.1178)
    assert obs_site.loc["SJ-Blv", "pft"] == "SNO"
    assert obs_site.loc["AU-Tum", "pft"] == "EBF"
    # -9999 never survives; meteorology carried along, NaN where the column is absent
    assert not (obs.select_dtypes("number") == -9999).any().any()
    assert obs.loc[obs["site"] == "FR-Pue", "SWC_F_MDS_1"].isna().all()
    dk = obs[obs["site"] == "DK-Sor"].set_index("time")
    assert dk.loc[pd.Timestamp("2004-07-01"), "TA_F"] == pytest.approx(14.566)
    # the month's random error: NEE_VUT_REF_RANDUNC (g C m-2 d-1) x 31 days; -9999 cells are NaN
    assert dk.loc[pd.Timestamp("2004-07-01"), "ter_random_error"] == pytest.approx(0.106948 * 31)
    assert obs["ter_random_error"].isna().any() and (obs["ter_random_error"].dropna() >= 0).all()


def test_counts_are_logged(caplog):
    with caplog.at_level(logging.INFO, logger="ciml_ter.flux"):
        flux.read_fluxnet_dir(DK_SOR)
    text = caplog.text
    assert "23 rows removed (NEE_VUT_REF_QC < 0.75 or missing)" in text
    assert "205 of 228 months kept" in text


def _write_small(path: Path, rows: list[tuple], columns=("TIMESTAMP", "RECO_NT_VUT_REF",
                                                         "NEE_VUT_REF_QC", "TA_F")) -> Path:
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def _sites(path: Path, *ids: str) -> Path:
    rows = [{"SITE_ID": s, "LOCATION_LAT": 42.5, "LOCATION_LONG": 287.8, "IGBP": "DBF"}
            for s in ids]
    pd.DataFrame(rows).to_csv(path / "sites.csv", index=False)
    return path / "sites.csv"


def test_oneflux_names_missing_values_and_fullset_preferred(tmp_path):
    _sites(tmp_path, "US-Ha1")
    _write_small(tmp_path / "AMF_US-Ha1_FLUXNET_SUBSET_MM_1991-2020_3-5.csv",
                 [(200001, 1.0, 1.0, 1.0), (200002, 1.0, 1.0, 1.0)])
    _write_small(tmp_path / "AMF_US-Ha1_FLUXNET_FULLSET_MM_1991-2020_3-5.csv",
                 [(200001, 2.0, 0.9, -9999), (200002, -9999, 1.0, 0.0), (200003, 3.0, -9999, 0.0),
                  (200004, 4.0, 0.5, 0.0), (200005, 5.0, 0.75, 0.0)])
    (tmp_path / "AMF_US-Ha1_FLUXNET_FULLSET_DD_1991-2020_3-5.csv").write_text("TIMESTAMP\n")
    obs, report = flux.read_fluxnet_dir(tmp_path, variables=("TA_F",))
    assert flux.fluxnet_site_id(Path("AMF_US-Ha1_FLUXNET_SUBSET_MM_1991-2020_3-5.csv")) == "US-Ha1"
    assert flux.fluxnet_site_id(Path("AMF_US-Ha1_FLUXNET_FULLSET_DD_1991-2020_3-5.csv")) is None
    by_time = obs.set_index("time")
    # January from FULLSET (2.0 x 31), February from SUBSET (FULLSET target is -9999), May kept
    # at QC exactly 0.75; March (QC -9999) and April (QC 0.5) dropped
    assert list(by_time.index.month) == [1, 2, 5]
    assert by_time["ter"].tolist() == pytest.approx([62.0, 29.0, 155.0])  # 2000 is leap
    assert np.isnan(by_time["TA_F"].iloc[0])
    assert by_time["lon"].iloc[0] == pytest.approx(287.8 - 360.0)
    assert report.removed["same site-month in another file (first kept)"] == 1
    assert report.removed[f"{flux.TARGET} missing (-9999)"] == 1
    assert report.removed[f"{flux.QC} < 0.75 or missing"] == 2


def test_missing_target_column_names_file(tmp_path):
    raw = pd.read_csv(DK_SOR).drop(columns=["RECO_NT_VUT_REF"])
    bad = tmp_path / DK_SOR.name
    raw.to_csv(bad, index=False)
    shutil.copy(SITES, tmp_path / "sites.csv")
    with pytest.raises(InputError) as err:
        flux.read_fluxnet_dir(tmp_path)
    msg = str(err.value)
    assert str(bad) in msg and "RECO_NT_VUT_REF" in msg and "missing" in msg
    assert "\n" not in msg


def test_missing_qc_column(tmp_path):
    path = _write_small(tmp_path / "FLX_XX-Abc_FLUXNET2015_SUBSET_MM_2000-2000_1-4.csv",
                        [(200001, 1.0, 1.0)], columns=("TIMESTAMP", "RECO_NT_VUT_REF", "TA_F"))
    with pytest.raises(InputError, match="NEE_VUT_REF_QC"):
        flux.read_fluxnet_csv(path)


def test_daily_file_rejected(tmp_path):
    path = _write_small(tmp_path / "FLX_XX-Abc_FLUXNET2015_SUBSET_MM_2000-2000_1-4.csv",
                        [(20000101, 1.0, 1.0, 0.0)])
    with pytest.raises(InputError, match=r"TIMESTAMP.*20000101.*YYYYMM"):
        flux.read_fluxnet_csv(path)


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no FLUXNET monthly CSV") as err:
        flux.read_fluxnet_dir(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_folder_with_only_daily_files(tmp_path):
    (tmp_path / "FLX_XX-Abc_FLUXNET2015_SUBSET_DD_2000-2000_1-4.csv").write_text("TIMESTAMP\n")
    with pytest.raises(InputError, match="found only other FLUXNET files"):
        flux.read_fluxnet_dir(tmp_path)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        flux.read_fluxnet_dir(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not found") as err:
        flux.read_fluxnet_csv(tmp_path / "FLX_XX-Abc_FLUXNET2015_SUBSET_MM_2000-2000_1-4.csv")
    assert "FLX_XX-Abc" in str(err.value)
    with pytest.raises(InputError, match="ABCflux CSV not found"):
        flux.read_abcflux(tmp_path / "abcflux.csv")


def test_site_absent_from_site_table(tmp_path):
    shutil.copy(DK_SOR, tmp_path / DK_SOR.name)
    _sites(tmp_path, "US-Ha1")
    with pytest.raises(InputError) as err:
        flux.read_fluxnet_dir(tmp_path)
    msg = str(err.value)
    assert "DK-Sor" in msg and "SITE_ID" in msg and str(tmp_path / "sites.csv") in msg


def test_site_table_missing_or_incomplete(tmp_path):
    shutil.copy(DK_SOR, tmp_path / DK_SOR.name)
    with pytest.raises(InputError, match="site table not found"):
        flux.read_fluxnet_dir(tmp_path)
    pd.DataFrame({"SITE_ID": ["DK-Sor"], "LOCATION_LAT": [55.5]}).to_csv(
        tmp_path / "sites.csv", index=False)
    with pytest.raises(InputError, match="LOCATION_LONG, IGBP"):
        flux.read_fluxnet_dir(tmp_path)


def test_single_file_accepted(tmp_path):
    shutil.copy(DK_SOR, tmp_path / DK_SOR.name)
    shutil.copy(SITES, tmp_path / "sites.csv")
    obs, report = flux.read_fluxnet_dir(tmp_path / DK_SOR.name)
    assert len(obs) == 205 and report.kept_per_site == {"DK-Sor": 205}


# ------------------------------------------------------------- bad cells (no silent coercion)
# FLUXNET2015 SUBSET monthly layout (column order as in the real files), written as text so
# the cells are exactly what a user's file holds. NEE_VUT_REF is not read by the reader, so
# its "oops" must not be counted.
DIRTY_HEADER = ("TIMESTAMP,TA_F,TA_F_QC,SW_IN_F,SW_IN_F_QC,SWC_F_MDS_1,NEE_VUT_REF,"
                "NEE_VUT_REF_QC,RECO_NT_VUT_REF,GPP_NT_VUT_REF\n")
DIRTY_ROWS = (
    "200401,-2.5,0,20.0,0,30.0,oops,1.0,1.5,0.1\n"          # kept
    "200402,warm,0,40.0,0,-9999,0.2,0.9,2.0,0.2\n"         # kept; TA_F text, SWC -9999
    "200403,3.0,0,,0,28.0,0.3,1.0,n/a,0.3\n"               # target "n/a"; SW_IN_F empty
    "200404,8.0,0,120.0,0,-9999,0.4,-9999,-9999,-9999\n"   # target, QC, SWC -9999
    "200405,12.0,0,180.0,0,-99999,0.5,0.8,,0.5\n"          # target empty; SWC below -9999
    "200406,\"16,5\",0,200.0,0,24.0,0.6,0.5,3.0,0.6\n"       # low QC; TA_F text "16,5"
    "200407,18.0,0,-9999,0,22.0,0.7,1.0,4.0,0.7\n"         # kept; SW_IN_F -9999
)
DIRTY_NAME = "FLX_XX-Drt_FLUXNET2015_SUBSET_MM_2004-2004_1-4.csv"
METEO3 = ("TA_F", "SW_IN_F", "SWC_F_MDS_1")


def _dirty_file(folder: Path, name: str = DIRTY_NAME, rows: str = DIRTY_ROWS) -> Path:
    path = folder / name
    path.write_text(DIRTY_HEADER + rows)
    return path


def test_fluxnet_bad_cells_counted_per_kind_column_and_file(tmp_path, caplog):
    _dirty_file(tmp_path)
    _sites(tmp_path, "XX-Drt")
    with caplog.at_level(logging.INFO, logger="ciml_ter.flux"):
        obs, report = flux.read_fluxnet_dir(tmp_path, variables=METEO3)
    f = DIRTY_NAME
    assert report.cells == {
        flux.CELL_TEXT: {"RECO_NT_VUT_REF": {f: 1}, "TA_F": {f: 2}},
        flux.CELL_EMPTY: {"RECO_NT_VUT_REF": {f: 1}, "SW_IN_F": {f: 1}},
        flux.CELL_BELOW: {"SWC_F_MDS_1": {f: 1}},
        flux.CELL_MISSING: {"RECO_NT_VUT_REF": {f: 1}, "NEE_VUT_REF_QC": {f: 1},
                            "SW_IN_F": {f: 1}, "SWC_F_MDS_1": {f: 2}},
    }
    assert report.cell_examples == {"RECO_NT_VUT_REF": {f: ["n/a"]},
                                    "TA_F": {f: ["warm", "16,5"]}}
    assert report.dirty_cells == {"RECO_NT_VUT_REF": 1, "TA_F": 2}
    # rows without a target, one rule per kind: "n/a" is not counted as -9999
    assert report.rows_read == 7
    assert report.removed[f"{flux.TARGET} missing (-9999)"] == 1
    assert report.removed[f"{flux.TARGET} not a number"] == 1
    assert report.removed[f"{flux.TARGET} empty"] == 1
    assert report.removed[f"{flux.TARGET} below -9999"] == 0
    assert report.removed[f"{flux.QC} < 0.75 or missing"] == 1
    assert report.rows_read - sum(report.removed.values()) == report.rows_kept == 3
    # the table: January, February (leap year, 29 days) and July
    assert obs["time"].tolist() == [pd.Timestamp("2004-01-01"), pd.Timestamp("2004-02-01"),
                                    pd.Timestamp("2004-07-01")]
    assert obs["ter"].tolist() == pytest.approx([1.5 * 31, 2.0 * 29, 4.0 * 31])
    np.testing.assert_array_equal(obs["TA_F"].to_numpy(), [-2.5, np.nan, 18.0])
    np.testing.assert_array_equal(obs["SW_IN_F"].to_numpy(), [20.0, 40.0, np.nan])
    np.testing.assert_array_equal(obs["SWC_F_MDS_1"].to_numpy(), [30.0, np.nan, 22.0])
    assert (obs["site"] == "XX-Drt").all() and (obs["source"] == f).all()
    # the lines the CLI prints: one per column and kind, naming the file and the bad text
    lines = report.lines()
    assert f"removed 1 rows: {flux.TARGET} not a number" in lines
    assert f"removed 1 rows: {flux.TARGET} empty" in lines
    assert f"removed 1 rows: {flux.TARGET} missing (-9999)" in lines
    assert (f"RECO_NT_VUT_REF: 1 cell holds text that is not a number ('n/a'), treated as "
            f"missing, in {f}") in lines
    assert (f"TA_F: 2 cells hold text that is not a number ('warm', '16,5'), treated as "
            f"missing, in {f}") in lines
    assert f"RECO_NT_VUT_REF: 1 cell is empty, treated as missing, in {f}" in lines
    assert f"SW_IN_F: 1 cell is empty, treated as missing, in {f}" in lines
    assert f"SWC_F_MDS_1: 1 cell holds a number below -9999, treated as missing, in {f}" in lines
    assert f"RECO_NT_VUT_REF: 1 cell is -9999 (missing code) in {f}" in lines
    assert f"SWC_F_MDS_1: 2 cells are -9999 (missing code) in {f}" in lines
    assert not any("NEE_VUT_REF:" in line or "oops" in line for line in lines)
    assert len(lines) == 1 + 4 + 9  # totals, 4 removal rules, 9 column/kind lines
    assert f"{f}: 2 dirty cells in column TA_F treated as missing" in caplog.text
    assert "'warm'" in caplog.text
    # the same through read_fluxnet_csv, and in as_dict
    _, alone = flux.read_fluxnet_csv(tmp_path / f, variables=METEO3)
    assert alone.cells == report.cells
    assert report.as_dict()["cells"][flux.CELL_TEXT]["TA_F"] == {f: 2}
    assert report.as_dict()["cell_examples"]["TA_F"] == {f: ["warm", "16,5"]}


def test_fluxnet_bad_cells_aggregated_over_files(tmp_path):
    _sites(tmp_path, "XX-Drt", "XX-Two")
    _dirty_file(tmp_path)
    two = "FLX_XX-Two_FLUXNET2015_SUBSET_MM_2004-2004_1-4.csv"
    _dirty_file(tmp_path, two, "200401,hot,0,1.0,0,1.0,0,1.0,n/a,0\n"
                               "200402,warm,0,1.0,0,1.0,0,1.0,1.0,0\n")
    obs, report = flux.read_fluxnet_dir(tmp_path, variables=METEO3)
    assert report.cells[flux.CELL_TEXT] == {"RECO_NT_VUT_REF": {DIRTY_NAME: 1, two: 1},
                                            "TA_F": {DIRTY_NAME: 2, two: 2}}
    assert report.dirty_cells == {"RECO_NT_VUT_REF": 2, "TA_F": 4}
    assert report.removed[f"{flux.TARGET} not a number"] == 2
    assert report.removed[f"{flux.TARGET} missing (-9999)"] == 1
    lines = report.lines()
    assert (f"TA_F: 4 cells hold text that is not a number ('warm', '16,5', 'hot'), treated as "
            f"missing, in 2 files: {DIRTY_NAME} (2), {two} (2)") in lines
    assert (f"RECO_NT_VUT_REF: 2 cells hold text that is not a number ('n/a'), treated as "
            f"missing, in 2 files: {DIRTY_NAME} (1), {two} (1)") in lines
    assert obs.groupby("site").size().to_dict() == {"XX-Drt": 3, "XX-Two": 1}


def test_real_sites_report_only_the_missing_code(real):
    _, report = real
    # the shipped files hold no empty or text cells in the columns read: only -9999 lines
    assert set(report.cells) == {flux.CELL_MISSING}
    missing = report.cells[flux.CELL_MISSING]
    assert sorted(missing) == ["NEE_VUT_REF_QC", "RECO_NT_VUT_REF", "SWC_F_MDS_1"]
    reco = {name.split("_")[1]: n for name, n in missing["RECO_NT_VUT_REF"].items()}
    assert reco == {"CA-Obs": 24, "US-Los": 48, "US-NR1": 12}
    assert sum(missing["SWC_F_MDS_1"].values()) == 642 and len(missing["SWC_F_MDS_1"]) == 16
    assert report.dirty_cells == {} and report.cell_examples == {}
    cell_lines = [line for line in report.lines() if "cell" in line]
    assert len(cell_lines) == 3
    assert cell_lines[0].startswith(
        "RECO_NT_VUT_REF: 84 cells are -9999 (missing code) in 3 files: "
        "FLX_CA-Obs_FLUXNET2015_SUBSET_MM_1997-2010_1-4.csv (24)")
    assert cell_lines[2].startswith("SWC_F_MDS_1: 642 cells are -9999 (missing code) in 16 files")
    assert cell_lines[2].endswith("... (16 in all)")


def test_site_table_text_coordinates_reported(tmp_path):
    _dirty_file(tmp_path)
    table = tmp_path / "sites.csv"
    table.write_text("SITE_ID,LOCATION_LAT,LOCATION_LONG,IGBP\n"
                     "XX-Drt,42.5,287.8,DBF\n"
                     "XX-Unu,north,-9999,ENF\n"
                     "XX-Emp,,10.0,\n")
    obs, report = flux.read_fluxnet_dir(tmp_path)
    assert len(obs) == 3
    assert report.cells[flux.CELL_TEXT]["LOCATION_LAT"] == {str(table): 1}
    assert report.cells[flux.CELL_EMPTY]["LOCATION_LAT"] == {str(table): 1}
    assert report.cells[flux.CELL_MISSING]["LOCATION_LONG"] == {str(table): 1}
    assert report.cell_examples["LOCATION_LAT"] == {str(table): ["north"]}
    assert (f"LOCATION_LAT: 1 cell holds text that is not a number ('north'), treated as "
            f"missing, in {table}") in report.lines()
    # a site whose coordinates are text: the error shows the text, not nan
    table.write_text("SITE_ID,LOCATION_LAT,LOCATION_LONG,IGBP\nXX-Drt,n/a,287.8,DBF\n")
    with pytest.raises(InputError, match=r"XX-Drt has LOCATION_LAT='n/a'"):
        flux.read_fluxnet_dir(tmp_path)


# ----------------------------------------------------------------------------- ABCflux
ABC_HEADER = "site_name,latitude,longitude,year,month,reco,tair\n"
ABC_DESCRIPTION = ('"Name of the site","Latitude, decimal degrees","Longitude, decimal degrees",'
                   '"Year","Month (1-12)","Ecosystem respiration, g C m-2 month-1","degC"\n')
ABC_ROWS = (
    "Site A,68.5,-149.5,2004,2,12.5,-20\n"     # kept
    "Site A,68.5,-149.5,2004,3,-,-15\n"        # reco dirty "-"
    "Site A,68.5,-149.5,2004,4,inf,-5\n"       # reco dirty "inf"
    "Site A,68.5,-149.5,2004,5,NA,2\n"         # reco dirty "NA"
    "Site A,68.5,-149.5,2004,6,,8\n"           # reco empty
    "Site A,68.5,-149.5,2004,7,40.25,NA\n"     # kept, tair dirty
    "Site B,61.8,24.3,2010,13,5.0,1\n"         # bad month
    "Site B,61.8,24.3,-,8,5.0,1\n"             # dirty year
    "Site B,61.8,24.3,2010,8,30,12\n"          # kept
    "Site B,61.8,24.3,2010,8,31,12\n"          # duplicate site-month
)


def test_abcflux_description_row_under_header_and_dirty_cells(tmp_path, caplog):
    path = tmp_path / "abcflux.csv"
    path.write_text(ABC_HEADER + ABC_DESCRIPTION + ABC_ROWS)
    with caplog.at_level(logging.INFO, logger="ciml_ter.flux"):
        obs, report = flux.read_abcflux(path, variables=("tair", "TA_F"))
    assert report.rows_read == 11
    assert report.removed["description row (text where numbers belong)"] == 1
    assert report.removed["reco missing or dirty"] == 4
    assert report.removed["year/month missing or invalid"] == 2
    assert report.removed["duplicate site_name/year/month (first kept)"] == 1
    assert report.dirty_cells == {"year": 1, "reco": 3, "tair": 1}
    assert report.kept_per_site == {"Site A": 2, "Site B": 1}
    assert obs["ter"].tolist() == [12.5, 40.25, 30.0]  # already g C m-2 month-1: no scaling
    assert obs["time"].tolist() == [pd.Timestamp("2004-02-01"), pd.Timestamp("2004-07-01"),
                                    pd.Timestamp("2010-08-01")]
    assert (obs["pft"] == "UNK").all()
    assert obs["tair"].iloc[0] == -20 and np.isnan(obs["tair"].iloc[1])
    assert obs["TA_F"].isna().all()
    assert obs["lat"].tolist() == [68.5, 68.5, 61.8]
    assert "3 dirty cells in column reco treated as missing" in caplog.text
    assert "4 rows removed (reco missing or dirty)" in caplog.text


def test_abcflux_cells_counted_per_kind(tmp_path):
    path = tmp_path / "abcflux.csv"
    path.write_text(ABC_HEADER + ABC_DESCRIPTION + ABC_ROWS
                    + "Site B,61.8,-9999,2010,9,7.5,3\n")  # -9999 longitude
    obs, report = flux.read_abcflux(path, variables=("tair",))
    name = "abcflux.csv"
    assert report.cells == {
        flux.CELL_TEXT: {"year": {name: 1}, "reco": {name: 3}, "tair": {name: 1}},
        flux.CELL_EMPTY: {"reco": {name: 1}},
        flux.CELL_MISSING: {"longitude": {name: 1}},
    }
    assert report.dirty_cells == {"year": 1, "reco": 3, "tair": 1}
    assert report.cell_examples == {"year": {name: ["-"]}, "reco": {name: ["-", "inf", "NA"]},
                                    "tair": {name: ["NA"]}}
    assert report.removed["latitude/longitude missing or invalid"] == 1
    assert report.removed["reco missing or dirty"] == 4
    lines = report.lines()
    assert (f"reco: 3 cells hold text that is not a number ('-', 'inf', 'NA'), treated as "
            f"missing, in {name}") in lines
    assert f"reco: 1 cell is empty, treated as missing, in {name}" in lines
    assert f"longitude: 1 cell is -9999 (missing code) in {name}" in lines
    assert len(obs) == 3


def test_abcflux_description_above_header_and_pft_column(tmp_path):
    path = tmp_path / "abcflux.csv"
    path.write_text("ABCflux v1: Arctic-boreal CO2 fluxes, monthly; see Virkkala et al. 2022\n"
                    "site_name,latitude,longitude,year,month,reco,pft\n"
                    "Site C,70.0,190.0,2008,2,3.5,GRA\n"
                    "Site C,70.0,190.0,2008,3,4.5,\n")
    obs, report = flux.read_abcflux(path)
    assert any("description line" in n for n in report.notes)
    assert obs["pft"].tolist() == ["GRA", "UNK"]
    assert obs["lon"].tolist() == pytest.approx([-170.0, -170.0])
    assert report.rows_kept == 2


def test_abcflux_without_required_columns(tmp_path):
    path = tmp_path / "abcflux.csv"
    path.write_text("site,lat,lon,year,month,reco\nA,1,2,2000,1,3\n")
    with pytest.raises(InputError) as err:
        flux.read_abcflux(path)
    assert str(path) in str(err.value) and "site_name" in str(err.value)


def test_fluxnet_word_sample_is_the_shipped_sample_and_a_path_stays_a_path():
    assert flux.fluxnet_folder("sample") == flux.SHIPPED_SAMPLE
    assert flux.fluxnet_folder("./sample") == Path("sample") != flux.SHIPPED_SAMPLE  # a local folder
    assert flux.fluxnet_folder("/data/fluxnet") == Path("/data/fluxnet")


# ------------------------------------------------------------- the target's plausible range, layouts
def _scaled_dk_sor(folder: Path, factor: float, month: int | None = None) -> Path:
    """DK-Sor's real file with RECO_NT_VUT_REF times ``factor`` (only in row ``month`` if given)."""
    raw = pd.read_csv(DK_SOR)
    ok = raw["RECO_NT_VUT_REF"] != -9999
    rows = ok if month is None else ok & (raw.index == month)
    raw.loc[rows, "RECO_NT_VUT_REF"] *= factor
    raw.to_csv(folder / DK_SOR.name, index=False)
    shutil.copy(SITES, folder / "sites.csv")
    return folder / DK_SOR.name


@pytest.mark.parametrize("factor, share, found", [(30.0, "99%", "889.4 to 1.04e+04"), (-1.0, "100%", "-346.6 to -29.65")])
def test_a_target_in_the_wrong_units_or_sign_is_refused_naming_file_and_site(tmp_path, factor, share, found):
    """Daily values read as monthly ones (x 30) or a flipped sign: refused, not trained on."""
    path = _scaled_dk_sor(tmp_path, factor)
    with pytest.raises(InputError) as err:
        flux.read_fluxnet_dir(tmp_path)
    assert str(err.value) == (f"{path}: site DK-Sor: {share} of the monthly TER values (RECO_NT_VUT_REF x days of "
                              f"the month) lie outside the plausible range [0, 1000] g C m-2 month-1 (found {found}); "
                              "check the units and the sign")


def test_one_implausible_month_among_many_is_removed_and_counted(tmp_path):
    _scaled_dk_sor(tmp_path, -1.0, month=5)
    obs, report = flux.read_fluxnet_dir(tmp_path)
    assert len(obs) == 204 and (obs["ter"] >= 0).all()
    assert report.removed["TER outside the plausible range [0, 1000] g C m-2 month-1"] == 1
    assert "removed 1 rows: TER outside the plausible range [0, 1000] g C m-2 month-1" in report.lines()
    everything, report = flux.read_fluxnet_dir(tmp_path, all_months=True)  # the site's whole record
    assert everything["ter"].notna().sum() == 204 and (everything["ter"].dropna() >= 0).all()
    assert len(everything) > 204 and report.kept_per_site == {"DK-Sor": 204}
    assert report.removed["TER outside the plausible range [0, 1000] g C m-2 month-1"] == 1


def test_fluxnet_files_of_another_time_step_are_named(tmp_path):
    shutil.copy(DK_SOR, tmp_path / DK_SOR.name)
    shutil.copy(SITES, tmp_path / "sites.csv")
    (tmp_path / "FLX_DK-Sor_FLUXNET2015_SUBSET_DD_1996-2014_2-4.csv").write_text("TIMESTAMP\n")
    _, report = flux.read_fluxnet_dir(tmp_path)
    assert report.notes == [f"{tmp_path}: not read, 1 FLUXNET file(s) of another time step than monthly (_MM_): "
                            "FLX_DK-Sor_FLUXNET2015_SUBSET_DD_1996-2014_2-4.csv"]


@pytest.mark.parametrize("which", ["fluxnet", "site table", "abcflux"])
def test_a_semicolon_separated_csv_is_named_as_such(tmp_path, which):
    shutil.copy(DK_SOR, tmp_path / DK_SOR.name)
    shutil.copy(SITES, tmp_path / "sites.csv")
    target = {"fluxnet": tmp_path / DK_SOR.name, "site table": tmp_path / "sites.csv",
              "abcflux": tmp_path / "abcflux.csv"}[which]
    if which == "abcflux":
        target.write_text("site_name;latitude;longitude;year;month;reco\nSite A;68,5;-149,5;2004;2;12,5\n")
    else:
        raw = pd.read_csv(target)
        raw.to_csv(target, sep=";", decimal=",", index=False)
    with pytest.raises(InputError) as err:
        flux.read_abcflux(target) if which == "abcflux" else flux.read_fluxnet_dir(tmp_path)
    assert str(err.value).startswith(f"{target}: the columns are separated by ';' (header ")
    assert "expected a comma-separated" in str(err.value) and "export it again with commas" in str(err.value)


def test_abcflux_per_day_reco_is_converted_with_a_note(tmp_path):
    path = tmp_path / "abcflux.csv"
    path.write_text(ABC_HEADER + ABC_DESCRIPTION.replace("g C m-2 month-1", "g C m-2 d-1")
                    + "Site A,68.5,-149.5,2004,2,0.5,-20\nSite A,68.5,-149.5,2004,7,1.5,10\n")
    obs, report = flux.read_abcflux(path)
    assert obs["ter"].tolist() == [0.5 * 29, 1.5 * 31]
    assert report.notes == ["abcflux.csv: reco is per day ('Ecosystem respiration, g C m-2 d-1' in the description "
                            "row): times the days of the month, in g C m-2 month-1"]


def test_abcflux_reco_in_another_unit_is_refused(tmp_path):
    path = tmp_path / "abcflux.csv"
    path.write_text(ABC_HEADER + ABC_DESCRIPTION.replace("g C m-2 month-1", "mg C m-2 h-1")
                    + "Site A,68.5,-149.5,2004,2,0.5,-20\n")
    with pytest.raises(InputError, match=r"column reco is described as 'Ecosystem respiration, mg C m-2 h-1'; "
                                         r"expected g C m-2 month-1 \(or g C m-2 d-1, converted\)"):
        flux.read_abcflux(path)


def test_abcflux_site_whose_coordinates_change_is_refused(tmp_path):
    path = tmp_path / "abcflux.csv"
    path.write_text(ABC_HEADER + "Site A,68.5,-149.5,2004,2,12.5,-20\nSite A,64.1,-149.5,2004,3,14.5,-15\n")
    with pytest.raises(InputError) as err:
        flux.read_abcflux(path)
    assert str(err.value) == (f"{path}: site Site A has 2 different coordinates (68.5, -149.5; 64.1, -149.5); "
                              "expected one place per site_name: correct the coordinates or give each place its own "
                              "site_name")


def test_a_site_with_less_than_a_year_is_kept_with_a_note(tmp_path):
    from ciml_ter.sitetable import read_observations

    path = tmp_path / "abcflux.csv"
    path.write_text(ABC_HEADER + "Site A,68.5,-149.5,2004,6,12.5,-20\nSite A,68.5,-149.5,2004,7,14.5,-15\n"
                    "Site A,68.5,-149.5,2004,8,13.5,-15\n")
    obs, report = read_observations([FLUXNET_SAMPLE], [path])
    assert (obs["site"] == "Site A").sum() == 3
    assert report.notes == ["1 site(s) with fewer than 12 site-months (less than one seasonal cycle), kept: Site A (3)"]
