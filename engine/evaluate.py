"""Accuracy of the ensemble on the flux sites, baselines on the same folds, model structure.

Metrics (units of TER, g C m-2 month-1, except the ratios):
- MAE = mean |obs - est|; rMAE = MAE / mean(obs); R2 = 1 - SS_res / SS_tot (about mean(obs));
- ``slope_obs_on_est``: OLS slope of observed regressed on estimated (cov(obs, est) / var(est));
  ``slope_est_on_obs``: OLS slope of estimated regressed on observed (cov / var(obs));
- at site-month scale (every row), site scale (mean obs and mean est per site), per PFT and per
  site (site-month rows of that PFT / site) and per latitude band (the top band starts at
  ``config.analysis.high_latitude``, 60 N by default);
- "test" uses each row's out-of-fold estimate; "overall" the full ensemble on every row.

Baselines, on the model's own fold assignment: plain XGBoost (same config and seeds, no causal
weights), Lloyd-Taylor and Q10 fitted per PFT on temperature with scipy (a PFT with fewer than
``MIN_FIT_SAMPLES`` training rows in a fold uses the fit on all PFTs of that fold), and a random
forest (scikit-learn on every device). A baseline that cannot predict a row
(missing temperature) leaves it out; its entry then reports the model on the same rows too.

Sites of the evaluated table that are not in the model's fold assignment were never used for
training: their "test" estimate is the full ensemble (and the baselines fitted on all folds).
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError

log = logging.getLogger(__name__)

UNITS = "g C m-2 month-1"
T0_LLOYD_TAYLOR = 227.13  # K
T_REF = 288.15  # K
MIN_FIT_SAMPLES = 10
TEMPERATURE_COLUMNS = ("TA_F", "lst_night", "lst_day")  # first present wins; TA_F is degC
METRIC_KEYS = ("mae", "rmae", "r2", "slope_obs_on_est", "slope_est_on_obs", "n")
# What the CLI and the report call each baseline of metrics.json (the model: "causal XGBoost").
BASELINE_NAMES = {"xgboost_plain": "plain XGBoost", "lloyd_taylor": "Lloyd–Taylor", "q10": "Q10",
                  "random_forest": "random forest"}

Progress = Callable[[int, int, str], None] | None


# --------------------------------------------------------------------------- metrics
def metrics(obs, est) -> dict:
    """MAE, rMAE, R2, both regression slopes and n over the rows where both are finite."""
    obs = np.asarray(obs, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    ok = np.isfinite(obs) & np.isfinite(est)
    obs, est = obs[ok], est[ok]
    n = int(obs.size)
    nan = float("nan")
    if n == 0:
        return {"mae": nan, "rmae": nan, "r2": nan, "slope_obs_on_est": nan, "slope_est_on_obs": nan, "n": 0}
    mae = float(np.mean(np.abs(obs - est)))
    mean_obs = float(obs.mean())
    ss_tot = float(np.sum((obs - mean_obs) ** 2))
    ss_res = float(np.sum((obs - est) ** 2))
    d_obs, d_est = obs - mean_obs, est - est.mean()
    cov = float(np.sum(d_obs * d_est))
    var_est, var_obs = float(np.sum(d_est ** 2)), ss_tot
    return {"mae": mae, "rmae": mae / mean_obs if mean_obs != 0 else nan,
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else nan,
            "slope_obs_on_est": cov / var_est if var_est > 0 else nan,
            "slope_est_on_obs": cov / var_obs if var_obs > 0 else nan, "n": n}


def lat_bands(high_latitude: float = 60.0) -> list[tuple[str, float, float]]:
    """(name, south, north) bands; the last one is [high_latitude, 90]."""
    edges = [-90.0, -30.0, 0.0, 30.0]
    edges = [e for e in edges if e < high_latitude] + [high_latitude, 90.0]

    def name(v):
        return "0" if v == 0 else f"{abs(v):g}{'S' if v < 0 else 'N'}"

    return [(f"{name(a)}-{name(b)}", a, b) for a, b in itertools.pairwise(edges)]


def _site_scale(frame: pd.DataFrame, est: np.ndarray) -> dict:
    g = pd.DataFrame({"site": frame["site"].to_numpy(), "obs": frame["ter"].to_numpy(), "est": est})
    g = g[np.isfinite(g["est"])].groupby("site")[["obs", "est"]].mean()
    return metrics(g["obs"], g["est"])


def scale_metrics(frame: pd.DataFrame, test: np.ndarray, overall: np.ndarray | None,
                  high_latitude: float = 60.0) -> dict:
    """Metrics at every scale for one set of estimates (``overall`` may be None)."""
    obs = frame["ter"].to_numpy(dtype=np.float64)
    sets = {"test": test} if overall is None else {"test": test, "overall": overall}
    out = {k: metrics(obs, v) for k, v in sets.items()}
    out["site_scale"] = {k: _site_scale(frame, v) for k, v in sets.items()}
    for key, column in (("by_pft", "pft"), ("by_site", "site")):
        out[key] = {}
        for name, idx in frame.groupby(column, sort=True).indices.items():
            out[key][str(name)] = {k: metrics(obs[idx], v[idx]) for k, v in sets.items()}
    if "lat" in frame.columns:
        lat = frame["lat"].to_numpy(dtype=np.float64)
        out["by_lat_band"] = {}
        for name, south, north in lat_bands(high_latitude):
            sel = (lat >= south) & ((lat < north) | (north == 90.0) & (lat <= north))
            if sel.any():
                out["by_lat_band"][name] = {k: metrics(obs[sel], v[sel]) for k, v in sets.items()}
    return out


# --------------------------------------------------------------------------- temperature models
def lloyd_taylor(t_kelvin, r_ref, e0):
    """R = R_ref exp(E0 (1/(Tref - T0) - 1/(T - T0))), T in K (T0 = 227.13 K, Tref = 288.15 K)."""
    t = np.maximum(np.asarray(t_kelvin, dtype=np.float64), T0_LLOYD_TAYLOR + 1.0)
    return r_ref * np.exp(e0 * (1.0 / (T_REF - T0_LLOYD_TAYLOR) - 1.0 / (t - T0_LLOYD_TAYLOR)))


def q10_model(t_kelvin, r_ref, q10):
    """R = R_ref Q10^((T - Tref) / 10), T in K (Tref = 288.15 K)."""
    return r_ref * np.power(q10, (np.asarray(t_kelvin, dtype=np.float64) - T_REF) / 10.0)


MODELS = {
    "lloyd_taylor": (lloyd_taylor, ([0.0, 0.0], [np.inf, 3000.0])),
    "q10": (q10_model, ([0.0, 0.01], [np.inf, 100.0])),
}


def fit_temperature_model(kind: str, t_kelvin: np.ndarray, ter: np.ndarray) -> tuple[float, float]:
    """Least-squares parameters (R_ref, E0 or Q10) with scipy's curve_fit; a start from the
    log-linear fit; when curve_fit fails the start values are kept (logged)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    func, (lo, hi) = MODELS[kind]
    ok = np.isfinite(t_kelvin) & np.isfinite(ter)
    t, y = t_kelvin[ok], ter[ok]
    pos = y > 0
    slope = np.polyfit(t[pos] - T_REF, np.log(y[pos]), 1)[0] if pos.sum() > 2 and np.ptp(t[pos]) > 0 else 0.05
    r0 = max(float(np.mean(y)), 1e-3)
    if kind == "q10":
        p0 = [r0, float(np.clip(np.exp(10 * slope), 1.01, 10.0))]
    else:
        p0 = [r0, float(np.clip(slope * (T_REF - T0_LLOYD_TAYLOR) ** 2, 10.0, 1000.0))]
    try:
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", OptimizeWarning)  # covariance not estimable: unused here
            params, _ = curve_fit(func, t, y, p0=p0, bounds=(lo, hi), maxfev=5000)
        return float(params[0]), float(params[1])
    except (RuntimeError, ValueError) as exc:
        log.warning("%s fit failed on %d samples (%s); using start values", kind, len(y), exc)
        return float(p0[0]), float(p0[1])


def temperature_kelvin(frame: pd.DataFrame, column: str | None = None) -> tuple[np.ndarray, str]:
    """Temperature in K from ``column`` or the first of TA_F (degC), lst_night, lst_day (K)."""
    if column is None:
        column = next((c for c in TEMPERATURE_COLUMNS if c in frame.columns), None)
        if column is None:
            raise InputError(f"site table: no temperature column for the Lloyd-Taylor/Q10 baselines; "
                             f"expected one of {', '.join(TEMPERATURE_COLUMNS)}")
    if column not in frame.columns:
        raise InputError(f"site table: temperature column {column!r} not found")
    t = frame[column].to_numpy(dtype=np.float64)
    if column == "TA_F" or np.nanmedian(t) < 150:  # degC
        t = t + 273.15
    return t, column


def _cv(fold_of_row: np.ndarray, n_folds: int, fit_predict) -> np.ndarray:
    """Out-of-fold estimates: fold k from a fit on the other folds; rows of unseen sites (-1)
    from a fit on every fold."""
    est = np.full(len(fold_of_row), np.nan)
    for k in list(range(n_folds)) + [-1]:
        test = fold_of_row == k
        if test.any():
            train = (fold_of_row != k) & (fold_of_row >= 0)
            est[test] = fit_predict(train, test)
    return est


def temperature_baseline(kind: str, frame: pd.DataFrame, t_kelvin: np.ndarray,
                         fold_of_row: np.ndarray, n_folds: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(test, overall, parameters fitted on all rows per PFT) for "lloyd_taylor" or "q10"."""
    func = MODELS[kind][0]
    y = frame["ter"].to_numpy(dtype=np.float64)
    pft = frame["pft"].astype(str).to_numpy()
    usable = np.isfinite(t_kelvin)

    def fit_predict(train, test, params_out=None):
        pooled = fit_temperature_model(kind, t_kelvin[train & usable], y[train & usable])
        out = np.full(int(test.sum()), np.nan)
        test_idx = np.flatnonzero(test)
        for p in np.unique(pft[test]):
            rows = train & usable & (pft == p)
            params = fit_temperature_model(kind, t_kelvin[rows], y[rows]) if rows.sum() >= MIN_FIT_SAMPLES else pooled
            if params_out is not None:
                params_out[str(p)] = {"r_ref": params[0], ("e0" if kind == "lloyd_taylor" else "q10"): params[1],
                                      "n": int(rows.sum()), "pooled_fallback": bool(rows.sum() < MIN_FIT_SAMPLES)}
            sel = pft[test_idx] == p
            out[sel] = func(t_kelvin[test_idx[sel]], *params)
        return out

    test = _cv(fold_of_row, n_folds, fit_predict)
    params: dict = {}
    everything = np.ones(len(y), dtype=bool)
    overall = fit_predict(everything & (fold_of_row >= 0), everything, params)
    return test, overall, params


def random_forest_baseline(x: np.ndarray, y: np.ndarray, fold_of_row: np.ndarray, n_folds: int,
                           seed: int, n_trees: int = 200) -> np.ndarray:
    """Out-of-fold random-forest estimates (scikit-learn on every device: the site table is small;
    missing predictors stay NaN, which scikit-learn's trees route by learned direction)."""
    from sklearn.ensemble import RandomForestRegressor

    def fit_predict(train, test):
        rf = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=3, max_features=0.5,
                                   n_jobs=os.cpu_count() or 1, random_state=seed)
        rf.fit(x[train], y[train])
        return rf.predict(x[test])

    return _cv(fold_of_row, n_folds, fit_predict)


# --------------------------------------------------------------------------- model structure
def weight_importance(ensemble) -> np.ndarray:
    """XGBoost "weight" importance (times a feature splits a node) summed over members (each up
    to its best iteration), normalised to sum 1, in the ensemble's feature order."""
    n = len(ensemble.features)
    total = np.zeros(n)
    for m in ensemble.members:
        score = m.booster[: m.best_iteration + 1].get_score(importance_type="weight")
        for key, value in score.items():
            total[int(key[1:]) if key.startswith("f") and key[1:].isdigit() else ensemble.features.index(key)] += value
    return total / total.sum() if total.sum() > 0 else total


def shap_importance(ensemble, x: np.ndarray) -> np.ndarray:
    """Mean |SHAP| of the ensemble (pred_contribs, best iterations) per feature, normalised."""
    from ciml_ter.infer import predict_rows

    values = predict_rows(ensemble.merged_on("cpu"), x, shap=True).shap
    imp = np.abs(values).mean(axis=0).astype(np.float64)
    return imp / imp.sum() if imp.sum() > 0 else imp


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


# --------------------------------------------------------------------------- output helpers
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
        ax.set_xlabel(f"observed TER ({UNITS})"), ax.set_ylabel(f"estimated TER ({UNITS})")
        ax.set_title(f"{title}\nMAE {m['mae']:.1f}, R² {m['r2']:.2f}, n {m['n']}")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "scatter_obs_est.png", dpi=110)
    plt.close(fig)

    table = pd.DataFrame(by_pft_rows).pivot(index="pft", columns="model", values="mae")
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(table)), 4))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel(f"test MAE ({UNITS})"), ax.set_title("test MAE per PFT")
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


# --------------------------------------------------------------------------- command
def _baseline_config(ensemble, config: PipelineConfig) -> PipelineConfig:
    cfg = ensemble.config
    cfg.device, cfg.train.workers, cfg.train.causal = config.device, config.train.workers, False
    return cfg


def _plain_ensemble(ensemble, table, folds, config, out: Path, progress: Progress):
    """The plain-XGBoost baseline on the same folds (reused from ``out`` when it matches)."""
    from ciml_ter.model import SiteTable, load_ensemble, train_ensemble

    if not ensemble.manifest["causal"]:
        return ensemble
    where = out / "baseline_xgboost_plain"
    cfg = _baseline_config(ensemble, config)
    if (where / "manifest.json").is_file():
        try:
            old = load_ensemble(where)
            if (old.folds == folds and old.features == ensemble.features
                    and old.manifest["config_hash"] == cfg.stable_hash()):
                return old
        except InputError:
            pass
    known = table.frame["site"].isin(list(folds)).to_numpy()
    sub = SiteTable(table.frame[known].reset_index(drop=True), table.features, table.path)
    return train_ensemble(sub, cfg, where, weights=None, folds=folds, progress=progress)


def evaluate_command(model_dir: str | Path, out_dir: str | Path, config: PipelineConfig,
                     sites_path: str | Path | None = None, temperature: str | None = None,
                     progress: Progress = None, rf_trees: int = 200, shap_rows: int = 2000) -> Path:
    """``ciml-ter evaluate``: metrics.json, CSV tables and PNG figures in ``out_dir``.

    ``sites_path`` defaults to the table the model was trained on (its manifest). Baselines use
    the model's folds; the plain XGBoost baseline is trained into ``out_dir/baseline_xgboost_plain``
    (reused on a rerun with the same folds and config). ``temperature`` picks the column of the
    Lloyd-Taylor/Q10 baselines (default: TA_F, else lst_night, else lst_day). Returns ``out_dir``.
    """
    from ciml_ter.model import load_ensemble, read_site_table

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

    def add(name, test, over=None, **extra):
        entry = scale_metrics(frame, test, over, hl)
        entry = {k: entry[k] for k in ("test", "overall", "site_scale", "by_pft", "by_lat_band") if k in entry}
        covered = np.isfinite(test)
        if not covered.all():
            entry["model_on_same_rows"] = metrics(obs[covered], oof[covered])
        baselines[name] = {**entry, **extra}
        predictions[f"{name}_test"] = test

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
    causal_info = ensemble.manifest.get("causal_info")
    if causal_info is None:
        from ciml_ter.causal import run_pcmciplus

        causal_info = run_pcmciplus(frame, ensemble.features, ensemble.config)
    effects = np.abs([causal_info["val_matrix"].get(f, 0.0) for f in ensemble.features])
    effects = effects / effects.sum() if effects.sum() > 0 else effects
    rows = np.random.default_rng(config.seed).permutation(len(x))[:shap_rows]
    structure = pd.DataFrame({"feature": ensemble.features, "pcmci_effect": effects,
                              "causal_weight": [(ensemble.manifest["weights"] or {}).get(f, np.nan)
                                                for f in ensemble.features],
                              "xgb_weight_causal": weight_importance(ensemble) if ensemble is not plain else np.nan,
                              "xgb_weight_plain": weight_importance(plain),
                              "shap_causal": shap_importance(ensemble, x[rows]) if ensemble is not plain else np.nan,
                              "shap_plain": shap_importance(plain, x[rows])})
    structure_summary = {
        "spearman_shap_causal_vs_pcmci": _spearman(structure["shap_causal"].to_numpy(), effects)
        if ensemble is not plain else None,
        "spearman_shap_plain_vs_pcmci": _spearman(structure["shap_plain"].to_numpy(), effects),
        "shap_rows": len(rows),
    }
    tick("model structure")

    metrics_json = {
        "model": {**model_metrics, "model_id": ensemble.model_id, "causal": ensemble.manifest["causal"],
                  "n_unseen_sites": len(set(table.sites[~known]))},
        "baselines": baselines,
        "structure": structure_summary,
        "units": UNITS,
        "config_hash": ensemble.manifest["config_hash"],
        "evaluation_config_hash": config.stable_hash(),
        "sites_path": str(sites_path),
        "n_sites": int(frame["site"].nunique()), "n_samples": len(frame),
        "n_folds": n_folds, "n_seeds": ensemble.manifest["n_seeds"],
        "slopes": "slope_obs_on_est: observed regressed on estimated; slope_est_on_obs: estimated on observed",
    }
    (out / "metrics.json").write_text(json.dumps(_clean(metrics_json), indent=1), encoding="utf-8")

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
