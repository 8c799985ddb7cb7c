"""``ciml-ter train``: the causal weights (read from ``--weights``, or discovered and saved
beside the model), then the ensemble of folds x seeds written to the model directory.

With ``--settings`` (from ``ciml-ter tune``) the folds and each fold's settings come from that
file. The CLI, ``run`` and the demo follow it with ``stages.evaluate`` into the same directory.
"""
from __future__ import annotations

from pathlib import Path

from ciml_ter import causal
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.predictors import plan
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import read_site_table
from ciml_ter.training import assign_folds, train_ensemble
from ciml_ter.tuning import read_settings

WEIGHTS = "weights.json"


def run(sites_path: str | Path, out_dir: str | Path, config: PipelineConfig,
        weights_path: str | Path | None = None, progress: ProgressCallback = None,
        settings_path: str | Path | None = None) -> Path:
    """Fit the ensemble on a site-month table and write ``out_dir``; returns ``out_dir``.

    Folds, seeds, workers, device, predictors and causal on/off come from ``config``
    (train.folds, train.seeds, train.workers, device, [predictors], train.causal); a settings
    file from ``ciml-ter tune`` replaces the folds, the predictors and each fold's XGBoost and
    weighting settings. With ``weights_path`` the causal results are read from that JSON
    (``ciml-ter causal`` output); without it and with train.causal the causal step runs first
    on the drivers (written to ``out_dir/weights.json``); with train.causal False the plain
    model is trained.
    """
    table = read_site_table(sites_path)
    folds = fold_settings = None
    if settings_path is not None:
        settings = read_settings(settings_path, table)
        config, folds, fold_settings = settings.config(config), settings.folds, settings.fold_settings
    folds = folds or assign_folds(table.sites, config.train.folds, config.seed, table.path)  # checked before PCMCI+
    spec = plan(table, config)
    out_dir = Path(out_dir)
    result = None
    causal_folds = config.train.causal or any(s.get("train", {}).get("causal") for s in (fold_settings or {}).values())
    if weights_path is not None and causal_folds:
        result = causal.read_weights(weights_path)
        if result["features"] != spec.drivers:
            raise InputError(f"{weights_path}: causal weights are for {', '.join(result['features'])}, the model's "
                             f"drivers are {', '.join(spec.drivers)}; rerun `ciml-ter causal` with this config")
    elif causal_folds:
        out_dir.mkdir(parents=True, exist_ok=True)
        result = causal.discover_weights(table, config, progress=progress, features=spec.drivers)
        causal.write_weights(result, out_dir / WEIGHTS)
    train_ensemble(table, config, out_dir, causal_result=result, progress=progress, folds=folds, spec=spec,
                   fold_settings=fold_settings)
    return out_dir
