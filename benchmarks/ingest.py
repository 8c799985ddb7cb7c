"""Ingest benchmark: one 500 m MODIS sinusoidal tile binned onto a 0.05 deg lat/lon window.

    python -m benchmarks.ingest [--device cuda] [--quick] [--out DIR]

The 2400 x 2400 tile h18v04 (463 m pixels, 10 % NaN) is binned to the 0.05 deg window that
covers it by ``kernels.bin_sinusoidal`` (numba CPU, all threads and one; warm, best of 7) and by
a NumPy reference timed in the same run (the same forward mapping vectorised over every pixel,
then ``np.bincount`` for the sums, valid and seen counts; best of 3); the two are compared. A
global daily 500 m product is estimated as 300 land tiles x the time per tile. ``--device
cuda`` adds the CUDA kernel on CuPy arrays already on the GPU (best of 20 synchronised calls);
without it there is no GPU figure. Goals (issue 13): >= 10x the reference and a global day in
<= 2 min on 2 cores. ``--quick``: a 600 x 600 block (a check that it runs). Writes
benchmarks/results/ingest-<device>-<date>.json; the load average is recorded because a shared
machine slows both sides.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numba
import numpy as np

from benchmarks.common import RESULTS, environment, timed, write_result
from ciml_ter.device import Device
from ciml_ter.grid import GridWindow
from ciml_ter.kernels import AUTHALIC_RADIUS_M, SinusoidalTile, bin_sinusoidal

TILE_M = 1111950.5197665  # MODIS tile width, m
X0, Y0 = -20015109.354, 10007554.677  # upper-left corner of tile h00v00, m
H, V = 18, 4
RES = 0.05  # deg
MISSING_SHARE = 0.1
LAND_TILES = 300  # tiles of a global daily 500 m land product


def tile_values(n: int, seed: int = 0) -> np.ndarray:
    """(n, n) float32 reflectance-like values, ``MISSING_SHARE`` of them NaN."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 0.6, (n, n)).astype(np.float32)
    values[rng.random((n, n)) < MISSING_SHARE] = np.nan
    return values


def centre_lat_lon(tile: SinusoidalTile, n: int):
    """Latitude (n,) of each row and longitude (n, n) of each pixel centre, degrees."""
    x = tile.ul_x_m + (np.arange(n) + 0.5) * tile.pixel_m
    lat = (tile.ul_y_m - (np.arange(n) + 0.5) * tile.pixel_m) / tile.radius_m
    return np.degrees(lat), np.degrees(x[None, :] / (tile.radius_m * np.cos(lat))[:, None])


def covering_window(tile: SinusoidalTile, n: int, res: float) -> GridWindow:
    """The window of ``res`` cells (on multiples of res) holding every pixel centre."""
    lat, lon = centre_lat_lon(tile, n)
    north, south = math.ceil(lat.max() / res) * res, math.floor(lat.min() / res) * res
    west, east = math.floor(lon.min() / res) * res, math.ceil(lon.max() / res) * res
    return GridWindow(north, west, res, round((north - south) / res), round((east - west) / res))


def numpy_reference(values, tile: SinusoidalTile, window: GridWindow):
    """Sums, valid and seen counts by a vectorised forward mapping and np.bincount."""
    lat, lon = centre_lat_lon(tile, values.shape[0])
    lon[lon == 180.0] = -180.0
    i = np.floor((window.north - lat) / window.res).astype(np.int64)
    j = np.floor((lon - window.west) / window.res).astype(np.int64)
    inside = (np.abs(lon) <= 180) & (j >= 0) & (j < window.n_lon) & ((i >= 0) & (i < window.n_lat))[:, None]
    cell = (i[:, None] * window.n_lon + j)[inside]
    v = values[inside]
    ok = ~np.isnan(v)
    size = window.n_lat * window.n_lon
    return (np.bincount(cell[ok], weights=v[ok], minlength=size).reshape(window.shape),
            np.bincount(cell[ok], minlength=size).reshape(window.shape),
            np.bincount(cell, minlength=size).reshape(window.shape))


def bench_gpu(values, tile, window, cpu) -> dict:
    """Seconds per tile of the CUDA kernel on CuPy arrays, and its agreement with the CPU."""
    import cupy as cp

    on_gpu = cp.asarray(values)

    def run():
        out = bin_sinusoidal(on_gpu, tile, window)
        cp.cuda.Device().synchronize()
        return out

    run()
    seconds, out = timed(run, 20)
    return {"kernel_seconds": seconds, "pixels_per_s": values.size / seconds,
            "global_daily_seconds": LAND_TILES * seconds,
            "counts_equal_cpu": bool((out.n_seen.get() == cpu.n_seen).all()
                                     and (out.n_valid.get() == cpu.n_valid).all()),
            "max_abs_diff_sums_cpu": float(np.abs(out.sums.get() - cpu.sums).max())}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda adds the GPU kernel")
    parser.add_argument("--quick", action="store_true", help="a 600 x 600 block instead of the whole tile")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    device = Device.resolve(args.device).kind
    n = 600 if args.quick else 2400
    tile = SinusoidalTile(X0 + H * TILE_M, Y0 - V * TILE_M, TILE_M / 2400, AUTHALIC_RADIUS_M)
    window = covering_window(tile, n, RES)
    values = tile_values(n)
    load_before = os.getloadavg()
    bin_sinusoidal(values, tile, window)  # compile
    kernel_s, got = timed(lambda: bin_sinusoidal(values, tile, window), 7)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one_thread_s = timed(lambda: bin_sinusoidal(values, tile, window), 7)[0]
    finally:
        numba.set_num_threads(threads)
    reference_s, (sums, n_valid, n_seen) = timed(lambda: numpy_reference(values, tile, window), 3)
    assert n_seen.sum() == values.size, "the window must hold the whole tile"
    gpu = bench_gpu(values, tile, window, got) if device == "cuda" else None
    result = {
        **environment(device), "suite": "ingest", "quick": args.quick,
        "sizes": {"tile": f"h{H:02d}v{V:02d}", "pixels": values.size, "pixel_m": tile.pixel_m,
                  "missing_share": MISSING_SHARE, "window_res_deg": RES, "window_cells": list(window.shape),
                  "land_tiles_per_day": LAND_TILES},
        "numba_threads": threads,
        "timing": "kernel: best of 7 warm calls (compile excluded), output allocation included; "
                  "reference: best of 3; GPU: best of 20 synchronised calls, data already on the GPU",
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "seconds": {"kernel": kernel_s, "kernel_1_thread": one_thread_s, "numpy_reference": reference_s},
        "pixels_per_s": {"kernel": values.size / kernel_s, "kernel_1_thread": values.size / one_thread_s,
                         "numpy_reference": values.size / reference_s},
        "ratio_vs_numpy_reference": reference_s / kernel_s,
        "global_daily_seconds": {"kernel": LAND_TILES * kernel_s, "numpy_reference": LAND_TILES * reference_s},
        "goals": {"ratio_vs_numpy_reference": 10, "global_daily_seconds_2_cores": 120},
        "counts_equal_reference": bool((got.n_seen == n_seen).all() and (got.n_valid == n_valid).all()),
        "max_abs_diff_sums_reference": float(np.abs(got.sums - sums).max()),
        "gpu": gpu or "none: run with --device cuda where CuPy sees a GPU",
        "notes": "reference = forward mapping of every pixel centre with NumPy (lat = y / R, lon = x / "
                 "(R cos lat)) + np.bincount; global day = 300 tiles x one tile's time, reading excluded",
    }
    name = f"ingest-{device}-{result['date']}{'-quick' if args.quick else ''}"
    path = write_result(args.out, name, result)
    rate = result["pixels_per_s"]
    print(f"ingest: {n} x {n} pixels of {tile.pixel_m:.1f} m -> {RES} deg window {window.shape}, "
          f"{threads} numba threads, load average {load_before[0]:.1f}")
    print(f"{'':22}{'s / tile':>10}{'Mpixel/s':>10}{'global day (s)':>16}")
    for label, key in (("bin_sinusoidal", "kernel"), ("  one thread", "kernel_1_thread"),
                       ("numpy reference", "numpy_reference")):
        seconds = result["seconds"][key]
        print(f"{label:22}{seconds:>10.4f}{rate[key] / 1e6:>10.1f}{LAND_TILES * seconds:>16.1f}")
    if gpu:
        print(f"{'CUDA kernel':22}{gpu['kernel_seconds']:>10.4f}{gpu['pixels_per_s'] / 1e6:>10.1f}"
              f"{gpu['global_daily_seconds']:>16.1f}")
    else:
        print(f"{'CUDA kernel':22}  none (run with --device cuda where CuPy sees a GPU)")
    print(f"ratio vs numpy reference: {result['ratio_vs_numpy_reference']:.1f}x (goal 10x); counts equal: "
          f"{result['counts_equal_reference']} -> {path}")
    return path


if __name__ == "__main__":
    main()
