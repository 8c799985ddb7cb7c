"""``ciml-ter predict``: TER mean, std, prediction intervals and SHAP for every land pixel and
month, tile by tile.

Rank 0 prepares the run directory (manifest, tile list), hands the unfinished land tiles out
through the MPI queue (``ciml_ter.parallel``), and stitches the tile files into ``ter.nc`` (``tiles.RunDir.stitch``).
Each worker loads the ensemble once, reads its tile from the feature cube, predicts the land
pixels of every month in row batches (``ciml_ter.inference``), adds the intervals of the model's
calibration (``ciml_ter.uncertainty``; none when the model directory has no calibration.json) and
writes the tile atomically.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ciml_ter.config import PipelineConfig
from ciml_ter.data.cube import open_cube
from ciml_ter.errors import InputError
from ciml_ter.files import check_output, fingerprint, output_lock
from ciml_ter.inference import predict_rows
from ciml_ter.device import Device
from ciml_ter.parallel import map_tiles, mpi_rank, under_mpi
from ciml_ter.predictors import igbp_labels, pixel_matrix
from ciml_ter.stages import Runtime, stamp
from ciml_ter.tiles import FLAG_FILL, RunDir, Tile, auto_tile_edge, land_tiles, make_tiles
from ciml_ter.uncertainty import CALIBRATION, level_name, model_calibration, read_calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileJob:
    """Everything a worker needs for one tile (picklable). ``device`` is rank 0's; a worker
    computes on its own rank's GPU of that kind (``Device.for_rank``)."""

    model_dir: str
    features: str
    run_dir: str
    device: Device
    shap: bool
    batch_rows: int
    tile: Tile
    levels: tuple[float, ...] = ()  # prediction intervals from the model's calibration.json


@functools.cache
def _ensemble(model_dir: str, device: Device):
    """The model, loaded and merged once per worker process, its boosters on ``device``."""
    from ciml_ter.ensemble import load_ensemble

    ensemble = load_ensemble(model_dir)
    ensemble.merged_on(device.use())
    return ensemble


@functools.cache
def _calibration(model_dir: str):
    """The model's calibration (``uncertainty.read_calibration``), read once per worker process."""
    return read_calibration(model_dir)[0]


@functools.cache
def _cube(path: str):
    return open_cube(path)


@functools.cache
def _stderr_rows() -> Callable[[str, str], None]:
    """Rows done inside a tile, as plain timed lines in an MPI worker rank's batch log (one
    throttle per process: at most one line every plain_every_s(), whatever the tile)."""
    import sys

    from ciml_ter.progress import timed_lines

    line = timed_lines(f"predict rank {mpi_rank()}", lambda text: print(text, file=sys.stderr, flush=True))
    return lambda tile, text: line(f"tile {tile}: {text}")


def predict_tile(job: TileJob, on_rows: Callable[[str, str], None] | None = None) -> dict:
    """Predict one tile's land pixels for every month and write its file; return timings.
    ``on_rows(tile name, "rows done, rows/s, ETA")`` after each batch (default, under MPI: timed
    lines on stderr)."""
    start = time.perf_counter()
    device = job.device.for_rank()
    ensemble = _ensemble(job.model_dir, device)
    on_rows = on_rows or (_stderr_rows() if under_mpi() else None)
    t = job.tile
    sub = _cube(job.features).isel(lat=slice(t.y0, t.y1), lon=slice(t.x0, t.x1))
    land = np.asarray(sub.land.values).astype(bool)
    spec = ensemble.predictors
    drivers = {f: np.asarray(sub[f].values, dtype=np.float32)[:, land] for f in spec.drivers}  # (months, n_land)
    lat = np.broadcast_to(np.asarray(sub.lat.values, dtype=np.float64)[:, None], land.shape)[land]
    labels = igbp_labels(np.asarray(sub.pft.values)[land], dict(sub.pft.attrs)) if "pft" in sub else None
    months = pd.DatetimeIndex(sub.time.values)
    n_months, n_land = len(months), int(land.sum())
    rows = pixel_matrix(drivers, lat, months, labels, spec)  # (months x n_land, features)
    on_batch = None
    if on_rows is not None:
        from ciml_ter.progress import Rate

        rate = Rate(rows.shape[0])
        on_batch = lambda done, n: on_rows(t.name, rate.text(done))  # noqa: E731
    result = predict_rows(ensemble.merged_on(device), rows, shap=job.shap, batch_rows=job.batch_rows,
                          device=device, on_batch=on_batch)
    if job.shap:
        log.info("tile %s: largest |SHAP sum + base - TER| %.3g g C m-2 month-1", t.name, result.shap_gap)
    empty = np.isnan(rows[:, :len(spec.drivers)]).all(axis=1)  # no driver at all: no estimate

    def grid(values):
        out = np.full((n_months,) + land.shape, np.nan, dtype=np.float32)
        out[:, land] = np.where(empty, np.nan, values).reshape(n_months, n_land)
        return out

    arrays = {"ter": grid(result.ter), "ter_std": grid(result.ter_std)}
    if job.levels:
        calibration = _calibration(job.model_dir)
        groups = np.tile(labels, n_months) if labels is not None else None  # pooled without land cover
        for level in job.levels:
            lower, upper = calibration.interval(level, result.ter, result.ter_std, groups, target="flux")
            arrays[f"ter_lower_{level_name(level)}"] = grid(lower)
            arrays[f"ter_upper_{level_name(level)}"] = grid(upper)
        flag = np.full((n_months,) + land.shape, FLAG_FILL, dtype=np.uint8)
        outside = calibration.outside(rows, ensemble.features)
        flag[:, land] = np.where(empty, FLAG_FILL, outside).reshape(n_months, n_land)
        arrays["extrapolation"] = flag
    if job.shap:
        for k, name in enumerate(ensemble.features):
            arrays[f"shap_{name}"] = grid(result.shap[:, k])
    attrs = {"model_id": ensemble.model_id, "shap_base": np.nan if result.base is None else result.base}
    RunDir(job.run_dir).write_tile(t, arrays, attrs)
    return {"tile": t.name, "rows": int(rows.shape[0]), "seconds": time.perf_counter() - start,
            "pid": os.getpid(), "shap_gap": result.shap_gap}


def _grid(cube) -> dict:
    lat, lon = cube.lat.values, cube.lon.values
    return {"n_lat": int(lat.size), "n_lon": int(lon.size), "lat_first": float(lat[0]),
            "lat_last": float(lat[-1]), "lon_first": float(lon[0]), "lon_last": float(lon[-1])}


def _variables(features: list[str], shap: bool, levels) -> list[str]:
    intervals = [f"ter_{side}_{level_name(a)}" for a in levels for side in ("lower", "upper")]
    return ["ter", "ter_std", *intervals, *(["extrapolation"] if levels else []),
            *([f"shap_{f}" for f in features] if shap else [])]


def _check_months(months: pd.DatetimeIndex, features: Path) -> pd.DatetimeIndex:
    """The cube's time axis as it must be: month starts, consecutive, none missing or repeated."""
    if len(months) == 0:
        raise InputError(f"{features}: the cube has no months to predict")
    starts = months.to_period("M").to_timestamp()
    if not (months == starts).all():
        raise InputError(f"{features}: time must hold month starts (YYYY-MM-01), found "
                         f"{months[months != starts][0]:%Y-%m-%d}")
    expected = pd.date_range(starts.min(), starts.max(), freq="MS")
    problems = []
    for label, wrong in (("missing", expected.difference(months)), ("repeated", months[months.duplicated()])):
        if len(wrong):
            problems.append(f"{label} months {', '.join(f'{m:%Y-%m}' for m in wrong)}")
    if not months.is_monotonic_increasing:
        problems.append("months out of order")
    if problems:
        raise InputError(f"{features}: time must run month by month from {expected[0]:%Y-%m} to "
                         f"{expected[-1]:%Y-%m}; {'; '.join(problems)}")
    return months


@dataclass
class PredictSummary:
    """A finished prediction run: tiles, rows and time, and where ``ter.nc`` is."""

    out: Path
    tiles: int
    ocean_tiles: int
    finished_before: int
    computed: int
    rows: int
    seconds: float
    members: int
    device: str
    workers: int
    shap_gap: float | None
    levels: tuple[float, ...] = ()

    def lines(self) -> list[str]:
        intervals = (f"prediction intervals {', '.join(level_name(a) for a in self.levels)} %" if self.levels
                     else f"no prediction intervals (the model has no {CALIBRATION}: run `ciml-ter evaluate`)")
        return [f"{self.tiles} land tiles ({self.ocean_tiles} ocean tiles skipped): {self.finished_before} finished "
                f"before, {self.computed} computed by {self.workers} worker(s) in {self.seconds:.1f} s "
                f"({self.rows:,} pixel-months, {self.members} models, {self.device}); {intervals}",
                f"wrote {self.out}"]


def made_from(model_id: str, features: Path, config: PipelineConfig) -> dict:
    """The stamp of a run of the model ``model_id`` on the feature cube ``features`` (``stages.stamp``)."""
    return stamp(config, model=model_id, features=fingerprint(features))


def predict(model: Path, features: Path, out: Path, config: PipelineConfig, runtime: Runtime, *,
            shap: bool = False, restart: bool = False) -> PredictSummary | None:
    """Run (or resume) a prediction of the model directory ``model`` on the feature cube
    ``features`` into the run directory ``out``; the summary on rank 0, None on worker ranks.
    The cube is checked against the model before anything is written: its drivers, their units
    and their ranges against the training rows' (``Ensemble.check_cube``). One process at a time
    writes a run directory (``files.output_lock``)."""
    from ciml_ter.ensemble import load_ensemble
    from ciml_ter.parallel import is_root

    if not is_root():
        map_tiles(predict_tile, [])  # serve tiles until rank 0 is done
        return None
    device = runtime.device
    device.xgboost  # noqa: B018 -- refuses an XGBoost without CUDA before any work
    check_output(out, "folder")
    ensemble = load_ensemble(model)
    cube = open_cube(features)
    if "features" not in cube.attrs:
        raise InputError(f"{features}: no 'features' attribute; expected a cube from 'ciml-ter features'")
    ensemble.check_features(json.loads(cube.attrs["features"]), str(features))
    ensemble.check_cube(cube, str(features))
    if ensemble.predictors.igbp_classes and "pft" not in cube:
        raise InputError(f"{features}: model {model} takes IGBP classes (predictors.igbp) but the cube has no "
                         "'pft' land-cover layer; give the cube a 'pft' layer or train with igbp = false")
    months = _check_months(pd.DatetimeIndex(cube.time.values), features)
    with output_lock(out):
        return _predict_tiles(ensemble, cube, months, model, features, out, config, runtime, shap, restart)


def _predict_tiles(ensemble, cube, months: pd.DatetimeIndex, model: Path, features: Path, out: Path,
                   config: PipelineConfig, runtime: Runtime, shap: bool, restart: bool) -> PredictSummary:
    """The run directory's manifest, its unfinished tiles over the MPI queue, then ``ter.nc``."""
    device = runtime.device
    land = np.asarray(cube.land.values).astype(bool)
    rundir = RunDir(out)
    tiles = None if restart else rundir.recorded_tiles()
    if tiles is None:
        from ciml_ter.parallel import launched_world_size

        workers = max(1, launched_world_size() - 1)  # rank 0 only hands tiles out
        tiles = make_tiles(*land.shape, config.predict.tile_size or auto_tile_edge(land, workers))
    with_land, ocean = land_tiles(tiles, land)
    found = model_calibration(model, ensemble.model_id, config.uncertainty.levels)
    levels, calibration_id = (tuple(config.uncertainty.levels), found[1]) if found else ((), None)
    variables = _variables(ensemble.features, shap, levels)
    manifest = rundir.prepare({"config_hash": config.stable_hash(), "model_id": ensemble.model_id,
                               "grid": _grid(cube), "months": [f"{m:%Y-%m}" for m in months],
                               "variables": variables, "device": device.kind, "features_path": str(features),
                               "model_dir": str(model), "tiles": with_land, "ocean_tiles": len(ocean),
                               "calibration_id": calibration_id,
                               "made_from": made_from(ensemble.model_id, features, config)}, restart=restart)
    pending = [t for t in with_land if not rundir.is_finished(t)]
    log.info("%d land tiles (%d ocean tiles skipped); %d already finished, %d to compute",
             len(with_land), len(ocean), len(with_land) - len(pending), len(pending))
    jobs = [TileJob(str(model), str(features), str(out), device, shap, config.predict.batch_rows, t, levels)
            for t in pending]
    started = time.perf_counter()
    finished = [0]

    def tile_done(i, result):
        finished[0] += 1
        runtime.step(finished[0], len(jobs), f"tile {result['tile']} done")

    work = predict_tile  # under MPI each worker rank prints its own timed lines
    if not under_mpi() and runtime.progress is not None:
        work = functools.partial(predict_tile, on_rows=lambda tile, text: runtime.step(
            finished[0], len(jobs), f"tile {tile}: {text}"))
    done = map_tiles(work, jobs, on_done=tile_done)
    seconds = time.perf_counter() - started
    base = None
    if shap and with_land:
        import h5py

        with h5py.File(rundir.tile_path(with_land[0]), "r") as f:
            base = float(f.attrs["shap_base"])
    path = rundir.stitch(with_land, cube.lat.values, cube.lon.values, months, variables, manifest,
                         ensemble.features, base)
    rows = sum(r["rows"] for r in done)
    return PredictSummary(path, len(with_land), len(ocean), len(with_land) - len(pending), len(pending), rows,
                          seconds, len(ensemble.members), device.kind, len({r["pid"] for r in done}),
                          max((r["shap_gap"] for r in done if r["shap_gap"] is not None), default=None), levels)
