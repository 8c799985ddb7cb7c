"""The benchmark runners work (their --quick mode), so they never rot; figures come from full
runs recorded under benchmarks/results/, never from here."""
from __future__ import annotations

import json

import pytest


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
