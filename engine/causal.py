"""Causal feature weights from PCMCI+ (tigramite) on the site-month table.

Each site is one dataset of tigramite's "multiple datasets" mode (its months in time order);
missing values are masked (mask_type "xyz": a sample is left out of a conditional-independence
test when any variable of that test is missing at that month), never filled in. The test is
RobustParCorr, with ``config.causal.tau_max`` (0: contemporaneous links only) and
``config.causal.pc_alpha``.

Weight of feature j = |val_matrix[ter, j, 0]| for the features linked to ``ter`` in the
estimated graph, normalised to sum 1; every unlinked feature gets ``config.causal.weight_floor``
and the vector is normalised again (so it can still be sampled by XGBoost). When no feature is
linked, all features get the same weight.

Run pooled over all sites and, with ``config.causal.per_pft``, per PFT. A PFT with fewer sites
than ``config.train.folds`` is not run on its own: its entry says ``"fallback": "pooled"`` and
carries the pooled weights. A feature that is constant (or all missing) within a group cannot
be tested there; it is left out of that group's PCMCI+ run and gets the floor weight.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
from ciml_ter.config import PipelineConfig
from ciml_ter.documents import read_document
from ciml_ter.files import atomic_write
from ciml_ter.progress import ProgressCallback

log = logging.getLogger(__name__)

FORMAT = "ciml-ter-causal-weights/1"
MIN_SAMPLES = 20  # fewer complete site-months than this cannot support PCMCI+ tests


def _site_datasets(frame, variables: list[str]) -> tuple[dict, dict, int]:
    """One (T, N) array per site plus its NaN mask (True = missing); data NaNs get a finite
    placeholder that the mask keeps out of every test."""
    data, mask = {}, {}
    n_samples = 0
    for i, (_, group) in enumerate(frame.groupby("site", sort=True)):
        values = group[variables].to_numpy(dtype=np.float64)
        missing = ~np.isfinite(values)
        if missing.all(axis=1).all():
            continue
        data[i] = np.where(missing, 0.0, values)  # placeholder only: masked below
        mask[i] = missing
        n_samples += int((~missing).all(axis=1).sum())
    return data, mask, n_samples


def _normalise(effects: np.ndarray, linked: np.ndarray, floor: float) -> np.ndarray:
    w = np.where(linked, np.abs(effects), 0.0)
    if w.sum() <= 0:
        return np.full(len(w), 1.0 / len(w))
    w = w / w.sum()
    w = np.where(linked, w, floor)
    return w / w.sum()


def run_pcmciplus(frame, features: list[str], config: PipelineConfig, target: str = "ter") -> dict:
    """PCMCI+ on one group of sites; the target's row of the graph, p-values and effects, weights."""
    from scipy.stats import ConstantInputWarning
    from tigramite import data_processing as pp
    from tigramite.independence_tests.robust_parcorr import RobustParCorr
    from tigramite.pcmci import PCMCI

    c = config.causal
    usable = [f for f in features
              if frame[f].notna().sum() > 1 and np.nanstd(frame[f].to_numpy(dtype=np.float64)) > 0]
    excluded = [f for f in features if f not in usable]
    variables = usable + [target]
    data, mask, n_samples = _site_datasets(frame, variables)
    n_sites = len(data)
    effects = np.zeros(len(features))
    pvalues = np.ones(len(features))
    links = [""] * len(features)
    if usable and n_samples >= MIN_SAMPLES:
        dataframe = pp.DataFrame(data, mask=mask, var_names=variables, analysis_mode="multiple")
        test = RobustParCorr(mask_type="xyz", significance="analytic")
        pcmci = PCMCI(dataframe=dataframe, cond_ind_test=test, verbosity=0)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            # perfectly collinear predictors (e.g. a duplicated column) leave constant residuals:
            # scipy warns and returns NaN, which is read below as "no evidence of a link"
            warnings.simplefilter("ignore", ConstantInputWarning)
            results = pcmci.run_pcmciplus(tau_min=0, tau_max=c.tau_max, pc_alpha=c.pc_alpha)
        t = len(variables) - 1
        for i, f in enumerate(usable):
            j = features.index(f)
            # strongest link over lags 0..tau_max (tau_max 0: the contemporaneous one)
            lags = [lag for lag in range(c.tau_max + 1) if results["graph"][t, i, lag] != ""]
            lag = max(lags, key=lambda g: abs(results["val_matrix"][t, i, g])) if lags else 0
            links[j] = str(results["graph"][t, i, lag])
            effects[j] = float(np.nan_to_num(results["val_matrix"][t, i, lag], nan=0.0))
            pvalues[j] = float(np.nan_to_num(results["p_matrix"][t, i, lag], nan=1.0))
    elif usable:
        log.warning("PCMCI+ skipped: %d complete site-months, need at least %d", n_samples, MIN_SAMPLES)
    linked = np.array([bool(g) for g in links])
    weights = _normalise(effects, linked, c.weight_floor)
    return {
        "weights": dict(zip(features, map(float, weights))),
        "graph": dict(zip(features, links)),
        "parents": [f for f, g in zip(features, links) if g],
        "p_values": dict(zip(features, map(float, pvalues))),
        "val_matrix": dict(zip(features, map(float, effects))),
        "excluded": excluded,
        "n_sites": n_sites,
        "n_samples": n_samples,
    }


def discover_weights(table, config: PipelineConfig,
                     progress: ProgressCallback = None) -> dict:
    """Pooled and per-PFT causal weights for a ``SiteTable`` (see the module docstring)."""
    frame, features = table.frame, table.features
    min_sites = config.train.folds
    pfts = sorted(frame["pft"].astype(str).unique()) if config.causal.per_pft else []
    total = 1 + len(pfts)
    started = time.perf_counter()
    pooled = run_pcmciplus(frame, features, config)
    if progress:
        progress(1, total, f"PCMCI+ pooled: parents {', '.join(pooled['parents']) or 'none'}")
    by_pft = {}
    for k, pft in enumerate(pfts, start=2):
        sub = frame[frame["pft"].astype(str) == pft]
        n_sites = sub["site"].nunique()
        if n_sites < min_sites:
            by_pft[pft] = {**pooled, "n_sites": int(n_sites), "n_samples": len(sub),
                           "fallback": "pooled",
                           "reason": f"{n_sites} sites < {min_sites} (train.folds)"}
        else:
            by_pft[pft] = run_pcmciplus(sub, features, config)
        if progress:
            progress(k, total, f"PCMCI+ {pft}")
    import tigramite

    return {
        "format": FORMAT, "target": "ter", "features": list(features),
        "pooled": pooled, "by_pft": by_pft,
        "settings": {"method": "PCMCI+", "test": "RobustParCorr", "mask_type": "xyz",
                     "analysis_mode": "multiple", "tau_min": 0, "tau_max": config.causal.tau_max,
                     "pc_alpha": config.causal.pc_alpha, "weight_floor": config.causal.weight_floor,
                     "per_pft": config.causal.per_pft, "min_sites_per_pft": min_sites,
                     "weight": "|val_matrix[ter, j, 0]| of linked features, normalised; floor for unlinked",
                     "tigramite": getattr(tigramite, "__version__", "5.2")},
        "config_hash": config.stable_hash(), "sites_path": table.path,
        "n_sites": pooled["n_sites"], "n_samples": pooled["n_samples"],
        "seconds": round(time.perf_counter() - started, 3),
    }


def parent_scores(discovered: list[str], true_parents: list[str]) -> dict:
    """Precision and recall of discovered parents against the known ones."""
    found, truth = set(discovered), set(true_parents)
    hit = len(found & truth)
    return {"precision": hit / len(found) if found else 0.0,
            "recall": hit / len(truth) if truth else 1.0, "true_positives": hit}


def summary(result: dict) -> dict:
    """What the model manifest keeps of a causal result (pooled effects and settings)."""
    pooled = result["pooled"]
    return {"val_matrix": pooled["val_matrix"], "parents": pooled["parents"],
            "p_values": pooled["p_values"], "settings": result["settings"],
            "n_sites": result["n_sites"], "n_samples": result["n_samples"]}


def write_weights(result: dict, path: str | Path) -> Path:
    """Write a ``discover_weights`` result as a JSON document (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(result, indent=1))


def read_weights(path: str | Path) -> dict:
    """Read a weights JSON written by ``ciml-ter causal``; InputError when it is not one."""
    return read_document(path, FORMAT, "causal weights file (from `ciml-ter causal`)")
