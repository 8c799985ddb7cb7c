"""CF cube ingest benchmark: ``ciml-ter ingest`` of a CF NetCDF cube against a plain xarray copy.

    python -m benchmarks.ingest_cube [--quick] [--out DIR]

A CF NetCDF cube that meets the input contract (daily nir, red, swir1, lst_day, lst_night; 8-day
lai, ci, pv, npv, bs; static soc0, soc10, soc30, land; random values) is written with h5netcdf
and then (1) ingested by the stage (``stages.ingest.ingest``, CPU, at the cube's own 0.5 deg
resolution: units checked, block means, ``<var>_count`` layers, inventory, consolidated
metadata) and (2) copied by a plain ``xr.open_dataset(...).to_zarr(...)``; both best of 3 into
fresh stores, the ingest's per-process caches (the opened cube, the files' SHA-256) cleared
before each run so that both open and read the file every time. Sizes: the case of issue 26
(10 x 10 cells, 822 days: 371 s before the cube was read by blocks of dates) and a 100 x 100
cube of the same length. Goals (issue 26): the issue's case in <= 5 s and ingest at >= 0.5x the
speed of the plain copy (``ratio`` = plain seconds / ingest seconds). ``--quick``: 10 x 10 cells,
60 days (a check that it runs). Writes benchmarks/results/ingest-cube-cpu-<date>.json with the
load average before and after: a shared machine slows both sides.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from benchmarks.common import RESULTS, environment, timed, write_result

RES = 0.5  # deg
DAILY = {"nir": (0.2, 0.5, "1"), "red": (0.02, 0.1, "1"), "swir1": (0.1, 0.3, "1"),
         "lst_day": (280.0, 310.0, "K"), "lst_night": (270.0, 290.0, "K")}
EIGHT_DAY = {"lai": (0.0, 5.0, "m2 m-2"), "ci": (0.4, 0.9, "1"), "pv": (0.0, 0.5, "1"),
             "npv": (0.0, 0.3, "1"), "bs": (0.0, 0.2, "1")}
STATIC = {"soc0": (5.0, 50.0, "g kg-1"), "soc10": (5.0, 40.0, "g kg-1"), "soc30": (2.0, 30.0, "g kg-1")}


def cf_cube(n_lat: int, n_lon: int, days: int, seed: int = 0) -> xr.Dataset:
    """A contract cube of ``days`` daily and days // 8 8-day dates on a 0.5 deg grid from 10 N, 5 W."""
    rng = np.random.default_rng(seed)
    lat = 10.0 - RES * (np.arange(n_lat) + 0.5)
    lon = -5.0 + RES * (np.arange(n_lon) + 0.5)
    time = pd.date_range("2003-01-01", periods=days, freq="D")
    time8 = pd.date_range("2003-01-01", periods=max(1, days // 8), freq="8D")
    variables = {}
    for table, dims, n in ((DAILY, ("time", "lat", "lon"), days), (EIGHT_DAY, ("time8", "lat", "lon"), time8.size),
                           (STATIC, ("lat", "lon"), None)):
        shape = (n_lat, n_lon) if n is None else (n, n_lat, n_lon)
        for name, (low, high, units) in table.items():
            variables[name] = xr.Variable(dims, rng.uniform(low, high, shape).astype(np.float32), {"units": units})
    variables["land"] = xr.Variable(("lat", "lon"), np.ones((n_lat, n_lon), np.uint8))
    return xr.Dataset(variables, coords={"time": time, "time8": time8, "lat": lat, "lon": lon})


def bbox_of(ds: xr.Dataset) -> tuple[float, float, float, float]:
    """W, S, E, N of the cube's cells."""
    return (float(ds.lon[0]) - RES / 2, float(ds.lat[-1]) - RES / 2, float(ds.lon[-1]) + RES / 2,
            float(ds.lat[0]) + RES / 2)


def measure(folder: Path, n_lat: int, n_lon: int, days: int, repeats: int) -> dict:
    """Seconds of the plain copy and of the ingest of one cube, and what the ingest wrote."""
    from ciml_ter.config import config_from_dict
    from ciml_ter.data import cube
    from ciml_ter.data.products import inventory
    from ciml_ter.device import CPU
    from ciml_ter.stages import Runtime
    from ciml_ter.stages.ingest import ingest

    ds = cf_cube(n_lat, n_lon, days)
    source = folder / f"cube-{n_lat}x{n_lon}x{days}.nc"
    ds.to_netcdf(source, engine="h5netcdf")
    config = config_from_dict({"grid": {"bbox": list(bbox_of(ds))}, "ingest": {"res": RES, "landcover": ""}})

    def fresh(name: str) -> Path:
        out = folder / name
        shutil.rmtree(out, ignore_errors=True)
        return out

    def plain():
        with warnings.catch_warnings():  # zarr: consolidated metadata are not in the v3 spec yet
            warnings.filterwarnings("ignore", "Consolidated metadata is currently not part")
            xr.open_dataset(source, engine="h5netcdf").to_zarr(fresh("plain.zarr"))

    def staged():
        inventory._open_input_cube.cache_clear()
        cube._sha256.cache_clear()
        return ingest([source], fresh("ingest.zarr"), config, Runtime(CPU))

    plain_s, _ = timed(plain, repeats)
    ingest_s, summary = timed(staged, repeats)
    written = xr.open_zarr(folder / "ingest.zarr")  # consolidated: no warning
    same = bool(np.allclose(written.lst_day.values, ds.lst_day.values)
                and np.array_equal(written.time.values, ds.time.values))
    return {"cells": [n_lat, n_lon], "days": days, "dates_8day": int(ds.sizes["time8"]),
            "variables": len(ds.data_vars), "input_bytes": source.stat().st_size,
            "plain_seconds": plain_s, "ingest_seconds": ingest_s, "ratio": plain_s / ingest_s,
            "dates_written": len(summary.dates_written), "values_equal_input": same}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 x 10 cells, 60 days")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    cases = [(10, 10, 60)] if args.quick else [(10, 10, 822), (100, 100, 822)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ingest-cube-") as tmp:
        runs = [measure(Path(tmp), *case, repeats=1 if args.quick else 3) for case in cases]
    result = {
        **environment("cpu"), "suite": "ingest_cube", "quick": args.quick,
        "timing": "best of 3 runs each (1 with --quick) into fresh stores; the ingest's caches of the opened "
                  "cube and of file checksums cleared before each run",
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "runs": runs,
        "goals": {"issue_case_seconds": 5.0, "ratio": 0.5},
        "notes": "ratio = plain xarray open_dataset + to_zarr seconds / ingest seconds (>= 0.5: ingest at least "
                 "half the speed of the plain copy); the ingest also checks units, writes a <var>_count layer "
                 "per variable, the per-file inventory and consolidated metadata",
    }
    path = write_result(args.out, f"ingest-cube-cpu-{result['date']}{'-quick' if args.quick else ''}", result)
    print(f"ingest of a CF cube vs plain xarray copy, load average {load_before[0]:.1f}")
    print(f"{'cells x days':>16}{'plain (s)':>11}{'ingest (s)':>12}{'ratio':>8}")
    for run in runs:
        shape = f"{run['cells'][0]}x{run['cells'][1]}x{run['days']}"
        print(f"{shape:>16}{run['plain_seconds']:>11.3f}{run['ingest_seconds']:>12.3f}{run['ratio']:>8.2f}")
    print(f"goals: <= 5 s for 10x10x822, ratio >= 0.5 -> {path}")
    return path


if __name__ == "__main__":
    main()
