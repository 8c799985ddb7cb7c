"""Ensemble prediction and SHAP for rows of predictors (one tile's land pixels x months).

The ensemble is every (fold, seed) member, each used up to its best iteration. The estimate is
the mean over all members; the uncertainty is the standard deviation (ddof 0) of the fold
means; SHAP values are linear in the ensemble, so the ensemble's are the members' mean.

Margins and tree SHAP are both linear in the leaf values, so the members are merged before
inference (``merge_members``): one booster per fold whose trees are the fold's members' trees
with leaves scaled by 1/(members of the fold) and base score the fold's mean, and one booster
over all members (leaves scaled by 1/(all members)) for SHAP. A batch then costs one predict
call per fold and one SHAP call, instead of one of each per member, and nothing travels
between host and device but the result. The merge is exact up to float32 summation order
(tests compare it with the members' mean).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ciml_ter.device import get_namespace, to_host

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
    shap_gap: float | None = None  # largest |SHAP sum + base - ter| over the rows


@dataclass
class MergedEnsemble:
    """The members folded into one booster per fold (``folds``, ``fold_boosters``, members per
    fold in ``fold_sizes``) and one booster over all members (``all_members``, for SHAP)."""

    folds: list[int]
    fold_boosters: list  # xgboost.Booster, margin = mean of the fold's members
    fold_sizes: np.ndarray  # members per fold
    all_members: object  # xgboost.Booster, margin = mean of every member
    n_members: int
    n_trees: int  # trees of all members up to their best iterations
    device: str = "cpu"

    def to(self, xgboost_device: str) -> MergedEnsemble:
        """Make every booster predict on ``xgboost_device`` ("cpu", "cuda" or "cuda:<i>")."""
        for booster in (*self.fold_boosters, self.all_members):
            booster.set_param({"device": xgboost_device})
        self.device = "cpu" if xgboost_device == "cpu" else "cuda"
        return self


def _leaf_scaled(tree: dict, scale: float, tree_id: int) -> dict:
    """A tree of the JSON model with its leaf values (and node weights) times ``scale``."""
    tree = dict(tree)
    leaf = [left == -1 for left in tree["left_children"]]
    tree["split_conditions"] = [v * scale if is_leaf else v
                                for v, is_leaf in zip(tree["split_conditions"], leaf)]
    tree["base_weights"] = [v * scale for v in tree["base_weights"]]
    tree["id"] = tree_id
    return tree


def _base_score(text: str) -> float:
    """The base score of a JSON model ("1.2E2" in XGBoost 2, "[1.2E2]" in XGBoost 3)."""
    return float(text.strip("[]"))


def _parsed(booster, n_trees: int) -> dict:
    """The JSON model of the first ``n_trees`` trees of ``booster``, checked to be mergeable."""
    doc = json.loads(booster[:n_trees].save_raw("json"))
    objective = doc["learner"]["objective"]["name"]
    if objective != "reg:squarederror":
        raise ValueError(f"merging boosters: expected objective reg:squarederror (identity link), "
                         f"found {objective}")
    if int(doc["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_parallel_tree"]) != 1:
        raise ValueError("merging boosters: expected one tree per iteration (num_parallel_tree 1)")
    return doc


def _merged(docs: list[dict], weights: list[float]):
    """A booster from parsed models (``_parsed``): their trees with leaves times the weights,
    base score the weighted sum; the input documents are left as they were."""
    import xgboost as xgb

    trees, base = [], 0.0
    for doc, w in zip(docs, weights):
        model = doc["learner"]["gradient_booster"]["model"]
        trees.extend([_leaf_scaled(t, w, len(trees) + i) for i, t in enumerate(model["trees"])])
        base += w * _base_score(doc["learner"]["learner_model_param"]["base_score"])
    learner = dict(docs[0]["learner"])
    gbtree = dict(learner["gradient_booster"])
    model = dict(gbtree["model"], trees=trees, tree_info=[0] * len(trees))
    model["gbtree_model_param"] = dict(model["gbtree_model_param"], num_trees=str(len(trees)))
    if "iteration_indptr" in model:
        model["iteration_indptr"] = list(range(len(trees) + 1))
    gbtree["model"] = model
    param = dict(learner["learner_model_param"])
    text = f"{base:.9E}"
    param["base_score"] = f"[{text}]" if param["base_score"].startswith("[") else text
    # no best_iteration attribute: every merged tree counts
    learner.update(gradient_booster=gbtree, learner_model_param=param, attributes={})
    merged = xgb.Booster()
    merged.load_model(bytearray(json.dumps({**docs[0], "learner": learner}, separators=(",", ":")).encode()))
    return merged


def merge_boosters(boosters: list, iterations: list[int], weights: list[float]):
    """One booster whose margin is sum_i weights[i] x margin of boosters[i] (its first
    iterations[i] trees). For reg:squarederror the margin is the prediction; tree SHAP of the
    result equals the same weighted sum of the members' SHAP."""
    return _merged([_parsed(b, n) for b, n in zip(boosters, iterations)], weights)


def merge_members(members: list[Member]) -> MergedEnsemble:
    """Fold the (fold, seed) members into per-fold and all-member boosters (see module doc);
    each member's model is read once."""
    docs = [_parsed(m.booster, m.best_iteration + 1) for m in members]
    folds = sorted({m.fold for m in members})
    by_fold = [[i for i, m in enumerate(members) if m.fold == f] for f in folds]
    fold_boosters = [_merged([docs[i] for i in group], [1.0 / len(group)] * len(group)) for group in by_fold]
    everyone = _merged(docs, [1.0 / len(members)] * len(members))
    return MergedEnsemble(folds, fold_boosters, np.array([len(g) for g in by_fold], dtype=np.float64),
                          everyone, len(members), sum(m.best_iteration + 1 for m in members))


def batch_rows_for(device: str, n_features: int, n_folds: int, shap: bool,
                   free_bytes: int | None = None) -> int:
    """Rows per batch: ``CPU_BATCH_ROWS`` (``CPU_SHAP_BATCH_ROWS`` with SHAP) on the CPU; on the
    GPU as many as half of the free device memory holds (``free_bytes``, read from CuPy when
    None), within ``GPU_BATCH_ROWS``.

    Per row on the device: the predictors (4 bytes each), XGBoost's copy of them for SHAP
    (about 12 bytes per value), the fold margins (8 bytes each) and the SHAP output (4 bytes
    per feature + bias), doubled for XGBoost's scratch."""
    if device == "cpu":
        return CPU_SHAP_BATCH_ROWS if shap else CPU_BATCH_ROWS
    if free_bytes is None:
        free_bytes = get_namespace("cuda").cuda.runtime.memGetInfo()[0]
    per_row = 2 * (4 * n_features + 8 * n_folds + (16 * n_features + 4 * (n_features + 1) if shap else 0))
    lo, hi = GPU_BATCH_ROWS
    rows = int(free_bytes // 2 // per_row) // lo * lo
    return int(min(hi, max(lo, rows)))


def _batch(model: MergedEnsemble, x, shap: bool, xp):
    import xgboost as xgb

    fold_mean = xp.stack([xp.asarray(b.inplace_predict(x), dtype=xp.float64) for b in model.fold_boosters])
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


def predict_rows(model: MergedEnsemble, x, shap: bool = False, batch_rows: int = 0,
                 device: str = "cpu", on_batch=None) -> Prediction:
    """Ensemble estimate for rows ``x`` (n, n_features; float32; NaN = missing), in batches
    (``batch_rows``; 0 = ``batch_rows_for`` the device); ``on_batch(rows_done, n)`` after each.
    ``model`` must already be on ``device`` (``MergedEnsemble.to``).

    With ``shap``, also the ensemble-mean SHAP values and base value, checked to sum to the
    estimate (``shap_sum_gap``; the largest gap is returned).
    """
    if model.device != device:
        raise ValueError(f"merged ensemble is on {model.device!r}, predict_rows was asked for {device!r}; "
                         f"call MergedEnsemble.to first")
    xp = get_namespace(device)
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
