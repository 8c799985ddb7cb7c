"""One global 0.05 deg month through the whole ensemble: TER mean + std, then SHAP.

    python -m benchmarks.global_month [--device cuda] [--pixels 7000000] [--quick]

Trains the full 10 folds x 20 seeds ensemble on synthetic site-months (benchmarks.training's
table, 21 features), draws the month's predictors on the device (about 7 M land pixels x 21
features; CuPy on "cuda"), and times ``predict_rows`` on the device: mean + std of all rows, and
mean + std + SHAP. Goals on one H100: <= 30 s and <= 5 min. Writes
benchmarks/results/global-month-<device>-<date>.json with rows/s and row.trees/s, so other cards
and model sizes compare. ``--quick``: 3 x 1 models and 20,000 pixels (a check that it runs).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, environment
from benchmarks.training import synthetic_table
from ciml_ter.config import PipelineConfig
from ciml_ter.device import get_namespace, resolve_device
from ciml_ter.infer import predict_rows, set_members_device
from ciml_ter.model import load_ensemble, train_ensemble

GLOBAL_LAND_PIXELS = 7_000_000  # land cells of a 7200 x 3600 grid, about


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--pixels", type=int, default=None, help="rows of the month (default 7 M, quick 20,000)")
    parser.add_argument("--quick", action="store_true", help="3 x 1 models, 20,000 pixels")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    xp = get_namespace(device)
    pixels = args.pixels or (20_000 if args.quick else GLOBAL_LAND_PIXELS)
    config = PipelineConfig()
    config.train.folds, config.train.seeds = (3, 1) if args.quick else (10, 20)
    table, weights = synthetic_table(40 if args.quick else 200, 100, 21)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train_ensemble(table, config, Path(tmp) / "model", weights=weights, device=device)
        train_seconds = time.perf_counter() - start
        members = load_ensemble(Path(tmp) / "model").members
    set_members_device(members, device)
    trees = sum(m.best_iteration + 1 for m in members)
    rows = xp.random.default_rng(1).standard_normal((pixels, 21), dtype=xp.float32)  # on the device
    seconds = {"train_ensemble": train_seconds}
    for name, shap in (("mean_std", False), ("mean_std_shap", True)):
        predict_rows(members, rows[:1000], shap=shap, device=device)  # warm-up: load trees on the device
        start = time.perf_counter()
        result = predict_rows(members, rows, shap=shap, batch_rows=config.predict.batch_rows, device=device)
        seconds[name] = time.perf_counter() - start
        assert result.ter.shape == (pixels,)
    result = {**environment(device), "suite": "global_month", "quick": args.quick,
              "sizes": {"pixels": pixels, "features": 21, "members": len(members), "trees_total": trees,
                        "batch_rows": config.predict.batch_rows},
              "seconds": seconds,
              "rows_per_s": {k: pixels / seconds[k] for k in ("mean_std", "mean_std_shap")},
              "row_trees_per_s": {k: pixels * trees / seconds[k] for k in ("mean_std", "mean_std_shap")},
              "goal_seconds_h100": {"mean_std": 30, "mean_std_shap": 300},
              "notes": "predictors drawn on the device; SHAP checked to sum to the prediction in every batch"}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"global-month-{device}-{result['date']}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("sizes", "seconds", "row_trees_per_s")}, indent=1))
    return path


if __name__ == "__main__":
    main()
