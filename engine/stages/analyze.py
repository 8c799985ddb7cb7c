"""``ciml-ter analyze``: budgets, trends, driver contributions, regions and product comparison
from a prediction run's ``ter.nc``; results as NetCDF, CSV and JSON with units."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter import gridstats, kernels
from ciml_ter.config import PipelineConfig
from ciml_ter.data.products.catalog import IGBP_CLASSES
from ciml_ter.data.products.landcover import MCD12C1_RES, landcover_on_grid
from ciml_ter.files import atomic_output, atomic_write
from ciml_ter.kernels.binning import GridWindow
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import read_site_table
from ciml_ter.tiles import RunDir
from ciml_ter.units import BUDGET_UNITS, TER_PER_DAY, TER_PER_MONTH, TER_TREND_UNITS, TER_UNITS
from ciml_ter.errors import InputError



def _open(path: Path, what: str) -> xr.Dataset:
    if not Path(path).exists():
        raise InputError(f"{path}: {what} not found")
    try:
        return xr.open_dataset(path, engine="h5netcdf")
    except Exception as exc:  # h5py/h5netcdf raise many types for a bad file
        raise InputError(f"{path}: cannot open {what} as NetCDF4 ({type(exc).__name__}: {exc})") from None


def product_monthly(path: Path) -> xr.DataArray:
    """The TER variable of another product in g C m-2 month-1 (the first data variable with
    accepted units), monthly (daily rates x days in month)."""
    ds = _open(path, "product")
    for name, da in ds.data_vars.items():
        units = str(da.attrs.get("units", "")).strip()
        if units in TER_PER_DAY or units in TER_PER_MONTH:
            break
    else:
        found = {n: da.attrs.get("units") for n, da in ds.data_vars.items()}
        raise InputError(f"{path}: no variable with TER units; accepted {sorted({**TER_PER_DAY, **TER_PER_MONTH})}, "
                         f"found {found}")
    if not {"time", "lat", "lon"} <= set(da.dims):
        raise InputError(f"{path}: variable '{name}' has dims {da.dims}; expected (time, lat, lon)")
    if units in TER_PER_DAY:
        days = pd.DatetimeIndex(da.time.values).days_in_month.to_numpy()
        da = da * TER_PER_DAY[units] * xr.DataArray(days, dims="time", coords={"time": da.time})
    else:
        da = da * TER_PER_MONTH[units]
    months = pd.DatetimeIndex(da.time.values).to_period("M").to_timestamp()
    return da.assign_coords(time=months.values).transpose("time", "lat", "lon").assign_attrs(units=TER_UNITS)


def _region_masks(paths, lat, lon, high_latitude: float) -> dict[str, np.ndarray]:
    masks = {f"lat {name}": np.broadcast_to(gridstats.in_band(lat, south, north)[:, None], (lat.size, lon.size))
             for name, south, north in gridstats.lat_bands(high_latitude)}
    for path in paths:
        ds = _open(path, "region mask")
        for name, da in ds.data_vars.items():
            if da.dims != ("lat", "lon") or da.shape != (lat.size, lon.size):
                raise InputError(f"{path}: mask '{name}' has dims {da.dims} {da.shape}; expected "
                                 f"(lat, lon) {(lat.size, lon.size)} on the run's grid")
            meanings = str(da.attrs.get("flag_meanings", "")).split()
            values = np.asarray(da.values)
            if meanings and "flag_values" in da.attrs:
                for code, label in zip(np.atleast_1d(da.attrs["flag_values"]), meanings):
                    masks[f"{name} {label}"] = values == code
            else:
                masks[name] = np.nan_to_num(values.astype(float)) != 0
    return masks


def _pft_masks(lat: np.ndarray, lon: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
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


def run(run_dir: Path, out_dir: Path, config: PipelineConfig, compare=(), region_masks=(),
        sites: Path | None = None, progress: ProgressCallback = None) -> dict:
    """Analyse a run; write summary.json, budget.csv, regions.csv, drivers.csv, dependence.csv,
    comparison tables and maps.nc into ``out_dir``; return the summary."""
    run = _open(Path(run_dir) / "ter.nc", "prediction output (run ter.nc)")
    manifest = RunDir(run_dir).manifest()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = 5 + len(compare)
    step = iter(range(1, steps + 1))
    lat, lon = run.lat.values.astype(np.float64), run.lon.values.astype(np.float64)
    months = pd.DatetimeIndex(run.time.values)
    ter, ter_std = np.asarray(run.ter.values, np.float64), np.asarray(run.ter_std.values, np.float64)
    land = np.isfinite(ter).any(axis=0)
    area = kernels.pixel_area(lat, lon)
    area_land = np.where(land, area, np.nan)
    summary: dict = {"units": {"budget": BUDGET_UNITS, "trend": "Pg C yr-2", "pixel_trend": TER_TREND_UNITS,
                               "ter": TER_UNITS}, "run": str(run_dir), "model_id": manifest.get("model_id")}

    years, totals = gridstats.annual_totals(ter, months.year.to_numpy())
    _, totals_std = gridstats.annual_totals(ter_std, months.year.to_numpy())
    if years.size == 0:
        raise InputError(f"{run_dir}: no complete year (12 months) in ter.nc; found {len(months)} months")
    budgets = gridstats.budget(totals, area_land)
    uncertainty = gridstats.budget(totals_std, area_land)  # errors taken as fully correlated: an upper bound
    pd.DataFrame({"year": years, "budget_pg_c_yr": budgets, "uncertainty_pg_c_yr": uncertainty}).to_csv(
        out_dir / "budget.csv", index=False)
    summary["budget"] = {"years": years.tolist(), "pg_c_yr": budgets.tolist(),
                         "uncertainty_pg_c_yr": uncertainty.tolist(), "mean_pg_c_yr": float(budgets.mean()),
                         "land_area_m2": float(np.nansum(area_land))}
    if progress:
        progress(next(step), steps, "budgets")

    trends = gridstats.trend_maps(totals, config.analysis.p_threshold) if years.size >= 3 else None
    if trends is not None:
        summary["trend"] = {**gridstats.series_trend(budgets), "significant_share_of_land":
                            float(np.nansum(np.where(trends["significant"], area_land, 0)) / np.nansum(area_land)),
                            "p_threshold": config.analysis.p_threshold}
    rows = []
    pft_masks, summary["pft_regions"] = _pft_masks(lat, lon)
    regions = {**_region_masks(region_masks, lat, lon, config.analysis.high_latitude), **pft_masks}
    for name, mask in regions.items():
        mask = mask & land
        entry = {"region": name, "pixels": int(mask.sum()),
                 "budget_pg_c_yr": float(gridstats.budget(totals.mean(axis=0) * mask, area_land))}
        if trends is not None:
            mean, se, _ = gridstats.weighted_mean_se(trends["slope"], area, mask)
            entry.update({"trend_g_c_m2_yr2": mean, "trend_se": se})
        rows.append(entry)
    pd.DataFrame(rows).to_csv(out_dir / "regions.csv", index=False)
    summary["regions"] = rows
    if progress:
        progress(next(step), steps, "trends and regions")

    maps = {"ter_mean": (ter.mean(axis=0) if ter.size else ter, TER_UNITS),
            "ter_std_mean": (ter_std.mean(axis=0), TER_UNITS),
            "annual_mean": (totals.mean(axis=0), "g C m-2 yr-1")}
    if trends is not None:
        maps.update({"trend_slope": (trends["slope"], "g C m-2 yr-2"), "trend_p": (trends["p"], "1"),
                     "trend_significant": (trends["significant"].astype(np.uint8), "1")})
    shap_names = [v for v in run.data_vars if v.startswith("shap_")]
    features = [v[5:] for v in shap_names]
    if shap_names:
        shap = np.stack([np.asarray(run[v].values, np.float64) for v in shap_names])
        shares = gridstats.driver_shares(shap)
        groups = gridstats.group_shares(shares, features, {
            "environment": config.groups.environment, "biotic": config.groups.biotic,
            "spatiotemporal": config.groups.spatiotemporal})
        group_names = list(groups)
        group_stack = np.stack([groups[g] for g in group_names])
        summary["drivers"] = {"features": features, "groups": {
            g: {"mean": gridstats.weighted_mean_se(groups[g], area, land)[0],
                "std": float(np.nanstd(np.where(land, groups[g], np.nan)))} for g in group_names},
            "top_features": [features[i] for i in np.argsort(
                [-gridstats.weighted_mean_se(shares[k], area, land)[0] for k in range(len(features))])][:5]}
        pd.DataFrame([{"feature": f, "mean_share": gridstats.weighted_mean_se(shares[k], area, land)[0],
                       "std_share": float(np.nanstd(np.where(land, shares[k], np.nan)))}
                      for k, f in enumerate(features)]).to_csv(out_dir / "drivers.csv", index=False)
        for k, f in enumerate(features):
            maps[f"share_{f}"] = (shares[k], "1")
        for g in group_names:
            maps[f"group_share_{g}"] = (groups[g], "1")
        maps["dominant_feature"] = (gridstats.dominant(shares), "1")
        maps["dominant_group"] = (gridstats.dominant(group_stack), "1")
        summary["drivers"]["group_order"] = group_names
        features_path = manifest.get("features_path")
        if features_path and Path(features_path).exists():
            cube = xr.open_dataset(features_path, engine="zarr", consolidated=False)
            curves = []
            for k, f in enumerate(features):
                if f in cube:
                    for row in gridstats.shap_dependence(shap[k].ravel(), np.asarray(cube[f].values, np.float64).ravel()):
                        curves.append({"feature": f, **row})
            pd.DataFrame(curves).to_csv(out_dir / "dependence.csv", index=False)
    if progress:
        progress(next(step), steps, "drivers")

    observed = None
    if sites is not None:
        observed = read_site_table(Path(sites)).frame
        est = gridstats.sample_sites(observed, months, lat, lon, ter)
        summary["sites"] = _site_errors(observed, est, config.analysis.high_latitude)
    comparisons = {}
    hl = config.analysis.high_latitude
    for path in compare:
        name = Path(path).stem
        other = product_monthly(Path(path))
        common = months.intersection(pd.DatetimeIndex(other.time.values))
        if len(common) == 0:
            raise InputError(f"{path}: no month in common with the run ({months[0]:%Y-%m}..{months[-1]:%Y-%m})")
        theirs = gridstats.regrid_to(other.sel(time=common.values), lat, lon, area)
        ours = ter[months.get_indexer(common)]
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
            entry["sites_ours"] = _site_errors(sub, gridstats.sample_sites(sub, common, lat, lon, ours), hl)
            entry["sites_theirs"] = _site_errors(sub, gridstats.sample_sites(sub, common, lat, lon, theirs), hl)
        maps[f"diff_{name}"] = (np.where(land, (ours - theirs).mean(axis=0), np.nan), TER_UNITS)
        comparisons[name] = entry
        if progress:
            progress(next(step), steps, f"compare {name}")
    if comparisons:
        summary["comparisons"] = comparisons

    data = {k: (("lat", "lon"), np.asarray(v).astype(np.float32) if np.asarray(v).dtype.kind == "f"
                else np.asarray(v), {"units": u}) for k, (v, u) in maps.items()}
    data["land"] = (("lat", "lon"), land.astype(np.uint8), {"units": "1"})
    out = xr.Dataset(data, coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                                   "lon": ("lon", lon, {"units": "degrees_east"})},
                     attrs={"Conventions": "CF-1.8", "features": json.dumps(features),
                            "groups": json.dumps(summary.get("drivers", {}).get("group_order", []))})
    with atomic_output(out_dir / "maps.nc") as tmp:
        out.to_netcdf(tmp, engine="h5netcdf")
    atomic_write(out_dir / "summary.json", json.dumps(summary, indent=1, default=float))
    if progress:
        progress(steps, steps, "written")
    return summary


def _site_errors(table: pd.DataFrame, estimate: np.ndarray, high_latitude: float) -> dict:
    """MAE of the map at the site-months, all and north of ``high_latitude`` (degrees N)."""
    obs = table["ter"].to_numpy(dtype=np.float64)
    ok = np.isfinite(obs) & np.isfinite(estimate)
    north = ok & (table["lat"].to_numpy() >= high_latitude)
    mae = (lambda m: float(np.mean(np.abs(obs[m] - estimate[m]))) if m.any() else float("nan"))
    return {"mae": mae(ok), "n": int(ok.sum()), "high_latitude": high_latitude,
            "mae_high_latitude": mae(north), "n_high_latitude": int(north.sum())}
