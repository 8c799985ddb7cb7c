"""``ciml-ter analyze``: budgets, trends, driver contributions, regions and product comparison
(``ciml_ter.analysis``) from a prediction run's ``ter.nc``; results as NetCDF, CSV and JSON with
units."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ciml_ter.analysis import analyze_run, write_maps
from ciml_ter.config import PipelineConfig
from ciml_ter.data.cube import open_cube
from ciml_ter.errors import InputError
from ciml_ter.files import check_output, fingerprint, output_folder
from ciml_ter.sitetable import read_site_table
from ciml_ter.stages import Runtime, stamp
from ciml_ter.tiles import RunDir
from ciml_ter.units import TER_PER_DAY, TER_PER_MONTH, TER_UNITS


@dataclass
class AnalyzeSummary:
    """An analysis written to ``out``: its summary.json document."""

    out: Path
    summary: dict

    def lines(self) -> list[str]:
        return [self.headline, f"wrote {self.out}"]

    @property
    def headline(self) -> str:
        """The mean annual TER and, from three complete years on, its trend."""
        b = self.summary["budget"]
        line = f"mean annual TER {b['mean_pg_c_yr']:.3f} Pg C/yr over {len(b['years'])} year(s)"
        if "trend" in self.summary:
            t = self.summary["trend"]
            return line + f"; trend {t['slope']:+.4f} Pg C/yr2 ({t['percent_per_step']:+.2f} %/yr)"
        return line + "; no trend (fewer than 3 complete years)"


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


def read_region_masks(paths, lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """(lat, lon) bool masks from NetCDF files on the run's grid: one per variable, or one per
    flag of a variable with ``flag_values`` / ``flag_meanings``."""
    masks = {}
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


def made_from(run_id: str, config: PipelineConfig, *, sites: Path | None = None, compare=(),
              region_masks=()) -> dict:
    """The stamp of an analysis of the run ``run_id`` (``stages.stamp``): the site table, products
    and masks when given."""
    inputs = {"run": run_id}
    if sites is not None:
        inputs["sites"] = fingerprint(sites)
    if compare:
        inputs["compare"] = [fingerprint(p) for p in compare]
    if region_masks:
        inputs["region_masks"] = [fingerprint(p) for p in region_masks]
    return stamp(config, **inputs)


def analyze(run: Path, out: Path, config: PipelineConfig, runtime: Runtime, *, compare=(), region_masks=(),
            sites: Path | None = None) -> AnalyzeSummary:
    """Analyse the run directory ``run``; write summary.json, budget.csv, regions.csv, drivers.csv,
    dependence.csv and maps.nc into ``out``, a folder built whole (nothing is left of a failed
    analysis, nor of an older one). ``compare``: other TER products (NetCDF); ``region_masks``:
    NetCDF masks on the run's grid; ``sites``: a site-month table whose towers score the map. The
    summary carries the run's ``run_id`` and ``model_id``, which the report checks."""
    check_output(out, "folder")
    rundir = RunDir(run)
    output = rundir.read_output(shap=True)
    manifest = rundir.manifest()
    masks = read_region_masks(region_masks, output.lat, output.lon)
    products = {Path(p).stem: product_monthly(Path(p)) for p in compare}
    observed = read_site_table(Path(sites)).frame if sites is not None else None
    features_path = manifest.get("features_path")
    cube = open_cube(features_path) if output.shap and features_path and Path(features_path).exists() else None
    found = analyze_run(output, config, region_masks=masks, products=products, observed=observed,
                        features_cube=cube, progress=runtime.progress)
    summary = {"units": found.summary["units"], "run": str(run), "run_id": manifest.get("run_id"),
               "model_id": manifest.get("model_id"),
               "made_from": made_from(manifest.get("run_id"), config, sites=sites, compare=compare,
                                      region_masks=region_masks), **found.summary}
    with output_folder(out) as tmp:
        for name, table in found.tables.items():
            table.to_csv(tmp / f"{name}.csv", index=False)
        write_maps(found, output, tmp)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    runtime.step(1, 1, "written")
    return AnalyzeSummary(Path(out), summary)
