"""Site-month tables (docs/architecture.md, "Input contract"): flux observations + predictors -> Parquet.

``build_site_table`` reads FLUXNET/ONEFlux folders and ABCflux CSVs
(:mod:`ciml_ter.data.flux`), then attaches predictors. Two predictor sources are planned:

* **site-only mode** (implemented): the tower's own monthly meteorology,
  :data:`SITE_ONLY_METEO` (``TA_F, SW_IN_F, LW_IN_F, VPD_F, P_F, TS_F_MDS_1, SWC_F_MDS_1``),
  in the units of the FLUXNET MM files (means of daily values), NaN where a site's file
  lacks the column (ABCflux rows: NaN unless the ABCflux file has columns of those very
  names), plus
    - ``lat``: signed latitude, kept as a predictor (the sign tells the hemisphere, which
      together with ``month`` places the season; an ``abs_lat`` would lose that);
    - ``month``: 1-12 of the observation (a model with ``[predictors] season`` takes the
      hemisphere-aware season terms instead, see :mod:`ciml_ter.predictors`).
* **cube mode**: predictors from a feature cube (``ciml-ter features``) at each site's pixel
  (nearest, or the 3 x 3 median), joined by month; sites outside the grid or on water and
  months outside the cube's period are left out and reported (:func:`cube_predictors`).
* **points mode**: predictors from point extracts at the towers (AppEEARS, ORNL DAAC subsets,
  Earth Engine exports, the long CSV; :mod:`ciml_ter.data.points`) through the same feature code
  as the map, the towers being the pixels of a cube; towers without points, points without a
  tower, inputs absent or all bad at a tower, and months outside the extracts are reported
  (:func:`point_predictors`).

Tables from a cube also have ``igbp``, the cube's land-cover class at the tower pixel. Tables from
a cube or point extracts record the units of their predictors (``units`` in the schema metadata),
which the model manifest keeps for ``predict`` to check a feature cube against.
Every table also carries, for each time-varying predictor, the context columns of
:mod:`ciml_ter.predictors` (``clim_``, ``prev1_``, ``prev3_`` + name) computed from the site's
complete record: in site-only mode every month of its FLUXNET files, also those whose flux
fails the target or QC rules (their meteorology is gap-filled and valid); in cube and points mode
the cube's (the extracts') months at the pixel, as ``predict`` computes them. They are not predictors of the table
(the schema metadata lists them under ``context``); a model picks the ones it uses.
The table has columns ``site, lat, lon, pft, time, ter`` (time = month start,
datetime64; ter in g C m-2 month-1) and ``ter_random_error`` (the tower's random error of the
month, one standard deviation in g C m-2 month-1, NaN where unknown: ``data.flux``), then the
predictor columns in training order. The
order is returned (``SiteTableReport.predictors``) and stored in the Parquet schema
metadata under the key ``ciml_ter`` (JSON), read back by :func:`read_site_table`, the one
reader of site-month tables, which checks them (``SiteTable``):
- the target column ``ter`` is required; rows whose ``ter`` is NaN are dropped (logged);
- a constant target is an InputError;
- predictors: the ``predictors`` list of the schema metadata, else every numeric column other
  than site, lat, lon, pft, time, ter, ter_random_error;
- an all-NaN predictor column is dropped with a warning in the log (not an error), and the
  model manifest records which features the model uses.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.config import FeaturesConfig
from ciml_ter.device import CPU
from ciml_ter.data.flux import (RANDOM_ERROR, FluxReport, duplicate_site_months, first_items, read_abcflux,
                                read_fluxnet_dir, rows_per_site)
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_output
from ciml_ter.predictors import (CONTEXT_PREFIXES, IGBP_COLUMN, context_driver, igbp_labels, record_context,
                                 series_context)
from ciml_ter.units import TER_UNITS

log = logging.getLogger(__name__)

SITE_ONLY_METEO = ("TA_F", "SW_IN_F", "LW_IN_F", "VPD_F", "P_F", "TS_F_MDS_1", "SWC_F_MDS_1")
SHORT_SITE_MONTHS = 12  # a site with fewer site-months has no whole seasonal cycle: kept, with a note
METADATA_KEY = b"ciml_ter"
TARGET = "ter"  # the target column, in units.TER_UNITS
BASE_COLUMNS = ("site", "lat", "lon", "pft", "time", TARGET)
FLUX_COLUMNS = (*BASE_COLUMNS, RANDOM_ERROR)  # what a table takes of the observations (the last optional)
REQUIRED_COLUMNS = ("site", "ter")


@dataclass
class SiteTableReport:
    """Reader counts plus what the table holds; ``lines()`` is for the CLI."""

    flux: FluxReport
    mode: str = "site-only"
    predictors: list[str] = field(default_factory=list)
    missing_predictors: dict[str, list[str]] = field(default_factory=dict)
    dropped_sites: dict[str, list[str]] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)  # predictor -> {"path", "products"}
    missing_inputs: dict[str, list[str]] = field(default_factory=dict)  # "input: reason" -> sites
    unmatched_points: list[str] = field(default_factory=list)  # point extracts' places without a tower
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    point_files: list[dict] = field(default_factory=list)  # per extract: file, format, product, layers
    units: dict[str, str] = field(default_factory=dict)  # predictor -> units (from a cube or point extracts)

    @property
    def provenance(self) -> dict:
        """What built the predictors, for the table's metadata: per predictor its path (cube or
        points), products and units, and how each point extract's layers were decoded."""
        out = {"predictor_sources": dict(self.sources)} if self.sources else {}
        if self.point_files:
            out["point_extracts"] = list(self.point_files)
        if self.units:
            out["units"] = dict(self.units)
        return out

    @property
    def rows(self) -> int:
        return self.flux.rows_kept

    def lines(self) -> list[str]:
        out = list(self.flux.lines())
        out.append(f"mode {self.mode}; predictors: {', '.join(self.predictors)}")
        for var, sites in self.missing_predictors.items():
            out.append(f"{var} absent or all missing (NaN) at {len(sites)} site(s): "
                       f"{', '.join(sites)}")
        for reason, sites in self.dropped_sites.items():
            out.append(f"left out, {reason}: {len(sites)} site(s): {', '.join(sites)}")
        for what, sites in self.missing_inputs.items():
            out.append(f"{what} at {len(sites)} site(s): {', '.join(sites)}")
        if self.unmatched_points:
            out.append(f"point extracts without a tower: {len(self.unmatched_points)}: "
                       f"{', '.join(self.unmatched_points)}")
        for path, why in self.skipped_files:
            out.append(f"skipped {path}: {why}")
        return out

    def as_dict(self) -> dict:
        return {"mode": self.mode, "predictors": list(self.predictors),
                "missing_predictors": dict(self.missing_predictors),
                "dropped_sites": dict(self.dropped_sites), "sources": dict(self.sources),
                "missing_inputs": dict(self.missing_inputs),
                "unmatched_points": list(self.unmatched_points),
                "skipped_files": [list(s) for s in self.skipped_files], **self.flux.as_dict()}


def read_observations(fluxnet_dirs: Sequence[Path] = (), abcflux_files: Sequence[Path] = (), *,
                      variables: Sequence[str] = SITE_ONLY_METEO, site_table: Path | None = None,
                      all_months: bool = False) -> tuple[pd.DataFrame, FluxReport]:
    """All flux observations, one row per site-month (first source wins on duplicates). With
    ``all_months`` the FLUXNET months that the target and QC rules remove stay in with ``ter``
    NaN (``flux.read_fluxnet_csv``): each site's complete meteorological record."""
    fluxnet_dirs, abcflux_files = list(fluxnet_dirs or ()), list(abcflux_files or ())
    if not fluxnet_dirs and not abcflux_files:
        raise InputError("no flux input given; expected at least one --fluxnet DIR or "
                         "--abcflux CSV")
    report = FluxReport()
    parts = []
    for folder in fluxnet_dirs:
        obs, rep = read_fluxnet_dir(Path(folder), site_table=site_table, variables=tuple(variables),
                                    all_months=all_months)
        parts.append(obs)
        report.merge(rep)
    for path in abcflux_files:
        obs, rep = read_abcflux(Path(path), variables=tuple(variables))
        parts.append(obs)
        report.merge(rep)
    obs = pd.concat(parts, ignore_index=True)
    dup = duplicate_site_months(obs)
    report.remove("same site-month in two inputs (first kept)", (dup & obs["ter"].notna()).sum(), "sites")
    obs = obs[~dup].sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    report.kept_per_site = rows_per_site(obs)
    if not report.kept_per_site:
        raise InputError(f"no site-month passed the rules in {', '.join(report.files)}; "
                         f"removed: {report.removed}")
    short = {site: n for site, n in report.kept_per_site.items() if n < SHORT_SITE_MONTHS}
    if short:
        report.note(f"{len(short)} site(s) with fewer than {SHORT_SITE_MONTHS} site-months (less than one seasonal "
                    "cycle), kept: " + first_items(f"{site} ({n})" for site, n in short.items()))
    return obs, report


def _flux_columns(obs: pd.DataFrame) -> list[str]:
    """The columns a table takes of the observations: ``BASE_COLUMNS`` and the random error when
    the observations have one."""
    return [c for c in FLUX_COLUMNS if c in obs.columns or c in BASE_COLUMNS]


def site_only_predictors(obs: pd.DataFrame, *, meteo: Sequence[str] = SITE_ONLY_METEO
                         ) -> tuple[pd.DataFrame, list[str]]:
    """Site-only predictors: tower meteorology + ``lat`` + ``month``."""
    table = obs.loc[:, _flux_columns(obs)].copy()
    table["time"] = pd.to_datetime(table["time"]).astype("datetime64[ns]")
    for var in meteo:
        table[var] = obs[var].astype(float) if var in obs.columns else np.nan
    month = pd.DatetimeIndex(table["time"]).month.to_numpy()
    table["month"] = month.astype(np.int64)
    return table, [*meteo, "lat", "month"]


def cube_predictors(obs: pd.DataFrame, features: Path, *, window: int = 1
                    ) -> tuple[pd.DataFrame, list[str], dict[str, list[str]], dict[str, str]]:
    """Predictors from a feature cube at each site's pixel, joined by month.

    ``window`` 1 takes the nearest pixel, 3 the median of the 3 x 3 pixels around it (NaN
    ignored). Sites outside the grid or on a water pixel are left out and listed in the
    returned ``dropped`` mapping (reason -> sites), as are months outside the cube's period.
    Returns the table, the predictor order, ``dropped`` and the cube's units of each predictor.
    """
    from ciml_ter.data.cube import open_cube

    if window not in (1, 3):
        raise InputError(f"window: expected 1 (nearest pixel) or 3 (3 x 3 median), found {window}")
    cube = open_cube(features)
    if "features" not in cube.attrs:
        raise InputError(f"{features}: no 'features' attribute; expected a cube written by "
                         "'ciml-ter features'")
    names = json.loads(cube.attrs["features"])
    lat, lon = cube.lat.values, cube.lon.values
    dlat, dlon = abs(lat[1] - lat[0]) if lat.size > 1 else 1.0, abs(lon[1] - lon[0]) if lon.size > 1 else 1.0
    months = pd.DatetimeIndex(cube.time.values)
    land = np.asarray(cube.land.values, dtype=bool)
    dropped: dict[str, list[str]] = {}
    parts = []
    half = window // 2
    for site, rows in obs.groupby("site", sort=True):
        slat, slon = float(rows["lat"].iloc[0]), float(rows["lon"].iloc[0])
        i, j = int(np.abs(lat - slat).argmin()), int(np.abs(lon - slon).argmin())
        if abs(lat[i] - slat) > dlat / 2 + 1e-9 or abs(lon[j] - slon) > dlon / 2 + 1e-9:
            dropped.setdefault("outside the grid", []).append(str(site))
            continue
        if not land[i, j]:
            dropped.setdefault("on a water pixel", []).append(str(site))
            continue
        ys = slice(max(i - half, 0), i + half + 1)
        xs = slice(max(j - half, 0), j + half + 1)
        block = np.stack([np.asarray(cube[n].isel(lat=ys, lon=xs).values, dtype=float) for n in names])
        with np.errstate(all="ignore"):
            values = block[:, :, 0, 0] if window == 1 else np.nanmedian(block.reshape(*block.shape[:2], -1), axis=2)
        index = months.get_indexer(pd.DatetimeIndex(rows["time"]))
        inside = index >= 0
        if not inside.all():
            dropped.setdefault("months outside the cube period", []).append(f"{site} ({(~inside).sum()})")
        table = rows.loc[inside, _flux_columns(obs)].copy()
        for k, n in enumerate(names):
            table[n] = values[k, index[inside]]
        for k in (k for k, n in enumerate(names) if "time" in cube[n].dims):
            for prefix in CONTEXT_PREFIXES:  # over the cube's months, as ``predict`` at this pixel
                table[prefix + names[k]] = series_context(values[k][:, None], prefix)[index[inside], 0]
        if "pft" in cube:  # the land-cover class at the tower pixel (predictors.igbp)
            table[IGBP_COLUMN] = igbp_labels(np.asarray(cube.pft.values)[i, j], dict(cube.pft.attrs)).item()
        parts.append(table)
    if not parts:
        raise InputError(f"{features}: no flux site falls on a land pixel of the cube "
                         f"({', '.join(f'{k}: {len(v)}' for k, v in dropped.items())})")
    units = {n: str(cube[n].attrs["units"]) for n in names if "units" in cube[n].attrs}
    return pd.concat(parts, ignore_index=True), names, dropped, units


def _predictor_inputs(name: str, given: dict) -> tuple[str, ...]:
    """The contract variables behind a predictor of the feature code (``given``: the variables
    the inputs hold): NIRv and SCVTG from nirv or (nir, red), LSWI from lswi or (nir, swir1)."""
    from ciml_ter.features import MONTHLY, STATIC

    if name == "lswi":
        return ("lswi",) if "lswi" in given else ("nir", "swir1")
    if name == "nirv" or name not in (*MONTHLY, *STATIC):
        return ("nirv",) if "nirv" in given else ("nir", "red")
    return (name,)


def point_predictors(obs: pd.DataFrame, points: Sequence[str], *, window: int = 1,
                     config: FeaturesConfig | None = None, tolerance_km: float | None = None
                     ) -> tuple[pd.DataFrame, list[str], SiteTableReport]:
    """Predictors from point extracts at the towers, by the feature code of the map.

    ``points``: ``[PRODUCT=]PATH`` items (files or folders); ``window``: the central window x
    window pixels of ORNL subsets; ``tolerance_km``: matching by coordinates (default
    ``data.points.cube.MATCH_KM``). The towers are the pixels of a contract cube
    (``data.points.cube``); ``features.plan`` and ``features.band_features`` compute its monthly
    predictors with ``config``, joined to the flux months. Returns the table, the predictor
    order and a partial report (mode, sources, sites left out, points without a tower, inputs
    missing per tower, skipped files).
    """
    from ciml_ter.data.points.cube import MATCH_KM, point_cube
    from ciml_ter.data.points.extracts import read_points
    from ciml_ter.features import band_features, plan

    config = config or FeaturesConfig()
    files = read_points(points, window)
    towers = obs.groupby("site", sort=True)[["lat", "lon"]].first().reset_index()
    cube = point_cube(files, towers, MATCH_KM if tolerance_km is None else tolerance_km)
    plan_ = plan(cube.ds, "point extracts", None, config, CPU)
    features = band_features(cube.ds, slice(0, 1), plan_, config, np)
    names = list(plan_.features)
    dropped: dict[str, list[str]] = {}
    if cube.without_points:
        dropped["no point extract matches the tower"] = list(cube.without_points)
    column = pd.Series(np.arange(len(cube.sites)), index=cube.sites).reindex(obs["site"]).to_numpy()
    month = plan_.months.get_indexer(pd.DatetimeIndex(obs["time"]))
    with_points = ~np.isnan(column)
    inside = with_points & (month >= 0)
    outside = obs.loc[with_points & ~inside, "site"].value_counts(sort=False)
    kept = set(obs.loc[inside, "site"])
    for site, n in sorted(outside.items()):
        if site in kept:
            dropped.setdefault("months outside the point extracts' period", []).append(f"{site} ({n})")
        else:
            dropped.setdefault("point extracts outside the tower's months", []).append(site)
    if not inside.any():
        raise InputError(f"the point extracts ({plan_.months[0]:%Y-%m} to {plan_.months[-1]:%Y-%m}) cover "
                         f"none of the flux months of the {len(cube.sites)} matched tower(s)")
    table = obs.loc[inside, _flux_columns(obs)].reset_index(drop=True)
    rows, cols = month[inside], column[inside].astype(np.int64)
    for n in names:
        values = np.asarray(features[n].values, dtype=np.float64)
        table[n] = values[rows, 0, cols]
        if "time" in features[n].dims:  # over the extracts' months, as ``predict`` at a pixel
            for prefix in CONTEXT_PREFIXES:
                table[prefix + n] = series_context(values[:, 0, :], prefix)[rows, cols]
    sources = {n: {"path": "points", "products": sorted({p for v in _predictor_inputs(n, cube.sources)
                                                         for p in cube.sources.get(v, [])})} for n in names}
    report = SiteTableReport(flux=FluxReport(), mode="points", predictors=names,
                             missing_inputs=dict(cube.missing), dropped_sites=dropped, sources=sources,
                             unmatched_points=list(cube.unmatched), skipped_files=list(files.skipped),
                             point_files=list(cube.files), units={n: str(features[n].attrs["units"]) for n in names})
    return table, names, report


def build_site_table(fluxnet_dirs: Sequence[Path] = (), abcflux_files: Sequence[Path] = (), *,
                     features: Path | None = None, meteo: Sequence[str] = SITE_ONLY_METEO, window: int = 1,
                     site_table: Path | None = None, points: Sequence[str] = (), points_window: int = 1,
                     features_config: FeaturesConfig | None = None
                     ) -> tuple[pd.DataFrame, SiteTableReport]:
    """Build the site-month table from FLUXNET folders and ABCflux CSVs.

    With ``features`` (a cube from ``ciml-ter features``) the predictors are the cube's at each
    site's pixel (``window`` 1 or 3); with ``points`` (``[PRODUCT=]PATH`` of point extracts) those
    of the extracts through the feature code (``features_config``; ``points_window`` for ORNL
    subsets, :func:`point_predictors`); without either (site-only mode) the tower meteorology
    ``meteo`` plus ``lat`` and ``month`` (see the module docstring).
    Returns the table and a report (counts per rule, predictor order, sites left out).
    """
    if features is not None and points:
        raise InputError("give --features or --points, not both: predictors come from one path")
    everything, flux_report = read_observations(fluxnet_dirs, abcflux_files, variables=meteo,
                                                site_table=site_table, all_months=True)
    obs = everything[everything[TARGET].notna()].reset_index(drop=True)
    if points:
        table, predictors, report = point_predictors(obs, points, window=points_window, config=features_config)
        report.flux = flux_report
        for reason, sites in {**report.dropped_sites, **report.missing_inputs}.items():
            log.info("sites %s: %s", reason, ", ".join(sites))
        table.attrs["predictors"] = list(predictors)
        return table, report
    if features is not None:
        table, predictors, dropped, units = cube_predictors(obs, Path(features), window=window)
        for reason, sites in dropped.items():
            log.info("sites %s: %s", reason, ", ".join(sites))
        report = SiteTableReport(flux=flux_report, mode=f"cube {features}", predictors=predictors,
                                 dropped_sites=dropped, units=units,
                                 sources={n: {"path": "cube", "cube": str(features)} for n in predictors})
        table.attrs["predictors"] = list(predictors)
        return table, report
    table, predictors = site_only_predictors(everything, meteo=meteo)
    context = record_context(table, [p + v for v in meteo for p in CONTEXT_PREFIXES])
    table = pd.concat([table, context], axis=1)[table[TARGET].notna()].reset_index(drop=True)
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
                     mode: str = "site-only", provenance: dict | None = None) -> Path:
    """Write the table as Parquet with the predictor order (and ``provenance``, e.g.
    ``SiteTableReport.provenance``) in the schema metadata."""
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
    meta = {"predictors": predictors, "target": "ter", "target_units": TER_UNITS,
            "mode": mode, "time": "month start",
            "context": [c for c in frame.columns if c not in predictors and context_driver(c)],
            "context_record": "each site's complete record: every month of its flux files whatever the "
                              "flux quality flags (site-only mode), the cube's or the point extracts' months "
                              "(cube and points mode)", **(provenance or {})}
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[METADATA_KEY] = json.dumps(meta).encode()
    with atomic_output(path) as tmp:
        pq.write_table(table.replace_schema_metadata(schema_meta), tmp)
    return path


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict]:
    """Read a site-month Parquet table and its ``ciml_ter`` schema metadata.

    The metadata (written by :func:`write_site_table`) gives the predictor order; a table
    from elsewhere has none, and ``meta`` is then empty (``predictors`` absent).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: site table not found (no such file)")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types for a file that is not Parquet
        raise InputError(f"{path}: expected a Parquet site-month table, could not read it "
                         f"({type(exc).__name__}: {exc})") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    try:
        meta = json.loads(raw) if raw is not None else {}
        predictors = meta.get("predictors")
        if predictors is not None and not (isinstance(predictors, list)
                                           and all(isinstance(p, str) for p in predictors)):
            raise ValueError
    except (ValueError, AttributeError):
        raise InputError(f"{path}: schema metadata 'ciml_ter': expected JSON with a 'predictors' "
                         f"list of column names, found {raw[:60]!r}") from None
    df = table.to_pandas()
    if "time" in df.columns:
        df["time"] = pd.to_datetime(df["time"]).astype("datetime64[ns]")
    return df, meta


# --------------------------------------------------------------------------- checked table
@dataclass
class SiteTable:
    """A validated site-month table: the frame (sorted by site, time) and its predictor list."""

    frame: pd.DataFrame
    features: list[str]
    path: str = "<table>"
    dropped_features: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # the Parquet schema metadata ``ciml_ter``

    @property
    def x(self) -> np.ndarray:
        return self.frame[self.features].to_numpy(dtype=np.float32)

    @property
    def y(self) -> np.ndarray:
        return self.frame[TARGET].to_numpy(dtype=np.float64)

    @property
    def sites(self) -> np.ndarray:
        return self.frame["site"].astype(str).to_numpy()


def read_site_table(path: str | Path) -> SiteTable:
    """Read a site-month Parquet table (``write_site_table``) and check it (``site_table_from_frame``);
    the predictor order comes from its schema metadata, or is every other numeric column."""
    frame, meta = _read_parquet(Path(path))
    table = site_table_from_frame(frame, str(path), meta.get("predictors"))
    table.meta = meta
    return table


def site_table_from_frame(frame: pd.DataFrame, source: str = "<table>",
                          features: list[str] | None = None) -> SiteTable:
    """Validate a site-month frame; predictors = ``features`` or every other numeric column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}; expected a site-month "
                         f"table with columns {', '.join(BASE_COLUMNS)} plus predictors, found "
                         f"{', '.join(map(str, frame.columns[:12]))}")
    if features is None:
        features = [c for c in frame.columns if c not in FLUX_COLUMNS and not context_driver(c)
                    and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    else:
        absent = [c for c in features if c not in frame.columns]
        if absent:
            raise InputError(f"{source}: predictor column(s) {', '.join(absent)} listed in the schema "
                             f"metadata 'ciml_ter' are not in the table")
        bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise InputError(f"{source}: predictor column(s) {', '.join(bad)}: expected numbers, "
                             f"found {', '.join(str(frame[c].dtype) for c in bad)}")
    if not pd.api.types.is_numeric_dtype(frame[TARGET]):
        raise InputError(f"{source}: column 'ter': expected numbers ({TER_UNITS}), found "
                         f"{frame[TARGET].dtype}")
    frame = frame.copy()
    frame["site"] = frame["site"].astype(str)
    n_rows = len(frame)
    frame = frame[np.isfinite(frame[TARGET].to_numpy(dtype=np.float64))]
    if len(frame) < n_rows:
        log.warning("%s: dropped %d of %d rows whose 'ter' is missing", source, n_rows - len(frame), n_rows)
    if len(frame) == 0:
        raise InputError(f"{source}: column 'ter': expected observed values, found none (all missing)")
    if np.ptp(frame[TARGET].to_numpy(dtype=np.float64)) == 0:
        raise InputError(f"{source}: column 'ter': expected varying observations, found a constant "
                         f"({frame[TARGET].iloc[0]!r} in all {len(frame)} rows)")
    dropped = [c for c in features if frame[c].isna().all()]
    if dropped:
        log.warning("%s: dropped all-missing predictor column(s) %s", source, ", ".join(dropped))
    features = [c for c in features if c not in dropped]
    if not features:
        raise InputError(f"{source}: expected at least one predictor column with values, found none")
    if "pft" not in frame.columns:
        frame["pft"] = "ALL"
    frame["pft"] = frame["pft"].astype(str)
    order = ["site", "time"] if "time" in frame.columns else ["site"]
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    return SiteTable(frame, list(features), source, dropped)
