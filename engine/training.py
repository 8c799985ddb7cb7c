"""Training the TER ensemble: site-grouped folds, XGBoost parameters, members in parallel.

One member per (fold, seed): fold k is trained on the sites outside fold k, with an early-
stopping split that is also a set of whole sites, XGBoost ``hist`` with the config's
parameters and the causal ``feature_weights`` (which only act because colsample_* < 1).
Members are trained in parallel processes (``config.train.workers``, 0 = one per core) with
``nthread`` chosen so that workers x nthread <= cores, or in threads sharing the GPU. Folds are
always over all sites, whatever the PFT; too few sites for the folds is an InputError naming a
--folds value that works. The model directory is written through ``ensemble`` (save/load).
"""
from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.config import PipelineConfig, config_from_dict
from ciml_ter.ensemble import Ensemble, load_ensemble, save_manifest, save_member
from ciml_ter.errors import InputError
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import TARGET, SiteTable
from ciml_ter.units import TER_UNITS

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- folds
MIN_TRAINING_SITES = 2  # sites each fold's members train on (one of them held for early stopping)


def _folds_leave_enough(n_sites: int, n_folds: int) -> bool:
    """Whether every fold's complement keeps MIN_TRAINING_SITES sites (folds dealt round-robin)."""
    return n_folds <= n_sites and n_sites - -(-n_sites // n_folds) >= MIN_TRAINING_SITES


def assign_folds(sites, n_folds: int, seed: int = 0, source: str = "<table>") -> dict[str, int]:
    """Seeded shuffle of the unique sites, dealt round-robin into ``n_folds`` folds; InputError
    naming a --folds value that works when ``n_folds`` does not fit the sites."""
    unique = np.array(sorted(set(map(str, sites))))
    n = len(unique)
    if n < MIN_TRAINING_SITES + 1:
        raise InputError(f"{source}: cross-validation grouped by site needs at least {MIN_TRAINING_SITES + 1} "
                         f"sites ({MIN_TRAINING_SITES} to train on, 1 held out), found {n}")
    if not _folds_leave_enough(n, n_folds):
        working = [k for k in range(2, n + 1) if _folds_leave_enough(n, k)]
        best = min(working, key=lambda k: abs(k - n_folds))
        raise InputError(f"{source}: {n_folds} folds grouped by site do not fit {n} sites (each fold must "
                         f"hold at least one site and leave {MIN_TRAINING_SITES} to train on); "
                         f"use --folds {best}")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {str(unique[i]): int(k % n_folds) for k, i in enumerate(order)}


def validation_sites(train_sites: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Whole sites held out of a training set for early stopping (at least one)."""
    unique = np.unique(train_sites)
    n = min(max(1, round(share * len(unique))), len(unique) - 1)
    return rng.choice(unique, size=n, replace=False)


# --------------------------------------------------------------------------- training
def xgb_params(config: PipelineConfig, seed: int, nthread: int, device: str) -> dict:
    """The booster parameters (DESIGN.md section 4 via ``config.xgboost``)."""
    c = config.xgboost
    return {"objective": "reg:squarederror", "eval_metric": "rmse", "tree_method": c.tree_method,
            "learning_rate": c.learning_rate, "max_depth": c.max_depth,
            "min_child_weight": c.min_child_weight, "gamma": c.gamma, "subsample": c.subsample,
            "colsample_bylevel": c.colsample_bylevel, "colsample_bynode": c.colsample_bynode,
            "seed": int(seed), "nthread": int(nthread), "device": device}


_DATA: dict = {}


def _init_worker(x, y, sites, weights, config_dict, device, nthread):
    _DATA.update(x=x, y=y, sites=sites, weights=weights, config=config_from_dict(config_dict),
                 device=device, nthread=nthread)


def _train_member(task: tuple[int, int, np.ndarray]) -> tuple[int, int, bytes, int, int]:
    """Train one (fold, seed) member in a worker; returns its UBJSON bytes and best iteration."""
    import xgboost as xgb

    fold, seed, train_idx = task
    d = _DATA
    config: PipelineConfig = d["config"]
    rng = np.random.default_rng([config.seed, fold, seed])
    sites = d["sites"][train_idx]
    held = np.isin(sites, validation_sites(sites, config.train.validation_share, rng))
    fit_idx, val_idx = train_idx[~held], train_idx[held]
    kw = {"feature_weights": d["weights"]} if d["weights"] is not None else {}
    dfit = xgb.DMatrix(d["x"][fit_idx], label=d["y"][fit_idx], **kw)
    dval = xgb.DMatrix(d["x"][val_idx], label=d["y"][val_idx])
    params = xgb_params(config, config.seed * 1000 + seed, d["nthread"], d["device"])
    booster = xgb.train(params, dfit, num_boost_round=config.xgboost.num_boost_round,
                        evals=[(dval, "validation")],
                        early_stopping_rounds=config.xgboost.early_stopping_rounds, verbose_eval=False)
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    return fold, seed, bytes(booster.save_raw("ubj")), best, int(booster.num_boosted_rounds())


def training_device(requested: str, n_rows: int, config: PipelineConfig) -> str:
    """"cpu" or "cuda" for training on ``n_rows`` site-months: an explicit "cpu"/"cuda" is kept;
    "auto" takes the GPU only for tables of at least ``train.gpu_min_rows`` rows (below that,
    members trained one after another on the GPU are slower than CPU workers side by side)."""
    from ciml_ter.device import resolve_device

    device = resolve_device(requested)
    if requested in (None, "auto") and device == "cuda" and n_rows < config.train.gpu_min_rows:
        log.info("training on the CPU: %d site-months < train.gpu_min_rows = %d (GPU faster above)",
                 n_rows, config.train.gpu_min_rows)
        return "cpu"
    log.info("training on %s (%d site-months)", device, n_rows)
    return device


def _plan_workers(config: PipelineConfig, device: str, n_tasks: int) -> tuple[int, int]:
    """(parallel members, threads per member): processes on the CPU, threads sharing the GPU."""
    cores = os.cpu_count() or 1
    if device == "cuda":
        return max(1, min(config.train.gpu_workers, n_tasks)), max(1, cores // config.train.gpu_workers)
    workers = config.train.workers or cores
    workers = max(1, min(workers, cores, n_tasks))
    return workers, max(1, cores // workers)


def _versions() -> dict:
    import ciml_ter
    import sklearn
    import xgboost

    return {"ciml_ter": ciml_ter.__version__, "xgboost": xgboost.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "scikit-learn": sklearn.__version__}


def weights_vector(weights: dict[str, float] | None, features: list[str], source: str) -> np.ndarray | None:
    """Feature weights in the order of ``features``; InputError if some feature has none."""
    if weights is None:
        return None
    missing = [f for f in features if f not in weights]
    if missing:
        raise InputError(f"{source}: no causal weight for feature(s) {', '.join(missing)}; "
                         f"rerun `ciml-ter causal` on this table")
    w = np.array([float(weights[f]) for f in features], dtype=np.float32)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError(f"{source}: causal weights must be finite, >= 0 and not all 0, found {w.tolist()}")
    return w


def train_ensemble(table: SiteTable, config: PipelineConfig, out_dir: str | Path,
                   weights: dict[str, float] | None = None, causal_info: dict | None = None,
                   device: str | None = None, progress: ProgressCallback = None,
                   folds: dict[str, int] | None = None) -> Ensemble:
    """Train folds x seeds members, write them and the manifest to ``out_dir``; return the Ensemble.

    ``weights`` (feature -> weight) become the DMatrix ``feature_weights``; None trains the
    plain model. ``folds`` (site -> fold) reuses a fold assignment (baselines on the same folds).
    """
    from ciml_ter.device import xgboost_device, xgboost_has_cuda

    device = training_device(config.device if device is None else device, len(table.frame), config)
    booster_device = xgboost_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_folds, n_seeds = config.train.folds, config.train.seeds
    folds = folds or assign_folds(table.sites, n_folds, config.seed, table.path)
    fold_of_row = np.array([folds[s] for s in table.sites])
    n_folds = max(folds.values()) + 1
    for k in range(n_folds):
        if len(np.unique(table.sites[fold_of_row != k])) < MIN_TRAINING_SITES:
            raise InputError(f"{table.path}: fold {k} leaves fewer than {MIN_TRAINING_SITES} training sites; "
                             f"need more sites or fewer folds")
    w = weights_vector(weights, table.features, "weights")
    tasks = [(k, s, np.flatnonzero(fold_of_row != k)) for k in range(n_folds) for s in range(n_seeds)]
    workers, nthread = _plan_workers(config, device, len(tasks))
    initargs = (table.x, table.y, table.sites, w, config.to_dict(), booster_device, nthread)
    members: list[dict] = []
    started = time.perf_counter()

    def record(result):
        fold, seed, raw, best, n_trees = result
        entry = save_member(out_dir, fold, seed, raw, best, n_trees)
        members.append(entry)
        if progress:
            progress(len(members), len(tasks), f"trained {entry['file']} (best iteration {best})")

    if workers == 1 or device == "cuda":
        _init_worker(*initargs)
        try:  # on the GPU, members share the card from threads (XGBoost releases the GIL)
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                for result in pool.map(_train_member, tasks):
                    record(result)
        finally:
            _DATA.clear()
    else:
        ctx = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                                    initargs=initargs) as pool:
            try:
                for result in pool.map(_train_member, tasks):
                    record(result)
            except concurrent.futures.process.BrokenProcessPool as exc:
                raise RuntimeError("a training worker process died; when calling train_ensemble from a "
                                   "script, guard it with `if __name__ == '__main__':` (workers start "
                                   "by re-importing the main module), or set train.workers = 1") from exc
    members.sort(key=lambda m: (m["fold"], m["seed"]))
    save_manifest(out_dir, {
        "target": TARGET, "units": TER_UNITS,
        "features": list(table.features), "causal": weights is not None,
        "weights": None if w is None else dict(zip(table.features, map(float, w))),
        "causal_info": causal_info, "folds": dict(sorted(folds.items())), "n_folds": n_folds,
        "n_seeds": n_seeds, "members": members, "config": config.to_dict(),
        "config_hash": config.stable_hash(), "versions": _versions(), "device": device,
        "xgboost_device": booster_device, "xgboost_cuda_build": xgboost_has_cuda(),
        "sites_path": table.path, "n_sites": len(folds), "n_samples": len(table.frame),
        "dropped_features": table.dropped_features,
        "train_seconds": round(time.perf_counter() - started, 3), "workers": workers, "nthread": nthread,
    })
    return load_ensemble(out_dir)
