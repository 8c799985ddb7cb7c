"""The model judged on its own site-grouped folds: test metrics beside every baseline, the model
structure against the PCMCI+ effects, and a verdict with site-bootstrap intervals.

``assess`` computes everything ``ciml-ter evaluate`` writes (the stage only writes it): the
``metrics.json`` document, the CSV tables, the per-row predictions and the structure table. The
metrics and baselines themselves live in ``ciml_ter.evaluation``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.causal import run_pcmciplus
from ciml_ter.config import PipelineConfig
from ciml_ter.device import Device
from ciml_ter.ensemble import Ensemble, load_ensemble
from ciml_ter.errors import InputError
from ciml_ter.evaluation import (BASELINE_NAMES, metrics, random_forest_baseline, scale_metrics,
                                 shap_importance, site_bootstrap, spearman, temperature_baseline,
                                 temperature_kelvin, weight_importance)
from ciml_ter.gridstats import in_band, lat_bands
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import SiteTable
from ciml_ter.training import train_ensemble
from ciml_ter.uncertainty import Calibration, NoIntervals, tower_intervals
from ciml_ter.units import TER_UNITS

log = logging.getLogger(__name__)
STEPS = 6  # progress steps of ``assess``


@dataclass
class Assessment:
    """What ``assess`` found: ``document`` (metrics.json), ``tables`` (CSV name -> frame; the
    per-row ``predictions``, the ``structure`` and the intervals' ``coverage`` among them) and the
    ``calibration`` of the prediction intervals (calibration.json; None when skipped)."""

    document: dict
    tables: dict[str, pd.DataFrame]
    calibration: Calibration | None = None


def finite_json(obj):
    """``obj`` with NaN/inf as None and NumPy scalars as Python numbers (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _versus(difference: dict, level: float) -> str:
    """"(difference -0.8, 95 % site-bootstrap interval -1.5 to -0.1)"; ", which includes 0" added
    when it does."""
    low, high = difference["low"], difference["high"]
    return (f"(difference {difference['difference']:+z.1f}, {100 * level:g} % site-bootstrap interval "
            f"{low:z.1f} to {high:z.1f}{', which includes 0' if low <= 0 <= high else ''})")


MIN_GROUP_SITES = 3  # sites a PFT or latitude band needs for its own causal-vs-plain interval


def _how(difference: dict) -> str:
    return ("helped" if difference["high"] < 0 else "did not help" if difference["low"] > 0
            else "made no clear difference")


def causal_by_group(obs: np.ndarray, sites: np.ndarray, model: np.ndarray, plain: np.ndarray, labels: np.ndarray,
                    seed: int, n_boot: int = 1000, level: float = 0.95) -> dict:
    """Per label (a PFT, a latitude band): the paired site-bootstrap difference of test MAE, causal
    model minus plain XGBoost, on that label's rows, and what it says (``how``); a label with
    fewer than ``MIN_GROUP_SITES`` sites gets its counts only."""
    out = {}
    labels = np.asarray(labels).astype(str)
    for label in sorted(set(labels)):
        rows = labels == label
        n_sites = len(set(sites[rows]))
        entry = {"n_sites": n_sites, "n_rows": int(rows.sum())}
        if n_sites >= MIN_GROUP_SITES:
            boot = site_bootstrap(obs[rows], {"model": model[rows], "xgboost_plain": plain[rows]}, sites[rows],
                                  n_boot=n_boot, seed=seed, level=level, reference="model")
            d = boot["differences"]["xgboost_plain"]
            entry.update(mae=boot["models"]["model"]["mae"], mae_plain=boot["models"]["xgboost_plain"]["mae"],
                         difference=d["difference"], low=d["low"], high=d["high"], how=_how(d))
        out[label] = entry
    return out


def _where(by_group: dict[str, dict], what: str) -> str:
    """"By PFT, the causal weights helped in A (-1.2, -2.0 to -0.3); did not help in B (...);
    made no clear difference in the other 5 with at least 3 sites." """
    judged = {k: v for k, v in by_group.items() if "how" in v}
    if not judged:
        return f"By {what}, no group has {MIN_GROUP_SITES} sites to judge the causal weights on."
    parts = []
    for how in ("helped", "did not help"):
        names = [f"{k} ({v['difference']:+.1f}, {v['low']:.1f} to {v['high']:.1f})" for k, v in judged.items()
                 if v["how"] == how]
        if names:
            parts.append(f"{how} in {', '.join(names)}")
    unclear = sum(v["how"] == "made no clear difference" for v in judged.values())
    if unclear:
        parts.append(f"made no clear difference in {'the other ' if parts else 'all '}{unclear} "
                     f"with at least {MIN_GROUP_SITES} sites")
    return f"By {what}, the causal weights " + "; ".join(parts) + "."


def verdict_groups(frame: pd.DataFrame, high_latitude: float) -> dict[str, np.ndarray]:
    """Labels per row for the verdict's causal-vs-plain breakdown: the PFT and the latitude band."""
    groups = {"PFT": frame["pft"].astype(str).to_numpy()}
    if "lat" in frame.columns:
        lat = frame["lat"].to_numpy(dtype=np.float64)
        band = np.full(len(frame), "", dtype=object)
        for name, south, north in lat_bands(high_latitude):
            band[in_band(lat, south, north)] = name
        groups["latitude band"] = band
    return groups


def verdict(obs: np.ndarray, sites: np.ndarray, tests: dict[str, np.ndarray], causal: bool, seed: int,
            n_boot: int = 1000, level: float = 0.95, guard: dict | None = None,
            groups: dict[str, np.ndarray] | None = None) -> dict:
    """Site-bootstrap test MAEs (g C m-2 month-1) of the model (``tests["model"]``) and each
    baseline on the rows every one estimates, the paired difference "model - xgboost_plain" and
    two sentences: whether the causal weights helped (``sentence``, which also says in how many
    folds the causal guard kept them, from the manifest's ``causal_guard``) and how the model
    ranks against the best baseline (``ranking``). ``groups`` (a name such as "PFT" -> a label
    per row): for a causal model, the same difference per label (``by_group``,
    ``causal_by_group``) and a sentence per grouping (``where``)."""
    tests = {k: v for k, v in tests.items() if np.isfinite(v).any()}
    if causal and "xgboost_plain" not in tests:
        raise ValueError("verdict: a causal model needs the test estimates of the xgboost_plain baseline")
    boot = site_bootstrap(obs, tests, sites, n_boot=n_boot, seed=seed, level=level, reference="model")
    mae = {k: v["mae"] for k, v in boot["models"].items()}
    name = "causal XGBoost" if causal else "XGBoost"
    out: dict = {"bootstrap": boot, "model_minus_xgboost_plain": None}
    if causal:
        d = out["model_minus_xgboost_plain"] = boot["differences"]["xgboost_plain"]
        out["sentence"] = (f"The causal weights {_how(d)}: test MAE {mae['model']:.1f} vs "
                           f"{mae['xgboost_plain']:.1f} without them {_versus(d, level)}.")
        obs_, sites_ = np.asarray(obs, dtype=np.float64), np.asarray(sites).astype(str)
        both = np.isfinite(obs_) & np.isfinite(tests["model"]) & np.isfinite(tests["xgboost_plain"])
        out["by_group"] = {name: causal_by_group(obs_[both], sites_[both], tests["model"][both],
                                                 tests["xgboost_plain"][both], np.asarray(labels)[both], seed,
                                                 n_boot, level)
                           for name, labels in (groups or {}).items()}
        out["where"] = [_where(by, name) for name, by in out["by_group"].items()]
    elif guard:
        out["sentence"] = (f"The causal guard dropped the causal weights in all {len(guard)} folds (on each "
                           "fold's inner held-out sites they did not beat none by the guard margin): the model "
                           "is the plain XGBoost.")
    else:
        out["sentence"] = "The model was trained without causal weights: there are no causal weights to judge."
    if causal and guard:
        kept = sum(g["kept"] for g in guard.values())
        out["sentence"] += f" The causal guard kept them in {kept} of {len(guard)} folds."
    # without causal weights, the plain XGBoost baseline is the model itself
    others = {k: v for k, v in mae.items() if k != "model" and (causal or k != "xgboost_plain")}
    if others:
        best = min(others, key=others.get)
        best_name, d = BASELINE_NAMES.get(best, best), boot["differences"][best]
        how = ("is better than" if d["high"] < 0 else "is worse than" if d["low"] > 0
               else "is not clearly different from")
        out["ranking"] = (f"By test MAE the {name} ranks {1 + sum(v < mae['model'] for v in others.values())} "
                          f"of {len(others) + 1} models; it {how} the best baseline, {best_name}: test MAE "
                          f"{mae['model']:.1f} vs {others[best]:.1f} {_versus(d, level)}.")
    return out


def _mean_fold_weights(ensemble: Ensemble) -> list[float]:
    """Each feature's causal weight, averaged over the folds (NaN for a plain model)."""
    by_fold = list((ensemble.manifest["weights"] or {}).values())
    return [float(np.mean([w[f] for w in by_fold])) if by_fold else np.nan for f in ensemble.features]


def plain_ensemble(ensemble: Ensemble, table: SiteTable, config: PipelineConfig, where: Path, device: Device,
                   progress: ProgressCallback = None) -> Ensemble:
    """The plain-XGBoost baseline of a causal ``ensemble``: its config, folds, predictors and
    per-fold settings without causal weights (and without nested members), trained into ``where``
    (reused from there when it matches); a plain ``ensemble`` is its own baseline. ``config`` gives the workers."""
    if not ensemble.manifest["causal"]:
        return ensemble
    cfg = ensemble.config
    cfg.device, cfg.train.workers, cfg.train.causal = config.device, config.train.workers, False
    cfg.train.nested_spread = False  # the baseline is scored, never given intervals
    fold_settings = ensemble.manifest.get("fold_settings", {})
    folds = ensemble.folds
    if (where / "manifest.json").is_file():
        try:
            old = load_ensemble(where)
            if (old.folds == folds and old.features == ensemble.features
                    and old.manifest["config_hash"] == cfg.stable_hash()
                    and old.manifest.get("fold_settings", {}) == fold_settings):
                return old
        except InputError:
            pass
    known = table.frame["site"].isin(list(folds)).to_numpy()
    sub = SiteTable(table.frame[known].reset_index(drop=True), table.features, table.path)
    return train_ensemble(sub, cfg, where, device, causal_result=None, folds=folds, progress=progress,
                          spec=ensemble.predictors, fold_settings=fold_settings)


def _by_scale_tables(model_metrics: dict, baselines: dict) -> dict[str, pd.DataFrame]:
    """The summary, per-PFT (test metrics of the model and each baseline), per-site and
    per-latitude-band tables."""
    summary_rows, pft_rows = [], []
    entries = {"model": model_metrics, **{k: v for k, v in baselines.items() if "test" in v}}
    for name, entry in entries.items():
        for subset in ("test", "overall"):
            if subset in entry:
                summary_rows.append({"model": name, "scale": "site-month", "subset": subset, **entry[subset]})
                summary_rows.append({"model": name, "scale": "site", "subset": subset,
                                     **entry["site_scale"][subset]})
        for pft, m in entry["by_pft"].items():
            pft_rows.append({"model": name, "pft": pft, **m["test"]})

    def flat(by: dict, key: str) -> pd.DataFrame:
        return pd.DataFrame([{key: k, **{f"{m}_{sub}": v for sub, d in entry.items() for m, v in d.items()}}
                             for k, entry in by.items()])

    tables = {"metrics_summary": pd.DataFrame(summary_rows), "metrics_by_pft": pd.DataFrame(pft_rows),
              "metrics_by_site": flat(model_metrics["by_site"], "site"),
              "metrics_by_lat_band": flat(model_metrics.get("by_lat_band", {}), "band")}
    return tables


def assess(ensemble: Ensemble, table: SiteTable, config: PipelineConfig, plain_dir: Path, device: Device,
           temperature: str | None = None, progress: ProgressCallback = None, rf_trees: int = 200,
           shap_rows: int = 1000) -> Assessment:
    """Score ``ensemble`` on ``table`` beside its baselines on the same folds: plain XGBoost
    (trained into ``plain_dir`` on ``device``), Lloyd–Taylor and Q10 on ``temperature`` (default:
    TA_F, else lst_night, else lst_day), a random forest of ``rf_trees`` trees; the model
    structure's mean |SHAP| over ``shap_rows`` random rows."""
    step = iter(range(1, STEPS + 1))

    def tick(message):
        if progress:
            progress(next(step), STEPS, message)

    frame, folds = table.frame, ensemble.folds
    x = ensemble.matrix(table)
    n_folds = ensemble.manifest["n_folds"]
    fold_of_row = np.array([folds.get(s, -1) for s in table.sites])
    overall, std = ensemble.predict(x)
    oof, known = ensemble.predict_oof(x, table.sites)
    intervals, no_intervals = None, None
    try:
        intervals = tower_intervals(ensemble, table, config)
    except NoIntervals as exc:
        log.warning("no prediction intervals: %s", exc)
        no_intervals = str(exc)
    hl = config.analysis.high_latitude
    model_metrics = scale_metrics(frame, oof, overall, hl)

    obs = frame["ter"].to_numpy(dtype=np.float64)
    baselines: dict = {}
    predictions = pd.DataFrame({c: frame[c] for c in ("site", "time", "pft", "lat", "lon") if c in frame})
    predictions["fold"] = fold_of_row
    predictions["ter_obs"], predictions["ter_test"] = obs, oof
    predictions["ter_overall"], predictions["ter_std"] = overall, std
    for name, column in (intervals.columns.items() if intervals else ()):
        predictions[name] = column
    tests = {"model": oof}
    tick("prediction intervals")

    def add(name, test, over=None, **extra):
        entry = scale_metrics(frame, test, over, hl)
        entry = {k: entry[k] for k in ("test", "overall", "site_scale", "by_pft", "by_lat_band") if k in entry}
        covered = np.isfinite(test)
        if not covered.all():
            entry["model_on_same_rows"] = metrics(obs[covered], oof[covered])
        baselines[name] = {**entry, **extra}
        predictions[f"{name}_test"] = tests[name] = test

    plain = plain_ensemble(ensemble, table, config, plain_dir, device, progress)
    plain_oof, _ = plain.predict_oof(x, table.sites)
    add("xgboost_plain", plain_oof, plain.predict(x)[0], model_id=plain.model_id)
    tick("plain XGBoost baseline")

    try:
        t_k, t_col = temperature_kelvin(frame, temperature)
    except InputError as exc:
        if temperature is not None:
            raise
        log.warning("%s", exc)
        t_col = None
    for kind in ("lloyd_taylor", "q10"):
        if t_col is None:
            baselines[kind] = {"skipped": "no temperature column (TA_F, lst_night or lst_day)"}
            continue
        test, over, params = temperature_baseline(kind, frame, t_k, fold_of_row, n_folds)
        add(kind, test, over, temperature=t_col, parameters_by_pft=params)
    tick("Lloyd-Taylor and Q10 baselines")

    add("random_forest", random_forest_baseline(x, obs, fold_of_row, n_folds, config.seed, rf_trees),
        library="scikit-learn", n_trees=rf_trees)
    tick("random-forest baseline")

    # model structure: XGBoost weight importance and SHAP vs PCMCI+ effects
    causal_info = ensemble.manifest.get("causal_info") or {}
    if "val_matrix" not in causal_info:
        causal_info = run_pcmciplus(frame, ensemble.predictors.drivers, ensemble.config)
    effects = np.abs([causal_info["val_matrix"].get(f, 0.0) for f in ensemble.features])
    effects = effects / effects.sum() if effects.sum() > 0 else effects
    rows = np.random.default_rng(config.seed).permutation(len(x))[:shap_rows]
    causal = ensemble is not plain
    structure = pd.DataFrame({"feature": ensemble.features, "pcmci_effect": effects,
                              "causal_weight": _mean_fold_weights(ensemble),
                              "xgb_weight_causal": weight_importance(ensemble) if causal else np.nan,
                              "xgb_weight_plain": weight_importance(plain),
                              "shap_causal": shap_importance(ensemble, x[rows]) if causal else np.nan,
                              "shap_plain": shap_importance(plain, x[rows])})
    structure_summary = {
        "spearman_shap_causal_vs_pcmci": spearman(structure["shap_causal"].to_numpy(), effects) if causal else None,
        "spearman_shap_plain_vs_pcmci": spearman(structure["shap_plain"].to_numpy(), effects),
        "shap_rows": len(rows),
    }
    tick("model structure")

    document = {
        "model": {**model_metrics, "model_id": ensemble.model_id, "causal": ensemble.manifest["causal"],
                  "n_unseen_sites": len(set(table.sites[~known]))},
        "baselines": baselines,
        "verdict": verdict(obs, table.sites, tests, ensemble.manifest["causal"], config.seed,
                           guard=ensemble.manifest.get("causal_guard"), groups=verdict_groups(frame, hl)),
        "structure": structure_summary,
        "uncertainty": intervals.document if intervals else {"skipped": no_intervals},
        "training": {"rounds": ensemble.manifest.get("rounds"), "predictors": ensemble.manifest.get("predictors"),
                     "causal_guard": ensemble.manifest.get("causal_guard", {}),
                     "fold_settings": ensemble.manifest.get("fold_settings", {}),
                     "causal": {k: causal_info.get(k) for k in ("parents", "ambiguous", "siblings")}},
        "units": TER_UNITS,
        "config_hash": ensemble.manifest["config_hash"],
        "evaluation_config_hash": config.stable_hash(),
        "sites_path": str(table.path),
        "n_sites": int(frame["site"].nunique()), "n_samples": len(frame),
        "n_folds": n_folds, "n_seeds": ensemble.manifest["n_seeds"],
        "slopes": "slope_obs_on_est: observed regressed on estimated; slope_est_on_obs: estimated on observed",
    }
    tables = {**_by_scale_tables(model_metrics, baselines), "structure": structure, "predictions": predictions}
    if intervals:
        tables["coverage"] = intervals.table
    tick("metrics and tables")
    return Assessment(finite_json(document), tables, intervals.calibration if intervals else None)
