"""Calibrated prediction intervals: split-conformal, site-grouped, normalised by the ensemble's
spread, Mondrian by PFT; their nested evaluation at the towers; the extrapolation rule.

Method (``[uncertainty]`` of the config; ``calibrate``):

- every tower-month has a held-out estimate ŷ and spread σ̂ built as the map's are at a pixel: the
  map's ŷ and σ̂ are the mean and standard deviation (ddof 0) across the K fold models (each the
  mean over its seeds), none of which saw the pixel. At a tower of fold f they are the mean and
  standard deviation across the K models that never saw it: fold f's and the K - 1 nested models
  trained without f (each also without one other fold; ``train.nested_spread``,
  ``Ensemble.unseen_ensemble``). The mean of K models errs less than any one of them, so
  intervals calibrated on the one model of fold f are too wide on the map (README "Uncertainty").
  A model without nested members falls back to fold f's mean and the standard deviation across
  the *other* folds' means (``held_out``), which were trained with the tower and agree more there
  than anywhere on the map: the map's intervals are then too wide. A site the model never saw has
  every fold held out: ŷ and σ̂ are the map's;
- score ``|y − ŷ| / scale`` with ``scale = sqrt(τ² + κ² (σ̂ + s0)²)`` (``site_bias_scale``), an
  error of two parts fitted on the calibration rows of a PFT (or of all PFTs): a site's own
  bias, which no spread shows (every model can miss a site alike: on the development towers an
  evergreen broadleaf site is off by more than its estimate where the models agree closely), τ²
  the sites' mean residual squared less its sampling variance, averaged over the sites; and a
  part that grows where the models disagree, κ² the rows' mean squared deviation from their
  site's mean residual over their mean (σ̂ + s0)². ``s0 = offset × median σ̂`` of the calibration
  rows (a scale-free small offset: no score blows up where the folds happen to agree). With
  ``[uncertainty] site_bias = false`` τ = 0 and the score is ``|y − ŷ| / (σ̂ + s0)`` (κ cancels);
- the quantile at level α is the finite-sample conformal one, the ceil((n + 1) α)-th smallest of
  the n calibration scores (infinite when that exceeds n); one per PFT whose calibration rows come
  from at least ``min_group_sites`` sites (Mondrian, with the PFT's own τ and κ), the pooled one
  for every other PFT;
- the interval is ŷ ± q · scale; on the map σ̂ is ``ter_std`` and the PFT the land-cover layer's
  class (pooled without one).

Two targets. The quantiles above are those of a tower's *observed* monthly TER, which carries the
tower's random error ε (``ter_random_error``, one standard deviation s per tower-month, from the
flux files: ``data.flux``); the map's intervals are for the *true* TER. The flux quantile removes
ε by simulation–extrapolation (SIMEX; Cook & Stefanski 1994, J. Am. Stat. Assoc. 89, 1314): the
quantile q(λ) of the scores of y + √λ·s·z (z standard normal, ``SIMEX_DRAWS`` draws averaged) at
λ = 0 and ``SIMEX_LAMBDAS``, i.e. with (1 + λ) times the towers' own error variance; q² is fitted
linear in λ (exact when the error and the noise are normal) and read at λ = -1, no noise at all
(``flux_quantiles``). Months without a random error count as exact; without any the two targets
are the same. The flux quantile is an estimate, not a finite-sample conformal bound.

Nested evaluation (``nested_intervals``): the quantiles for the towers of one fold come from the
rows of the other folds' sites only, so no tower calibrates its own interval; sites the model never
saw get the quantiles of every known site. Beside the conformal interval: the pooled conformal
interval on |y − ŷ| (not normalised) and the ensemble-spread interval ŷ ± z σ̂ that products
publish, on the same rows. ``coverage`` scores them overall, per PFT, per latitude band and per
site.

Extrapolation (``Calibration.outside``): a pixel-month is outside the towers' range when any of
the model's predictor columns lies outside [min, max] of that column over the training rows (a
missing value is not outside); no calibration speaks for it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from ciml_ter.data.flux import RANDOM_ERROR, RANDOM_ERROR_COLUMN
from ciml_ter.documents import read_document
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_write
from ciml_ter.gridstats import in_band, lat_bands
from ciml_ter.predictors import table_labels
from ciml_ter.units import TER_UNITS

log = logging.getLogger(__name__)
FORMAT = "ciml-ter-calibration/3"
CALIBRATION = "calibration.json"  # in the model directory, beside metrics.json
METHOD = ("split-conformal, site-grouped: |y - yhat| / sqrt(tau^2 + kappa^2 (sigma + s0)^2) with sigma the spread "
          "across the models that never saw the row and tau a site's bias, Mondrian quantiles and scales per PFT "
          "(pooled for PFTs with fewer calibration sites than min_group_sites); for the true flux the towers' "
          "random error removed by SIMEX")
METHODS = ("conformal", "conformal_flux", "conformal_pooled_absolute", "ensemble_spread")
METHOD_NAMES = {"conformal": "conformal (normalised, per PFT)",
                "conformal_flux": "conformal for the true flux (tower random error removed)",
                "conformal_pooled_absolute": "conformal (pooled, not normalised)",
                "ensemble_spread": "ensemble spread (ŷ ± zσ̂)"}
TOWERS_UNSEEN = ("mean and standard deviation across the K models that never saw the tower: its fold's and the "
                 "K - 1 nested models (each without its fold and one other), as across the K fold models at a pixel "
                 "of the map; across all fold means for a site the model never saw")
TOWERS_OTHER_FOLDS = ("the mean of the tower's own fold and the standard deviation across the means of the other "
                      "folds, which were trained with it (the model has no nested members); across all fold means "
                      "for a site the model never saw")
TARGETS = ("observation", "flux")  # what an interval covers: a tower's monthly value, or the true TER
SIMEX_LAMBDAS = (0.5, 1.0, 1.5, 2.0)  # noise variance added, in units of the towers' own
SIMEX_DRAWS = 50  # noise draws per lambda, their quantiles averaged
MIN_NESTED_GROUP_SITES = 2  # a group of the final calibration keeps its quantile in a nested one from this many sites
SIMEX_SEED = 28  # the draws depend only on the calibration rows, never on the rows they cover


class NoIntervals(ValueError):
    """The model or its towers cannot be calibrated (fewer than 3 folds, no spread)."""


def level_name(level: float) -> str:
    """A level's name in variable and column names: 0.9 -> "90"."""
    return f"{round(100 * level):d}"


def conformal_rank(n: int, level: float) -> int:
    """ceil((n + 1) level): the rank (1-based) of the split-conformal quantile among n scores."""
    return math.ceil((n + 1) * level - 1e-9)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``conformal_rank``-th smallest of the n finite ``scores`` (inf when that rank is
    beyond n): the split-conformal quantile, whose interval covers a new exchangeable score with
    probability at least ``level``."""
    scores = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    rank = conformal_rank(scores.size, level)
    return float(scores[rank - 1]) if rank <= scores.size else math.inf


def flux_quantiles(residual: np.ndarray, scale: np.ndarray, noise: np.ndarray, levels,
                   draws: np.ndarray) -> dict[str, float]:
    """Per level name, the quantile of |t - ŷ| / scale for the true flux t, from the observed
    ``residual`` y - ŷ whose random error has standard deviation ``noise`` (0: exact; all in
    g C m-2 month-1) by SIMEX (module docstring): ``draws`` are (``SIMEX_DRAWS``, n) standard
    normal values. Each quantile lies in [0, the observed one]; an infinite one stays infinite."""
    base = np.abs(residual) / scale
    found = {a: [conformal_quantile(base, a)] for a in levels}
    if not np.any(noise > 0):
        return {level_name(a): q[0] for a, q in found.items()}
    n = residual.size
    for lam in SIMEX_LAMBDAS:
        scores = np.sort(np.abs(residual + math.sqrt(lam) * noise * draws) / scale, axis=1)
        for a in levels:
            rank = conformal_rank(n, a)
            found[a].append(float(scores[:, rank - 1].mean()) if rank <= n else math.inf)
    lambdas = np.array([0.0, *SIMEX_LAMBDAS])
    out = {}
    for a, q in found.items():
        if not math.isfinite(q[0]):
            out[level_name(a)] = math.inf
            continue
        slope, intercept = np.polyfit(lambdas, np.square(q), 1)
        out[level_name(a)] = float(np.sqrt(np.clip(intercept - slope, 0.0, q[0] ** 2)))
    return out


def held_out(fold_pred: np.ndarray, fold_of_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ŷ, σ̂) per row from the (n_folds, n) fold means: a row of fold f gets fold f's mean and the
    standard deviation (ddof 0) of the other folds' means; a row of fold -1 (a site no fold saw)
    the mean and standard deviation of all fold means."""
    fold_pred = np.asarray(fold_pred, dtype=np.float64)
    fold_of_row = np.asarray(fold_of_row)
    known = fold_of_row >= 0
    rows = np.arange(fold_pred.shape[1])
    others = np.ones(fold_pred.shape, dtype=bool)
    others[fold_of_row[known], rows[known]] = False
    count = others.sum(axis=0)
    mean = np.where(others, fold_pred, 0.0).sum(axis=0) / count
    spread = np.sqrt(np.where(others, (fold_pred - mean) ** 2, 0.0).sum(axis=0) / count)
    estimate = fold_pred.mean(axis=0)
    estimate[known] = fold_pred[fold_of_row[known], rows[known]]
    return estimate, spread


@dataclass
class Calibration:
    """The quantiles of the normalised scores by level name, for observed tower values
    (``pooled`` and per ``groups``) and for the true flux (``flux_pooled``, ``flux_groups``), the
    scale's terms (``scale_pooled``, ``scale_groups``: ``site_bias_scale``), the offset s0 (g C
    m-2 month-1), the calibration sites per PFT, the rows with a random error (``random_error``:
    count, share, median in g C m-2 month-1) and, for a model's own calibration, the training
    rows' range of each predictor column (``ranges``: [min, max])."""

    levels: list[float]
    offset: float
    pooled: dict[str, float]
    groups: dict[str, dict[str, float]]
    flux_pooled: dict[str, float]
    flux_groups: dict[str, dict[str, float]]
    scale_pooled: dict[str, float]
    scale_groups: dict[str, dict[str, float]]
    random_error: dict[str, float | int | None]
    group_sites: dict[str, int]
    min_group_sites: int
    n_sites: int
    n_rows: int
    offset_share: float
    site_bias: bool
    ranges: dict[str, list[float | None]] = field(default_factory=dict)
    model_id: str | None = None

    def quantiles(self, level: float, groups: np.ndarray | None, n: int, target: str) -> np.ndarray:
        """The quantile of each of ``n`` rows for ``target`` (``TARGETS``): its group's where it
        has one, else the pooled."""
        pooled, by_group = (self.flux_pooled, self.flux_groups) if target == "flux" else (self.pooled, self.groups)
        name = level_name(level)
        q = np.full(n, pooled[name])
        if groups is not None:
            groups = np.asarray(groups).astype(str)
            for group, by_level in by_group.items():
                q[groups == group] = by_level[name]
        return q

    def scale(self, spread: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """sqrt(τ² + κ² (σ̂ + s0)²) per row (g C m-2 month-1), with its group's τ and κ where it has
        them, else the pooled."""
        spread = np.asarray(spread, dtype=np.float64) + self.offset
        out = scale_of(self.scale_pooled, spread)
        if groups is not None:
            groups = np.asarray(groups).astype(str)
            for group, terms in self.scale_groups.items():
                rows = groups == group
                out[rows] = scale_of(terms, spread[rows])
        return out

    def interval(self, level: float, estimate: np.ndarray, spread: np.ndarray,
                 groups: np.ndarray | None = None, target: str = "flux") -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) = ŷ ∓ q · scale at ``level`` (float64) for ``target``: the true flux (the
        map's) or a tower's observed value."""
        if target not in TARGETS:
            raise ValueError(f"interval target: expected one of {TARGETS}, found {target!r}")
        estimate = np.asarray(estimate, dtype=np.float64)
        half = self.quantiles(level, groups, estimate.size, target) * self.scale(spread, groups)
        return estimate - half, estimate + half

    def outside(self, x: np.ndarray, features: list[str]) -> np.ndarray:
        """Per row of ``x`` (columns in the order of ``features``): whether any predictor lies
        outside its training range (missing values are not outside)."""
        x = np.asarray(x)
        out = np.zeros(x.shape[0], dtype=bool)
        for k, name in enumerate(features):
            lo, hi = self.ranges[name]
            if lo is not None:
                with np.errstate(invalid="ignore"):
                    out |= (x[:, k] < lo) | (x[:, k] > hi)
        return out

    def document(self) -> dict:
        """calibration.json: this calibration with its format, method and ``calibration_id``."""
        body = {"format": FORMAT, "method": METHOD, **asdict(self)}
        for key in ("pooled", "flux_pooled"):
            body[key] = {k: _finite_or_none(v) for k, v in body[key].items()}
        for key in ("groups", "flux_groups"):
            body[key] = {g: {k: _finite_or_none(v) for k, v in q.items()} for g, q in body[key].items()}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return {**body, "calibration_id": hashlib.sha256(text.encode()).hexdigest()[:16]}

    @classmethod
    def from_document(cls, doc: dict) -> Calibration:
        names = [f for f in cls.__dataclass_fields__]
        inf = (lambda v: math.inf if v is None else float(v))  # noqa: E731
        kwargs = {k: doc[k] for k in names if k in doc}
        for key in ("pooled", "flux_pooled"):
            kwargs[key] = {k: inf(v) for k, v in doc[key].items()}
        for key in ("groups", "flux_groups"):
            kwargs[key] = {g: {k: inf(v) for k, v in q.items()} for g, q in doc[key].items()}
        return cls(**kwargs)


def _finite_or_none(v: float):
    return float(v) if math.isfinite(v) else None


def calibrate(obs: np.ndarray, estimate: np.ndarray, spread: np.ndarray, noise: np.ndarray, sites: np.ndarray,
              groups: np.ndarray, levels, min_group_sites: int, offset_share: float,
              mondrian: set[str] | None = None, site_bias: bool = True) -> Calibration:
    """The calibration from these rows (those with an observation, estimate and spread; ``noise``
    the observation's random error, NaN = unknown, taken as 0): s0, the pooled scale and quantile
    and one of each per group with at least ``min_group_sites`` sites, per level, for the
    observations and for the true flux (``flux_quantiles``); the scale without τ unless
    ``site_bias``. ``mondrian`` (the nested evaluation's): the groups of the calibration under
    test instead, each kept where it has ``MIN_NESTED_GROUP_SITES`` sites here. NoIntervals when
    the spread's median is 0 (s0 would be 0); InputError when the random error cannot be one
    (``_check_random_error``)."""
    obs, estimate, spread, noise = (np.asarray(a, dtype=np.float64) for a in (obs, estimate, spread, noise))
    keep = np.isfinite(obs) & np.isfinite(estimate) & np.isfinite(spread)
    sites, groups = np.asarray(sites).astype(str)[keep], np.asarray(groups).astype(str)[keep]
    if not keep.any():
        raise NoIntervals("calibrate: no row with an observation, an estimate and a spread")
    offset = offset_share * float(np.median(spread[keep]))
    if offset <= 0:
        raise NoIntervals("calibrate: the folds' spread is 0 at most calibration rows, so s0 = offset x median "
                         "spread is 0; with 2 folds a held-out row has one other fold and no spread")
    residual, spread = obs[keep] - estimate[keep], spread[keep] + offset
    scale_pooled = site_bias_scale(residual, spread, sites, site_bias)
    scale = scale_of(scale_pooled, spread)
    scores = np.abs(residual) / scale
    known_error = np.isfinite(noise[keep])
    noise = np.where(known_error, noise[keep], 0.0)
    _check_random_error(residual[known_error], noise[known_error])
    draws = np.random.default_rng(SIMEX_SEED).standard_normal((SIMEX_DRAWS, residual.size))
    pooled = {level_name(a): conformal_quantile(scores, a) for a in levels}
    flux_pooled = flux_quantiles(residual, scale, noise, levels, draws)
    frame = pd.DataFrame({"site": sites, "group": groups})
    group_sites = {str(g): int(n) for g, n in frame.groupby("group")["site"].nunique().items()}
    own = ({g for g, n in group_sites.items() if n >= min_group_sites} if mondrian is None
           else {g for g in mondrian if group_sites.get(g, 0) >= MIN_NESTED_GROUP_SITES})
    scale_groups, by_group, flux_groups = {}, {}, {}
    for g in sorted(own):
        rows = groups == g
        scale_groups[g] = site_bias_scale(residual[rows], spread[rows], sites[rows], site_bias)
        group_scale = scale_of(scale_groups[g], spread[rows])
        by_group[g] = {level_name(a): conformal_quantile(np.abs(residual[rows]) / group_scale, a) for a in levels}
        flux_groups[g] = flux_quantiles(residual[rows], group_scale, noise[rows], levels, draws[:, rows])
    random_error = {"rows": int(known_error.sum()), "share": float(known_error.mean()),
                    "median": float(np.median(noise[known_error])) if known_error.any() else None}
    return Calibration(list(levels), offset, pooled, by_group, flux_pooled, flux_groups, scale_pooled, scale_groups,
                       random_error, group_sites, min_group_sites, int(np.unique(sites).size), int(keep.sum()),
                       offset_share, site_bias)


def site_bias_scale(residual: np.ndarray, spread: np.ndarray, sites: np.ndarray, site_bias: bool) -> dict:
    """The terms of scale = sqrt(τ² + κ² spread²) from calibration rows (``residual`` y - ŷ and
    ``spread`` σ̂ + s0, g C m-2 month-1, of ``sites``): ``site_bias`` τ, a bias every model shares
    at a site, its variance across the sites (each site once) estimated by moments: the mean
    residual of a site squared less the variance of that mean (its rows' variance / (n - 1)),
    averaged over the sites, at least 0; ``spread_factor`` κ, the root of the rows' mean squared
    deviation from their site's mean residual over their mean spread². Without ``site_bias``:
    τ = 0, κ = 1 (the scale is the spread)."""
    if not site_bias:
        return {"site_bias": 0.0, "spread_factor": 1.0}
    frame = pd.DataFrame({"site": np.asarray(sites), "r": residual})
    within = residual - frame.groupby("site")["r"].transform("mean").to_numpy()
    per_site = frame.assign(w2=within ** 2).groupby("site").agg(mean=("r", "mean"), n=("r", "size"),
                                                                 var=("w2", "mean"))
    of_mean = np.where(per_site["n"] > 1, per_site["var"] / np.maximum(per_site["n"] - 1, 1), 0.0)
    tau = math.sqrt(max(float(np.mean(per_site["mean"] ** 2 - of_mean)), 0.0))
    kappa = math.sqrt(float(np.mean(within ** 2) / np.mean(np.square(spread))))
    if tau == 0 and kappa == 0:  # every residual 0: any scale serves
        kappa = 1.0
    return {"site_bias": tau, "spread_factor": kappa}


def scale_of(terms: dict, spread: np.ndarray) -> np.ndarray:
    """sqrt(τ² + κ² spread²) for the ``terms`` of ``site_bias_scale`` and ``spread`` σ̂ + s0."""
    return np.hypot(terms["site_bias"], terms["spread_factor"] * spread)


def _check_random_error(residual: np.ndarray, noise: np.ndarray) -> None:
    """InputError when the towers' random error (``noise``, one standard deviation) has more
    variance than the held-out residuals it is a part of (``residual``, the rows with a random
    error): units off by the days of a month, or a variance given for a standard deviation."""
    if not noise.size:
        return
    share = float(np.mean(noise ** 2) / np.mean(residual ** 2))
    if share > 1:
        raise InputError(f"{RANDOM_ERROR} ({RANDOM_ERROR_COLUMN} x days): the towers' random error has {share:.3g} "
                         f"times the variance of the held-out residuals it is part of (median random error "
                         f"{np.median(noise):.3g}, median |residual| {np.median(np.abs(residual)):.3g} {TER_UNITS}); "
                         f"expected {RANDOM_ERROR_COLUMN} as one standard deviation in g C m-2 d-1")


def training_ranges(x: np.ndarray, features: list[str]) -> dict[str, list[float | None]]:
    """[min, max] of each column of the training rows ``x`` ([None, None] without a value)."""
    out = {}
    for k, name in enumerate(features):
        column = np.asarray(x[:, k], dtype=np.float64)
        column = column[np.isfinite(column)]
        out[name] = [float(column.min()), float(column.max())] if column.size else [None, None]
    return out


@dataclass
class HeldOut:
    """The towers' rows as the evaluation sees them: site, fold (-1: never seen), Mondrian group
    (IGBP label), PFT and latitude for the tables, observation, held-out estimate and spread, and
    the observation's random error (``noise``, NaN = unknown)."""

    sites: np.ndarray
    folds: np.ndarray
    groups: np.ndarray
    pft: np.ndarray
    lat: np.ndarray | None
    obs: np.ndarray
    estimate: np.ndarray
    spread: np.ndarray
    noise: np.ndarray


def nested_intervals(h: HeldOut, levels, min_group_sites: int, offset_share: float, mondrian: set[str],
                     site_bias: bool = True) -> dict:
    """{(method, level name): (lower, upper)} per row of ``h`` for the methods of ``METHODS``.
    Conformal quantiles for fold f's rows come from the rows of the other folds' sites only; rows
    of fold -1 get those of every known site. The groups with their own quantile are those of the
    calibration ``predict`` uses (``mondrian``), each from its sites among the other folds' (pooled
    with fewer than ``MIN_NESTED_GROUP_SITES``): the evaluation scores the rule that is deployed,
    not a coarser one (a group of exactly ``min_group_sites`` sites has one fewer in every nested
    calibration). Rows left without an interval (a fold with no other fold's rows) are NaN."""
    n = h.obs.size
    out = {(m, level_name(a)): (np.full(n, np.nan), np.full(n, np.nan)) for m in METHODS for a in levels}
    known = h.folds >= 0
    residual = np.abs(h.obs - h.estimate)
    for f in np.unique(h.folds):
        test = h.folds == f
        cal = known & (h.folds != f) if f >= 0 else known
        if not cal.any():
            continue
        c = calibrate(h.obs[cal], h.estimate[cal], h.spread[cal], h.noise[cal], h.sites[cal], h.groups[cal], levels,
                      min_group_sites, offset_share, mondrian, site_bias)
        for a in levels:
            for method, target in (("conformal", "observation"), ("conformal_flux", "flux")):
                bounds = out[method, level_name(a)]
                bounds[0][test], bounds[1][test] = c.interval(a, h.estimate[test], h.spread[test], h.groups[test],
                                                              target)
            q = conformal_quantile(residual[cal], a)
            absolute = out["conformal_pooled_absolute", level_name(a)]
            absolute[0][test], absolute[1][test] = h.estimate[test] - q, h.estimate[test] + q
    for a in levels:
        z = NormalDist().inv_cdf((1 + a) / 2)
        out["ensemble_spread", level_name(a)] = (h.estimate - z * h.spread, h.estimate + z * h.spread)
    return out


def _scores(covered: np.ndarray, width: np.ndarray, sites: np.ndarray) -> dict:
    return {"coverage": float(covered.mean()) if covered.size else None,
            "mean_width": float(width.mean()) if width.size else None,
            "median_width": float(np.median(width)) if width.size else None,
            "n": int(covered.size), "n_sites": int(np.unique(sites).size)}


def coverage(h: HeldOut, intervals: dict, high_latitude: float = 60.0) -> tuple[dict, pd.DataFrame]:
    """Coverage (share of rows whose observation lies in the interval) and width (g C m-2
    month-1) of each (method, level) overall, per PFT, per latitude band (``gridstats.lat_bands``)
    and per site, over the rows with an observation and an interval; the per-site coverages as a
    distribution (min, 10 %, median, 90 %, max). Returns the metrics.json entry and the long table
    (method, level, scale, group, coverage, widths, n, n_sites)."""
    document, rows = {}, []
    bands = [(name, in_band(h.lat, s, n)) for name, s, n in lat_bands(high_latitude)] if h.lat is not None else []
    for (method, name), (lower, upper) in intervals.items():
        ok = np.isfinite(h.obs) & np.isfinite(lower) & np.isfinite(upper)
        covered = (h.obs >= lower) & (h.obs <= upper)
        width = upper - lower
        entry = {"overall": _scores(covered[ok], width[ok], h.sites[ok])}
        scales = {"pft": {str(p): ok & (h.pft == p) for p in np.unique(h.pft[ok])},
                  "lat_band": {b: ok & sel for b, sel in bands if (ok & sel).any()},
                  "site": {str(s): ok & (h.sites == s) for s in np.unique(h.sites[ok])}}
        rows.append({"method": method, "level": name, "scale": "overall", "group": "all", **entry["overall"]})
        for scale, groups in scales.items():
            entry[f"by_{scale}"] = {g: _scores(covered[sel], width[sel], h.sites[sel]) for g, sel in groups.items()}
            rows += [{"method": method, "level": name, "scale": scale, "group": g, **s}
                     for g, s in entry[f"by_{scale}"].items()]
        per_site = np.array([s["coverage"] for s in entry["by_site"].values()])
        entry["site_distribution"] = ({k: float(v) for k, v in zip(
            ("min", "q10", "median", "q90", "max"), np.quantile(per_site, [0, 0.1, 0.5, 0.9, 1]))}
            if per_site.size else {})
        entry.pop("by_site")
        document.setdefault(method, {})[name] = entry
    return document, pd.DataFrame(rows)


@dataclass
class TowerIntervals:
    """A model's intervals at its towers: the ``calibration`` from every known site (what
    ``predict`` uses, written as calibration.json), the nested evaluation as the metrics.json
    entry (``document``) and the coverage table (``table``), the rows (``held``) and their nested
    intervals {(method, level name): (lower, upper)}."""

    calibration: Calibration
    document: dict
    table: pd.DataFrame
    held: HeldOut
    intervals: dict

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Per row, for predictions.csv: the intervals' centre and spread (the mean and standard
        deviation across the models that never saw the tower) and the nested conformal bounds, for
        the tower's observed value (``ter_lower_90``) and for the true flux (``ter_flux_lower_90``)."""
        columns = {"ter_mean_held_out": self.held.estimate, "ter_spread_held_out": self.held.spread}
        for level in self.calibration.levels:
            name = level_name(level)
            columns[f"ter_lower_{name}"], columns[f"ter_upper_{name}"] = self.intervals["conformal", name]
            flux = self.intervals["conformal_flux", name]
            columns[f"ter_flux_lower_{name}"], columns[f"ter_flux_upper_{name}"] = flux
        return columns


def tower_intervals(ensemble, table, config) -> TowerIntervals:
    """Calibrate the ``ensemble`` on the known towers of ``table`` (a ``SiteTable``; Mondrian
    groups from ``predictors.table_labels``) under ``config.uncertainty``, and evaluate the
    intervals nested by fold. NoIntervals when the model has fewer than 3 folds (a held-out row
    then has one other fold and no spread)."""
    u, frame = config.uncertainty, table.frame
    x = ensemble.matrix(table)
    fold_pred = ensemble.fold_predictions(x)
    if fold_pred.shape[0] < 3:
        raise NoIntervals(f"prediction intervals need at least 3 folds (the spread at a held-out tower is taken "
                          f"across the other folds); the model has {fold_pred.shape[0]}")
    folds = ensemble.folds
    fold_of_row = np.array([folds.get(str(s), -1) for s in table.sites])
    groups = table_labels(frame)
    estimate, spread = held_out(fold_pred, fold_of_row)
    unseen = ensemble.unseen_ensemble(x, fold_of_row, fold_pred)
    if unseen is not None:
        estimate, spread = (np.where(fold_of_row >= 0, u, v) for u, v in zip(unseen, (estimate, spread)))
    lat = frame["lat"].to_numpy(dtype=np.float64) if "lat" in frame.columns else None
    noise = (frame[RANDOM_ERROR].to_numpy(dtype=np.float64) if RANDOM_ERROR in frame.columns
             else np.full(len(frame), np.nan))
    h = HeldOut(frame["site"].astype(str).to_numpy(), np.asarray(fold_of_row), np.asarray(groups).astype(str),
                frame["pft"].astype(str).to_numpy(), lat, frame["ter"].to_numpy(dtype=np.float64), estimate, spread,
                noise)
    known = h.folds >= 0
    final = calibrate(h.obs[known], h.estimate[known], h.spread[known], h.noise[known], h.sites[known],
                      h.groups[known], u.levels, u.min_group_sites, u.offset_share, site_bias=u.site_bias)
    final.ranges, final.model_id = training_ranges(x[known], ensemble.features), ensemble.model_id
    intervals = nested_intervals(h, u.levels, u.min_group_sites, u.offset_share, set(final.groups), u.site_bias)
    found, coverage_table = coverage(h, intervals, config.analysis.high_latitude)
    document = {"method": METHOD, "levels": list(u.levels), "offset_share": u.offset_share, "offset": final.offset,
                "min_group_sites": u.min_group_sites, "groups": sorted(final.groups),
                "group_sites": final.group_sites, "random_error": final.random_error, "site_bias": u.site_bias,
                "scale_pooled": final.scale_pooled, "scale_groups": final.scale_groups,
                "flux_quantiles": "the towers' random error (ter_random_error) removed by SIMEX",
                "towers_ensemble": TOWERS_UNSEEN if unseen is not None else TOWERS_OTHER_FOLDS,
                "nested": "each fold's towers get the quantiles of the other folds' towers", **found}
    return TowerIntervals(final, document, coverage_table, h, intervals)


def write_calibration(path, calibration: Calibration) -> dict:
    """Write ``calibration`` as calibration.json at ``path``; the document written."""
    document = calibration.document()
    atomic_write(path, json.dumps(document, indent=1))
    return document


def read_calibration(model_dir) -> tuple[Calibration, str] | None:
    """The calibration in a model directory and its ``calibration_id`` (None when the directory
    has no calibration.json: a model that ``evaluate`` has not seen)."""
    path = Path(model_dir) / CALIBRATION
    if not path.is_file():
        return None
    document = read_document(path, FORMAT, "calibration of `ciml-ter evaluate`")
    return Calibration.from_document(document), document["calibration_id"]


def model_calibration(model_dir, model_id: str, levels) -> tuple[Calibration, str] | None:
    """The calibration ``predict`` uses for the model ``model_id`` in ``model_dir`` at ``levels``
    (``[uncertainty] levels``) and its id; None when the directory has none (logged). InputError
    when it calibrates another model, lacks one of the levels or is of another format (an older
    ciml-ter's, without the true-flux quantiles)."""
    model_dir = Path(model_dir)
    again = f"run `ciml-ter evaluate --model {model_dir} --out {model_dir}`"
    try:
        found = read_calibration(model_dir)
    except InputError as exc:
        raise InputError(f"{exc}; {again}") from None
    if found is None:
        log.warning("%s has no %s (written by `ciml-ter evaluate`): no prediction intervals", model_dir, CALIBRATION)
        return None
    if found[0].model_id != model_id:
        raise InputError(f"{model_dir / CALIBRATION}: calibrates model {found[0].model_id}, not {model_id}; {again}")
    missing = [level_name(a) for a in levels if level_name(a) not in found[0].pooled]
    if missing:
        raise InputError(f"{model_dir / CALIBRATION}: has the levels {', '.join(found[0].pooled)} %, the config asks "
                         f"for {', '.join(missing)} % ([uncertainty] levels); {again} with these levels")
    return found
