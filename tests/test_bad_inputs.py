"""Bad inputs from the command line (issue 26): each gives one line ``error: ...``, exit 2, and
leaves nothing behind; a second writer of an output and Ctrl-C give one line too.

The commands run in this process through ``cli.main`` (the same code path as the script, without
its start-up time); the concurrent writer and Ctrl-C need real processes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ciml_ter import cli
from ciml_ter.data.cube import write_zarr

from _support import CLI, FLUXNET_SAMPLE, make_cube
from test_analyze import _land, _write_run
from world import build_world


def _tree(root: Path) -> list[str]:
    """Every path under ``root`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(capsys, root: Path, *argv: str) -> str:
    """Run ``ciml-ter argv``: one line ``error: ...`` on stderr, exit 2, nothing written under
    ``root``; returns the line."""
    before = _tree(root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exit_.value.code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert _tree(root) == before
    return lines[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def _features_with(world, path: Path, change) -> Path:
    with xr.open_dataset(world["features"], engine="zarr", consolidated=False) as ds:
        change(ds.load()).to_zarr(path, consolidated=False)
    return path


def test_features_on_a_cube_that_repeats_dates(tmp_path, capsys):
    ds = make_cube(days=30)
    write_zarr(ds.isel(time=np.r_[np.arange(30), [3, 4, 5]]), tmp_path / "twice.zarr")
    line = refused(capsys, tmp_path, "features", "--cube", tmp_path / "twice.zarr", "--out", tmp_path / "f.zarr",
                   "--device", "cpu")
    assert line == (f"error: {tmp_path / 'twice.zarr'}: time dimension 'time' repeats 3 date(s) (2003-01-04, "
                    "2003-01-05, 2003-01-06); expected one value per date: remove the repeated dates")


def _sample_copy(folder: Path, factor: float) -> Path:
    folder.mkdir()
    name = "FLX_DK-Sor_FLUXNET2015_SUBSET_MM_1996-2014_2-4.csv"
    raw = pd.read_csv(FLUXNET_SAMPLE / name)
    raw.loc[raw["RECO_NT_VUT_REF"] != -9999, "RECO_NT_VUT_REF"] *= factor
    raw.to_csv(folder / name, index=False)
    shutil.copy(FLUXNET_SAMPLE / "sites.csv", folder / "sites.csv")
    return folder


@pytest.mark.parametrize("factor", [30.0, -1.0])
def test_sites_with_a_target_in_the_wrong_units_or_sign(tmp_path, capsys, factor):
    flux = _sample_copy(tmp_path / "flux", factor)
    line = refused(capsys, tmp_path, "sites", "--fluxnet", flux, "--out", tmp_path / "s.parquet")
    assert "site DK-Sor:" in line and "outside the plausible range [0, 1000] g C m-2 month-1" in line


def test_sites_with_an_abcflux_site_at_two_places(tmp_path, capsys):
    path = tmp_path / "abc.csv"
    path.write_text("site_name,latitude,longitude,year,month,reco\nA,68.5,-149.5,2004,2,12.5\nA,64.1,-149.5,2004,3,14\n")
    line = refused(capsys, tmp_path, "sites", "--abcflux", path, "--out", tmp_path / "s.parquet")
    assert "site A has 2 different coordinates (68.5, -149.5; 64.1, -149.5)" in line


def test_sites_with_a_semicolon_separated_csv(tmp_path, capsys):
    path = tmp_path / "abc.csv"
    path.write_text("site_name;latitude;longitude;year;month;reco\nA;68,5;-149,5;2004;2;12,5\n")
    line = refused(capsys, tmp_path, "sites", "--abcflux", path, "--out", tmp_path / "s.parquet")
    assert "the columns are separated by ';'" in line


@pytest.mark.parametrize("units", ["degC", "K"])
def test_predict_on_a_cube_with_night_lst_in_celsius(world, tmp_path, capsys, units):
    bad = _features_with(world, tmp_path / "c.zarr",
                         lambda ds: ds.assign(lst_night=(ds.lst_night - 273.15).assign_attrs(units=units)))
    line = refused(capsys, tmp_path, "predict", "--model", world["model"], "--features", bad, "--out", tmp_path / "r",
                   "--device", "cpu")
    assert "variable 'lst_night'" in line and ("trained on 'K'" in line if units == "degC" else "check its units" in line)


def test_predict_on_a_cube_without_lai(world, tmp_path, capsys):
    bad = _features_with(world, tmp_path / "c.zarr", lambda ds: ds.drop_vars("lai"))
    line = refused(capsys, tmp_path, "predict", "--model", world["model"], "--features", bad, "--out", tmp_path / "r",
                   "--device", "cpu")
    assert "variable(s) lai missing" in line


def _run_pair(root: Path) -> tuple[Path, Path]:
    """Two runs (ids r1 and r2) of one model, and the analysis of the first."""
    from ciml_ter.config import PipelineConfig
    from ciml_ter.stages.analyze import analyze

    from _support import RUNTIME

    ter = np.where(_land(), 30.0, np.nan)[None] * np.ones((36, 1, 1))
    a, b = _write_run(root / "A", ter), _write_run(root / "B", ter)
    (b / "manifest.json").write_text(json.dumps({"format": "ciml-ter-run/1", "model_id": "test", "run_id": "r2"}))
    analyze(a, root / "analysis-A", PipelineConfig(), RUNTIME)
    return a, b


def test_report_of_one_run_with_the_analysis_of_another(tmp_path, capsys):
    _, b = _run_pair(tmp_path)
    line = refused(capsys, tmp_path, "report", "--run", b, "--analysis", tmp_path / "analysis-A", "--out",
                   tmp_path / "r.html")
    assert "is the analysis of run r1" in line and "refusing to mix runs" in line


def test_report_into_an_existing_folder(tmp_path, capsys):
    a, _ = _run_pair(tmp_path)
    (tmp_path / "out").mkdir()
    line = refused(capsys, tmp_path, "report", "--run", a, "--out", tmp_path / "out")
    assert line == f"error: {tmp_path / 'out'}: is a folder; expected the path of a file to write"


def test_analyze_with_a_product_in_an_unaccepted_unit(tmp_path, capsys):
    a, _ = _run_pair(tmp_path)
    xr.Dataset({"reco": (("time", "lat", "lon"), np.ones((1, 2, 2)), {"units": "mol m-2 s-1"})},
               coords={"time": pd.date_range("2001-01-01", periods=1), "lat": [1.0, 0.0], "lon": [0.0, 1.0]}
               ).to_netcdf(tmp_path / "p.nc", engine="h5netcdf")
    line = refused(capsys, tmp_path, "analyze", "--run", a, "--compare", tmp_path / "p.nc", "--out", tmp_path / "an")
    assert "p.nc: no variable with TER units" in line


@pytest.mark.parametrize("command", [["train", "--sites", "{tmp}/s.parquet"], ["synth"], ["analyze", "--run", "{tmp}/A"],
                                     ["evaluate", "--model", "{tmp}/m"]], ids=lambda c: c[0])
def test_an_out_that_is_an_existing_file(tmp_path, capsys, command):
    (tmp_path / "taken").write_text("a file")
    line = refused(capsys, tmp_path, *[c.format(tmp=tmp_path) for c in command], "--out", tmp_path / "taken")
    assert line == (f"error: {tmp_path / 'taken'}: is a file; expected a folder to write (or a path that does not "
                    "exist yet)")


@pytest.fixture
def read_only(tmp_path):
    """A folder this process cannot write in: by its mode, or for root (who ignores modes) by the
    immutable attribute; skipped where neither is possible."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("root without chattr +i: no folder is read-only")
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_tune_into_a_read_only_folder_stops_before_the_search(tmp_path, capsys, read_only):
    from ciml_ter.sitetable import write_site_table
    from test_causal import FEATURES, synthetic_sites

    write_site_table(synthetic_sites(n_sites=12, n_months=24), tmp_path / "s.parquet", predictors=FEATURES)
    started = time.perf_counter()
    line = refused(capsys, tmp_path, "tune", "--sites", tmp_path / "s.parquet", "--out", read_only / "t.toml",
                   "--trials", "1", "--folds", "3")
    assert line.startswith(f"error: {read_only / 't.toml'}: cannot write in {read_only} (")
    assert time.perf_counter() - started < 5


def test_info_mpi_without_mpi4py(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "mpi4py", None)  # import mpi4py raises ImportError
    line = refused(capsys, tmp_path, "info", "--mpi")
    assert line.startswith("error: info --mpi: mpi4py is not usable (ModuleNotFoundError: ")
    assert line.endswith("install it against the system's MPI: PIP_NO_BINARY=mpi4py pip install 'ciml-ter[mpi]'")


SLOW = ("[train]\nworkers = 2\nfolds = 3\nseeds = 8\ncausal = false\n"
        "[xgboost]\nearly_stopping_rounds = 0\nnum_boost_round = 1000\nmax_depth = 6\n")


def test_a_second_writer_stops_and_ctrl_c_leaves_nothing(tmp_path):
    """Two `train --out m` at once: the second stops at once with one line. Ctrl-C in the first:
    one line, exit 130, and neither a partial folder nor the lock left behind."""
    from ciml_ter.sitetable import write_site_table
    from test_causal import FEATURES, synthetic_sites

    write_site_table(synthetic_sites(n_sites=12, n_months=24), tmp_path / "s.parquet", predictors=FEATURES)
    (tmp_path / "slow.toml").write_text(SLOW)
    args = [*CLI, "train", "--sites", "s.parquet", "--out", "m", "--config", "slow.toml", "--device", "cpu"]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # its own process group, as a terminal's job
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".m.partial/fold*.ubj")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, first.communicate()
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and second.stderr.strip().splitlines() == [
        f"error: m: ciml-ter process {first.pid} on {os.uname().nodename} is writing it; wait until it finishes or "
        "choose another --out"], second.stderr
    os.killpg(first.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130
    assert err.strip().splitlines() == [f"error: {cli.INTERRUPTED}"]
    assert _tree(tmp_path) == ["s.parquet", "slow.toml"]
