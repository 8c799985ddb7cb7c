"""Config tree: defaults, TOML round trip, validation messages, stable hash."""
from __future__ import annotations

import pytest

from ciml_ter.config import PipelineConfig, config_from_dict, load_config, save_config
from ciml_ter.errors import ConfigError


def test_defaults_follow_the_method_paper_and_the_tuning():
    """The paper's structure (hist, depth 5, learning rate 0.05, 10 x 20) with the settings the
    nested searches chose on the shipped towers and the synthetic world (README "Choosing the
    defaults")."""
    c = PipelineConfig()
    assert (c.xgboost.learning_rate, c.xgboost.max_depth, c.xgboost.min_child_weight) == (0.02, 3, 40.0)
    assert (c.xgboost.objective, c.xgboost.gamma, c.xgboost.reg_lambda) == ("reg:absoluteerror", 0.0, 20.0)
    assert (c.xgboost.subsample, c.xgboost.colsample_bylevel, c.xgboost.colsample_bynode) == (0.7, 0.6, 0.3)
    assert (c.xgboost.num_boost_round, c.xgboost.early_stopping_rounds, c.train.inner_folds) == (5000, 200, 3)
    assert (c.predictors.season, c.predictors.igbp, c.predictors.climatology) == (True, False, True)
    assert c.predictors.antecedent == ["*"]  # every time-varying driver (README "Choosing the defaults")
    assert c.causal.guard and c.causal.guard_margin == 0.05
    assert (c.causal.weights, c.causal.weight_floor, c.causal.weight_power, c.causal.sibling_share) == (
        "per_pft", 0.01, 0.54, 0.56)
    assert (c.train.folds, c.train.seeds) == (10, 20)
    assert (c.causal.pc_alpha, c.causal.tau_max) == (0.05, 0)
    assert c.features.levels == (0.75, 0.5, 0.25) and c.features.extreme_share == 0.05


def test_toml_round_trip_keeps_values_and_hash(tmp_path):
    c = config_from_dict({"device": "cpu", "grid": {"res": 0.05, "years": [2001, 2020]},
                          "train": {"seeds": 3}})
    path = save_config(c, tmp_path / "c.toml")
    back = load_config(path)
    assert back == c
    assert back.grid.years == (2001, 2020) and back.train.seeds == 3
    assert back.stable_hash() == c.stable_hash()


def test_hash_is_stable_and_sensitive():
    a, b = PipelineConfig(), PipelineConfig()
    assert a.stable_hash() == b.stable_hash()
    assert len(a.stable_hash()) == 16
    b.xgboost.max_depth = 6
    assert a.stable_hash() != b.stable_hash()
    # Independent of key order in the file.
    x = config_from_dict({"train": {"folds": 5, "seeds": 2}})
    y = config_from_dict({"train": {"seeds": 2, "folds": 5}})
    assert x.stable_hash() == y.stable_hash()


def test_int_accepted_where_float_expected():
    assert config_from_dict({"xgboost": {"gamma": 1}}).xgboost.gamma == 1.0


@pytest.mark.parametrize("data, fragment", [
    ({"xgboost": {"learnin_rate": 0.1}}, "unknown key 'xgboost.learnin_rate'"),
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"train": {"folds": 1}}, "key 'train.folds': expected an integer >= 2, found 1"),
    ({"train": {"folds": 2.5}}, "key 'train.folds': expected int, found float 2.5"),
    ({"train": {"causal": "yes"}}, "key 'train.causal': expected bool"),
    ({"device": "tpu"}, "key 'device': expected one of 'auto', 'cpu', 'cuda', found 'tpu'"),
    ({"grid": {"bbox": [10, 0, -10, 5]}}, "key 'grid.bbox': expected W,S,E,N in degrees with -180 <= W < E <= 180"),
    ({"grid": {"years": [2001]}}, "key 'grid.years': expected 2 values, found 1"),
    ({"grid": 3}, "key 'grid': expected a table [grid], found int"),
    ({"features": {"levels": [0.5, 1.5]}}, "key 'features.levels': expected fractions in (0, 1)"),
    ({"predictors": {"antecedent": ["P_F", "P_F"]}}, "key 'predictors.antecedent': expected distinct driver names"),
    ({"predictors": {"antecedent": ["P F"]}}, "key 'predictors.antecedent': expected distinct driver names"),
    ({"predictors": {"antecedent": ["*", "P_F"]}}, "key 'predictors.antecedent': expected distinct driver names"),
    ({"predictors": {"antecedent": "P_F"}}, "key 'predictors.antecedent': expected list, found str 'P_F'"),
])
def test_invalid_values_name_key_expected_and_found(data, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "cfg.toml")
    assert str(info.value).startswith("cfg.toml: ")
    assert fragment in str(info.value)


def test_unknown_key_message_lists_allowed_keys():
    with pytest.raises(ConfigError, match="keys allowed in \\[train\\]: folds, seeds"):
        config_from_dict({"train": {"fold": 3}})


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nfolds = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: malformed TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_feature_defaults_are_the_kernels_defaults():
    from ciml_ter.kernels.envelope import DEFAULT_MAX_ITER, DEFAULT_ORDER, DEFAULT_WINDOW
    from ciml_ter.kernels.scvtg import DEFAULT_LEVELS, DEFAULT_SHARE

    f = PipelineConfig().features
    assert (f.sg_window, f.sg_order, f.sg_max_iter) == (DEFAULT_WINDOW, DEFAULT_ORDER, DEFAULT_MAX_ITER)
    assert f.levels == tuple(DEFAULT_LEVELS) and f.extreme_share == DEFAULT_SHARE


def test_paths_from_the_config_or_the_command_line():
    from pathlib import Path

    from ciml_ter.config import config_path

    c = config_from_dict({"paths": {"model": "m", "run": "runs/{year}/r"}})
    assert config_path(c, "model") == Path("m")
    assert config_path(c, "model", given=Path("x")) == Path("x")
    assert config_path(c, "run", year=2005) == Path("runs/2005/r")
    with pytest.raises(ConfigError, match=r"\{year\} placeholder: give --year"):
        config_path(c, "run")
    with pytest.raises(ConfigError, match="no features path: give --features or set \\[paths\\] features"):
        config_path(c, "features", option="--features")
    with pytest.raises(ConfigError, match="no features path: set \\[paths\\] features in the config"):
        config_path(c, "features")  # a command without that option must not suggest it


def test_every_problem_of_a_config_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"device": "tpu", "xgboost": {"max_dept": 3, "learning_rate": 2.0},
                          "train": {"folds": "ten"}, "colour": "blue"}, "c.toml")
    message = str(err.value)
    assert message.startswith("c.toml: 5 problems: ")
    for part in ("unknown key 'colour'", "key 'device': expected one of 'auto', 'cpu', 'cuda', found 'tpu'",
                 "unknown key 'xgboost.max_dept'", "key 'xgboost.learning_rate': expected a rate in (0, 1], found 2.0",
                 "key 'train.folds': expected int, found str 'ten'"):
        assert part in message, part
    with pytest.raises(ConfigError, match=r"^c.toml: key 'device': expected one of"):
        config_from_dict({"device": "tpu"}, "c.toml")  # one problem: the plain message


def test_hash_ignores_paths():
    assert config_from_dict({"paths": {"model": "a"}}).stable_hash() == PipelineConfig().stable_hash()


def test_hash_ignores_the_device():
    """Where a run computes does not change what it computes: a run started with --device auto
    resumes under a batch job's --device cpu (jobs/global_run.sh passes one)."""
    hashes = {config_from_dict({"device": d}).stable_hash() for d in ("auto", "cpu", "cuda")}
    assert hashes == {PipelineConfig().stable_hash()}
    assert config_from_dict({"seed": 1}).stable_hash() != PipelineConfig().stable_hash()
