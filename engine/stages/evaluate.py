"""``ciml-ter evaluate``: the model against its baselines on the same site-grouped folds.

Writes ``metrics.json`` (model and baselines at every scale, model structure against the PCMCI+
effects, and a "verdict": site-bootstrap intervals of test MAE, the paired difference of the
causal model and plain XGBoost, and sentences saying what they mean), CSV tables (summary, per
PFT, per site, per latitude band, structure, predictions) and PNG figures. The plain-XGBoost
baseline is trained into ``baseline_xgboost_plain/`` beside them and reused on a rerun with the
same folds and config. The metrics and baselines themselves live in ``ciml_ter.evaluation``.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.causal import run_pcmciplus
from ciml_ter.config import PipelineConfig
from ciml_ter.ensemble import load_ensemble
from ciml_ter.errors import InputError
from ciml_ter.evaluation import (BASELINE_NAMES, metrics, random_forest_baseline, scale_metrics,
                                 shap_importance, site_bootstrap, spearman, temperature_baseline,
                                 temperature_kelvin, weight_importance)
from ciml_ter.files import atomic_write
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import SiteTable, read_site_table
from ciml_ter.training import train_ensemble
from ciml_ter.units import TER_UNITS

log = logging.getLogger(__name__)
BASELINE_DIR = "baseline_xgboost_plain"


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _figures(out: Path, frame, oof, overall, by_pft_rows, structure: pd.DataFrame) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = frame["ter"].to_numpy(dtype=np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    lim = [min(np.nanmin(obs), np.nanmin(oof), 0), max(np.nanmax(obs), np.nanmax(oof), np.nanmax(overall))]
    for ax, est, title in ((axes[0], oof, "test (out-of-fold)"), (axes[1], overall, "overall (ensemble)")):
        m = metrics(obs, est)
        ax.scatter(obs, est, s=6, alpha=0.4, edgecolors="none")
        ax.plot(lim, lim, "k--", lw=1, label="1:1")
        ax.set_xlim(lim), ax.set_ylim(lim)
        ax.set_xlabel(f"observed TER ({TER_UNITS})"), ax.set_ylabel(f"estimated TER ({TER_UNITS})")
        ax.set_title(f"{title}\nMAE {m['mae']:.1f}, R² {m['r2']:.2f}, n {m['n']}")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "scatter_obs_est.png", dpi=110)
    plt.close(fig)

    table = pd.DataFrame(by_pft_rows).pivot(index="pft", columns="model", values="mae")
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(table)), 4))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel(f"test MAE ({TER_UNITS})"), ax.set_title("test MAE per PFT")
    fig.tight_layout()
    fig.savefig(out / "pft_mae.png", dpi=110)
    plt.close(fig)

    cols = [c for c in ("pcmci_effect", "xgb_weight_causal", "xgb_weight_plain", "shap_causal", "shap_plain")
            if c in structure.columns]
    fig, ax = plt.subplots(figsize=(min(12, max(6, 0.5 * len(structure))), 4.5))
    structure.set_index("feature")[cols].plot.bar(ax=ax, rot=45)
    ax.set_ylabel("normalised importance"), ax.set_title("causal effects vs model structure")
    fig.tight_layout()
    fig.savefig(out / "importance.png", dpi=110)
    plt.close(fig)
    return ["scatter_obs_est.png", "pft_mae.png", "importance.png"]


def _versus(difference: dict, level: float) -> str:
    """"(difference -0.8, 95 % site-bootstrap interval -1.5 to -0.1)"; ", which includes 0" added
    when it does."""
    low, high = difference["low"], difference["high"]
    return (f"(difference {difference['difference']:+z.1f}, {100 * level:g} % site-bootstrap interval "
            f"{low:z.1f} to {high:z.1f}{', which includes 0' if low <= 0 <= high else ''})")


def verdict(obs: np.ndarray, sites: np.ndarray, tests: dict[str, np.ndarray], causal: bool, seed: int,
            n_boot: int = 1000, level: float = 0.95, guard: dict | None = None) -> dict:
    """Site-bootstrap test MAEs (g C m-2 month-1) of the model (``tests["model"]``) and each
    baseline on the rows every one estimates, the paired difference "model - xgboost_plain" and
    two sentences: whether the causal weights helped (``sentence``, which also says in how many
    folds the causal guard kept them, from the manifest's ``causal_guard``) and how the model
    ranks against the best baseline (``ranking``)."""
    tests = {k: v for k, v in tests.items() if np.isfinite(v).any()}
    if causal and "xgboost_plain" not in tests:
        raise ValueError("verdict: a causal model needs the test estimates of the xgboost_plain baseline")
    boot = site_bootstrap(obs, tests, sites, n_boot=n_boot, seed=seed, level=level, reference="model")
    mae = {k: v["mae"] for k, v in boot["models"].items()}
    name = "causal XGBoost" if causal else "XGBoost"
    out: dict = {"bootstrap": boot, "model_minus_xgboost_plain": None}
    if causal:
        d = out["model_minus_xgboost_plain"] = boot["differences"]["xgboost_plain"]
        how = "helped" if d["high"] < 0 else "did not help" if d["low"] > 0 else "made no clear difference"
        out["sentence"] = (f"The causal weights {how}: test MAE {mae['model']:.1f} vs {mae['xgboost_plain']:.1f} "
                           f"without them {_versus(d, level)}.")
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


def _mean_fold_weights(ensemble) -> list[float]:
    """Each feature's causal weight, averaged over the folds (NaN for a plain model)."""
    by_fold = list((ensemble.manifest["weights"] or {}).values())
    return [float(np.mean([w[f] for w in by_fold])) if by_fold else np.nan for f in ensemble.features]


def _baseline_config(ensemble, config: PipelineConfig) -> PipelineConfig:
    cfg = ensemble.config
    cfg.device, cfg.train.workers, cfg.train.causal = config.device, config.train.workers, False
    return cfg


def _plain_ensemble(ensemble, table, folds, config, out: Path, progress: ProgressCallback):
    """The plain-XGBoost baseline on the same folds (reused from ``out`` when it matches)."""
    if not ensemble.manifest["causal"]:
        return ensemble
    where = out / BASELINE_DIR
    cfg = _baseline_config(ensemble, config)
    fold_settings = ensemble.manifest.get("fold_settings", {})
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
    return train_ensemble(sub, cfg, where, causal_result=None, folds=folds, progress=progress,
                          spec=ensemble.predictors, fold_settings=fold_settings)


def run(model_dir: str | Path, out_dir: str | Path, config: PipelineConfig,
        sites_path: str | Path | None = None, temperature: str | None = None,
        progress: ProgressCallback = None, rf_trees: int = 200, shap_rows: int = 1000) -> Path:
    """metrics.json, CSV tables and PNG figures of the model at ``model_dir`` in ``out_dir``.

    ``sites_path`` defaults to the table the model was trained on (its manifest). Baselines use
    the model's folds; the plain XGBoost baseline is trained into ``out_dir/baseline_xgboost_plain``
    (reused on a rerun with the same folds and config). ``temperature`` picks the column of the
    Lloyd-Taylor/Q10 baselines (default: TA_F, else lst_night, else lst_day). The model
    structure's mean |SHAP| is taken over ``shap_rows`` random rows. Returns ``out_dir``.
    """
    ensemble = load_ensemble(model_dir)
    sites_path = sites_path or ensemble.manifest.get("sites_path")
    table = read_site_table(sites_path)
    out = Path(out_dir)  # made only once the inputs are known to be there
    out.mkdir(parents=True, exist_ok=True)
    x = ensemble.matrix(table)
    frame = table.frame
    steps, step = 6, 0

    def tick(message):
        nonlocal step
        step += 1
        if progress:
            progress(step, steps, message)

    folds = ensemble.folds
    n_folds = ensemble.manifest["n_folds"]
    fold_of_row = np.array([folds.get(s, -1) for s in table.sites])
    overall, std = ensemble.predict(x)
    oof, known = ensemble.predict_oof(x, table.sites)
    hl = config.analysis.high_latitude
    model_metrics = scale_metrics(frame, oof, overall, hl)
    tick("model metrics")

    obs = frame["ter"].to_numpy(dtype=np.float64)
    baselines: dict = {}
    predictions = pd.DataFrame({c: frame[c] for c in ("site", "time", "pft", "lat", "lon") if c in frame})
    predictions["fold"] = fold_of_row
    predictions["ter_obs"], predictions["ter_test"] = obs, oof
    predictions["ter_overall"], predictions["ter_std"] = overall, std

    tests = {"model": oof}

    def add(name, test, over=None, **extra):
        entry = scale_metrics(frame, test, over, hl)
        entry = {k: entry[k] for k in ("test", "overall", "site_scale", "by_pft", "by_lat_band") if k in entry}
        covered = np.isfinite(test)
        if not covered.all():
            entry["model_on_same_rows"] = metrics(obs[covered], oof[covered])
        baselines[name] = {**entry, **extra}
        predictions[f"{name}_test"] = tests[name] = test

    plain = _plain_ensemble(ensemble, table, folds, config, out, progress)
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
    structure = pd.DataFrame({"feature": ensemble.features, "pcmci_effect": effects,
                              "causal_weight": _mean_fold_weights(ensemble),
                              "xgb_weight_causal": weight_importance(ensemble) if ensemble is not plain else np.nan,
                              "xgb_weight_plain": weight_importance(plain),
                              "shap_causal": shap_importance(ensemble, x[rows]) if ensemble is not plain else np.nan,
                              "shap_plain": shap_importance(plain, x[rows])})
    structure_summary = {
        "spearman_shap_causal_vs_pcmci": spearman(structure["shap_causal"].to_numpy(), effects)
        if ensemble is not plain else None,
        "spearman_shap_plain_vs_pcmci": spearman(structure["shap_plain"].to_numpy(), effects),
        "shap_rows": len(rows),
    }
    tick("model structure")

    metrics_json = {
        "model": {**model_metrics, "model_id": ensemble.model_id, "causal": ensemble.manifest["causal"],
                  "n_unseen_sites": len(set(table.sites[~known]))},
        "baselines": baselines,
        "verdict": verdict(obs, table.sites, tests, ensemble.manifest["causal"], config.seed,
                           guard=ensemble.manifest.get("causal_guard")),
        "structure": structure_summary,
        "training": {"rounds": ensemble.manifest.get("rounds"), "predictors": ensemble.manifest.get("predictors"),
                     "causal_guard": ensemble.manifest.get("causal_guard", {}),
                     "fold_settings": ensemble.manifest.get("fold_settings", {}),
                     "causal": {k: causal_info.get(k) for k in ("parents", "ambiguous", "siblings")}},
        "units": TER_UNITS,
        "config_hash": ensemble.manifest["config_hash"],
        "evaluation_config_hash": config.stable_hash(),
        "sites_path": str(sites_path),
        "n_sites": int(frame["site"].nunique()), "n_samples": len(frame),
        "n_folds": n_folds, "n_seeds": ensemble.manifest["n_seeds"],
        "slopes": "slope_obs_on_est: observed regressed on estimated; slope_est_on_obs: estimated on observed",
    }
    atomic_write(out / "metrics.json", json.dumps(_clean(metrics_json), indent=1))

    # tables
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
    pd.DataFrame(summary_rows).to_csv(out / "metrics_summary.csv", index=False)
    pd.DataFrame(pft_rows).to_csv(out / "metrics_by_pft.csv", index=False)
    pd.DataFrame([{"site": s, **{f"{k}_{sub}": v for sub, m in d.items() for k, v in m.items()}}
                  for s, d in model_metrics["by_site"].items()]).to_csv(out / "metrics_by_site.csv", index=False)
    pd.DataFrame([{"band": b, **{f"{k}_{sub}": v for sub, m in d.items() for k, v in m.items()}}
                  for b, d in model_metrics.get("by_lat_band", {}).items()]).to_csv(
        out / "metrics_by_lat_band.csv", index=False)
    structure.to_csv(out / "structure.csv", index=False)
    predictions.to_csv(out / "predictions.csv", index=False)
    _figures(out, frame, oof, overall, pft_rows, structure)
    tick("tables and figures")
    return out
