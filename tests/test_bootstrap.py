"""The site bootstrap of test MAE: closed-form cases, resampling by site against a slow loop,
NaN rows, and the verdict's sentences."""
from __future__ import annotations

import numpy as np
import pytest
from ciml_ter.evaluation import site_bootstrap
from ciml_ter.assessment import verdict


def _loop_bootstrap(obs, estimates, sites, draws):
    """Reference: per resample, concatenate the rows of the drawn sites (sorted names) and take the MAE."""
    names = sorted(set(sites))
    rows_of = {s: np.flatnonzero(sites == s) for s in names}
    out = {k: [] for k in estimates}
    for draw in draws:
        rows = np.concatenate([rows_of[names[i]] for i in draw])
        for k, est in estimates.items():
            out[k].append(np.mean(np.abs(obs[rows] - est[rows])))
    return {k: np.array(v) for k, v in out.items()}


def test_one_site_collapses_the_interval_to_the_point():
    rng = np.random.default_rng(0)
    obs = rng.gamma(2, 30, 50)
    est = {"model": obs + rng.normal(0, 5, 50), "other": obs + rng.normal(0, 8, 50)}
    out = site_bootstrap(obs, est, np.full(50, "S1"), n_boot=200)
    for k, values in est.items():
        m = out["models"][k]
        assert m["low"] == pytest.approx(m["mae"], rel=1e-12) and m["high"] == pytest.approx(m["mae"], rel=1e-12)
        assert m["mae"] == pytest.approx(np.mean(np.abs(obs - values)))
    assert out["n_sites"] == 1 and out["n_rows"] == 50 and out["n_rows_dropped"] == 0


def test_a_model_one_above_the_other_differs_by_exactly_one():
    """Both over-estimate every row, one by 1 more: |error| is 1 more on every row, so the paired
    difference is +1 in every resample (zero-width interval), while each MAE varies."""
    rng = np.random.default_rng(1)
    sites = np.repeat([f"S{k}" for k in range(12)], rng.integers(3, 30, 12))
    obs = rng.gamma(2, 30, len(sites))
    est = obs + rng.gamma(2, 3, len(sites))
    out = site_bootstrap(obs, {"plus_one": est + 1, "model": est}, sites, n_boot=500, seed=3)
    d = out["differences"]["model"]
    assert out["reference"] == "plus_one" and set(out["differences"]) == {"model"}
    assert d["difference"] == pytest.approx(1.0, abs=1e-12)
    assert d["low"] == pytest.approx(1.0, abs=1e-12) and d["high"] == pytest.approx(1.0, abs=1e-12)
    assert d["share_below_zero"] == 0.0
    model = out["models"]["model"]
    assert model["low"] < model["mae"] < model["high"]
    reverse = site_bootstrap(obs, {"plus_one": est + 1, "model": est}, sites, n_boot=500, seed=3, reference="model")
    assert reverse["differences"]["plus_one"]["difference"] == pytest.approx(-1.0, abs=1e-12)
    assert reverse["differences"]["plus_one"]["share_below_zero"] == 1.0


def test_resampling_is_by_site_as_in_a_slow_loop():
    """One site of 1000 rows, eleven of 10: the given draws give the loop's MAEs exactly (a row
    bootstrap would not), and the seeded draws the loop's spread."""
    rng = np.random.default_rng(2)
    sites = np.array(["BIG"] * 1000 + [f"S{k:02d}" for k in range(11) for _ in range(10)])
    obs = rng.gamma(2, 30, len(sites))
    est = {"model": obs + np.where(sites == "BIG", 20.0, 1.0) * rng.normal(0, 1, len(sites)),
           "baseline": obs + rng.normal(0, 6, len(sites))}
    draws = np.random.default_rng(5).integers(0, 12, size=(400, 12))
    loop = _loop_bootstrap(obs, est, sites, draws)
    out = site_bootstrap(obs, est, sites, draws=draws)
    tails = [0.025, 0.975]
    for k in est:
        low, high = np.quantile(loop[k], tails)
        assert (out["models"][k]["low"], out["models"][k]["high"]) == pytest.approx((low, high), rel=1e-12)
    diff = loop["model"] - loop["baseline"]
    d = out["differences"]["baseline"]
    assert (d["low"], d["high"]) == pytest.approx(tuple(np.quantile(diff, tails)), rel=1e-12)
    assert d["share_below_zero"] == np.mean(diff < 0) and out["seed"] is None and out["n_boot"] == 400
    # the big site is in a resample 0, 1, 2... times: the seeded draws spread the MAE as the loop's
    # draws do, far more than resampling rows would
    seeded = site_bootstrap(obs, est, sites, n_boot=1000, seed=0)["models"]["model"]
    width = np.subtract(*np.quantile(loop["model"], tails[::-1]))
    assert seeded["high"] - seeded["low"] == pytest.approx(width, rel=0.3)
    row_mae = np.abs(obs - est["model"])
    assert width > 5 * 2 * 1.96 * row_mae.std() / np.sqrt(len(obs))


def test_rows_without_every_estimate_are_left_out_of_every_model():
    obs = np.array([10.0, 20.0, 30.0, 40.0, np.nan, 60.0])
    sites = np.array(["a", "a", "b", "b", "c", "c"])
    est = {"model": np.array([11.0, 22.0, 33.0, 44.0, 50.0, 66.0]),
           "baseline": np.array([10.0, np.nan, 30.0, 40.0, 50.0, 60.0])}
    out = site_bootstrap(obs, est, sites, n_boot=50)
    assert out["n_rows"] == 4 and out["n_rows_dropped"] == 2 and out["n_sites"] == 3
    assert out["models"]["model"]["mae"] == pytest.approx((1 + 3 + 4 + 6) / 4)
    assert out["models"]["baseline"]["mae"] == 0
    with pytest.raises(ValueError, match="no row has an observation and every estimate"):
        site_bootstrap(obs, {"model": est["model"], "none": np.full(6, np.nan)}, sites)
    with pytest.raises(ValueError, match="draws must be"):
        site_bootstrap(obs, est, sites, draws=np.zeros((5, 2), dtype=int))
    with pytest.raises(ValueError, match="reference 'x'"):
        site_bootstrap(obs, est, sites, reference="x")


def test_verdict_sentences():
    rng = np.random.default_rng(4)
    sites = np.repeat([f"S{k}" for k in range(30)], 24)
    obs = rng.gamma(2, 30, len(sites))
    noise = rng.normal(0, 1, len(sites))
    tests = {"model": obs + 5 * noise, "xgboost_plain": obs + 8 * noise, "q10": obs + 20 * noise,
             "lloyd_taylor": np.full(len(sites), np.nan)}
    v = verdict(obs, sites, tests, causal=True, seed=0)
    m, p = v["bootstrap"]["models"]["model"]["mae"], v["bootstrap"]["models"]["xgboost_plain"]["mae"]
    d = v["model_minus_xgboost_plain"]
    assert d["high"] < 0 and d["difference"] == pytest.approx(m - p)
    assert v["sentence"] == (f"The causal weights helped: test MAE {m:.1f} vs {p:.1f} without them (difference "
                             f"{m - p:+.1f}, 95 % site-bootstrap interval {d['low']:.1f} to {d['high']:.1f}).")
    assert "lloyd_taylor" not in v["bootstrap"]["models"]  # no test estimates
    assert v["ranking"].startswith("By test MAE the causal XGBoost ranks 1 of 3 models; it is better than the best "
                                   "baseline, plain XGBoost: test MAE")
    v = verdict(obs, sites, {**tests, "xgboost_plain": obs + 5 * noise + 0.01 * rng.normal(0, 1, len(sites))},
                causal=True, seed=0)
    assert v["sentence"].startswith("The causal weights made no clear difference") and "which includes 0)." in v["sentence"]
    v = verdict(obs, sites, {**tests, "xgboost_plain": obs + 2 * noise}, causal=True, seed=0)
    assert v["sentence"].startswith("The causal weights did not help") and "is worse than" in v["ranking"]
    v = verdict(obs, sites, {**tests, "xgboost_plain": tests["model"]}, causal=False, seed=0)
    assert "no causal weights to judge" in v["sentence"] and v["model_minus_xgboost_plain"] is None
    assert "ranks 1 of 2 models" in v["ranking"] and "Q10" in v["ranking"]


def test_verdict_says_where_the_causal_weights_helped():
    """Per PFT: helped where the causal model's errors are smaller, did not help where larger,
    no clear difference where equal; a PFT of 2 sites gets its counts only."""
    rng = np.random.default_rng(6)
    pft = np.repeat(["A"] * 10 + ["B"] * 10 + ["C"] * 10 + ["D"] * 2, 12)
    sites = np.repeat([f"S{k}" for k in range(32)], 12)
    obs = rng.gamma(2, 30, len(sites))
    noise = np.abs(rng.normal(0, 1, len(sites)))
    plain = obs + 6 * noise
    model = obs + np.select([pft == "A", pft == "B"], [3 * noise, 9 * noise], 6 * noise)
    v = verdict(obs, sites, {"model": model, "xgboost_plain": plain}, causal=True, seed=0, n_boot=300,
                groups={"PFT": pft})
    by = v["by_group"]["PFT"]
    assert [by[k]["how"] for k in "ABC"] == ["helped", "did not help", "made no clear difference"]
    assert by["D"] == {"n_sites": 2, "n_rows": 24}
    a = pft == "A"
    assert by["A"]["difference"] == pytest.approx(np.abs(model - obs)[a].mean() - np.abs(plain - obs)[a].mean())
    assert by["A"]["low"] <= by["A"]["difference"] <= by["A"]["high"] < 0 < by["B"]["low"]
    assert v["where"] == [f"By PFT, the causal weights helped in A ({by['A']['difference']:+.1f}, {by['A']['low']:.1f} "
                          f"to {by['A']['high']:.1f}); did not help in B ({by['B']['difference']:+.1f}, "
                          f"{by['B']['low']:.1f} to {by['B']['high']:.1f}); made no clear difference in the other 1 "
                          f"with at least 3 sites."]
    plain_model = verdict(obs, sites, {"model": plain, "xgboost_plain": plain}, causal=False, seed=0, groups={"PFT": pft})
    assert "by_group" not in plain_model  # nothing to judge without causal weights


def test_verdict_says_what_the_causal_guard_did():
    rng = np.random.default_rng(5)
    sites = np.repeat([f"S{k}" for k in range(20)], 12)
    obs = rng.gamma(2, 30, len(sites))
    tests = {"model": obs + rng.normal(0, 5, len(sites)), "xgboost_plain": obs + rng.normal(0, 6, len(sites))}
    guard = {"0": {"kept": True}, "1": {"kept": False}, "2": {"kept": True}}
    v = verdict(obs, sites, tests, causal=True, seed=0, guard=guard)
    assert v["sentence"].endswith(" The causal guard kept them in 2 of 3 folds.")
    dropped = {k: {"kept": False} for k in guard}
    v = verdict(obs, sites, {**tests, "xgboost_plain": tests["model"]}, causal=False, seed=0, guard=dropped)
    assert v["sentence"].startswith("The causal guard dropped the causal weights in all 3 folds")
