"""Ensemble inference: merged boosters, mean, fold std, best-iteration range, SHAP against
shap.TreeExplainer, the SHAP additivity tolerance, batch sizes; on the CPU and (``gpu``) the GPU."""
from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from ciml_ter import inference
from ciml_ter.device import CPU, Device
from ciml_ter.ensemble import Member, merge_boosters, merge_members
from ciml_ter.inference import predict_rows

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


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


@pytest.fixture(scope="module")
def merged(members):
    return merge_members(members)


@pytest.fixture(params=DEVICES)
def device(request, merged):
    where = Device.resolve(request.param)
    merged.to(where)
    yield where
    merged.to(CPU)


def _member_predictions(members, x):
    return np.array([m.booster.predict(xgb.DMatrix(x), iteration_range=(0, m.best_iteration + 1))
                     for m in members])


def test_mean_and_std_across_fold_means(members, merged, rows, device):
    p = predict_rows(merged, device.asarray(rows), batch_rows=10, device=device)
    per_member = _member_predictions(members, rows)
    np.testing.assert_allclose(p.ter, per_member.mean(axis=0), rtol=1e-5)
    fold_means = np.array([per_member[[i for i, m in enumerate(members) if m.fold == f]].mean(axis=0)
                           for f in range(3)])
    np.testing.assert_allclose(p.ter_std, fold_means.std(axis=0), rtol=1e-4, atol=1e-5)
    assert p.shap is None


def test_best_iteration_range_is_used(members, merged, rows):
    full = np.mean([m.booster.predict(xgb.DMatrix(rows)) for m in members], axis=0)
    assert np.max(np.abs(predict_rows(merged, rows).ter - full)) > 1e-3


def test_shap_equals_tree_explainer_mean_and_sums_to_prediction(members, merged, rows, device):
    shap = pytest.importorskip("shap")
    p = predict_rows(merged, device.asarray(rows), shap=True, batch_rows=16, device=device)
    reference, base = [], []
    for m in members:
        trimmed = m.booster[: m.best_iteration + 1]
        explainer = shap.TreeExplainer(trimmed)
        reference.append(explainer.shap_values(rows))
        base.append(float(np.ravel(explainer.expected_value)[0]))
    np.testing.assert_allclose(p.shap, np.mean(reference, axis=0), atol=2e-3)
    np.testing.assert_allclose(p.base, np.mean(base), atol=2e-3)
    np.testing.assert_allclose(p.shap.sum(axis=1) + p.base, p.ter, atol=1e-3)
    assert 0 <= p.shap_gap <= 1e-3


def test_batching_does_not_change_results(merged, rows, device):
    """Bitwise on the CPU; on the GPU to float32 rounding (GPU tree SHAP sums with atomics, in
    an order that changes from launch to launch: seen on an H200)."""
    x = device.asarray(rows)
    a = predict_rows(merged, x, shap=True, batch_rows=5, device=device)
    b = predict_rows(merged, x, shap=True, batch_rows=1000, device=device)
    if device.kind == "cpu":
        np.testing.assert_array_equal(a.ter, b.ter)
        np.testing.assert_array_equal(a.shap, b.shap)
    else:
        np.testing.assert_allclose(a.ter, b.ter, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(a.shap, b.shap, rtol=1e-5, atol=1e-4)


def test_merged_booster_is_the_weighted_sum_of_its_members(members, rows):
    """Merge exactness: margins and tree SHAP of the merged booster equal the weighted sum of
    the members' (each up to its best iteration), base value included."""
    weights = [0.5, 0.25, 0.25]
    chosen = members[:3]
    merged = merge_boosters([m.booster for m in chosen], [m.best_iteration + 1 for m in chosen], weights)
    assert merged.num_boosted_rounds() == sum(m.best_iteration + 1 for m in chosen)
    d = xgb.DMatrix(rows)
    expected = sum(w * m.booster.predict(d, iteration_range=m.iteration_range) for w, m in zip(weights, chosen))
    np.testing.assert_allclose(merged.predict(d), expected, rtol=1e-6, atol=1e-4)
    contrib = sum(w * m.booster.predict(d, pred_contribs=True, iteration_range=m.iteration_range)
                  for w, m in zip(weights, chosen))
    np.testing.assert_allclose(merged.predict(d, pred_contribs=True), contrib, rtol=1e-5, atol=1e-4)


def test_merge_refuses_other_objectives():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label=y), 3)
    with pytest.raises(ValueError, match="expected an objective with an identity link .* found binary:logistic"):
        merge_boosters([booster], [3], [1.0])


def test_merged_ensemble_counts_folds_and_trees(members, merged):
    assert merged.folds == [0, 1, 2]
    assert merged.fold_sizes.tolist() == [2, 2, 2]
    assert merged.n_members == 6
    assert merged.n_trees == sum(m.best_iteration + 1 for m in members)
    assert [b.num_boosted_rounds() for b in merged.fold_boosters] == [
        sum(m.best_iteration + 1 for m in members if m.fold == f) for f in range(3)]


def test_predict_rows_refuses_a_model_on_another_device(merged, rows):
    with pytest.raises(ValueError, match="merged ensemble is on 'cpu', predict_rows was asked for 'cuda:1'"):
        predict_rows(merged, rows, device=Device("cuda", 1, "cuda"))


def test_shap_sum_tolerance_is_relative_to_the_terms():
    """Large float32 TER: a gap of 0.01 on terms summing |.| to 1000 is within tolerance
    (1e-3 + 1e-4 x 1000 = 0.101); the old absolute 1e-3 would have raised. A real mismatch raises."""
    contrib = np.array([[600.0, -100.0, 300.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    prediction = contrib.sum(axis=1) + np.array([0.01, 0.0])
    assert inference.shap_sum_gap(contrib, prediction) == pytest.approx(0.01, rel=1e-3)
    with pytest.raises(AssertionError, match=r"differ from the prediction by 0.5 \(allowed 0.0016\) at row 1"):
        inference.shap_sum_gap(contrib, contrib.sum(axis=1) + np.array([0.0, 0.5]))


@pytest.mark.parametrize("free_gib, shap, expected", [
    (80, True, inference.GPU_BATCH_ROWS[1]),  # an H100: the 4 M-row cap
    (2, False, 3_145_728),  # mean + std only: 2 x (84 + 80) bytes per row, half of 2 GiB
    (2, True, 786_432),  # with SHAP: 1176 bytes per row
    (0.01, True, inference.GPU_BATCH_ROWS[0]),  # a tiny card still gets the floor
])
def test_batch_rows_for_device_memory(free_gib, shap, expected):
    rows = inference.batch_rows_for(Device("cuda", 0, "cuda"), 21, 10, shap, free_bytes=int(free_gib * 2**30))
    assert rows == expected
    assert rows % inference.GPU_BATCH_ROWS[0] == 0
    assert inference.batch_rows_for(CPU, 21, 10, shap) == (inference.CPU_SHAP_BATCH_ROWS if shap else inference.CPU_BATCH_ROWS)


def test_on_batch_reports_rows_done(merged, rows):
    seen = []
    predict_rows(merged, rows, batch_rows=10, on_batch=lambda done, n: seen.append((done, n)))
    assert seen == [(10, 37), (20, 37), (30, 37), (37, 37)]
