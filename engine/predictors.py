"""Context predictors (config ``[predictors]``): one arithmetic for site-month tables and cube tiles.

The drivers of a table are its predictors other than ``lat``, ``lon`` and ``month``. On top of
them a model may take:

- ``season_sin``, ``season_cos``: the phase of the year at the middle of the month, shifted by
  half a year south of the equator (so that July in the north and January in the south are the
  same season); they replace the integer ``month``;
- ``igbp_<class>``: 1 where the location's IGBP class is ``<class>``, else 0, one column per class
  of the training sites (tower metadata in site-only tables, the land-cover layer at the tower
  pixel in tables built from a cube; a pixel of a class no training site had gets zeros);
- ``clim_<driver>``: the multi-year mean of a time-varying driver at the location (all its months
  with a value). Never of TER.
- ``prev1_<driver>``, ``prev3_<driver>`` for the drivers of ``[predictors] antecedent``: the
  driver's value in the previous month, and its mean over the three previous months (those with
  a value; NaN when none): the memory of the soil water and of past rain.

These context columns describe a location's whole monthly record: at a map pixel the cube's
months; at a tower the site's complete record, every month of its files whatever the flux
quality flags (``sitetable`` stores them, computed by ``record_context``, as columns of the same
names); a table without them gets them from its own rows. ``series_context`` is the one
arithmetic. ``plan`` fixes which columns a model uses (``PredictorSpec``, kept in the model
manifest); ``table_matrix`` and ``pixel_matrix`` build them the same way for training and for
``predict``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ciml_ter.config import ALL_DRIVERS, PipelineConfig
from ciml_ter.errors import InputError

NOT_DRIVERS = ("lat", "lon", "month")
SEASON = ("season_sin", "season_cos")
IGBP_PREFIX = "igbp_"
CLIMATOLOGY_PREFIX = "clim_"
PREVIOUS_PREFIX = "prev1_"  # the previous month's value
ANTECEDENT_PREFIX = "prev3_"  # the mean of the three previous months
CONTEXT_PREFIXES = (CLIMATOLOGY_PREFIX, PREVIOUS_PREFIX, ANTECEDENT_PREFIX)
IGBP_COLUMN = "igbp"  # IGBP label column of cube-mode tables (site-only tables use ``pft``)


def season_terms(month: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of the season's phase (radians) for month numbers 1-12 at latitudes (degrees N)."""
    phase = 2.0 * np.pi * ((np.asarray(month, dtype=np.float64) - 0.5) / 12.0
                           + np.where(np.asarray(lat, dtype=np.float64) < 0, 0.5, 0.0))
    return np.sin(phase), np.cos(phase)


def igbp_onehot(labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """(n, len(classes)) float32: 1 where the label is the class; unknown labels get zeros."""
    labels = np.asarray(labels).astype(str)
    return np.stack([labels == c for c in classes], axis=-1).astype(np.float32).reshape(len(labels), len(classes))


def context_driver(name: str) -> str | None:
    """The driver a context column (``<prefix><driver>``) describes; None for any other column."""
    return next((name[len(p):] for p in CONTEXT_PREFIXES if name.startswith(p)), None)


def series_context(values: np.ndarray, prefix: str) -> np.ndarray:
    """The context column ``prefix`` (one of ``CONTEXT_PREFIXES``) of a driver's values
    (months, locations) on consecutive months, float64 of the same shape: the mean over all
    months with a value (``clim_``), the previous month's value (``prev1_``) or the mean of the
    three previous months with a value (``prev3_``); NaN where there is none (the first month
    has no previous one)."""
    values = np.asarray(values, dtype=np.float64)
    if prefix == CLIMATOLOGY_PREFIX:
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, values, 0.0).sum(axis=0) / finite.sum(axis=0)
        return np.broadcast_to(mean, values.shape).copy()
    lags = {PREVIOUS_PREFIX: 1, ANTECEDENT_PREFIX: 3}.get(prefix)
    if lags is None:
        raise ValueError(f"unknown context prefix {prefix!r}; expected one of {', '.join(CONTEXT_PREFIXES)}")
    total = np.zeros(values.shape)
    count = np.zeros(values.shape)
    for lag in range(1, lags + 1):
        shifted = np.full(values.shape, np.nan)
        shifted[lag:] = values[:-lag]
        finite = np.isfinite(shifted)
        total += np.where(finite, shifted, 0.0)
        count += finite
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def record_context(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Context columns (``<prefix><driver>`` names) of a site-month frame (``site``, ``time`` =
    month start, the drivers), each site's rows laid on consecutive months from its first to its
    last (months without a row count as missing); indexed like ``frame``."""
    out = np.full((len(frame), len(columns)), np.nan)
    if frame.empty or not columns:
        return pd.DataFrame(out, index=frame.index, columns=columns)
    drivers = [context_driver(c) for c in columns]
    values = frame[sorted(set(drivers))].to_numpy(dtype=np.float64)
    position = {d: k for k, d in enumerate(sorted(set(drivers)))}
    time = pd.DatetimeIndex(frame["time"])
    month_number = (time.year * 12 + time.month - 1).to_numpy()
    for rows in frame.groupby("site", sort=False).indices.values():
        index = month_number[rows] - month_number[rows].min()
        series = np.full((int(index.max()) + 1, values.shape[1]), np.nan)
        series[index] = values[rows]
        for j, (column, driver) in enumerate(zip(columns, drivers)):
            k = position[driver]
            out[rows, j] = series_context(series[:, k:k + 1], column[:-len(driver)])[index, 0]
    return pd.DataFrame(out, index=frame.index, columns=columns)


def igbp_labels(codes: np.ndarray, attrs: dict) -> np.ndarray:
    """IGBP labels of a land-cover layer's codes, from its ``flag_values`` / ``flag_meanings``
    attributes (the code itself where a code is not listed); "" for NaN."""
    values = np.atleast_1d(np.asarray(attrs.get("flag_values", []))).astype(np.int64).tolist()
    meanings = str(attrs.get("flag_meanings", "")).split()
    names = dict(zip(values, meanings)) if len(values) == len(meanings) else {}
    codes = np.asarray(codes, dtype=np.float64)
    out = np.full(codes.shape, "", dtype=object)
    for code in np.unique(codes[np.isfinite(codes)]).astype(np.int64):
        out[codes == code] = names.get(int(code), str(int(code)))
    return out


@dataclass
class PredictorSpec:
    """The columns of a model: ``drivers`` from the table or cube, then season, IGBP, climatology."""

    drivers: list[str]
    season: bool = False
    igbp_classes: list[str] = field(default_factory=list)
    climatology: list[str] = field(default_factory=list)  # drivers whose location mean is a predictor
    antecedent: list[str] = field(default_factory=list)  # drivers whose previous months are predictors

    @property
    def context_columns(self) -> list[str]:
        """The columns computed from each location's record, in model order."""
        return [*(CLIMATOLOGY_PREFIX + d for d in self.climatology),
                *(p + d for d in self.antecedent for p in (PREVIOUS_PREFIX, ANTECEDENT_PREFIX))]

    @property
    def features(self) -> list[str]:
        return [*self.drivers, *(SEASON if self.season else ()),
                *(IGBP_PREFIX + c for c in self.igbp_classes), *self.context_columns]

    @property
    def context(self) -> list[str]:
        """The added columns (not tested by PCMCI+)."""
        return self.features[len(self.drivers):]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PredictorSpec:
        return cls(list(data["drivers"]), bool(data["season"]), list(data["igbp_classes"]),
                   list(data["climatology"]), list(data.get("antecedent", [])))


def table_labels(frame: pd.DataFrame) -> np.ndarray:
    """A table's IGBP label per row: the ``igbp`` column (cube-mode tables), else ``pft``."""
    column = IGBP_COLUMN if IGBP_COLUMN in frame.columns else "pft"
    return frame[column].astype(str).to_numpy()


def plan(table, config: PipelineConfig) -> PredictorSpec:
    """The predictors a model trained on ``table`` (a ``SiteTable``) uses under ``config``."""
    p = config.predictors
    frame = table.frame
    drivers = [f for f in table.features if not (p.season and f == "month")]
    absent = [c for c in ("time", "lat") if p.season and c not in frame.columns]
    if absent:
        raise InputError(f"{table.path}: predictors.season needs the column(s) {', '.join(absent)} (month start, "
                         "degrees N), found none; set [predictors] season = false")
    time_varying = [f for f in drivers if f not in NOT_DRIVERS
                    and (frame.groupby("site")[f].nunique(dropna=True) > 1).any()]
    classes = sorted(set(table_labels(frame)) - {"", "nan", "ALL"}) if p.igbp else []
    if p.igbp and not classes:
        raise InputError(f"{table.path}: predictors.igbp needs IGBP classes in the column 'pft' or 'igbp', "
                         "found none; set [predictors] igbp = false")
    antecedent = [d for d in time_varying if ALL_DRIVERS in p.antecedent or d in p.antecedent]
    return PredictorSpec(drivers, p.season, classes, time_varying if p.climatology else [], antecedent)


def table_matrix(frame: pd.DataFrame, spec: PredictorSpec, source: str = "<table>") -> np.ndarray:
    """(rows, features) float32 of a site-month frame in the order of ``spec.features``."""
    missing = [c for c in spec.drivers if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: predictor column(s) {', '.join(missing)} of the model are not in the table")
    parts = [frame[spec.drivers].to_numpy(dtype=np.float64)]
    if spec.season:
        month = pd.DatetimeIndex(frame["time"]).month.to_numpy()
        parts.append(np.stack(season_terms(month, frame["lat"].to_numpy()), axis=-1))
    if spec.igbp_classes:
        parts.append(igbp_onehot(table_labels(frame), spec.igbp_classes))
    context = spec.context_columns
    if context:
        stored = [c for c in context if c in frame.columns]  # from the site's complete record
        computed = record_context(frame, [c for c in context if c not in stored])
        parts.append(np.column_stack([(frame[c] if c in stored else computed[c]).to_numpy(dtype=np.float64)
                                      for c in context]))
    return np.concatenate(parts, axis=1).astype(np.float32)


def pixel_matrix(drivers: dict[str, np.ndarray], lat: np.ndarray, months: pd.DatetimeIndex,
                 labels: np.ndarray | None, spec: PredictorSpec) -> np.ndarray:
    """(months x pixels, features) float32 for a tile: ``drivers`` maps each driver to its
    (months, pixels) values, ``lat`` (pixels) in degrees N, ``labels`` the pixels' IGBP labels.
    Row m x pixels + p is month m at pixel p (the order of ``table_matrix`` over such a table)."""
    n_months, n_pixels = len(months), len(lat)
    columns = [np.asarray(drivers[d], dtype=np.float64).reshape(-1) for d in spec.drivers]
    if spec.season:
        month = np.repeat(months.month.to_numpy(), n_pixels)
        columns.extend(season_terms(month, np.tile(lat, n_months)))
    if spec.igbp_classes:
        onehot = igbp_onehot(labels, spec.igbp_classes)
        columns.extend(np.tile(onehot[:, k], n_months) for k in range(len(spec.igbp_classes)))
    series: dict[str, np.ndarray] = {}  # each driver as float64 (months, pixels), once for its context columns
    for name in spec.context_columns:
        driver = context_driver(name)
        if driver not in series:
            series[driver] = np.asarray(drivers[driver], dtype=np.float64).reshape(n_months, n_pixels)
        columns.append(series_context(series[driver], name[:-len(driver)]).reshape(-1))
    return np.stack(columns, axis=-1).astype(np.float32)
