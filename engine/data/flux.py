"""Flux-site readers (docs/architecture.md, "Input contract"): FLUXNET2015 / ONEFlux monthly CSVs and ABCflux.

Every reader returns observations in one long format, one row per site-month:

    site, lat, lon, pft, time (datetime64, month start), ter (g C m-2 month-1),
    source (file the row came from), then any meteorology columns that were read.

and a :class:`FluxReport` that counts, per rule, how many rows were removed (also logged
through the ``ciml_ter.flux`` logger), so the CLI can print what happened to the data.

No silent coercion
    Every numeric column a reader uses (the target, the QC flag, the requested meteorology,
    ABCflux coordinates/year/month, site-table coordinates) is read as text first and each
    cell that does not become a number is counted, per kind, column and file
    (``FluxReport.cells[kind][column][file]``; up to five distinct bad texts per column and
    file in ``FluxReport.cell_examples``). The kinds, all treated as missing:

    * ``-9999 (missing code)``: the documented missing value (any value within 0.5 of it);
    * ``below -9999``: a number under the code (e.g. ``-99999``), taken as missing like it;
    * ``empty``: an empty (or blank) cell;
    * ``not a number``: any other text (``warm``, ``n/a``, ``NaN``, ``inf``, ``1,5``), shown
      with examples; these are also the ``dirty_cells`` per column.

    ``FluxReport.lines()`` prints one line per column and kind that occurred, with the count,
    the examples and the files named (the first three, with their counts, then how many in
    all), so an input without such cells prints nothing extra; the per-file detail is in
    ``as_dict()["cells"]``. Rows dropped for the target get one rule per kind.

FLUXNET rules
    * files: ``<PREFIX>_<SITE>_FLUXNET[2015]_(SUBSET|FULLSET)_MM_*.csv`` (FLUXNET2015
      ``FLX_``, AmeriFlux ``AMF_``, ICOS ``ICOSETC_`` ...); other resolutions are ignored;
    * ``TIMESTAMP`` is YYYYMM; ``-9999`` is missing;
    * target ``ter = RECO_NT_VUT_REF (g C m-2 d-1) x days in the month`` (leap Februaries 29);
    * ``ter_random_error = NEE_VUT_REF_RANDUNC (g C m-2 d-1) x days in the month``: the random
      error (one standard deviation) of the month's flux, the only random error FLUXNET gives;
      taken for TER's (NaN where absent, -9999 or negative: the intervals count such months as
      exact, ``uncertainty``);
    * a row is kept only where the target is a number and ``NEE_VUT_REF_QC >= 0.75``; rows
      without a target are counted under ``RECO_NT_VUT_REF missing (-9999)``, ``... below
      -9999``, ``... empty`` or ``... not a number`` after what the cell held;
    * site coordinates and IGBP class come from the site table (``sites.csv`` beside the
      files: ``SITE_ID, LOCATION_LAT, LOCATION_LONG, IGBP``);
    * FLUXNET files of another time step (``_DD_``, ``_HH_``, ...) in the folder are not read,
      and a note names them.

The target's plausible range (both readers)
    ``data.contract.TER_RANGE`` (g C m-2 month-1): when more than ``MAX_OUT_OF_RANGE`` of a
    site's months in a file lie outside it, the file is refused naming the site and the values
    found (daily values read as monthly ones, a factor 30, a flipped sign); fewer are removed
    and counted under their own rule.

ABCflux rules
    * columns ``site_name, latitude, longitude, year, month, reco`` (g C m-2 month-1);
    * a description row of text above or under the header is detected and skipped; when its
      ``reco`` cell names the unit, per-day values (``g C m-2 d-1``) are converted (times the
      days of the month, with a note) and any unit other than g C m-2 per month or day is
      refused; without a unit there, ``reco`` is taken as g C m-2 month-1;
    * a site is at one place: a site whose coordinates differ between rows is refused;
    * dirty cells (``-``, ``inf``, ``NA``, empty, any non-number) are missing and counted
      (empty cells and ``-9999`` under their own kinds, see above);
    * ``pft`` comes from a ``pft``/``igbp`` column when present, otherwise ``"UNK"``;
    * ``ter_random_error`` is NaN (ABCflux gives none).
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.data.contract import MAX_OUT_OF_RANGE, TER_RANGE
from ciml_ter.errors import InputError
from ciml_ter.units import TER_UNITS

log = logging.getLogger("ciml_ter.flux")

TARGET = "RECO_NT_VUT_REF"
QC = "NEE_VUT_REF_QC"
RANDOM_ERROR_COLUMN = "NEE_VUT_REF_RANDUNC"  # g C m-2 d-1, one standard deviation
RANDOM_ERROR = "ter_random_error"  # its column in observations and site tables, g C m-2 month-1
QC_MIN = 0.75
MISSING = -9999.0
UNKNOWN_PFT = "UNK"
SITE_TABLE = "sites.csv"
# The 20-site FLUXNET2015 monthly sample shipped with the package (CC-BY-4.0, see its CITATION.md)
SHIPPED_SAMPLE = Path(__file__).resolve().with_name("fluxnet2015_mm")
SAMPLE_WORD = "sample"  # --fluxnet sample / [paths] fluxnet = ["sample"]: the shipped sample
SITE_TABLE_COLUMNS = ("SITE_ID", "LOCATION_LAT", "LOCATION_LONG", "IGBP")
ABCFLUX_COLUMNS = ("site_name", "latitude", "longitude", "year", "month", "reco")
ABCFLUX_PFT_COLUMNS = ("pft", "PFT", "igbp", "IGBP")
OBS_COLUMNS = ("site", "lat", "lon", "pft", "time", "ter", RANDOM_ERROR, "source")

# kinds of numeric cell treated as missing, in the order the report lists them
CELL_TEXT = "not a number"
CELL_EMPTY = "empty"
CELL_BELOW = "below -9999"
CELL_MISSING = "-9999 (missing code)"
CELL_KINDS = (CELL_TEXT, CELL_EMPTY, CELL_BELOW, CELL_MISSING)
CELL_EXAMPLES = 5  # distinct bad texts kept per column and file
_CELL_WORDS = {  # (singular, plural) phrase for FluxReport.lines()
    CELL_TEXT: ("holds text that is not a number", "hold text that is not a number"),
    CELL_EMPTY: ("is empty", "are empty"),
    CELL_BELOW: ("holds a number below -9999", "hold numbers below -9999"),
    CELL_MISSING: ("is -9999 (missing code)", "are -9999 (missing code)"),
}

# <PREFIX>_<SITE>_FLUXNET[2015]_<SUBSET|FULLSET>_MM_<anything>.csv ; ICOS L2 archives
# drop the SUBSET/FULLSET token (ICOSETC_BE-Bra_FLUXNET_MM_L2.csv), so it is optional.
_FLUXNET_MM = re.compile(
    r"^[A-Za-z0-9]+_(?P<site>[A-Za-z]{2}-[A-Za-z0-9]{3})_FLUXNET(?:2015)?"
    r"(?:_(?P<set>SUBSET|FULLSET))?_MM(?:_.*)?\.csv$", re.IGNORECASE)
_FLUXNET_ANY = re.compile(r"_FLUXNET(?:2015)?_", re.IGNORECASE)


@dataclass
class FluxReport:
    """What the readers did: files read, rows read, rows removed per rule, rows kept per site.

    ``cells[kind][column][file]`` counts the numeric cells treated as missing (kinds
    :data:`CELL_KINDS`), ``cell_examples[column][file]`` holds a few distinct texts of the
    ``not a number`` cells, and ``dirty_cells[column]`` totals those per column.
    """

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    dirty_cells: dict[str, int] = field(default_factory=dict)
    kept_per_site: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cells: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    cell_examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def rows_kept(self) -> int:
        return sum(self.kept_per_site.values())

    def remove(self, rule: str, n: int, where: str = "") -> None:
        """Count (and log) ``n`` rows removed by ``rule``; zero counts are recorded too."""
        n = int(n)
        self.removed[rule] = self.removed.get(rule, 0) + n
        if n:
            log.info("%s: %d rows removed (%s)", where or "flux", n, rule)

    def dirty(self, column: str, n: int, where: str = "", kind: str = CELL_TEXT,
              examples=()) -> None:
        """Count (and log) ``n`` cells of ``column`` in ``where`` treated as missing.

        ``kind`` is one of :data:`CELL_KINDS`; ``examples`` are bad texts (kind
        ``not a number``), of which the first few distinct ones are kept.
        """
        n = int(n)
        if not n:
            return
        if kind not in CELL_KINDS:
            raise ValueError(f"unknown cell kind {kind!r}; expected one of {CELL_KINDS}")
        per_file = self.cells.setdefault(kind, {}).setdefault(column, {})
        per_file[where] = per_file.get(where, 0) + n
        if kind == CELL_TEXT:
            self.dirty_cells[column] = self.dirty_cells.get(column, 0) + n
            kept = self.cell_examples.setdefault(column, {}).setdefault(where, [])
            for text in examples:
                if len(kept) >= CELL_EXAMPLES:
                    break
                if str(text) not in kept:
                    kept.append(str(text))
            log.info("%s: %d dirty cells in column %s treated as missing (not a number: %s)",
                     where, n, column, ", ".join(repr(t) for t in kept))
        else:
            log.info("%s: %d cells in column %s treated as missing (%s)", where, n, column, kind)

    def note(self, text: str) -> None:
        self.notes.append(text)
        log.info("%s", text)

    def merge(self, other: FluxReport) -> FluxReport:
        self.files += other.files
        self.rows_read += other.rows_read
        for k, v in other.removed.items():
            self.removed[k] = self.removed.get(k, 0) + v
        for k, v in other.dirty_cells.items():
            self.dirty_cells[k] = self.dirty_cells.get(k, 0) + v
        for kind, columns in other.cells.items():
            for column, per_file in columns.items():
                mine = self.cells.setdefault(kind, {}).setdefault(column, {})
                for where, n in per_file.items():
                    mine[where] = mine.get(where, 0) + n
        for column, per_file in other.cell_examples.items():
            for where, texts in per_file.items():
                kept = self.cell_examples.setdefault(column, {}).setdefault(where, [])
                kept += [t for t in texts if t not in kept][:max(0, CELL_EXAMPLES - len(kept))]
        for k, v in other.kept_per_site.items():
            self.kept_per_site[k] = self.kept_per_site.get(k, 0) + v
        self.notes += other.notes
        return self

    def lines(self) -> list[str]:
        """Human-readable summary, one line each, for the CLI.

        After the totals and the removal rules: one line per column and kind of cell treated
        as missing, e.g.

            TA_F: 1 cell holds text that is not a number ('warm'), treated as missing,
            in FLX_XX-Abc_FLUXNET2015_SUBSET_MM_2000-2000_1-4.csv

        (one line), naming the first three files with their counts and how many in all;
        ``-9999`` cells read "TS_F_MDS_1: 196 cells are -9999 (missing code) in 17 files: ...".
        Kinds in the order of :data:`CELL_KINDS`, the target and QC columns first; no line for
        a kind that did not occur, so clean input adds no lines.
        """
        out = [(f"{len(self.files)} files, {self.rows_read} rows read, "
                f"{self.rows_kept} site-months kept at {len(self.kept_per_site)} sites")]
        out += [f"removed {n} rows: {rule}" for rule, n in self.removed.items() if n]
        for kind in CELL_KINDS:
            columns = self.cells.get(kind, {})
            for column in sorted(columns, key=lambda c: (c != TARGET, c != QC)):
                per_file = columns[column]
                n = sum(per_file.values())
                if not n:
                    continue
                words = _CELL_WORDS[kind][n != 1]
                seen: list[str] = []
                if kind == CELL_TEXT:
                    for texts in self.cell_examples.get(column, {}).values():
                        seen += [t for t in texts if t not in seen]
                shown = (f" ({first_items([repr(t) for t in seen], CELL_EXAMPLES)})" if seen else "")
                files = [(w or "?", k) for w, k in per_file.items() if k]
                where = (files[0][0] if len(files) == 1 else f"{len(files)} files: " + first_items(
                    [f"{w} ({k})" for w, k in files], 3))
                what = "" if kind == CELL_MISSING else ", treated as missing,"
                out.append(f"{column}: {n} cell{'s' if n != 1 else ''} {words}{shown}{what} "
                           f"in {where}")
        out += list(self.notes)
        return out

    def as_dict(self) -> dict:
        return {"files": list(self.files), "rows_read": self.rows_read,
                "rows_kept": self.rows_kept, "removed": dict(self.removed),
                "dirty_cells": dict(self.dirty_cells), "kept_per_site": dict(self.kept_per_site),
                "notes": list(self.notes),
                "cells": {k: {c: dict(f) for c, f in cols.items()}
                          for k, cols in self.cells.items()},
                "cell_examples": {c: {w: list(t) for w, t in f.items()}
                                  for c, f in self.cell_examples.items()}}


# --------------------------------------------------------------------------- helpers
def _check_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found (no such file)")
    if path.is_dir():
        raise InputError(f"{path}: expected a {what} file, found a folder")
    return path


def first_items(values, n: int = 8) -> str:
    """The first ``n`` of ``values`` for a message, comma-separated, and how many in all when more."""
    values = [str(v) for v in values]
    more = f", ... ({len(values)} in all)" if len(values) > n else ""
    return ", ".join(values[:n]) + more


_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _is_number(cell: str) -> bool:
    return bool(_NUMBER.match(cell or ""))


def _numbers(cells: pd.Series, column: str, where: str,
             report: FluxReport) -> tuple[pd.Series, pd.Series]:
    """Parse one numeric column read as text; count each kind of cell treated as missing.

    Returns the values (float, NaN where missing) and, per row, the kind of missing cell
    (one of :data:`CELL_KINDS`) or None where the cell is a usable number.
    """
    text = cells.fillna("").astype(str).str.strip()
    empty = text.eq("")
    looks = text.str.match(_NUMBER).astype(bool)
    values = pd.to_numeric(text.where(looks), errors="coerce").astype(float)
    masks = {
        CELL_TEXT: ~empty & ~np.isfinite(values),
        CELL_EMPTY: empty,
        CELL_BELOW: values < MISSING - 0.5,
        CELL_MISSING: (values - MISSING).abs() <= 0.5,
    }
    kind = pd.Series(None, index=text.index, dtype=object)
    for k, mask in masks.items():
        kind[mask] = k
        examples = pd.unique(text[mask])[:CELL_EXAMPLES] if k == CELL_TEXT else ()
        report.dirty(column, mask.sum(), where, kind=k, examples=examples)
    return values.where(kind.isna()), kind


def _comma_separated(path: Path, header: str, what: str) -> None:
    """InputError when the header line ``header`` of ``path`` is separated by semicolons (a CSV
    exported with a decimal comma), which no reader here can take."""
    if ";" in header and "," not in header:
        raise InputError(f"{path}: the columns are separated by ';' (header {header.strip()[:80]!r}); expected a "
                         f"comma-separated {what} with '.' as the decimal mark: export it again with commas")


def _header_line(path: Path) -> str:
    """The first non-empty line of a text file ('' when there is none)."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        return next((line for line in fh if line.strip()), "")


def _plausible_target(obs: pd.DataFrame, where: Path, what: str, report: FluxReport,
                      keep_rows: bool = False) -> pd.DataFrame:
    """``obs`` without the rows whose ``ter`` lies outside ``TER_RANGE`` (with ``keep_rows``: those
    rows with ``ter`` NaN); InputError naming the file, the site and the values found when more
    than ``MAX_OUT_OF_RANGE`` of a site's rows with a target do. ``what`` says how ``ter`` was
    computed from the file's column."""
    lo, hi = TER_RANGE
    outside = (obs["ter"] < lo) | (obs["ter"] > hi)
    has_target = obs["ter"].notna()
    for site, share in outside[has_target].groupby(obs["site"][has_target]).mean().items():
        if share > MAX_OUT_OF_RANGE:
            ter = obs.loc[obs["site"] == site, "ter"]
            raise InputError(f"{where}: site {site}: {share:.0%} of the monthly TER values ({what}) lie outside the "
                             f"plausible range [{lo:g}, {hi:g}] {TER_UNITS} (found {ter.min():.4g} to {ter.max():.4g}); "
                             "check the units and the sign")
    report.remove(f"TER outside the plausible range [{lo:g}, {hi:g}] {TER_UNITS}", outside.sum(), where.name)
    if keep_rows:
        return obs.assign(ter=obs["ter"].mask(outside))
    return obs[~outside].reset_index(drop=True)


def days_in_month(time: pd.Series) -> np.ndarray:
    """Days in each month of a datetime Series (February 29 in leap years)."""
    return pd.DatetimeIndex(time).days_in_month.to_numpy()


def rows_per_site(obs: pd.DataFrame) -> dict[str, int]:
    """Number of rows with a target (``ter``) per site, sorted by site."""
    counts = obs["ter"].notna().groupby(obs["site"], sort=True).sum()
    return {str(k): int(v) for k, v in counts.items() if v > 0}


def fluxnet_site_id(path: Path) -> str | None:
    """Site id from a FLUXNET/ONEFlux monthly file name, or None if it is not one."""
    m = _FLUXNET_MM.match(Path(path).name)
    return m.group("site") if m else None


# --------------------------------------------------------------------------- site table
def read_site_metadata(path: Path, report: FluxReport | None = None) -> pd.DataFrame:
    """Read a FLUXNET site metadata table (``sites.csv``); index SITE_ID, columns lat, lon, pft.

    Coordinate cells that are not numbers (``-9999``, empty, text) become NaN and are counted
    in ``report`` (a fresh one, logged only, when None) under the table's path; columns
    ``lat_cell`` and ``lon_cell`` keep the cells' text for error messages.
    """
    path = _check_file(path, "site table")
    report = report if report is not None else FluxReport()
    _comma_separated(path, _header_line(path), "site table")
    try:
        table = pd.read_csv(path, dtype={"SITE_ID": str, "IGBP": str})
        cells = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the site table as CSV ({exc})".replace("\n", " "))
    missing = [c for c in SITE_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: site table lacks column(s) {', '.join(missing)}; expected "
                         f"{', '.join(SITE_TABLE_COLUMNS)}; found {first_items(table.columns)}")
    lat_cell = cells["LOCATION_LAT"].fillna("").str.strip()
    lon_cell = cells["LOCATION_LONG"].fillna("").str.strip()
    out = pd.DataFrame({
        "site": table["SITE_ID"].astype(str).str.strip(),
        "lat": _numbers(lat_cell, "LOCATION_LAT", str(path), report)[0],
        "lon": _numbers(lon_cell, "LOCATION_LONG", str(path), report)[0],
        "pft": table["IGBP"].fillna(UNKNOWN_PFT).astype(str).str.strip().replace("", UNKNOWN_PFT),
        "lat_cell": lat_cell, "lon_cell": lon_cell,
    })
    dup = out["site"][out["site"].duplicated()]
    if len(dup):
        raise InputError(f"{path}: column SITE_ID has duplicate site(s) {first_items(dup.unique())}; "
                         "expected one row per site")
    return out.set_index("site")


def _site_coords(sites: pd.DataFrame, site: str, table_path: Path, data_path: Path):
    if site not in sites.index:
        raise InputError(f"{table_path}: site {site} (from {data_path.name}) not found in column "
                         f"SITE_ID; expected a row with SITE_ID, LOCATION_LAT, LOCATION_LONG, IGBP")
    row = sites.loc[site]
    lat, lon = float(row["lat"]), float(row["lon"])
    if not (np.isfinite(lat) and -90 <= lat <= 90 and np.isfinite(lon) and -180 <= lon <= 360):
        raise InputError(f"{table_path}: site {site} has LOCATION_LAT={row['lat_cell']!r}, "
                         f"LOCATION_LONG={row['lon_cell']!r}; expected a latitude in [-90, 90] "
                         "and a longitude in [-180, 360]")
    lon = ((lon + 180.0) % 360.0) - 180.0
    return lat, lon, str(row["pft"])


# --------------------------------------------------------------------------- FLUXNET
def read_fluxnet_csv(path: Path, *, site: str | None = None, lat: float = np.nan,
                     lon: float = np.nan, pft: str = UNKNOWN_PFT,
                     variables: tuple[str, ...] = (), all_months: bool = False) -> tuple[pd.DataFrame, FluxReport]:
    """Read one FLUXNET2015/ONEFlux monthly CSV into observation rows.

    ``variables`` are extra (meteorology) columns to carry along; absent ones become NaN.
    All cells are read as text: in each numeric column used (target, QC, ``variables``) the
    ``-9999``, below ``-9999``, empty and not-a-number cells are counted per kind in the
    report under the file name (see the module docstring), and rows without a target are
    removed under one rule per kind (``RECO_NT_VUT_REF missing (-9999)``, ``... below -9999``,
    ``... empty``, ``... not a number``). With ``all_months`` the rows the target and QC rules
    remove (counted in the report all the same) stay in with ``ter`` NaN: the site's whole
    meteorological record, for the predictors that describe a site's climate
    (``predictors.series_context``).
    """
    path = _check_file(path, "FLUXNET CSV")
    site = site or fluxnet_site_id(path) or path.stem
    report = FluxReport(files=[str(path)])
    _comma_separated(path, _header_line(path), "FLUXNET CSV")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as a FLUXNET CSV ({exc})".replace("\n", " "))
    raw.columns = [str(c).strip() for c in raw.columns]
    for col, why in (("TIMESTAMP", "month as YYYYMM"),
                     (TARGET, "the target, ecosystem respiration in g C m-2 d-1"),
                     (QC, "the NEE quality flag used to keep months")):
        if col not in raw.columns:
            raise InputError(f"{path}: column {col} ({why}) missing; found columns "
                             f"{first_items(raw.columns)}")
    report.rows_read = len(raw)

    stamp = pd.to_numeric(raw["TIMESTAMP"].fillna("").str.strip(), errors="coerce")
    bad = stamp.isna() | (stamp != stamp.round())
    if bad.any():
        example = raw["TIMESTAMP"][bad].iloc[0]
        raise InputError(f"{path}: column TIMESTAMP has non-integer value {example!r}; "
                         "expected YYYYMM (a monthly MM file)")
    stamp = stamp.astype(np.int64)
    year, month = stamp // 100, stamp % 100
    bad = (stamp < 100000) | (stamp > 999999) | (month < 1) | (month > 12)
    if bad.any():
        raise InputError(f"{path}: column TIMESTAMP has value {int(stamp[bad].iloc[0])}; "
                         "expected YYYYMM with month 01-12 (a monthly MM file, not HH/DD/WW/YY)")
    time = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1})).astype(
        "datetime64[ns]")

    where = f"{path.name}"
    parsed: dict[str, tuple[pd.Series, pd.Series]] = {}

    def numeric(col: str) -> tuple[pd.Series, pd.Series]:
        if col not in raw.columns:
            return (pd.Series(np.nan, index=raw.index, dtype=float),
                    pd.Series(None, index=raw.index, dtype=object))
        if col not in parsed:  # each column counted once, even if asked for twice
            parsed[col] = _numbers(raw[col], col, where, report)
        return parsed[col]

    (reco, reco_kind), (qc, _) = numeric(TARGET), numeric(QC)
    obs = pd.DataFrame({"site": site, "lat": float(lat), "lon": float(lon), "pft": pft,
                        "time": time, "ter": reco * days_in_month(time),
                        RANDOM_ERROR: _random_error(raw) * days_in_month(time), "source": path.name})
    for var in variables:
        obs[var] = numeric(var)[0]

    no_target = obs["ter"].isna()
    for kind, rule in ((CELL_MISSING, f"{TARGET} missing (-9999)"),
                       (CELL_BELOW, f"{TARGET} below -9999"),
                       (CELL_EMPTY, f"{TARGET} empty"),
                       (CELL_TEXT, f"{TARGET} not a number")):
        report.remove(rule, (no_target & reco_kind.eq(kind)).sum(), where)
    low_qc = ~no_target & ~(qc >= QC_MIN)
    report.remove(f"{QC} < {QC_MIN} or missing", low_qc.sum(), where)
    if all_months:
        obs.loc[no_target | low_qc, "ter"] = np.nan
    else:
        obs = obs[~no_target & ~low_qc]
    dup = obs["time"].duplicated()
    report.remove("duplicate TIMESTAMP in a file", (dup & obs["ter"].notna()).sum(), where)
    obs = _plausible_target(obs[~dup].reset_index(drop=True), path, f"{TARGET} x days of the month", report,
                            keep_rows=all_months)
    report.kept_per_site[site] = int(obs["ter"].notna().sum())
    log.info("%s: site %s, %d of %d months kept", where, site, report.kept_per_site[site], report.rows_read)
    return obs, report


def _random_error(raw: pd.DataFrame) -> pd.Series:
    """``NEE_VUT_REF_RANDUNC`` per row (g C m-2 d-1); NaN where the file has no such column or the
    cell is not a non-negative number (-9999 included). Not counted in the report: the column is
    optional and no row is removed for it."""
    if RANDOM_ERROR_COLUMN not in raw.columns:
        return pd.Series(np.nan, index=raw.index)
    values = pd.to_numeric(raw[RANDOM_ERROR_COLUMN].str.strip(), errors="coerce")
    return values.where(values >= 0)


def fluxnet_folder(text: str) -> Path:
    """A ``--fluxnet`` / ``[paths] fluxnet`` entry as a path: the bare word ``sample`` is the
    shipped sample (a local folder of that name is ``./sample``)."""
    return SHIPPED_SAMPLE if text == SAMPLE_WORD else Path(text)


def find_fluxnet_files(folder: Path) -> list[Path]:
    """Monthly FLUXNET/ONEFlux CSVs in ``folder`` (not recursive), FULLSET before SUBSET."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: FLUXNET folder not found (no such folder)")
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of FLUXNET monthly CSVs, found a file")
    files = [p for p in folder.iterdir() if p.is_file() and _FLUXNET_MM.match(p.name)]
    if not files:
        others = sorted(p.name for p in folder.iterdir() if _FLUXNET_ANY.search(p.name))
        n = sum(1 for _ in folder.iterdir())
        found = (f"found only other FLUXNET files ({first_items(others, 3)})" if others
                 else f"found {n} other entries" if n else "the folder is empty")
        raise InputError(f"{folder}: no FLUXNET monthly CSV; expected files named like "
                         f"FLX_<SITE>_FLUXNET2015_SUBSET_MM_<years>.csv or "
                         f"AMF_<SITE>_FLUXNET_FULLSET_MM_<years>.csv; {found}")

    def key(p: Path):
        m = _FLUXNET_MM.match(p.name)
        # FULLSET first, then later releases/versions first (names sort by year range/version)
        return (m.group("site").upper(), (m.group("set") or "").upper() != "FULLSET",
                [-ord(c) for c in p.name])
    return sorted(files, key=key)


def read_fluxnet_dir(folder: Path, *, site_table: Path | None = None,
                     variables: tuple[str, ...] = (), all_months: bool = False) -> tuple[pd.DataFrame, FluxReport]:
    """Read every FLUXNET/ONEFlux monthly CSV of ``folder`` with its site table.

    ``folder`` may also be a single CSV file; the site table defaults to ``sites.csv``
    beside the files. A site with several files (SUBSET and FULLSET, two releases) keeps
    each month once, from the FULLSET / later file. ``all_months``: see ``read_fluxnet_csv``.
    """
    folder = Path(folder)
    if folder.is_file():
        files, base = [folder], folder.parent
        if not fluxnet_site_id(folder):
            raise InputError(f"{folder}: file name does not look like a FLUXNET monthly CSV; "
                             "expected <PREFIX>_<SITE>_FLUXNET2015_SUBSET_MM_<years>.csv")
    else:
        files, base = find_fluxnet_files(folder), folder
    table_path = Path(site_table) if site_table is not None else base / SITE_TABLE
    if not table_path.exists():
        raise InputError(f"{table_path}: site table not found; expected a {SITE_TABLE} with "
                         f"{', '.join(SITE_TABLE_COLUMNS)} beside the FLUXNET files")
    report = FluxReport()
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"
                        and _FLUXNET_ANY.search(p.name) and not _FLUXNET_MM.match(p.name))
        if others:
            report.note(f"{folder}: not read, {len(others)} FLUXNET file(s) of another time step than monthly "
                        f"(_MM_): {first_items(others, 3)}")
    sites = read_site_metadata(table_path, report)
    parts = []
    for path in files:
        site = fluxnet_site_id(path)
        lat, lon, pft = _site_coords(sites, site, table_path, path)
        obs, rep = read_fluxnet_csv(path, site=site, lat=lat, lon=lon, pft=pft,
                                    variables=variables, all_months=all_months)
        report.merge(rep)
        parts.append(obs)
    obs = pd.concat(parts, ignore_index=True)
    obs, report = _dedupe(obs, report)
    return obs, report


def duplicate_site_months(obs: pd.DataFrame) -> pd.Series:
    """True for each row whose (site, time) is another row's to keep: the first row with a target
    (``ter``), else the first row."""
    ranked = obs.assign(_no_target=obs["ter"].isna()).sort_values("_no_target", kind="stable")
    return ranked.duplicated(["site", "time"], keep="first").reindex(obs.index)


def _dedupe(obs: pd.DataFrame, report: FluxReport) -> tuple[pd.DataFrame, FluxReport]:
    """Keep the first row of each (site, time) (``duplicate_site_months``), sort by site and
    time; recount per site (rows with a target)."""
    dup = duplicate_site_months(obs)
    report.remove("same site-month in another file (first kept)", (dup & obs["ter"].notna()).sum(), "flux")
    obs = obs[~dup].sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    report.kept_per_site = rows_per_site(obs)
    return obs, report


# --------------------------------------------------------------------------- ABCflux
_PER_DAY = re.compile(r"\b(d|day)\s*(-1|\^-1)|/\s*d(ay)?\b|per\s+day\b|daily", re.IGNORECASE)
_PER_MONTH = re.compile(r"\b(mon|month)\s*(-1|\^-1)|/\s*mon(th)?\b|per\s+month\b|monthly", re.IGNORECASE)
_OTHER_UNIT = re.compile(r"\b(mg|kg|ug|µg|mmol|umol|µmol|mol)\b|\b(h|hr|hour|s|sec|yr|year)\s*(-1|\^-1)"
                         r"|/\s*(h|hr|hour|s|sec|yr|year)\b", re.IGNORECASE)


def _reco_per_day(cells: pd.Series, path: Path) -> str | None:
    """The description rows' ``reco`` text when it says the values are per day (None when it says
    per month or names no unit: g C m-2 month-1, ABCflux's); InputError for any other unit."""
    for text in (str(c).strip() for c in cells):
        day, month = _PER_DAY.search(text), _PER_MONTH.search(text)
        if _OTHER_UNIT.search(text) or (day and month):
            raise InputError(f"{path}: column reco is described as {text!r}; expected g C m-2 month-1 (or "
                             "g C m-2 d-1, converted) in the description row")
        if day:
            return text
    return None


def _one_place_per_site(obs: pd.DataFrame, path: Path) -> None:
    """InputError naming the site and its places when a site's coordinates differ between rows."""
    places = obs.groupby("site")[["lat", "lon"]].nunique()
    moved = places.index[(places > 1).any(axis=1)]
    if len(moved):
        site = moved[0]
        found = obs.loc[obs["site"] == site, ["lat", "lon"]].drop_duplicates()
        shown = "; ".join(f"{a:g}, {o:g}" for a, o in found.head(3).itertuples(index=False))
        others = f" (and {len(moved) - 1} other site(s))" if len(moved) > 1 else ""
        raise InputError(f"{path}: site {site}{others} has {len(found)} different coordinates ({shown}"
                         f"{'; ...' if len(found) > 3 else ''}); expected one place per site_name: correct the "
                         "coordinates or give each place its own site_name")


def read_abcflux(path: Path, *, pft_column: str | None = None,
                 variables: tuple[str, ...] = ()) -> tuple[pd.DataFrame, FluxReport]:
    """Read an ABCflux CSV (monthly reco in g C m-2 month-1) into observation rows."""
    path = _check_file(path, "ABCflux CSV")
    report = FluxReport(files=[str(path)])
    _comma_separated(path, _header_line(path), "ABCflux CSV")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        with open(path, newline="", encoding="latin-1") as fh:
            rows = list(csv.reader(fh))
    except csv.Error as exc:
        raise InputError(f"{path}: cannot read as CSV ({exc})")
    rows = [r for r in rows if any(c.strip() for c in r)]
    header_at = None
    for i, row in enumerate(rows[:20]):
        names = {c.strip() for c in row}
        if all(c in names for c in ABCFLUX_COLUMNS):
            header_at = i
            break
    if header_at is None:
        first = rows[0] if rows else []
        raise InputError(f"{path}: no header row with columns {', '.join(ABCFLUX_COLUMNS)} "
                         f"in the first 20 lines (ABCflux format); found "
                         f"{first_items([c.strip() for c in first]) or 'an empty file'}")
    header = [c.strip() for c in rows[header_at]]
    if header_at:
        report.note(f"{path.name}: skipped {header_at} description line(s) above the header")
    width = len(header)
    body = [(r + [""] * width)[:width] for r in rows[header_at + 1:]]
    raw = pd.DataFrame(body, columns=header, dtype=object)
    raw = raw.loc[:, ~pd.Index(header).duplicated()]
    report.rows_read = len(raw)

    # description rows: text where every numeric key column should hold a number
    keys = ["latitude", "longitude", "year", "month"]
    numeric_any = np.zeros(len(raw), dtype=bool)
    for c in keys:
        numeric_any |= raw[c].map(lambda s: _is_number(str(s))).to_numpy(dtype=bool)
    desc = ~numeric_any
    report.remove("description row (text where numbers belong)", desc.sum(), path.name)
    per_day = _reco_per_day(raw.loc[desc, "reco"], path)
    raw = raw[~desc].reset_index(drop=True)

    def numeric(col: str) -> pd.Series:
        return _numbers(raw[col], col, path.name, report)[0]

    lat, lon = numeric("latitude"), numeric("longitude")
    year, month, reco = numeric("year"), numeric("month"), numeric("reco")
    bad_time = (year.isna() | month.isna() | (month < 1) | (month > 12) | (year != year.round())
                | (month != month.round()) | (year < 1000) | (year > 9999))
    report.remove("year/month missing or invalid", bad_time.sum(), path.name)
    bad_loc = ~bad_time & (lat.isna() | lon.isna() | (lat.abs() > 90) | (lon < -180) | (lon > 360))
    report.remove("latitude/longitude missing or invalid", bad_loc.sum(), path.name)
    site = raw["site_name"].astype(str).str.strip()
    no_site = ~bad_time & ~bad_loc & site.eq("")
    report.remove("site_name empty", no_site.sum(), path.name)
    no_target = ~bad_time & ~bad_loc & ~no_site & reco.isna()
    report.remove("reco missing or dirty", no_target.sum(), path.name)
    keep = ~(bad_time | bad_loc | no_site | no_target)

    if pft_column is None:
        pft_column = next((c for c in ABCFLUX_PFT_COLUMNS if c in raw.columns), None)
    elif pft_column not in raw.columns:
        raise InputError(f"{path}: PFT column {pft_column} missing; found columns "
                         f"{first_items(raw.columns)}")
    if pft_column is not None:
        pft = raw[pft_column].astype(str).str.strip()
        pft = pft.where(~pft.isin(["", "-", "NA", "NaN", "nan", "None"]), UNKNOWN_PFT)
    else:
        pft = pd.Series(UNKNOWN_PFT, index=raw.index)

    ym = pd.DataFrame({"year": year.where(keep, 2000).astype(np.int64),
                       "month": month.where(keep, 1).astype(np.int64), "day": 1})
    obs = pd.DataFrame({"site": site, "lat": lat, "lon": ((lon + 180.0) % 360.0) - 180.0,
                        "pft": pft, "time": pd.to_datetime(ym).astype("datetime64[ns]"),
                        "ter": reco, RANDOM_ERROR: np.nan, "source": path.name})
    for var in variables:
        obs[var] = numeric(var) if var in raw.columns else np.nan
    obs = obs[keep].reset_index(drop=True)
    dup = obs.duplicated(["site", "time"], keep="first")
    report.remove("duplicate site_name/year/month (first kept)", dup.sum(), path.name)
    obs = obs[~dup].reset_index(drop=True)
    _one_place_per_site(obs, path)
    if per_day is not None:
        obs["ter"] = obs["ter"] * days_in_month(obs["time"])
        report.note(f"{path.name}: reco is per day ({per_day!r} in the description row): times the days of the "
                    f"month, in {TER_UNITS}")
    obs = _plausible_target(obs, path, "reco" if per_day is None else "reco x days of the month", report)
    report.kept_per_site = rows_per_site(obs)
    log.info("%s: %d of %d rows kept at %d sites", path.name, len(obs), report.rows_read,
             len(report.kept_per_site))
    return obs, report
