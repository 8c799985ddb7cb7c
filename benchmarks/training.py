"""Training benchmark: the full folds x seeds ensemble on synthetic site-months.

    python -m benchmarks.training [--quick] [--device cpu|cuda] [--workers N]

Default: 10 folds x 20 seeds on 20,000 site-months (200 sites x 100 months) x 26 features,
with the default XGBoost settings (rounds by inner CV, patience 200) and causal-like
feature weights. ``--quick``: 3 folds x 2 seeds on 2,000 site-months, 50 fixed rounds (a smoke run). Writes
benchmarks/results/training-<device>-<date>.json with the device, versions, sizes and seconds.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from ciml_ter.config import PipelineConfig
from benchmarks.common import RESULTS, environment, smoke_rounds
from ciml_ter.sitetable import site_table_from_frame
from ciml_ter.causal import fixed_weights
from ciml_ter.device import Device
from ciml_ter.training import train_ensemble

def synthetic_table(n_sites: int, n_months: int, n_features: int, seed: int = 0):
    """Site-months whose TER depends on 3 of ``n_features`` predictors (others: noise)."""
    rng = np.random.default_rng(seed)
    n = n_sites * n_months
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    site_offset = np.repeat(rng.normal(0, 0.5, n_sites), n_months)
    x[:, 0] += site_offset
    ter = 60 * np.exp(0.4 * x[:, 0]) * (1 + 0.3 * np.tanh(x[:, 1])) + 10 * x[:, 2] + rng.normal(0, 8, n)
    names = [f"x{i:02d}" for i in range(n_features)]
    frame = pd.DataFrame(x, columns=names)
    frame.insert(0, "site", np.repeat([f"B{i:04d}" for i in range(n_sites)], n_months))
    frame.insert(1, "time", np.tile(pd.date_range("2001-01-01", periods=n_months, freq="MS"), n_sites))
    frame.insert(2, "pft", "ALL")
    frame["ter"] = ter
    weights = {f: 0.01 for f in names}
    weights.update({names[0]: 0.5, names[1]: 0.3, names[2]: 0.2})
    return site_table_from_frame(frame, "synthetic", names), weights


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 folds x 2 seeds on 2,000 site-months, 50 fixed rounds")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workers", type=int, default=0, help="training processes (0 = one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    n_sites, n_months, n_features = (20, 100, 26) if args.quick else (200, 100, 26)
    config = PipelineConfig()
    config.predictors.drivers_only()  # the table's columns only
    config.device = args.device
    config.train.workers = args.workers
    config.train.nested_spread = False  # the members' training time, as recorded before nested members
    if args.quick:
        config.train.folds, config.train.seeds = 3, 2
        smoke_rounds(config)
    table, weights = synthetic_table(n_sites, n_months, n_features)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ensemble = train_ensemble(table, config, tmp, Device.resolve(args.device), causal_result=fixed_weights(weights))
        seconds = time.perf_counter() - started
        best = [m["best_iteration"] for m in ensemble.manifest["members"]]
        workers, nthread = ensemble.manifest["workers"], ensemble.manifest["nthread"]
    result = {
        "benchmark": "training", "quick": args.quick, "device": ensemble.manifest["device"],
        **environment(ensemble.manifest["device"]), "workers": workers, "nthread_per_worker": nthread,
        "sizes": {"site_months": n_sites * n_months, "sites": n_sites, "features": n_features,
                  "folds": config.train.folds, "seeds": config.train.seeds,
                  "members": config.train.folds * config.train.seeds},
        "best_iteration": {"mean": float(np.mean(best)), "min": int(min(best)), "max": int(max(best))},
        "seconds": round(seconds, 2), "goal_seconds": 300 if args.device == "cpu" else 60,
        "config_hash": config.stable_hash(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"training-{args.device}-{result['date']}{'-quick' if args.quick else ''}.json"
    path = args.out / name
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"{result['sizes']['members']} members on {n_sites * n_months} site-months x {n_features} "
          f"features: {seconds:.1f} s on {ensemble.manifest['device']} ({workers} workers x {nthread} threads)"
          f" -> {path}")
    return path


if __name__ == "__main__":
    main()
