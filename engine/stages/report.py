"""``ciml-ter report``: one self-contained HTML file (``ciml_ter.reporting``) with the run's maps,
budget series, drivers, regions and product comparison, the model's evaluations and, for a
synthetic world, its truth beside the estimates."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter.analysis import read_maps
from ciml_ter.config import PipelineConfig
from ciml_ter.data.cube import open_cube
from ciml_ter.data.synth import PARENTS, read_truth, true_response
from ciml_ter.documents import read_json
from ciml_ter.errors import InputError
from ciml_ter.evaluation import against_truth
from ciml_ter.figures import dependence_figure, seasonal_figure
from ciml_ter.files import check_output
from ciml_ter.gridstats import series_trend
from ciml_ter.reporting import write_report
from ciml_ter.sitetable import read_site_table
from ciml_ter.stages import Runtime
from ciml_ter.tiles import RunDir
from ciml_ter.units import TER_UNITS

SHARE_UNITS = "fraction of |SHAP|"
FLAT_SHARE = 0.02  # a group share that varies less than this over land is said, not mapped
DEPENDENCE_ROWS = 20_000  # cell-months sampled for the true response


def _cube_attrs(path: Path) -> dict:
    """Global attributes of a cube (Zarr or NetCDF, ``data.cube.open_cube``); {} when unreadable."""
    from ciml_ter.data.cube import open_cube

    try:
        with open_cube(path) as cube:
            return dict(cube.attrs)
    except InputError:
        return {}


def find_truth(manifest: dict) -> tuple[bool, Path | None]:
    """Whether a run's input cube is a ``ciml-ter synth`` world (the run's features cube names its
    source cube), and that world's ``truth.nc`` if it is there."""
    features = manifest.get("features_path")
    source = _cube_attrs(Path(features)).get("source") if features else None
    if not source:
        return False, None
    cube = Path(source)
    if "synthetic" not in str(_cube_attrs(cube).get("title", "")).lower():
        return False, None
    truth = cube.parent / "truth.nc"
    return True, truth if truth.is_file() else None


def _period(months: list[str]) -> str:
    return f"{months[0]} to {months[-1]} ({len(months)} months)" if months else "the run's months"


def _over(months: list[str]) -> str:
    """The months for use inside parentheses."""
    return f"the {len(months)} months {months[0]} to {months[-1]}" if months else "the run's months"


def _truth_parts(truth_path: Path, rundir: RunDir, lat, lon, land, months: list[str]) -> dict:
    """The synthetic truth against the run: mean maps over the months both have, their
    difference, pixel-month R² and MAE, the true annual budget, and the truth's attributes."""
    t = read_truth(truth_path)
    out = {"attrs": t.attrs}
    if t.lat.shape != lat.shape or t.lon.shape != lon.shape or not (
            np.allclose(t.lat, lat) and np.allclose(t.lon, lon)):
        out["problem"] = f"{truth_path} is on another grid than the run; no truth maps"
        return out
    t_months = t.months.strftime("%Y-%m").tolist()
    common = [m for m in months if m in set(t_months)]
    if not common:
        out["problem"] = f"{truth_path} has no month of the run; no truth maps"
        return out
    truth = t.ter[[t_months.index(m) for m in common]]
    estimate = rundir.read_output(months=common).ter
    years = pd.PeriodIndex(common, freq="M").year.to_numpy()
    found = against_truth(truth, estimate, lat, lon, years, land)
    out.update({"months": common, "true_mean": found["true_mean"], "est_mean": found["est_mean"],
                "r2": found["fit"]["r2"], "mae": found["fit"]["mae"], "years": found["years"],
                "budget": found["true_budget"]})
    return out


def _notice(truth: dict | None, summary: dict | None = None, towers_too: bool = False) -> list[str]:
    lines = [("Synthetic world: every input of this report (the satellite predictors, the soils, the flux "
              "towers and their “observations”) was simulated by `ciml-ter synth`; nothing here describes the "
              "real Earth" + (", except the sections on real flux towers, trained and tested on real FLUXNET "
                              "measurements" if towers_too else "")
              + ". The true TER is known, so the estimates can be checked against it.")]
    if truth is None:
        return lines
    a = truth["attrs"]
    parents = json.loads(a["parents"]) if "parents" in a else []
    decoys = json.loads(a["decoys"]) if "decoys" in a else []
    line = f"Truth: TER = `{a['formula']}`" if "formula" in a else "Truth: TER from the generator"
    if parents:
        line += f", whose parents (causes) are {', '.join(parents)}"
    if decoys:
        line += f"; {' and '.join(decoys)} are decoys, correlated with parents but without effect on TER"
    if "seed" in a:
        line += f" (seed {a['seed']})"
    lines.append(line + ". The tower “observations” are this truth at the tower cells with added noise and gaps.")
    if "r2" in truth:
        lines.append(f"Against the truth over {_period(truth['months'])}, the estimated TER has R² "
                     f"{truth['r2']:.3f} and a mean absolute error of {truth['mae']:.2f} {TER_UNITS} "
                     "(all land cell-months).")
        estimated = (summary or {}).get("trend", {}).get("percent_per_step")
        if estimated is not None and len(truth.get("budget", [])) >= 3:
            true_trend = series_trend(np.asarray(truth["budget"], dtype=np.float64))["percent_per_step"]
            lines.append(f"Trend of the annual total: estimated {estimated:+.2f} %/yr, true {true_trend:+.2f} %/yr "
                         "(Theil–Sen slopes over the complete years).")
    else:
        lines.append(truth["problem"] + ".")
    return lines


def same_run(manifest: dict, run: Path, summary: dict | None, analysis: Path | None, model: Path | None) -> None:
    """InputError when the analysis or the model given with a run belong to another run: the
    analysis's ``run_id`` must be the run's, and the model's ``model_id`` (its manifest, or the
    metrics.json of an evaluation) the one the run was predicted with."""
    if summary is not None and summary.get("run_id") != manifest.get("run_id"):
        raise InputError(f"{analysis}: is the analysis of run {summary.get('run_id')} ({summary.get('run')}), not of "
                         f"{run} (run {manifest.get('run_id')}); refusing to mix runs: give the analysis of this run")
    if model is not None:
        model_id = _model_record(model)[0]
        if model_id != manifest.get("model_id"):
            raise InputError(f"{model}: holds model {model_id}, but {run} was predicted with model "
                             f"{manifest.get('model_id')}; refusing to mix runs: give that run's model")


def _model_record(model: Path) -> tuple[str | None, str | None]:
    """(model id, path of the site table it was trained on) of a model directory (its manifest)
    or of an evaluation folder (its metrics.json)."""
    model = Path(model)
    if (model / "manifest.json").is_file():
        manifest = read_json(model / "manifest.json", "model manifest")
        return manifest.get("model_id"), manifest.get("sites_path")
    metrics = read_json(model / "metrics.json", "metrics.json of `ciml-ter evaluate`")
    return metrics.get("model", {}).get("model_id"), metrics.get("sites_path")


def _towers(model: Path | None, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lat, lon) of the towers of the model's site table that lie in the run's window, or None
    (no model, or its table is gone)."""
    if model is None:
        return None
    sites_path = _model_record(model)[1]
    if not sites_path or not Path(sites_path).is_file():
        return None
    places = read_site_table(sites_path).frame.groupby("site")[["lat", "lon"]].first()
    res = abs(float(lat[1] - lat[0])) if lat.size > 1 else 1.0
    inside = places["lat"].between(lat.min() - res / 2, lat.max() + res / 2) & \
        places["lon"].between(lon.min() - res / 2, lon.max() + res / 2)
    return (places["lat"][inside].to_numpy(), places["lon"][inside].to_numpy()) if inside.any() else None


def _dependence_against_truth(path: Path, manifest: dict, land: np.ndarray, truth: dict) -> dict | None:
    """The SHAP dependence curves of the true parents and the decoys beside the world's true
    response (``synth.true_response`` over the run's own predictors, sampled), or None when the
    run's feature cube is gone or lacks the parents."""
    features_path = manifest.get("features_path")
    parents = json.loads(truth["attrs"].get("parents", "[]"))
    decoys = json.loads(truth["attrs"].get("decoys", "[]"))
    if not features_path or not Path(features_path).exists() or not parents:
        return None
    curves = pd.read_csv(path)
    cube = open_cube(features_path)
    if not set(PARENTS) <= set(map(str, cube.data_vars)):
        return None
    rows = np.random.default_rng(0).permutation(int(land.sum()) * cube.sizes["time"])[:DEPENDENCE_ROWS]
    values = {p: np.asarray(cube[p].values, dtype=np.float64)[:, land].ravel()[rows] for p in PARENTS}
    shown = [f for f in (*parents, *decoys) if f in set(curves["feature"])]
    at = {f: curves.loc[curves["feature"] == f, "value"].sort_values().to_numpy() for f in shown}
    response = {f: (at[f], true_response(values, f, at[f])) for f in shown}
    return {"figure": dependence_figure(curves, response, TER_UNITS, decoys), "section": "Drivers", "wide": True,
            "alt": "SHAP dependence of the true parents and decoys beside the true response",
            "caption": "Per true parent and decoy of the synthetic world: the model's SHAP value binned by the "
                       "predictor's value (line: mean, band: ± s.d.) and the world's true response, the centred "
                       "partial dependence of the truth formula on that predictor over a sample of the run's "
                       "land cell-months (dashed; 0 for a decoy)."}


def _interval_maps(ds: xr.Dataset, spec, period: str) -> dict:
    """The maps of the prediction intervals' mean width and of the share of months extrapolated."""
    maps = {}
    for name in (str(v) for v in ds.data_vars if str(v).startswith("interval_width_")):
        level = name.rsplit("_", 1)[1]
        maps[name] = spec(ds[name].values, f"Width of the {level} % prediction interval", TER_UNITS,
                          f"Mean over {period} of the width of each cell's monthly {level} % interval (split-conformal, "
                          "calibrated at flux towers held out of the model; wider where the ensemble spread is).",
                          cmap="magma")
    if "extrapolation_share" in ds:
        maps["extrapolation"] = spec(ds.extrapolation_share.values, "Extrapolation: predictors beyond the towers",
                                     "share of months", f"Share of the months of {period} in which a predictor of the "
                                     "cell lies outside the range of the towers' training rows: no calibration speaks "
                                     "for the interval there.", cmap="Reds", vmin=0, vmax=1)
    return maps


def _budget_bounds(budget: pd.DataFrame) -> tuple[dict, str]:
    """The budget intervals of budget.csv as dotted lines of the budget series, and their caption."""
    levels = [c.split("_")[1] for c in budget.columns if c.startswith("lower_") and c.endswith("_pg_c_yr")]
    if not levels:
        return {}, ""
    bounds = [{"lower": budget[f"lower_{k}_pg_c_yr"].to_numpy(), "upper": budget[f"upper_{k}_pg_c_yr"].to_numpy(),
               "label": f"{k} % intervals summed"} for k in levels]
    return {"bounds": bounds}, (f" Dotted: every cell-month at the bound of its {' and '.join(levels)} % prediction "
                                "interval, summed as if fully correlated (conservative).")


@dataclass
class ReportSummary:
    """The report written."""

    out: Path

    def lines(self) -> list[str]:
        return [f"wrote {self.out}"]


def report(run: Path, out: Path, config: PipelineConfig, runtime: Runtime, *, analysis: Path | None = None,
           model: Path | None = None, extra_tables: dict | None = None, truth_series: dict | None = None,
           truth: Path | None = None, evaluations: dict | None = None) -> ReportSummary:
    """``ciml-ter report``: maps, budget series and tables from the run directory ``run`` (and its
    ``analysis`` and ``model`` directories) into the HTML file ``out``.

    A run of a ``ciml-ter synth`` world (found from the run's features cube, or ``truth`` given:
    the world's truth.nc) is reported as synthetic: a notice with the truth's formula and
    parents, the true mean TER map on the estimate's colour scale, estimate − truth, and the true
    budget beside the estimate. ``truth_series`` ({"x", "y"}) overrides that true budget;
    ``evaluations`` are passed to ``reporting.write_report``. An analysis or a model of another
    run is refused (``same_run``)."""
    check_output(out, "file")
    run_dir = Path(run)
    rundir = RunDir(run_dir)
    lat, lon, all_months = rundir.output_axes()
    manifest = rundir.manifest()
    summary = None if analysis is None else read_json(Path(analysis) / "summary.json",
                                                      "summary.json of `ciml-ter analyze`")
    same_run(manifest, run_dir, summary, analysis, model)
    months = all_months.strftime("%Y-%m").tolist()
    period = _period(months)
    synthetic, found = (True, Path(truth)) if truth is not None else find_truth(manifest)
    maps, series, tables, texts, extra_figures = {}, {}, {}, {}, {}
    if analysis is None:
        ter = rundir.read_output().ter
        land = np.isfinite(ter).any(axis=0)
        ter_mean = np.nanmean(np.where(land, ter, 0), axis=0) * np.where(land, 1, np.nan)
        summary, ds = {}, None
    else:
        analysis_dir = Path(analysis)
        ds = read_maps(analysis_dir)
        land = ds.land.values.astype(bool)
        ter_mean = ds.ter_mean.values.astype(np.float64)
    truth_info = _truth_parts(found, rundir, lat, lon, land, months) if found is not None else None

    def spec(values, title, units, caption, **kw):
        return {"values": np.asarray(values, dtype=np.float64), "lat": lat, "lon": lon, "units": units,
                "title": title, "caption": caption, **kw}

    mean_kw = {"cmap": "YlOrBr"}
    if truth_info and "r2" in truth_info:
        both = np.concatenate([v[np.isfinite(v)] for v in (ter_mean, truth_info["true_mean"])])
        mean_kw.update(vmin=float(both.min()), vmax=float(both.max()))
    towers = _towers(model, lat, lon)
    tower_kw = {"towers": towers} if towers is not None else {}
    tower_note = f" Triangles: the {towers[0].size} flux towers the model was trained on." if towers is not None else ""
    maps["ter_mean"] = spec(ter_mean, "Mean TER" + (" (estimate)" if synthetic else ""), TER_UNITS,
                            f"Mean of the monthly TER estimates per grid cell over {period}; blank: no land."
                            + (" Same colour scale as the true mean TER." if "vmin" in mean_kw else "") + tower_note,
                            **mean_kw, **tower_kw)
    if truth_info and "r2" in truth_info:
        tp = _period(truth_info["months"])
        maps["truth_mean"] = spec(truth_info["true_mean"], "True mean TER (synthetic world)", TER_UNITS,
                                  f"Mean of the synthetic world's true monthly TER over {tp}, on the same colour "
                                  "scale as the estimate.", **mean_kw)
        diff = truth_info["est_mean"] - truth_info["true_mean"]
        finite = diff[np.isfinite(diff)]
        maps["truth_diff"] = spec(diff, "Estimate − truth, mean TER", TER_UNITS,
                                  f"Mean estimate minus mean truth over {tp} (red: estimate too high, blue: too "
                                  f"low); over the land cells its mean is {finite.mean():+.2f} and its mean absolute "
                                  f"value {np.abs(finite).mean():.2f} {TER_UNITS}.", diverging=True)
    if ds is not None:
        maps["ter_std"] = spec(ds.ter_std_mean.values, "TER uncertainty (ensemble spread)", TER_UNITS,
                               "Mean over " + period + " of the monthly standard deviation of TER across the "
                               "ensemble's fold models (each trained with one fold of sites left out): the spread "
                               "of the models, not the error against observations.", cmap="magma")
        maps.update(_interval_maps(ds, spec, period))
        if "trend_slope" in ds:
            trend = summary.get("trend", {})
            years = pd.read_csv(analysis_dir / "budget.csv").year
            share = trend.get("significant_share_of_land")
            maps["trend"] = spec(ds.trend_slope.values, "Trend of annual TER (Theil–Sen)", "g C m-2 yr-2",
                                 f"Theil–Sen slope of each cell's annual TER totals, {years.min()}–{years.max()}; "
                                 f"dots: Mann–Kendall p < {trend.get('p_threshold', 0.05)}"
                                 + (f" ({100 * share:.1f} % of the land area)" if share is not None else "") + ".",
                                 diverging=True, stipple=ds.trend_significant.values.astype(bool))
        if "dominant_feature" in ds:
            features = json.loads(ds.attrs["features"])
            groups = json.loads(ds.attrs["groups"])
            dominant = ds.dominant_feature.values[land & (ds.dominant_feature.values >= 0)]
            if np.unique(dominant).size > 1:
                maps["dominant_driver"] = spec(
                    ds.dominant_feature.values, "Dominant driver", "dominant feature",
                    f"The feature with the largest share of each cell's mean |SHAP| (|SHAP| averaged over "
                    f"{_over(months)}); the legend lists the features dominant somewhere.",
                    labels=dict(enumerate(features)), section="Drivers")
            elif dominant.size:
                texts["dominant_driver"] = {"section": "Drivers", "text": (
                    f"{features[int(dominant[0])]} is the dominant driver (the largest share of the mean |SHAP|, "
                    f"over {_over(months)}) in every land cell, so no map of the dominant driver is drawn.")}
            group_means = summary.get("drivers", {}).get("groups", {})
            members = summary.get("drivers", {}).get("group_members", {})
            for g in groups:
                values = ds[f"group_share_{g}"].values[land]
                who = f" ({', '.join(members[g])})" if members.get(g) else ""
                if np.nanmax(values) - np.nanmin(values) < FLAT_SHARE:
                    texts[f"share_{g}"] = {"section": "Drivers", "text": (
                        f"The {g} drivers{who} hold {np.nanmean(values):.2f} of the mean |SHAP| in every land cell "
                        f"(within {FLAT_SHARE}), so their map is not drawn.")}
                    continue
                mean = group_means.get(g, {}).get("mean")
                maps[f"share_{g}"] = spec(
                    ds[f"group_share_{g}"].values, f"Share of {g} drivers", SHARE_UNITS,
                    f"Sum over the {g} features{who} of their shares of each cell's mean |SHAP| (over "
                    f"{_over(months)}); the groups' shares add up to 1 in every cell"
                    + (f"; area-weighted mean over land {mean:.2f}." if mean is not None else "."),
                    cmap="viridis", vmin=0, vmax=1, section="Drivers")
            if truth_info is not None and (analysis_dir / "dependence.csv").is_file():
                figure = _dependence_against_truth(analysis_dir / "dependence.csv", manifest, land, truth_info)
                if figure is not None:
                    extra_figures["dependence"] = figure
            drivers = pd.read_csv(analysis_dir / "drivers.csv").sort_values("mean_share", ascending=False)
            tables["driver shares"] = {
                "rows": drivers.rename(columns={"mean_share": f"mean {SHARE_UNITS} (area-weighted over land)",
                                                "std_share": "s.d. across land cells"}),
                "section": "Drivers", "caption": f"Each feature's share of the mean |SHAP| per cell, over {period}."}
        budget = pd.read_csv(analysis_dir / "budget.csv")
        true_budget = None
        if truth_series:
            true_budget = np.asarray(truth_series["y"], dtype=np.float64)
        elif truth_info and "budget" in truth_info and list(truth_info["years"]) == budget.year.tolist():
            true_budget = truth_info["budget"]
        area = summary.get("budget", {}).get("land_area_m2")
        bounds, bounds_caption = _budget_bounds(budget)
        series["budget"] = {
            "x": budget.year.to_numpy(), "y": budget.budget_pg_c_yr.to_numpy(),
            "lower": (budget.budget_pg_c_yr - budget.uncertainty_pg_c_yr).to_numpy(),
            "upper": (budget.budget_pg_c_yr + budget.uncertainty_pg_c_yr).to_numpy(),
            "band_label": "±σ (upper bound)", "units": "Pg C yr-1", "title": "Annual TER over the land of the run",
            "caption": "Sum of each complete year's twelve monthly TER estimates over the land cells of the run"
                       + (f" ({area / 1e12:.2f} million km²)" if area else "") + ". Band: ±σ, with σ the ensemble "
                       "spread (standard deviation across fold models) summed over cells and months as if fully "
                       "correlated, an upper bound of that spread's effect on the total."
                       + bounds_caption + (" Dashed: the synthetic world's true total." if true_budget is not None else ""),
            **({"truth": true_budget} if true_budget is not None else {}), **bounds}
        if (analysis_dir / "seasonal_cycle.csv").is_file():
            cycle = pd.read_csv(analysis_dir / "seasonal_cycle.csv")
            extra_figures["seasonal_cycle"] = {
                "figure": seasonal_figure(cycle, TER_UNITS, "Mean seasonal cycle per latitude band"),
                "section": "Time series", "alt": "Mean seasonal cycle of TER per latitude band",
                "caption": f"Area-weighted mean monthly TER over the land cells of each latitude band, averaged "
                           f"over the years of {period}."}
        regions = pd.read_csv(analysis_dir / "regions.csv")
        regions = regions[regions["pixels"] > 0].rename(columns={
            "pixels": "land cells", "budget_pg_c_yr": "mean annual TER (Pg C yr-1)",
            "trend_g_c_m2_yr2": "mean cell trend (g C m-2 yr-2)", "trend_se": "trend s.e. (g C m-2 yr-2)"})
        if len(regions):
            tables["regions"] = {"rows": regions, "caption": "Per region (regions with no land cell left out): "
                                 "total TER averaged over the complete years, and the area-weighted mean of the "
                                 "cells' Theil–Sen trends with its standard error (effective sample size)."}
        if "comparisons" in summary:
            rows = [{"product": k, "months in common": e.get("months"),
                     "mean annual TER, ours (Pg C yr-1)": float(np.mean(e["budget_ours_pg_c_yr"]))
                     if e.get("budget_ours_pg_c_yr") else None,
                     "mean annual TER, theirs (Pg C yr-1)": float(np.mean(e["budget_theirs_pg_c_yr"]))
                     if e.get("budget_theirs_pg_c_yr") else None,
                     f"mean difference, ours − theirs ({TER_UNITS})": e.get("mean_difference"),
                     "trend sign agreement (fraction of land cells)": e.get("trend_sign_agreement")}
                    for k, e in summary["comparisons"].items()]
            tables["product comparison"] = {"rows": rows, "section": "Product comparison"}
            for name in summary["comparisons"]:
                maps[f"diff_{name}"] = spec(ds[f"diff_{name}"].values, f"Mean TER minus {name}", TER_UNITS,
                                            f"Our mean monthly TER minus {name}'s over the months both cover "
                                            "(red: ours higher).", diverging=True, section="Product comparison")
    for name, table in (extra_tables or {}).items():
        tables[name] = table
    if truth_info is not None:  # the truth map beside the estimate, then the difference
        order = ["ter_mean", "truth_mean", "truth_diff"]
        maps = {**{k: maps[k] for k in order if k in maps}, **{k: v for k, v in maps.items() if k not in order}}
    truth_parents = None
    if truth_info is not None and "parents" in truth_info["attrs"]:
        truth_parents = {"parents": json.loads(truth_info["attrs"]["parents"]),
                         "decoys": json.loads(truth_info["attrs"].get("decoys", "[]"))}
    meta = {"run": str(run_dir), "model id": manifest.get("model_id"), "config hash": manifest.get("config_hash"),
            "months": f"{months[0]} to {months[-1]}" if months else "–"}
    if synthetic:
        meta["world"] = "synthetic (ciml-ter synth)" + (f", truth {found}" if found is not None else "")
    towers_too = any("model_dir" in e for e in (evaluations or {}).values())
    title = "ciml-ter: terrestrial ecosystem respiration" + (
        ", synthetic world" + (" and real flux towers" if towers_too else "") if synthetic else "")
    path = write_report(out, maps=maps, series=series, land=land, tables=tables, model_dir=model,
                        evaluations=evaluations, meta=meta, truth_parents=truth_parents, texts=texts,
                        figures=extra_figures, title=title,
                        notice=_notice(truth_info, summary, towers_too) if synthetic else None)
    return ReportSummary(path)
