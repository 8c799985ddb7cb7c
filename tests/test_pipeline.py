"""``ciml-ter run``: the whole chain from a config's [paths] on a small world; reruns resume."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import xarray as xr

from ciml_ter.config import config_from_dict, load_config, save_config
from ciml_ter.data.cube import write_zarr
from ciml_ter.errors import ConfigError
from ciml_ter.stages.pipeline import run_pipeline

from _support import RUNTIME, make_cube, run_cli
from world import TINY, true_ter


def _fluxnet_from_truth(cube_path, folder, features_path):
    """One FLUXNET2015 SUBSET_MM file per land pixel of every third row/column, TER = truth."""
    from ciml_ter.stages.features import make_features

    make_features(cube_path, features_path, config_from_dict(TINY), RUNTIME)
    f = xr.open_dataset(features_path, engine="zarr", consolidated=False)
    folder.mkdir()
    rows = []
    for i in range(0, f.lat.size, 2):
        for j in range(0, f.lon.size, 2):
            if not f.land.values[i, j]:
                continue
            site = f"XX-{len(rows):03d}"
            ter = true_ter(f.lst_night.values[:, i, j], f.lai.values[:, i, j], f.soc30.values[:, i, j])
            months = pd.DatetimeIndex(f.time.values)
            pd.DataFrame({"TIMESTAMP": months.strftime("%Y%m").astype(int),
                          "RECO_NT_VUT_REF": ter / months.days_in_month, "NEE_VUT_REF_QC": 1.0}).to_csv(
                folder / f"FLX_{site}_FLUXNET2015_SUBSET_MM_2003-2003_1-4.csv", index=False)
            rows.append({"SITE_ID": site, "LOCATION_LAT": float(f.lat[i]), "LOCATION_LONG": float(f.lon[j]),
                         "IGBP": "GRA"})
    pd.DataFrame(rows).to_csv(folder / "sites.csv", index=False)


def test_run_chains_every_stage_and_resumes(tmp_path):
    ds = make_cube(n_lat=10, n_lon=12, days=365, start="2003-01-01", seed=5)
    write_zarr(ds, tmp_path / "cube.zarr")
    _fluxnet_from_truth(tmp_path / "cube.zarr", tmp_path / "fluxnet", tmp_path / "scratch.zarr")
    w = tmp_path / "work"
    config = config_from_dict({**TINY, "grid": {"res": 1.0}, "predict": {"tile_size": 3, "shap": True},
                               "paths": {"cube": str(tmp_path / "cube.zarr"), "fluxnet": [str(tmp_path / "fluxnet")],
                                         "features": str(w / "features.zarr"), "sites": str(w / "sites.parquet"),
                                         "model": str(w / "model"), "run": str(w / "run"),
                                         "analysis": str(w / "analysis"), "report": str(w / "report.html")}})
    cfg = save_config(config, tmp_path / "c.toml")
    first = run_cli("run", str(cfg))
    assert first.returncode == 0, first.stderr
    for stage in ("features:", "sites:", "causal + train:", "predict:", "analyze:", "report:"):
        assert any(line.startswith(stage) for line in first.stdout.splitlines()), (stage, first.stdout)
    assert "with SHAP" in first.stdout
    html = (w / "report.html").read_text()
    assert ('id="map-dominant-driver"' in html or 'id="text-dominant-driver"' in html) and 'id="table-metrics"' in html
    summary = json.loads((w / "analysis" / "summary.json").read_text())
    assert summary["sites"]["n"] > 0
    assert len(first.stdout.splitlines()) == len(set(first.stdout.splitlines()))  # the report said once
    again = run_cli("run", str(cfg))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("exists, skipped (same config and inputs)") == 5  # all but the report
    assert again.stdout.splitlines()[-1] == "run finished: 1 stage(s) run, 5 skipped as made with this config and inputs"
    # the same [paths] with another config: refused, nothing rewritten; --restart redoes every stage
    before = {p: p.stat().st_mtime_ns for p in w.rglob("*") if p.is_file()}
    other = save_config(config_from_dict({**config.to_dict(), "analysis": {"p_threshold": 0.1}}), tmp_path / "b.toml")
    refused = run_cli("run", str(other))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"error: features: {w / 'features.zarr'} exists but it was made with config hash {config.stable_hash()}, this "
        f"config's is {load_config(other).stable_hash()}; refusing to mix outputs of different configs or inputs: give "
        "other [paths], or run with --restart to redo it"]
    assert {p: p.stat().st_mtime_ns for p in w.rglob("*") if p.is_file()} == before
    redone = run_cli("run", str(other), "--restart")
    assert redone.returncode == 0, redone.stderr
    assert sum(line.startswith(f"{stage}: redoing ") for line in redone.stdout.splitlines()
               for stage in ("features", "sites", "train", "predict", "analyze")) == 5, redone.stdout
    assert json.loads((w / "analysis" / "summary.json").read_text())["made_from"]["config_hash"] == \
        load_config(other).stable_hash()


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no features path: set \\[paths\\] features in the config"):
        run_pipeline(config_from_dict({}), RUNTIME)  # `run` has no --features option to suggest
