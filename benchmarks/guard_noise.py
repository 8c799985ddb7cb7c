"""How noisy is the causal guard's comparison? The inner site-grouped CV of every outer fold,
without causal weights, under several booster seeds.

    python -m benchmarks.guard_noise [--sites S.parquet] [--seeds 3]

The guard (``training._choose_rounds``, through ``training.inner_cv``) keeps a fold's causal weights only when they lower that
CV's MAE by ``causal.guard_margin``. This measures, per outer fold, the spread (max - min, in %
of the mean) of the same CV's MAE across booster seeds (subsample and column sampling): a gain
below that spread is not evidence. Default table: the shipped FLUXNET2015 sample in site-only
mode. Writes benchmarks/results/guard-noise-cpu-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, environment
from ciml_ter.config import PipelineConfig
from ciml_ter.predictors import plan, table_matrix
from ciml_ter.sitetable import TARGET, read_site_table
from ciml_ter.training import assign_folds, inner_cv, inner_splits, xgb_params


def seed_spread(sites_path: Path, n_seeds: int, config: PipelineConfig) -> list[dict]:
    """Per outer fold: the inner-CV MAE (g C m-2 month-1) under each of ``n_seeds`` booster seeds
    and its spread in % of the mean."""
    import xgboost as xgb

    table = read_site_table(sites_path)
    spec = plan(table, config)
    x, y = table_matrix(table.frame, spec), table.frame[TARGET].to_numpy(np.float32)
    folds = assign_folds(table.sites, config.train.folds, config.seed, table.path)
    fold_of_row = np.array([folds[s] for s in table.sites])
    rows = []
    for k in range(config.train.folds):
        train = np.flatnonzero(fold_of_row != k)
        splits = inner_splits(table.sites[train], config.train.inner_folds, config.seed * 1000 + k)
        data = xgb.DMatrix(x[train], label=y[train])
        maes = []
        for seed in range(n_seeds):
            params = xgb_params(config, config.seed * 1000 + seed, 0, "cpu", y[train])
            maes.append(inner_cv(params, data, splits, config)[1])
        rows.append({"fold": k, "inner_mae_by_seed": maes,
                     "spread_percent": float(100 * np.ptp(maes) / np.mean(maes))})
    return rows


def shipped_sample_table(out: Path) -> Path:
    """The shipped FLUXNET2015 sample as a site-only table at ``out``."""
    from ciml_ter.data.flux import SHIPPED_SAMPLE
    from ciml_ter.sitetable import build_site_table, write_site_table

    frame, report = build_site_table([SHIPPED_SAMPLE])
    write_site_table(frame, out, mode=report.mode)
    return out


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=Path, help="site-month table (default: the shipped sample, site-only)")
    parser.add_argument("--seeds", type=int, default=3, help="booster seeds per fold")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    config = PipelineConfig()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.sites or shipped_sample_table(Path(tmp) / "sites.parquet")
        rows = seed_spread(path, args.seeds, config)
    spreads = [r["spread_percent"] for r in rows]
    result = {**environment("cpu"), "benchmark": "guard_noise", "sites": str(args.sites or "shipped sample"),
              "n_seeds": args.seeds, "folds": rows, "median_spread_percent": float(np.median(spreads)),
              "min_spread_percent": float(min(spreads)), "max_spread_percent": float(max(spreads)),
              "guard_margin_percent": 100 * config.causal.guard_margin,
              "seconds": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"guard-noise-cpu-{result['date']}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"inner-CV MAE spread across {args.seeds} seeds: median {result['median_spread_percent']:.1f} %, "
          f"{result['min_spread_percent']:.1f}-{result['max_spread_percent']:.1f} % over {len(rows)} folds; "
          f"guard margin {result['guard_margin_percent']:.1f} %; wrote {path}")
    return path


if __name__ == "__main__":
    main()
