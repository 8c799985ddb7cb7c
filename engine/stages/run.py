"""``ciml-ter run CONFIG.toml``: the chain (ingest ->) features -> sites -> causal/train -> predict
-> analyze -> report, with every input and output path taken from the config's [paths]; ingest
runs when [paths] granules is set (it skips the dates its cube already holds).

A stage whose output already exists is skipped (and said so), so a rerun resumes; predict
resumes inside its run directory tile by tile.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ciml_ter.config import PipelineConfig, config_path
from ciml_ter.documents import read_json
from ciml_ter.errors import ConfigError, InputError
from ciml_ter.parallel import under_mpi
from ciml_ter.progress import ProgressCallback
from ciml_ter.stages import analyze, evaluate, features, ingest, predict, report, sites, train
from ciml_ter.units import TER_UNITS


def run(config: PipelineConfig, say: Callable[[str], None], progress: ProgressCallback = None,
        year: int | None = None) -> dict:
    """Run every stage whose output is missing; ``say`` gets one line per stage."""
    if under_mpi():
        raise ConfigError("'ciml-ter run' chains stages on one process; under mpirun/srun use "
                          "'ciml-ter predict' (jobs/global_run.sh does)")
    p = {name: config_path(config, name, year=year) for name in
         ("features", "sites", "model", "run", "analysis", "report")}
    done: dict = {}
    if config.paths.granules:
        s = ingest.run([Path(g) for g in config.paths.granules], config_path(config, "cube", year=year),
                       **ingest.options_from(config), device=config.device, log=lambda line: None)
        if not s.ok:
            raise InputError(f"ingest: {len(s.bad)} granule(s) could not be read: "
                             + "; ".join(f"{Path(f).name}: {why}" for f, why in s.bad))
        say(f"ingest: {sum(len(v) for v in s.written.values())} date(s) written, "
            f"{sum(len(v) for v in s.skipped_present.values())} already there -> {s.out}")
    if p["features"].exists():
        say(f"features: {p['features']} exists, skipped")
    else:
        s = features.run(config_path(config, "cube", year=year), p["features"], res=config.grid.res,
                           config=config.features, device=config.device, progress=progress)
        say(f"features: {len(s['features'])} features x {s['months']} months on {s['grid'][0]} x "
            f"{s['grid'][1]} -> {p['features']}")
    if p["sites"].exists():
        say(f"sites: {p['sites']} exists, skipped")
    else:
        if not config.paths.fluxnet:
            raise ConfigError("no flux data: set [paths] fluxnet = [\"DIR\", ...] in the config")
        by = ({"points": list(config.paths.points), "features_config": config.features} if config.paths.points
              else {"features": p["features"]})
        frame, found = sites.run(p["sites"], [Path(d) for d in config.paths.fluxnet], **by)
        dropped = sum(len(v) for v in found.dropped_sites.values())
        say(f"sites: {len(frame):,} site-months of {frame['site'].nunique()} sites"
            f"{f' ({dropped} left out: see the log)' if dropped else ''} -> {p['sites']}")
    if (p["model"] / "metrics.json").exists():
        say(f"train: {p['model']} exists, skipped")
    else:
        train.run(p["sites"], p["model"], config, progress=progress)
        evaluate.run(p["model"], p["model"], config, sites_path=p["sites"], progress=progress)
        test = read_json(p["model"] / "metrics.json", "model metrics")["model"]["test"]
        say(f"causal + train: {config.train.folds} folds x {config.train.seeds} seeds; test MAE "
            f"{test['mae']:.2f} {TER_UNITS}, R2 {test['r2']:.3f} -> {p['model']}")
    if (p["run"] / "ter.nc").exists():
        say(f"predict: {p['run'] / 'ter.nc'} exists, skipped")
    else:
        s = predict.run(p["model"], p["features"], p["run"], config, shap=config.predict.shap,
                            device=config.device, progress=progress)
        say(f"predict: {s['rows']:,} pixel-months x {s['members']} models in {s['seconds']:.1f} s"
            f"{' with SHAP' if config.predict.shap else ''} -> {s['out']}")
    if (p["analysis"] / "summary.json").exists():
        say(f"analyze: {p['analysis']} exists, skipped")
    else:
        s = analyze.run(p["run"], p["analysis"], config, sites=p["sites"], progress=progress)
        trend = s.get("trend", {})
        say(f"analyze: {s['budget']['mean_pg_c_yr']:.3f} Pg C/yr, trend "
            f"{trend.get('percent_per_step', float('nan')):+.2f} %/yr -> {p['analysis']}")
        done["analysis"] = s
    if p["report"].exists():
        say(f"report: {p['report']} exists, skipped")
    else:
        report.run(p["run"], p["report"], analysis_dir=p["analysis"], model_dir=p["model"])
        say(f"report: {p['report']}")
    done["paths"] = p
    return done
