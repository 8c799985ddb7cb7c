"""PCMCI+ causal weights on a synthetic site table with known parents of TER."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ciml_ter.causal import (
    ORIENTED,
    discover_weights,
    driver_weights,
    group_weights,
    link_assumptions,
    parent_scores,
    read_weights,
    run_pcmciplus,
)
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.sitetable import site_table_from_frame
from ciml_ter.stages.causal import discover

from _support import RUNTIME

FEATURES = ["temperature", "moisture", "decoy", "noise1", "noise2", "noise3"]
TRUE_PARENTS = ["temperature", "moisture"]


def synthetic_sites(n_sites=36, n_months=36, seed=0, nan_share=0.05) -> pd.DataFrame:
    """ter = f(temperature, moisture) + noise; ``decoy`` tracks temperature but is unused."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(n_sites):
        lat = rng.uniform(-40, 75)
        m = np.arange(n_months)
        temp = (25 - 0.4 * abs(lat) + rng.normal(0, 2) + (2 + 0.2 * abs(lat))
                * np.sin(2 * np.pi * (m % 12) / 12 - 2) + rng.normal(0, 1.5, n_months))
        moist = np.clip(rng.beta(2, 2, n_months) * 0.5 + rng.uniform(0, 0.2), 0.01, 1)
        truth = 40 * np.exp(0.06 * temp) * moist / (moist + 0.15)
        frames.append(pd.DataFrame({
            "site": f"S{s:03d}", "lat": lat, "lon": rng.uniform(-180, 180), "pft": ["ENF", "DBF", "GRA"][s % 3],
            "time": pd.date_range("2001-01-01", periods=n_months, freq="MS"),
            "ter": truth + rng.normal(0, 5, n_months), "truth": truth,
            "temperature": temp, "moisture": moist, "decoy": temp + rng.normal(0, 2.0, n_months),
            "noise1": rng.normal(size=n_months), "noise2": rng.normal(size=n_months),
            "noise3": rng.uniform(size=n_months)}))
    df = pd.concat(frames, ignore_index=True)
    for c in ["temperature", "moisture", "decoy", "noise1"]:
        df.loc[rng.random(len(df)) < nan_share, c] = np.nan
    df["TA_F"] = df["temperature"]
    return df


def table(df=None, features=FEATURES):
    df = synthetic_sites() if df is None else df
    return site_table_from_frame(df, "synthetic", features)


def small_config(folds=3) -> PipelineConfig:
    config = PipelineConfig()
    config.train.folds = folds
    return config


def test_parents_outrank_decoy_and_noise():
    result = discover_weights(table(), small_config())
    pooled = result["pooled"]
    w = pooled["weights"]
    for parent in TRUE_PARENTS:
        for other in ("decoy", "noise1", "noise2", "noise3"):
            assert w[parent] > w[other], (parent, other, w)
    assert abs(sum(w.values()) - 1) < 1e-9
    scores = parent_scores(pooled["parents"], TRUE_PARENTS)
    assert scores["recall"] == 1.0
    assert scores["precision"] >= 0.5
    # unlinked features share the floor weight, before renormalisation
    unlinked = [f for f in FEATURES if f not in pooled["parents"]]
    assert len({round(w[f], 12) for f in unlinked}) <= 1
    assert set(result["by_pft"]) == {"DBF", "ENF", "GRA"}
    assert result["settings"]["tau_max"] == 0 and result["settings"]["pc_alpha"] == 0.05


def test_masked_missing_values_do_not_enter_the_tests(monkeypatch):
    """NaNs are masked, not filled: changing the placeholder under the mask changes nothing,
    while the same cells given as real values do change the result."""
    from ciml_ter import causal

    df = synthetic_sites(n_sites=24, nan_share=0.2)
    config = small_config()
    a = run_pcmciplus(table(df).frame, FEATURES, config)
    original = causal._site_datasets

    def huge_placeholder(frame, variables, tau_max=0):
        data, mask, n = original(frame, variables, tau_max)
        return {k: np.where(mask[k], 1e6, v) for k, v in data.items()}, mask, n

    monkeypatch.setattr(causal, "_site_datasets", huge_placeholder)
    b = run_pcmciplus(table(df).frame, FEATURES, config)
    assert a["val_matrix"] == b["val_matrix"] and a["graph"] == b["graph"]
    monkeypatch.undo()
    c = run_pcmciplus(table(df.fillna(1e6)).frame, FEATURES, config)  # unmasked: differs
    assert a["val_matrix"] != c["val_matrix"]


def test_small_pft_falls_back_to_pooled_and_constant_feature_floor():
    df = synthetic_sites(n_sites=30)
    df.loc[df["site"].isin(["S000", "S003"]), "pft"] = "WET"  # 2 sites < 3 folds
    df["constant"] = 1.0
    df["copy"] = df["temperature"]  # perfectly collinear: no crash, no warning
    result = discover_weights(table(df, FEATURES + ["constant", "copy"]), small_config())
    wet = result["by_pft"]["WET"]
    assert wet["fallback"] == "pooled" and "weights" not in wet
    assert "constant" in result["pooled"]["excluded"]
    assert result["pooled"]["weights"]["constant"] == min(result["pooled"]["weights"].values())


def test_causal_stage_writes_json(tmp_path):
    path = tmp_path / "sites.parquet"
    synthetic_sites(n_sites=24).drop(columns=["truth", "TA_F"]).to_parquet(path)
    out = tmp_path / "w.json"
    assert discover(path, out, small_config(), RUNTIME).result == read_weights(out)
    result = read_weights(out)
    assert set(result["pooled"]["weights"]) == set(FEATURES)
    assert {"graph", "p_values", "val_matrix", "strength", "n_sites", "n_samples"} <= set(result["pooled"])
    assert result["n_sites"] == 24
    json.loads(out.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="format"):
        read_weights(bad)


def test_link_assumptions_forbid_ter_causing_a_driver():
    """TER (index 3) may have drivers as causes; no driver lists TER among its causes, lagged or not."""
    links = link_assumptions(3, tau_max=2)
    assert links[3][(0, 0)] == links[3][(2, -2)] == "-?>" and links[3][(3, -1)] == "-?>"
    for j in range(3):
        assert not any(i == 3 for i, _ in links[j]), links[j]
        assert links[j][((j + 1) % 3, 0)] == "o?o"


def test_a_driver_that_ter_drives_never_becomes_a_parent():
    """``echo`` is planted as a child of TER one month later (TER(t-1) -> echo(t)), with lags up to
    1 allowed. Without the link assumptions PCMCI+ finds that reverse link (and the old rule, any
    mark counts, made echo a parent); with them no link runs from TER into a driver and only
    oriented driver --> TER links count: echo is no parent."""
    from ciml_ter import causal

    df = synthetic_sites(n_sites=30, nan_share=0.0)
    df["echo"] = df.groupby("site")["ter"].shift(1) * 0.05 + np.random.default_rng(5).normal(0, 0.3, len(df))
    config = small_config()
    config.causal.tau_max = 1
    features = ["temperature", "moisture", "echo", "noise1"]
    frame = table(df, features).frame
    result = run_pcmciplus(frame, features, config)
    assert result["parents"] == ["temperature", "moisture"]
    assert result["strength"]["echo"] == 0.0 and result["graph"]["echo"] == ""

    # the same data without assumptions: tigramite links TER(t-1) -> echo(t)
    from tigramite import data_processing as pp
    from tigramite.independence_tests.parcorr import ParCorr
    from tigramite.pcmci import PCMCI

    variables = features + ["ter"]
    data, mask, _ = causal._site_datasets(frame, variables, tau_max=1)
    free = PCMCI(pp.DataFrame(data, mask=mask, analysis_mode="multiple"), ParCorr(mask_type="xyz"), verbosity=0)
    graph = free.run_pcmciplus(tau_max=1, pc_alpha=0.05)["graph"]
    assert graph[4, 2, 1] == "-->"  # ter(t-1) -> echo(t): the reverse link is in the data


def test_a_collinear_group_without_a_parent_is_tested_through_its_representative(monkeypatch):
    """When PCMCI+ finds no member of a collinear group (they mask each other), it runs again with
    the group's member most correlated with TER; the others become its siblings, weighted by
    ``sibling_share``."""
    from ciml_ter import causal

    rng = np.random.default_rng(1)
    n = 400
    heat = rng.normal(size=n)
    frame = pd.DataFrame({"site": np.repeat([f"S{i}" for i in range(20)], 20), "pft": "ENF",
                          "ta": heat + rng.normal(0, 0.1, n), "ts": heat + rng.normal(0, 0.3, n),
                          "rain": rng.normal(size=n)})
    frame["ter"] = 3 * frame["ta"] + frame["rain"] + rng.normal(0, 0.2, n)
    calls = []

    def fake_links(frame, usable, config, target):
        calls.append(list(usable))
        first = len(calls) == 1
        return {f: (ORIENTED, 0.5, 0.0) if f == "rain" or (f == "ta" and not first) else ("", 0.0, 1.0)
                for f in usable}

    monkeypatch.setattr(causal, "_pcmciplus_links", fake_links)
    config = small_config()
    config.causal.sibling_share, config.causal.weight_power, config.causal.weight_floor = 0.5, 1.0, 0.01
    result = run_pcmciplus(frame, ["ta", "ts", "rain"], config)
    assert calls == [["ta", "ts", "rain"], ["ta", "rain"]]
    assert result["group_tests"] == [{"group": ["ta", "ts"], "representative": "ta", "mark": ORIENTED}]
    assert result["parents"] == ["ta", "rain"] and result["siblings"] == {"ts": "ta"}
    w = result["weights"]
    assert w["ts"] == pytest.approx(0.5 * w["ta"]) and w["ta"] == pytest.approx(w["rain"])


def test_weights_from_strengths_closed_form():
    """Parents: floor + (1 - floor) (s / max s)^power; ambiguous drivers: share x that; siblings:
    share x their representative's; the rest: floor; then normalised."""
    result = {"strength": {"a": 0.8, "b": 0.2, "c": 0.0, "d": 0.0, "e": 0.0}, "siblings": {"c": "a"},
              "ambiguous_strength": {"e": 0.2}}
    config = small_config().causal
    config.weight_floor, config.weight_power, config.sibling_share = 0.1, 0.5, 0.25
    raw = {"a": 1.0, "b": 0.1 + 0.9 * 0.5, "c": 0.25, "d": 0.1, "e": 0.25 * (0.1 + 0.9 * 0.5)}
    total = sum(raw.values())
    assert group_weights(result, list(raw), config) == pytest.approx({k: v / total for k, v in raw.items()})


def test_per_pft_weights_are_averaged_by_row_share():
    """"per_pft": each PFT's own weights (pooled for a PFT with too few sites) times its share of
    the rows given; "pooled": the pooled weights."""
    df = synthetic_sites(n_sites=30)
    df.loc[df["site"].isin(["S000", "S003"]), "pft"] = "WET"
    result = discover_weights(table(df), small_config())
    c = small_config().causal
    features = result["features"]
    pfts = np.array(["ENF"] * 30 + ["DBF"] * 10 + ["WET"] * 60)
    expected = (0.3 * np.array([result["by_pft"]["ENF"]["weights"][f] for f in features])
                + 0.1 * np.array([result["by_pft"]["DBF"]["weights"][f] for f in features])
                + 0.6 * np.array([result["pooled"]["weights"][f] for f in features]))
    got = driver_weights(result, c, pfts)
    assert [got[f] for f in features] == pytest.approx(list(expected / expected.sum()))
    c.weights = "pooled"
    assert driver_weights(result, c, pfts) == pytest.approx(result["pooled"]["weights"])
