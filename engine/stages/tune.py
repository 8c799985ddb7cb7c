"""``ciml-ter tune``: each outer fold's settings from a search on its training sites (``tuning``)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ciml_ter.config import PipelineConfig, config_from_dict
from ciml_ter.device import Device
from ciml_ter.files import check_output
from ciml_ter.parallel import worker_pool
from ciml_ter.predictors import PredictorSpec, plan
from ciml_ter.sitetable import SiteTable, read_site_table
from ciml_ter.stages import Runtime
from ciml_ter.training import assign_folds
from ciml_ter.tuning import settings_document, tune_fold, write_settings


@dataclass
class TuneSummary:
    """A settings file written: its document (folds, trials, each fold's best settings)."""

    out: Path
    document: dict
    trials: int

    def lines(self) -> list[str]:
        d = self.document
        return [f"wrote {self.out}: {len(d['fold'])} folds x {self.trials} trials in {d['seconds']:.0f} s; "
                f"mean inner MAE {d['inner_mae_mean']:.2f}"]


def _tune_fold(task: tuple) -> tuple[int, dict]:
    fold, frame, features, path, spec, config, trials, device = task
    table = SiteTable(frame, features, f"{path} (training sites of fold {fold})")
    config = config_from_dict(config)
    return fold, tune_fold(table, PredictorSpec.from_dict(spec), config, trials, config.seed * 1000 + fold, device)


def tune(sites: Path, out: Path, config: PipelineConfig, runtime: Runtime, *, trials: int = 30) -> TuneSummary:
    """Tune every outer fold of the site-month table ``sites`` (folds as ``train`` deals them) and
    write the settings TOML to ``out``. Folds run in parallel (``train.workers``, 0 = one per core;
    processes on the CPU, threads sharing the GPU), each study on one thread, its boosters on
    ``runtime.device``. An ``out`` that cannot be written is refused before any search."""
    check_output(out, "file")
    started = time.perf_counter()
    table = read_site_table(sites)
    folds = assign_folds(table.sites, config.train.folds, config.seed, table.path)
    spec = plan(table, config)
    fold_of_row = np.array([folds[s] for s in table.sites])
    n_folds = max(folds.values()) + 1
    device: Device = runtime.device
    tasks = [(k, table.frame[fold_of_row != k].reset_index(drop=True), table.features, table.path, spec.as_dict(),
              config.to_dict(), trials, device) for k in range(n_folds)]
    workers = max(1, min(config.train.workers or os.cpu_count() or 1, n_folds))
    results = {}
    with worker_pool(workers, gpu=device.kind == "cuda") as pool:
        for fold, result in pool.map(_tune_fold, tasks):
            results[fold] = result
            runtime.step(len(results), n_folds, f"fold {fold}: inner MAE {result['inner_mae']:.2f} "
                         f"({result['trials_complete']} trials complete, {result['trials_pruned']} pruned, "
                         f"{result['seconds']:.0f} s)")
    document = settings_document(table, config, folds, results, trials, time.perf_counter() - started)
    write_settings(document, out)
    return TuneSummary(Path(out), document, trials)
