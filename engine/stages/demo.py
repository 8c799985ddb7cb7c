"""``ciml-ter demo``: the whole engine on a small synthetic world whose truth is known, plus
training on real FLUXNET towers (site-only mode), ending with one HTML report."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.causal import parent_scores, read_weights
from ciml_ter.config import PipelineConfig, config_from_dict, save_config
from ciml_ter.data.flux import SHIPPED_SAMPLE
from ciml_ter.documents import read_json
from ciml_ter.data.synth import read_truth, write_synthetic_world
from ciml_ter.evaluation import BASELINE_NAMES, against_truth, metrics
from ciml_ter.files import atomic_write, check_output
from ciml_ter.gridstats import sample_sites, series_trend
from ciml_ter.progress import duration
from ciml_ter.stages import Runtime
from ciml_ter.stages.pipeline import run_pipeline, train_and_evaluate
from ciml_ter.stages.report import report
from ciml_ter.stages.sites import build_sites
from ciml_ter.tiles import RunDir
from ciml_ter.units import TER_UNITS

# A European window at 1 degree, ten years: small enough for 2 cores, long enough for trends.
# Its classes follow the generator's climate zones ("climate"), not the real MCD12C1 biomes that
# `ciml-ter synth` uses by default (see README "The demo").
WORLD = {"res": 1.0, "years": (2001, 2010), "bbox": (-10.0, 35.0, 30.0, 60.0), "n_sites": 100, "seed": 0,
         "landcover": "climate"}
# Sized for 2 cores: pooled causal weights only (per-PFT PCMCI+ runs would double the causal
# step), 300 fixed rounds at learning rate 0.1 (no rounds search, so no causal guard), and no
# climatology or antecedent columns (they would triple the predictors SHAP explains; the truth has
# no use for them).
SETTINGS = {"train": {"folds": 5, "seeds": 2}, "causal": {"weights": "pooled"},
            "xgboost": {"learning_rate": 0.1, "early_stopping_rounds": 0, "num_boost_round": 300},
            "predictors": {"climatology": False, "antecedent": []},
            "predict": {"tile_size": 16, "shap": True}, "grid": {"res": 1.0, "years": [2001, 2010]}}
# ``--quick`` (the five-minute walk-through; the test suite runs it): the same window and towers
# over six years (on fewer towers PCMCI+ takes the decoy lst_day for a parent), 3 folds x 1 seed.
QUICK_WORLD = {**WORLD, "years": (2001, 2006)}
QUICK_SETTINGS = {**SETTINGS, "train": {"folds": 3, "seeds": 1}, "grid": {"res": 1.0, "years": [2001, 2006]}}
STAGES = 10  # synth, the pipeline's six (features ... report), truth, real towers, report


def truth_comparison(world: Path, synthetic: Path) -> dict:
    """The synthetic world's truth against the engine's estimates: global budget and trend, the
    TER map, held-out sites (causal and plain models), the coverage of the true TER by the
    prediction intervals (the map's; at the towers the nested true-flux intervals of
    predictions.csv), and the drivers and parents found."""
    truth = read_truth(world / "truth.nc")
    ter, lat, lon, months = truth.ter, truth.lat, truth.lon, truth.months
    parents, decoys = truth.parents, truth.decoys
    run = RunDir(synthetic / "run").read_output()
    estimate = run.ter
    summary = read_json(synthetic / "analysis" / "summary.json", "summary.json of `ciml-ter analyze`")
    found = against_truth(ter, estimate, lat, lon, months.year.to_numpy())
    years, true_budget, map_fit = found["years"], found["true_budget"], found["fit"]
    true_trend = series_trend(true_budget)
    est_budget = np.asarray(summary["budget"]["pg_c_yr"])
    ranked = summary.get("drivers", {}).get("top_features", [])

    rows = pd.read_csv(synthetic / "model" / "predictions.csv", parse_dates=["time"])
    truth_at_sites = sample_sites(rows, months, lat, lon, ter)
    causal = {"observed": metrics(rows.ter_obs, rows.ter_test), "truth": metrics(truth_at_sites, rows.ter_test)}
    plain = {"observed": metrics(rows.ter_obs, rows.xgboost_plain_test),
             "truth": metrics(truth_at_sites, rows.xgboost_plain_test)}
    intervals = {}
    for name, (lower, upper) in run.intervals.items():  # the true-flux intervals, on the map and at the towers
        cells = np.isfinite(ter) & np.isfinite(lower)
        at_towers = [f"ter_flux_{side}_{name}" for side in ("lower", "upper")]
        towers = rows[at_towers].notna().all(axis=1).to_numpy() & np.isfinite(truth_at_sites)
        intervals[name] = {
            "map_coverage": float(((ter >= lower) & (ter <= upper))[cells].mean()),
            "map_median_width": float(np.median((upper - lower)[cells])),
            "towers_coverage": float(((truth_at_sites >= rows[at_towers[0]]) & (truth_at_sites <= rows[at_towers[1]])
                                      ).to_numpy()[towers].mean()),
            "n_cell_months": int(cells.sum()), "n_tower_months": int(towers.sum())}
    weights = read_weights(synthetic / "model" / "weights.json")["pooled"]
    decoy_weight = max(weights["weights"][d] for d in decoys)
    return {
        "years": years.tolist(), "true_pg_c_yr": true_budget.tolist(), "estimated_pg_c_yr": est_budget.tolist(),
        "budget_error_percent": float(100 * (est_budget.mean() - true_budget.mean()) / true_budget.mean()),
        "true_trend_percent_per_yr": true_trend["percent_per_step"],
        "estimated_trend_percent_per_yr": summary.get("trend", {}).get("percent_per_step", float("nan")),
        "map_r2_vs_truth": map_fit["r2"],
        "map_mae_vs_truth": map_fit["mae"],
        "sites_test_r2": {"causal_vs_observed": causal["observed"]["r2"], "causal_vs_truth": causal["truth"]["r2"],
                          "plain_vs_observed": plain["observed"]["r2"], "plain_vs_truth": plain["truth"]["r2"],
                          "n": int(len(rows))},
        "sites_test_mae": {"causal": causal["observed"]["mae"], "plain": plain["observed"]["mae"]},
        "intervals_vs_truth": intervals,
        "true_parents": parents, "decoys": decoys, "top_drivers": ranked,
        "parents_in_top": [p for p in ranked[:len(parents)] if p in parents],
        "discovered_parents": weights["parents"], **parent_scores(weights["parents"], parents),
        "parents_outweigh_decoys": all(weights["weights"][p] > decoy_weight for p in parents),
    }


def _truth_table(truth: dict) -> dict:
    """The synthetic world's truth against the estimates, as the report's table (text cells with
    the digits that matter; units in the quantity's name)."""
    t, s = truth, truth["sites_test_r2"]
    rows = [
        {"quantity": "mean annual TER (Pg C yr-1)", "truth": f"{np.mean(t['true_pg_c_yr']):.3f}",
         "estimate": f"{np.mean(t['estimated_pg_c_yr']):.3f} ({t['budget_error_percent']:+.1f} %)"},
        {"quantity": "trend of annual TER (% yr-1)", "truth": f"{t['true_trend_percent_per_yr']:+.2f}",
         "estimate": f"{t['estimated_trend_percent_per_yr']:+.2f}"},
        {"quantity": f"TER map vs truth, all land cell-months: R² (MAE, {TER_UNITS})", "truth": "1",
         "estimate": f"{t['map_r2_vs_truth']:.3f} ({t['map_mae_vs_truth']:.2f})"},
        {"quantity": f"held-out sites ({s['n']} site-months): R² of the causal XGBoost vs truth (vs observed)",
         "truth": "1", "estimate": f"{s['causal_vs_truth']:.3f} ({s['causal_vs_observed']:.3f})"},
        {"quantity": f"held-out sites ({s['n']} site-months): R² of the plain XGBoost vs truth (vs observed)",
         "truth": "1", "estimate": f"{s['plain_vs_truth']:.3f} ({s['plain_vs_observed']:.3f})"},
        *({"quantity": f"{name} % intervals: share of the true TER inside, held-out tower-months (map cell-months)",
           "truth": f"{name} %", "estimate": f"{100 * i['towers_coverage']:.1f} % ({100 * i['map_coverage']:.1f} %)"}
          for name, i in t.get("intervals_vs_truth", {}).items()),
        {"quantity": "PCMCI+ parents of TER (precision / recall)", "truth": ", ".join(t["true_parents"]),
         "estimate": f"{', '.join(t['discovered_parents'])} ({t['precision']:.2f} / {t['recall']:.2f})"},
        {"quantity": f"true parents among the top {len(t['true_parents'])} SHAP drivers",
         "truth": str(len(t["true_parents"])), "estimate": f"{len(t['parents_in_top'])} ({', '.join(t['parents_in_top'])})"},
    ]
    return {"rows": rows, "section": "Synthetic world: truth vs estimate",
            "caption": "The engine's estimates against the synthetic world's known truth. R² against the truth "
                       "measures how well the true TER is recovered; against the noisy tower observations it "
                       "is lower by the noise the generator added."}


@dataclass
class DemoSummary:
    """The demo's report and its comparison with the synthetic world's truth."""

    report: Path
    truth: dict
    seconds: float

    def lines(self) -> list[str]:
        return [f"demo finished in {duration(self.seconds)}; open {self.report.resolve()}"]


def demo(out: Path, config: PipelineConfig, runtime: Runtime, *, fluxnet: Path | None = None,
         quick: bool = False) -> DemoSummary:
    """Run the demo, writing under the folder ``out``; ``runtime.say`` gets one line per stage as
    it ends. ``fluxnet``: the real towers' folder (default: the sample shipped with the package).
    The demo's own settings (``SETTINGS``, or ``QUICK_SETTINGS`` on the smaller ``QUICK_WORLD``
    with ``quick``) are laid over ``config``'s device and workers."""
    world_spec, settings = (QUICK_WORLD, QUICK_SETTINGS) if quick else (WORLD, SETTINGS)
    start = last = time.perf_counter()
    done = 0

    def stage(line: str) -> None:
        nonlocal done, last
        done += 1
        now = time.perf_counter()
        runtime.say(f"[{done}/{STAGES}] {line} (stage {duration(now - last)}, total {duration(now - start)})")
        last = now

    out_dir = check_output(out, "folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    world = out_dir / "world"
    if (world / "cube.zarr").exists():
        stage(f"synth: {world} exists, reused")
    else:
        s = write_synthetic_world(world, progress=runtime.progress, **world_spec)
        stage(f"synth: {s['grid'][0]} x {s['grid'][1]} cells at {world_spec['res']} deg, {s['land_pixels']} land, "
              f"{s['days']} days, {s['sites']} towers; truth parents {', '.join(s['parents'])}, decoys "
              f"{', '.join(s['decoys'])}")
    w = out_dir / "synthetic"
    config = config_from_dict({**settings, "device": config.device, "train": {**settings["train"], "workers":
                                                                             config.train.workers},
                               "paths": {
        "cube": str(world / "cube.zarr"), "fluxnet": [str(world / "fluxnet")],
        "features": str(w / "features.zarr"), "sites": str(w / "sites.parquet"), "model": str(w / "model"),
        "run": str(w / "run"), "analysis": str(w / "analysis"), "report": str(w / "report-synthetic.html")}})
    save_config(config, out_dir / "config.toml")
    run_pipeline(config, Runtime(runtime.device, stage, runtime.progress))
    truth = truth_comparison(world, w)
    atomic_write(out_dir / "truth_vs_estimate.json", json.dumps(truth, indent=1))
    stage(f"truth vs estimate: budget error {truth['budget_error_percent']:+.1f} %, trend "
          f"{truth['estimated_trend_percent_per_yr']:+.2f} %/yr (true {truth['true_trend_percent_per_yr']:+.2f}), "
          f"map R2 {truth['map_r2_vs_truth']:.3f}; "
          + "".join(f"{k} % intervals hold the true TER at {100 * i['towers_coverage']:.1f} % of held-out tower-months, "
                    f"{100 * i['map_coverage']:.1f} % of map cell-months; " for k, i in truth["intervals_vs_truth"].items())
          + f"PCMCI+ parents {', '.join(truth['discovered_parents'])} (true {', '.join(truth['true_parents'])})")
    fluxnet_dir = Path(fluxnet or SHIPPED_SAMPLE)
    real = _real_towers(out_dir / "fluxnet_real", fluxnet_dir, config, runtime)
    stage(f"real towers: {real['line']}")
    tables = {"truth vs estimate (synthetic world)": _truth_table(truth)}
    towers = ({"model_dir": real["model_dir"], "where": "the real FLUXNET towers",
               "caption": f"Held-out (test) metrics at the real FLUXNET towers ({fluxnet_dir.name}, site-only "
                          "predictors)"} if "model_dir" in real else {"skipped": real["skipped"]})
    html = report(w / "run", out_dir / "report.html", config, runtime, analysis=w / "analysis", model=w / "model",
                  extra_tables=tables, truth=world / "truth.nc",
                  evaluations={"Real FLUXNET towers (site-only predictors)": towers}).out
    stage(f"report: {html.resolve()}")
    return DemoSummary(html, truth, time.perf_counter() - start)


def _real_towers(out: Path, fluxnet: Path, config, runtime: Runtime) -> dict:
    """Site-only training on real FLUXNET files, if the folder exists."""
    if not fluxnet.is_dir():
        reason = (f"no FLUXNET folder at {fluxnet}; give `ciml-ter demo --fluxnet DIR` with FLUXNET2015 "
                  "SUBSET_MM files to train and test the models on real towers")
        return {"line": f"skipped: no FLUXNET folder at {fluxnet} (give --fluxnet DIR)", "skipped": reason}
    if not (out / "model" / "metrics.json").exists():
        build_sites(out / "sites.parquet", config, runtime, fluxnet=[fluxnet])
        train_and_evaluate(out / "sites.parquet", out / "model", config, runtime)
    scores = read_json(out / "model" / "metrics.json", "metrics.json of `ciml-ter evaluate`")
    rows = [{"model": "causal XGBoost", **scores["model"]["test"]}]
    rows += [{"model": BASELINE_NAMES.get(name, name), **entry["test"]} for name, entry in scores["baselines"].items()
             if "test" in entry]
    mae = {r["model"]: r["mae"] for r in rows}
    return {"model_dir": out / "model", "line": f"{rows[0]['n']} site-months from {fluxnet.name}; test MAE "
            + ", ".join(f"{k} {v:.1f}" for k, v in mae.items()) + f" {TER_UNITS}"}
