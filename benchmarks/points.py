"""Point-extract benchmark: AppEEARS point samples at 300 towers x 20 years -> site-month features.

    python -m benchmarks.points [--quick] [--out DIR]

Writes, into a temporary folder, the AppEEARS results CSVs a FLUXNET site list gets for the
method's products: MOD11A1 (daily LST day/night + QC_Day/QC_Night), MCD43A4 (daily NBAR bands
1, 2, 6 + their mandatory quality) and MCD15A2H (8-day LAI + FparLai_QC), 2000-2019, with the
AppEEARS columns the reader meets (point columns, line/sample, scaled values, fills unscaled, raw
QC words and their ``_bitmask`` columns; the decoded text columns are left out to keep the files
about 0.6 GB), an ABCflux CSV of the towers' months, and the long CSV of SOC. Then times
``sitetable.point_predictors`` (read, match, reduce, build the towers' cube, monthly medians,
NIRv/LSWI, SG envelope + SCVTG, join to the months) end to end, after a warm-up on a small set
(numba compile excluded), and each of its steps in a second pass. Goal (issue 24): <= 30 s on
2 cores. ``--quick``: 10 towers x 2 years (a check that it runs). Writes
benchmarks/results/points-cpu-<date>.json with sizes, versions and the load average.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.common import RESULTS, environment, write_result
from ciml_ter.config import FeaturesConfig
from ciml_ter.device import CPU

GOAL_S = 30.0
BITMASK = np.array([f"0b{w:08b}" for w in range(256)], dtype=object)


def _season(days: pd.DatetimeIndex) -> np.ndarray:
    return np.sin(2 * np.pi * (days.day_of_year.to_numpy() - 100) / 365.0)


def _write(path: Path, columns: dict) -> int:
    pacsv.write_csv(pa.table(columns), path)
    return path.stat().st_size


def _points(sites: pd.DataFrame, days: pd.DatetimeIndex) -> dict:
    n, t = len(sites), len(days)
    return {"Category": np.repeat(sites["site"].to_numpy(), t), "ID": np.repeat(np.arange(n).astype(str), t),
            "Latitude": np.repeat(sites["lat"].to_numpy(), t), "Longitude": np.repeat(sites["lon"].to_numpy(), t),
            "Date": np.tile(days.strftime("%Y-%m-%d").to_numpy(), n), "MODIS_Tile": np.full(n * t, "h18v04")}


def write_extracts(folder: Path, sites: pd.DataFrame, days: pd.DatetimeIndex, rng) -> dict:
    """The three AppEEARS results files and the SOC long CSV; bytes and rows of each."""
    n, t = len(sites), len(days)
    s = np.tile(_season(days), n)
    k = np.repeat(np.arange(n), t)
    sizes = {}
    base = _points(sites, days)
    lst = {**base, "MOD11A1_061_Line_Y_1km": np.full(n * t, 455.0), "MOD11A1_061_Sample_X_1km": np.full(n * t, 1143.0)}
    qc = rng.choice([0, 0, 0, 65, 2, 193], size=n * t)
    day = np.round(14300 + 30 * (k % 20) + 600 * s + rng.normal(0, 40, n * t))
    for name, raw in (("Day", day), ("Night", day - 550)):
        value = (raw.astype(np.float32) * np.float32(0.02))
        value[qc == 2] = 0.0  # not produced: the fill, written 0.0
        lst[f"MOD11A1_061_LST_{name}_1km"] = value
    lst["MOD11A1_061_QC_Day"] = lst["MOD11A1_061_QC_Night"] = qc.astype(np.float64)
    lst["MOD11A1_061_QC_Day_bitmask"] = lst["MOD11A1_061_QC_Night_bitmask"] = BITMASK[qc]
    sizes["MOD11A1"] = (_write(folder / "fluxnet-MOD11A1-061-results.csv", lst), n * t)
    nbar = {**base, "MCD43A4_061_Line_Y_500m": np.full(n * t, 910.0), "MCD43A4_061_Sample_X_500m": np.full(n * t, 2286.0)}
    quality = rng.choice([0, 0, 0, 1, 255], size=n * t)
    for band, mean, amp in ((1, 500, -200), (2, 2800, 1500), (6, 2000, 300)):
        raw = np.round(mean + amp * s + rng.normal(0, 30, n * t)).astype(np.float32) * np.float32(1e-4)
        raw[quality == 255] = 32767.0
        nbar[f"MCD43A4_061_Nadir_Reflectance_Band{band}"] = raw
    for band in (1, 2, 6):
        name = f"MCD43A4_061_BRDF_Albedo_Band_Mandatory_Quality_Band{band}"
        nbar[name] = quality.astype(np.float64)
        nbar[f"{name}_bitmask"] = BITMASK[quality]
    sizes["MCD43A4"] = (_write(folder / "fluxnet-MCD43A4-061-results.csv", nbar), n * t)
    eight = days[(days.day_of_year - 1) % 8 == 0]
    e = len(eight)
    lai = _points(sites, eight)
    lai_qc = rng.choice([0, 0, 0, 96], size=n * e)
    lai["MCD15A2H_061_Lai_500m"] = (np.round(np.clip(20 + 25 * np.tile(_season(eight), n), 0, 100))
                                    .astype(np.float32) * np.float32(0.1))
    lai["MCD15A2H_061_FparLai_QC"] = lai_qc.astype(np.float64)
    lai["MCD15A2H_061_FparLai_QC_bitmask"] = BITMASK[lai_qc]
    sizes["MCD15A2H"] = (_write(folder / "fluxnet-MCD15A2H-061-results.csv", lai), n * e)
    soc = pd.DataFrame([(site, "", var, 10.0 + i % 7, "g kg-1") for i, site in enumerate(sites["site"])
                        for var in ("soc0", "soc10", "soc30")], columns=["site", "date", "variable", "value", "units"])
    soc.to_csv(folder / "soc.csv", index=False)
    return {k: {"bytes": b, "rows": r} for k, (b, r) in sizes.items()}


def write_towers(path: Path, sites: pd.DataFrame, years: list[int]) -> None:
    months = pd.date_range(f"{years[0]}-01-01", f"{years[-1]}-12-01", freq="MS")
    frame = sites.loc[sites.index.repeat(len(months))].reset_index(drop=True)
    frame["year"] = np.tile(months.year, len(sites))
    frame["month"] = np.tile(months.month, len(sites))
    frame["reco"] = 30 + 20 * np.sin(frame["month"] / 2.0)
    frame.rename(columns={"site": "site_name", "lat": "latitude", "lon": "longitude"}).to_csv(path, index=False)


def make_sites(n: int, rng) -> pd.DataFrame:
    return pd.DataFrame({"site": [f"XX-{i:03d}" for i in range(n)], "lat": np.round(rng.uniform(-40, 65, n), 4),
                         "lon": np.round(rng.uniform(-120, 150, n), 4)})


def steps(obs: pd.DataFrame, folder: Path, config: FeaturesConfig) -> dict:
    """Seconds of each step of ``point_predictors``, run one by one."""
    from ciml_ter.data.points.cube import MATCH_KM, point_cube
    from ciml_ter.data.points.extracts import read_points
    from ciml_ter.features import band_features, plan

    out = {}
    start = time.perf_counter()
    files = read_points([str(folder)])
    out["read"] = time.perf_counter() - start
    start = time.perf_counter()
    towers = obs.groupby("site", sort=True)[["lat", "lon"]].first().reset_index()
    cube = point_cube(files, towers, MATCH_KM)
    out["match_reduce_cube"] = time.perf_counter() - start
    start = time.perf_counter()
    plan_ = plan(cube.ds, "points", None, config, CPU)
    band_features(cube.ds, slice(0, 1), plan_, config, np)
    out["features"] = time.perf_counter() - start
    return out


def run_case(root: Path, n_sites: int, years: list[int], seed: int = 0) -> dict:
    """Write one case under ``root`` and time it; the result's figures."""
    from ciml_ter.sitetable import point_predictors, read_observations

    rng = np.random.default_rng(seed)
    sites = make_sites(n_sites, rng)
    days = pd.date_range(f"{years[0]}-01-01", f"{years[-1]}-12-31", freq="D")
    points = root / "points"
    points.mkdir()
    start = time.perf_counter()
    sizes = write_extracts(points, sites, days, rng)
    write_seconds = time.perf_counter() - start
    write_towers(root / "abcflux.csv", sites, years)
    obs, _ = read_observations(abcflux_files=[root / "abcflux.csv"])
    config = FeaturesConfig()
    start = time.perf_counter()
    table, names, report = point_predictors(obs, [str(points)], config=config)
    total = time.perf_counter() - start
    return {"sizes": {"sites": n_sites, "years": len(years), "days": len(days), "files": sizes,
                      "csv_bytes": sum(v["bytes"] for v in sizes.values()), "site_months": len(table),
                      "predictors": len(names)},
            "seconds": {"total": total, "steps": steps(obs, points, config), "writing_the_files": write_seconds},
            "finite_share": float(np.isfinite(table[names].to_numpy(float)).mean()),
            "missing_inputs": {k: len(v) for k, v in report.missing_inputs.items()}}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 towers x 2 years instead of 300 x 20")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    n_sites, years = (10, [2018, 2019]) if args.quick else (300, list(range(2000, 2020)))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"
        warm.mkdir()
        run_case(warm, 3, [2019], seed=1)  # numba compile
        case = Path(tmp) / "case"
        case.mkdir()
        figures = run_case(case, n_sites, years)
    import numba

    result = {**environment("cpu"), "suite": "points", "quick": args.quick, **figures,
              "numba_threads": numba.get_num_threads(), "goal_seconds_2_cores": GOAL_S,
              "load_average_before_after": [list(load_before), list(os.getloadavg())],
              "timing": "total: one call of sitetable.point_predictors (read, match, reduce, cube, features, "
                        "join) after a warm-up on 3 towers x 1 year (numba compile excluded); steps: a second "
                        "pass, step by step",
              "notes": "AppEEARS layout without the decoded text columns (AppEEARS adds them; the reader does "
                       "not parse them); default [features] settings (SG window 61, order 3, 10 iterations)"}
    name = f"points-cpu-{result['date']}{'-quick' if args.quick else ''}"
    path = write_result(args.out, name, result)
    sec = figures["seconds"]
    print(f"points: {n_sites} towers x {len(years)} years ({figures['sizes']['csv_bytes'] / 1e6:.0f} MB of CSV) -> "
          f"{figures['sizes']['site_months']} site-months x {figures['sizes']['predictors']} predictors in "
          f"{sec['total']:.1f} s (goal {GOAL_S:.0f} s; read {sec['steps']['read']:.1f}, cube "
          f"{sec['steps']['match_reduce_cube']:.1f}, features {sec['steps']['features']:.1f}) -> {path}")
    return path


if __name__ == "__main__":
    main()
