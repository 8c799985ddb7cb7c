"""The chains of stages: ``run_pipeline`` (``ciml-ter run CONFIG.toml``: (ingest ->) features ->
sites -> causal/train -> evaluate -> predict -> analyze -> report, every path from the config's
[paths]; ingest runs when [paths] granules is set and skips the dates its cube already holds)
and ``train_and_evaluate`` (``ciml-ter train``, the pipeline and the demo).

A stage whose output exists is skipped (and said so) only when the output records this config's
hash and the inputs the stage would read now (``stages.stamp``), so a rerun resumes; an output
made with another config or from other inputs is refused, or redone with ``restart``. Predict
resumes inside its run directory tile by tile. The report is written every time.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ciml_ter.config import PipelineConfig, config_path
from ciml_ter.data.cube import open_cube
from ciml_ter.data.flux import fluxnet_folder
from ciml_ter.documents import read_json
from ciml_ter.errors import ConfigError, InputError
from ciml_ter.files import check_output, output_folder
from ciml_ter.parallel import under_mpi
from ciml_ter.sitetable import read_site_table
from ciml_ter.stages import Runtime
from ciml_ter.stages.analyze import AnalyzeSummary, analyze, made_from as analysis_made_from
from ciml_ter.stages.evaluate import EvaluateSummary, evaluate_into
from ciml_ter.stages.features import made_from as features_made_from, make_features
from ciml_ter.stages.ingest import ingest
from ciml_ter.stages.predict import made_from as predict_made_from, predict
from ciml_ter.stages.report import report
from ciml_ter.stages.sites import build_sites, made_from as sites_made_from
from ciml_ter.stages.train import TrainSummary, made_from as train_made_from, train_into
from ciml_ter.tiles import RunDir
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
    """The paths of a pipeline run, the stages it ran and skipped, and the analysis it computed
    (None when it was there before)."""

    paths: dict[str, Path]
    ran: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    analysis: AnalyzeSummary | None = None

    def lines(self) -> list[str]:
        return [f"run finished: {len(self.ran)} stage(s) run, {len(self.skipped)} skipped as made with this "
                "config and inputs"]


def _differs(recorded: dict | None, expected: dict) -> str | None:
    """Why an output's recorded stamp (``stages.stamp``) is not the one this run would make, or
    None when it is."""
    if not recorded:
        return "it records no config hash and inputs (made by an older ciml-ter)"
    if recorded.get("config_hash") != expected["config_hash"]:
        return f"it was made with config hash {recorded.get('config_hash')}, this config's is {expected['config_hash']}"
    inputs = recorded.get("inputs", {})
    changed = [k for k in sorted({*inputs, *expected["inputs"]}) if inputs.get(k) != expected["inputs"].get(k)]
    return f"its input(s) {', '.join(changed)} changed since" if changed else None


def _recorded(read) -> dict | None:
    """The stamp an existing output records (``read()``), None when it records none or cannot be
    read as that output."""
    try:
        return read()
    except InputError:
        return None


def run_pipeline(config: PipelineConfig, runtime: Runtime, year: int | None = None,
                 restart: bool = False) -> PipelineSummary:
    """Run the stages from the config's [paths]; ``runtime.say`` gets one line per stage.

    A stage is skipped only when its output exists and records this config's hash and the
    inputs it would read now (``stages.stamp``); an output made otherwise is refused with the
    reason, or with ``restart`` redone (the reason said), and so every stage after it."""
    if under_mpi():
        raise ConfigError("'ciml-ter run' chains stages on one process; under mpirun/srun use "
                          "'ciml-ter predict' (jobs/global_run.sh does)")
    say = runtime.say
    p = {name: config_path(config, name, year=year) for name in PATHS}
    done = PipelineSummary(p)

    def reuse(stage: str, output: Path, exists: bool, read, expected: dict) -> bool:
        if not exists:
            done.ran.append(stage)
            return False
        why = _differs(_recorded(read), expected)
        if why is None:
            say(f"{stage}: {output} exists, skipped (same config and inputs)")
            done.skipped.append(stage)
            return True
        if not restart:
            raise InputError(f"{stage}: {output} exists but {why}; refusing to mix outputs of different configs "
                             "or inputs: give other [paths], or run with --restart to redo it")
        say(f"{stage}: redoing {output}: {why}")
        done.ran.append(stage)
        return False

    if config.paths.granules:
        s = ingest([Path(g) for g in config.paths.granules], config_path(config, "cube", year=year), config,
                   Runtime(runtime.device))
        if not s.ok:
            raise InputError(f"ingest: {len(s.bad)} granule(s) could not be read: "
                             + "; ".join(f"{Path(f).name}: {why}" for f, why in s.bad))
        say(f"ingest: {len(s.dates_written)} date(s) written, "
            f"{sum(len(v) for v in s.skipped_present.values())} already there -> {s.out}")
    cube = config_path(config, "cube", year=year)
    if not reuse("features", p["features"], p["features"].exists(),
                 lambda: json.loads(open_cube(p["features"]).attrs.get("made_from", "null")),
                 features_made_from(cube, config)):
        s = make_features(cube, p["features"], config, runtime, res=config.grid.res, restart=restart)
        say(f"features: {len(s.features)} features x {s.months} months on {s.grid[0]} x {s.grid[1]} -> {p['features']}")
    if not config.paths.fluxnet:
        raise ConfigError("no flux data: set [paths] fluxnet = [\"DIR\", ...] in the config")
    fluxnet = [fluxnet_folder(d) for d in config.paths.fluxnet]
    by = {"points": list(config.paths.points)} if config.paths.points else {"features": p["features"]}
    if not reuse("sites", p["sites"], p["sites"].exists(), lambda: read_site_table(p["sites"]).meta.get("made_from"),
                 sites_made_from(config, fluxnet=fluxnet, **by)):
        s = build_sites(p["sites"], config, runtime, fluxnet=fluxnet, **by)
        say(f"sites: {len(s.table):,} site-months of {s.table['site'].nunique()} sites"
            f"{f' ({s.left_out} left out: see the log)' if s.left_out else ''} -> {p['sites']}")
    if not reuse("train", p["model"], p["model"].exists(), lambda: _evaluated_model(p["model"]),
                 train_made_from(p["sites"], config)):
        test = train_and_evaluate(p["sites"], p["model"], config, runtime).test
        say(f"causal + train: {config.train.folds} folds x {config.train.seeds} seeds; test MAE "
            f"{test['mae']:.2f} {TER_UNITS}, R2 {test['r2']:.3f} -> {p['model']}")
    model_id = read_json(p["model"] / "manifest.json", "model manifest").get("model_id")
    run = RunDir(p["run"])
    if not reuse("predict", run.output, run.output.exists(), lambda: run.manifest().get("made_from"),
                 predict_made_from(model_id, p["features"], config)):
        s = predict(p["model"], p["features"], p["run"], config, runtime, shap=config.predict.shap, restart=restart)
        say(f"predict: {s.rows:,} pixel-months x {s.members} models in {s.seconds:.1f} s"
            f"{' with SHAP' if config.predict.shap else ''} -> {s.out}")
    summary_path = p["analysis"] / "summary.json"
    if not reuse("analyze", p["analysis"], p["analysis"].exists(),
                 lambda: read_json(summary_path, "summary.json").get("made_from"),
                 analysis_made_from(run.manifest().get("run_id"), config, sites=p["sites"])):
        done.analysis = analyze(p["run"], p["analysis"], config, runtime, sites=p["sites"])
        say(f"analyze: {done.analysis.headline} -> {p['analysis']}")
    report(p["run"], p["report"], config, runtime, analysis=p["analysis"], model=p["model"])
    done.ran.append("report")
    say(f"report: wrote {p['report'].resolve()}")
    return done


def _evaluated_model(model: Path) -> dict | None:
    """A model directory's stamp when its metrics.json evaluates the model there (None otherwise)."""
    manifest = read_json(model / "manifest.json", "model manifest")
    metrics = read_json(model / "metrics.json", "metrics.json of `ciml-ter evaluate`")
    return manifest.get("made_from") if metrics.get("model", {}).get("model_id") == manifest.get("model_id") else None
