"""``ciml-ter tune``: each outer fold's settings from a search on its training sites (``tuning``)."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from ciml_ter.config import PipelineConfig, config_from_dict
from ciml_ter.predictors import PredictorSpec, plan
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import SiteTable, read_site_table
from ciml_ter.training import assign_folds
from ciml_ter.tuning import settings_document, tune_fold, write_settings


def _tune_fold(task: tuple) -> tuple[int, dict]:
    fold, frame, features, path, spec, config, trials = task
    table = SiteTable(frame, features, f"{path} (training sites of fold {fold})")
    config = config_from_dict(config)
    return fold, tune_fold(table, PredictorSpec.from_dict(spec), config, trials, config.seed * 1000 + fold)


def run(sites_path: str | Path, out_path: str | Path, config: PipelineConfig, trials: int = 30,
        progress: ProgressCallback = None) -> dict:
    """Tune every outer fold of the table at ``sites_path`` (folds as ``train`` deals them), write the
    settings TOML to ``out_path``; returns its document. Folds run in parallel processes
    (``train.workers``, 0 = one per core), each study on one thread."""
    started = time.perf_counter()
    table = read_site_table(sites_path)
    folds = assign_folds(table.sites, config.train.folds, config.seed, table.path)
    spec = plan(table, config)
    fold_of_row = np.array([folds[s] for s in table.sites])
    n_folds = max(folds.values()) + 1
    tasks = [(k, table.frame[fold_of_row != k].reset_index(drop=True), table.features, table.path, spec.as_dict(),
              config.to_dict(), trials) for k in range(n_folds)]
    workers = max(1, min(config.train.workers or os.cpu_count() or 1, n_folds))
    results = {}
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        for fold, result in pool.map(_tune_fold, tasks):
            results[fold] = result
            if progress:
                progress(len(results), n_folds, f"fold {fold}: inner MAE {result['inner_mae']:.2f} "
                         f"({result['trials_complete']} trials complete, {result['trials_pruned']} pruned, "
                         f"{result['seconds']:.0f} s)")
    document = settings_document(table, config, folds, results, trials, time.perf_counter() - started)
    write_settings(document, out_path)
    return document
