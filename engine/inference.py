"""Inference on rows of predictors (one tile's land pixels x months): estimate, uncertainty, SHAP.

Works on a ``ensemble.MergedEnsemble`` (one booster per fold, one over all members). The
estimate is the mean over all members; the uncertainty is the standard deviation (ddof 0) of
the fold means; SHAP values are linear in the ensemble, so the ensemble's are the members'
mean. A batch costs one predict call per fold and one SHAP call, and nothing travels between
host and device but the result.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ciml_ter.device import CPU, Device, to_host

# |sum of SHAP + base - prediction| must stay within ABS + REL x (sum of |terms|): both sides
# are float32 sums over the features and over every tree, in different orders.
SHAP_SUM_ABS_TOLERANCE = 1e-3  # g C m-2 month-1
SHAP_SUM_REL_TOLERANCE = 1e-4
# Rows per batch: CPU defaults (SHAP runs at about 1e5-1e6 row.trees/s per core there, so its
# batches are small enough to report progress every minute or so), and the clamp for GPU
# batches sized from free device memory.
CPU_BATCH_ROWS = 262_144
CPU_SHAP_BATCH_ROWS = 16_384
GPU_BATCH_ROWS = (262_144, 4_194_304)


@dataclass
class Prediction:
    """Rows' ensemble mean and std across fold means (g C m-2 month-1); SHAP when asked."""

    ter: np.ndarray  # (n,)
    ter_std: np.ndarray  # (n,)
    shap: np.ndarray | None = None  # (n, n_features)
    base: float | None = None  # ensemble-mean expected value
    shap_gap: float | None = None  # largest |SHAP sum + base - ter| over the rows


def batch_rows_for(device: Device, n_features: int, n_folds: int, shap: bool,
                   free_bytes: int | None = None) -> int:
    """Rows per batch: ``CPU_BATCH_ROWS`` (``CPU_SHAP_BATCH_ROWS`` with SHAP) on the CPU; on the
    GPU as many as half of the free device memory holds (``free_bytes``, read from CuPy when
    None), within ``GPU_BATCH_ROWS``.

    Per row on the device: the predictors (4 bytes each), XGBoost's copy of them for SHAP
    (about 12 bytes per value), the fold margins (8 bytes each) and the SHAP output (4 bytes
    per feature + bias), doubled for XGBoost's scratch."""
    if device.kind == "cpu":
        return CPU_SHAP_BATCH_ROWS if shap else CPU_BATCH_ROWS
    if free_bytes is None:
        free_bytes = device.xp.cuda.runtime.memGetInfo()[0]
    per_row = 2 * (4 * n_features + 8 * n_folds + (16 * n_features + 4 * (n_features + 1) if shap else 0))
    lo, hi = GPU_BATCH_ROWS
    rows = int(free_bytes // 2 // per_row) // lo * lo
    return int(min(hi, max(lo, rows)))


def fold_means(model, x, xp):
    """(n_folds, n) float64: each fold's mean over its seeds for rows ``x`` (already on the
    model's device, as ``xp`` arrays); ``model`` is a ``MergedEnsemble``."""
    return xp.stack([xp.asarray(b.inplace_predict(x), dtype=xp.float64) for b in model.fold_boosters])


def _batch(model, x, shap: bool, xp):
    import xgboost as xgb

    fold_mean = fold_means(model, x, xp)
    sizes = xp.asarray(model.fold_sizes)
    mean = (fold_mean * sizes[:, None]).sum(axis=0) / sizes.sum()
    contrib = None
    if shap:
        # one host array per batch: Booster.predict returns NumPy even when it runs on the GPU
        contrib = model.all_members.predict(xgb.DMatrix(x), pred_contribs=True)
    return mean, fold_mean.std(axis=0), contrib


def shap_sum_gap(contrib: np.ndarray, prediction: np.ndarray) -> float:
    """Largest |sum of SHAP + base - prediction| over the rows; AssertionError beyond the
    tolerance ABS + REL x sum |terms| (a bug, not a user error)."""
    total = contrib.sum(axis=1, dtype=np.float64)
    gap = np.abs(total - prediction)
    allowed = SHAP_SUM_ABS_TOLERANCE + SHAP_SUM_REL_TOLERANCE * np.abs(contrib).sum(axis=1, dtype=np.float64)
    if np.any(gap > allowed):
        worst = int(np.argmax(gap - allowed))
        raise AssertionError(f"SHAP values + base differ from the prediction by {gap[worst]:.3g} "
                             f"(allowed {allowed[worst]:.3g}) at row {worst}")
    return float(gap.max(initial=0.0))


def predict_rows(model, x, shap: bool = False, batch_rows: int = 0,
                 device: Device = CPU, on_batch=None) -> Prediction:
    """Ensemble estimate for rows ``x`` (n, n_features; float32; NaN = missing) from a
    ``ensemble.MergedEnsemble`` ``model``, in batches
    (``batch_rows``; 0 = ``batch_rows_for`` the device); ``on_batch(rows_done, n)`` after each.
    ``model`` must already be on ``device`` (``MergedEnsemble.to``).

    With ``shap``, also the ensemble-mean SHAP values and base value, checked to sum to the
    estimate (``shap_sum_gap``; the largest gap is returned).
    """
    if model.device != device:
        raise ValueError(f"merged ensemble is on {str(model.device)!r}, predict_rows was asked for {str(device)!r}; "
                         f"call MergedEnsemble.to first")
    xp = device.xp
    x = xp.asarray(x, dtype=xp.float32)
    n = x.shape[0]
    batch_rows = batch_rows or batch_rows_for(device, x.shape[1], len(model.folds), shap)
    ter = np.empty(n, dtype=np.float32)
    ter_std = np.empty(n, dtype=np.float32)
    values = np.empty((n, x.shape[1]), dtype=np.float32) if shap else None
    base = gap = None
    for start in range(0, n, batch_rows):
        stop = min(start + batch_rows, n)
        mean, std, contrib = _batch(model, x[start:stop], shap, xp)
        mean = to_host(mean)
        ter[start:stop], ter_std[start:stop] = mean, to_host(std)
        if shap:
            values[start:stop] = contrib[:, :-1]
            base = float(contrib[0, -1])
            gap = max(gap or 0.0, shap_sum_gap(contrib, mean))
        if on_batch:
            on_batch(stop, n)
    return Prediction(ter, ter_std, values, base, gap)
