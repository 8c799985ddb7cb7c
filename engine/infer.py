"""Ensemble prediction and SHAP for rows of predictors (one tile's land pixels x months).

The ensemble is every (fold, seed) member, each used up to its best iteration. The estimate is
the mean over all members; the uncertainty is the standard deviation (ddof 0) of the fold
means; SHAP values are linear in the ensemble, so the ensemble's are the members' mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ciml_ter.device import get_namespace, to_host

SHAP_SUM_TOLERANCE = 1e-3  # g C m-2 month-1: float32 contributions summed over features


@dataclass
class Member:
    """One booster of the ensemble, with its fold and the last iteration to use."""

    fold: int
    seed: int
    booster: object  # xgboost.Booster
    best_iteration: int

    @property
    def iteration_range(self) -> tuple[int, int]:
        return 0, self.best_iteration + 1


@dataclass
class Prediction:
    """Rows' ensemble mean and std across fold means (g C m-2 month-1); SHAP when asked."""

    ter: np.ndarray  # (n,)
    ter_std: np.ndarray  # (n,)
    shap: np.ndarray | None = None  # (n, n_features)
    base: float | None = None  # ensemble-mean expected value


def set_members_device(members: list[Member], device: str) -> None:
    """Make every booster predict on ``device`` ("cpu" or "cuda"); call once per rank."""
    for m in members:
        m.booster.set_param({"device": device})


def _batch(members, x, shap, xp):
    import xgboost as xgb

    folds = sorted({m.fold for m in members})
    fold_sum = xp.zeros((len(folds), x.shape[0]), dtype=xp.float64)
    fold_n = np.zeros(len(folds))
    contrib = xp.zeros((x.shape[0], x.shape[1] + 1), dtype=xp.float64) if shap else None
    matrix = xgb.DMatrix(x) if shap else None
    for m in members:
        k = folds.index(m.fold)
        fold_sum[k] += m.booster.inplace_predict(x, iteration_range=m.iteration_range)
        fold_n[k] += 1
        if shap:
            # Booster.predict returns host (NumPy) arrays even when it computes on the GPU
            contrib += xp.asarray(m.booster.predict(matrix, pred_contribs=True, iteration_range=m.iteration_range))
    fold_mean = fold_sum / xp.asarray(fold_n)[:, None]
    mean = fold_sum.sum(axis=0) / fold_n.sum()
    return mean, fold_mean.std(axis=0), (contrib / len(members) if shap else None)


def predict_rows(members: list[Member], x, shap: bool = False, batch_rows: int = 262144,
                 device: str = "cpu") -> Prediction:
    """Ensemble estimate for rows ``x`` (n, n_features; float32; NaN = missing), in batches.

    With ``shap``, also the ensemble-mean SHAP values and base value, and checks that they sum
    to the estimate (raises AssertionError otherwise: it would be a bug, not a user error).
    """
    xp = get_namespace(device)
    x = xp.asarray(x, dtype=xp.float32)
    n = x.shape[0]
    ter = np.empty(n, dtype=np.float32)
    ter_std = np.empty(n, dtype=np.float32)
    values = np.empty((n, x.shape[1]), dtype=np.float32) if shap else None
    base = None
    for start in range(0, n, batch_rows):
        stop = min(start + batch_rows, n)
        mean, std, contrib = _batch(members, x[start:stop], shap, xp)
        ter[start:stop], ter_std[start:stop] = to_host(mean), to_host(std)
        if shap:
            contrib = to_host(contrib)
            values[start:stop] = contrib[:, :-1]
            base = float(contrib[0, -1]) if stop > start else base
            gap = np.max(np.abs(contrib.sum(axis=1) - to_host(mean)), initial=0.0)
            if gap > SHAP_SUM_TOLERANCE:
                raise AssertionError(f"SHAP values + base differ from the prediction by {gap:.3g}")
    return Prediction(ter, ter_std, values, base)
