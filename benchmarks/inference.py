"""Inference benchmark: ensemble prediction and SHAP rows/s on the engine's path, against
shap.TreeExplainer on the same boosters and rows, and the MPI tile queue with 1 vs 2 workers.

    python -m benchmarks.inference [--quick]

Writes benchmarks/results/inference-cpu-<date>.json (device, versions, sizes, seconds, ratios,
and the largest SHAP difference between the two paths).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from benchmarks.common import RESULTS, environment, smoke_rounds, timed
from benchmarks.training import synthetic_table
from ciml_ter.config import PipelineConfig, save_config
from ciml_ter.data.cube import write_zarr
from ciml_ter.ensemble import load_ensemble, merge_members
from ciml_ter.device import CPU
from ciml_ter.inference import predict_rows
from ciml_ter.causal import fixed_weights
from ciml_ter.training import train_ensemble

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def tree_explainer(members, x):
    """Ensemble-mean SHAP values with shap.TreeExplainer, one explainer per member."""
    import shap

    return np.mean([shap.TreeExplainer(m.booster[: m.best_iteration + 1]).shap_values(x) for m in members], axis=0)


def features_cube(path: Path, features: list[str], n: int, months: int, seed: int = 1) -> None:
    """A monthly predictor cube of random values (the training distribution), all land."""
    rng = np.random.default_rng(seed)
    data = {f: (("time", "lat", "lon"), rng.normal(size=(months, n, n)).astype(np.float32), {"units": "1"})
            for f in features}
    data["land"] = (("lat", "lon"), np.ones((n, n), np.uint8), {"units": "1"})
    ds = xr.Dataset(data, coords={"time": np.array([f"2001-{m + 1:02d}-01" for m in range(months)], "datetime64[ns]"),
                                  "lat": np.linspace(50, 40, n), "lon": np.linspace(0, 10, n)},
                    attrs={"features": json.dumps(features)})
    write_zarr(ds, path)


def mpi_predict(model: Path, cube: Path, work: Path, ranks: int, config: Path) -> float:
    """Seconds of tile work reported by ``ciml-ter predict --shap`` under mpirun -n ranks."""
    exe = str(Path(sys.executable).with_name("ciml-ter"))
    result = subprocess.run(["mpirun", "-n", str(ranks), exe, "predict", "--model", str(model), "--features",
                             str(cube), "--out", str(work / f"run{ranks}"), "--shap", "--config", str(config)],
                            capture_output=True, text=True, env={**os.environ, **MPI_ENV}, timeout=1800, check=True)
    return float(re.search(r"worker\(s\) in ([0-9.]+) s", result.stdout).group(1))


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 10x smaller, 50 fixed rounds (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    n_rows, n_ref, grid = (2_000, 200, 24) if args.quick else (20_000, 1_000, 64)
    config = PipelineConfig()
    config.predictors.drivers_only()  # the table's columns only
    config.train.folds, config.train.seeds = (3, 1) if args.quick else (10, 2)
    config.train.nested_spread = False  # inference uses the members only
    if args.quick:
        smoke_rounds(config)
    table, weights = synthetic_table(40 if args.quick else 200, 100, 21)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_ensemble(table, config, work / "model", CPU, causal_result=fixed_weights(weights))
        members = load_ensemble(work / "model").members
        t_merge, merged = timed(lambda: merge_members(members), repeats=1)
        trees = merged.n_trees
        x, _ = synthetic_table(n_rows // 100, 100, 21, seed=9)
        rows = x.x
        t_mean, _ = timed(lambda: predict_rows(merged, rows))
        t_shap, engine = timed(lambda: predict_rows(merged, rows, shap=True), repeats=2)
        t_ref, reference = timed(lambda: tree_explainer(members, rows[:n_ref]), repeats=1)
        difference = float(np.max(np.abs(engine.shap[:n_ref] - reference)))
        features_cube(work / "cube.zarr", table.features, grid, 12)
        config.predict.tile_size = max(4, grid // 8)
        cfg = save_config(config, work / "c.toml")
        t_one = mpi_predict(work / "model", work / "cube.zarr", work, 2, cfg)  # 1 worker
        t_two = mpi_predict(work / "model", work / "cube.zarr", work, 3, cfg)  # 2 workers
    per_row_ref = t_ref / n_ref
    result = {**environment("cpu"), "suite": "inference", "quick": args.quick,
              "sizes": {"rows": n_rows, "features": 21, "members": len(members), "trees_total": trees,
                        "reference_rows": n_ref, "mpi_grid": [grid, grid], "mpi_months": 12},
              "seconds": {"merge_members": t_merge, "predict_mean_std": t_mean, "predict_with_shap": t_shap,
                          "tree_explainer_on_reference_rows": t_ref, "mpi_1_worker": t_one, "mpi_2_workers": t_two},
              "rows_per_s": {"predict": n_rows / t_mean, "shap": n_rows / t_shap,
                             "tree_explainer": n_ref / t_ref},
              "row_trees_per_s": {"predict": n_rows * trees / t_mean, "shap": n_rows * trees / t_shap},
              "ratio_shap_vs_tree_explainer": per_row_ref / (t_shap / n_rows),
              "max_abs_shap_difference": difference,
              "mpi_efficiency_2_workers": t_one / (2 * t_two),
              "notes": "TreeExplainer timed on the first reference_rows rows and scaled per row; "
                       "MPI: mpirun -n 2 (rank 0 hands out tiles, 1 worker) vs -n 3 (2 workers) on "
                       "the same cube, seconds of the tile phase reported by ciml-ter predict --shap."}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"inference-cpu-{result['date']}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rows_per_s", "ratio_shap_vs_tree_explainer",
                                             "max_abs_shap_difference", "mpi_efficiency_2_workers")}, indent=1))
    return path


if __name__ == "__main__":
    main()
