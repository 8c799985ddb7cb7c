"""What a prediction run says, computed on top of ``gridstats``: annual budgets (Pg C/yr) with
the ensemble-spread bound and, when the run has prediction intervals, the budget interval from
their bounds, the maps of interval width and of the share of months extrapolated, per-pixel and budget trends (Mann–Kendall + Theil–Sen), regional
means (latitude bands, IGBP classes of the MCD12C1 2019 map on aligned grids, user masks), SHAP
driver and group shares with the dominant driver, binned SHAP dependence, the map at the towers
and the comparison with other TER products. ``ciml-ter analyze`` reads the inputs and writes
what ``analyze_run`` returns.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter import gridstats, kernels
from ciml_ter.config import PipelineConfig
from ciml_ter.data.products.catalog import IGBP_CLASSES
from ciml_ter.data.products.landcover import MCD12C1_RES, landcover_on_grid
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_output
from ciml_ter.grid import GridWindow
from ciml_ter.progress import ProgressCallback
from ciml_ter.tiles import TerOutput
from ciml_ter.units import BUDGET_UNITS, TER_TREND_UNITS, TER_UNITS


@dataclass
class Analysis:
    """``summary`` (summary.json), ``tables`` (CSV name -> frame) and ``maps`` ((lat, lon) name ->
    (values, units), for maps.nc) of a run."""

    summary: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    maps: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)


MAPS = "maps.nc"


def write_maps(analysis: Analysis, run: TerOutput, folder: Path) -> Path:
    """Write the analysis maps, the run's land mask and its grid as ``folder/maps.nc`` (CF-1.8;
    float maps as float32; attributes ``features`` and ``groups`` in SHAP order)."""
    data = {k: (("lat", "lon"), np.asarray(v).astype(np.float32) if np.asarray(v).dtype.kind == "f"
                else np.asarray(v), {"units": u}) for k, (v, u) in analysis.maps.items()}
    data["land"] = (("lat", "lon"), run.land.astype(np.uint8), {"units": "1"})
    maps = xr.Dataset(data, coords={"lat": ("lat", run.lat, {"units": "degrees_north"}),
                                    "lon": ("lon", run.lon, {"units": "degrees_east"})},
                      attrs={"Conventions": "CF-1.8", "features": json.dumps(list(run.shap)),
                             "groups": json.dumps(analysis.summary.get("drivers", {}).get("group_order", []))})
    with atomic_output(Path(folder) / MAPS) as tmp:
        maps.to_netcdf(tmp, engine="h5netcdf")
    return Path(folder) / MAPS


def read_maps(folder: Path) -> xr.Dataset:
    """``folder/maps.nc`` of ``ciml-ter analyze``, loaded; InputError naming it when it is missing or
    unreadable."""
    path = Path(folder) / MAPS
    if not path.is_file():
        raise InputError(f"{path}: analysis maps not found; expected the output folder of 'ciml-ter analyze'")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the analysis maps ({type(exc).__name__}: {exc})") from None


def lat_band_masks(lat: np.ndarray, n_lon: int, high_latitude: float) -> dict[str, np.ndarray]:
    """One (lat, lon) mask per latitude band of ``gridstats.lat_bands``, named "lat <band>"."""
    return {f"lat {name}": np.broadcast_to(gridstats.in_band(lat, south, north)[:, None], (lat.size, n_lon))
            for name, south, north in gridstats.lat_bands(high_latitude)}


def pft_masks(lat: np.ndarray, lon: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """One region per IGBP class of the MCD12C1 2019 land cover on the run's grid (block mode of
    its 0.05-degree cells), where the grid aligns with 0.05 degrees; and what was used (or why not)."""
    res = abs(float(lat[1] - lat[0])) if lat.size > 1 else abs(float(lon[1] - lon[0]))
    north, west = float(lat.max()) + res / 2, float(lon.min()) - res / 2
    if any(abs(v / MCD12C1_RES - round(v / MCD12C1_RES)) > 1e-6 for v in (res, north, west)):
        return {}, f"no IGBP regions: the {res:g}-degree grid does not align with MCD12C1's 0.05 degrees"
    try:
        pft, _, provenance = landcover_on_grid(GridWindow(north, west, res, lat.size, lon.size), "default")
    except InputError as exc:
        return {}, f"no IGBP regions: {exc}"
    if lat[0] < lat[-1]:
        pft = pft[::-1]  # the window's rows go south
    masks = {f"IGBP {IGBP_CLASSES[int(k)]}": pft == k for k in np.unique(pft) if 0 < k < 255}
    return masks, f"IGBP regions from {provenance['landcover_source']} (block mode)"


def seasonal_cycle(ter: np.ndarray, months: pd.DatetimeIndex, area: np.ndarray, bands: dict[str, np.ndarray]
                   ) -> pd.DataFrame:
    """Mean seasonal cycle per region: for each calendar month, the area-weighted mean TER
    (g C m-2 month-1) over the region's land cells and over the years, one column per region with
    land (``bands``: name -> (lat, lon) mask)."""
    finite = np.isfinite(ter)
    values, observed = np.where(finite, ter, 0.0), finite.astype(np.float64)  # once, for every region
    calendar_month = months.month.to_numpy() - 1
    cycle = {"month": np.arange(1, 13)}
    for name, mask in bands.items():
        w = np.where(mask, area, 0.0)
        if not w.any():
            continue
        total = np.bincount(calendar_month, np.einsum("tij,ij->t", values, w), minlength=12)
        weight = np.bincount(calendar_month, np.einsum("tij,ij->t", observed, w), minlength=12)
        with np.errstate(invalid="ignore", divide="ignore"):
            cycle[name] = np.where(weight > 0, total / weight, np.nan)
    return pd.DataFrame(cycle)


def site_errors(table: pd.DataFrame, estimate: np.ndarray, high_latitude: float) -> dict:
    """MAE of the map at the site-months, all and north of ``high_latitude`` (degrees N)."""
    obs = table["ter"].to_numpy(dtype=np.float64)
    ok = np.isfinite(obs) & np.isfinite(estimate)
    north = ok & (table["lat"].to_numpy() >= high_latitude)
    mae = (lambda m: float(np.mean(np.abs(obs[m] - estimate[m]))) if m.any() else float("nan"))
    return {"mae": mae(ok), "n": int(ok.sum()), "high_latitude": high_latitude,
            "mae_high_latitude": mae(north), "n_high_latitude": int(north.sum())}


def _drivers(run: TerOutput, area: np.ndarray, land: np.ndarray, config: PipelineConfig,
             features_cube, out: Analysis) -> None:
    """SHAP driver shares per feature and group, the dominant driver, and the binned dependence of
    each feature's SHAP on its value (from ``features_cube`` when given)."""
    features = list(run.shap)
    shap = np.stack([run.shap[f] for f in features])
    shares = gridstats.driver_shares(shap)
    configured = {"environment": config.groups.environment, "biotic": config.groups.biotic,
                  "spatiotemporal": config.groups.spatiotemporal}
    groups = gridstats.group_shares(shares, features, configured)
    group_names = list(groups)
    grouped = {f for members in configured.values() for f in members}
    members = {g: [f for f in features if f in configured.get(g, [])] if g in configured
               else [f for f in features if f not in grouped] for g in group_names}
    group_stack = np.stack([groups[g] for g in group_names])
    mean_share = [gridstats.weighted_mean_se(shares[k], area, land)[0] for k in range(len(features))]
    out.summary["drivers"] = {"features": features, "groups": {
        g: {"mean": gridstats.weighted_mean_se(groups[g], area, land)[0],
            "std": float(np.nanstd(np.where(land, groups[g], np.nan)))} for g in group_names},
        "top_features": [features[i] for i in np.argsort([-m for m in mean_share])][:5],
        "group_order": group_names, "group_members": members}
    out.tables["drivers"] = pd.DataFrame([{"feature": f, "mean_share": mean_share[k],
                                           "std_share": float(np.nanstd(np.where(land, shares[k], np.nan)))}
                                          for k, f in enumerate(features)])
    for k, f in enumerate(features):
        out.maps[f"share_{f}"] = (shares[k], "1")
    for g in group_names:
        out.maps[f"group_share_{g}"] = (groups[g], "1")
    out.maps["dominant_feature"] = (gridstats.dominant(shares), "1")
    out.maps["dominant_group"] = (gridstats.dominant(group_stack), "1")
    if features_cube is not None:
        curves = []
        for k, f in enumerate(features):
            if f in features_cube:
                values = np.asarray(features_cube[f].values, np.float64).ravel()
                curves += [{"feature": f, **row} for row in gridstats.shap_dependence(shap[k].ravel(), values)]
        out.tables["dependence"] = pd.DataFrame(curves)


def _comparison(name: str, other, run: TerOutput, land: np.ndarray, area: np.ndarray, area_land: np.ndarray,
                observed: pd.DataFrame | None, config: PipelineConfig, out: Analysis) -> dict:
    """Our TER against another product (monthly, g C m-2 month-1) over the months both cover."""
    months, hl = run.months, config.analysis.high_latitude
    common = months.intersection(pd.DatetimeIndex(other.time.values))
    if len(common) == 0:
        raise InputError(f"{name}: no month in common with the run ({months[0]:%Y-%m}..{months[-1]:%Y-%m})")
    theirs = gridstats.regrid_to(other.sel(time=common.values), run.lat, run.lon, area)
    ours = run.ter[months.get_indexer(common)]
    theirs = np.where(land, theirs, np.nan)
    y_common = common.year.to_numpy()
    c_years, their_totals = gridstats.annual_totals(theirs, y_common)
    _, our_totals = gridstats.annual_totals(ours, y_common)
    entry = {"months": len(common), "years": c_years.tolist(),
             "budget_ours_pg_c_yr": gridstats.budget(our_totals, area_land).tolist(),
             "budget_theirs_pg_c_yr": gridstats.budget(np.nan_to_num(their_totals), area_land).tolist(),
             "mean_difference": float(np.nanmean(ours - theirs))}
    if c_years.size >= 3:
        a = gridstats.trend_maps(our_totals, config.analysis.p_threshold)
        b = gridstats.trend_maps(their_totals, config.analysis.p_threshold)
        both = land & np.isfinite(a["slope"]) & np.isfinite(b["slope"])
        entry["trend_sign_agreement"] = float(np.mean(np.sign(a["slope"][both]) == np.sign(b["slope"][both])))
    if observed is not None:
        sub = observed[pd.DatetimeIndex(observed["time"]).to_period("M").to_timestamp().isin(common)]
        entry["sites_ours"] = site_errors(sub, gridstats.sample_sites(sub, common, run.lat, run.lon, ours), hl)
        entry["sites_theirs"] = site_errors(sub, gridstats.sample_sites(sub, common, run.lat, run.lon, theirs), hl)
    out.maps[f"diff_{name}"] = (np.where(land, (ours - theirs).mean(axis=0), np.nan), TER_UNITS)
    return entry


def _intervals(run: TerOutput, area_land: np.ndarray, out: Analysis) -> None:
    """Budget intervals from the cells' prediction intervals, each cell-month at its bound (errors
    taken as fully correlated, like the σ bound: an outer bound), the mean interval width per cell
    and the share of each cell's months outside the towers' range."""
    years = run.months.year.to_numpy()
    intervals = {}
    for name, (lower, upper) in run.intervals.items():
        bounds = [gridstats.budget(gridstats.annual_totals(b, years)[1], area_land) for b in (lower, upper)]
        out.tables["budget"][f"lower_{name}_pg_c_yr"], out.tables["budget"][f"upper_{name}_pg_c_yr"] = bounds
        intervals[name] = {"lower_pg_c_yr": bounds[0].tolist(), "upper_pg_c_yr": bounds[1].tolist()}
        with np.errstate(invalid="ignore"):
            out.maps[f"interval_width_{name}"] = ((upper - lower).mean(axis=0), TER_UNITS)
    out.summary["budget"]["intervals"] = {
        **intervals, "how": "each cell-month at the bound of its conformal prediction interval, summed as if the "
                            "errors were fully correlated (like the σ bound): conservative, independent errors "
                            "would give a far narrower interval"}
    if run.extrapolation is not None:
        valid = np.isfinite(run.extrapolation)
        months = valid.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(months > 0, np.where(valid, run.extrapolation, 0).sum(axis=0) / months, np.nan)
        out.maps["extrapolation_share"] = (share, "1")
        mean, _, _ = gridstats.weighted_mean_se(share, area_land)
        out.summary["extrapolation_share_of_land"] = mean


def analyze_run(run: TerOutput, config: PipelineConfig, *, region_masks: dict[str, np.ndarray] | None = None,
                products: dict | None = None, observed: pd.DataFrame | None = None, features_cube=None,
                progress: ProgressCallback = None) -> Analysis:
    """Budgets, trends, regions (latitude bands, IGBP classes, ``region_masks`` (lat, lon) bool),
    SHAP drivers (when the run has them; dependence from ``features_cube``), the map at the
    ``observed`` site-months and the comparison with each of ``products`` ({name: monthly
    DataArray in g C m-2 month-1})."""
    products = products or {}
    steps = 3 + len(products)
    step = iter(range(1, steps + 1))

    def tick(message):
        if progress:
            progress(next(step), steps, message)

    lat, lon, months, ter = run.lat, run.lon, run.months, run.ter
    land = run.land
    area = kernels.pixel_area(lat, lon)
    area_land = np.where(land, area, np.nan)
    out = Analysis({"units": {"budget": BUDGET_UNITS, "trend": "Pg C yr-2", "pixel_trend": TER_TREND_UNITS,
                              "ter": TER_UNITS}})
    years, totals = gridstats.annual_totals(ter, months.year.to_numpy())
    _, totals_std = gridstats.annual_totals(run.ter_std, months.year.to_numpy())
    if years.size == 0:
        raise InputError(f"no complete year (12 months) in the run's ter.nc; found {len(months)} months")
    budgets = gridstats.budget(totals, area_land)
    uncertainty = gridstats.budget(totals_std, area_land)  # errors taken as fully correlated: an upper bound
    out.tables["budget"] = pd.DataFrame({"year": years, "budget_pg_c_yr": budgets,
                                         "uncertainty_pg_c_yr": uncertainty})
    out.summary["budget"] = {"years": years.tolist(), "pg_c_yr": budgets.tolist(),
                             "uncertainty_pg_c_yr": uncertainty.tolist(), "mean_pg_c_yr": float(budgets.mean()),
                             "land_area_m2": float(np.nansum(area_land))}
    if run.intervals:
        _intervals(run, area_land, out)
    tick("budgets")

    trends = gridstats.trend_maps(totals, config.analysis.p_threshold) if years.size >= 3 else None
    if trends is not None:
        out.summary["trend"] = {**gridstats.series_trend(budgets), "significant_share_of_land":
                                float(np.nansum(np.where(trends["significant"], area_land, 0)) / np.nansum(area_land)),
                                "p_threshold": config.analysis.p_threshold}
    rows = []
    pfts, out.summary["pft_regions"] = pft_masks(lat, lon)
    bands = lat_band_masks(lat, lon.size, config.analysis.high_latitude)
    regions = {**bands, **(region_masks or {}), **pfts}
    for name, mask in regions.items():
        mask = mask & land
        entry = {"region": name, "pixels": int(mask.sum()),
                 "budget_pg_c_yr": float(gridstats.budget(totals.mean(axis=0) * mask, area_land))}
        if trends is not None:
            mean, se, _ = gridstats.weighted_mean_se(trends["slope"], area, mask)
            entry.update({"trend_g_c_m2_yr2": mean, "trend_se": se})
        rows.append(entry)
    out.tables["regions"] = pd.DataFrame(rows)
    out.summary["regions"] = rows
    out.tables["seasonal_cycle"] = seasonal_cycle(ter, months, area,
                                                  {k.removeprefix("lat "): v & land for k, v in bands.items()})
    tick("trends and regions")

    out.maps.update({"ter_mean": (ter.mean(axis=0) if ter.size else ter, TER_UNITS),
                     "ter_std_mean": (run.ter_std.mean(axis=0), TER_UNITS),
                     "annual_mean": (totals.mean(axis=0), "g C m-2 yr-1")})
    if trends is not None:
        out.maps.update({"trend_slope": (trends["slope"], "g C m-2 yr-2"), "trend_p": (trends["p"], "1"),
                         "trend_significant": (trends["significant"].astype(np.uint8), "1")})
    if run.shap:
        _drivers(run, area, land, config, features_cube, out)
    tick("drivers")

    hl = config.analysis.high_latitude
    if observed is not None:
        est = gridstats.sample_sites(observed, months, lat, lon, ter)
        out.summary["sites"] = site_errors(observed, est, hl)
    comparisons = {}
    for name, other in products.items():
        comparisons[name] = _comparison(name, other, run, land, area, area_land, observed, config, out)
        tick(f"compare {name}")
    if comparisons:
        out.summary["comparisons"] = comparisons
    return out
