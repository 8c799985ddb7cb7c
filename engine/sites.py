"""Site-month tables (DESIGN.md section 3): flux observations + predictors -> Parquet.

``build_site_table`` reads FLUXNET/ONEFlux folders and ABCflux CSVs
(:mod:`ciml_ter.data.flux`), then attaches predictors. Two predictor sources are planned:

* **site-only mode** (implemented): the tower's own monthly meteorology,
  :data:`SITE_ONLY_METEO` (``TA_F, SW_IN_F, LW_IN_F, VPD_F, P_F, TS_F_MDS_1, SWC_F_MDS_1``),
  in the units of the FLUXNET MM files (means of daily values), NaN where a site's file
  lacks the column (ABCflux rows: NaN unless the ABCflux file has columns of those very
  names), plus
    - ``lat``: signed latitude, kept as a predictor (the sign tells the hemisphere, which
      together with ``month`` places the season; an ``abs_lat`` would lose that);
    - ``month``: 1-12 of the observation; with ``cyclic_month=True`` also ``month_sin`` and
      ``month_cos`` (off by default: they are exact functions of ``month`` and such
      deterministic twins confuse conditional-independence tests in causal discovery).
* **cube mode** (later step): predictors from a feature cube at each site's pixel, via a
  function with the signature of :func:`site_only_predictors` (observations in,
  ``(table, predictor names)`` out); ``build_site_table(features=...)`` will dispatch to it.

The table has columns ``site, lat, lon, pft, time, ter`` (time = month start,
datetime64; ter in g C m-2 month-1), then the predictor columns in training order. The
order is returned (``SiteTableReport.predictors``) and stored in the Parquet schema
metadata under the key ``ciml_ter`` (JSON), read back by :func:`read_site_table`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.data.flux import FluxReport, read_abcflux, read_fluxnet_dir, rows_per_site
from ciml_ter.errors import InputError

log = logging.getLogger("ciml_ter.flux")

SITE_ONLY_METEO = ("TA_F", "SW_IN_F", "LW_IN_F", "VPD_F", "P_F", "TS_F_MDS_1", "SWC_F_MDS_1")
BASE_COLUMNS = ("site", "lat", "lon", "pft", "time", "ter")
TARGET_UNITS = "g C m-2 month-1"
METADATA_KEY = b"ciml_ter"


@dataclass
class SiteTableReport:
    """Reader counts plus what the table holds; ``lines()`` is for the CLI."""

    flux: FluxReport
    mode: str = "site-only"
    predictors: list[str] = field(default_factory=list)
    missing_predictors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.flux.rows_kept

    def lines(self) -> list[str]:
        out = list(self.flux.lines())
        out.append(f"mode {self.mode}; predictors: {', '.join(self.predictors)}")
        for var, sites in self.missing_predictors.items():
            out.append(f"{var} absent or all missing (NaN) at {len(sites)} site(s): "
                       f"{', '.join(sites)}")
        return out

    def as_dict(self) -> dict:
        return {"mode": self.mode, "predictors": list(self.predictors),
                "missing_predictors": dict(self.missing_predictors), **self.flux.as_dict()}


def read_observations(fluxnet_dirs: Sequence[Path] = (), abcflux_files: Sequence[Path] = (), *,
                      variables: Sequence[str] = SITE_ONLY_METEO,
                      site_table: Path | None = None) -> tuple[pd.DataFrame, FluxReport]:
    """All flux observations, one row per site-month (first source wins on duplicates)."""
    fluxnet_dirs, abcflux_files = list(fluxnet_dirs or ()), list(abcflux_files or ())
    if not fluxnet_dirs and not abcflux_files:
        raise InputError("no flux input given; expected at least one --fluxnet DIR or "
                         "--abcflux CSV")
    report = FluxReport()
    parts = []
    for folder in fluxnet_dirs:
        obs, rep = read_fluxnet_dir(Path(folder), site_table=site_table, variables=tuple(variables))
        parts.append(obs)
        report.merge(rep)
    for path in abcflux_files:
        obs, rep = read_abcflux(Path(path), variables=tuple(variables))
        parts.append(obs)
        report.merge(rep)
    obs = pd.concat(parts, ignore_index=True)
    dup = obs.duplicated(["site", "time"], keep="first")
    report.remove("same site-month in two inputs (first kept)", dup.sum(), "sites")
    obs = obs[~dup].sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    report.kept_per_site = rows_per_site(obs)
    if obs.empty:
        raise InputError(f"no site-month passed the rules in {', '.join(report.files)}; "
                         f"removed: {report.removed}")
    return obs, report


def site_only_predictors(obs: pd.DataFrame, *, meteo: Sequence[str] = SITE_ONLY_METEO,
                         cyclic_month: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Site-only predictors: tower meteorology + ``lat`` + ``month`` (+ sin/cos)."""
    table = obs.loc[:, list(BASE_COLUMNS)].copy()
    table["time"] = pd.to_datetime(table["time"]).astype("datetime64[ns]")
    for var in meteo:
        table[var] = obs[var].astype(float) if var in obs.columns else np.nan
    month = pd.DatetimeIndex(table["time"]).month.to_numpy()
    table["month"] = month.astype(np.int64)
    predictors = [*meteo, "lat", "month"]
    if cyclic_month:
        table["month_sin"] = np.sin(2 * np.pi * (month - 0.5) / 12.0)
        table["month_cos"] = np.cos(2 * np.pi * (month - 0.5) / 12.0)
        predictors += ["month_sin", "month_cos"]
    return table, predictors


def build_site_table(fluxnet_dirs: Sequence[Path] = (), abcflux_files: Sequence[Path] = (), *,
                     features: Path | None = None, meteo: Sequence[str] = SITE_ONLY_METEO,
                     cyclic_month: bool = False,
                     site_table: Path | None = None) -> tuple[pd.DataFrame, SiteTableReport]:
    """Build the site-month table from FLUXNET folders and ABCflux CSVs.

    Without ``features`` (site-only mode) the predictors are the tower meteorology
    ``meteo`` plus ``lat`` and ``month`` (see the module docstring).
    Returns the table and a report (counts per rule, predictor order).
    """
    if features is not None:
        raise InputError(f"{features}: predictors from a feature cube are not implemented yet; "
                         "omit --features to build a site-only table from tower meteorology")
    obs, flux_report = read_observations(fluxnet_dirs, abcflux_files, variables=meteo,
                                         site_table=site_table)
    table, predictors = site_only_predictors(obs, meteo=meteo, cyclic_month=cyclic_month)
    missing = {}
    for var in meteo:
        absent = table.groupby("site")[var].apply(lambda s: bool(s.isna().all()))
        sites = sorted(str(s) for s in absent[absent].index)
        if sites:
            missing[var] = sites
            log.info("predictor %s is all NaN at %d site(s): %s", var, len(sites), ", ".join(sites))
    report = SiteTableReport(flux=flux_report, mode="site-only", predictors=predictors,
                             missing_predictors=missing)
    table.attrs["predictors"] = list(predictors)
    return table, report


def write_site_table(df: pd.DataFrame, path: Path, *, predictors: Sequence[str] | None = None,
                     mode: str = "site-only") -> Path:
    """Write the table as Parquet with the predictor order in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    predictors = list(predictors if predictors is not None else df.attrs.get("predictors", []))
    missing = [c for c in [*BASE_COLUMNS, *predictors] if c not in df.columns]
    if missing:
        raise InputError(f"{path}: site table to write lacks column(s) {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = df.loc[:, [*BASE_COLUMNS, *[c for c in df.columns if c not in BASE_COLUMNS]]].copy()
    frame.attrs = {}
    frame["time"] = pd.to_datetime(frame["time"]).astype("datetime64[ms]")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {"predictors": predictors, "target": "ter", "target_units": TARGET_UNITS,
            "mode": mode, "time": "month start"}
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[METADATA_KEY] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(schema_meta), path)
    return path


def read_site_table(path: Path) -> tuple[pd.DataFrame, dict]:
    """Read a site-month Parquet table and its ``ciml_ter`` metadata (predictor order)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: site table not found (no such file)")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise InputError(f"{path}: Parquet metadata key 'ciml_ter' missing; expected a table "
                         "written by 'ciml-ter sites'")
    meta = json.loads(raw)
    df = table.to_pandas()
    df["time"] = pd.to_datetime(df["time"]).astype("datetime64[ns]")
    df.attrs["predictors"] = list(meta.get("predictors", []))
    return df, meta
