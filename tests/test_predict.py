"""Tiled prediction: output against the ensemble on the same rows, ocean skipped, resume."""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ciml_ter.config import save_config
from ciml_ter.errors import InputError
from ciml_ter.ensemble import load_ensemble
from ciml_ter.predictors import pixel_matrix
from ciml_ter.device import Device
from ciml_ter.stages import Runtime
from ciml_ter.stages.predict import predict
from ciml_ter.tiles import RunDir

from _support import RUNTIME, run_cli
from world import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "r"
    summary = predict(world["model"], world["features"], run_dir, world["config"], RUNTIME, shap=True)
    return run_dir, summary


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_summary_counts_tiles_and_skips_ocean(run):
    _, summary = run
    assert summary.tiles == 8 and summary.ocean_tiles == 1 and summary.computed == 8
    assert summary.rows == 12 * (12 * 10 - 16 - 1)  # months x land pixels
    assert 0 <= summary.shap_gap < 1e-2  # largest |SHAP sum + base - TER| over the tiles


def test_output_equals_the_ensemble_on_the_same_rows(world, run):
    run_dir, _ = run
    out = xr.open_dataset(run_dir / "ter.nc", engine="h5netcdf")
    f = xr.open_dataset(world["features"], engine="zarr", consolidated=False)
    ensemble = load_ensemble(world["model"])
    land = world["land"].astype(bool)
    spec = ensemble.predictors
    assert spec.season and spec.climatology and not spec.igbp_classes  # the world's config
    assert spec.antecedent == spec.climatology  # the default ["*"]: every time-varying driver of the cube
    drivers = np.stack([f[name].values[:, land] for name in spec.drivers], axis=-1)  # (months, pixels, d)
    n_months, n_pixels = drivers.shape[:2]
    # the context columns, by hand: season from month and hemisphere, each pixel's mean over the months
    month = pd.DatetimeIndex(f.time.values).month.to_numpy()[:, None]
    lat = np.broadcast_to(f.lat.values[:, None], land.shape)[land][None, :]
    phase = 2 * np.pi * ((month - 0.5) / 12 + 0.5 * (lat < 0))
    clim = np.stack([np.nanmean(f[name].values[:, land].astype(np.float64), axis=0) for name in spec.climatology],
                    axis=-1)  # in float64, as the model does: a float32 mean can cross a split threshold
    # each driver's previous month and mean of the 3 previous months at each pixel (none before the first)
    antecedent = []
    for name in spec.antecedent:
        values = f[name].values[:, land].astype(np.float64)
        prev1 = np.concatenate([np.full((1, n_pixels), np.nan), values[:-1]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window: NaN, as the model has it
            prev3 = np.stack([np.nanmean(values[max(m - 3, 0):m], axis=0) if m else np.full(n_pixels, np.nan)
                              for m in range(n_months)])
        antecedent += [prev1[..., None], prev3[..., None]]
    x = np.concatenate([drivers, np.sin(phase)[..., None], np.cos(phase)[..., None],
                        np.broadcast_to(clim, (n_months, n_pixels, clim.shape[-1])), *antecedent], axis=-1)
    x = x.reshape(-1, len(ensemble.features))
    assert ensemble.features == [*spec.drivers, "season_sin", "season_cos", *[f"clim_{d}" for d in spec.climatology],
                                 *[f"{p}_{d}" for d in spec.antecedent for p in ("prev1", "prev3")]]
    assert "prev1_lswi" in ensemble.features and "prev3_nirv" in ensemble.features
    mean, std = ensemble.predict(x.astype(np.float32))
    np.testing.assert_allclose(out.ter.values[:, land].ravel(), mean, rtol=1e-5)
    np.testing.assert_allclose(out.ter_std.values[:, land].ravel(), std, rtol=1e-4, atol=1e-4)
    assert np.isnan(out.ter.values[:, ~land]).all()
    shap = np.stack([out[f"shap_{name}"].values[:, land].ravel() for name in ensemble.features], axis=1)
    base = out[f"shap_{ensemble.features[0]}"].attrs["shap_base_value"]
    np.testing.assert_allclose(shap.sum(axis=1) + base, mean, atol=2e-3)
    assert out.ter.attrs["units"] == "g C m-2 month-1" and out.attrs["Conventions"] == "CF-1.8"
    assert out.attrs["model_id"] == ensemble.model_id


def test_intervals_contain_the_prediction_and_flag_extrapolation(world, run):
    """ter_lower_90 / ter_upper_90 are ŷ ∓ q √(τ² + κ² (ter_std + s0)²) of the model's
    calibration.json (no land-cover layer in this world: the pooled quantile of the true flux, the
    towers' 5 % random error removed, and the pooled scale), with CF attributes naming the method,
    level and target; extrapolation is 1 exactly where a predictor lies outside its training
    range."""
    from ciml_ter.uncertainty import read_calibration

    run_dir, _ = run
    calibration, calibration_id = read_calibration(world["model"])
    assert json.loads((run_dir / "manifest.json").read_text())["calibration_id"] == calibration_id
    out = xr.open_dataset(run_dir / "ter.nc", engine="h5netcdf", mask_and_scale=False)
    land = world["land"].astype(bool)
    ter, std = out.ter.values[:, land], out.ter_std.values[:, land]
    lower, upper = out.ter_lower_90.values[:, land], out.ter_upper_90.values[:, land]
    assert np.isfinite(lower).all() and (lower <= ter).all() and (ter <= upper).all() and (upper > lower).all()
    assert calibration.flux_pooled["90"] < calibration.pooled["90"]  # the towers' noise is not the map's
    tau, kappa = calibration.scale_pooled["site_bias"], calibration.scale_pooled["spread_factor"]
    assert tau > 0 and kappa > 0  # the towers' sites have biases of their own beside the spread's part
    scale = np.sqrt(tau ** 2 + (kappa * (std.astype(np.float64) + calibration.offset)) ** 2)
    half = calibration.flux_pooled["90"] * scale
    np.testing.assert_allclose(upper - ter, half, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ter - lower, half, rtol=1e-5, atol=1e-4)
    assert np.isnan(out.ter_lower_90.values[:, ~land]).all()
    attrs = out.ter_upper_90.attrs
    assert attrs["units"] == "g C m-2 month-1" and attrs["interval_level"] == 0.9
    assert "split-conformal" in attrs["interval_method"] and "90 %" in attrs["long_name"]
    assert attrs["interval_target"].startswith("true monthly TER")
    flag = out.extrapolation
    assert flag.dtype == np.uint8 and flag.attrs["_FillValue"] == 255 and list(flag.attrs["flag_values"]) == [0, 1]
    assert flag.attrs["flag_meanings"] == "within_training_range outside_training_range"
    assert (flag.values[:, ~land] == 255).all()
    # the rule by hand: the predictor matrix of the map against the training rows' ranges
    ensemble = load_ensemble(world["model"])
    f = xr.open_dataset(world["features"], engine="zarr", consolidated=False)
    lat = np.broadcast_to(f.lat.values[:, None], land.shape)[land]
    x = pixel_matrix({d: f[d].values[:, land] for d in ensemble.predictors.drivers}, lat,
                     pd.DatetimeIndex(f.time.values), None, ensemble.predictors)
    lo = np.array([calibration.ranges[c][0] for c in ensemble.features])
    hi = np.array([calibration.ranges[c][1] for c in ensemble.features])
    outside = ((x < lo) | (x > hi)).any(axis=1).reshape(flag.shape[0], -1)
    np.testing.assert_array_equal(flag.values[:, land], outside.astype(np.uint8))
    assert 0 < outside.mean() < 1  # towers at every third pixel: some pixel-months lie beyond them
    read = RunDir(run_dir).read_output()
    np.testing.assert_array_equal(read.intervals["90"][1][:, land], upper)
    assert np.isnan(read.extrapolation[:, ~land]).all() and set(np.unique(read.extrapolation[:, land])) <= {0.0, 1.0}


def test_a_model_without_calibration_predicts_without_intervals(world, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(world["model"], model)
    (model / "calibration.json").unlink()
    summary = predict(model, world["features"], tmp_path / "r", world["config"], RUNTIME)
    with xr.open_dataset(tmp_path / "r" / "ter.nc", engine="h5netcdf") as out:
        assert set(out.data_vars) == {"ter", "ter_std"}
    assert "no prediction intervals (the model has no calibration.json" in summary.lines()[0]
    other = world["config"].to_dict()
    from ciml_ter.config import config_from_dict

    shutil.copy(world["model"] / "calibration.json", model / "calibration.json")
    wider = config_from_dict({**other, "uncertainty": {"levels": [0.9, 0.95]}})
    with pytest.raises(InputError, match=r"calibration.json: has the levels 90 %, the config asks for 95 %"):
        predict(model, world["features"], tmp_path / "r2", wider, RUNTIME)


def test_rerun_skips_finished_tiles_and_redoes_a_truncated_one(world, run):
    run_dir, _ = run
    first = _sha(run_dir / "ter.nc")
    tile = sorted((run_dir / "tiles").glob("*.h5"))[2]
    with open(tile, "r+b") as fh:
        fh.truncate(100)
    summary = predict(world["model"], world["features"], run_dir, world["config"], RUNTIME, shap=True)
    assert summary.finished_before == 7 and summary.computed == 1
    assert _sha(run_dir / "ter.nc") == first  # bitwise the same output


def test_a_different_model_or_config_is_refused(world, run, tmp_path):
    run_dir, _ = run
    other = world["config"].to_dict()
    from ciml_ter.config import config_from_dict

    changed = config_from_dict({**other, "predict": {**other["predict"], "batch_rows": 7}})
    with pytest.raises(InputError, match="different config_hash"):
        predict(world["model"], world["features"], run_dir, changed, RUNTIME, shap=True)
    with pytest.raises(InputError, match="different variables"):
        predict(world["model"], world["features"], run_dir, world["config"], RUNTIME, shap=False)


def test_feature_mismatch_is_refused(world, tmp_path):
    import shutil

    bad = tmp_path / "bad.zarr"
    shutil.copytree(world["features"], bad)
    ds = xr.open_dataset(bad, engine="zarr", consolidated=False)
    names = json.loads(ds.attrs["features"])
    attrs = {**ds.attrs, "features": json.dumps(names[:-1] + ["other"])}
    ds.close()
    import zarr

    zarr.open_group(bad, mode="r+").attrs.update(attrs)
    with pytest.raises(InputError, match=r"predictors do not match model .*missing Area_NIRv; extra other"):
        predict(world["model"], bad, tmp_path / "r", world["config"], RUNTIME)
    assert not (tmp_path / "r").exists()


def _altered_features(world, path, change):
    """A copy of the world's feature cube with ``change(ds)`` applied (a Dataset in, one out)."""
    with xr.open_dataset(world["features"], engine="zarr", consolidated=False) as ds:
        change(ds.load()).to_zarr(path, consolidated=False)
    return path


def test_the_manifest_records_the_units_and_training_ranges_of_the_drivers(world):
    manifest = load_ensemble(world["model"]).manifest
    assert manifest["feature_units"]["lst_night"] == "K" and manifest["feature_units"]["lai"] == "m2 m-2"
    lo, hi = manifest["feature_ranges"]["lst_night"]
    assert 270 <= lo < hi <= 290  # the world's night LST, uniform in 270..290 K


@pytest.mark.parametrize("units, problem", [
    ("degC", "variable 'lst_night' has units 'degC'; the model was trained on 'K'"),
    ("K", r"variable 'lst_night': 100% of the sampled values lie far outside its training range 2\d\d\.?\d* to "
          r"2\d\d\.?\d* K \(found -?\d.* to \d.*\); check its units and scale")])
def test_a_feature_in_celsius_is_refused_before_anything_is_written(world, tmp_path, units, problem):
    """Night LST in degC (labelled so, or still labelled K): refused, not a map 25 % too low."""
    def celsius(ds):
        ds["lst_night"] = (ds.lst_night - 273.15).assign_attrs(units=units)
        return ds

    bad = _altered_features(world, tmp_path / "celsius.zarr", celsius)
    with pytest.raises(InputError, match=f"celsius.zarr: does not match model .*: {problem}"):
        predict(world["model"], bad, tmp_path / "r", world["config"], RUNTIME)
    assert not (tmp_path / "r").exists()


def test_a_cube_without_a_driver_is_refused_before_anything_is_written(world, tmp_path):
    bad = _altered_features(world, tmp_path / "nolai.zarr", lambda ds: ds.drop_vars("lai"))
    with pytest.raises(InputError, match=r"nolai.zarr: does not match model .*: variable\(s\) lai missing \(the "
                                         r"model .* takes .*lai.*\)$"):
        predict(world["model"], bad, tmp_path / "r", world["config"], RUNTIME)
    assert not (tmp_path / "r").exists()


def test_missing_or_repeated_months_are_refused(world, tmp_path):
    """A cube whose time axis skips a month is refused before any run directory is made."""
    from ciml_ter.stages.predict import _check_months

    with xr.open_dataset(world["features"], engine="zarr", consolidated=False) as ds:
        gappy = ds.isel(time=[0, 1, 3]).load()
    gappy.to_zarr(tmp_path / "gappy.zarr", consolidated=False)
    month = pd.Timestamp(gappy.time.values[1]) + pd.offsets.MonthBegin(1)
    with pytest.raises(InputError, match=f"gappy.zarr: time must run month by month .*missing months {month:%Y-%m}"):
        predict(world["model"], tmp_path / "gappy.zarr", tmp_path / "r", world["config"], RUNTIME)
    assert not (tmp_path / "r").exists()
    twice = pd.DatetimeIndex(["2001-01-01", "2001-02-01", "2001-02-01"])
    with pytest.raises(InputError, match="repeated months 2001-02"):
        _check_months(twice, "f.zarr")
    with pytest.raises(InputError, match="month starts .* found 2001-02-15"):
        _check_months(pd.DatetimeIndex(["2001-01-01", "2001-02-15"]), "f.zarr")


def test_cli_predict_under_mpirun_matches_one_rank(world, run, tmp_path):
    run_dir, _ = run
    cfg = save_config(world["config"], tmp_path / "c.toml")
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("ciml-ter"))
    for n in (2, 3):
        out = tmp_path / f"n{n}"
        result = subprocess.run(["mpirun", "-n", str(n), exe, "predict", "--model", str(world["model"]),
                                 "--features", str(world["features"]), "--out", str(out), "--shap",
                                 "--config", str(cfg)], capture_output=True, text=True, timeout=600,
                                env={**os.environ, **env, "CIML_PROGRESS_EVERY": "0"})
        assert result.returncode == 0, result.stderr
        assert f"computed by {n - 1} worker(s)" in result.stdout
        assert _sha(out / "ter.nc") == _sha(run_dir / "ter.nc")  # the intervals and extrapolation flag too
        with xr.open_dataset(out / "ter.nc", engine="h5netcdf") as ds:
            assert {"ter_lower_90", "ter_upper_90", "extrapolation"} <= set(ds.data_vars)
        # progress inside tiles from the worker ranks, as plain timed lines for batch logs
        inside = [line for line in result.stderr.splitlines() if line.startswith("predict rank ")]
        assert inside and all(re.search(r"tile r\d{4}_c\d{4}: [\d,]+/[\d,]+ rows, [\d,]+ rows/s, ETA ", line)
                              for line in inside), result.stderr
        assert {line.split()[2] for line in inside} <= {str(r) for r in range(1, n)}


def test_rank_killed_mid_run_then_rerun_gives_the_same_output(world, tmp_path):
    """SIGKILL one MPI rank while tiles are being written; the rerun finishes the job, does not
    recompute any finished tile, and the output is bitwise that of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from ciml_ter.config import config_from_dict
    from ciml_ter.tiles import make_tiles

    small_tiles = config_from_dict({**world["config"].to_dict(),
                                    "predict": {"tile_size": 1, "batch_rows": 50}})
    reference = predict(world["model"], world["features"], tmp_path / "ref", small_tiles, RUNTIME, shap=True)
    cfg = save_config(small_tiles, tmp_path / "c.toml")
    out = tmp_path / "killed"
    cmd = ["mpirun", "-n", "3", str(Path(sys.executable).with_name("ciml-ter")), "predict", "--model",
           str(world["model"]), "--features", str(world["features"]), "--out", str(out), "--shap",
           "--config", str(cfg)]
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((out / "tiles").glob("*.sha256"))) < 10:
        assert job.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.02)
    ranks = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert len(ranks) == 3, ranks
    os.kill(int(ranks[-1]), signal.SIGKILL)
    job.communicate(timeout=120)
    assert job.returncode != 0
    assert not (out / "ter.nc").exists()  # nothing presented as complete
    tiles = make_tiles(12, 10, 1)
    run = RunDir(out)
    finished = {t.name: run.tile_path(t).stat().st_mtime_ns for t in tiles if run.is_finished(t)}
    assert 10 <= len(finished) < reference.tiles
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{len(finished)} finished before, {reference.tiles - len(finished)} computed" in result.stdout
    for name, mtime in finished.items():  # no finished tile was recomputed
        assert (out / "tiles" / f"{name}.h5").stat().st_mtime_ns == mtime
    assert _sha(out / "ter.nc") == _sha(tmp_path / "ref" / "ter.nc")


@pytest.mark.gpu
def test_gpu_run_equals_the_cpu_run(world, run, tmp_path):
    """predict --device cuda (merged boosters on the rank's GPU) writes the CPU's maps to float32
    tolerance: mean, std and every SHAP layer."""
    cpu_dir, _ = run
    summary = predict(world["model"], world["features"], tmp_path / "g", world["config"],
                      Runtime(Device.resolve("cuda")), shap=True)
    assert summary.device == "cuda" and summary.shap_gap < 1e-2
    cpu = xr.open_dataset(cpu_dir / "ter.nc", engine="h5netcdf")
    gpu = xr.open_dataset(tmp_path / "g" / "ter.nc", engine="h5netcdf")
    for name in cpu.data_vars:
        np.testing.assert_allclose(gpu[name].values, cpu[name].values, rtol=1e-4, atol=2e-3, equal_nan=True,
                                   err_msg=name)


def test_cli_progress_inside_tiles_in_a_batch_log(world, tmp_path):
    """Not a terminal (a batch log): plain lines with the elapsed time, tiles done, and rows,
    rows/s and ETA inside the tile being computed."""
    cfg = save_config(world["config"], tmp_path / "c.toml")
    result = run_cli("predict", "--model", str(world["model"]), "--features", str(world["features"]),
                     "--out", str(tmp_path / "r"), "--config", str(cfg), "--device", "cpu",
                     env={"CIML_PROGRESS_EVERY": "0"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(re.fullmatch(r"predict \[\d+ s\] \d+/8 tile r\d{4}_c\d{4}: [\d,]+/[\d,]+ rows, [\d,]+ rows/s, "
                            r"ETA (\d+ s|unknown)", line) for line in lines), lines
    assert any(re.fullmatch(r"predict \[\d+ s\] 8/8 tile r\d{4}_c\d{4} done", line) for line in lines), lines
