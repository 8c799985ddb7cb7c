"""Accuracy of the ensemble on the flux sites, baselines on the same folds, model structure.

Metrics (units of TER, g C m-2 month-1, except the ratios):
- MAE = mean |obs - est|; rMAE = MAE / mean(obs); R2 = 1 - SS_res / SS_tot (about mean(obs));
- ``slope_obs_on_est``: OLS slope of observed regressed on estimated (cov(obs, est) / var(est));
  ``slope_est_on_obs``: OLS slope of estimated regressed on observed (cov / var(obs));
- at site-month scale (every row), site scale (mean obs and mean est per site), per PFT and per
  site (site-month rows of that PFT / site) and per latitude band (``gridstats.lat_bands``, the
  same as analyze's regions; the top band starts at ``config.analysis.high_latitude``, 60 N by
  default);
- "test" uses each row's out-of-fold estimate; "overall" the full ensemble on every row;
- ``site_bootstrap``: percentile intervals of test MAE and paired MAE differences between
  models, resampling whole sites with replacement (rows of a site are not independent).

Baselines, on the model's own fold assignment: plain XGBoost (same config and seeds, no causal
weights), Lloyd-Taylor and Q10 fitted per PFT on temperature with scipy (a PFT with fewer than
``MIN_FIT_SAMPLES`` training rows in a fold uses the fit on all PFTs of that fold), and a random
forest (scikit-learn on every device). A baseline that cannot predict a row
(missing temperature) leaves it out; its entry then reports the model on the same rows too.

Sites of the evaluated table that are not in the model's fold assignment were never used for
training: their "test" estimate is the full ensemble (and the baselines fitted on all folds).
``against_truth`` scores a TER map against a known truth (the synthetic world; demo and report).
"""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pandas as pd
from ciml_ter.device import CPU
from ciml_ter.errors import InputError
from ciml_ter.gridstats import annual_totals, budget, in_band, lat_bands
from ciml_ter.kernels import pixel_area
from ciml_ter.inference import predict_rows

log = logging.getLogger(__name__)

T0_LLOYD_TAYLOR = 227.13  # K
T_REF = 288.15  # K
MIN_FIT_SAMPLES = 10
TEMPERATURE_COLUMNS = ("TA_F", "lst_night", "lst_day")  # first present wins; TA_F is degC
METRIC_KEYS = ("mae", "rmae", "r2", "slope_obs_on_est", "slope_est_on_obs", "n")
# What the CLI and the report call each baseline of metrics.json (the model: "causal XGBoost").
BASELINE_NAMES = {"xgboost_plain": "plain XGBoost", "lloyd_taylor": "Lloyd–Taylor", "q10": "Q10",
                  "random_forest": "random forest"}



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


def against_truth(truth: np.ndarray, estimate: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                  years: np.ndarray, land: np.ndarray | None = None) -> dict:
    """A (time, lat, lon) TER estimate against the known truth on the same grid and months: the
    pixel-month fit (``metrics``, truth as the observation) over the cells both have (and
    ``land``), the mean maps over the cells with every month, and the true annual budget
    (Pg C yr-1, complete years of ``years``, the year of each month)."""
    both = np.isfinite(truth) & np.isfinite(estimate)
    if land is not None:
        both &= land[None]
    cells = both.all(axis=0)
    with np.errstate(invalid="ignore"):
        true_mean = np.where(cells, np.where(both, truth, 0).sum(axis=0) / len(truth), np.nan)
        est_mean = np.where(cells, np.where(both, estimate, 0).sum(axis=0) / len(truth), np.nan)
    t_years, totals = annual_totals(np.where(cells, truth, np.nan), years)
    area = np.where(cells, pixel_area(lat, lon), np.nan)
    return {"fit": metrics(truth[both], estimate[both]), "true_mean": true_mean, "est_mean": est_mean,
            "years": t_years, "true_budget": budget(totals, area)}


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
            sel = in_band(lat, south, north)
            if sel.any():
                out["by_lat_band"][name] = {k: metrics(obs[sel], v[sel]) for k, v in sets.items()}
    return out


def site_bootstrap(obs, estimates: dict[str, np.ndarray], sites, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95, reference: str | None = None, draws: np.ndarray | None = None) -> dict:
    """Test MAE of each model with a site-bootstrap interval, and paired differences of MAE.

    Whole sites are resampled with replacement (``n_boot`` draws of as many sites as there are);
    every model is scored on the same resampled sites, so the differences are paired. Rows where
    ``obs`` or any estimate is not finite are left out of every model (``n_rows_dropped``).
    MAEs and differences are in the units of ``obs`` (TER: g C m-2 month-1).

    Returns ``{"models": {name: {"mae", "low", "high"}}, "differences": {name: {"difference",
    "low", "high", "share_below_zero"}}, ...}``: ``mae`` over all kept rows, ``low``/``high`` the
    percentile interval at ``level`` of the resampled MAEs; ``difference`` is MAE(reference) -
    MAE(name) (``reference`` defaults to the first model), ``share_below_zero`` the share of
    resamples where the reference has the lower MAE. ``draws`` ((n_boot, n_sites) indices into
    the sorted sites that keep rows) replaces the seeded draws.
    """
    if not estimates:
        raise ValueError("site_bootstrap: no estimates to compare")
    if not 0 < level < 1:
        raise ValueError(f"site_bootstrap: level must be between 0 and 1, not {level}")
    reference = next(iter(estimates)) if reference is None else reference
    if reference not in estimates:
        raise ValueError(f"site_bootstrap: reference {reference!r} is not one of {', '.join(estimates)}")
    obs, sites = np.asarray(obs, dtype=np.float64), np.asarray(sites)
    lengths = {name: len(v) for name, v in estimates.items() if len(v) != len(obs)}
    if lengths or len(sites) != len(obs):
        raise ValueError(f"site_bootstrap: {len(obs)} observations but {len(sites)} sites and estimates of "
                         f"length {lengths or 'as many'}")
    est = np.column_stack([np.asarray(v, dtype=np.float64) for v in estimates.values()])
    keep = np.isfinite(obs) & np.isfinite(est).all(axis=1)
    if not keep.any():
        raise ValueError("site_bootstrap: no row has an observation and every estimate")
    _, site_of_row = np.unique(sites[keep], return_inverse=True)
    n_sites = int(site_of_row.max()) + 1
    abs_sum = np.zeros((n_sites, est.shape[1]))
    np.add.at(abs_sum, site_of_row, np.abs(est[keep] - obs[keep, None]))
    rows = np.bincount(site_of_row, minlength=n_sites).astype(np.float64)
    seeded = draws is None
    if seeded:
        if n_boot < 1:
            raise ValueError(f"site_bootstrap: n_boot must be at least 1, not {n_boot}")
        draws = np.random.default_rng(seed).integers(0, n_sites, size=(n_boot, n_sites))
    draws = np.asarray(draws)
    if draws.ndim != 2 or not draws.size or draws.shape[1] != n_sites or draws.min() < 0 or draws.max() >= n_sites:
        raise ValueError(f"site_bootstrap: draws must be a (n_boot >= 1, {n_sites}) array of site indices "
                         f"0 to {n_sites - 1}, not shape {draws.shape}")
    n_boot = len(draws)
    counts = np.bincount((draws + n_sites * np.arange(n_boot)[:, None]).ravel(),
                         minlength=n_boot * n_sites).reshape(n_boot, n_sites).astype(np.float64)
    mae = counts @ abs_sum / (counts @ rows)[:, None]  # (n_boot, model)
    point = abs_sum.sum(axis=0) / rows.sum()
    tails = [(1 - level) / 2, (1 + level) / 2]
    low, high = np.quantile(mae, tails, axis=0)
    keys = list(estimates)
    ref = keys.index(reference)
    differences = {}
    for k, name in enumerate(keys):
        if k != ref:
            diff = mae[:, ref] - mae[:, k]
            d_low, d_high = np.quantile(diff, tails)
            differences[name] = {"difference": float(point[ref] - point[k]), "low": float(d_low),
                                 "high": float(d_high), "share_below_zero": float(np.mean(diff < 0))}
    return {"models": {name: {"mae": float(point[k]), "low": float(low[k]), "high": float(high[k])}
                       for k, name in enumerate(keys)},
            "reference": reference, "differences": differences,
            "difference": f"MAE of {reference} minus MAE of the other model (paired, same resampled sites)",
            "level": level, "n_boot": n_boot, "seed": seed if seeded else None, "n_sites": n_sites, "n_rows": int(keep.sum()),
            "n_rows_dropped": int((~keep).sum())}


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
    values = predict_rows(ensemble.merged_on(CPU), x, shap=True).shap
    imp = np.abs(values).mean(axis=0).astype(np.float64)
    return imp / imp.sum() if imp.sum() > 0 else imp


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
