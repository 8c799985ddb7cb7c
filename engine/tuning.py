"""Settings chosen on held-out sites (``ciml-ter tune``), nested in the outer folds of ``train``.

For each outer fold k (the same site-grouped folds ``train`` uses), an Optuna study (TPE sampler,
median pruner, both seeded) searches the XGBoost settings and how causal strengths become
weights, scoring each trial by its MAE on site-grouped inner folds of fold k's training sites
(``train.inner_folds``); a trial is pruned after an inner fold when its running MAE is worse than
the median of earlier trials at that step. The causal step (PCMCI+) also runs on fold k's
training sites only. Fold k's test sites are never read: ``tune_fold`` gets the training rows
alone. Each fold's best settings go to a TOML settings file (``write_settings``) that
``train --settings`` reads, so the model tested on fold k was tuned without fold k.
"""
from __future__ import annotations

import logging
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomli_w

from ciml_ter.config import IDENTITY_OBJECTIVES, PipelineConfig, config_from_dict
from ciml_ter.device import Device
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_write
from ciml_ter.predictors import PredictorSpec, table_matrix
from ciml_ter.progress import ProgressCallback

log = logging.getLogger(__name__)
FORMAT = "ciml-ter-settings/1"
WEIGHTING = ("none", "pooled", "per_pft")

# name -> (section, key, kind, low, high); "log" kinds are sampled on a log scale
SPACE = {
    "max_depth": ("xgboost", "max_depth", "int", 2, 9),
    "learning_rate": ("xgboost", "learning_rate", "log", 0.01, 0.2),
    "num_boost_round": ("xgboost", "num_boost_round", "intlog", 50, 1500),
    "min_child_weight": ("xgboost", "min_child_weight", "log", 1.0, 100.0),
    "reg_lambda": ("xgboost", "reg_lambda", "log", 0.1, 100.0),
    "subsample": ("xgboost", "subsample", "float", 0.4, 1.0),
    "colsample_bynode": ("xgboost", "colsample_bynode", "float", 0.3, 1.0),
    "huber_slope": ("xgboost", "huber_slope", "log", 2.0, 100.0),  # only with pseudo-Huber
    "weight_floor": ("causal", "weight_floor", "log", 0.001, 0.5),
    "weight_power": ("causal", "weight_power", "float", 0.0, 2.0),
    "sibling_share": ("causal", "sibling_share", "float", 0.0, 1.0),
}
CAUSAL_KEYS = ("weight_floor", "weight_power", "sibling_share")
OBJECTIVES = IDENTITY_OBJECTIVES


def _suggest(trial, name: str):
    _, _, kind, low, high = SPACE[name]
    if kind == "int":
        return trial.suggest_int(name, low, high)
    if kind == "intlog":
        return trial.suggest_int(name, low, high, log=True)
    return trial.suggest_float(name, low, high, log=kind == "log")


def trial_settings(trial, causal_available: bool) -> dict:
    """One trial's nested settings (sections xgboost, causal, train) drawn from ``SPACE``."""
    objective = trial.suggest_categorical("objective", list(OBJECTIVES))
    settings = {"xgboost": {"early_stopping_rounds": 0, "objective": objective}, "train": {"causal": False}}
    for name, (section, key, *_) in SPACE.items():
        if section == "xgboost" and (name != "huber_slope" or objective == "reg:pseudohubererror"):
            settings["xgboost"][key] = _suggest(trial, name)
    weighting = trial.suggest_categorical("weighting", list(WEIGHTING)) if causal_available else "none"
    if weighting != "none":
        settings["train"]["causal"] = True
        settings["causal"] = {"weights": weighting, **{SPACE[n][1]: _suggest(trial, n) for n in CAUSAL_KEYS}}
    return settings


def _inner_mae(x, y, sites, pfts, settings: dict, config: PipelineConfig, causal_result, spec,
               splits, xgboost_device: str, report=None) -> float:
    """MAE (g C m-2 month-1) over the inner folds of one outer fold's training rows, boosters on
    ``xgboost_device`` (``Device.xgboost``); ``report`` (step, running MAE) may raise
    optuna.TrialPruned."""
    import xgboost as xgb

    from ciml_ter.causal import driver_weights
    from ciml_ter.training import feature_weights, fold_config, xgb_params

    cfg = fold_config(config, settings)
    errors = np.zeros(len(y))
    done = np.zeros(len(y), dtype=bool)
    for step, (fit, held) in enumerate(splits):
        kw = {}
        if cfg.train.causal and causal_result is not None:
            kw["feature_weights"] = feature_weights(driver_weights(causal_result, cfg.causal, pfts[fit]), spec)
        params = xgb_params(cfg, cfg.seed * 1000, 1, xgboost_device, y[fit])
        booster = xgb.train(params, xgb.DMatrix(x[fit], label=y[fit], **kw), cfg.xgboost.num_boost_round)
        errors[held] = np.abs(booster.predict(xgb.DMatrix(x[held])) - y[held])
        done[held] = True
        if report:
            report(step, float(errors[done].mean()))
    return float(errors.mean())


def tune_fold(train_table, spec: PredictorSpec, config: PipelineConfig, trials: int, seed: int, device: Device,
              progress: ProgressCallback = None) -> dict:
    """The study of one outer fold on its training sites only (``train_table``: a SiteTable of
    those rows), its boosters on ``device``: best settings, their inner MAE, trial counts, the
    causal parents found."""
    import optuna

    from ciml_ter.causal import discover_weights
    from ciml_ter.training import inner_splits

    started = time.perf_counter()
    frame = train_table.frame
    causal_result = discover_weights(train_table, config, features=spec.drivers) if config.train.causal else None
    x, y = table_matrix(frame, spec, train_table.path), train_table.y
    sites, pfts = train_table.sites, frame["pft"].astype(str).to_numpy()
    splits = inner_splits(sites, config.train.inner_folds, seed)

    def objective(trial):
        def report(step, value):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        settings = trial_settings(trial, causal_result is not None)
        return _inner_mae(x, y, sites, pfts, settings, config, causal_result, spec, splits, device.xgboost, report)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0))

    def tick(study, trial):
        if progress:
            progress(len(study.trials), trials, f"trial {trial.number}: {trial.state.name.lower()}"
                     + (f", inner MAE {trial.value:.2f}" if trial.value is not None else ""))

    study.optimize(objective, n_trials=trials, callbacks=[tick])
    best = study.best_trial
    states = [t.state.name for t in study.trials]
    return {"settings": trial_settings(optuna.trial.FixedTrial(best.params), causal_result is not None),
            "inner_mae": float(best.value), "trials_complete": states.count("COMPLETE"),
            "trials_pruned": states.count("PRUNED"), "inner_sites": int(len(np.unique(sites))),
            "parents": [] if causal_result is None else causal_result["pooled"]["parents"],
            "seconds": round(time.perf_counter() - started, 1)}


@dataclass
class Settings:
    """A settings file from ``ciml-ter tune``: outer folds, predictors and each fold's settings."""

    path: str
    folds: dict[str, int]
    predictors: dict
    fold_settings: dict[int, dict]
    document: dict

    def config(self, config: PipelineConfig) -> PipelineConfig:
        """``config`` with the file's predictors (those the search used)."""
        from ciml_ter.training import fold_config

        return fold_config(config, {"predictors": self.predictors, "train": {"folds": max(self.folds.values()) + 1}},
                           self.path)


def write_settings(document: dict, path: str | Path) -> Path:
    """Write a tune result as TOML (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, tomli_w.dumps(document))


def read_settings(path: str | Path, table=None) -> Settings:
    """Read a settings file; InputError when it is not one, or when ``table``'s sites differ from
    the sites it was tuned on."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: settings file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: expected a TOML settings file from `ciml-ter tune`, could not read it ({exc})") from None
    if document.get("format") != FORMAT:
        raise InputError(f"{path}: expected a settings file (from `ciml-ter tune`) of format '{FORMAT}', "
                         f"found {document.get('format')!r}")
    folds = {str(k): int(v) for k, v in document["folds"].items()}
    fold_settings = {int(entry["fold"]): entry["settings"] for entry in document["fold"]}
    for k, settings in fold_settings.items():
        config_from_dict(settings, f"{path} [fold {k}]")  # every key and value checked
    if table is not None:
        mine, theirs = set(table.sites), set(folds)
        if mine != theirs:
            extra, missing = sorted(mine - theirs), sorted(theirs - mine)
            raise InputError(f"{path}: tuned on other sites than {table.path} (not tuned: {', '.join(extra[:5]) or 'none'}; "
                             f"absent from the table: {', '.join(missing[:5]) or 'none'}); rerun `ciml-ter tune` on it")
    return Settings(str(path), folds, dict(document["predictors"]), fold_settings, document)


def settings_document(table, config: PipelineConfig, folds: dict[str, int], results: dict[int, dict],
                      trials: int, seconds: float) -> dict:
    """The TOML document of a tune run."""
    inner = [r["inner_mae"] for r in results.values()]
    return {"format": FORMAT, "sites_path": table.path, "n_sites": len(folds), "n_samples": len(table.frame),
            "trials": trials, "seconds": round(seconds, 1), "inner_folds": config.train.inner_folds,
            "seed": config.seed, "config_hash": config.stable_hash(),
            "inner_mae_mean": float(np.mean(inner)) if inner else math.nan,
            "search": {**{n: {"section": s, "kind": k, "low": lo, "high": hi} for n, (s, _, k, lo, hi) in SPACE.items()},
                       "objective": {"section": "xgboost", "kind": "choice", "values": list(OBJECTIVES)},
                       "weighting": {"section": "causal", "kind": "choice", "values": list(WEIGHTING)}},
            "predictors": config.to_dict()["predictors"],
            "folds": dict(sorted(folds.items())),
            "fold": [{"fold": k, **{key: v for key, v in r.items() if key != "settings"}, "settings": r["settings"]}
                     for k, r in sorted(results.items())]}
