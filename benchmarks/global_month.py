"""One global 0.05 deg month through the whole ensemble: TER mean + std, then SHAP.

    python -m benchmarks.global_month [--device cuda] [--pixels N] [--budget S] [--quick]

Trains the 10 folds x 20 seeds ensemble on synthetic site-months (benchmarks.training's
table, 21 features) on the CPU, merges it (``ensemble.merge_members``), draws the month's
predictors on the device (every land cell of the 0.05 deg grid x 21 features, 3 % of the
values missing as in real inputs; CuPy on "cuda") and times ``predict_rows``: mean + std of
all rows, then mean + std + SHAP. Each pass is first timed on 65,536 rows; when that
projects the month beyond ``--budget`` seconds the pass is projected, not run (marked so;
one whole batch of millions of rows with SHAP can take minutes). Goals on one H100: <= 30 s and <= 5 min. Writes
benchmarks/results/global-month-<device>-<date>.json with rows/s, row.trees/s and the device
memory high-water mark. ``--quick``: 3 x 1 models of 50 fixed rounds and 20,000 pixels (a
check that it runs).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (RESULTS, DeviceMemoryPeak, environment, global_land_cells, smoke_rounds,
                               write_result)
from benchmarks.training import synthetic_table
from ciml_ter.config import PipelineConfig
from ciml_ter.device import CPU, Device
from ciml_ter.ensemble import MergedEnsemble, load_ensemble, merge_members
from ciml_ter.inference import batch_rows_for, predict_rows
from ciml_ter.causal import fixed_weights
from ciml_ter.training import train_ensemble

N_FEATURES = 21
MISSING_SHARE = 0.03
PROBE_ROWS = 65_536


def trained_model(model_dir: Path, folds: int, seeds: int, note=print, smoke: bool = False
                  ) -> tuple[MergedEnsemble, dict]:
    """Train (CPU workers) and merge the benchmark ensemble; returns it and the timings (s).
    ``note(message)`` hears each step; ``smoke``: few fixed rounds (``common.smoke_rounds``)."""
    config = PipelineConfig()
    if smoke:
        smoke_rounds(config)
    config.predictors.drivers_only()  # the table's columns only
    config.device = "cpu"
    config.train.folds, config.train.seeds = folds, seeds
    config.train.nested_spread = False  # inference uses the members only
    table, weights = synthetic_table(200 if folds * seeds > 3 else 40, 100, N_FEATURES)
    note(f"training {folds} x {seeds} members on {len(table.frame):,} site-months (CPU workers)")
    start = time.perf_counter()
    train_ensemble(table, config, model_dir, CPU, causal_result=fixed_weights(weights))
    seconds = {"train_cpu": time.perf_counter() - start}
    note(f"trained in {seconds['train_cpu']:.1f} s; merging")
    start = time.perf_counter()
    merged = merge_members(load_ensemble(model_dir).members)
    seconds["merge_members"] = time.perf_counter() - start
    note(f"merged {merged.n_trees:,} trees in {seconds['merge_members']:.1f} s")
    return merged, seconds


def month_rows(xp, pixels: int, seed: int = 1):
    """(pixels, 21) float32 predictors on the device of ``xp``, 3 % of the values NaN."""
    rng = xp.random.default_rng(seed)
    rows = rng.standard_normal((pixels, N_FEATURES), dtype=xp.float32)
    rows[rng.random((pixels, N_FEATURES)) < MISSING_SHARE] = xp.nan
    return rows


def _sync(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def time_month(merged: MergedEnsemble, device: Device, pixels: int, budget: float, note=print) -> dict:
    """Seconds for mean + std and for mean + std + SHAP of ``pixels`` rows on ``device``.

    Each pass first times a probe of ``PROBE_ROWS`` rows; when that projects the month beyond
    ``budget`` seconds, the pass is not run and its time is the projection (marked so)."""
    xp = device.xp
    merged.to(device)
    rows = month_rows(xp, pixels)
    _sync(xp)
    out: dict = {"batch_rows": {}, "probe_seconds": {}, "seconds": {}, "projected": {}}
    with DeviceMemoryPeak(device.kind) as memory:
        for name, shap in (("mean_std", False), ("mean_std_shap", True)):
            batch = batch_rows_for(device, N_FEATURES, len(merged.folds), shap)
            out["batch_rows"][name] = batch
            predict_rows(merged, rows[:1000], shap=shap, device=device)  # warm-up: trees onto the device
            probe = min(PROBE_ROWS, pixels)
            start = time.perf_counter()
            predict_rows(merged, rows[:probe], shap=shap, batch_rows=probe, device=device)
            out["probe_seconds"][name] = time.perf_counter() - start
            projected = out["probe_seconds"][name] * pixels / probe
            note(f"{name}: {probe:,} rows in {out['probe_seconds'][name]:.2f} s, the month projects to "
                 f"{projected:.0f} s (budget {budget:.0f} s)")
            if projected > budget:
                out["seconds"][name] = projected
                out["projected"][name] = f"from {probe:,} rows ({out['probe_seconds'][name]:.2f} s)"
                continue
            start = time.perf_counter()
            result = predict_rows(merged, rows, shap=shap, batch_rows=batch, device=device)
            out["seconds"][name] = time.perf_counter() - start
            note(f"{name}: {pixels:,} rows in {out['seconds'][name]:.1f} s")
            if shap:
                out["shap_sum_gap"] = result.shap_gap
            assert result.ter.shape == (pixels,) and np.isfinite(result.ter).all()
    out["device_memory_peak_bytes"] = memory.peak
    out["rows_per_s"] = {k: pixels / v for k, v in out["seconds"].items()}
    out["row_trees_per_s"] = {k: pixels * merged.n_trees / v for k, v in out["seconds"].items()}
    return out


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--pixels", type=int, default=None, help="rows of the month (default: every "
                        "land cell of the 0.05 deg grid; quick: 20,000)")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per pass; see the module doc")
    parser.add_argument("--quick", action="store_true",
                        help="3 x 1 models of 50 fixed rounds, 20,000 pixels (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = Device.resolve(args.device)
    pixels = args.pixels or (20_000 if args.quick else global_land_cells(0.05))
    folds, seeds = (3, 1) if args.quick else (10, 20)
    with tempfile.TemporaryDirectory() as tmp:
        merged, seconds = trained_model(Path(tmp) / "model", folds, seeds, smoke=args.quick)
    timing = time_month(merged, device, pixels, args.budget)
    result = {**environment(device.kind), "suite": "global_month", "quick": args.quick,
              "sizes": {"pixels": pixels, "features": N_FEATURES, "members": merged.n_members,
                        "folds": len(merged.folds), "trees_total": merged.n_trees,
                        "missing_share": MISSING_SHARE},
              **timing, "seconds": {**seconds, **timing["seconds"]},
              "goal_seconds_h100": {"mean_std": 30, "mean_std_shap": 300},
              "notes": "model trained on the CPU and merged (one booster per fold + one for SHAP); "
                       "predictors drawn on the device; SHAP checked to sum to the prediction"}
    path = write_result(args.out, f"global-month-{device.kind}-{result['date']}{'-quick' if args.quick else ''}", result)
    print(json.dumps({k: result[k] for k in ("sizes", "seconds", "row_trees_per_s")}, indent=1))
    return path


if __name__ == "__main__":
    main()
