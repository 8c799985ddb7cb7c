"""``ciml-ter train``: the causal weights (read from ``--weights``, or discovered and saved
beside the model), then the ensemble of folds x seeds written to the model directory.

The CLI, ``run`` and the demo follow it with ``stages.evaluate`` into the same directory.
"""
from __future__ import annotations

from pathlib import Path

from ciml_ter import causal
from ciml_ter.config import PipelineConfig
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import read_site_table
from ciml_ter.training import assign_folds, train_ensemble

WEIGHTS = "weights.json"


def run(sites_path: str | Path, out_dir: str | Path, config: PipelineConfig,
        weights_path: str | Path | None = None, progress: ProgressCallback = None) -> Path:
    """Fit the ensemble on a site-month table and write ``out_dir``; returns ``out_dir``.

    Folds, seeds, workers, device and causal on/off come from ``config`` (train.folds,
    train.seeds, train.workers, device, train.causal). With ``weights_path`` the causal weights
    are read from that JSON (``ciml-ter causal`` output); without it and with train.causal the
    causal step runs first (weights also written to ``out_dir/weights.json``); with
    train.causal False the plain model is trained.
    """
    table = read_site_table(sites_path)
    folds = assign_folds(table.sites, config.train.folds, config.seed, table.path)  # checked before PCMCI+
    out_dir = Path(out_dir)
    weights = causal_info = None
    if weights_path is not None and config.train.causal:
        result = causal.read_weights(weights_path)
        weights, causal_info = result["pooled"]["weights"], causal.summary(result)
    elif config.train.causal:
        out_dir.mkdir(parents=True, exist_ok=True)
        result = causal.discover_weights(table, config, progress=progress)
        causal.write_weights(result, out_dir / WEIGHTS)
        weights, causal_info = result["pooled"]["weights"], causal.summary(result)
    train_ensemble(table, config, out_dir, weights=weights, causal_info=causal_info, progress=progress,
                   folds=folds)
    return out_dir
