"""The GPU validation kit's ``--dry`` mode: every section runs on the CPU and is recorded."""
from __future__ import annotations

import json

import pytest

from benchmarks import gpu_session


@pytest.mark.slow
def test_dry_session_runs_every_section_and_records_it(tmp_path):
    path = gpu_session.main(["--dry", "--out", str(tmp_path)])
    doc = json.loads(path.read_text())
    assert doc["dry"] is True and doc["machine"]["xgboost_cuda_build"] in (True, False)
    sections = doc["sections"]
    assert list(sections) == list(gpu_session.SECTIONS)
    assert {name: entry["status"] for name, entry in sections.items()} == dict.fromkeys(gpu_session.SECTIONS, "ok")
    month = sections["global_month"]
    assert month["sizes"]["members"] == 3 and month["row_trees_per_s"]["mean_std_shap"] > 0
    assert month["shap_sum_gap"] < 1e-2 and any("merged" in line for line in month["log"])
    assert sections["pytest_gpu"]["counts"]["collected"] >= 5  # the gpu-marked tests, collected only
    assert (tmp_path / f"{path.stem}-pytest.log").is_file()
    envelope = sections["envelope_global"]
    assert max(envelope["max_abs_diff_vs_cpu_float64_float32"].values()) < 1e-3  # float32 within bounds
    parity = sections["parity"]
    assert set(parity["kernels"]) == {"sg_upper_envelope", "scvtg", "mann_kendall_theil_sen", "monthly_median",
                                      "block_resample", "nirv", "lswi"}
    assert parity["merged_vs_members"]["max_abs_diff"] < 1e-3 * parity["ensemble"]["ter_scale"]


def test_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_session.main(["--dry", "--only", "environment,warp_drive"])
    assert stop.value.code == 2
    assert "unknown section(s) warp_drive" in capsys.readouterr().err
