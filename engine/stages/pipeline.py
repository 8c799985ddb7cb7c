"""The chains of stages: ``run_pipeline`` (``ciml-ter run CONFIG.toml``: (ingest ->) features ->
sites -> causal/train -> evaluate -> predict -> analyze -> report, every path from the config's
[paths]; ingest runs when [paths] granules is set and skips the dates its cube already holds)
and ``train_and_evaluate`` (``ciml-ter train``, the pipeline and the demo).

A stage whose output already exists is skipped (and said so), so a rerun resumes; predict
resumes inside its run directory tile by tile.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ciml_ter.config import PipelineConfig, config_path
from ciml_ter.data.flux import fluxnet_folder
from ciml_ter.errors import ConfigError, InputError
from ciml_ter.parallel import under_mpi
from ciml_ter.stages import Runtime
from ciml_ter.stages.analyze import AnalyzeSummary, analyze
from ciml_ter.files import check_output, output_folder
from ciml_ter.stages.evaluate import EvaluateSummary, evaluate_into
from ciml_ter.stages.features import make_features
from ciml_ter.stages.ingest import ingest
from ciml_ter.stages.predict import predict
from ciml_ter.stages.report import report
from ciml_ter.stages.sites import build_sites
from ciml_ter.stages.train import TrainSummary, train_into
from ciml_ter.units import TER_UNITS

PATHS = ("features", "sites", "model", "run", "analysis", "report")


@dataclass
class ModelSummary:
    """A model trained and evaluated in one directory."""

    train: TrainSummary
    evaluation: EvaluateSummary

    @property
    def test(self) -> dict:
        """The model's test metrics (MAE, R2, ... on held-out sites)."""
        return self.evaluation.document["model"]["test"]

    def lines(self) -> list[str]:
        return [*self.evaluation.lines()[:-1], f"wrote {self.train.out} (model, metrics.json, tables, figures)"]


def train_and_evaluate(sites: Path, out: Path, config: PipelineConfig, runtime: Runtime, *,
                       weights: Path | None = None, settings: Path | None = None) -> ModelSummary:
    """``train`` on the site-month table ``sites``, then ``evaluate`` the model on the same table,
    in one folder built whole and swapped in as the model directory ``out`` (under its lock)."""
    check_output(out, "folder")
    with output_folder(out) as folder:
        trained = train_into(sites, folder, config, runtime, weights=weights, settings=settings)
        evaluation = evaluate_into(folder, folder, config, runtime, sites=sites)
    return ModelSummary(dataclasses.replace(trained, out=Path(out)), dataclasses.replace(evaluation, out=Path(out)))


@dataclass
class PipelineSummary:
    """The paths of a pipeline run and the analysis it computed (None when it was there before)."""

    paths: dict[str, Path]
    analysis: AnalyzeSummary | None = None

    def lines(self) -> list[str]:
        return [f"report: {self.paths['report'].resolve()}"]


def run_pipeline(config: PipelineConfig, runtime: Runtime, year: int | None = None) -> PipelineSummary:
    """Run every stage whose output is missing; ``runtime.say`` gets one line per stage."""
    if under_mpi():
        raise ConfigError("'ciml-ter run' chains stages on one process; under mpirun/srun use "
                          "'ciml-ter predict' (jobs/global_run.sh does)")
    say = runtime.say
    p = {name: config_path(config, name, year=year) for name in PATHS}
    done = PipelineSummary(p)
    if config.paths.granules:
        s = ingest([Path(g) for g in config.paths.granules], config_path(config, "cube", year=year), config,
                   Runtime(runtime.device))
        if not s.ok:
            raise InputError(f"ingest: {len(s.bad)} granule(s) could not be read: "
                             + "; ".join(f"{Path(f).name}: {why}" for f, why in s.bad))
        say(f"ingest: {len(s.dates_written)} date(s) written, "
            f"{sum(len(v) for v in s.skipped_present.values())} already there -> {s.out}")
    if p["features"].exists():
        say(f"features: {p['features']} exists, skipped")
    else:
        s = make_features(config_path(config, "cube", year=year), p["features"], config, runtime, res=config.grid.res)
        say(f"features: {len(s.features)} features x {s.months} months on {s.grid[0]} x {s.grid[1]} -> {p['features']}")
    if p["sites"].exists():
        say(f"sites: {p['sites']} exists, skipped")
    else:
        if not config.paths.fluxnet:
            raise ConfigError("no flux data: set [paths] fluxnet = [\"DIR\", ...] in the config")
        by = {"points": list(config.paths.points)} if config.paths.points else {"features": p["features"]}
        s = build_sites(p["sites"], config, runtime, fluxnet=[fluxnet_folder(d) for d in config.paths.fluxnet], **by)
        say(f"sites: {len(s.table):,} site-months of {s.table['site'].nunique()} sites"
            f"{f' ({s.left_out} left out: see the log)' if s.left_out else ''} -> {p['sites']}")
    if (p["model"] / "metrics.json").exists():
        say(f"train: {p['model']} exists, skipped")
    else:
        test = train_and_evaluate(p["sites"], p["model"], config, runtime).test
        say(f"causal + train: {config.train.folds} folds x {config.train.seeds} seeds; test MAE "
            f"{test['mae']:.2f} {TER_UNITS}, R2 {test['r2']:.3f} -> {p['model']}")
    if (p["run"] / "ter.nc").exists():
        say(f"predict: {p['run'] / 'ter.nc'} exists, skipped")
    else:
        s = predict(p["model"], p["features"], p["run"], config, runtime, shap=config.predict.shap)
        say(f"predict: {s.rows:,} pixel-months x {s.members} models in {s.seconds:.1f} s"
            f"{' with SHAP' if config.predict.shap else ''} -> {s.out}")
    if (p["analysis"] / "summary.json").exists():
        say(f"analyze: {p['analysis']} exists, skipped")
    else:
        done.analysis = analyze(p["run"], p["analysis"], config, runtime, sites=p["sites"])
        trend = done.analysis.summary.get("trend", {})
        say(f"analyze: {done.analysis.summary['budget']['mean_pg_c_yr']:.3f} Pg C/yr, trend "
            f"{trend.get('percent_per_step', float('nan')):+.2f} %/yr -> {p['analysis']}")
    if p["report"].exists():
        say(f"report: {p['report']} exists, skipped")
    else:
        report(p["run"], p["report"], config, runtime, analysis=p["analysis"], model=p["model"])
        say(f"report: {p['report']}")
    return done
