"""The ``ciml-ter`` command line (typer + rich).

User mistakes (CimlTerError, missing or unreadable files) print one line ``error: ...`` on
stderr and exit with code 2; Ctrl-C prints one line and exits with 130 (outputs being written
are not kept: folders are built whole, files written atomically); ``--debug`` shows the
traceback instead.
"""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ciml_ter import __version__
from ciml_ter.errors import CimlTerError, Interrupted

if TYPE_CHECKING:
    from ciml_ter.stages import Summary

# rich_markup_mode=None: help texts are plain text ("[paths]" is a config section, not markup)
app = typer.Typer(name="ciml-ter", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Monthly terrestrial ecosystem respiration with causal XGBoost and SHAP.")
config_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Write, check and hash pipeline configs (TOML).")
app.add_typer(config_app, name="config")

INTERRUPTED = ("interrupted (Ctrl-C); no unfinished output was kept (predict and ingest resume on a rerun where "
               "they stopped)")
out = Console(highlight=False, soft_wrap=True)  # no wrapping of long paths in messages
err = Console(stderr=True, highlight=False)


@contextmanager
def _progress(title: str):
    """Progress of long work, as ``update(done, total, message)``: a rich bar on a terminal;
    elsewhere (batch logs) a plain line with the elapsed time at most every
    ``progress.plain_every_s()`` seconds (30 by default)."""
    from ciml_ter.progress import timed_lines

    if err.is_terminal:
        with Progress(TextColumn(f"{title} [{{task.completed}}/{{task.fields[of]}}]"), BarColumn(),
                      TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("starting", total=None, of="?")
            yield lambda done, total, message="": bar.update(task, completed=done, total=total, of=total,
                                                             description=message)
        return
    line = timed_lines(title, lambda text: err.print(text, markup=False, soft_wrap=True))
    yield lambda done, total, message="": line(f"{done}/{total} {message}")


def _load(config_path: Optional[Path]):
    from ciml_ter.config import PipelineConfig, load_config

    return load_config(config_path) if config_path else PipelineConfig()


CONFIG_OPTION = typer.Option(None, "--config", help="Pipeline config (TOML); defaults if omitted.")
DEVICE_HELP = "cpu, cuda or auto (default: the config's device, 'auto')."


def _runtime(config, progress=None, say=None):
    """The stages' runtime: the config's device (command-line ``--device`` already laid over it)
    resolved once, before any work ("cuda" without a usable GPU is a DeviceError), lines to the
    console, and ``progress``."""
    from ciml_ter.device import Device
    from ciml_ter.stages import Runtime

    return Runtime(Device.resolve(config.device), say or (lambda line: out.print(line, markup=False)), progress)


def _say(summary: Summary) -> None:
    """Print a stage summary's lines."""
    for line in summary.lines():
        out.print(line, markup=False)


def _with_options(config, **overrides):
    """The config with command-line values (dotted keys; None = not given), validated."""
    from ciml_ter.config import config_from_dict

    data = config.to_dict()
    for dotted, value in overrides.items():
        if value is not None:
            section, _, key = dotted.rpartition("__")
            (data[section] if section else data)[key] = value
    return config_from_dict(data, "command line")


def _print_metrics(metrics: dict) -> None:
    """A table of test metrics of the model and each baseline (a metrics.json document). A model
    without causal weights (trained so, or the causal guard dropped them in every fold, which the
    verdict's sentence says) is the plain XGBoost: one row, named so, not a second identical one."""
    from ciml_ter.evaluation import BASELINE_NAMES

    table = Table(title=f"test metrics on held-out sites ({metrics['units']})")
    for column in ("model", "MAE", "rMAE", "R2", "slope obs~est", "n"):
        table.add_column(column)
    causal = metrics["model"].get("causal")
    rows = [("causal XGBoost" if causal else "plain XGBoost", metrics["model"]["test"])]
    rows += [(BASELINE_NAMES.get(name, name), entry["test"]) for name, entry in metrics.get("baselines", {}).items()
             if "test" in entry and (causal or name != "xgboost_plain")]
    for name, m in rows:
        table.add_row(name, f"{m['mae']:.2f}", f"{m['rmae']:.3f}", f"{m['r2']:.3f}",
                      f"{m['slope_obs_on_est']:.3f}", str(m["n"]))
    out.print(table)


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
          version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print the version and exit.")):
    """ciml-ter: global TER mapping, tile by tile, on CPU, GPU, MPI and Slurm."""


def _info_table(info: dict) -> Table:
    table = Table(title=f"ciml-ter {info['ciml_ter']}", show_header=True)
    table.add_column("item")
    table.add_column("value")
    table.add_row("python", f"{info['python']} on {info['platform']}")
    table.add_row("host", info["host"])
    table.add_row("CPUs", f"{info['cpu']['usable']} usable of {info['cpu']['count']}")
    for name, gpu in info["gpu"].items():
        seen = ", ".join(gpu["devices"]) if gpu["devices"] else f"none ({gpu['reason']})"
        if gpu.get("simulator"):
            seen += " [CUDA simulator]"
        table.add_row(f"GPUs ({name})", seen)
    mpi = info["mpi"]
    table.add_row("MPI", f"{mpi['library']} via mpi4py {mpi['mpi4py']}, {mpi['ranks']} rank(s)"
                  if mpi["library"] else f"not available ({mpi['reason']})")
    slurm = info["slurm"]
    table.add_row("Slurm", (slurm["version"] or "sbatch found") if slurm["sbatch"] else "not found")
    if slurm["job_id"]:
        table.add_row("Slurm job", f"{slurm['job_id']} with {slurm['ntasks']} task(s)")
    for name, version in info["packages"].items():
        if version:
            table.add_row(name, version)
    return table


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
         mpi: bool = typer.Option(False, "--mpi", help="Initialise MPI; every rank reports, rank 0 "
                                  "gathers and prints.")):
    """Print versions, CPUs, GPUs (CuPy / numba-cuda), MPI library and ranks, Slurm presence."""
    from ciml_ter.stages.info import rank_report, system_info

    if mpi:
        report = rank_report()
        if not report:
            return  # not rank 0: rank 0 prints for everyone
        if report["rank_sum"] != report["rank_sum_expected"]:
            raise CimlTerError(f"MPI allreduce check failed: sum of ranks {report['rank_sum']}, "
                               f"expected {report['rank_sum_expected']}")
        if as_json:
            out.print_json(json.dumps(report))
            return
        table = Table(title=f"MPI: {report['size']} ranks ({report['library']})")
        for column in ("rank", "host", "pid", "local_rank", "gpu", "slurm_procid"):
            table.add_column(column)
        for entry in report["ranks"]:
            table.add_row(*(str(entry[c]) for c in ("rank", "host", "pid", "local_rank", "gpu",
                                                     "slurm_procid")))
        out.print(table)
        out.print(f"MPI ranks reporting: {report['size']}/{report['size']}; allreduce sum of ranks "
                  f"= {report['rank_sum']} (ok)")
        return
    data = system_info()
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        out.print(_info_table(data))


@config_app.command("show")
def config_show(path: Optional[Path] = typer.Argument(None, help="Config to show; defaults if omitted."),
                write: Optional[Path] = typer.Option(None, "--out", help="Write the TOML here.")):
    """Print a config with every default filled in (or write it with --out)."""
    from ciml_ter.config import PipelineConfig, load_config, save_config
    import tomli_w

    config = load_config(path) if path else PipelineConfig()
    if write:
        save_config(config, write)
        out.print(f"wrote {write} (hash {config.stable_hash()})")
    else:
        sys.stdout.write(tomli_w.dumps(config.to_dict()))


@config_app.command("check")
def config_check(path: Path = typer.Argument(..., help="TOML config file to validate.")):
    """Validate a config file and print its stable hash."""
    from ciml_ter.config import load_config

    config = load_config(path)
    out.print(f"{path}: valid; hash {config.stable_hash()}")


def _parse_years(text: str) -> tuple[int, int]:
    parts = text.split("-")
    try:
        first, last = int(parts[0]), int(parts[-1])
    except ValueError:
        raise CimlTerError(f"--years {text!r}: expected YEAR or FIRST-LAST, e.g. 2001-2003") from None
    if len(parts) > 2:
        raise CimlTerError(f"--years {text!r}: expected YEAR or FIRST-LAST, e.g. 2001-2003")
    return first, last


@app.command()
def synth(world: Path = typer.Option(..., "--out", help="Directory for cube.zarr, truth.nc, fluxnet/."),
          res: float = typer.Option(0.5, "--res", help="Resolution in degrees (0.05 to 1, dividing 1)."),
          years: str = typer.Option("2001-2003", "--years", help="Year range, e.g. 2001-2003."),
          months: Optional[str] = typer.Option(None, "--months", help="Month range instead of years, "
                                               "e.g. 2001-01:2001-03."),
          bbox: str = typer.Option("-180,-90,180,90", "--bbox", help="Window W,S,E,N in degrees."),
          n_sites: int = typer.Option(60, "--sites", help="Number of synthetic flux towers."),
          seed: int = typer.Option(0, "--seed", help="Random seed (same seed and device, same world)."),
          landcover: str = typer.Option("default", "--landcover", help="default: land and IGBP classes from "
                                        "MCD12C1 2019 (Earth's real biomes); climate: global-land-mask land and "
                                        "classes from the generator's climate zones."),
          device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " On cuda the rows "
                                               "are drawn on the GPU: other random numbers than on the CPU."),
          config_path: Optional[Path] = CONFIG_OPTION):
    """A synthetic world with known TER truth: input cube, truth and FLUXNET-format towers."""
    from ciml_ter.grid import parse_bbox
    from ciml_ter.stages.synth import synthesize

    config = _with_options(_load(config_path), device=device)
    with _progress("synth") as update:
        _say(synthesize(world, config, _runtime(config, update), res=res, years=_parse_years(years),
                        bbox=parse_bbox(bbox), n_sites=n_sites, seed=seed, months=months, landcover=landcover))


@app.command()
def ingest(paths: Optional[list[Path]] = typer.Argument(None, help="MODIS/VIIRS granules (standard names), CF "
                                                     "NetCDF/Zarr cubes, or folders of them (default: [paths] granules)."),
           cube_out: Optional[Path] = typer.Option(None, "--out", help="Input cube to write or extend, Zarr "
                                                   "(default: [paths] cube)."),
           res: Optional[float] = typer.Option(None, "--res", help="Cube resolution in degrees (default: "
                                               "[ingest] res, 0.05)."),
           bbox: Optional[str] = typer.Option(None, "--bbox", help="Window W,S,E,N in degrees (default: [grid] bbox, "
                                              "the globe)."),
           months: Optional[str] = typer.Option(None, "--months", help="Keep inputs dated YYYY-MM:YYYY-MM "
                                                "(default: [ingest] months, all)."),
           raster: Optional[list[str]] = typer.Option(None, "--raster", help="VAR=GLOB: a static layer (e.g. "
                                                      "soc30=soc_15-30cm.tif) or dated exports (nir='ee/nir_*.tif'); "
                                                      "repeatable (default: [ingest] rasters)."),
           landcover: Optional[str] = typer.Option(None, "--landcover", help="'default' (MCD12C1 2019, shipped with "
                                                   "ciml-ter), an MCD12C1 file, or 'none' (default: [ingest] landcover)."),
           min_valid: Optional[float] = typer.Option(None, "--min-valid-fraction", help="Share of a cell's "
                                                     "sub-pixels that must be valid (default: [ingest] min_valid_fraction, 0)."),
           device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
           config_path: Optional[Path] = CONFIG_OPTION):
    """Real satellite inputs into the input cube: MODIS/VIIRS granules binned to a lat/lon grid with
    QC applied, SoilGrids / Earth Engine rasters, land cover. A rerun skips dates already written;
    under mpirun/srun the granules are shared out over the ranks."""
    from ciml_ter.config import config_path as path_of
    from ciml_ter.grid import parse_bbox
    from ciml_ter.stages.ingest import ingest as stage

    config = _with_options(_load(config_path), ingest__res=res, ingest__months=months, ingest__rasters=raster or None,
                           ingest__landcover="" if landcover == "none" else landcover,
                           ingest__min_valid_fraction=min_valid, device=device,
                           grid__bbox=list(parse_bbox(bbox)) if bbox is not None else None)
    runtime = _runtime(config)
    inputs = list(paths) if paths else [Path(p) for p in config.paths.granules]
    if not inputs:
        raise CimlTerError("no inputs: give granule files or folders, or set [paths] granules in the config")
    summary = stage(inputs, path_of(config, "cube", cube_out, option="--out"), config, runtime)
    if summary is None:
        return  # a worker rank: rank 0 reports
    _say(summary)
    if not summary.ok:
        raise CimlTerError(f"{len(summary.bad)} granule(s) could not be read (the other inputs were ingested; "
                           f"their dates are not marked complete): "
                           + "; ".join(f"{Path(p).name}: {why}" for p, why in summary.bad))


@app.command()
def features(cube: Path = typer.Option(..., "--cube", help="Input cube (Zarr store or NetCDF) meeting "
                                       "the input contract."),
             features_out: Path = typer.Option(..., "--out", help="Monthly predictor cube to write (Zarr)."),
             res: Optional[float] = typer.Option(None, "--res", help="Output resolution in degrees: an "
                                                 "integer multiple of the input's (default: the input's)."),
             device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
             config_path: Optional[Path] = CONFIG_OPTION):
    """Build the monthly predictor cube: composites, NIRv/LSWI, SCVTG, static layers, resampling."""
    from ciml_ter.stages.features import make_features

    config = _with_options(_load(config_path), device=device)
    with _progress("features") as update:
        _say(make_features(cube, features_out, config, _runtime(config, update), res=res))


@app.command()
def causal(sites_table: Path = typer.Option(..., "--sites", help="Site-month table (Parquet)."),
           weights_out: Path = typer.Option(..., "--out", help="Causal weights to write (JSON)."),
           config_path: Optional[Path] = CONFIG_OPTION):
    """PCMCI+ causal feature weights (pooled and per PFT) from a site-month table."""
    from ciml_ter.stages.causal import discover

    config = _load(config_path)
    with _progress("causal") as update:
        _say(discover(sites_table, weights_out, config, _runtime(config, update)))


@app.command()
def train(sites_table: Path = typer.Option(..., "--sites", help="Site-month table (Parquet)."),
          model_dir: Path = typer.Option(..., "--out", help="Model directory to write."),
          weights: Optional[Path] = typer.Option(None, "--weights", help="Causal weights from "
                                                 "'ciml-ter causal' (default: run the causal step)."),
          no_causal: bool = typer.Option(False, "--no-causal", help="Plain XGBoost, no causal weights."),
          folds: Optional[int] = typer.Option(None, "--folds", help="Folds grouped by site (default 10)."),
          seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per fold (default 20)."),
          device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " With auto, "
                                               "tables below train.gpu_min_rows train on the CPU."),
          settings: Optional[Path] = typer.Option(None, "--settings", help="Settings from 'ciml-ter tune' "
                                                  "(its folds, predictors and each fold's settings)."),
          config_path: Optional[Path] = CONFIG_OPTION):
    """Train the ensemble (folds x seeds, grouped by site) and evaluate it against baselines."""
    from ciml_ter.stages.pipeline import train_and_evaluate

    if weights and no_causal:
        raise CimlTerError("--weights and --no-causal exclude each other: give one")
    if settings and folds is not None:
        raise CimlTerError("--settings and --folds exclude each other: the settings file fixes the folds")
    config = _with_options(_load(config_path), train__folds=folds, train__seeds=seeds,
                           device=device, train__causal=False if no_causal else None)
    with _progress("train") as update:  # with "auto", the table size chooses the training device
        summary = train_and_evaluate(sites_table, model_dir, config, _runtime(config, update), weights=weights,
                                     settings=settings)
    _print_metrics(summary.evaluation.document)
    _say(summary)


@app.command()
def tune(sites_table: Path = typer.Option(..., "--sites", help="Site-month table (Parquet)."),
         settings_out: Path = typer.Option(..., "--out", help="Settings file to write (TOML), for "
                                           "'ciml-ter train --settings'."),
         trials: int = typer.Option(30, "--trials", min=1, help="Optuna trials per outer fold."),
         folds: Optional[int] = typer.Option(None, "--folds", help="Outer folds grouped by site (default 10)."),
         no_causal: bool = typer.Option(False, "--no-causal", help="Search without causal weights."),
         device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
         config_path: Optional[Path] = CONFIG_OPTION):
    """Choose each outer fold's XGBoost and causal-weighting settings on its own training sites."""
    from ciml_ter.stages.tune import tune as stage

    config = _with_options(_load(config_path), train__folds=folds, train__causal=False if no_causal else None,
                           device=device)
    with _progress("tune") as update:
        _say(stage(sites_table, settings_out, config, _runtime(config, update), trials=trials))


@app.command()
def evaluate(model_dir: Path = typer.Option(..., "--model", help="Model directory from 'ciml-ter train'."),
             sites_table: Optional[Path] = typer.Option(None, "--sites", help="Site-month table "
                                                        "(default: the one the model was trained on)."),
             eval_out: Path = typer.Option(..., "--out", help="Directory for metrics, tables, figures."),
             temperature: Optional[str] = typer.Option(None, "--temperature", help="Temperature column "
                                                       "for Lloyd-Taylor/Q10 (default TA_F, lst_night, lst_day)."),
             config_path: Optional[Path] = CONFIG_OPTION):
    """Metrics of a trained model (test and overall, by site, PFT, latitude band) and baselines."""
    from ciml_ter.stages.evaluate import evaluate as stage

    config = _load(config_path)
    with _progress("evaluate") as update:  # the plain-XGBoost baseline trains on the config's device
        summary = stage(model_dir, eval_out, config, _runtime(config, update), sites=sites_table,
                        temperature=temperature)
    _print_metrics(summary.document)
    _say(summary)


@app.command()
def predict(model_dir: Optional[Path] = typer.Option(None, "--model", help="Model directory from "
                                                     "'ciml-ter train' (default: [paths] model)."),
            features_cube: Optional[Path] = typer.Option(None, "--features", help="Monthly predictor "
                                                         "cube, Zarr (default: [paths] features)."),
            run_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory: manifest, tiles, "
                                                   "ter.nc (default: [paths] run)."),
            shap: Optional[bool] = typer.Option(None, "--shap/--no-shap", help="Also write the ensemble "
                                                "SHAP value of every feature (default: [predict] shap)."),
            year: Optional[int] = typer.Option(None, "--year", help="Fills {year} in the config's paths "
                                               "(job arrays over years)."),
            device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " Each MPI rank "
                                                 "uses GPU local rank mod GPU count."),
            restart: bool = typer.Option(False, "--restart", help="Discard a run directory that holds "
                                         "another config/model/grid and start over."),
            config_path: Optional[Path] = CONFIG_OPTION):
    """Ensemble TER (mean, std across folds, SHAP) for every land pixel and month, tiled; under
    mpirun/srun rank 0 hands tiles out; a rerun resumes, skipping finished tiles."""
    from ciml_ter.config import config_path as path_of
    from ciml_ter.stages.predict import predict as stage

    config = _with_options(_load(config_path), device=device)
    paths = [path_of(config, name, given, year, option) for name, given, option in
             (("model", model_dir, "--model"), ("features", features_cube, "--features"), ("run", run_dir, "--out"))]
    shap = config.predict.shap if shap is None else shap
    with _progress("predict") as update:
        summary = stage(*paths, config, _runtime(config, update), shap=shap, restart=restart)
    if summary is not None:  # None on a worker rank: rank 0 reports
        _say(summary)


@app.command()
def analyze(run_dir: Path = typer.Option(..., "--run", help="Run directory from 'ciml-ter predict'."),
            analysis_out: Path = typer.Option(..., "--out", help="Directory for the analysis results."),
            compare: list[Path] = typer.Option([], "--compare", help="Another TER product (NetCDF, "
                                               "g C m-2 d-1 or month-1); repeatable."),
            region_mask: list[Path] = typer.Option([], "--region-mask", help="NetCDF with (lat, lon) "
                                                   "masks on the run's grid; repeatable."),
            sites_table: Optional[Path] = typer.Option(None, "--sites", help="Site-month table for "
                                                       "site-level errors of the run and products."),
            config_path: Optional[Path] = CONFIG_OPTION):
    """Budgets (Pg C/yr), trends (Mann-Kendall + Theil-Sen), SHAP driver shares, regions, and
    comparison with other products."""
    from ciml_ter.stages.analyze import analyze as stage

    config = _load(config_path)
    with _progress("analyze") as update:
        _say(stage(run_dir, analysis_out, config, _runtime(config, update), compare=compare,
                   region_masks=region_mask, sites=sites_table))


@app.command()
def report(run_dir: Path = typer.Option(..., "--run", help="Run directory from 'ciml-ter predict'."),
           analysis_dir: Optional[Path] = typer.Option(None, "--analysis", help="Output of 'ciml-ter analyze'."),
           model_dir: Optional[Path] = typer.Option(None, "--model", help="Model (or evaluate) directory "
                                                    "with metrics.json and figures."),
           html_out: Path = typer.Option(..., "--out", help="HTML file to write.")):
    """One self-contained HTML report: maps, budget series, drivers, model metrics."""
    from ciml_ter.config import PipelineConfig
    from ciml_ter.stages.report import report as stage

    config = PipelineConfig()
    _say(stage(run_dir, html_out, config, _runtime(config), analysis=analysis_dir, model=model_dir))


@app.command()
def sites(fluxnet: list[str] = typer.Option([], "--fluxnet", help="Folder (or file) of FLUXNET2015 / "
                                            "ONEFlux monthly CSVs with sites.csv beside them, or the word "
                                            "'sample' for the 20-site FLUXNET2015 sample shipped with "
                                            "ciml-ter; repeatable."),
          abcflux: list[Path] = typer.Option([], "--abcflux", help="ABCflux CSV; repeatable."),
          features_cube: Optional[Path] = typer.Option(None, "--features", help="Feature cube from "
                                                       "'ciml-ter features': predictors at each site's pixel."),
          window: int = typer.Option(1, "--window", help="1: nearest pixel; 3: median of the 3 x 3 pixels."),
          points: list[str] = typer.Option([], "--points", help="[PRODUCT=]PATH: point extracts at the towers "
                                           "(AppEEARS, ORNL/MODISTools subsets, Earth Engine exports with "
                                           "PRODUCT=, long CSV), files or folders; repeatable."),
          points_window: int = typer.Option(1, "--points-window", help="ORNL subsets: median of the good "
                                            "pixels of the central N x N (odd; 1 = the tower pixel)."),
          table: Path = typer.Option(..., "--out", help="Site-month table to write (Parquet)."),
          config_path: Optional[Path] = CONFIG_OPTION):
    """Build the site-month table (site, lat, lon, pft, time, ter + predictors) from flux data.

    With --features the predictors come from the cube at each site's pixel; with --points from
    point extracts at the towers through the same feature code ([features] of --config); without
    either they are each tower's own monthly meteorology plus latitude and month (site-only mode).
    """
    from ciml_ter.data.flux import fluxnet_folder
    from ciml_ter.stages.sites import build_sites

    config = _load(config_path)
    _say(build_sites(table, config, _runtime(config), fluxnet=[fluxnet_folder(f) for f in fluxnet], abcflux=abcflux,
                     features=features_cube, window=window, points=points, points_window=points_window))


@app.command()
def run(config_path: Path = typer.Argument(..., help="Pipeline config (TOML) with a [paths] section."),
        year: Optional[int] = typer.Option(None, "--year", help="Fills {year} in the config's paths."),
        restart: bool = typer.Option(False, "--restart", help="Redo the stages whose output was made with another "
                                     "config or from other inputs (refused without it).")):
    """The whole chain from the config's [paths]: features, sites, causal + train, predict,
    analyze, report; a stage whose output exists and records this config's hash and the same
    inputs is skipped (a rerun resumes); one made otherwise is refused, or redone with --restart."""
    from ciml_ter.config import load_config
    from ciml_ter.stages.pipeline import run_pipeline

    config = load_config(config_path)
    with _progress("run") as update:
        _say(run_pipeline(config, _runtime(config, update), year=year, restart=restart))


@app.command()
def demo(out_dir: Path = typer.Option(Path("demo-out"), "--out", help="Directory for demo outputs."),
         fluxnet: Optional[Path] = typer.Option(None, "--fluxnet", help="Real FLUXNET2015 monthly files "
                                                "(default: the 20-site FLUXNET2015 sample shipped with ciml-ter)."),
         quick: bool = typer.Option(False, "--quick", help="Six years instead of ten "
                                    "and 3 folds x 1 seed: the five-minute walk-through."),
         device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
         config_path: Optional[Path] = CONFIG_OPTION):
    """The whole engine on a small synthetic world with known truth (synth, features, sites,
    causal, train, predict with SHAP, analyze) plus real towers, ending with an HTML report."""
    from ciml_ter.stages.demo import demo as stage

    if fluxnet is not None and not fluxnet.is_dir():  # checked before minutes of work
        raise CimlTerError(f"--fluxnet {fluxnet}: expected a folder of FLUXNET2015 / ONEFlux monthly CSVs, "
                           f"found {'a file' if fluxnet.exists() else 'nothing'}")

    config = _with_options(_load(config_path), device=device)
    with _progress("demo") as update:
        _say(stage(out_dir, config, _runtime(config, update), fluxnet=fluxnet, quick=quick))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ciml-ter`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        app(args=argv, prog_name="ciml-ter")  # typer handles usage errors itself (exit 2)
    except (CimlTerError, OSError) as exc:
        if debug:
            raise
        message = str(exc) if isinstance(exc, CimlTerError) else _os_error_line(exc)
        err.print(f"error: {message}", markup=False, soft_wrap=True)
        _abort_mpi_job(2)
        sys.exit(2)
    except Interrupted:
        if debug:
            raise
        err.print(f"error: {INTERRUPTED}", markup=False, soft_wrap=True)
        _abort_mpi_job(130)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt(signum, frame) -> None:
    """Ctrl-C: raised as ``errors.Interrupted`` past typer up to ``main``; on its way out every
    output being built is removed."""
    raise Interrupted()


def _abort_mpi_job(code: int) -> None:
    """Under MPI, end every rank (workers may be waiting for tiles that will never come)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized() and mpi.COMM_WORLD.Get_size() > 1:
        sys.stderr.flush()
        mpi.COMM_WORLD.Abort(code)


def _os_error_line(exc: OSError) -> str:
    """One line for a file-system error: the file, then what went wrong."""
    reason = exc.strerror or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else f"{reason}: {exc}"
