"""``ciml-ter run CONFIG.toml``: the chain features -> sites -> causal/train -> predict ->
analyze -> report, with every input and output path taken from the config's [paths].

A stage whose output already exists is skipped (and said so), so a rerun resumes; predict
resumes inside its run directory tile by tile.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ciml_ter.config import PipelineConfig, config_path
from ciml_ter.errors import ConfigError

def run_pipeline(config: PipelineConfig, say: Callable[[str], None], progress=None,
                 year: int | None = None) -> dict:
    """Run every stage whose output is missing; ``say`` gets one line per stage."""
    from ciml_ter.parallel import under_mpi

    if under_mpi():
        raise ConfigError("'ciml-ter run' chains stages on one process; under mpirun/srun use "
                          "'ciml-ter predict' (jobs/global_run.sh does)")
    p = {name: config_path(config, name, year=year) for name in
         ("features", "sites", "model", "run", "analysis", "report")}
    done: dict = {}
    if p["features"].exists():
        say(f"features: {p['features']} exists, skipped")
    else:
        from ciml_ter.features import build_features

        s = build_features(config_path(config, "cube", year=year), p["features"], res=config.grid.res,
                           config=config.features, device=config.device, progress=progress)
        say(f"features: {len(s['features'])} features x {s['months']} months on {s['grid'][0]} x "
            f"{s['grid'][1]} -> {p['features']}")
    if p["sites"].exists():
        say(f"sites: {p['sites']} exists, skipped")
    else:
        from ciml_ter.sites import build_site_table, write_site_table

        if not config.paths.fluxnet:
            raise ConfigError("no flux data: set [paths] fluxnet = [\"DIR\", ...] in the config")
        frame, report = build_site_table([Path(d) for d in config.paths.fluxnet], features=p["features"])
        write_site_table(frame, p["sites"], mode=report.mode)
        dropped = sum(len(v) for v in report.dropped_sites.values())
        say(f"sites: {len(frame):,} site-months of {frame['site'].nunique()} sites"
            f"{f' ({dropped} left out: see the log)' if dropped else ''} -> {p['sites']}")
    if (p["model"] / "metrics.json").exists():
        say(f"train: {p['model']} exists, skipped")
    else:
        import json

        from ciml_ter.model import train_command

        train_command(p["sites"], p["model"], config, progress=progress)
        test = json.loads((p["model"] / "metrics.json").read_text())["model"]["test"]
        say(f"causal + train: {config.train.folds} folds x {config.train.seeds} seeds; test MAE "
            f"{test['mae']:.2f} g C m-2 month-1, R2 {test['r2']:.3f} -> {p['model']}")
    if (p["run"] / "ter.nc").exists():
        say(f"predict: {p['run'] / 'ter.nc'} exists, skipped")
    else:
        from ciml_ter.predict import predict_command

        s = predict_command(p["model"], p["features"], p["run"], config, shap=config.predict.shap,
                            device=config.device, progress=progress)
        say(f"predict: {s['rows']:,} pixel-months x {s['members']} models in {s['seconds']:.1f} s"
            f"{' with SHAP' if config.predict.shap else ''} -> {s['out']}")
    if (p["analysis"] / "summary.json").exists():
        say(f"analyze: {p['analysis']} exists, skipped")
    else:
        from ciml_ter.analyze import analyze_command

        s = analyze_command(p["run"], p["analysis"], config, sites=p["sites"], progress=progress)
        trend = s.get("trend", {})
        say(f"analyze: {s['budget']['mean_pg_c_yr']:.3f} Pg C/yr, trend "
            f"{trend.get('percent_per_step', float('nan')):+.2f} %/yr -> {p['analysis']}")
        done["analysis"] = s
    if p["report"].exists():
        say(f"report: {p['report']} exists, skipped")
    else:
        from ciml_ter.report import report_command

        report_command(p["run"], p["report"], analysis_dir=p["analysis"], model_dir=p["model"])
        say(f"report: {p['report']}")
    done["paths"] = p
    return done
