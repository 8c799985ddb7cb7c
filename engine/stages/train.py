"""``ciml-ter train``: the causal weights (read from ``--weights``, or discovered and saved beside
the model), then the ensemble of folds x seeds written to the model directory (the pipeline's
``train_and_evaluate`` follows it with ``stages.evaluate`` into the same directory).

With ``--settings`` (from ``ciml-ter tune``) the folds and each fold's settings come from that file.
The model directory is built whole under a lock (``files.output_folder``): a retrained model
leaves no member of the older one, and a second ``train`` into the same folder stops at once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ciml_ter import causal
from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError
from ciml_ter.files import check_output, fingerprint, output_folder
from ciml_ter.predictors import plan
from ciml_ter.sitetable import read_site_table
from ciml_ter.stages import Runtime, stamp
from ciml_ter.training import assign_folds, train_ensemble
from ciml_ter.tuning import read_settings

WEIGHTS = "weights.json"


@dataclass
class TrainSummary:
    """A trained model directory: its folds x seeds, whether it has causal weights, on what device."""

    out: Path
    folds: int
    seeds: int
    causal: bool
    device: str
    nested: int = 0  # nested members (the towers' ensemble for the intervals)

    def lines(self) -> list[str]:
        nested = f" + {self.nested} nested members for the towers' intervals" if self.nested else ""
        return [f"wrote {self.out}: {self.folds} folds x {self.seeds} seeds{nested}"
                f"{' with causal weights' if self.causal else ''} ({self.device})"]


def made_from(sites: Path, config: PipelineConfig, *, weights: Path | None = None,
              settings: Path | None = None) -> dict:
    """The stamp of a model trained on the table ``sites`` (with causal ``weights`` and tuned
    ``settings`` files when given; ``stages.stamp``)."""
    inputs = {"sites": fingerprint(sites)}
    if weights is not None:
        inputs["weights"] = fingerprint(weights)
    if settings is not None:
        inputs["settings"] = fingerprint(settings)
    return stamp(config, **inputs)


def train(sites: Path, out: Path, config: PipelineConfig, runtime: Runtime, *, weights: Path | None = None,
          settings: Path | None = None) -> TrainSummary:
    """``train_into`` a folder built whole and swapped in as the model directory ``out``."""
    check_output(out, "folder")
    with output_folder(out) as folder:
        summary = train_into(sites, folder, config, runtime, weights=weights, settings=settings)
    return dataclasses.replace(summary, out=Path(out))


def train_into(sites: Path, out: Path, config: PipelineConfig, runtime: Runtime, *, weights: Path | None = None,
               settings: Path | None = None) -> TrainSummary:
    """Fit the ensemble on the site-month table ``sites`` and write the model directory into the
    folder ``out``.

    Folds, seeds, workers, predictors and causal on/off come from ``config`` (train.folds,
    train.seeds, train.workers, [predictors], train.causal); a settings file from ``ciml-ter
    tune`` replaces the folds, the predictors and each fold's XGBoost and weighting settings.
    With ``weights`` the causal results are read from that JSON (``ciml-ter causal`` output);
    without it and with train.causal the causal step runs first on the drivers (written to
    ``out/weights.json``); with train.causal False the plain model is trained.
    """
    stamp_ = made_from(sites, config, weights=weights, settings=settings)
    table = read_site_table(sites)
    folds = fold_settings = None
    if settings is not None:
        tuned = read_settings(settings, table)
        config, folds, fold_settings = tuned.config(config), tuned.folds, tuned.fold_settings
    folds = folds or assign_folds(table.sites, config.train.folds, config.seed, table.path)  # checked before PCMCI+
    spec = plan(table, config)
    out = Path(out)
    result = None
    causal_folds = config.train.causal or any(s.get("train", {}).get("causal") for s in (fold_settings or {}).values())
    if weights is not None and causal_folds:
        result = causal.read_weights(weights)
        if result["features"] != spec.drivers:
            raise InputError(f"{weights}: causal weights are for {', '.join(result['features'])}, the model's "
                             f"drivers are {', '.join(spec.drivers)}; rerun `ciml-ter causal` with this config")
    elif causal_folds:
        out.mkdir(parents=True, exist_ok=True)
        result = causal.discover_weights(table, config, progress=runtime.progress, features=spec.drivers)
        causal.write_weights(result, out / WEIGHTS)
    ensemble = train_ensemble(table, config, out, runtime.device, causal_result=result, progress=runtime.progress,
                              folds=folds, spec=spec, fold_settings=fold_settings, made_from=stamp_)
    m = ensemble.manifest
    return TrainSummary(out, m["n_folds"], m["n_seeds"], bool(m["causal"]), m["xgboost_device"],
                        len(m["nested_members"]))
