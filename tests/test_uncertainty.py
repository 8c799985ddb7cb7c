"""Prediction intervals: the conformal quantile, the held-out spread, coverage on a problem with a
closed-form answer, the nested calibration that never reads the test fold, the Mondrian fall-back,
the extrapolation rule and the config's levels."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from ciml_ter.config import config_from_dict
from ciml_ter.errors import ConfigError, InputError
from ciml_ter.uncertainty import (Calibration, HeldOut, NoIntervals, calibrate, conformal_quantile, coverage,
                                  flux_quantiles, held_out, level_name, nested_intervals, training_ranges)

PHI = NormalDist()


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 10.0)  # n = 9
    assert conformal_quantile(scores, 0.9) == 9.0  # ceil(10 x 0.9) = 9th smallest
    assert conformal_quantile(scores, 0.5) == 5.0  # ceil(5) = 5th
    assert conformal_quantile(scores[::-1], 0.8) == 8.0  # order does not matter
    assert conformal_quantile(np.arange(1.0, 6.0), 0.9) == math.inf  # ceil(5.4) = 6 > n = 5
    assert conformal_quantile(np.array([np.nan, 2.0, 1.0, 3.0]), 0.5) == 2.0  # NaN left out


def test_held_out_spread_leaves_out_the_rows_own_fold():
    fold_pred = np.array([[10.0, 10.0, 10.0],
                          [12.0, 14.0, 12.0],
                          [16.0, 20.0, 14.0]])
    estimate, spread = held_out(fold_pred, np.array([0, 2, -1]))
    # row 0 (fold 0): estimate 10, spread of (12, 16) = 2; row 1 (fold 2): 20, spread of (10, 14) = 2
    # row 2 (never seen): mean of all three 12, population std sqrt(8/3)
    np.testing.assert_allclose(estimate, [10.0, 20.0, 12.0])
    np.testing.assert_allclose(spread, [2.0, 2.0, math.sqrt(8 / 3)])


def _heteroscedastic(n_sites=200, months=40, seed=0, folds=5, noise_share=None):
    """y = ŷ + σ ε with ε standard normal and σ the spread itself (0.5 to 8 by site); with
    ``noise_share`` c, that is the true flux t and the observation is t + c σ ν (ν standard
    normal), the random error c σ given as ``noise``. Returns (rows, t)."""
    rng = np.random.default_rng(seed)
    sigma_site = np.exp(rng.uniform(np.log(0.5), np.log(8.0), n_sites))
    sites = np.repeat([f"S{i:03d}" for i in range(n_sites)], months)
    sigma = np.repeat(sigma_site, months)
    estimate = rng.uniform(20, 200, sites.size)
    truth = estimate + sigma * rng.standard_normal(sites.size)
    noise = np.full(sites.size, np.nan) if noise_share is None else noise_share * sigma
    obs = truth if noise_share is None else truth + noise * rng.standard_normal(sites.size)
    fold = np.repeat(np.arange(n_sites) % folds, months)
    pft = np.repeat(np.where(np.arange(n_sites) % 2, "ENF", "GRA"), months)
    lat = np.repeat(np.where(np.arange(n_sites) % 3, 45.0, 65.0), months)
    return HeldOut(sites, fold, pft, pft, lat, obs, estimate, sigma, noise), truth


def test_normalised_intervals_cover_every_spread_as_the_closed_form_says():
    """With σ̂ = σ exactly, the normalised score is |ε|: its 90 % quantile is z = 1.645 and the
    interval ŷ ± z σ covers 90 % of the rows at every σ. The pooled absolute interval ŷ ± q covers
    2Φ(q/σ) − 1 at σ: far more where σ is small, far less where it is large."""
    h, _ = _heteroscedastic()
    tiny = 1e-6  # s0 = 1e-6 x median σ: the score is |ε| to six digits (the scale σ̂ + s0: no site-bias term)
    intervals = nested_intervals(h, [0.9], min_group_sites=1000, offset_share=tiny, mondrian=set(), site_bias=False)
    c = calibrate(h.obs, h.estimate, h.spread, h.noise, h.sites, h.groups, [0.9], 1000, tiny, site_bias=False)
    assert c.pooled["90"] == pytest.approx(PHI.inv_cdf(0.95), abs=0.04)
    # no random error given: the true flux's interval is the observation's, exactly
    assert c.flux_pooled == c.pooled and c.random_error == {"rows": 0, "share": 0.0, "median": None}
    np.testing.assert_array_equal(intervals["conformal_flux", "90"][0], intervals["conformal", "90"][0])
    lower, upper = intervals["conformal", "90"]
    covered = (h.obs >= lower) & (h.obs <= upper)
    small, large = h.spread < 1.5, h.spread > 4.0
    for sel in (small, large, np.ones_like(small)):
        assert covered[sel].mean() == pytest.approx(0.9, abs=0.02)
    # the half width is q σ: within a fold (one quantile) proportional to the spread
    ratio = (upper - lower) / 2 / h.spread
    for f in range(5):
        assert np.ptp(ratio[h.folds == f]) < 1e-4 * ratio[h.folds == f].mean()
    lo, hi = intervals["conformal_pooled_absolute", "90"]
    q = (hi - lo) / 2
    hit = (h.obs >= lo) & (h.obs <= hi)
    for sel in (small, large):
        expected = np.mean(2 * np.array([PHI.cdf(v) for v in q[sel] / h.spread[sel]]) - 1)
        assert hit[sel].mean() == pytest.approx(expected, abs=0.02)
    assert hit[small].mean() > 0.97 and hit[large].mean() < 0.8
    # the ensemble-spread interval with σ̂ = σ is exact here too: ŷ ± 1.645 σ
    lo, hi = intervals["ensemble_spread", "90"]
    assert ((h.obs >= lo) & (h.obs <= hi)).mean() == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95])
def test_flux_intervals_remove_the_towers_random_error(level):
    """Observation y = t + ν with the random error sd(ν) = 0.8 σ given per row, t = ŷ + σ ε: the
    observation's normalised quantile is z √(1 + 0.8²), the true flux's z (closed form, z the
    normal quantile, for the scale σ̂ + s0). Nested (with the site-bias scale), the flux interval
    covers the truth at the level at small and large σ, and the observations less often:
    2Φ(z / √1.64) − 1."""
    h, truth = _heteroscedastic(noise_share=0.8)
    tiny = 1e-6
    z = PHI.inv_cdf((1 + level) / 2)
    c = calibrate(h.obs, h.estimate, h.spread, h.noise, h.sites, h.groups, [level], 1000, tiny,
                  site_bias=False)  # the scale σ̂ + s0, as the closed form has it; the intervals below: the default
    name = level_name(level)
    assert c.pooled[name] == pytest.approx(z * math.sqrt(1.64), rel=0.03)
    assert c.flux_pooled[name] == pytest.approx(z, rel=0.05)  # sampling error, amplified by the extrapolation
    assert c.random_error["rows"] == h.obs.size and c.random_error["share"] == 1.0
    intervals = nested_intervals(h, [level], min_group_sites=1000, offset_share=tiny, mondrian=set())
    lower, upper = intervals["conformal_flux", name]
    truth_in, obs_in = (truth >= lower) & (truth <= upper), (h.obs >= lower) & (h.obs <= upper)
    for sel in (h.spread < 1.5, h.spread > 4.0, np.ones(h.obs.size, dtype=bool)):
        assert truth_in[sel].mean() == pytest.approx(level, abs=0.025)
    assert obs_in.mean() == pytest.approx(2 * PHI.cdf(z / math.sqrt(1.64)) - 1, abs=0.02)
    lower, upper = intervals["conformal", name]
    assert ((h.obs >= lower) & (h.obs <= upper)).mean() == pytest.approx(level, abs=0.02)
    assert np.all(intervals["conformal_flux", name][1] <= upper)  # never wider than the observation's


def test_a_random_error_larger_than_the_residuals_is_refused():
    """A random error given per month instead of per day (30 times too large) has more variance
    than the residuals it is part of: refused, naming the column, not used to shrink the map's
    intervals to nothing."""
    h, _ = _heteroscedastic(n_sites=40, months=12, noise_share=0.8)
    calibrate(h.obs, h.estimate, h.spread, h.noise, h.sites, h.groups, [0.9], 5, 0.25)  # as given: accepted
    with pytest.raises(InputError, match=r"ter_random_error \(NEE_VUT_REF_RANDUNC x days\): the towers' random "
                                         r"error has [0-9.]+ times the variance of the held-out residuals"):
        calibrate(h.obs, h.estimate, h.spread, 30 * h.noise, h.sites, h.groups, [0.9], 5, 0.25)


def test_flux_quantile_of_exact_rows_with_a_few_noisy_ones():
    """Months without a random error count as exact: with one noisy row in a thousand the flux
    quantile is (nearly) the observation's; a quantile beyond the rows stays infinite."""
    rng = np.random.default_rng(3)
    residual, scale = rng.standard_normal(1000), np.ones(1000)
    noise = np.zeros(1000)
    noise[0] = 0.5
    draws = rng.standard_normal((50, 1000))
    found = flux_quantiles(residual, scale, noise, [0.9, 0.9995], draws)
    assert found["90"] == pytest.approx(conformal_quantile(np.abs(residual), 0.9), rel=1e-3)
    assert found["100"] == math.inf


def test_nested_calibration_never_reads_the_test_fold():
    """Poison the observations of fold 2's towers: fold 2's intervals stay bit for bit the same
    (its quantiles come from the other folds), every other fold's change."""
    h, _ = _heteroscedastic(n_sites=60, months=12, folds=4, noise_share=0.5)
    before = nested_intervals(h, [0.5, 0.9], min_group_sites=5, offset_share=0.25, mondrian={"ENF", "GRA"})
    test = h.folds == 2
    poisoned = HeldOut(**{**h.__dict__, "obs": np.where(test, h.obs * 100 + 1e4, h.obs)})
    after = nested_intervals(poisoned, [0.5, 0.9], min_group_sites=5, offset_share=0.25, mondrian={"ENF", "GRA"})
    for key in before:
        if key[0] == "ensemble_spread":
            continue
        for b, a in zip(before[key], after[key]):
            np.testing.assert_array_equal(b[test], a[test])
            assert not np.array_equal(b[~test], a[~test])


def test_mondrian_quantile_per_pft_falls_back_to_pooled_below_the_site_minimum():
    rng = np.random.default_rng(1)
    sites = np.repeat([f"A{i}" for i in range(6)] + [f"B{i}" for i in range(3)], 50)
    groups = np.array([s[0] for s in sites])
    scale = np.where(groups == "A", 1.0, 10.0)  # B's errors are ten times A's
    estimate = np.full(sites.size, 100.0)
    obs = estimate + scale * rng.standard_normal(sites.size)
    spread = np.ones(sites.size)
    nan = np.full(sites.size, np.nan)
    c = calibrate(obs, estimate, spread, nan, sites, groups, [0.9], min_group_sites=5, offset_share=0.1,
                  site_bias=False)  # the scale is σ̂ + s0 = 1.1
    assert c.group_sites == {"A": 6, "B": 3} and set(c.groups) == {"A"}
    scores = np.abs(obs - estimate) / 1.1  # s0 = 0.1 x median spread 1
    assert c.pooled["90"] == conformal_quantile(scores, 0.9)
    assert c.groups["A"]["90"] == conformal_quantile(scores[groups == "A"], 0.9)
    q = c.quantiles(0.9, np.array(["A", "B", "C"]), 3, "observation")
    assert list(q) == [c.groups["A"]["90"], c.pooled["90"], c.pooled["90"]]  # B and an unknown PFT: pooled
    lower, upper = c.interval(0.9, np.array([100.0, 100.0]), np.array([1.0, 3.0]), np.array(["A", "B"]))
    np.testing.assert_allclose(upper - 100.0, [c.groups["A"]["90"] * 1.1, c.pooled["90"] * 3.1])
    np.testing.assert_allclose(100.0 - lower, upper - 100.0)
    with_three = calibrate(obs, estimate, spread, nan, sites, groups, [0.9], min_group_sites=3, offset_share=0.1,
                           site_bias=False)
    assert set(with_three.groups) == {"A", "B"} and with_three.groups["B"]["90"] > 5 * c.groups["A"]["90"]


def test_nested_evaluation_scores_the_groups_that_predict_uses():
    """A PFT of exactly ``min_group_sites`` sites has its own quantile in the calibration that
    ``predict`` uses; every nested calibration (one site fewer) keeps it, from the group's sites
    among the other folds, not the pooled one; below ``MIN_NESTED_GROUP_SITES`` there it is
    pooled."""
    rng = np.random.default_rng(5)
    sites = np.repeat([f"A{i}" for i in range(5)] + [f"B{i}" for i in range(20)], 30)
    groups = np.array([s[0] for s in sites])
    folds = np.array([int(s[1:]) % 5 for s in sites])
    estimate, spread, nan = np.full(sites.size, 50.0), np.ones(sites.size), np.full(sites.size, np.nan)
    obs = estimate + np.where(groups == "A", 0.2, 3.0) * rng.standard_normal(sites.size)  # A's errors far smaller
    h = HeldOut(sites, folds, groups, groups, None, obs, estimate, spread, nan)
    final = calibrate(obs, estimate, spread, nan, sites, groups, [0.9], min_group_sites=5, offset_share=0.1)
    assert set(final.groups) == {"A", "B"}
    nested = nested_intervals(h, [0.9], min_group_sites=5, offset_share=0.1, mondrian=set(final.groups))
    lower, upper = nested["conformal", "90"]
    for f in range(5):
        cal = folds != f
        expected = calibrate(obs[cal], estimate[cal], spread[cal], nan[cal], sites[cal], groups[cal], [0.9],
                             min_group_sites=4, offset_share=0.1)  # the 4 A sites left: A's own quantile
        rows = (folds == f) & (groups == "A")
        np.testing.assert_allclose(upper[rows] - 50.0,
                                   expected.groups["A"]["90"] * expected.scale(spread[rows], groups[rows]))
    a = groups == "A"
    assert np.mean((obs[a] >= lower[a]) & (obs[a] <= upper[a])) < 0.97  # pooled would cover A at ~100 %
    coarse = nested_intervals(h, [0.9], min_group_sites=5, offset_share=0.1, mondrian=set())["conformal", "90"]
    assert np.all(coarse[1][a] - 50.0 > 5 * (upper[a] - 50.0))
    one_left = HeldOut(**{**h.__dict__, "folds": np.where(a, 0, folds)})  # every A site in fold 0
    found = nested_intervals(one_left, [0.9], min_group_sites=5, offset_share=0.1, mondrian={"A", "B"})
    rows = a  # fold 0's A rows: no A site in any other fold, so pooled
    cal = one_left.folds != 0
    pooled = calibrate(obs[cal], estimate[cal], spread[cal], nan[cal], sites[cal], groups[cal], [0.9],
                       min_group_sites=5, offset_share=0.1)
    np.testing.assert_allclose(found["conformal", "90"][1][rows] - 50.0,
                               pooled.pooled["90"] * pooled.scale(spread[rows], None))


def _site_biased(n_sites=300, months=24, folds=5, bias=3.0, seed=7):
    """y = ŷ + b + σ ε: a bias b ~ N(0, bias²) per site that no spread shows, and an error σ ε that
    grows with the spread σ (0.5 to 8 by site, given as σ̂)."""
    rng = np.random.default_rng(seed)
    sigma_site = np.exp(rng.uniform(np.log(0.5), np.log(8.0), n_sites))
    sites = np.repeat([f"S{i:03d}" for i in range(n_sites)], months)
    sigma = np.repeat(sigma_site, months)
    estimate = rng.uniform(20, 200, sites.size)
    obs = estimate + np.repeat(bias * rng.standard_normal(n_sites), months) + sigma * rng.standard_normal(sites.size)
    fold = np.repeat(np.arange(n_sites) % folds, months)
    pft = np.full(sites.size, "ENF")
    return HeldOut(sites, fold, pft, pft, None, obs, estimate, sigma, np.full(sites.size, np.nan))


def test_site_bias_scale_covers_the_sites_the_spread_cannot_explain():
    """With a bias per site of sd 3 beside an error of sd σ̂, the fitted terms are τ ≈ 3 and
    κ ≈ 1, and the nested intervals cover 90 % of the rows at small spreads and at large ones; the
    scale σ̂ + s0 alone (``site_bias`` off) misses the small-spread sites' bias and over-covers the
    large-spread ones. Without a site bias τ ≈ 0: the scale is the spread's."""
    h = _site_biased()
    tiny = 1e-6
    c = calibrate(h.obs, h.estimate, h.spread, h.noise, h.sites, h.groups, [0.9], 1000, tiny)
    assert c.scale_pooled["site_bias"] == pytest.approx(3.0, rel=0.12)
    assert c.scale_pooled["spread_factor"] == pytest.approx(1.0, abs=0.05)
    small, large = h.spread < 1.5, h.spread > 4.0
    for site_bias, inside in ((True, (0.87, 0.93)), (False, None)):
        lower, upper = nested_intervals(h, [0.9], min_group_sites=1000, offset_share=tiny, mondrian=set(),
                                        site_bias=site_bias)["conformal", "90"]
        covered = (h.obs >= lower) & (h.obs <= upper)
        if site_bias:
            for sel in (small, large, np.ones(h.obs.size, dtype=bool)):
                assert inside[0] < covered[sel].mean() < inside[1]
        else:
            assert covered[small].mean() < 0.8 and covered[large].mean() > 0.95
    unbiased = _site_biased(bias=0.0)
    c = calibrate(unbiased.obs, unbiased.estimate, unbiased.spread, unbiased.noise, unbiased.sites, unbiased.groups,
                  [0.9], 1000, tiny)
    assert c.scale_pooled["site_bias"] < 0.45  # moments: without removing the means' sampling variance, 0.7


def test_zero_spread_cannot_be_calibrated():
    with pytest.raises(NoIntervals, match="spread is 0"):
        calibrate(np.ones(4), np.zeros(4), np.zeros(4), np.zeros(4), np.array(list("abcd")), np.array(list("xxxx")),
                  [0.9], 2, 0.25)


def test_coverage_tables_by_hand():
    h = HeldOut(np.array(["a", "a", "b", "b"]), np.array([0, 0, 1, 1]), np.array(["X", "X", "Y", "Y"]),
                np.array(["X", "X", "Y", "Y"]), np.array([10.0, 10.0, 65.0, 65.0]),
                np.array([1.0, 5.0, 2.0, 3.0]), np.zeros(4), np.ones(4), np.full(4, np.nan))
    lower, upper = np.array([0.0, 0.0, 0.0, 2.5]), np.array([2.0, 4.0, 4.0, 3.5])
    found, table = coverage(h, {("conformal", "90"): (lower, upper)})
    entry = found["conformal"]["90"]
    # covered: yes, no (5 > 4), yes, yes; widths 2, 4, 4, 1
    assert entry["overall"] == {"coverage": 0.75, "mean_width": 2.75, "median_width": 3.0, "n": 4, "n_sites": 2}
    assert entry["by_pft"]["X"]["coverage"] == 0.5 and entry["by_pft"]["Y"]["coverage"] == 1.0
    assert set(entry["by_lat_band"]) == {"23.5S-23.5N", "60N-90N"}
    assert entry["site_distribution"]["min"] == 0.5 and entry["site_distribution"]["max"] == 1.0
    site_rows = table[table.scale == "site"].set_index("group")
    assert site_rows.loc["a", "coverage"] == 0.5 and site_rows.loc["b", "n"] == 2


def test_extrapolation_is_any_predictor_outside_the_training_range():
    x_train = np.array([[0.0, 10.0], [1.0, 20.0], [np.nan, 15.0]])
    ranges = training_ranges(x_train, ["a", "b"])
    assert ranges == {"a": [0.0, 1.0], "b": [10.0, 20.0]}
    c = Calibration([0.9], 1.0, {"90": 1.0}, {}, {"90": 1.0}, {}, {"site_bias": 0.0, "spread_factor": 1.0}, {}, {}, {},
                    5, 1, 1, 0.25, True, ranges)
    x = np.array([[0.5, 15.0], [1.5, 15.0], [0.5, 9.0], [np.nan, 20.0], [0.0, np.nan]])
    assert c.outside(x, ["a", "b"]).tolist() == [False, True, True, False, False]


def test_calibration_document_round_trip_keeps_an_infinite_quantile():
    c = Calibration([0.9, 0.95], 0.5, {"90": 1.5, "95": math.inf}, {"ENF": {"90": 1.2, "95": 2.0}},
                    {"90": 1.4, "95": math.inf}, {"ENF": {"90": 1.1, "95": math.inf}},
                    {"site_bias": 3.0, "spread_factor": 0.9}, {"ENF": {"site_bias": 1.5, "spread_factor": 1.1}},
                    {"rows": 90, "share": 0.9, "median": 2.5}, {"ENF": 7}, 5, 10, 100, 0.25, True, {"a": [0.0, 1.0]},
                    "m1")
    doc = c.document()
    assert doc["pooled"]["95"] is None and doc["flux_groups"]["ENF"]["95"] is None
    assert len(doc["calibration_id"]) == 16
    back = Calibration.from_document(doc)
    assert back == c
    # the scale: ENF's terms for ENF rows, the pooled ones for the rest; s0 = 0.5 added to the spread
    np.testing.assert_allclose(back.scale(np.array([1.5, 1.5]), np.array(["ENF", "GRA"])),
                               [math.hypot(1.5, 1.1 * 2.0), math.hypot(3.0, 0.9 * 2.0)])
    lower, upper = back.interval(0.9, np.array([10.0]), np.array([1.5]), np.array(["ENF"]))
    assert upper[0] - 10.0 == pytest.approx(1.1 * math.hypot(1.5, 2.2)) == 10.0 - lower[0]


@pytest.mark.parametrize("levels, ok", [([0.9], True), ([0.5, 0.9, 0.95], True), ([0.925], False),
                                         ([0.9, 0.9], False), ([], False), ([1.0], False), ([0.0], False)])
def test_config_levels_are_distinct_whole_percentages(levels, ok):
    data = {"uncertainty": {"levels": levels}}
    if ok:
        assert config_from_dict(data).uncertainty.levels == levels
        assert [level_name(v) for v in levels] == [f"{round(100 * v)}" for v in levels]
    else:
        with pytest.raises(ConfigError, match="uncertainty.levels"):
            config_from_dict(data)


def test_uncertainty_settings_leave_the_config_hash_alone():
    """The model does not depend on them (the run records the calibration it used)."""
    a = config_from_dict({})
    b = config_from_dict({"uncertainty": {"levels": [0.5, 0.95], "min_group_sites": 8, "offset_share": 1.0}})
    assert a.stable_hash() == b.stable_hash()
    with pytest.raises(ConfigError, match="min_group_sites"):
        config_from_dict({"uncertainty": {"min_group_sites": 1}})
    with pytest.raises(ConfigError, match="offset_share"):
        config_from_dict({"uncertainty": {"offset_share": 0.0}})


def test_an_older_calibration_asks_for_evaluate_again(tmp_path):
    """A calibration.json of format /2 (no site-bias scale) is refused with the command that writes
    a current one."""
    from ciml_ter.uncertainty import CALIBRATION, model_calibration

    (tmp_path / CALIBRATION).write_text('{"format": "ciml-ter-calibration/2", "pooled": {"90": 1.0}}')
    with pytest.raises(InputError, match=r"format 'ciml-ter-calibration/3', found 'ciml-ter-calibration/2'; "
                                         r"run `ciml-ter evaluate --model .* --out .*`"):
        model_calibration(tmp_path, "m", [0.9])


def test_a_model_of_two_folds_has_no_intervals():
    """With two folds a held-out tower has one other fold, hence no spread: ``evaluate`` records
    why instead of calibrating."""
    from types import SimpleNamespace

    from ciml_ter.uncertainty import tower_intervals

    frame = pd.DataFrame({"site": ["a", "b"], "pft": ["X", "X"], "lat": [1.0, 2.0], "ter": [1.0, 2.0]})
    ensemble = SimpleNamespace(features=["f"], folds={"a": 0, "b": 1}, model_id="m",
                               matrix=lambda table: np.zeros((2, 1)), fold_predictions=lambda x: np.zeros((2, 2)))
    with pytest.raises(NoIntervals, match="at least 3 folds.*the model has 2"):
        tower_intervals(ensemble, SimpleNamespace(frame=frame, sites=frame["site"].to_numpy()), config_from_dict({}))
