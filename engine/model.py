"""The TER ensemble: site-month table loader, site-grouped folds, training, save/load, predictions.

One member per (fold, seed): fold k is trained on the sites outside fold k, with an early-
stopping split that is also a set of whole sites, XGBoost ``hist`` with the config's
parameters and the causal ``feature_weights`` (which only act because colsample_* < 1).
Members are trained in parallel processes (``config.train.workers``, 0 = one per core) with
``nthread`` chosen so that workers x nthread <= cores.

A saved model directory holds one UBJSON file per member (``fold03_seed07.ubj``) and
``manifest.json`` (features and their order, weights, fold of each site, members with their
best iteration and checksum, config and its hash, library versions; ``model_id`` = hash of the
rest of the manifest). Predictions are the mean over all members (each up to its best
iteration), the std across fold means, and each sample's out-of-fold estimate (the mean over
the seeds of the fold that held its site out).

Input handling (documented decisions):
- the target column ``ter`` is required; rows whose ``ter`` is NaN are dropped (logged);
- a constant target is an InputError;
- predictors: the ``predictors`` list of the ``ciml_ter`` schema metadata (written by
  ``ciml-ter sites``), else every numeric column other than site, lat, lon, pft, time, ter;
- an all-NaN predictor column is dropped with a warning in the log (not an error), and the
  manifest records which features the model uses, so prediction tables must match that list;
- fewer sites than folds is an InputError; folds are always over all sites, whatever the PFT.
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ciml_ter.config import PipelineConfig, config_from_dict
from ciml_ter.errors import InputError
from ciml_ter.documents import read_document
from ciml_ter.infer import MergedEnsemble, Member, merge_members, predict_rows

log = logging.getLogger(__name__)

TARGET = "ter"
ID_COLUMNS = ("site", "lat", "lon", "pft", "time", "ter")
REQUIRED_COLUMNS = ("site", "ter")
MANIFEST = "manifest.json"
FORMAT = "ciml-ter-ensemble/1"

Progress = Callable[[int, int, str], None] | None


# --------------------------------------------------------------------------- site-month table
@dataclass
class SiteTable:
    """A validated site-month table: the frame (sorted by site, time) and its predictor list."""

    frame: pd.DataFrame
    features: list[str]
    path: str = "<table>"
    dropped_features: list[str] = field(default_factory=list)

    @property
    def x(self) -> np.ndarray:
        return self.frame[self.features].to_numpy(dtype=np.float32)

    @property
    def y(self) -> np.ndarray:
        return self.frame[TARGET].to_numpy(dtype=np.float64)

    @property
    def sites(self) -> np.ndarray:
        return self.frame["site"].astype(str).to_numpy()


def read_site_table(path: str | Path) -> SiteTable:
    """Read a site-month Parquet file (ciml_ter.sites.read_site_table) and check it."""
    from ciml_ter.sites import read_site_table as read_parquet

    frame, meta = read_parquet(Path(path))
    return site_table_from_frame(frame, str(path), meta.get("predictors"))


def site_table_from_frame(frame: pd.DataFrame, source: str = "<table>",
                          features: list[str] | None = None) -> SiteTable:
    """Validate a site-month frame; predictors = ``features`` or every other numeric column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}; expected a site-month "
                         f"table with columns {', '.join(ID_COLUMNS)} plus predictors, found "
                         f"{', '.join(map(str, frame.columns[:12]))}")
    if features is None:
        features = [c for c in frame.columns if c not in ID_COLUMNS
                    and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    else:
        absent = [c for c in features if c not in frame.columns]
        if absent:
            raise InputError(f"{source}: predictor column(s) {', '.join(absent)} listed in the schema "
                             f"metadata 'ciml_ter' are not in the table")
        bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise InputError(f"{source}: predictor column(s) {', '.join(bad)}: expected numbers, "
                             f"found {', '.join(str(frame[c].dtype) for c in bad)}")
    if not pd.api.types.is_numeric_dtype(frame[TARGET]):
        raise InputError(f"{source}: column 'ter': expected numbers (g C m-2 month-1), found "
                         f"{frame[TARGET].dtype}")
    frame = frame.copy()
    frame["site"] = frame["site"].astype(str)
    n_rows = len(frame)
    frame = frame[np.isfinite(frame[TARGET].to_numpy(dtype=np.float64))]
    if len(frame) < n_rows:
        log.warning("%s: dropped %d of %d rows whose 'ter' is missing", source, n_rows - len(frame), n_rows)
    if len(frame) == 0:
        raise InputError(f"{source}: column 'ter': expected observed values, found none (all missing)")
    if np.ptp(frame[TARGET].to_numpy(dtype=np.float64)) == 0:
        raise InputError(f"{source}: column 'ter': expected varying observations, found a constant "
                         f"({frame[TARGET].iloc[0]!r} in all {len(frame)} rows)")
    dropped = [c for c in features if frame[c].isna().all()]
    if dropped:
        log.warning("%s: dropped all-missing predictor column(s) %s", source, ", ".join(dropped))
    features = [c for c in features if c not in dropped]
    if not features:
        raise InputError(f"{source}: expected at least one predictor column with values, found none")
    if "pft" not in frame.columns:
        frame["pft"] = "ALL"
    frame["pft"] = frame["pft"].astype(str)
    order = ["site", "time"] if "time" in frame.columns else ["site"]
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    return SiteTable(frame, list(features), source, dropped)


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


def member_name(fold: int, seed: int) -> str:
    return f"fold{fold:02d}_seed{seed:02d}.ubj"


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
                   device: str | None = None, progress: Progress = None,
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
        name = member_name(fold, seed)
        (out_dir / name).write_bytes(raw)
        members.append({"file": name, "fold": fold, "seed": seed, "best_iteration": best,
                        "num_boosted_rounds": n_trees, "sha256": hashlib.sha256(raw).hexdigest()})
        if progress:
            progress(len(members), len(tasks), f"trained {name} (best iteration {best})")

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
    manifest = {
        "format": FORMAT, "target": TARGET, "units": "g C m-2 month-1",
        "features": list(table.features), "causal": weights is not None,
        "weights": None if w is None else dict(zip(table.features, map(float, w))),
        "causal_info": causal_info, "folds": dict(sorted(folds.items())), "n_folds": n_folds,
        "n_seeds": n_seeds, "members": members, "config": config.to_dict(),
        "config_hash": config.stable_hash(), "versions": _versions(), "device": device,
        "xgboost_device": booster_device, "xgboost_cuda_build": xgboost_has_cuda(),
        "sites_path": table.path, "n_sites": len(folds), "n_samples": len(table.frame),
        "dropped_features": table.dropped_features,
        "train_seconds": round(time.perf_counter() - started, 3), "workers": workers, "nthread": nthread,
    }
    manifest["model_id"] = _manifest_hash(manifest)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return load_ensemble(out_dir)


def _manifest_hash(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items()
            if k not in ("model_id", "train_seconds", "workers", "nthread", "xgboost_device", "xgboost_cuda_build")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- loading, predicting
@dataclass
class Ensemble:
    """A loaded model directory: members, features, fold of each training site, manifest."""

    path: Path
    manifest: dict
    members: list[Member]

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])

    @property
    def folds(self) -> dict[str, int]:
        return dict(self.manifest["folds"])

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def config(self) -> PipelineConfig:
        return config_from_dict(self.manifest["config"], str(self.path / MANIFEST))

    def check_features(self, features: list[str], source: str = "<table>") -> None:
        """InputError naming the missing/extra predictors when ``features`` differ from the model's."""
        mine = self.features
        missing = [f for f in mine if f not in features]
        extra = [f for f in features if f not in mine]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"extra {', '.join(extra)}")
            raise InputError(f"{source}: predictors do not match model {self.path} "
                             f"({'; '.join(parts)}); expected {', '.join(mine)}")

    def matrix(self, table: SiteTable) -> np.ndarray:
        """The table's predictors in the model's order (after checking them)."""
        self.check_features(table.features, table.path)
        return table.frame[self.features].to_numpy(dtype=np.float32)

    @functools.cached_property
    def merged(self) -> MergedEnsemble:
        """The members merged into per-fold and all-member boosters (``infer.merge_members``)."""
        return merge_members(self.members)

    def merged_on(self, device: str) -> MergedEnsemble:
        """``merged``, its boosters moved to ``device`` ("cpu" or "cuda": this rank's GPU)."""
        from ciml_ter.device import xgboost_device

        merged = self.merged
        return merged if merged.device == device else merged.to(xgboost_device(device))

    def predict(self, x, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean over all members and std across fold means for rows ``x``."""
        p = predict_rows(self.merged_on(device), x, device=device)
        return p.ter.astype(np.float64), p.ter_std.astype(np.float64)

    def fold_predictions(self, x: np.ndarray) -> np.ndarray:
        """(n_folds, n) mean over seeds of each fold's members."""
        merged = self.merged_on("cpu")
        out = np.full((self.manifest["n_folds"], x.shape[0]), np.nan)
        for fold, booster in zip(merged.folds, merged.fold_boosters):
            out[fold] = booster.inplace_predict(x)
        return out

    def predict_oof(self, x: np.ndarray, sites) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold estimate per row: its site's held-out fold; rows of sites the model never
        saw get the full-ensemble mean (they are held out from every fold). Returns
        (estimate, known) where ``known`` marks rows whose site was in the training table."""
        folds = self.folds
        fold_pred = self.fold_predictions(x)
        fold_of = np.array([folds.get(str(s), -1) for s in sites])
        known = fold_of >= 0
        est = fold_pred.mean(axis=0)
        est[known] = fold_pred[fold_of[known], np.flatnonzero(known)]
        return est, known


def load_ensemble(model_dir: str | Path) -> Ensemble:
    """Open a model directory written by ``train_ensemble``; InputError when incomplete."""
    import xgboost as xgb

    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not path.is_file():
        raise InputError(f"{model_dir}: expected a model directory with {MANIFEST}, found none")
    manifest = read_document(path, FORMAT, "model manifest (from `ciml-ter train`)")
    members = []
    for m in manifest["members"]:
        file = model_dir / m["file"]
        if not file.is_file():
            raise InputError(f"{file}: member listed in {MANIFEST} is missing")
        raw = file.read_bytes()
        if hashlib.sha256(raw).hexdigest() != m["sha256"]:
            raise InputError(f"{file}: checksum differs from {MANIFEST} (file changed or truncated)")
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        booster.set_param({"nthread": os.cpu_count() or 1, "device": "cpu"})
        members.append(Member(int(m["fold"]), int(m["seed"]), booster, int(m["best_iteration"])))
    return Ensemble(model_dir, manifest, members)


# --------------------------------------------------------------------------- command
def train_command(sites_path: str | Path, out_dir: str | Path, config: PipelineConfig,
                  weights_path: str | Path | None = None, progress: Progress = None,
                  evaluate: bool = True) -> Path:
    """``ciml-ter train``: fit the ensemble on a site-month table and write ``out_dir``.

    Folds, seeds, workers, device and causal on/off come from ``config`` (train.folds,
    train.seeds, train.workers, device, train.causal). With ``weights_path`` the causal weights
    are read from that JSON (``ciml-ter causal`` output); without it and with train.causal the
    causal step runs first (weights also written to ``out_dir/weights.json``); with
    train.causal False the plain model is trained. Ends with ``evaluate`` into ``out_dir``
    (metrics.json, tables, figures) unless ``evaluate`` is False. Returns ``out_dir``.
    """
    from ciml_ter import causal as causal_mod

    table = read_site_table(sites_path)
    folds = assign_folds(table.sites, config.train.folds, config.seed, table.path)  # checked before PCMCI+
    out_dir = Path(out_dir)
    weights = causal_info = None
    if weights_path is not None and config.train.causal:
        result = causal_mod.read_weights(weights_path)
        weights, causal_info = result["pooled"]["weights"], causal_mod.summary(result)
    elif config.train.causal:
        out_dir.mkdir(parents=True, exist_ok=True)
        result = causal_mod.discover_weights(table, config, progress=progress)
        causal_mod.write_weights(result, out_dir / "weights.json")
        weights, causal_info = result["pooled"]["weights"], causal_mod.summary(result)
    train_ensemble(table, config, out_dir, weights=weights, causal_info=causal_info, progress=progress,
                   folds=folds)
    if evaluate:
        from ciml_ter.evaluate import evaluate_command

        evaluate_command(out_dir, out_dir, config, sites_path=sites_path, progress=progress)
    return out_dir
