"""Causal strengths of the drivers of TER from PCMCI+ (tigramite), and the feature weights they give.

Each site is one dataset of tigramite's "multiple datasets" mode (its months in time order);
missing values are masked (mask_type "xyz": a sample is left out of a conditional-independence
test when any variable of that test is missing at that month), never filled in. The test is
ParCorr on normal scores (each variable rank-transformed once, as RobustParCorr does in every
test), with ``config.causal.tau_max`` (0: contemporaneous links only) and
``config.causal.pc_alpha``.

Link assumptions (``link_assumptions``): a driver may cause TER, TER causes no driver (at the
monthly scale respiration does not drive the weather or the canopy), drivers are free among
themselves. So no lagged link runs from TER into a driver, and every contemporaneous link
between a driver and TER is oriented into TER. A feature is a parent only when its link is
oriented feature --> TER; any other mark on it (none should arise under these assumptions, the
rule does not rely on it) is "ambiguous" and weighted like a sibling (below). Strength =
|val_matrix| of a parent's link, 0 otherwise. The assumption is a premise, not a finding: a
driver that TER itself moved within the same month would be taken for a parent.

Collinear drivers (e.g. air and soil temperature and incoming long-wave radiation) can mask each
other in the conditional tests so that none of them keeps a link. Drivers whose |Pearson r|
reaches ``causal.collinear_r`` form groups (``collinear_groups``); when no member of a group has
a link to TER, PCMCI+ runs once more with the group replaced by its member most correlated with TER. If
that representative is a parent, the other members are its siblings and get
``causal.sibling_share`` of its weight (``group_weights``). A group in which PCMCI+ already found
a parent is resolved: its other members are not causes and keep the floor.

Run pooled over all sites and, with ``causal.weights = "per_pft"``, per PFT; a PFT with fewer
than ``causal.min_pft_sites`` sites is not run on its own (``"fallback": "pooled"``). Training
uses ``driver_weights``: pooled weights, or the PFTs' weights averaged by their share of the
training rows. A feature that is constant (or all missing) within a group cannot be tested there;
it is left out of that group's PCMCI+ run and gets no strength.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.config import CausalConfig, PipelineConfig
from ciml_ter.documents import read_document
from ciml_ter.files import atomic_write
from ciml_ter.progress import ProgressCallback

log = logging.getLogger(__name__)

FORMAT = "ciml-ter-causal-weights/2"
MIN_SAMPLES = 20  # fewer complete site-months than this cannot support PCMCI+ tests
ORIENTED = "-->"  # the only mark on a feature -> TER link that makes the feature a parent


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Each column's values replaced by their normal scores, Phi^-1(rank / (n + 1)) over the
    column's finite values (ties share their mean rank); NaN stays NaN."""
    from scipy.stats import norm, rankdata

    out = np.full(values.shape, np.nan)
    for j in range(values.shape[1]):
        finite = np.isfinite(values[:, j])
        n = int(finite.sum())
        if n:
            out[finite, j] = norm.ppf(rankdata(values[finite, j]) / (n + 1))
    return out


def _site_datasets(frame, variables: list[str], tau_max: int = 0) -> tuple[dict, dict, int]:
    """One (T, N) array per site plus its NaN mask (True = missing); data NaNs get a finite
    placeholder that the mask keeps out of every test. With ``tau_max`` 0 every test is
    contemporaneous, so the sites are stacked into one dataset: the same samples, without
    tigramite's per-dataset loop in each test."""
    data, mask = {}, {}
    n_samples = 0
    scores = normal_scores(frame[variables].to_numpy(dtype=np.float64))
    groups = frame.groupby("site", sort=True).indices.values() if tau_max > 0 else [np.arange(len(frame))]
    for i, rows in enumerate(groups):
        values = scores[rows]
        missing = ~np.isfinite(values)
        if missing.all(axis=1).all():
            continue
        data[i] = np.where(missing, 0.0, values)  # placeholder only: masked below
        mask[i] = missing
        n_samples += int((~missing).all(axis=1).sum())
    return data, mask, n_samples


def link_assumptions(n_drivers: int, tau_max: int) -> dict:
    """tigramite link assumptions with TER the last variable: any driver may cause TER (at lags
    0..tau_max), TER causes no driver, drivers among themselves are free (lagged links point
    forward in time)."""
    target = n_drivers
    drivers = range(n_drivers)
    lagged = [-lag for lag in range(1, tau_max + 1)]
    links = {j: {**{(i, 0): "o?o" for i in drivers if i != j},
                 **{(i, lag): "-?>" for i in drivers for lag in lagged}} for j in drivers}
    links[target] = {**{(i, 0): "-?>" for i in drivers},
                     **{(i, lag): "-?>" for i in [*drivers, target] for lag in lagged}}
    return links


def collinear_groups(frame, features: list[str], r_min: float) -> list[list[str]]:
    """Connected groups of ``features`` whose pairwise |Pearson r| reaches ``r_min`` (single linkage,
    pairwise complete rows); groups of one feature included."""
    corr = frame[features].corr().abs().fillna(0.0).to_numpy()
    group = list(range(len(features)))

    def root(i):
        while group[i] != i:
            i = group[i]
        return i

    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            if corr[i, j] >= r_min:
                group[root(j)] = root(i)
    members: dict[int, list[str]] = {}
    for i, f in enumerate(features):
        members.setdefault(root(i), []).append(f)
    return list(members.values())


def _pcmciplus_links(frame, usable: list[str], config: PipelineConfig, target: str) -> dict | None:
    """feature -> (mark on its link to TER, effect, p-value) from one PCMCI+ run over ``usable``
    (strongest lag); None when there are too few complete site-months."""
    from scipy.stats import ConstantInputWarning
    from tigramite import data_processing as pp
    from tigramite.independence_tests.parcorr import ParCorr
    from tigramite.pcmci import PCMCI

    c = config.causal
    variables = usable + [target]
    data, mask, n_samples = _site_datasets(frame, variables, c.tau_max)
    if n_samples < MIN_SAMPLES:
        log.warning("PCMCI+ skipped: %d complete site-months, need at least %d", n_samples, MIN_SAMPLES)
        return None
    mode = "multiple" if len(data) > 1 else "single"
    dataframe = pp.DataFrame(data, mask=mask, var_names=variables, analysis_mode=mode)
    pcmci = PCMCI(dataframe=dataframe, cond_ind_test=ParCorr(mask_type="xyz", significance="analytic"),
                  verbosity=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # perfectly collinear predictors (e.g. a duplicated column) leave constant residuals:
        # scipy warns and returns NaN, which is read below as "no evidence of a link"
        warnings.simplefilter("ignore", ConstantInputWarning)
        results = pcmci.run_pcmciplus(tau_min=0, tau_max=c.tau_max, pc_alpha=c.pc_alpha,
                                      link_assumptions=link_assumptions(len(usable), c.tau_max))
    t = len(usable)
    graph, val, p = results["graph"], results["val_matrix"], results["p_matrix"]
    out = {}
    for i, f in enumerate(usable):
        # graph[i, t, lag] is the mark of feature(t - lag) -> TER(t); the strongest lag counts
        lags = [lag for lag in range(c.tau_max + 1) if graph[i, t, lag] != ""]
        lag = max(lags, key=lambda g: abs(val[i, t, g])) if lags else 0
        out[f] = (str(graph[i, t, lag]), float(np.nan_to_num(val[i, t, lag], nan=0.0)),
                  float(np.nan_to_num(p[i, t, lag], nan=1.0)))
    return out


def run_pcmciplus(frame, features: list[str], config: PipelineConfig, target: str = "ter") -> dict:
    """PCMCI+ on one group of sites under ``link_assumptions``: for each feature its mark on the
    link to TER, p-value, effect (val_matrix), causal strength (|effect| of an oriented
    feature --> TER link, else 0), its most correlated parent, and the config's weights.

    Collinear drivers: when no member of a group (``collinear_groups`` at ``causal.collinear_r``)
    has a link to TER, PCMCI+ runs once more with each such group replaced by its member most correlated
    with TER, which then stands for the group (``group_tests``)."""
    c = config.causal
    usable = [f for f in features
              if frame[f].notna().sum() > 1 and np.nanstd(frame[f].to_numpy(dtype=np.float64)) > 0]
    excluded = [f for f in features if f not in usable]
    links = _pcmciplus_links(frame, usable, config, target) if usable else None
    links = links or {}
    group_tests = []
    if links:
        idle = [g for g in collinear_groups(frame, usable, c.collinear_r)
                if len(g) > 1 and not any(links[f][0] for f in g)]
        if idle:
            with_target = frame[usable].corrwith(frame[target]).abs().fillna(0.0)
            stand_ins = {max(g, key=lambda f: with_target[f]): g for g in idle}
            reduced = [f for f in usable if f in stand_ins or not any(f in g for g in idle)]
            again = _pcmciplus_links(frame, reduced, config, target) or {}
            for f, g in stand_ins.items():
                if f in again:
                    links[f] = again[f]
                group_tests.append({"group": g, "representative": f, "mark": links[f][0]})
    marks = [links.get(f, ("", 0.0, 1.0)) for f in features]
    graph = [m[0] for m in marks]
    strength = [abs(m[1]) if m[0] == ORIENTED else 0.0 for m in marks]
    parents = [f for f, g in zip(features, graph) if g == ORIENTED]
    n_sites = int(frame.loc[frame[usable].notna().any(axis=1), "site"].nunique()) if usable else 0
    n_samples = int(frame[usable + [target]].notna().all(axis=1).sum()) if usable else 0
    result = {
        "graph": dict(zip(features, graph)),
        "parents": parents,
        "ambiguous": [f for f, g in zip(features, graph) if g and g != ORIENTED],
        "ambiguous_strength": {f: abs(m[1]) for f, m in zip(features, marks) if m[0] and m[0] != ORIENTED},
        "strength": dict(zip(features, map(float, strength))),
        "p_values": {f: m[2] for f, m in zip(features, marks)},
        "val_matrix": {f: m[1] for f, m in zip(features, marks)},
        "group_tests": group_tests,
        "siblings": {f: t["representative"] for t in group_tests if t["mark"]
                     for f in t["group"] if f != t["representative"]},
        "excluded": excluded,
        "n_sites": n_sites,
        "n_samples": n_samples,
    }
    result["weights"] = group_weights(result, features, c)
    return result


def group_weights(result: dict, features: list[str], c: CausalConfig) -> dict[str, float]:
    """One group's feature weights (sum 1). With s the strength of a parent, or of an ambiguous
    link (``ambiguous_strength``), over the largest: a parent gets floor + (1 - floor) x s^power;
    an ambiguous driver ``sibling_share`` times that; a member of a collinear group that a
    representative stood for (``siblings``) ``sibling_share`` x the representative's weight; none
    below the floor, which the rest get. With no parent nor ambiguous link all weigh the same."""
    parent = np.array([result["strength"][f] for f in features])
    ambiguous = np.array([result["ambiguous_strength"].get(f, 0.0) for f in features])
    strength = np.maximum(parent, ambiguous)
    if strength.max() <= 0:
        return {f: 1.0 / len(features) for f in features}
    w = np.full(len(features), c.weight_floor)
    linked = strength > 0
    w[linked] = c.weight_floor + (1 - c.weight_floor) * (strength[linked] / strength.max()) ** c.weight_power
    w[ambiguous > 0] = np.maximum(c.weight_floor, c.sibling_share * w[ambiguous > 0])
    for f, representative in result["siblings"].items():
        k = features.index(f)
        w[k] = max(c.weight_floor, c.sibling_share * w[features.index(representative)])
    return dict(zip(features, map(float, w / w.sum())))


def pft_shares(pfts) -> dict[str, float]:
    """Share of the rows of each PFT."""
    counts = pd.Series(np.asarray(pfts).astype(str)).value_counts()
    return {str(k): float(v / counts.sum()) for k, v in counts.items()}


def driver_weights(result: dict, c: CausalConfig, pfts=None) -> dict[str, float]:
    """The drivers' weights for training (sum 1) from a ``discover_weights`` result under ``c``
    (which may differ from the one it was discovered with): "pooled", or "per_pft" = each PFT's
    weights (pooled ones for a PFT run on too few sites) averaged by the PFT's share of the rows
    ``pfts`` (default: the shares of the table discovered on)."""
    if "fixed_weights" in result:
        return dict(result["fixed_weights"])
    features = result["features"]
    if c.weights == "pooled" or not result["by_pft"]:
        return group_weights(result["pooled"], features, c)
    shares = pft_shares(pfts) if pfts is not None else result["pft_shares"]
    total = np.zeros(len(features))
    for pft, share in shares.items():
        entry = result["by_pft"].get(pft)
        source = result["pooled"] if entry is None or entry.get("fallback") else entry
        w = group_weights(source, features, c)
        total += share * np.array([w[f] for f in features])
    return dict(zip(features, map(float, total / total.sum())))


def fixed_weights(weights: dict[str, float]) -> dict:
    """A causal result that trains with ``weights`` (driver -> weight) as given: for benchmarks and
    tests that fix the weights instead of discovering them."""
    return {"format": FORMAT, "features": list(weights), "fixed_weights": dict(weights)}


def discover_weights(table, config: PipelineConfig,
                     progress: ProgressCallback = None, features: list[str] | None = None) -> dict:
    """Pooled and per-PFT causal results for a ``SiteTable`` over ``features`` (default: the
    table's predictors); see the module docstring."""
    frame = table.frame
    features = list(features or table.features)
    c = config.causal
    pfts = sorted(frame["pft"].astype(str).unique()) if c.weights == "per_pft" else []
    total = 1 + len(pfts)
    started = time.perf_counter()
    pooled = run_pcmciplus(frame, features, config)
    if progress:
        progress(1, total, f"PCMCI+ pooled: parents {', '.join(pooled['parents']) or 'none'}")
    by_pft = {}
    for k, pft in enumerate(pfts, start=2):
        sub = frame[frame["pft"].astype(str) == pft]
        n_sites = sub["site"].nunique()
        if n_sites < c.min_pft_sites:
            by_pft[pft] = {"fallback": "pooled", "n_sites": int(n_sites), "n_samples": len(sub),
                           "reason": f"{n_sites} sites < {c.min_pft_sites} (causal.min_pft_sites)"}
        else:
            by_pft[pft] = run_pcmciplus(sub, features, config)
        if progress:
            progress(k, total, f"PCMCI+ {pft}")
    import tigramite

    result = {
        "format": FORMAT, "target": "ter", "features": features,
        "pooled": pooled, "by_pft": by_pft, "pft_shares": pft_shares(frame["pft"]),
        "settings": {"method": "PCMCI+", "test": "ParCorr on normal scores", "mask_type": "xyz",
                     "analysis_mode": "multiple (one per site) when tau_max > 0, else the sites stacked", "tau_min": 0, "tau_max": c.tau_max,
                     "pc_alpha": c.pc_alpha, "link_assumptions": "driver -?> ter; no ter -> driver; "
                     "drivers o?o among themselves", "parents": f"only oriented links ({ORIENTED} ter)",
                     "weights": c.weights, "min_pft_sites": c.min_pft_sites, "collinear_r": c.collinear_r,
                     "sibling_share": c.sibling_share, "weight_floor": c.weight_floor,
                     "weight_power": c.weight_power, "tigramite": getattr(tigramite, "__version__", "5.2")},
        "config_hash": config.stable_hash(), "sites_path": table.path,
        "n_sites": pooled["n_sites"], "n_samples": pooled["n_samples"],
        "seconds": round(time.perf_counter() - started, 3),
    }
    result["weights"] = driver_weights(result, c)
    return result


def parent_scores(discovered: list[str], true_parents: list[str]) -> dict:
    """Precision and recall of discovered parents against the known ones."""
    found, truth = set(discovered), set(true_parents)
    hit = len(found & truth)
    return {"precision": hit / len(found) if found else 0.0,
            "recall": hit / len(truth) if truth else 1.0, "true_positives": hit}


def summary(result: dict) -> dict:
    """What the model manifest keeps of a causal result (pooled effects and settings)."""
    if "fixed_weights" in result:
        return {"fixed_weights": result["fixed_weights"]}
    pooled = result["pooled"]
    return {"val_matrix": pooled["val_matrix"], "parents": pooled["parents"],
            "ambiguous": pooled["ambiguous"],
            "siblings": pooled["siblings"], "strength": pooled["strength"], "p_values": pooled["p_values"], "settings": result["settings"],
            "n_sites": result["n_sites"], "n_samples": result["n_samples"]}


def write_weights(result: dict, path: str | Path) -> Path:
    """Write a ``discover_weights`` result as a JSON document (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(result, indent=1))


def read_weights(path: str | Path) -> dict:
    """Read a weights JSON written by ``ciml-ter causal``; InputError when it is not one."""
    return read_document(path, FORMAT, "causal weights file (from `ciml-ter causal`)")
