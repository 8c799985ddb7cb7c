"""The model on towers it never saw: nested, site-grouped test MAE of candidate settings on
FLUXNET2015 towers, against the random forest, plain XGBoost and Lloyd-Taylor on the same folds.

    python -m benchmarks.towers --fluxnet DIR [--seeds 2] [--fold-seeds 0,1,2]
                                [--candidates a,b,...] [--default-train] [--quick]

The site table is built from ``DIR`` in site-only mode (``ciml-ter sites``). Each candidate is a
set of settings laid over the defaults (``CANDIDATES``); it is trained as ``ciml-ter train``
trains the plain model (``training.train_ensemble``: each outer fold's rounds chosen by
site-grouped CV inside its training sites, so the test sites of a fold are never seen), on the
10 site-grouped folds of each fold seed (``training.deal_sites``; seed 0 is the assignment of
``train``). A few candidates change what the engine has no setting for (monotone constraints,
per-site row weights, a log target); those run through ``plain_oof``, the same rounds rule and
members written out here, which on the engine's own settings gives ``train_ensemble``'s
estimates (``tests/test_benchmarks.py``).

Scores: test MAE (g C m-2 month-1) over every site-month, each row estimated by the fold that
held its site out; with several fold seeds the rows of all of them are pooled. Intervals: 95 %
site bootstrap (``evaluation.site_bootstrap``; whole sites resampled, all fold seeds of a site
together), of each MAE and of the paired differences against ``before`` (the defaults before
issue 25) and against the random forest on the candidate's own predictors.
``--default-train`` also runs the whole default ``ciml-ter train`` (PCMCI+, causal guard,
evaluation with its baselines and verdict) on fold seed 0 and records its verdict and its time.

``--quick``: the shipped 20-site sample (or ``--sites``), 3 folds, 1 seed, two candidates, few
rounds and trees (for the unit test). Writes benchmarks/results/towers-cpu-<date>[-quick].json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, environment, write_result
from ciml_ter.causal import discover_weights
from ciml_ter.config import PipelineConfig, config_from_dict
from ciml_ter.device import CPU
from ciml_ter.evaluation import random_forest_baseline, site_bootstrap, temperature_baseline, temperature_kelvin
from ciml_ter.parallel import worker_pool
from ciml_ter.predictors import CONTEXT_PREFIXES, plan, table_matrix
from ciml_ter.sitetable import SiteTable, read_site_table
from ciml_ter.training import deal_sites, inner_cv, inner_splits, train_ensemble, xgb_params

# name -> (what it changes, nested settings over the defaults, options).
# options: "record": False = context columns from the table's rows (the kept months) instead of the
# sites' complete records; "causal": with causal weights from PCMCI+ on the whole table (as `train`
# runs it), compared with the plain model of the same settings ("defaults" for the causal
# candidates); "monotone": feature -> +1/-1; "site_weights": "sqrt" (rows weighted 1/sqrt(months of
# their site)); "log_target": fit log(1 + TER), MAE on TER.
OLD_BOOSTER = {"learning_rate": 0.05, "max_depth": 5, "colsample_bynode": 0.5}
OLD = {"predictors": {"antecedent": [], "igbp": False}, "xgboost": OLD_BOOSTER}
WATER = ["P_F", "SWC_F_MDS_1", "lswi"]
CANDIDATES: dict[str, tuple[str, dict, dict]] = {
    "before": ("defaults before issue 25: depth 5, colsample_bynode 0.5, learning rate 0.05, climatology of the "
               "kept months, no antecedent columns", OLD, {"record": False}),
    "record_climatology": ("before, with the climatology of each site's complete record (every month of its "
                           "files)", OLD, {}),
    "water_antecedent": ("record_climatology + previous month and 3-month mean of the water drivers "
                         "(P_F, SWC_F_MDS_1, lswi)", {**OLD, "predictors": {"antecedent": WATER}}, {}),
    "all_antecedent": ("record_climatology + previous month and 3-month mean of every driver",
                       {**OLD, "predictors": {"antecedent": ["*"]}}, {}),
    "defaults": ("today's defaults: all_antecedent with max_depth 3, colsample_bynode 0.3, learning rate 0.02",
                 {}, {}),
    "defaults_reseeded": ("the defaults with other booster and inner-CV seeds (config seed 1): the spread of the "
                          "model itself", {"seed": 1}, {}),
    "booster_before": ("the defaults with the booster of before (depth 5, colsample_bynode 0.5, learning rate "
                       "0.05)", {"xgboost": OLD_BOOSTER}, {}),
    "water_only": ("the defaults with antecedent columns of the water drivers only",
                   {"predictors": {"antecedent": WATER}}, {}),
    "no_antecedent": ("the defaults without antecedent columns", {"predictors": {"antecedent": []}}, {}),
    "igbp": ("the defaults + IGBP one-hot", {"predictors": {"igbp": True}}, {}),
    "depth_2": ("the defaults with max_depth 2", {"xgboost": {"max_depth": 2}}, {}),
    "depth_4": ("the defaults with max_depth 4", {"xgboost": {"max_depth": 4}}, {}),
    "colsample_0.2": ("the defaults with colsample_bynode 0.2", {"xgboost": {"colsample_bynode": 0.2}}, {}),
    "learning_rate_0.01": ("the defaults with learning rate 0.01", {"xgboost": {"learning_rate": 0.01}}, {}),
    "pseudo_huber": ("the defaults with the pseudo-Huber objective, slope 20",
                     {"xgboost": {"objective": "reg:pseudohubererror"}}, {}),
    "squared_error": ("the defaults with the squared-error objective", {"xgboost": {"objective": "reg:squarederror"}},
                      {}),
    "log_target": ("the defaults, squared error on log(1 + TER)", {"xgboost": {"objective": "reg:squarederror"}},
                   {"log_target": True}),
    "patience_50": ("the defaults with early-stopping patience 50", {"xgboost": {"early_stopping_rounds": 50}}, {}),
    "fixed_500": ("the defaults with 500 rounds, no rounds CV",
                  {"xgboost": {"early_stopping_rounds": 0, "num_boost_round": 500}}, {}),
    "min_child_weight_100": ("the defaults with min_child_weight 100", {"xgboost": {"min_child_weight": 100.0}}, {}),
    "min_child_weight_100_reseeded": ("min_child_weight_100 with config seed 1",
                                      {"xgboost": {"min_child_weight": 100.0}, "seed": 1}, {}),
    "inner_folds_5": ("the defaults with 5 inner folds for the rounds CV", {"train": {"inner_folds": 5}}, {}),
    "inner_folds_5_reseeded": ("inner_folds_5 with config seed 1", {"train": {"inner_folds": 5}, "seed": 1}, {}),
    "learning_rate_0.01_reseeded": ("learning_rate_0.01 with config seed 1",
                                    {"xgboost": {"learning_rate": 0.01}, "seed": 1}, {}),
    "subsample_0.5": ("the defaults with subsample 0.5", {"xgboost": {"subsample": 0.5}}, {}),
    "subsample_0.5_reseeded": ("subsample_0.5 with config seed 1", {"xgboost": {"subsample": 0.5}, "seed": 1}, {}),
    "monotone_temperature": ("the defaults, TER monotone increasing in air and soil temperature", {},
                             {"monotone": {"TA_F": 1, "TS_F_MDS_1": 1}}),
    "site_weights": ("the defaults, rows weighted 1/sqrt(months of their site)", {}, {"site_weights": "sqrt"}),
    "rounds_5000": ("up to 5000 rounds (the defaults' cap; the first runs had 2000)",
                    {"xgboost": {"num_boost_round": 5000}}, {}),
    "causal_rounds_5000": ("causal weights per PFT with the issue-14 guard margin (1 %), up to 5000 rounds",
                           {"xgboost": {"num_boost_round": 5000}, "causal": {"guard_margin": 0.01}}, {"causal": True}),
    "causal_margin_0.025": ("causal weights per PFT, the guard keeping them only for a 2.5 % inner gain",
                            {"causal": {"guard_margin": 0.025}}, {"causal": True}),
    "causal_floor_0.1": ("causal weights per PFT with the issue-14 guard margin (1 %), weight floor 0.1",
                         {"causal": {"weight_floor": 0.1, "guard_margin": 0.01}}, {"causal": True}),
    "causal_per_pft": ("causal weights per PFT with the issue-14 guard margin (1 %)",
                       {"causal": {"guard_margin": 0.01}}, {"causal": True}),
    "causal_defaults": ("causal weights as `train` uses them: per PFT, guard margin 5 %", {}, {"causal": True}),
    "causal_pooled": ("causal weights pooled over all PFTs, with the guard", {"causal": {"weights": "pooled"}},
                      {"causal": True}),
    "causal_no_guard": ("causal weights per PFT in every fold (no guard)", {"causal": {"guard": False}},
                        {"causal": True}),
    "causal_tau_1": ("PCMCI+ with lagged links (tau_max 1), per PFT, with the guard", {"causal": {"tau_max": 1}},
                     {"causal": True}),
}
RF_CANDIDATES = ("before", "record_climatology", "all_antecedent", "defaults", "igbp")
# what each candidate is compared with besides ``before`` (paired): the step it adds to; causal
# candidates with the plain model of the same settings
REFERENCE = {"record_climatology": "before", "water_antecedent": "record_climatology",
             "all_antecedent": "record_climatology", "defaults": "all_antecedent", "causal_rounds_5000": "rounds_5000"}


def reference_of(name: str) -> str:
    return REFERENCE.get(name, "defaults")


QUICK = ("before", "defaults")
QUICK_ROUNDS = (60, 10)  # --quick: at most 60 rounds, patience 10


def table_variant(table: SiteTable, record: bool) -> SiteTable:
    """``table``, or without its stored context columns (context then from the table's own rows)."""
    if record:
        return table
    stored = [c for c in table.frame.columns if c.startswith(CONTEXT_PREFIXES) and c not in table.features]
    return SiteTable(table.frame.drop(columns=stored), table.features, table.path)


def candidate_config(overrides: dict, base: PipelineConfig) -> PipelineConfig:
    """``base`` with the candidate's sections (and top-level keys such as ``seed``) laid over it."""
    merged = base.to_dict()
    for key, value in overrides.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
    return config_from_dict(merged, "benchmark candidate")


# --------------------------------------------------------------------------- plain_oof
def _fold(task) -> tuple[np.ndarray, int]:
    """Test estimates of one outer fold: rounds by site-grouped CV inside its training rows, then
    one member per seed on all of them (as ``training._choose_rounds`` / ``_train_member``). The
    rows are memory-mapped from the ``.npy`` files of ``folder`` (``plain_oof``)."""
    import xgboost as xgb

    folder, k, train, test, config_dict, extra, log_target = task
    config = config_from_dict(config_dict)
    x, y_all, sites = (np.load(Path(folder) / f"{n}.npy", mmap_mode="r") for n in ("x", "y", "sites"))
    weight_file = Path(folder) / "weight.npy"
    weight = np.load(weight_file)[train] if weight_file.is_file() else None
    y = np.log1p(np.maximum(y_all[train], 0.0)) if log_target else y_all[train]
    data = xgb.DMatrix(x[train], label=y, weight=weight)

    def params(seed):
        return {**xgb_params(config, seed, 1, "cpu", y), **extra}

    if config.xgboost.early_stopping_rounds:
        splits = inner_splits(sites[train], config.train.inner_folds, config.seed * 1000 + k)
        rounds, _ = inner_cv(params(config.seed * 1000), data, splits, config)
    else:
        rounds = config.xgboost.num_boost_round
    test_x = xgb.DMatrix(x[test])
    members = [xgb.train(params(config.seed * 1000 + s), data, num_boost_round=rounds).predict(test_x)
               for s in range(config.train.seeds)]
    estimate = np.mean(members, axis=0)
    return (np.expm1(estimate) if log_target else estimate), rounds


def plain_oof(table: SiteTable, config: PipelineConfig, folds: dict[str, int], options: dict,
              workers: int = 0) -> tuple[np.ndarray, dict[int, int]]:
    """Out-of-fold estimates and rounds per fold of plain XGBoost with ``options`` (see
    ``CANDIDATES``), folds in parallel processes."""
    spec = plan(table, config)
    x = table_matrix(table.frame, spec, table.path)
    extra = {}
    if options.get("monotone"):
        extra["monotone_constraints"] = "(" + ",".join(str(options["monotone"].get(f, 0)) for f in spec.features) + ")"
    fold_of_row = np.array([folds[s] for s in table.sites])
    n_folds = max(folds.values()) + 1
    oof, rounds = np.full(len(x), np.nan), {}
    workers = max(1, min(workers or os.cpu_count() or 1, n_folds))
    with tempfile.TemporaryDirectory() as folder:
        for name, values in (("x", x), ("y", table.y), ("sites", np.asarray(table.sites).astype(str))):
            np.save(Path(folder) / f"{name}.npy", values)
        if options.get("site_weights") == "sqrt":
            months = table.frame.groupby("site")["ter"].transform("size").to_numpy(dtype=np.float64)
            np.save(Path(folder) / "weight.npy", 1.0 / np.sqrt(months))
        tasks = [(folder, k, np.flatnonzero(fold_of_row != k), np.flatnonzero(fold_of_row == k), config.to_dict(),
                  extra, bool(options.get("log_target"))) for k in range(n_folds)]
        with worker_pool(workers) as pool:
            results = list(pool.map(_fold, tasks))
    for task, (estimate, n) in zip(tasks, results):
        oof[task[3]], rounds[task[1]] = estimate, n
    return oof, rounds


def engine_oof(table: SiteTable, config: PipelineConfig, folds: dict[str, int],
               causal_result: dict | None = None) -> tuple[np.ndarray, dict[int, int], dict]:
    """Out-of-fold estimates, rounds per fold and causal-guard records of the model as
    ``train_ensemble`` trains it (plain without ``causal_result``)."""
    config = replace(config, train=replace(config.train, nested_spread=False))  # scored on MAE only
    with tempfile.TemporaryDirectory() as tmp:
        ensemble = train_ensemble(table, config, tmp, CPU, causal_result=causal_result, folds=folds)
        oof, _ = ensemble.predict_oof(ensemble.matrix(table), table.sites)
        rounds = {int(k): int(v) for k, v in ensemble.manifest["rounds"]["by_fold"].items()}
        guard = ensemble.manifest["causal_guard"]
    return oof, rounds, guard


# --------------------------------------------------------------------------- scoring
def fold_assignment(table: SiteTable, n_folds: int, seed: int) -> dict[str, int]:
    return deal_sites(np.array(sorted(set(table.sites))), n_folds, seed)


def score(obs: np.ndarray, sites: np.ndarray, estimates: dict[str, list[np.ndarray]], reference: str,
          seed: int = 0, n_boot: int = 1000) -> dict:
    """Site bootstrap of every model's test MAE (rows of all fold seeds pooled: a site is drawn with
    all its fold seeds) and of the paired differences MAE(reference) - MAE(other)."""
    n = len(next(iter(estimates.values())))
    return site_bootstrap(np.tile(obs, n), {k: np.concatenate(v) for k, v in estimates.items()}, np.tile(sites, n),
                          n_boot=n_boot, seed=seed, reference=reference)


def interval(entry: dict) -> str:
    return f"{entry['mae']:.2f} ({entry['low']:.2f}-{entry['high']:.2f})"


def difference(entry: dict) -> str:
    return f"{entry['difference']:+.2f} ({entry['low']:+.2f} to {entry['high']:+.2f})"


def markdown(result: dict) -> str:
    """The README's tables from a result: per candidate its test MAE, its paired difference with
    ``before`` and with its reference (the step it adds to, or the plain model), the random forest
    on the same predictors; then the default ``train``, if recorded."""
    scores = result["scores"]
    lines = ["| candidate | test MAE (95 % interval) | minus before | minus its reference | "
             "random forest, same predictors | XGBoost / forest |", "| --- | --- | --- | --- | --- | --- |"]
    for name, entry in result["candidates"].items():
        forest, ref = entry.get("versus_random_forest"), entry.get("minus_reference")
        lines.append(" | ".join([
            f"| `{name}`: {entry['what']}", interval(scores["models"][name]),
            difference(entry["minus_before"]) if "minus_before" in entry else "",
            f"{difference(ref)} vs `{ref['reference']}`" if ref else "",
            interval(forest["random_forest"]) if forest else "", f"{forest['ratio']:.3f}" if forest else ""]) + " |")
    lt = scores["models"].get("lloyd_taylor")
    if lt:
        lines.append(f"| Lloyd-Taylor per PFT ({result['lloyd_taylor']['temperature']}) | {interval(lt)} | | | | |")
    train = result.get("default_train")
    if train:
        models = train["bootstrap"]["models"]
        names = [k for k in ("model", "xgboost_plain", "random_forest", "lloyd_taylor", "q10") if k in models]
        lines += ["", "| " + " | ".join(names) + " |", "|" + " --- |" * len(names),
                  "| " + " | ".join(interval(models[k]) for k in names) + " |", "",
                  f"{train['sentence']} {train['ranking']} " + " ".join(train.get("where") or []),
                  f"Ratio to the random forest {models['model']['mae'] / models['random_forest']['mae']:.3f}; "
                  f"{train['n_folds']} folds x {train['n_seeds']} seeds in {train['seconds']:.0f} s (load average "
                  f"{train['load_average_before'][0]:.1f} before, {train['load_average_after'][0]:.1f} after)."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the default train
def default_train(sites_path: Path, config: PipelineConfig) -> dict:
    """The whole default ``ciml-ter train`` (causal step, ensemble, evaluation) on ``sites_path``:
    its verdict, test MAEs and seconds, with the machine's load average before and after."""
    from ciml_ter.stages import Runtime
    from ciml_ter.stages.pipeline import train_and_evaluate

    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = train_and_evaluate(sites_path, Path(tmp) / "model", config, Runtime(CPU))
        metrics = summary.evaluation.document
    seconds = time.perf_counter() - started
    verdict = metrics["verdict"]
    return {"seconds": round(seconds, 1),
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "test_mae": {k: v["mae"] for k, v in verdict["bootstrap"]["models"].items()},
            "bootstrap": verdict["bootstrap"], "sentence": verdict.get("sentence"), "ranking": verdict.get("ranking"),
            "where": verdict.get("where"), "by_group": verdict.get("by_group"),
            "causal_guard": metrics["training"]["causal_guard"],
            "rounds": metrics["training"]["rounds"], "n_seeds": metrics["n_seeds"], "n_folds": metrics["n_folds"]}


# --------------------------------------------------------------------------- main
def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fluxnet", type=Path, help="folder of FLUXNET monthly CSVs + sites.csv "
                        "(default with --quick: the shipped sample)")
    parser.add_argument("--sites", type=Path, help="an existing site-month table instead of --fluxnet (e.g. the "
                        "demo's synthetic/sites.parquet)")
    parser.add_argument("--seeds", type=int, default=2, help="members per fold")
    parser.add_argument("--fold-seeds", default="0", help="fold assignments, comma-separated (0 = train's)")
    parser.add_argument("--candidates", default="", help="comma-separated names (default: all)")
    parser.add_argument("--default-train", action="store_true", help="also the whole default `ciml-ter train`")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per core)")
    parser.add_argument("--no-forest", action="store_true", help="no random forest beside any candidate")
    parser.add_argument("--quick", action="store_true", help="3 folds x 1 seed, 2 candidates, few rounds and trees "
                        "(on the shipped sample unless --sites)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    parser.add_argument("--markdown", type=Path, help="print the README tables of a result JSON and stop")
    parser.add_argument("--estimates", type=Path, help="also write every test estimate to this .npz")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return args.markdown
    from ciml_ter.data.flux import SHIPPED_SAMPLE
    from ciml_ter.stages import Runtime
    from ciml_ter.stages.sites import build_sites

    if args.fluxnet is None and args.sites is None and not args.quick:
        parser.error("--fluxnet DIR or --sites S.parquet is required (or --quick for the shipped sample)")
    fluxnet = args.fluxnet or SHIPPED_SAMPLE
    names = [n for n in args.candidates.split(",") if n] or list(QUICK if args.quick else CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
    if "before" not in names:
        names.insert(0, "before")
    fold_seeds = [int(s) for s in args.fold_seeds.split(",")]
    base = PipelineConfig()
    base.train.seeds, base.train.workers = args.seeds, args.workers
    rf_trees = 200
    if args.quick:
        base.train.folds, base.train.seeds = 3, 1
        base.xgboost.num_boost_round, base.xgboost.early_stopping_rounds = QUICK_ROUNDS
        base.train.workers = 1  # no process pool to start: seconds
        rf_trees = 20
    started = time.perf_counter()
    result = {"benchmark": "towers", "quick": args.quick, **environment("cpu"),
              "fluxnet": None if args.sites else str(fluxnet), "sites": None if args.sites is None else str(args.sites),
              "fold_seeds": fold_seeds, "folds": base.train.folds, "seeds": base.train.seeds,
              "config_hash": base.stable_hash(), "candidates": {}}
    label = f"-{args.sites.parent.name}" if args.sites else ""
    path = args.out / f"towers-cpu-{result['date']}{label}{'-quick' if args.quick else ''}.json"
    with tempfile.TemporaryDirectory() as tmp:
        sites_path = args.sites or Path(tmp) / "sites.parquet"
        if args.sites is None:
            build_sites(sites_path, PipelineConfig(), Runtime(CPU), fluxnet=[fluxnet])
        table = read_site_table(sites_path)
        obs, site_ids = table.y, table.sites
        result["sizes"] = {"sites": int(len(set(site_ids))), "site_months": int(len(obs))}
        assignments = [fold_assignment(table, base.train.folds, s) for s in fold_seeds]
        estimates: dict[str, list[np.ndarray]] = {}
        t_k, t_col = temperature_kelvin(table.frame)
        lloyd_taylor = []
        for folds in assignments:
            fold_of_row = np.array([folds[s] for s in site_ids])
            lloyd_taylor.append(temperature_baseline("lloyd_taylor", table.frame, t_k, fold_of_row, base.train.folds)[0])
        estimates["lloyd_taylor"] = lloyd_taylor
        result["lloyd_taylor"] = {"temperature": t_col}
        for name in names:
            what, overrides, options = CANDIDATES[name]
            config = candidate_config(overrides, base)
            variant = table_variant(table, options.get("record", True))
            tick = time.perf_counter()
            oofs, rounds, forests, guards = [], [], [], []
            causal_result = None
            if options.get("causal"):
                causal_result = discover_weights(variant, config, features=plan(variant, config).drivers)
            for folds in assignments:
                if set(options) - {"record", "causal"}:
                    oof, r = plain_oof(variant, config, folds, options, args.workers)
                else:
                    oof, r, guard = engine_oof(variant, config, folds, causal_result)
                    guards.append(guard)
                oofs.append(oof)
                rounds.append(r)
                if name in RF_CANDIDATES and not args.no_forest:
                    x = table_matrix(variant.frame, plan(variant, config), variant.path)
                    fold_of_row = np.array([folds[s] for s in site_ids])
                    forests.append(random_forest_baseline(x, obs, fold_of_row, base.train.folds, base.seed, rf_trees))
            estimates[name] = oofs
            if forests:
                estimates[f"{name}:random_forest"] = forests
            result["candidates"][name] = {
                "what": what, "settings": overrides, "options": options,
                "features": plan(variant, config).features, "rounds_by_fold_seed": rounds,
                "causal_guard_by_fold_seed": guards if causal_result else None,
                "causal_parents": None if causal_result is None else causal_result["pooled"]["parents"],
                "mae_by_fold_seed": [float(np.mean(np.abs(o - obs))) for o in oofs],
                "seconds": round(time.perf_counter() - tick, 1)}
            result["scores"] = score(obs, site_ids, estimates, reference="before")
            entry = result["candidates"][name]
            for other in ("before", reference_of(name)):
                if other in estimates and other != name:
                    pair = score(obs, site_ids, {name: estimates[name], other: estimates[other]}, name)
                    entry[f"minus_{'before' if other == 'before' else 'reference'}"] = {
                        "reference": other, **pair["differences"][other]}
            if forests:
                pair = score(obs, site_ids, {name: oofs, "random_forest": forests}, name)
                entry["versus_random_forest"] = {
                    "random_forest": pair["models"]["random_forest"], "minus": pair["differences"]["random_forest"],
                    "ratio": pair["models"][name]["mae"] / pair["models"]["random_forest"]["mae"]}
            result["seconds"] = round(time.perf_counter() - started, 1)
            write_result(args.out, path.stem, result)  # after each candidate: an interruption loses little
            if args.estimates:
                np.savez_compressed(args.estimates, obs=obs, sites=site_ids,
                                    **{k: np.stack(v).astype(np.float32) for k, v in estimates.items()})
            print(f"{name}: test MAE {interval(result['scores']['models'][name])}"
                  + "".join(f", minus {entry[k]['reference']} {difference(entry[k])}"
                            for k in ("minus_before", "minus_reference") if k in entry)
                  + (f", random forest {interval(entry['versus_random_forest']['random_forest'])}" if forests else "")
                  + f" [{entry['seconds']:.0f} s]", flush=True)
        if args.default_train:
            config = PipelineConfig()
            config.train.seeds, config.train.workers = args.seeds, args.workers
            result["default_train"] = default_train(sites_path, config)
            print(f"default train: {result['default_train']['test_mae']}; {result['default_train']['sentence']} "
                  f"[{result['default_train']['seconds']:.0f} s]", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    path = write_result(args.out, path.stem, result)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
