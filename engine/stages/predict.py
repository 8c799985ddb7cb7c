"""``ciml-ter predict``: TER mean, std and SHAP for every land pixel and month, tile by tile.

Rank 0 prepares the run directory (manifest, tile list), hands the unfinished land tiles out
through the MPI queue (``ciml_ter.parallel``), and stitches the tile files into ``ter.nc``.
Each worker loads the ensemble once, reads its tile from the feature cube, predicts the land
pixels of every month in row batches (``ciml_ter.inference``) and writes the tile atomically.
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

from ciml_ter import __version__
from ciml_ter.config import PipelineConfig
from ciml_ter.data.cube import open_cube
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_output
from ciml_ter.inference import predict_rows
from ciml_ter.parallel import map_tiles
from ciml_ter.predictors import igbp_labels, pixel_matrix
from ciml_ter.progress import ProgressCallback
from ciml_ter.tiles import RunDir, Tile, auto_tile_edge, land_tiles, make_tiles
from ciml_ter.units import TER_UNITS

log = logging.getLogger(__name__)
OUTPUT = "ter.nc"


@dataclass(frozen=True)
class TileJob:
    """Everything a worker needs for one tile (picklable)."""

    model_dir: str
    features: str
    run_dir: str
    device: str
    shap: bool
    batch_rows: int
    tile: Tile


@functools.cache
def _ensemble(model_dir: str, device: str):
    """The model, merged once per worker, its boosters on this rank's GPU (or the CPU)."""
    from ciml_ter.device import use_rank_gpu
    from ciml_ter.ensemble import load_ensemble

    if device == "cuda":
        use_rank_gpu()
    ensemble = load_ensemble(model_dir)
    ensemble.merged_on(device)
    return ensemble


@functools.cache
def _cube(path: str):
    return open_cube(path)


# Where this process reports rows done inside a tile: ``sink(tile_name, text)``, set by
# run (the CLI's bar or log lines in-process, timed stderr lines on MPI workers).
_row_sink: Callable[[str, str], None] | None = None


def _stderr_rows(rank: int) -> Callable[[str, str], None]:
    """Plain timed lines for a worker rank's batch log, at most one every plain_every_s()."""
    import sys

    from ciml_ter.progress import timed_lines

    line = timed_lines(f"predict rank {rank}", lambda text: print(text, file=sys.stderr, flush=True))
    return lambda tile, text: line(f"tile {tile}: {text}")


def predict_tile(job: TileJob) -> dict:
    """Predict one tile's land pixels for every month and write its file; return timings."""
    start = time.perf_counter()
    ensemble = _ensemble(job.model_dir, job.device)
    t = job.tile
    sub = _cube(job.features).isel(lat=slice(t.y0, t.y1), lon=slice(t.x0, t.x1))
    land = np.asarray(sub.land.values).astype(bool)
    spec = ensemble.predictors
    drivers = {f: np.asarray(sub[f].values, dtype=np.float32)[:, land] for f in spec.drivers}  # (months, n_land)
    lat = np.broadcast_to(np.asarray(sub.lat.values, dtype=np.float64)[:, None], land.shape)[land]
    labels = igbp_labels(np.asarray(sub.pft.values)[land], dict(sub.pft.attrs)) if spec.igbp_classes else None
    months = pd.DatetimeIndex(sub.time.values)
    n_months, n_land = len(months), int(land.sum())
    rows = pixel_matrix(drivers, lat, months, labels, spec)  # (months x n_land, features)
    on_batch = None
    if _row_sink is not None:
        from ciml_ter.progress import Rate

        rate = Rate(rows.shape[0])
        on_batch = lambda done, n: _row_sink(t.name, rate.text(done))  # noqa: E731
    result = predict_rows(ensemble.merged_on(job.device), rows, shap=job.shap, batch_rows=job.batch_rows,
                          device=job.device, on_batch=on_batch)
    if job.shap:
        log.info("tile %s: largest |SHAP sum + base - TER| %.3g g C m-2 month-1", t.name, result.shap_gap)
    empty = np.isnan(rows[:, :len(spec.drivers)]).all(axis=1)  # no driver at all: no estimate

    def grid(values):
        out = np.full((n_months,) + land.shape, np.nan, dtype=np.float32)
        out[:, land] = np.where(empty, np.nan, values).reshape(n_months, n_land)
        return out

    arrays = {"ter": grid(result.ter), "ter_std": grid(result.ter_std)}
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


def _variables(features: list[str], shap: bool) -> list[str]:
    return ["ter", "ter_std"] + ([f"shap_{f}" for f in features] if shap else [])


def _stitch(rundir: RunDir, tiles: list[Tile], cube, variables: list[str], months, manifest: dict,
            features: list[str], base: float | None) -> Path:
    """Write ``ter.nc`` (CF, NetCDF4) from the tile files, one tile at a time."""
    import h5netcdf

    final = rundir.path / OUTPUT
    n_months, n_lat, n_lon = len(months), cube.lat.size, cube.lon.size
    with atomic_output(final) as tmp, h5netcdf.File(tmp, "w", track_order=True) as f:
        f.dimensions = {"time": n_months, "lat": n_lat, "lon": n_lon}
        days = (months - pd.Timestamp("1970-01-01")).days.to_numpy()
        coords = {"time": (days, {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian",
                                  "standard_name": "time", "long_name": "month start"}),
                  "lat": (cube.lat.values, {"units": "degrees_north", "standard_name": "latitude"}),
                  "lon": (cube.lon.values, {"units": "degrees_east", "standard_name": "longitude"})}
        for name, (values, attrs) in coords.items():
            var = f.create_variable(name, (name,), data=np.asarray(values))
            var.attrs.update(attrs)
        out = {}
        for name in variables:
            var = f.create_variable(name, ("time", "lat", "lon"), dtype="f4", fillvalue=np.float32(np.nan),
                                    chunks=(1, min(n_lat, 512), min(n_lon, 512)))
            var.attrs.update(_cf_attributes(name, base))
            out[name] = var
        for t in tiles:
            arrays = rundir.read_tile(t)
            for name in variables:
                out[name][:, t.y0:t.y1, t.x0:t.x1] = arrays[name]
        f.attrs.update({"Conventions": "CF-1.8", "title": "ciml-ter monthly terrestrial ecosystem "
                        "respiration", "source": f"ciml-ter {__version__}", "model_id": manifest["model_id"],
                        "config_hash": manifest["config_hash"], "features": json.dumps(features),
                        "institution": "ciml-ter", "references": "Zhao & Zhu (2025), "
                        "doi:10.1038/s43247-025-02240-1"})
    return final


def _cf_attributes(name: str, base: float | None) -> dict:
    if name == "ter":
        return {"units": TER_UNITS, "long_name": "terrestrial ecosystem respiration (ensemble mean)"}
    if name == "ter_std":
        return {"units": TER_UNITS, "long_name": "standard deviation of TER across fold means"}
    attrs = {"units": TER_UNITS, "long_name": f"SHAP value of {name[5:]} for TER (ensemble mean)"}
    if base is not None:
        attrs["shap_base_value"] = base
    return attrs


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


def run(model_dir: Path, features: Path, run_dir: Path, config: PipelineConfig,
        shap: bool = False, device: str = "cpu", restart: bool = False,
        progress: ProgressCallback = None) -> dict | None:
    """Run (or resume) a prediction; return a summary on rank 0, None on worker ranks."""
    from ciml_ter.device import resolve_device, xgboost_device
    from ciml_ter.ensemble import load_ensemble
    from ciml_ter.parallel import is_root

    global _row_sink
    if not is_root():
        from mpi4py import MPI

        _row_sink = _stderr_rows(MPI.COMM_WORLD.Get_rank())
        map_tiles(predict_tile, [])  # serve tiles until rank 0 is done
        return None
    device = resolve_device(device)
    xgboost_device(device)  # refuses an XGBoost without CUDA before any work
    ensemble = load_ensemble(model_dir)
    cube = open_cube(features)
    if "features" not in cube.attrs:
        raise InputError(f"{features}: no 'features' attribute; expected a cube from 'ciml-ter features'")
    ensemble.check_features(json.loads(cube.attrs["features"]), str(features))
    if ensemble.predictors.igbp_classes and "pft" not in cube:
        raise InputError(f"{features}: model {model_dir} takes IGBP classes (predictors.igbp) but the cube has no "
                         "'pft' land-cover layer; give the cube a 'pft' layer or train with igbp = false")
    months = _check_months(pd.DatetimeIndex(cube.time.values), features)
    land = np.asarray(cube.land.values).astype(bool)
    rundir = RunDir(run_dir)
    tiles = None if restart else rundir.recorded_tiles()
    if tiles is None:
        from ciml_ter.parallel import launched_world_size

        workers = max(1, launched_world_size() - 1)  # rank 0 only hands tiles out
        tiles = make_tiles(*land.shape, config.predict.tile_size or auto_tile_edge(land, workers))
    with_land, ocean = land_tiles(tiles, land)
    variables = _variables(ensemble.features, shap)
    manifest = rundir.prepare({"config_hash": config.stable_hash(), "model_id": ensemble.model_id,
                            "grid": _grid(cube), "months": [f"{m:%Y-%m}" for m in months],
                            "variables": variables, "device": device, "features_path": str(features),
                            "model_dir": str(model_dir), "tiles": with_land,
                            "ocean_tiles": len(ocean)}, restart=restart)
    pending = [t for t in with_land if not rundir.is_finished(t)]
    log.info("%d land tiles (%d ocean tiles skipped); %d already finished, %d to compute",
             len(with_land), len(ocean), len(with_land) - len(pending), len(pending))
    jobs = [TileJob(str(model_dir), str(features), str(run_dir), device, shap,
                    config.predict.batch_rows, t) for t in pending]
    started = time.perf_counter()
    finished = [0]

    def tile_done(i, result):
        finished[0] += 1
        progress(finished[0], len(jobs), f"tile {result['tile']} done")

    _row_sink = (lambda tile, text: progress(finished[0], len(jobs), f"tile {tile}: {text}")) if progress else None
    try:
        done = map_tiles(predict_tile, jobs, on_done=tile_done if progress else None)
    finally:
        _row_sink = None
    seconds = time.perf_counter() - started
    base = None
    if shap and with_land:
        import h5py

        with h5py.File(rundir.tile_path(with_land[0]), "r") as f:
            base = float(f.attrs["shap_base"])
    path = _stitch(rundir, with_land, cube, variables, months, manifest, ensemble.features, base)
    rows = sum(r["rows"] for r in done)
    return {"out": str(path), "tiles": len(with_land), "ocean_tiles": len(ocean),
            "finished_before": len(with_land) - len(pending), "computed": len(pending),
            "rows": rows, "seconds": seconds, "members": len(ensemble.members), "device": device,
            "workers": len({r["pid"] for r in done}),
            "shap_gap": max((r["shap_gap"] for r in done if r["shap_gap"] is not None), default=None)}
