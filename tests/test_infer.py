"""Ensemble inference: mean, fold std, best-iteration range, SHAP against shap.TreeExplainer."""
from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from ciml_ter.infer import Member, predict_rows


@pytest.fixture(scope="module")
def members():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = 50 + 20 * x[:, 0] + 10 * np.tanh(x[:, 1]) + rng.normal(0, 2, 400)
    out = []
    for fold in range(3):
        for seed in range(2):
            params = {"learning_rate": 0.1, "max_depth": 3, "subsample": 0.8, "seed": seed + 10 * fold,
                      "nthread": 1}
            booster = xgb.train(params, xgb.DMatrix(x[fold::3], label=y[fold::3]), num_boost_round=40)
            out.append(Member(fold, seed, booster, best_iteration=20 + 5 * fold + seed))
    return out


@pytest.fixture(scope="module")
def rows():
    x = np.random.default_rng(1).normal(size=(37, 4)).astype(np.float32)
    x[3, 2] = np.nan  # missing value: XGBoost's default direction
    return x


def _member_predictions(members, x):
    return np.array([m.booster.predict(xgb.DMatrix(x), iteration_range=(0, m.best_iteration + 1))
                     for m in members])


def test_mean_and_std_across_fold_means(members, rows):
    p = predict_rows(members, rows, batch_rows=10)
    per_member = _member_predictions(members, rows)
    np.testing.assert_allclose(p.ter, per_member.mean(axis=0), rtol=1e-5)
    fold_means = np.array([per_member[[i for i, m in enumerate(members) if m.fold == f]].mean(axis=0)
                           for f in range(3)])
    np.testing.assert_allclose(p.ter_std, fold_means.std(axis=0), rtol=1e-4, atol=1e-5)
    assert p.shap is None


def test_best_iteration_range_is_used(members, rows):
    full = np.mean([m.booster.predict(xgb.DMatrix(rows)) for m in members], axis=0)
    assert np.max(np.abs(predict_rows(members, rows).ter - full)) > 1e-3


def test_shap_equals_tree_explainer_mean_and_sums_to_prediction(members, rows):
    shap = pytest.importorskip("shap")
    p = predict_rows(members, rows, shap=True, batch_rows=16)
    reference, base = [], []
    for m in members:
        trimmed = m.booster[: m.best_iteration + 1]
        explainer = shap.TreeExplainer(trimmed)
        reference.append(explainer.shap_values(rows))
        base.append(float(np.ravel(explainer.expected_value)[0]))
    np.testing.assert_allclose(p.shap, np.mean(reference, axis=0), atol=2e-3)
    np.testing.assert_allclose(p.base, np.mean(base), atol=2e-3)
    np.testing.assert_allclose(p.shap.sum(axis=1) + p.base, p.ter, atol=1e-3)


def test_batching_does_not_change_results(members, rows):
    a = predict_rows(members, rows, shap=True, batch_rows=5)
    b = predict_rows(members, rows, shap=True, batch_rows=1000)
    np.testing.assert_array_equal(a.ter, b.ter)
    np.testing.assert_array_equal(a.shap, b.shap)
