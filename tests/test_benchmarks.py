"""The benchmark runners work (their --quick mode), so they never rot; figures come from full
runs recorded under benchmarks/results/, never from here."""
from __future__ import annotations

import json

import pytest

from _support import RUNTIME


@pytest.mark.parametrize("suite", ["kernels", "training", "inference", "global_month", "ingest", "ingest_cube",
                                   "points", "uncertainty"])
def test_quick_benchmark_writes_its_results(suite, tmp_path):
    import importlib

    module = importlib.import_module(f"benchmarks.{suite}")
    path = module.main(["--quick", "--out", str(tmp_path)])
    result = json.loads(path.read_text())
    text = json.dumps(result)
    assert "cpu" in text and "versions" in text
    if suite == "inference":
        assert result["max_abs_shap_difference"] < 1e-3  # engine SHAP == shap.TreeExplainer
        assert result["sizes"]["members"] == 3
    if suite == "global_month":
        assert result["sizes"]["pixels"] == 20_000 and result["row_trees_per_s"]["mean_std_shap"] > 0
    if suite == "ingest":
        assert result["counts_equal_reference"] and result["pixels_per_s"]["kernel"] > 0
    if suite == "ingest_cube":
        run = result["runs"][0]
        assert run["cells"] == [10, 10] and run["days"] == 60 and run["dates_written"] == 60
        assert run["values_equal_input"] and run["plain_seconds"] > 0 and run["ingest_seconds"] > 0
        assert run["ratio"] == pytest.approx(run["plain_seconds"] / run["ingest_seconds"])
    if suite == "uncertainty":  # the shipped sample: 20 towers nested, 4 of them never seen by a second model
        towers, never = result["towers"], result["never_seen"]
        assert towers["conformal"]["overall"]["n_sites"] == 20
        assert never["n_sites"] == never["conformal"]["overall"]["n_sites"] == 4
        assert 0.5 < result["goals"]["coverage_90"] < 1 and result["goals"]["median_width_ratio_to_pooled"] > 0
        assert towers["ensemble_spread"]["overall"]["coverage"] < towers["conformal"]["overall"]["coverage"]
    if suite == "points":
        assert result["sizes"]["sites"] == 10 and result["sizes"]["site_months"] == 10 * 24
        assert result["finite_share"] > 0.75 and result["seconds"]["total"] > 0  # ci, pv, npv, bs not given:
        assert sorted(result["missing_inputs"]) == [f"{v}: absent from the point extracts" for v in ("bs", "ci", "npv", "pv")]


def test_towers_quick_scores_candidates_and_its_own_loop_is_the_engines(tmp_path):
    """benchmarks.towers --quick: site-bootstrap intervals of each candidate's test MAE; and
    ``plain_oof`` (the loop of the candidates the engine has no setting for) gives the estimates
    and rounds of ``train_ensemble`` on the engine's own settings."""
    import numpy as np

    from benchmarks import towers
    from ciml_ter.config import PipelineConfig
    from ciml_ter.data.flux import SHIPPED_SAMPLE
    from ciml_ter.sitetable import read_site_table
    from ciml_ter.stages.sites import build_sites

    build_sites(tmp_path / "sites.parquet", PipelineConfig(), RUNTIME, fluxnet=[SHIPPED_SAMPLE])
    result = json.loads(towers.main(["--quick", "--sites", str(tmp_path / "sites.parquet"), "--out",
                                     str(tmp_path)]).read_text())
    assert set(result["candidates"]) == {"before", "defaults"} and result["quick"]
    assert result["sizes"] == {"sites": 20, "site_months": 2636} and result["folds"] == 3
    for name, entry in result["scores"]["models"].items():
        assert entry["low"] <= entry["mae"] <= entry["high"], name
    mae = {k: v["mae"] for k, v in result["scores"]["models"].items()}
    minus = result["candidates"]["defaults"]["minus_before"]
    assert minus["difference"] == pytest.approx(mae["defaults"] - mae["before"])
    assert minus["low"] <= minus["difference"] <= minus["high"] and minus["reference"] == "before"
    assert "prev1_P_F" in result["candidates"]["defaults"]["features"]
    assert not any(f.startswith("prev") for f in result["candidates"]["before"]["features"])
    forest = result["candidates"]["defaults"]["versus_random_forest"]
    assert forest["ratio"] == pytest.approx(mae["defaults"] / forest["random_forest"]["mae"])
    assert "| `defaults`: " in towers.markdown(result)

    table = read_site_table(tmp_path / "sites.parquet")
    config = PipelineConfig()
    config.train.folds, config.train.seeds, config.train.workers = 3, 1, 1
    config.xgboost.num_boost_round, config.xgboost.early_stopping_rounds = towers.QUICK_ROUNDS
    folds = towers.fold_assignment(table, 3, 0)
    mine, my_rounds = towers.plain_oof(table, config, folds, {}, workers=1)
    engine, rounds, _ = towers.engine_oof(table, config, folds)
    assert my_rounds == rounds
    np.testing.assert_allclose(mine, engine, rtol=1e-5)
