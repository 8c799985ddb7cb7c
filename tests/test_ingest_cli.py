"""`ciml-ter ingest` from the command line: one rank and two MPI ranks give the same store bit for
bit; a bad granule is named in one line and the command exits 2 with the others ingested; the
options fall back to the config's [ingest] / [grid] / [paths] values."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import granules as G
import numpy as np
import pytest
import zarr
from ciml_ter.config import config_from_dict, save_config
from ciml_ter.data.cube import open_cube

from _support import run_cli

EXE = str(Path(sys.executable).with_name("ciml-ter"))
BBOX = "0,40,20,50"


def _granules(folder: Path, days: int = 4, n: int = 30) -> Path:
    """Two MOD11A1 tiles (h18v04, h19v04) for ``days`` days: LST varying with place and day."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(days):
        for h in (18, 19):
            lat, lon = G.pixel_latlon(h, 4, n)
            day = 280 + 0.3 * lon - 0.5 * (lat - 45) + d
            G.mod11a1(folder, f"2019-03-{d + 1:02d}", h, 4, n, day, day - 12)
    return folder


def _arrays(store: Path) -> dict:
    group = zarr.open_group(str(store), mode="r")
    return {name: group[name][...] for name in sorted(group.array_keys())}


def test_one_and_two_ranks_write_the_same_store(tmp_path):
    src = _granules(tmp_path / "in")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    stores = {}
    for n in (1, 2):
        out = tmp_path / f"cube{n}.zarr"
        cmd = [EXE, "ingest", str(src), "--out", str(out), "--res", "1", "--bbox", BBOX, "--landcover", "none"]
        result = subprocess.run(["mpirun", "-n", str(n), *cmd] if n > 1 else cmd, capture_output=True,
                                text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr + result.stdout
        assert result.stdout.count("wrote ") == 2, result.stdout  # rank 0 alone reports: a batch line, the total
        stores[n] = _arrays(out)
    assert stores[1].keys() == stores[2].keys() and "lst_day" in stores[1]
    for name, values in stores[1].items():
        assert values.tobytes() == stores[2][name].tobytes(), name
    assert np.isfinite(stores[1]["lst_day"]).sum() > 100


def test_a_bad_granule_is_named_in_one_line_and_exits_2(tmp_path):
    src = _granules(tmp_path / "in", days=2)
    bad = src / G.granule_name("MOD11A1", "2019-03-02", "061", (19, 4))
    bad.write_bytes(bad.read_bytes()[:1000])
    (src / "notes.txt").write_text("not a granule")
    result = run_cli("ingest", str(src), "--out", str(tmp_path / "c.zarr"), "--res", "1", "--bbox", BBOX,
                     "--landcover", "none")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and bad.name in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert bad.name not in result.stdout  # reported once, in the error line
    assert "skipped unknown file" in result.stdout and "notes.txt" in result.stdout
    ds = open_cube(tmp_path / "c.zarr")
    assert np.isfinite(ds.lst_day.values).any(axis=(1, 2)).tolist() == [True, True]  # h18 of day 2 is in


def test_options_default_to_the_config(tmp_path):
    src = _granules(tmp_path / "in", days=1)
    config = config_from_dict({"grid": {"bbox": [0.0, 40.0, 20.0, 50.0]},
                               "ingest": {"res": 2.0, "landcover": ""},
                               "paths": {"granules": [str(src)], "cube": str(tmp_path / "c.zarr")}})
    save_config(config, tmp_path / "c.toml")
    result = run_cli("ingest", "--config", str(tmp_path / "c.toml"))
    assert result.returncode == 0, result.stderr
    ds = open_cube(tmp_path / "c.zarr")
    assert ds.sizes["lat"] == 5 and ds.sizes["lon"] == 10 and "land" not in ds  # 2 degrees, no land cover
    again = run_cli("ingest", "--config", str(tmp_path / "c.toml"), "--res", "1", "--out", str(tmp_path / "d.zarr"))
    assert again.returncode == 0 and open_cube(tmp_path / "d.zarr").sizes["lat"] == 10


@pytest.mark.parametrize("args, fragment", [
    ([], "no inputs: give granule files or folders, or set [paths] granules"),
    (["in", "--out", "x.zarr", "--months", "2019"], "ingest.months"),
    (["in", "--out", "x.zarr", "--raster", "soc30"], "ingest.rasters"),
])
def test_user_errors_exit_2(tmp_path, args, fragment):
    result = run_cli("ingest", *args, cwd=tmp_path)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr


def _one_error_line(result) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_no_usable_input_exits_2_and_leaves_no_store(tmp_path):
    (tmp_path / "notaproduct.log").write_text("a log")
    result = run_cli("ingest", "notaproduct.log", "--out", "c.zarr", "--res", "1", "--bbox", BBOX, cwd=tmp_path)
    assert _one_error_line(result) == ("error: notaproduct.log: no usable input among 1 file(s): 1 not recognised "
                                       "(e.g. notaproduct.log: not a recognised product file name)")
    assert not (tmp_path / "c.zarr").exists()


def test_a_renamed_granule_exits_2_in_one_line(tmp_path):
    lat, lon = G.pixel_latlon(18, 4, 12)
    path = G.mod11a1(tmp_path, "2021-08-15", 18, 4, 12, 280 + 0 * lat, 270 + 0 * lat)
    renamed = path.rename(path.with_name(path.name.replace("A2021227", "A2021001")))
    result = run_cli("ingest", str(tmp_path), "--out", str(tmp_path / "c.zarr"), "--res", "1", "--bbox", BBOX,
                     "--landcover", "none")
    assert _one_error_line(result) == (f"error: {renamed}: the file name says 2021-01-01, its metadata "
                                       f"(RANGEBEGINNINGDATE) says 2021-08-15: a renamed file is refused "
                                       f"(restore its standard name or remove it)")
    assert not (tmp_path / "c.zarr").exists()
