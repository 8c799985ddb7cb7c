"""``ciml-ter tune``: nested search, outer test sites never seen, settings read back by train."""
from __future__ import annotations

import numpy as np
import pytest
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.sitetable import write_site_table
from ciml_ter.stages.train import train
from ciml_ter.stages.tune import tune
from ciml_ter.training import assign_folds
from ciml_ter.tuning import read_settings
from _support import RUNTIME
from test_causal import FEATURES, synthetic_sites


def tune_config() -> PipelineConfig:
    config = PipelineConfig()
    config.device = "cpu"
    config.train.folds, config.train.seeds, config.train.workers = 3, 1, 2
    config.causal.weights = "pooled"
    return config


def write(frame, path):
    frame = frame.drop(columns=["truth", "TA_F"])
    return write_site_table(frame, path, predictors=FEATURES)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    frame = synthetic_sites(n_sites=18, n_months=24)
    sites = write(frame, root / "sites.parquet")
    document = tune(sites, root / "settings.toml", tune_config(), RUNTIME, trials=4).document
    return root, frame, sites, document


def test_settings_file_has_every_fold_and_reads_back(tuned):
    root, frame, sites, document = tuned
    settings = read_settings(root / "settings.toml")
    assert settings.folds == assign_folds(frame["site"], 3, 0)
    assert sorted(settings.fold_settings) == [0, 1, 2]
    for entry in document["fold"]:
        assert entry["trials_complete"] + entry["trials_pruned"] == 4
        assert entry["inner_sites"] == 12  # the 12 training sites of the fold: 18 sites in 3 folds
        xgb = entry["settings"]["xgboost"]
        assert xgb["early_stopping_rounds"] == 0 and 50 <= xgb["num_boost_round"] <= 1500
    assert settings.predictors == PipelineConfig().to_dict()["predictors"]


def test_outer_test_sites_are_never_seen(tuned, tmp_path):
    """Poisoning the targets of fold 0's test sites leaves fold 0's search exactly as it was,
    while the folds that train on those sites see the change."""
    root, frame, _, document = tuned
    folds = assign_folds(frame["site"], 3, 0)
    poisoned = frame.copy()
    held = [s for s, k in folds.items() if k == 0]
    poisoned.loc[poisoned["site"].isin(held), "ter"] *= 5
    again = tune(write(poisoned, tmp_path / "p.parquet"), tmp_path / "p.toml", tune_config(), RUNTIME, trials=4).document
    def search(entry):
        return {k: v for k, v in entry.items() if k != "seconds"}

    assert search(again["fold"][0]) == search(document["fold"][0])
    assert again["fold"][1]["inner_mae"] != document["fold"][1]["inner_mae"]


def test_train_with_settings_uses_each_folds_settings(tuned, tmp_path):
    root, frame, sites, document = tuned
    config = tune_config()
    config.train.folds = 5  # replaced by the file's 3 folds
    model = train(sites, tmp_path / "m", config, RUNTIME, settings=root / "settings.toml").out
    from ciml_ter.ensemble import load_ensemble

    ensemble = load_ensemble(model)
    assert ensemble.folds == read_settings(root / "settings.toml").folds
    for k in range(3):
        chosen = document["fold"][k]["settings"]["xgboost"]
        members = [m for m in ensemble.members if m.fold == k]
        assert {m.booster.num_boosted_rounds() for m in members} == {chosen["num_boost_round"]}
        assert ensemble.manifest["fold_settings"][str(k)] == document["fold"][k]["settings"]
        causal = document["fold"][k]["settings"]["train"]["causal"]
        assert (str(k) in (ensemble.manifest["weights"] or {})) == causal


def test_settings_for_other_sites_are_refused(tuned, tmp_path):
    root, frame, _, _ = tuned
    fewer = write(frame[frame["site"] != "S000"], tmp_path / "fewer.parquet")
    with pytest.raises(InputError, match="tuned on other sites .* absent from the table: S000"):
        train(fewer, tmp_path / "m", tune_config(), RUNTIME, settings=root / "settings.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('format = "something else"\n')
    with pytest.raises(InputError, match="expected a settings file"):
        read_settings(bad)
    assert np.isfinite(read_settings(root / "settings.toml").document["inner_mae_mean"])


def test_tune_and_train_settings_from_the_command_line(tuned, tmp_path):
    """`ciml-ter tune` writes the file and says so in one line; `train --settings` refuses --folds
    beside it, and a settings file for other sites is one error line with exit code 2."""
    from _support import run_cli

    root, frame, sites, _ = tuned
    result = run_cli("tune", "--sites", str(sites), "--out", str(tmp_path / "s.toml"), "--trials", "2",
                     "--folds", "3", "--no-causal")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {tmp_path / 's.toml'}: 3 folds x 2 trials")
    document = read_settings(tmp_path / "s.toml").document
    assert all(not entry["settings"]["train"]["causal"] for entry in document["fold"])
    clash = run_cli("train", "--sites", str(sites), "--out", str(tmp_path / "m"), "--settings",
                    str(tmp_path / "s.toml"), "--folds", "4")
    assert clash.returncode == 2 and "--settings and --folds exclude each other" in clash.stderr
    fewer = write(frame[frame["site"] != "S000"], tmp_path / "fewer.parquet")
    other = run_cli("train", "--sites", str(fewer), "--out", str(tmp_path / "m"), "--settings", str(tmp_path / "s.toml"))
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "tuned on other sites" in other.stderr
    assert not (tmp_path / "m").exists()


def test_tune_train_and_evaluate_boost_on_the_runtime_device(tmp_path, monkeypatch):
    """The device resolved at entry reaches every booster: the search of ``tune``, the members
    of ``train`` and the plain baseline of ``evaluate`` all ask the runtime's Device for XGBoost's
    device string (here a GPU, answered with "cpu" so that the boosters can run on this machine)."""
    from ciml_ter.device import Device
    from ciml_ter.stages import Runtime
    from ciml_ter.stages.evaluate import evaluate

    asked = []

    def spy(self):
        asked.append(self)
        return "cpu"

    monkeypatch.setattr(Device, "xgboost", property(spy))
    gpu = Device("cuda", 3, "cuda")
    runtime = Runtime(gpu)
    config = tune_config()
    config.train.workers = 1
    config.xgboost.num_boost_round, config.xgboost.early_stopping_rounds = 20, 0
    sites = write(synthetic_sites(n_sites=9, n_months=12), tmp_path / "sites.parquet")
    tune(sites, tmp_path / "s.toml", config, runtime, trials=1)
    assert asked and set(asked) == {gpu}
    asked.clear()
    train(sites, tmp_path / "m", config, runtime)
    assert asked and set(asked) == {gpu}
    asked.clear()
    evaluate(tmp_path / "m", tmp_path / "m", config, runtime, rf_trees=5, shap_rows=50)
    assert asked and set(asked) == {gpu}
