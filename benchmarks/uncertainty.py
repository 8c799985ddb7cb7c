"""Do the prediction intervals hold their coverage? Towers, towers never seen, the synthetic truth.

    python -m benchmarks.uncertainty [--sites S.parquet] [--model M] [--seeds 2] [--holdout 0.2]
                                     [--demo D] [--quick] [--out DIR]

1. Towers (``--sites``, default the shipped sample in site-only mode; ``--model`` a model trained
   on it, else one is trained with ``--seeds``): the nested evaluation ``evaluate`` writes, i.e.
   each fold's towers get the quantiles of the other folds' towers. Coverage and widths of the
   conformal interval, the pooled non-normalised conformal interval and the ensemble-spread
   interval ŷ ± zσ̂, overall, per PFT, per latitude band and per site; the conformal interval
   also with the scale σ̂ + s0 alone (``[uncertainty] site_bias = false``, ``without_site_bias``).
2. Towers never seen (``--holdout`` share of the sites, drawn with the config's seed): a second
   model trained without them; their intervals are the map's (the spread across all fold means,
   the calibration of every training tower).
3. The synthetic world (``--demo D``, a folder of ``ciml-ter demo [--quick]``): the towers as in 1,
   scored against the noisy tower values and against the true TER at the tower cells, and the
   map's intervals (``D/synthetic/run/ter.nc``) against the true TER of every land cell-month and
   against simulated tower values there (the truth with the generator's tower noise,
   ``data.synth.TOWER_NOISE``); the spread of the map's coverage over calibrations on towers drawn
   with replacement (``map_bootstrap``). The map's intervals are for the true TER (the towers' random
   error removed); at the towers both are scored: ``conformal`` against the tower values,
   ``conformal_flux`` against the truth.

Goals (issue 28): 90 % coverage within 88-92 % overall and within 5 points in every PFT with at
least 5 sites, and a median width at most 1.3 times that of the pooled non-normalised interval.
Writes benchmarks/results/uncertainty-<name>-<date>.json.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import numpy as np

from benchmarks.common import RESULTS, environment, smoke_rounds, write_result
from ciml_ter.config import PipelineConfig
from ciml_ter.device import CPU
from ciml_ter.ensemble import load_ensemble
from ciml_ter.sitetable import read_site_table, write_site_table
from ciml_ter.stages import Runtime
from ciml_ter.stages.train import train
from ciml_ter.config import UncertaintyConfig
from ciml_ter.uncertainty import (METHODS, HeldOut, conformal_quantile, coverage, level_name, nested_intervals,
                                  tower_intervals)

GOAL_BAND = (0.88, 0.92)  # coverage of the 90 % interval overall
GOAL_PFT_POINTS, GOAL_PFT_SITES = 0.05, 5  # within 5 points in every PFT with at least 5 sites
GOAL_WIDTH_RATIO = 1.3  # median width over the pooled non-normalised interval's


def subset(h: HeldOut, rows: np.ndarray) -> HeldOut:
    """The rows ``rows`` (bool) of ``h``."""
    return HeldOut(**{k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in h.__dict__.items()})


def summary(found: dict, level: str = "90") -> dict:
    """Per method: coverage and widths overall, per PFT, per latitude band, the site distribution."""
    return {method: {key: found[method][level][key] for key in ("overall", "by_pft", "by_lat_band", "site_distribution")}
            for method in METHODS}


def goals(found: dict, method: str = "conformal") -> dict:
    """The issue's goals on one coverage document (level 90) for ``method`` (``conformal`` against
    tower values, ``conformal_flux`` against the true TER)."""
    conformal, pooled = found[method]["90"], found["conformal_pooled_absolute"]["90"]
    overall = conformal["overall"]["coverage"]
    pfts = {p: e["coverage"] for p, e in conformal["by_pft"].items() if e["n_sites"] >= GOAL_PFT_SITES}
    ratio = conformal["overall"]["median_width"] / pooled["overall"]["median_width"]
    return {"coverage_90": overall, "coverage_in_band": GOAL_BAND[0] <= overall <= GOAL_BAND[1],
            "pfts_with_5_sites": pfts, "pfts_within_5_points": {p: abs(c - 0.9) <= GOAL_PFT_POINTS
                                                                for p, c in pfts.items()},
            "median_width_ratio_to_pooled": ratio, "width_ratio_met": ratio <= GOAL_WIDTH_RATIO}


def without_site_bias(found, config: PipelineConfig) -> tuple[dict, dict]:
    """The nested evaluation of ``found`` (``tower_intervals``) with ``[uncertainty] site_bias =
    false``, the scale σ̂ + s0 alone, on the same held-out rows and PFT groups: (the coverage
    document, the intervals)."""
    u = config.uncertainty
    intervals = nested_intervals(found.held, u.levels, u.min_group_sites, u.offset_share, set(found.calibration.groups),
                                 site_bias=False)
    return coverage(found.held, intervals, config.analysis.high_latitude)[0], intervals


def train_model(sites: Path, out: Path, config: PipelineConfig) -> Path:
    """``ciml-ter train``'s model (without its evaluation) of ``sites`` into ``out``."""
    train(sites, out, config, Runtime(CPU))
    return out


def towers(model: Path, sites: Path, config: PipelineConfig):
    """The nested evaluation of ``model`` on ``sites`` (``uncertainty.tower_intervals``)."""
    return tower_intervals(load_ensemble(model), read_site_table(sites), config)


def never_seen(sites: Path, share: float, work: Path, config: PipelineConfig) -> dict:
    """Coverage at a random ``share`` of the sites left out of training, with the map's intervals."""
    table = read_site_table(sites)
    names = np.array(sorted(set(table.sites)))
    held = set(np.random.default_rng(config.seed).choice(names, size=max(1, round(share * len(names))),
                                                         replace=False))
    rows = table.frame["site"].isin(held).to_numpy()
    write_site_table(table.frame[~rows], work / "train.parquet", predictors=table.features)
    model = train_model(work / "train.parquet", work / "model_holdout", config)
    found = towers(model, sites, config)
    unseen = found.held.folds < 0
    document, _ = coverage(subset(found.held, unseen), {k: tuple(b[unseen] for b in v)
                                                         for k, v in found.intervals.items()},
                           config.analysis.high_latitude)
    spread = found.held.spread
    return {"sites": sorted(held), "n_sites": len(held), "n_rows": int(unseen.sum()),
            "spread_median": {"training_towers_held_out": float(np.nanmedian(spread[~unseen])),
                              "never_seen": float(np.nanmedian(spread[unseen]))}, **summary(document)}


def map_cells(synthetic: Path, run, true: np.ndarray) -> dict[str, np.ndarray]:
    """The map's land cell-months with an estimate and a truth: ŷ, σ̂, PFT (the features cube's,
    as ``predict`` reads it) and the true TER."""
    from ciml_ter.data.cube import open_cube
    from ciml_ter.predictors import igbp_labels

    cube = open_cube(synthetic / "features.zarr")
    land = np.asarray(cube.land.values).astype(bool)
    labels = np.tile(igbp_labels(np.asarray(cube.pft.values)[land], dict(cube.pft.attrs)), len(run.months))
    estimate, spread, truth = (a[:, land].reshape(-1) for a in (run.ter, run.ter_std, true))
    ok = np.isfinite(truth) & np.isfinite(estimate)
    return {"estimate": estimate[ok], "spread": spread[ok], "groups": labels[ok], "truth": truth[ok]}


def map_coverage(held: HeldOut, rows: np.ndarray, sites: np.ndarray, cells: dict, u: UncertaintyConfig,
                 level: float = 0.9) -> tuple[float, float]:
    """(coverage of the true TER, median width) of the map's true-flux intervals at ``level`` when
    calibrated on the tower ``rows`` of ``held`` (``sites``: their site names) under ``u``."""
    from ciml_ter.uncertainty import calibrate

    c = calibrate(held.obs[rows], held.estimate[rows], held.spread[rows], held.noise[rows], sites, held.groups[rows],
                  [level], u.min_group_sites, u.offset_share, site_bias=u.site_bias)
    lower, upper = c.interval(level, cells["estimate"], cells["spread"], cells["groups"], "flux")
    return float(np.mean((cells["truth"] >= lower) & (cells["truth"] <= upper))), float(np.median(upper - lower))


def map_bootstrap(held: HeldOut, cells: dict, config: PipelineConfig, draws: int = 200, level: float = 0.9) -> dict:
    """The map's coverage of the true TER when the calibration is redone on towers drawn with
    replacement (whole sites; one drawn twice counts as two), ``draws`` times: how closely the
    calibration towers pin the map's coverage down."""
    known = held.folds >= 0
    rows_of = {s: np.flatnonzero(known & (held.sites == s)) for s in np.unique(held.sites[known])}
    rng = np.random.default_rng(config.seed)
    found = []
    for _ in range(draws):
        drawn = rng.choice(list(rows_of), len(rows_of), replace=True)
        rows = np.concatenate([rows_of[s] for s in drawn])
        names = np.concatenate([np.full(rows_of[s].size, f"{s}#{k}") for k, s in enumerate(drawn)])
        found.append(map_coverage(held, rows, names, cells, config.uncertainty, level)[0])
    q05, median, q95 = np.quantile(found, [0.05, 0.5, 0.95])
    return {"level": level_name(level), "draws": draws, "median": float(median), "q05": float(q05),
            "q95": float(q95), "sd": float(np.std(found))}


def synthetic_world(demo: Path, config: PipelineConfig) -> dict:
    """The demo's synthetic world: towers against their noisy values and the truth, and the map's
    intervals against the true TER of every land cell-month."""
    from ciml_ter.data.synth import TOWER_NOISE, read_truth
    from ciml_ter.gridstats import sample_sites
    from ciml_ter.tiles import RunDir

    world, synthetic = demo / "world", demo / "synthetic"
    truth = read_truth(world / "truth.nc")
    found = towers(synthetic / "model", synthetic / "sites.parquet", config)
    frame = read_site_table(synthetic / "sites.parquet").frame
    at_towers = sample_sites(frame, truth.months, truth.lat, truth.lon, truth.ter)
    against_truth, _ = coverage(replace(found.held, obs=at_towers), found.intervals, config.analysis.high_latitude)
    run = RunDir(synthetic / "run").read_output()
    months = run.months.strftime("%Y-%m").tolist()
    true = truth.ter[[truth.months.strftime("%Y-%m").tolist().index(m) for m in months]]
    known = found.held.folds >= 0
    residual = np.abs(found.held.obs - found.held.estimate)[known]
    cells = np.isfinite(true) & np.isfinite(run.ter)
    flagged = run.extrapolation == 1
    simulated = true * (1 + TOWER_NOISE * np.random.default_rng(config.seed).standard_normal(true.shape))
    the_map = {"cell_months": int(cells.sum()), "extrapolated_share": float(flagged[cells].mean()),
               "spread_median": {"towers_held_out": float(np.median(found.held.spread[known])),
                                 "map": float(np.median(run.ter_std[cells]))}}
    for name, (lower, upper) in run.intervals.items():
        level = int(name) / 100
        z, q = NormalDist().inv_cdf((1 + level) / 2), conformal_quantile(residual, level)
        methods = {"conformal": (lower, upper), "conformal_pooled_absolute": (run.ter - q, run.ter + q),
                   "ensemble_spread": (run.ter - z * run.ter_std, run.ter + z * run.ter_std)}
        the_map[name] = {}
        for method, (lo, hi) in methods.items():
            inside = (true >= lo) & (true <= hi)
            observed = (simulated >= lo) & (simulated <= hi)
            width = hi - lo
            the_map[name][method] = {
                part: {"coverage_of_truth": float(inside[sel].mean()),
                       "coverage_of_simulated_towers": float(observed[sel].mean()),
                       "median_width": float(np.median(width[sel])), "mean_width": float(width[sel].mean()),
                       "n": int(sel.sum())}
                for part, sel in (("all", cells), ("inside_range", cells & ~flagged), ("extrapolated", cells & flagged))
                if sel.any()}
    cells = map_cells(synthetic, run, true)
    the_map["bootstrap_over_towers"] = map_bootstrap(found.held, cells, config)
    _, plain_intervals = without_site_bias(found, config)
    plain_truth, _ = coverage(replace(found.held, obs=at_towers), plain_intervals, config.analysis.high_latitude)
    coverage_90, width_90 = map_coverage(found.held, known, found.held.sites[known], cells,
                                         replace(config.uncertainty, site_bias=False))
    the_map["without_site_bias"] = {"coverage_of_truth": coverage_90, "median_width": width_90}
    return {"towers_vs_observed": summary(found.document), "towers_vs_truth": summary(against_truth),
            "map_vs_truth": the_map, "goals": goals(found.document),
            "goals_true_flux": goals(against_truth, "conformal_flux"),
            "goals_true_flux_without_site_bias": goals(plain_truth, "conformal_flux")}


def _row(label: str, entry: dict, spread: dict | None) -> str:
    cells = [label, str(entry["n_sites"]), f"{100 * entry['coverage']:.1f}", f"{entry['median_width']:.1f}",
             f"{100 * spread['coverage']:.1f}" if spread else ""]
    return "| " + " | ".join(cells) + " |"


def markdown(part: dict, min_sites: int = GOAL_PFT_SITES) -> str:
    """The README's table of one part of a result (towers or never seen): coverage (%) and median
    width (g C m-2 month-1) of the 90 % conformal interval overall, per PFT with at least
    ``min_sites`` sites and per latitude band, beside the ensemble spread's coverage; the pooled
    non-normalised interval and the per-site distribution of the conformal coverage."""
    c, p, e = (part[m] for m in ("conformal", "conformal_pooled_absolute", "ensemble_spread"))
    lines = ["| towers | sites | coverage % | median width | ensemble spread: coverage % |",
             "| --- | --- | --- | --- | --- |", _row("all", c["overall"], e["overall"]),
             _row("all, pooled conformal (not normalised)", p["overall"], None)]
    lines += [_row(f"PFT {g}", v, e["by_pft"][g]) for g, v in c["by_pft"].items() if v["n_sites"] >= min_sites]
    lines += [_row(f"latitudes {g}", v, e["by_lat_band"][g]) for g, v in c["by_lat_band"].items()]
    d = c["site_distribution"]
    lines.append(f"| per site: min / 10 % / median / 90 % / max | | {' / '.join(f'{100 * d[k]:.0f}' for k in d)} | | |")
    return "\n".join(lines)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=Path, help="site-month table (default: the shipped sample, site-only)")
    parser.add_argument("--model", type=Path, help="a model trained on --sites (default: train one)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per fold of the models trained here")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of sites never seen (0: skip)")
    parser.add_argument("--demo", type=Path, help="folder of `ciml-ter demo`: score its synthetic world too")
    parser.add_argument("--name", default=None, help="name in the result file (default: the table's stem)")
    parser.add_argument("--quick", action="store_true", help="3 folds x 1 seed, 50 rounds, no causal step")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args(argv)
    config = PipelineConfig()
    config.train.seeds = args.seeds
    if args.quick:
        config.train.folds, config.train.seeds, config.train.causal = 3, 1, False
        smoke_rounds(config)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.sites is None:
            from benchmarks.guard_noise import shipped_sample_table

            sites = shipped_sample_table(work / "sample.parquet")
        else:
            sites = args.sites
        model = args.model or train_model(sites, work / "model", config)
        found = towers(model, sites, config)
        result = {**environment("cpu"), "benchmark": "uncertainty", "sites": str(args.sites or "shipped sample"),
                  "model": str(args.model or f"trained here: {config.train.folds} folds x {config.train.seeds} seeds"),
                  "quick": args.quick, "levels": [level_name(a) for a in config.uncertainty.levels],
                  "settings": {"offset_share": config.uncertainty.offset_share, "offset": found.calibration.offset,
                               "min_group_sites": config.uncertainty.min_group_sites,
                               "groups": sorted(found.calibration.groups)},
                  "towers": summary(found.document), "goals": goals(found.document)}
        plain, _ = without_site_bias(found, config)
        result["without_site_bias"] = {"towers": summary(plain), "goals": goals(plain)}
        if args.holdout > 0:
            result["never_seen"] = never_seen(sites, args.holdout, work, config)
        if args.demo is not None:
            result["synthetic_world"] = synthetic_world(args.demo, config)
    result["seconds"] = time.perf_counter() - started
    name = args.name or (args.sites.stem if args.sites else "sample")
    path = write_result(args.out, f"uncertainty-{name}-{result['date']}", result)
    for part in ("towers", "never_seen"):
        if part in result:
            print(f"{part}:\n{markdown(result[part])}")
    t, g = result["towers"], result["goals"]
    p = result["without_site_bias"]["goals"]
    print(f"90 % intervals at held-out towers: conformal {100 * g['coverage_90']:.1f} % (median width "
          f"{t['conformal']['overall']['median_width']:.1f}, {g['median_width_ratio_to_pooled']:.2f} x pooled), "
          f"ensemble spread {100 * t['ensemble_spread']['overall']['coverage']:.1f} %; without the site-bias term "
          f"{100 * p['coverage_90']:.1f} % ({p['median_width_ratio_to_pooled']:.2f} x pooled); wrote {path}")
    return path


if __name__ == "__main__":
    main()
