"""Metrics against hand-computed values, temperature baselines, the evaluate command."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.evaluation import (
    fit_temperature_model,
    lloyd_taylor,
    metrics,
    q10_model,
    scale_metrics,
    temperature_kelvin,
)
from ciml_ter.gridstats import lat_bands
from ciml_ter.device import Device
from ciml_ter.stages import Runtime
from ciml_ter.stages.evaluate import evaluate
from ciml_ter.stages.train import train
from _support import RUNTIME
from test_causal import FEATURES, synthetic_sites


def test_metrics_by_hand():
    obs = np.array([1.0, 2.0, 3.0, 6.0])
    est = np.array([2.0, 2.0, 2.0, 6.0])
    m = metrics(obs, est)
    # errors 1, 0, 1, 0 -> MAE 0.5; mean(obs) 3 -> rMAE 1/6
    assert m["mae"] == pytest.approx(0.5) and m["rmae"] == pytest.approx(0.5 / 3)
    # SS_res = 2, SS_tot = 4 + 1 + 0 + 9 = 14
    assert m["r2"] == pytest.approx(1 - 2 / 14)
    # d_obs = -2,-1,0,3; d_est = -1,-1,-1,3; cov = 2+1+0+9 = 12; var_est = 12; var_obs = 14
    assert m["slope_obs_on_est"] == pytest.approx(1.0)
    assert m["slope_est_on_obs"] == pytest.approx(12 / 14)
    assert m["n"] == 4
    m = metrics([1.0, np.nan, 3.0], [1.0, 5.0, np.nan])
    assert m["n"] == 1 and m["mae"] == 0 and np.isnan(m["r2"])


def test_scales_and_bands():
    frame = pd.DataFrame({"site": ["a", "a", "b", "b"], "pft": ["X", "X", "Y", "Y"],
                          "lat": [10.0, 10.0, 65.0, 65.0], "ter": [1.0, 3.0, 5.0, 7.0]})
    est = np.array([2.0, 2.0, 7.0, 7.0])
    out = scale_metrics(frame, est, est)
    # site means: obs (2, 6), est (2, 7): MAE 0.5
    assert out["site_scale"]["test"]["mae"] == pytest.approx(0.5)
    assert out["by_pft"]["Y"]["test"]["mae"] == pytest.approx(1.0)
    assert out["by_site"]["a"]["overall"]["mae"] == pytest.approx(1.0)
    assert set(out["by_lat_band"]) == {"23.5S-23.5N", "60N-90N"}
    assert lat_bands(60)[-1] == ("60N-90N", 60.0, 90.0)
    # the config's high-latitude edge moves the top band (the same bands as `analyze`'s regions)
    assert set(scale_metrics(frame, est, est, high_latitude=50.0)["by_lat_band"]) == {"23.5S-23.5N", "50N-90N"}
    assert [b[0] for b in lat_bands(50)] == ["90S-23.5S", "23.5S-23.5N", "23.5N-50N", "50N-90N"]


def test_temperature_models_recover_parameters():
    t = np.linspace(263.15, 303.15, 60)
    y = lloyd_taylor(t, 80.0, 250.0)
    assert fit_temperature_model("lloyd_taylor", t, y) == pytest.approx((80.0, 250.0), rel=1e-3)
    y = q10_model(t, 60.0, 2.2)
    assert fit_temperature_model("q10", t, y) == pytest.approx((60.0, 2.2), rel=1e-3)
    assert lloyd_taylor(288.15, 80.0, 250.0) == pytest.approx(80.0)
    frame = pd.DataFrame({"TA_F": [10.0, 20.0], "lst_night": [280.0, 290.0]})
    assert temperature_kelvin(frame)[0] == pytest.approx([283.15, 293.15])
    assert temperature_kelvin(frame, "lst_night")[0] == pytest.approx([280.0, 290.0])
    with pytest.raises(InputError, match="temperature column"):
        temperature_kelvin(frame[[]])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    frame = synthetic_sites(n_sites=30, n_months=24)
    frame.loc[frame["site"].isin(["S000", "S003"]), "pft"] = "WET"  # a PFT with 2 sites < 3 folds
    frame.drop(columns=["truth", "TA_F"]).to_parquet(tmp / "sites.parquet")
    config = PipelineConfig()
    config.device = "cpu"
    config.train.folds, config.train.seeds, config.train.workers = 3, 2, 1
    config.xgboost.num_boost_round = 200
    config.xgboost.early_stopping_rounds = 10
    # the defaults (min_child_weight 40, learning rate 0.02 up to 2000 rounds) are chosen for
    # thousands of site-months, not 480 in 200 rounds
    config.xgboost.min_child_weight, config.xgboost.learning_rate = 5.0, 0.1
    train(tmp / "sites.parquet", tmp / "model", config, RUNTIME)
    out = evaluate(tmp / "model", tmp / "eval", config, RUNTIME, temperature="temperature", rf_trees=20,
                   shap_rows=300).out
    return tmp, out, json.loads((out / "metrics.json").read_text())


def test_metrics_json_shape(evaluated):
    _, out, m = evaluated
    keys = {"mae", "rmae", "r2", "slope_obs_on_est", "slope_est_on_obs", "n"}
    assert set(m["model"]["test"]) == keys and set(m["model"]["overall"]) == keys
    assert {"by_pft", "by_site", "by_lat_band", "site_scale"} <= set(m["model"])
    assert "WET" in m["model"]["by_pft"]
    for name in ("xgboost_plain", "lloyd_taylor", "q10", "random_forest"):
        assert set(m["baselines"][name]["test"]) == keys, name
    n = m["model"]["test"]["n"]
    assert m["baselines"]["xgboost_plain"]["test"]["n"] == m["baselines"]["random_forest"]["test"]["n"] == n
    # rows without temperature cannot get a Lloyd-Taylor estimate: compared on the same rows
    lt = m["baselines"]["lloyd_taylor"]
    assert 0.9 * n < lt["test"]["n"] < n and lt["model_on_same_rows"]["n"] == lt["test"]["n"]
    assert m["baselines"]["lloyd_taylor"]["temperature"] == "temperature"
    assert m["units"] == "g C m-2 month-1" and len(m["config_hash"]) == 16
    assert m["model"]["overall"]["mae"] < m["model"]["test"]["mae"]
    # TER depends on moisture too: the ensembles beat the temperature-only curves on held-out sites
    for name in ("lloyd_taylor", "q10"):
        assert m["baselines"][name]["model_on_same_rows"]["mae"] < m["baselines"][name]["test"]["mae"]
    assert -1 <= m["structure"]["spearman_shap_causal_vs_pcmci"] <= 1
    for name in ("metrics_summary.csv", "metrics_by_pft.csv", "metrics_by_site.csv", "structure.csv",
                 "predictions.csv", "scatter_obs_est.png", "pft_mae.png", "importance.png"):
        assert (out / name).stat().st_size > 0, name
    structure = pd.read_csv(out / "structure.csv")
    context = ["season_sin", "season_cos", *[f"clim_{f}" for f in FEATURES],
               *[f"{p}_{f}" for f in FEATURES for p in ("prev1", "prev3")]]
    assert list(structure["feature"]) == FEATURES + context  # the default context predictors
    assert (structure.set_index("feature").loc[context, "pcmci_effect"] == 0).all()  # not tested by PCMCI+
    training = json.loads((out / "metrics.json").read_text())["training"]
    rounds = training["rounds"]
    assert set(rounds["by_fold"]) == {"0", "1", "2"} and rounds["min"] <= rounds["median"] <= rounds["max"]
    assert training["predictors"]["climatology"] == training["predictors"]["antecedent"] == FEATURES
    assert structure["xgb_weight_causal"].sum() == pytest.approx(1.0)
    assert structure["shap_plain"].sum() == pytest.approx(1.0)


def test_metrics_json_verdict(evaluated):
    """A site-bootstrap interval of test MAE for the model and every baseline with test
    estimates, the paired difference of the causal model and plain XGBoost, and its sentences."""
    _, out, m = evaluated
    v = m["verdict"]
    boot = v["bootstrap"]
    with_test = {k for k, b in m["baselines"].items() if "test" in b}
    assert set(boot["models"]) == {"model"} | with_test == {"model", "xgboost_plain", "lloyd_taylor", "q10",
                                                             "random_forest"}
    for name, entry in boot["models"].items():
        assert entry["low"] <= entry["mae"] <= entry["high"], name
    assert boot["reference"] == "model" and set(boot["differences"]) == with_test
    # rows without temperature have no Lloyd-Taylor estimate: left out of every model
    assert boot["n_rows"] == m["baselines"]["lloyd_taylor"]["test"]["n"]
    assert boot["n_rows"] + boot["n_rows_dropped"] == m["n_samples"] and boot["n_sites"] == m["n_sites"]
    d = v["model_minus_xgboost_plain"]
    assert d == boot["differences"]["xgboost_plain"] and d["low"] <= d["difference"] <= d["high"]
    assert v["sentence"].startswith("The causal weights ") and "site-bootstrap interval" in v["sentence"]
    assert f"test MAE {boot['models']['model']['mae']:.1f} vs {boot['models']['xgboost_plain']['mae']:.1f}" in v["sentence"]
    assert v["ranking"].startswith("By test MAE the causal XGBoost ranks ") and "of 5 models" in v["ranking"]
    # where the causal weights helped: per PFT (WET has 2 sites: counts only) and per latitude band
    by_pft = v["by_group"]["PFT"]
    assert by_pft["WET"] == {"n_sites": 2, "n_rows": int((pd.read_csv(out / "predictions.csv").pft == "WET").sum())}
    assert sum(e["n_rows"] for e in by_pft.values()) == m["n_samples"]  # every row both XGBoost models estimate
    for label, entry in by_pft.items():
        if "how" in entry:
            assert entry["low"] <= entry["difference"] <= entry["high"], label
            assert entry["difference"] == pytest.approx(entry["mae"] - entry["mae_plain"])
    assert set(v["by_group"]) == {"PFT", "latitude band"}
    assert [s.split(",")[0] for s in v["where"]] == ["By PFT", "By latitude band"]


def test_metrics_json_intervals_and_calibration(evaluated):
    """metrics.json's "uncertainty": the nested coverage of each method; predictions.csv its
    per-row conformal bounds (the overall coverage recomputed from them); calibration.json the
    model's calibration from every tower, with the training rows' ranges."""
    from ciml_ter.ensemble import load_ensemble
    from ciml_ter.uncertainty import read_calibration

    tmp, out, m = evaluated
    u = m["uncertainty"]
    assert u["levels"] == [0.9] and set(u) >= {"conformal", "conformal_pooled_absolute", "ensemble_spread"}
    overall = u["conformal"]["90"]["overall"]
    rows = pd.read_csv(out / "predictions.csv")
    inside = (rows.ter_obs >= rows.ter_lower_90) & (rows.ter_obs <= rows.ter_upper_90)
    assert overall["coverage"] == pytest.approx(inside.mean()) and overall["n"] == len(rows)
    centre = rows.ter_mean_held_out  # the mean of the models that never saw the tower, not only its fold's
    assert (rows.ter_lower_90 <= centre).all() and (centre <= rows.ter_upper_90).all()
    assert not np.allclose(centre, rows.ter_test) and np.corrcoef(centre, rows.ter_test)[0, 1] > 0.9
    assert 0.75 < overall["coverage"] < 1.0  # 30 sites, 3 folds: near the nominal 90 %
    assert u["ensemble_spread"]["90"]["overall"]["coverage"] < overall["coverage"]  # the spread alone is too narrow
    assert set(u["conformal"]["90"]["by_pft"]) == set(m["model"]["by_pft"])
    coverage = pd.read_csv(out / "coverage.csv")
    assert set(coverage.scale) == {"overall", "pft", "lat_band", "site"} and set(coverage.method) == {
        "conformal", "conformal_flux", "conformal_pooled_absolute", "ensemble_spread"}
    # the true flux's interval lies inside the observation's (the towers' random error removed)
    assert (rows.ter_flux_lower_90 >= rows.ter_lower_90 - 1e-9).all()
    assert (rows.ter_flux_upper_90 <= rows.ter_upper_90 + 1e-9).all()
    calibration, _ = read_calibration(out)
    ensemble = load_ensemble(tmp / "model")
    assert calibration.model_id == ensemble.model_id and set(calibration.ranges) == set(ensemble.features)
    assert calibration.n_sites == m["n_sites"] and calibration.offset == pytest.approx(u["offset"])


def test_evaluate_rejects_other_features(evaluated):
    tmp, _, _ = evaluated
    frame = pd.read_parquet(tmp / "sites.parquet").drop(columns="noise3")
    frame.to_parquet(tmp / "fewer.parquet")
    with pytest.raises(InputError, match="missing noise3"):
        evaluate(tmp / "model", tmp / "e2", PipelineConfig(device="cpu"), RUNTIME, sites=tmp / "fewer.parquet",
                 temperature="temperature")


def test_auto_device_on_a_gpu_host_keeps_the_scikit_learn_forest(evaluated):
    """device "auto" on a GPU host without cuML: evaluation completes (the forest is
    scikit-learn on every device, NaN kept) and gives the CPU's numbers."""
    tmp, _, cpu = evaluated
    config = PipelineConfig(device="auto")
    config.train.workers = 1
    auto_gpu = Runtime(Device("cuda", 0, "auto"))  # what "auto" resolves to on a GPU host without cuML
    out = evaluate(tmp / "model", tmp / "eval-auto", config, auto_gpu, temperature="temperature", rf_trees=20,
                   shap_rows=300).out
    m = json.loads((out / "metrics.json").read_text())
    assert m["baselines"]["random_forest"]["library"] == "scikit-learn"
    assert m["baselines"]["random_forest"]["test"] == pytest.approx(cpu["baselines"]["random_forest"]["test"],
                                                                     rel=1e-12)


def test_random_forest_keeps_missing_values():
    """Rows with NaN predictors get estimates (no imputation), equal to scikit-learn's own."""
    from sklearn.ensemble import RandomForestRegressor

    from ciml_ter.evaluation import random_forest_baseline

    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 3))
    y = 10 * x[:, 0] + rng.normal(size=120)
    x[::7, 1] = np.nan
    fold_of_row = np.arange(120) % 3
    est = random_forest_baseline(x, y, fold_of_row, 3, seed=1, n_trees=10)
    assert np.isfinite(est).all()
    rf = RandomForestRegressor(n_estimators=10, min_samples_leaf=3, max_features=0.5, n_jobs=1,
                               random_state=1).fit(x[fold_of_row != 0], y[fold_of_row != 0])
    np.testing.assert_allclose(est[fold_of_row == 0], rf.predict(x[fold_of_row == 0]))
