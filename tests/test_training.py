"""Site-grouped folds, training with early stopping, save/load, predictions, bad input."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import xgboost as xgb
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.ensemble import load_ensemble
from ciml_ter.sitetable import read_site_table, site_table_from_frame
from ciml_ter.causal import fixed_weights
from ciml_ter.predictors import plan, table_matrix
from ciml_ter.device import CPU, Device
from ciml_ter.training import assign_folds, inner_splits, train_ensemble, xgb_params
from test_causal import FEATURES, synthetic_sites


def small_config(workers=1) -> PipelineConfig:
    """Three folds x two seeds, rounds by inner CV, the table's predictors only (no context)."""
    config = PipelineConfig()
    config.device = "cpu"
    config.train.folds, config.train.seeds, config.train.workers = 3, 2, workers
    config.xgboost.num_boost_round = 200
    config.xgboost.early_stopping_rounds = 10
    config.predictors.drivers_only()
    config.causal.guard = False  # test_causal_guard_* turn it on
    return config


WEIGHTS = {"temperature": 0.5, "moisture": 0.4, "decoy": 0.025, "noise1": 0.025, "noise2": 0.025,
           "noise3": 0.025}


@pytest.fixture(scope="module")
def frame():
    return synthetic_sites(n_sites=30, n_months=24)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, frame):
    table = site_table_from_frame(frame, "synthetic", FEATURES)
    out = tmp_path_factory.mktemp("model")
    return table, train_ensemble(table, small_config(workers=2), out, CPU, causal_result=fixed_weights(WEIGHTS))


def test_folds_are_grouped_by_site():
    sites = np.repeat([f"S{i}" for i in range(25)], 7)
    folds = assign_folds(sites, 4, seed=3)
    assert set(folds) == set(sites) and set(folds.values()) == {0, 1, 2, 3}
    fold_of_row = np.array([folds[s] for s in sites])
    for k in range(4):
        assert not set(sites[fold_of_row == k]) & set(sites[fold_of_row != k])
    assert folds == assign_folds(sites[::-1], 4, seed=3)  # order of rows does not matter
    with pytest.raises(InputError, match=r"needs at least 3 sites \(2 to train on, 1 held out\), found 2"):
        assign_folds(sites[:14], 4)


@pytest.mark.parametrize("n_sites, n_folds, advised", [(3, 2, 3), (5, 10, 5), (4, 9, 4), (13, 20, 13)])
def test_fold_advice_names_a_value_that_works(n_sites, n_folds, advised):
    """3 sites in 2 folds would leave 1 training site; the advice is a value that works."""
    sites = np.repeat([f"S{i}" for i in range(n_sites)], 3)
    with pytest.raises(InputError, match=f"use --folds {advised}$"):
        assign_folds(sites, n_folds)
    folds = assign_folds(sites, advised)
    fold_of_row = np.array([folds[s] for s in sites])
    assert all(len(set(sites[fold_of_row != k])) >= 2 for k in range(advised))


def test_inner_splits_hold_out_whole_sites_once():
    sites = np.repeat(np.array([f"S{i}" for i in range(10)]), 5)
    splits = inner_splits(sites, 3, seed=1)
    assert len(splits) == 3
    held = np.concatenate([h for _, h in splits])
    assert sorted(held) == list(range(len(sites)))  # every row held out exactly once
    for fit, h in splits:
        assert not set(sites[fit]) & set(sites[h]) and len(fit) + len(h) == len(sites)
    assert len(inner_splits(sites[:10], 5, seed=1)) == 2  # at most one fold per site


def test_manifest_and_no_leakage(trained):
    table, ensemble = trained
    m = ensemble.manifest
    assert len(ensemble.members) == 3 * 2
    assert m["features"] == FEATURES and m["weights"]["0"]["temperature"] == pytest.approx(0.5)
    assert m["config_hash"] == small_config(workers=2).stable_hash()
    assert {"xgboost", "numpy", "ciml_ter"} <= set(m["versions"])
    assert set(m["folds"]) == set(table.sites)
    for member in m["members"]:
        assert (ensemble.path / member["file"]).is_file()
        assert member["best_iteration"] == member["num_boosted_rounds"] - 1
        assert member["num_boosted_rounds"] == m["rounds"]["by_fold"][str(member["fold"])]
    rounds = m["rounds"]
    assert set(rounds["by_fold"]) == {"0", "1", "2"} and set(rounds["inner_cv_mae"]) == {"0", "1", "2"}
    assert rounds["min"] <= rounds["p25"] <= rounds["median"] <= rounds["p75"] <= rounds["max"] <= 200


def test_members_never_see_their_held_out_sites(frame, tmp_path):
    """Train each member on its fold's training rows only: poisoning the held-out sites' targets
    must not change that fold's boosters."""
    table = site_table_from_frame(frame, "synthetic", FEATURES)
    config = small_config()
    config.train.seeds = 1
    a = train_ensemble(table, config, tmp_path / "a", CPU, causal_result=fixed_weights(WEIGHTS))
    poisoned = frame.copy()
    held = [s for s, k in a.folds.items() if k == 0]
    poisoned.loc[poisoned["site"].isin(held), "ter"] = 1e4
    b = train_ensemble(site_table_from_frame(poisoned, "poisoned", FEATURES), config, tmp_path / "b", CPU,
                       causal_result=fixed_weights(WEIGHTS), folds=a.folds)
    x = a.matrix(table)
    assert np.array_equal(a.fold_predictions(x)[0], b.fold_predictions(x)[0])
    assert not np.array_equal(a.fold_predictions(x)[1], b.fold_predictions(x)[1])


def test_nested_members_never_see_either_fold_and_give_the_towers_unseen_ensemble(frame, tmp_path):
    """``train.nested_spread``: for each pair of folds f < g, ``seeds`` members trained without
    the sites of either, with fold f's rounds; a tower of fold f gets the mean and standard
    deviation across the K models that never saw it: fold f's and the K - 1 nested models without
    f (each the mean of its seeds). Poisoning fold 0's targets leaves fold 0's mean and spread bit
    for bit the same and changes the other folds'."""
    table = site_table_from_frame(frame, "synthetic", FEATURES)
    config = small_config()
    config.train.folds, config.train.seeds = 4, 1
    a = train_ensemble(table, config, tmp_path / "a", CPU, causal_result=fixed_weights(WEIGHTS))
    m = a.manifest
    assert [(e["fold"], e["left_out"]) for e in m["nested_members"]] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3),
                                                                          (2, 3)]
    assert len(a.members) == 4  # the map's ensemble is unchanged: nested members are not members
    for e in m["nested_members"]:
        assert (a.path / e["file"]).is_file() and e["file"].startswith("nested/")
        assert e["num_boosted_rounds"] == m["rounds"]["by_fold"][str(e["fold"])]
    x = a.matrix(table)
    fold_of = np.array([a.folds[s] for s in table.sites])
    fold_pred = a.fold_predictions(x)
    mean, spread = a.unseen_ensemble(x, fold_of, fold_pred)
    rows = fold_of == 2
    by_pair = {(e["fold"], e["left_out"]): xgb.Booster(model_file=str(a.path / e["file"])) for e in m["nested_members"]}
    unseen = [fold_pred[2][rows], *(by_pair[p].predict(xgb.DMatrix(x[rows])) for p in ((0, 2), (1, 2), (2, 3)))]
    np.testing.assert_allclose(mean[rows], np.mean(unseen, axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(spread[rows], np.std(unseen, axis=0), rtol=1e-5, atol=1e-5)
    never = a.unseen_ensemble(x, np.full(len(fold_of), -1), fold_pred)
    assert np.isnan(never[0]).all() and np.isnan(never[1]).all()  # sites no fold saw: the map's, not nested
    poisoned = frame.copy()
    poisoned.loc[poisoned["site"].isin([s for s, k in a.folds.items() if k == 0]), "ter"] = 1e4
    b = train_ensemble(site_table_from_frame(poisoned, "poisoned", FEATURES), config, tmp_path / "b", CPU,
                       causal_result=fixed_weights(WEIGHTS), folds=a.folds)
    again = b.unseen_ensemble(x, fold_of, b.fold_predictions(x))
    for before, after in zip((mean, spread), again):
        assert np.array_equal(before[fold_of == 0], after[fold_of == 0])
        assert not np.array_equal(before[fold_of == 1], after[fold_of == 1])
    config.train.nested_spread = False
    off = train_ensemble(table, config, tmp_path / "off", CPU, causal_result=fixed_weights(WEIGHTS))
    assert off.manifest["nested_members"] == [] and off.unseen_ensemble(x, fold_of, fold_pred) is None
    assert not (tmp_path / "off" / "nested").exists()


def test_members_are_refitted_on_all_their_training_sites(trained):
    """Each member equals a booster fitted on every row of its fold's training sites (none held
    back) with the fold's rounds, the fold's feature weights and the member's seed."""
    table, ensemble = trained
    config = small_config(workers=2)
    fold_of_row = np.array([ensemble.folds[s] for s in table.sites])
    for member in ensemble.members[::3]:
        rows = fold_of_row != member.fold
        w = np.array([ensemble.manifest["weights"][str(member.fold)][f] for f in FEATURES], dtype=np.float32)
        params = xgb_params(config, config.seed * 1000 + member.seed, ensemble.manifest["nthread"], "cpu",
                            table.y[rows])
        booster = xgb.train(params, xgb.DMatrix(table.x[rows], label=table.y[rows], feature_weights=w),
                            member.best_iteration + 1)
        d = xgb.DMatrix(table.x)
        np.testing.assert_array_equal(booster.predict(d), member.booster.predict(d))


def test_ensemble_prediction_is_the_members_mean(trained):
    table, ensemble = trained
    x = ensemble.matrix(table)
    d = xgb.DMatrix(x)
    member = ensemble.members[0]
    fold_members = [m for m in ensemble.members if m.fold == member.fold]
    expected = np.mean([m.booster.predict(d) for m in fold_members], axis=0)
    # the fold's merged booster sums every member's scaled leaves in float32: rtol 1e-5
    np.testing.assert_allclose(ensemble.fold_predictions(x)[member.fold], expected, rtol=1e-5)
    everything = np.mean([m.booster.predict(d) for m in ensemble.members], axis=0)
    np.testing.assert_allclose(ensemble.predict(x)[0], everything, rtol=1e-5)


def test_fixed_rounds_when_patience_is_zero(frame, tmp_path):
    config = small_config()
    config.train.seeds = 1
    config.xgboost.early_stopping_rounds, config.xgboost.num_boost_round = 0, 17
    ensemble = train_ensemble(site_table_from_frame(frame, "t", FEATURES), config, tmp_path, CPU)
    assert ensemble.manifest["rounds"]["by_fold"] == {"0": 17, "1": 17, "2": 17}
    assert ensemble.manifest["rounds"]["rule"].startswith("fixed")
    assert {m.booster.num_boosted_rounds() for m in ensemble.members} == {17}


def test_context_predictors_in_training_and_in_the_manifest(frame, tmp_path):
    """Season, IGBP and climatology columns are built by ``predictors`` for the model; the
    manifest lists them and ``matrix`` rebuilds the same columns from the table."""
    config = small_config()
    config.train.seeds = 1
    config.predictors.season = config.predictors.igbp = config.predictors.climatology = True
    table = site_table_from_frame(frame, "t", FEATURES)
    ensemble = train_ensemble(table, config, tmp_path, CPU)
    spec = plan(table, config)
    assert ensemble.features == spec.features == [*FEATURES, "season_sin", "season_cos", "igbp_DBF", "igbp_ENF",
                                                  "igbp_GRA", *[f"clim_{f}" for f in FEATURES]]
    assert ensemble.manifest["predictors"] == spec.as_dict()
    np.testing.assert_array_equal(ensemble.matrix(table), table_matrix(table.frame, spec))
    used = set()
    for m in ensemble.members:
        used |= set(m.booster.get_score(importance_type="weight"))
    assert used & {"f6", "f7"} or used & {"season_sin", "season_cos"}, used  # the season is used


def test_out_of_fold_and_std(trained):
    table, ensemble = trained
    x = ensemble.matrix(table)
    oof, known = ensemble.predict_oof(x, table.sites)
    assert known.all()
    folds = ensemble.fold_predictions(x)
    fold_of_row = np.array([ensemble.folds[s] for s in table.sites])
    np.testing.assert_allclose(oof, folds[fold_of_row, np.arange(len(x))])
    _, std = ensemble.predict(x)
    np.testing.assert_allclose(std, folds.std(axis=0), rtol=1e-4, atol=1e-4)
    y = table.y
    assert 1 - np.sum((y - oof) ** 2) / np.sum((y - y.mean()) ** 2) > 0.7


def test_save_load_round_trip(trained):
    table, ensemble = trained
    again = load_ensemble(ensemble.path)
    x = ensemble.matrix(table)
    assert again.model_id == ensemble.model_id
    np.testing.assert_array_equal(again.predict(x)[0], ensemble.predict(x)[0])
    np.testing.assert_array_equal(again.predict_oof(x, table.sites)[0], ensemble.predict_oof(x, table.sites)[0])


def test_mismatched_features_rejected(trained, frame):
    _, ensemble = trained
    other = site_table_from_frame(frame, "other.parquet", ["temperature", "moisture", "decoy", "noise1", "TA_F"])
    with pytest.raises(InputError, match=r"other.parquet.*missing noise2, noise3; extra TA_F"):
        ensemble.matrix(other)


def test_corrupt_member_rejected(trained, tmp_path):
    import shutil

    _, ensemble = trained
    copy = tmp_path / "copy"
    shutil.copytree(ensemble.path, copy)
    first = json.loads((copy / "manifest.json").read_text())["members"][0]["file"]
    (copy / first).write_bytes(b"broken")
    with pytest.raises(InputError, match="checksum"):
        load_ensemble(copy)
    with pytest.raises(InputError, match="manifest.json"):
        load_ensemble(tmp_path)


def test_loader_reads_feature_list_from_metadata(tmp_path, frame):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.Table.from_pandas(frame)
    t = t.replace_schema_metadata({**t.schema.metadata, b"ciml_ter": json.dumps({"predictors": ["temperature", "moisture"]}).encode()})
    pq.write_table(t, tmp_path / "s.parquet")
    assert read_site_table(tmp_path / "s.parquet").features == ["temperature", "moisture"]
    frame.to_parquet(tmp_path / "plain.parquet")
    assert read_site_table(tmp_path / "plain.parquet").features == ["truth", *FEATURES, "TA_F"]


def test_bad_input(tmp_path, frame, caplog):
    with pytest.raises(InputError, match=r"missing column\(s\) ter"):
        site_table_from_frame(frame.drop(columns="ter"), "t.parquet")
    constant = frame.assign(ter=3.0)
    with pytest.raises(InputError, match="constant"):
        site_table_from_frame(constant, "t.parquet", FEATURES)
    with caplog.at_level(logging.WARNING):
        t = site_table_from_frame(frame.assign(empty=np.nan), "t.parquet", FEATURES + ["empty"])
    assert "empty" not in t.features and t.dropped_features == ["empty"] and "empty" in caplog.text
    few = frame[frame["site"].isin(["S000", "S001"])]
    with pytest.raises(InputError, match="needs at least 3 sites .* found 2"):
        train_ensemble(site_table_from_frame(few, "few", FEATURES), small_config(), tmp_path, CPU)
    with pytest.raises(InputError, match="not found"):
        read_site_table(tmp_path / "none.parquet")
    with pytest.raises(InputError, match="no causal weight for feature"):
        train_ensemble(site_table_from_frame(frame, "t", FEATURES), small_config(), tmp_path, CPU,
                       causal_result=fixed_weights({"temperature": 1.0}))


def test_auto_trains_small_tables_on_the_cpu(tmp_path, frame, caplog):
    """device "auto" resolved to a GPU: a table below train.gpu_min_rows trains on CPU workers
    (faster than members one after another on the card), and the log says why."""
    config = small_config()
    auto_gpu = Device("cuda", 0, "auto")  # what "auto" resolves to on a GPU host
    with caplog.at_level(logging.INFO, logger="ciml_ter.training"):
        ensemble = train_ensemble(site_table_from_frame(frame, "t", FEATURES), config, tmp_path, auto_gpu,
                                  causal_result=fixed_weights(WEIGHTS))
    assert (ensemble.manifest["device"], ensemble.manifest["xgboost_device"]) == ("cpu", "cpu")
    assert "training on cpu" in caplog.text and "train.gpu_min_rows 200000" in caplog.text


def test_gpu_training_shares_the_card_between_threads():
    from ciml_ter.training import _plan_workers

    config = PipelineConfig()
    config.train.gpu_workers = 4
    gpu = Device("cuda", 0, "cuda")
    assert _plan_workers(config, gpu, 200)[0] == 4
    assert _plan_workers(config, gpu, 3)[0] == 3
    config.train.workers = 2
    assert _plan_workers(config, CPU, 200)[0] == min(2, __import__("os").cpu_count())


def test_manifest_records_the_xgboost_device_and_cuda_build(trained):
    _, ensemble = trained
    assert ensemble.manifest["xgboost_device"] == "cpu"
    assert ensemble.manifest["xgboost_cuda_build"] == bool(xgb.build_info().get("USE_CUDA"))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_training_and_prediction_on_each_device(tmp_path, frame, device):
    """The same body per device: an ensemble trained on ``device`` beats predicting the mean on
    held-out sites, and ``Ensemble.predict(device=...)`` runs its boosters there and agrees with
    the CPU to float32 tolerance."""
    table = site_table_from_frame(frame, "synthetic", FEATURES)
    config = small_config()
    config.device = device
    where = Device.resolve(device)
    ensemble = train_ensemble(table, config, tmp_path / "m", where, causal_result=fixed_weights(WEIGHTS))
    assert ensemble.manifest["device"] == device
    assert ensemble.manifest["xgboost_device"] == ("cpu" if device == "cpu" else "cuda:0")
    oof, _ = ensemble.predict_oof(table.x, table.sites)
    assert np.mean(np.abs(oof - table.y)) < 0.6 * np.mean(np.abs(table.y - table.y.mean()))
    mean, std = ensemble.predict(table.x, device=where)
    assert ensemble.merged.device == where
    cpu_mean, cpu_std = ensemble.predict(table.x, device=CPU)
    np.testing.assert_allclose(mean, cpu_mean, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(std, cpu_std, rtol=1e-3, atol=1e-3)


def test_per_pft_weights_reach_training(frame, tmp_path):
    """With causal.weights "per_pft", fold k trains with the PFTs' weights averaged by their share
    of fold k's training rows: the manifest's weights are exactly those, and differ from pooled."""
    from ciml_ter.causal import discover_weights, driver_weights
    from ciml_ter.training import feature_weights

    config = small_config()
    config.train.seeds = 1
    config.causal.min_pft_sites = 3
    table = site_table_from_frame(frame, "t", FEATURES)
    result = discover_weights(table, config)
    assert all("fallback" not in entry for entry in result["by_pft"].values())
    ensemble = train_ensemble(table, config, tmp_path / "m", CPU, causal_result=result)
    spec = plan(table, config)
    fold_of_row = np.array([ensemble.folds[s] for s in table.sites])
    pfts = table.frame["pft"].to_numpy()
    for k in range(3):
        expected = feature_weights(driver_weights(result, config.causal, pfts[fold_of_row != k]), spec)
        got = [ensemble.manifest["weights"][str(k)][f] for f in FEATURES]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    pooled = [result["pooled"]["weights"][f] for f in FEATURES]
    assert not np.allclose(got, pooled, atol=1e-3)


@pytest.mark.parametrize("favoured, margin, kept", [(("temperature", "moisture"), 0.01, True),
                                                    (("temperature", "moisture"), 0.9, False),
                                                    (("noise3",), 0.0, False)])
def test_causal_guard_keeps_weights_only_when_they_help(frame, tmp_path, favoured, margin, kept):
    """Weights on the true drivers beat none by the guard margin on the inner held-out sites and
    are kept, unless the margin asks for more than they give; weights that starve the model of
    its drivers are dropped even with no margin; fold by fold, and said so."""
    config = small_config()
    config.train.seeds = 1
    config.causal.guard, config.causal.guard_margin = True, margin
    config.xgboost.colsample_bynode, config.xgboost.colsample_bylevel = 0.3, 1.0
    weights = {f: 0.002 for f in FEATURES}
    weights.update({f: 1.0 for f in favoured})
    table = site_table_from_frame(frame, "t", FEATURES)
    ensemble = train_ensemble(table, config, tmp_path, CPU, causal_result=fixed_weights(weights))
    guard = ensemble.manifest["causal_guard"]
    assert set(guard) == {"0", "1", "2"}
    assert all(g["margin"] == margin for g in guard.values())
    assert all(g["kept"] == (g["inner_mae_with"] <= (1 - margin) * g["inner_mae_without"]) for g in guard.values())
    assert all(g["kept"] is kept for g in guard.values()), guard
    assert set(ensemble.manifest["weights"] or {}) == ({"0", "1", "2"} if kept else set())
    assert ensemble.manifest["causal"] is kept


def test_retraining_into_a_model_folder_replaces_it_whole(frame, tmp_path):
    """A retrained model leaves no member of the older one beside its own (the folder is built
    whole and swapped in), and the stage says the final folder, not the temporary one."""
    from ciml_ter.sitetable import write_site_table
    from ciml_ter.stages.train import train

    from _support import RUNTIME

    write_site_table(frame.assign(pft="GRA"), tmp_path / "s.parquet", predictors=FEATURES)
    config = small_config()
    config.train.causal = False
    config.train.seeds = 3
    config.xgboost.early_stopping_rounds, config.xgboost.num_boost_round = 0, 10
    train(tmp_path / "s.parquet", tmp_path / "m", config, RUNTIME)
    assert len(list((tmp_path / "m").glob("*.ubj"))) == 9
    assert len(list((tmp_path / "m" / "nested").glob("*.ubj"))) == 9  # 3 pairs of folds x 3 seeds
    config.train.seeds = 1
    summary = train(tmp_path / "s.parquet", tmp_path / "m", config, RUNTIME)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(
        ["manifest.json", "nested", *(m["file"] for m in manifest["members"])])
    assert sorted(f"nested/{p.name}" for p in (tmp_path / "m" / "nested").iterdir()) == sorted(
        m["file"] for m in manifest["nested_members"]) and len(manifest["nested_members"]) == 3
    assert summary.lines() == [f"wrote {tmp_path / 'm'}: 3 folds x 1 seeds + 3 nested members for the towers' "
                               f"intervals (cpu)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "s.parquet"]
