"""The TER ensemble, in one home: its members, their merge for inference, fold means, save/load.

One member per (fold, seed), each used up to its best iteration. A saved model directory holds
one UBJSON file per member (``fold03_seed07.ubj``) and ``manifest.json`` (format
``ciml-ter-ensemble/1``: features and their order, weights, fold of each site, members with
their best iteration and checksum, config and its hash, library versions; ``model_id`` = hash of
the rest of the manifest).

Margins and tree SHAP are both linear in the leaf values, so the members are merged before
inference (``merge_members``): one booster per fold whose trees are the fold's members' trees
with leaves scaled by 1/(members of the fold) and base score the fold's mean, and one booster
over all members (leaves scaled by 1/(all members)) for SHAP. The merge is exact up to float32
summation order (tests compare it with the members' mean). Predictions are the mean over all
members, the std across fold means (``inference``), and each sample's out-of-fold estimate
(its site's held-out fold mean).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ciml_ter.config import IDENTITY_OBJECTIVES, PipelineConfig, config_from_dict
from ciml_ter.data.contract import sample_values
from ciml_ter.device import CPU, Device
from ciml_ter.documents import read_document
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_write
from ciml_ter.inference import fold_means, predict_rows
from ciml_ter.predictors import PredictorSpec, table_matrix
from ciml_ter.sitetable import SiteTable

MANIFEST = "manifest.json"
FORMAT = "ciml-ter-ensemble/1"
# A feature cube's values against a driver's training range [lo, hi]: the range widened by
# RANGE_MARGIN of its span on each side (the map covers more than the towers), and refused when
# more than MAX_OUTSIDE_TRAINING of the sampled values lie outside (wrong units or scale: degC
# for K, a scale factor left on, put nearly all of them outside).
RANGE_MARGIN = 0.5
MAX_OUTSIDE_TRAINING = 0.10
NESTED_DIR = "nested"  # members trained without two folds (``Ensemble.unseen_ensemble``)


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
class MergedEnsemble:
    """The members folded into one booster per fold (``folds``, ``fold_boosters``, members per
    fold in ``fold_sizes``) and one booster over all members (``all_members``, for SHAP)."""

    folds: list[int]
    fold_boosters: list  # xgboost.Booster, margin = mean of the fold's members
    fold_sizes: np.ndarray  # members per fold
    all_members: object  # xgboost.Booster, margin = mean of every member
    n_members: int
    n_trees: int  # trees of all members up to their best iterations
    device: Device = CPU

    def to(self, device: Device) -> MergedEnsemble:
        """Make every booster predict on ``device`` (XGBoost's "cpu" or "cuda:<i>")."""
        for booster in (*self.fold_boosters, self.all_members):
            booster.set_param({"device": device.xgboost})
        self.device = device
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
    if objective not in IDENTITY_OBJECTIVES:
        raise ValueError(f"merging boosters: expected an objective with an identity link "
                         f"({', '.join(IDENTITY_OBJECTIVES)}), found {objective}")
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
    iterations[i] trees). For the identity-link objectives the margin is the prediction; tree SHAP of the
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


def member_name(fold: int, seed: int, left_out: int | None = None) -> str:
    """A member's file: ``fold03_seed01.ubj``; a nested member (also without fold ``left_out``)
    ``nested/fold03-07_seed01.ubj``."""
    if left_out is None:
        return f"fold{fold:02d}_seed{seed:02d}.ubj"
    return f"{NESTED_DIR}/fold{fold:02d}-{left_out:02d}_seed{seed:02d}.ubj"


def save_member(model_dir: Path, fold: int, seed: int, raw: bytes, best_iteration: int,
                n_trees: int, left_out: int | None = None) -> dict:
    """Write one member's UBJSON bytes into ``model_dir``; its manifest entry (a nested member's
    has ``left_out``, the second fold it was trained without)."""
    name = member_name(fold, seed, left_out)
    (model_dir / name).parent.mkdir(exist_ok=True)
    atomic_write(model_dir / name, raw)
    extra = {} if left_out is None else {"left_out": left_out}
    return {"file": name, "fold": fold, "seed": seed, **extra, "best_iteration": best_iteration,
            "num_boosted_rounds": n_trees, "sha256": hashlib.sha256(raw).hexdigest()}


def save_manifest(model_dir: Path, manifest: dict) -> dict:
    """Write ``manifest.json`` (format and ``model_id`` added) once every member is saved."""
    manifest = {"format": FORMAT, **manifest}
    manifest["model_id"] = _manifest_hash(manifest)
    atomic_write(model_dir / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _manifest_hash(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items()
            if k not in ("model_id", "train_seconds", "workers", "nthread", "xgboost_device", "xgboost_cuda_build",
                         "made_from")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Ensemble:
    """A loaded model directory: members, features, fold of each training site, manifest."""

    path: Path
    manifest: dict
    members: list[Member]

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])

    @property
    def folds(self) -> dict[str, int]:
        return dict(self.manifest["folds"])

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def config(self) -> PipelineConfig:
        return config_from_dict(self.manifest["config"], str(self.path / MANIFEST))

    @property
    def predictors(self) -> PredictorSpec:
        """Which columns the model takes (``predictors.PredictorSpec``; older models: the features)."""
        spec = self.manifest.get("predictors")
        return PredictorSpec.from_dict(spec) if spec else PredictorSpec(self.features)

    def check_features(self, features: list[str], source: str = "<table>") -> None:
        """InputError naming the missing/extra predictors when ``features`` (a table's or a cube's)
        differ from the model's drivers (an integer ``month`` the season terms replace is allowed)."""
        spec = self.predictors
        mine = spec.drivers
        missing = [f for f in mine if f not in features]
        extra = [f for f in features if f not in mine and not (spec.season and f == "month")]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"extra {', '.join(extra)}")
            raise InputError(f"{source}: predictors do not match model {self.path} "
                             f"({'; '.join(parts)}); expected {', '.join(mine)}")

    def check_cube(self, cube, source: str) -> None:
        """InputError naming every problem of the feature cube ``cube`` (an xarray Dataset) for this
        model: a driver that is not a variable of the cube, units other than those it was trained
        on, or values outside its training range (``feature_ranges``, widened by RANGE_MARGIN of
        their span) for more than MAX_OUTSIDE_TRAINING of the sampled values."""
        if "feature_ranges" not in self.manifest:
            raise InputError(f"{self.path / MANIFEST}: records no units and ranges of the features (a model from "
                             "an older ciml-ter); train it again to predict with it")
        units, ranges = self.manifest["feature_units"], self.manifest["feature_ranges"]
        drivers = self.predictors.drivers
        absent = [f for f in drivers if f not in cube.data_vars]
        problems = [f"variable(s) {', '.join(absent)} missing (the model {self.path} takes "
                    f"{', '.join(drivers)})"] if absent else []
        for f in (f for f in drivers if f not in absent):
            found = cube[f].attrs.get("units")
            if units.get(f) is not None and str(found).strip() != units[f]:
                problems.append(f"variable '{f}' has units {found!r}; the model was trained on {units[f]!r}")
                continue
            values = sample_values(cube[f])
            values = values[np.isfinite(values)]
            lo, hi = ranges[f]
            margin = RANGE_MARGIN * (hi - lo)
            outside = np.mean((values < lo - margin) | (values > hi + margin)) if values.size else 0.0
            if outside > MAX_OUTSIDE_TRAINING:
                unit = f" {units[f]}" if units.get(f) else ""
                problems.append(f"variable '{f}': {outside:.0%} of the sampled values lie far outside its training "
                                f"range {lo:.4g} to {hi:.4g}{unit} (found {values.min():.4g} to {values.max():.4g}); "
                                "check its units and scale")
        if problems:
            raise InputError(f"{source}: does not match model {self.path}: " + "; ".join(problems))

    def matrix(self, table: SiteTable) -> np.ndarray:
        """The model's predictor matrix of a table (drivers checked, context columns added)."""
        self.check_features(table.features, table.path)
        return table_matrix(table.frame, self.predictors, table.path)

    @functools.cached_property
    def merged(self) -> MergedEnsemble:
        """The members merged into per-fold and all-member boosters (``merge_members``)."""
        return merge_members(self.members)

    def merged_on(self, device: Device) -> MergedEnsemble:
        """``merged``, its boosters moved to ``device``."""
        merged = self.merged
        return merged if merged.device == device else merged.to(device)

    def predict(self, x, device: Device = CPU) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean over all members and std across fold means for rows ``x``."""
        p = predict_rows(self.merged_on(device), x, device=device)
        return p.ter.astype(np.float64), p.ter_std.astype(np.float64)

    def fold_predictions(self, x: np.ndarray) -> np.ndarray:
        """(n_folds, n) mean over seeds of each fold's members (``inference.fold_means``)."""
        merged = self.merged_on(CPU)
        out = np.full((self.manifest["n_folds"], x.shape[0]), np.nan)
        out[merged.folds] = fold_means(merged, x, np)
        return out

    def unseen_ensemble(self, x: np.ndarray, fold_of_row: np.ndarray,
                        fold_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per row of a fold f: the mean and standard deviation (ddof 0) across the K models that
        never saw its site, fold f's own (``fold_pred[f]``, from ``fold_predictions``) and the
        K - 1 nested models without f (each also without one other fold g; a model = the mean over
        its seeds): an ensemble built as the map's is at a pixel, K models none of which saw it.
        NaN for rows of fold -1; None when the model has no nested members
        (``train.nested_spread``)."""
        entries = self.manifest.get("nested_members") or []
        if not entries:
            return None
        import xgboost as xgb

        by_pair: dict[tuple[int, int], list[np.ndarray]] = {}
        data = xgb.DMatrix(np.asarray(x, dtype=np.float32))
        for m in entries:
            booster = _load_booster(self.path / m["file"], m["sha256"])
            by_pair.setdefault((m["fold"], m["left_out"]), []).append(
                booster.predict(data, iteration_range=(0, int(m["best_iteration"]) + 1)).astype(np.float64))
        means = {pair: np.mean(p, axis=0) for pair, p in by_pair.items()}
        fold_of_row = np.asarray(fold_of_row)
        mean, spread = np.full(x.shape[0], np.nan), np.full(x.shape[0], np.nan)
        for f in np.unique(fold_of_row[fold_of_row >= 0]):
            rows = fold_of_row == f
            unseen = np.stack([np.asarray(fold_pred[f], dtype=np.float64)[rows],
                               *(p[rows] for pair, p in means.items() if f in pair)])
            mean[rows], spread[rows] = unseen.mean(axis=0), unseen.std(axis=0)
        return mean, spread

    def predict_oof(self, x: np.ndarray, sites) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold estimate per row: its site's held-out fold; rows of sites the model never
        saw get the full-ensemble mean (they are held out from every fold). Returns
        (estimate, known) where ``known`` marks rows whose site was in the training table."""
        folds = self.folds
        fold_pred = self.fold_predictions(x)
        fold_of = np.array([folds.get(str(s), -1) for s in sites])
        known = fold_of >= 0
        est = fold_pred.mean(axis=0)
        est[known] = fold_pred[fold_of[known], np.flatnonzero(known)]
        return est, known


def load_ensemble(model_dir: str | Path) -> Ensemble:
    """Open a model directory written by ``training.train_ensemble``; InputError when incomplete."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not path.is_file():
        raise InputError(f"{model_dir}: expected a model directory with {MANIFEST}, found none")
    manifest = read_document(path, FORMAT, "model manifest (from `ciml-ter train`)")
    members = [Member(int(m["fold"]), int(m["seed"]), _load_booster(model_dir / m["file"], m["sha256"]),
                      int(m["best_iteration"])) for m in manifest["members"]]
    return Ensemble(model_dir, manifest, members)


def _load_booster(file: Path, sha256: str):
    """A member's booster on the CPU; InputError when the file is missing or not the one listed."""
    import xgboost as xgb

    if not file.is_file():
        raise InputError(f"{file}: member listed in {MANIFEST} is missing")
    raw = file.read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise InputError(f"{file}: checksum differs from {MANIFEST} (file changed or truncated)")
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    booster.set_param({"nthread": os.cpu_count() or 1, "device": "cpu"})
    return booster
