"""The ciml-ter command line: help, info, user-error handling (exit 2, one line)."""
from __future__ import annotations

import json

import pytest

from _support import run_cli

COMMANDS = [[], ["info"], ["config"], ["config", "show"], ["config", "check"], ["demo"], ["sites"], ["features"], ["causal"], ["train"], ["evaluate"], ["predict"], ["analyze"], ["report"], ["run"], ["synth"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_on_every_command(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: ciml-ter" in result.stdout


def test_info_json_parses_and_reports_machine():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["cpu"]["count"] >= 1
    assert set(data["gpu"]) == {"cupy", "numba_cuda"}
    assert data["packages"]["numpy"]
    assert data["mpi"]["library"] and "Open MPI" in data["mpi"]["library"]
    assert data["mpi"]["ranks"] == 1
    assert "sbatch" in data["slurm"]


def test_info_table():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    for label in ("CPUs", "GPUs (cupy)", "GPUs (numba_cuda)", "MPI", "Slurm"):
        assert label in result.stdout


def _one_error_line(result):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_malformed_toml_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[xgboost\nmax_depth = 3\n")
    line = _one_error_line(run_cli("config", "check", str(bad)))
    assert line.startswith(f"error: {bad}: malformed TOML")


def test_unknown_key_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[xgboost]\nmax_dept = 3\n")
    line = _one_error_line(run_cli("config", "check", str(cfg)))
    assert "unknown key 'xgboost.max_dept'" in line


def test_missing_file_is_one_line_exit_2(tmp_path):
    line = _one_error_line(run_cli("config", "check", str(tmp_path / "absent.toml")))
    assert line == f"error: {tmp_path / 'absent.toml'}: config file not found"


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "config", "check", str(tmp_path / "absent.toml"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_config_show_writes_a_valid_config(tmp_path):
    path = tmp_path / "c.toml"
    result = run_cli("config", "show", "--out", str(path))
    assert result.returncode == 0, result.stderr
    check = run_cli("config", "check", str(path))
    assert check.returncode == 0 and "valid; hash" in check.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--years", "20x1"], "--years '20x1': expected YEAR or FIRST-LAST"),
    (["--bbox", "1,2,3"], "--bbox '1,2,3': expected W,S,E,N in degrees with -180 <= W < E <= 180"),
    (["--bbox", "10,0,5,8"], "--bbox '10,0,5,8': expected W,S,E,N in degrees"),
    (["--months", "2019-13:2019-14"], "--months '2019-13:2019-14': expected YYYY-MM:YYYY-MM"),
    (["--res", "0.3"], "--res 0.3: expected a resolution from 0.05 to 1 degree"),
])
def test_synth_bad_options_exit_2(tmp_path, args, fragment):
    line = _one_error_line(run_cli("synth", "--out", str(tmp_path / "w"), *args))
    assert fragment in line


DEVICE_COMMANDS = {
    "synth": ["synth", "--out", "{tmp}/w"],
    "ingest": ["ingest", "{tmp}/granules", "--out", "{tmp}/cube.zarr"],
    "features": ["features", "--cube", "{tmp}/none.zarr", "--out", "{tmp}/f.zarr"],
    "train": ["train", "--sites", "{tmp}/none.parquet", "--out", "{tmp}/m"],
    "evaluate": ["evaluate", "--model", "{tmp}/none", "--out", "{tmp}/e"],
    "predict": ["predict", "--model", "{tmp}/none", "--features", "{tmp}/none.zarr", "--out", "{tmp}/r"],
    "tune": ["tune", "--sites", "{tmp}/none.parquet", "--out", "{tmp}/s.toml"],
    "causal": ["causal", "--sites", "{tmp}/none.parquet", "--out", "{tmp}/w.json"],
    "analyze": ["analyze", "--run", "{tmp}/none", "--out", "{tmp}/a"],
    "demo": ["demo", "--out", "{tmp}/d"],
}


@pytest.mark.skipif(__import__("ciml_ter.device", fromlist=["x"]).cupy_or_none() is not None,
                    reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize("command", [*DEVICE_COMMANDS, "run"])
def test_every_command_follows_the_config_device_and_refuses_cuda_first(tmp_path, command):
    """A config with device = "cuda" on a GPU-less machine: every sub-command that computes
    refuses with the same line before touching its inputs or writing anything."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('device = "cuda"\n[paths]\ncube = "none.zarr"\n')
    args = ["run", str(cfg)] if command == "run" else \
        [a.format(tmp=tmp_path) for a in DEVICE_COMMANDS[command]] + ["--config", str(cfg)]
    line = _one_error_line(run_cli(*args))
    assert line.startswith("error: device 'cuda' was requested but no CUDA GPU is usable"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_version_prints_the_version():
    from ciml_ter import __version__

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__


@pytest.mark.parametrize("command, text", [(["run"], "The whole chain from the config's [paths]"),
                                           (["run"], "with a [paths] section")])
def test_help_texts_keep_square_brackets(command, text):
    """Help is plain text: "[paths]" is a config section, not rich markup to be swallowed."""
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert text in " ".join(result.stdout.split())


def test_demo_with_a_missing_fluxnet_folder_stops_before_any_work(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "demo"), "--fluxnet", str(tmp_path / "nowhere"), timeout=60)
    line = _one_error_line(result)
    assert line == f"error: --fluxnet {tmp_path / 'nowhere'}: expected a folder of FLUXNET2015 / ONEFlux " \
                   "monthly CSVs, found nothing"
    assert not (tmp_path / "demo").exists()


def test_train_on_too_few_sites_stops_before_the_causal_step(tmp_path):
    """A 1-site table: refused at once, no PCMCI+ run and no weights.json left behind."""
    from test_causal import synthetic_sites

    synthetic_sites(n_sites=1, n_months=24).to_parquet(tmp_path / "one.parquet")
    line = _one_error_line(run_cli("train", "--sites", str(tmp_path / "one.parquet"), "--out",
                                   str(tmp_path / "m"), "--device", "cpu", timeout=120))
    assert "needs at least 3 sites (2 to train on, 1 held out), found 1" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args", [
    ["sites", "--fluxnet", "{tmp}/nope", "--out", "{tmp}/out/s.parquet"],
    ["features", "--cube", "{tmp}/nope.zarr", "--out", "{tmp}/out/f.zarr", "--device", "cpu"],
    ["causal", "--sites", "{tmp}/nope.parquet", "--out", "{tmp}/out/w.json"],
    ["train", "--sites", "{tmp}/nope.parquet", "--out", "{tmp}/out", "--device", "cpu"],
    ["evaluate", "--model", "{tmp}/nope", "--out", "{tmp}/out"],
    ["predict", "--model", "{tmp}/nope", "--features", "{tmp}/nope.zarr", "--out", "{tmp}/out", "--device", "cpu"],
    ["analyze", "--run", "{tmp}/nope", "--out", "{tmp}/out"],
], ids=lambda a: a[0])
def test_a_missing_input_is_one_line_and_leaves_nothing(tmp_path, args):
    line = _one_error_line(run_cli(*[a.format(tmp=tmp_path) for a in args], timeout=120))
    assert str(tmp_path / "nope") in line
    assert not (tmp_path / "out").exists()


def test_metrics_table_names_models_as_the_report_does(capsys):
    from ciml_ter import cli

    m = {"mae": 5.5, "rmae": 0.1, "r2": 0.98, "slope_obs_on_est": 1.0, "n": 10}
    cli._print_metrics({
        "units": "g C m-2 month-1", "model": {"causal": True, "test": m},
        "baselines": {"xgboost_plain": {"test": m}, "lloyd_taylor": {"skipped": "no temperature column"},
                      "q10": {"test": m}, "random_forest": {"test": m}}})
    text = capsys.readouterr().out
    for name in ("causal XGBoost", "plain XGBoost", "Q10", "random forest"):
        assert name in text
    assert "xgboost_plain" not in text and "Lloyd–Taylor" not in text  # skipped: no row


def test_a_model_whose_guard_dropped_every_weight_is_one_row_named_plain(capsys):
    """No "XGBoost" row beside an identical "plain XGBoost" one: the model is the plain XGBoost."""
    from ciml_ter import cli

    m = {"mae": 5.5, "rmae": 0.1, "r2": 0.98, "slope_obs_on_est": 1.0, "n": 10}
    cli._print_metrics({
        "units": "g C m-2 month-1", "model": {"causal": False, "test": m},
        "training": {"causal_guard": {"0": {"kept": False}, "1": {"kept": False}, "2": {"kept": False}}},
        "baselines": {"xgboost_plain": {"test": m}, "q10": {"test": {**m, "mae": 9.0}}}})
    rows = [line.strip("│ ").split("│")[0].strip() for line in capsys.readouterr().out.splitlines()
            if "5.50" in line or "9.00" in line]
    assert rows == ["plain XGBoost", "Q10"]
