"""Training the TER ensemble: site-grouped folds, XGBoost parameters, members in parallel.

One member per (fold, seed): fold k is trained on the sites outside fold k. Its number of rounds
is chosen once per fold by site-grouped cross-validation inside those training sites
(``train.inner_folds``, patience ``xgboost.early_stopping_rounds``; or fixed at
``xgboost.num_boost_round`` when the patience is 0), then every seed's member is fitted on all
the fold's training sites with that many rounds: no training site is held back from a member.
XGBoost ``hist`` with the fold's parameters (the config, or per-fold settings from
``ciml-ter tune``) and the causal ``feature_weights`` (which act because colsample_* < 1).
Predictors are ``predictors.plan``'s: the table's drivers plus the context columns.
Members are trained in parallel processes (``config.train.workers``, 0 = one per core) with
``nthread`` chosen so that workers x nthread <= cores, or in threads sharing the GPU. Folds are
always over all sites, whatever the PFT; too few sites for the folds is an InputError naming a
--folds value that works. The model directory is written through ``ensemble`` (save/load).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.config import PipelineConfig, config_from_dict
from ciml_ter.device import Device, xgboost_has_cuda
from ciml_ter.ensemble import Ensemble, load_ensemble, save_manifest, save_member
from ciml_ter.errors import InputError
from ciml_ter.parallel import worker_pool
from ciml_ter.predictors import PredictorSpec, context_driver, plan, table_matrix
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import TARGET, SiteTable
from ciml_ter.units import TER_UNITS

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- folds
MIN_TRAINING_SITES = 2  # sites each fold's members train on (at least one per inner fold)


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
    return deal_sites(unique, n_folds, seed)


def deal_sites(unique: np.ndarray, n_folds: int, seed: int) -> dict[str, int]:
    """Site -> fold: the sorted unique sites, shuffled with ``seed`` and dealt round-robin."""
    order = np.random.default_rng(seed).permutation(len(unique))
    return {str(unique[i]): int(k % n_folds) for k, i in enumerate(order)}


def inner_splits(sites: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Site-grouped (fit rows, held-out rows) index pairs over ``sites`` (at most one fold per site)."""
    unique = np.unique(np.asarray(sites).astype(str))
    n_folds = min(n_folds, len(unique))
    fold_of_site = deal_sites(unique, n_folds, seed)
    fold = np.array([fold_of_site[str(s)] for s in sites])
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_folds)]


# --------------------------------------------------------------------------- training
def gain_scale(config: PipelineConfig, y: np.ndarray) -> float:
    """The split gain of one row's squared gradient under the objective, in which ``xgboost.gamma``
    is given: var(y) for squared error, huber_slope² for pseudo-Huber, 1 for absolute error
    (whose gradients are ±1)."""
    c = config.xgboost
    return {"reg:squarederror": float(np.var(y)), "reg:pseudohubererror": c.huber_slope ** 2,
            "reg:absoluteerror": 1.0}[c.objective]


def xgb_params(config: PipelineConfig, seed: int, nthread: int, device: str, y: np.ndarray) -> dict:
    """The booster parameters (``config.xgboost``) for training target
    ``y``; ``gamma`` is scaled by ``gain_scale``; early stopping watches the MAE."""
    c = config.xgboost
    slope = {"huber_slope": c.huber_slope} if c.objective == "reg:pseudohubererror" else {}
    return {"objective": c.objective, **slope, "eval_metric": "mae",
            "tree_method": c.tree_method, "learning_rate": c.learning_rate, "max_depth": c.max_depth,
            "min_child_weight": c.min_child_weight, "gamma": c.gamma * gain_scale(config, y),
            "reg_lambda": c.reg_lambda, "subsample": c.subsample,
            "colsample_bylevel": c.colsample_bylevel, "colsample_bynode": c.colsample_bynode,
            "seed": int(seed), "nthread": int(nthread), "device": device}


def fold_config(config: PipelineConfig, settings: dict | None, source: str = "fold settings") -> PipelineConfig:
    """``config`` with nested settings (sections, e.g. {"xgboost": {...}}) laid over it."""
    if not settings:
        return config
    merged = config.to_dict()
    for section, values in settings.items():
        merged[section] = {**merged[section], **values}
    return config_from_dict(merged, source)


@dataclass(frozen=True)
class FoldData:
    """The training rows as every worker sees them: the predictor matrix, TER and sites saved once
    as ``.npy`` files in ``folder`` and memory-mapped by each worker (nothing is copied into a
    task, and nothing lives in module state), each fold's feature weights and config, XGBoost's
    device string and the threads per member."""

    folder: str
    weights: dict  # fold -> float32 feature weights (folds trained with causal weights)
    configs: dict  # fold -> PipelineConfig as a dict
    xgboost_device: str
    nthread: int

    @classmethod
    def save(cls, folder: str | Path, x: np.ndarray, y: np.ndarray, sites: np.ndarray, **fields) -> FoldData:
        for name, values in (("x", x), ("y", y), ("sites", np.asarray(sites).astype(str))):
            np.save(Path(folder) / f"{name}.npy", values)
        return cls(str(folder), **fields)

    def array(self, name: str) -> np.ndarray:
        """``x``, ``y`` or ``sites``, memory-mapped read-only."""
        return np.load(Path(self.folder) / f"{name}.npy", mmap_mode="r")

    def config(self, fold: int) -> PipelineConfig:
        return config_from_dict(self.configs[fold])

    def dmatrix(self, rows: np.ndarray, fold: int, weighted: bool = True):
        """The rows of one fold as a DMatrix, with the fold's feature weights when ``weighted``."""
        import xgboost as xgb

        w = self.weights.get(fold) if weighted else None
        kw = {"feature_weights": w} if w is not None else {}
        return xgb.DMatrix(self.array("x")[rows], label=self.array("y")[rows], **kw)


def inner_cv(params: dict, data, splits: list, config: PipelineConfig) -> tuple[int, float]:
    """(rounds, mean held-out MAE at those rounds) of ``xgb.cv`` on DMatrix ``data`` over the
    site-grouped ``splits``, up to ``num_boost_round`` with patience ``early_stopping_rounds``."""
    import xgboost as xgb

    result = xgb.cv(params, data, num_boost_round=config.xgboost.num_boost_round, folds=splits,
                    early_stopping_rounds=config.xgboost.early_stopping_rounds, verbose_eval=False)
    return len(result), float(result["test-mae-mean"].iloc[-1])


def _choose_rounds(task: tuple) -> tuple:
    """Rounds for one fold: site-grouped CV on its training rows, mean held-out MAE, patience
    ``early_stopping_rounds``. A fold with causal weights and ``causal.guard`` is cross-validated
    with and without them and keeps them only when they lower the MAE by at least the fraction
    ``causal.guard_margin`` of the MAE without them. Returns ("rounds", fold,
    rounds, best mean MAE, weights kept, guard record or None)."""
    data, fold, train_idx = task
    config = data.config(fold)
    splits = inner_splits(data.array("sites")[train_idx], config.train.inner_folds, config.seed * 1000 + fold)
    params = xgb_params(config, config.seed * 1000, data.nthread, data.xgboost_device, data.array("y")[train_idx])

    def curve(weighted):
        return inner_cv(params, data.dmatrix(train_idx, fold, weighted), splits, config)

    weighted = data.weights.get(fold) is not None
    rounds, mae = curve(weighted)
    guard = None
    if weighted and config.causal.guard:
        plain_rounds, plain_mae = curve(False)
        margin = config.causal.guard_margin
        guard = {"inner_mae_with": mae, "inner_mae_without": plain_mae, "margin": margin,
                 "kept": mae <= (1 - margin) * plain_mae}
        if not guard["kept"]:
            rounds, mae, weighted = plain_rounds, plain_mae, False
    return "rounds", fold, rounds, mae, weighted, guard


def _train_member(task: tuple) -> tuple:
    """One (fold, seed) member on all the fold's training rows for the fold's rounds, with or
    without the fold's causal weights (a nested member: the rows of neither the fold nor
    ``left_out``); returns ("member", fold, seed, UBJSON bytes, rounds, left_out)."""
    import xgboost as xgb

    data, fold, seed, train_idx, rounds, weighted, left_out = task
    config = data.config(fold)
    params = xgb_params(config, config.seed * 1000 + seed, data.nthread, data.xgboost_device,
                        data.array("y")[train_idx])
    booster = xgb.train(params, data.dmatrix(train_idx, fold, weighted), num_boost_round=rounds, verbose_eval=False)
    return "member", fold, seed, bytes(booster.save_raw("ubj")), rounds, left_out


def _plan_workers(config: PipelineConfig, device: Device, n_tasks: int) -> tuple[int, int]:
    """(parallel members, threads per member): processes on the CPU, threads sharing the GPU."""
    cores = os.cpu_count() or 1
    if device.kind == "cuda":
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


def feature_weights(drivers: dict[str, float], spec: PredictorSpec) -> np.ndarray:
    """XGBoost feature weights (sum 1) in the order of ``spec.features``: each driver its causal
    weight, a driver's context columns (climatology, previous months) the driver's, the season and IGBP
    columns the mean driver weight."""
    missing = [f for f in spec.drivers if f not in drivers]
    if missing:
        raise InputError(f"no causal weight for feature(s) {', '.join(missing)}; rerun `ciml-ter causal` "
                         f"on this table")
    base = np.array([float(drivers[f]) for f in spec.drivers])
    if not np.all(np.isfinite(base)) or np.any(base < 0) or base.sum() <= 0:
        raise InputError(f"causal weights must be finite, >= 0 and not all 0, found {base.tolist()}")
    by_name = dict(zip(spec.drivers, base))
    mean = base.mean()
    w = [by_name.get(f, by_name.get(context_driver(f), mean)) for f in spec.features]
    w = np.asarray(w, dtype=np.float64)
    return (w / w.sum()).astype(np.float32)


def nested_pairs(fold_of_row: np.ndarray, sites: np.ndarray, n_folds: int) -> list[tuple[int, int]]:
    """The fold pairs (f, g), f < g, of the nested members: every pair when there are at least 3
    folds and every pair leaves ``MIN_TRAINING_SITES`` sites, else none (no nested spread)."""
    pairs = [(f, g) for f in range(n_folds) for g in range(f + 1, n_folds)]
    enough = all(len(np.unique(sites[(fold_of_row != f) & (fold_of_row != g)])) >= MIN_TRAINING_SITES
                 for f, g in pairs)
    return pairs if n_folds >= 3 and enough else []


def _rounds_summary(rounds: dict[int, int]) -> dict:
    values = np.array(sorted(rounds.values()))
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return {"by_fold": {str(k): int(v) for k, v in sorted(rounds.items())},
            "min": int(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "max": int(q[4])}


def train_ensemble(table: SiteTable, config: PipelineConfig, out_dir: str | Path, device: Device,
                   causal_result: dict | None = None, progress: ProgressCallback = None, folds: dict[str, int] | None = None,
                   spec: PredictorSpec | None = None, fold_settings: dict[int, dict] | None = None,
                   made_from: dict | None = None) -> Ensemble:
    """Train folds x seeds members, write them and the manifest to ``out_dir``; return the Ensemble.

    The manifest records each driver's units (the table's ``units`` metadata; None where the table
    has none) and its range over the training rows, which ``predict`` checks a feature cube
    against (``Ensemble.check_cube``), and ``made_from`` (the stage's ``stages.stamp``).

    ``device``: where the members train (``Device.for_rows`` with ``train.gpu_min_rows``: with
    "auto", small tables train on CPU workers). Predictors: ``spec`` (default ``predictors.plan(table, config)``). ``causal_result`` (from
    ``causal.discover_weights``) gives each fold's feature weights (``causal.driver_weights`` under
    the fold's config, PFT shares of the fold's training rows); None trains the plain model.
    ``folds`` (site -> fold) reuses a fold assignment; ``fold_settings`` (fold -> nested settings,
    from ``ciml-ter tune``) overrides the config per fold. Each fold's rounds come from
    ``_choose_rounds`` (or are ``num_boost_round`` when ``early_stopping_rounds`` is 0); every
    member is then fitted on all the fold's training sites. With ``causal.guard``, that CV also
    runs without the fold's causal weights, and a fold keeps them only when they beat none by
    ``causal.guard_margin`` on its inner held-out sites (``causal_guard`` in the manifest).
    """
    from ciml_ter.causal import driver_weights, summary

    device = device.for_rows(len(table.frame), config.train.gpu_min_rows)
    booster_device = device.xgboost
    log.info("training on %s (%d site-months; device %r, train.gpu_min_rows %d)", device, len(table.frame),
             device.requested, config.train.gpu_min_rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = spec or plan(table, config)
    n_folds, n_seeds = config.train.folds, config.train.seeds
    folds = folds or assign_folds(table.sites, n_folds, config.seed, table.path)
    fold_of_row = np.array([folds[s] for s in table.sites])
    n_folds = max(folds.values()) + 1
    for k in range(n_folds):
        if len(np.unique(table.sites[fold_of_row != k])) < MIN_TRAINING_SITES:
            raise InputError(f"{table.path}: fold {k} leaves fewer than {MIN_TRAINING_SITES} training sites; "
                             f"need more sites or fewer folds")
    fold_settings = {int(k): v for k, v in (fold_settings or {}).items()}
    configs = {k: fold_config(config, fold_settings.get(k)) for k in range(n_folds)}
    pfts = table.frame["pft"].astype(str).to_numpy()
    weights = {}
    if causal_result is not None:
        for k in (k for k in range(n_folds) if configs[k].train.causal):
            drivers = driver_weights(causal_result, configs[k].causal, pfts[fold_of_row != k])
            weights[k] = feature_weights(drivers, spec)
    x = table_matrix(table.frame, spec, table.path)
    train_rows = {k: np.flatnonzero(fold_of_row != k) for k in range(n_folds)}
    fixed = {k: configs[k].xgboost.num_boost_round for k in range(n_folds)
             if configs[k].xgboost.early_stopping_rounds == 0}
    choose = [(k, train_rows[k]) for k in range(n_folds) if k not in fixed]
    pairs = nested_pairs(fold_of_row, table.sites, n_folds) if config.train.nested_spread else []
    if config.train.nested_spread and not pairs and n_folds >= 3:
        log.warning("no nested members (train.nested_spread): %d folds of %d sites leave too few sites without "
                    "two folds; the towers' spread for the intervals is the other folds'", n_folds, len(folds))
    workers, nthread = _plan_workers(config, device, max(len(choose), (n_folds + len(pairs)) * n_seeds))
    rounds, cv_mae, guards, members, nested = dict(fixed), {}, {}, [], []
    started = time.perf_counter()
    total = len(choose) + (n_folds + len(pairs)) * n_seeds

    def record(result):
        if result[0] == "rounds":
            _, fold, n, mae, weighted, guard = result
            rounds[fold], cv_mae[fold] = n, mae
            if guard is not None:
                guards[fold] = guard
            if not weighted:
                weights.pop(fold, None)
            message = f"fold {fold}: {n} rounds (inner CV MAE {mae:.1f})" + (
                "" if guard is None else f", causal weights {'kept' if guard['kept'] else 'dropped'} (without them "
                f"{guard['inner_mae_without']:.1f})")
        else:
            _, fold, seed, raw, n, left_out = result
            entry = save_member(out_dir, fold, seed, raw, n - 1, n, left_out)
            (members if left_out is None else nested).append(entry)
            message = f"trained {entry['file']} ({n} rounds)"
        if progress:
            progress(len(cv_mae) + len(members) + len(nested), total, message)

    def phases(pool_map, data: FoldData):
        for result in pool_map(_choose_rounds, [(data, k, rows) for k, rows in choose]):
            record(result)
        tasks = [(data, k, s, train_rows[k], rounds[k], k in weights, None) for k in range(n_folds)
                 for s in range(n_seeds)]
        pair_rows = {(f, g): np.flatnonzero((fold_of_row != f) & (fold_of_row != g)) for f, g in pairs}
        tasks += [(data, f, s, pair_rows[f, g], rounds[f], f in weights, g) for f, g in pairs for s in range(n_seeds)]
        for result in pool_map(_train_member, tasks):
            record(result)

    with tempfile.TemporaryDirectory(prefix="ciml-ter-train-") as folder:
        data = FoldData.save(folder, x, table.y, table.sites, weights=dict(weights),
                             configs={k: c.to_dict() for k, c in configs.items()},
                             xgboost_device=booster_device, nthread=nthread)
        with worker_pool(workers, gpu=device.kind == "cuda") as pool:
            try:
                phases(pool.map, data)
            except concurrent.futures.process.BrokenProcessPool as exc:
                raise RuntimeError("a training worker process died; when calling train_ensemble from a "
                                   "script, guard it with `if __name__ == '__main__':` (workers start "
                                   "by re-importing the main module), or set train.workers = 1") from exc
    members.sort(key=lambda m: (m["fold"], m["seed"]))
    nested.sort(key=lambda m: (m["fold"], m["left_out"], m["seed"]))
    c = config.xgboost
    save_manifest(out_dir, {
        "target": TARGET, "units": TER_UNITS,
        "features": spec.features, "predictors": spec.as_dict(), "causal": bool(weights),
        "weights": None if not weights else {str(k): dict(zip(spec.features, map(float, w)))
                                             for k, w in weights.items()},
        "causal_info": None if causal_result is None else summary(causal_result),
        "causal_guard": {str(k): v for k, v in sorted(guards.items())},
        "folds": dict(sorted(folds.items())), "n_folds": n_folds,
        "n_seeds": n_seeds, "members": members, "config": config.to_dict(),
        "nested_members": nested, "nested_rule": (
            "for each pair of folds f < g, n_seeds members trained without the sites of either, with fold f's "
            "rounds, weights and settings: a tower of fold f gets the mean and spread of the K models that never "
            "saw it, fold f's and the K - 1 nested models without f, as a pixel of the map those of the K fold models "
            "(train.nested_spread)" if nested else
            "none: train.nested_spread is off, or fewer than 3 folds, or a pair of folds leaves too few sites"),
        "fold_settings": {str(k): v for k, v in sorted(fold_settings.items())},
        "rounds": {**_rounds_summary(rounds), "inner_cv_mae": {str(k): v for k, v in sorted(cv_mae.items())},
                   "rule": ("fixed: xgboost.num_boost_round" if not cv_mae else
                            f"site-grouped CV on each fold's training sites (train.inner_folds "
                            f"{config.train.inner_folds}, patience {c.early_stopping_rounds}, at most "
                            f"{c.num_boost_round}); members refitted on all the fold's training sites")},
        "config_hash": config.stable_hash(), "versions": _versions(), "device": device.kind,
        "xgboost_device": booster_device, "xgboost_cuda_build": xgboost_has_cuda(),
        "feature_units": {f: table.meta.get("units", {}).get(f) for f in spec.drivers},
        "predictor_sources": {"mode": table.meta.get("mode", "site-only"),
                              **{f: table.meta.get("predictor_sources", {}).get(f) for f in spec.drivers}},
        "feature_ranges": {f: [float(np.nanmin(table.frame[f])), float(np.nanmax(table.frame[f]))]
                           for f in spec.drivers},
        "made_from": made_from,
        "sites_path": table.path, "n_sites": len(folds), "n_samples": len(table.frame),
        "dropped_features": table.dropped_features,
        "train_seconds": round(time.perf_counter() - started, 3), "workers": workers, "nthread": nthread,
    })
    return load_ensemble(out_dir)
