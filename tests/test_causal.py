"""PCMCI+ causal weights on a synthetic site table with known parents of TER."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ciml_ter.causal import (
    discover_weights,
    parent_scores,
    read_weights,
    run_pcmciplus,
)
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.sitetable import site_table_from_frame
from ciml_ter.stages.causal import run as run_causal

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

    def huge_placeholder(frame, variables):
        data, mask, n = original(frame, variables)
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
    assert wet["fallback"] == "pooled" and wet["weights"] == result["pooled"]["weights"]
    assert "constant" in result["pooled"]["excluded"]
    assert result["pooled"]["weights"]["constant"] == min(result["pooled"]["weights"].values())


def test_causal_stage_writes_json(tmp_path):
    path = tmp_path / "sites.parquet"
    synthetic_sites(n_sites=24).drop(columns=["truth", "TA_F"]).to_parquet(path)
    out = tmp_path / "w.json"
    assert run_causal(path, out, small_config()) == read_weights(out)
    result = read_weights(out)
    assert set(result["pooled"]["weights"]) == set(FEATURES)
    assert {"graph", "p_values", "val_matrix", "n_sites", "n_samples"} <= set(result["pooled"])
    assert result["n_sites"] == 24
    json.loads(out.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="format"):
        read_weights(bad)
