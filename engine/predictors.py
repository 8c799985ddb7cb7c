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
  with a value: the site's record in a table, the cube's period at a pixel). Never of TER.

``plan`` fixes which columns a model uses (``PredictorSpec``, kept in the model manifest);
``table_matrix`` and ``pixel_matrix`` build them the same way for training and for ``predict``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ciml_ter.config import PipelineConfig
from ciml_ter.errors import InputError

NOT_DRIVERS = ("lat", "lon", "month")
SEASON = ("season_sin", "season_cos")
IGBP_PREFIX = "igbp_"
CLIMATOLOGY_PREFIX = "clim_"
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


def location_means(values: np.ndarray, location: np.ndarray) -> np.ndarray:
    """Per-row mean over the rows of the same location of each column of ``values`` (NaN ignored;
    NaN where a location has no value)."""
    values = np.asarray(values, dtype=np.float64)
    codes, index = np.unique(np.asarray(location), return_inverse=True)
    finite = np.isfinite(values)
    sums = np.zeros((len(codes), values.shape[1]))
    counts = np.zeros((len(codes), values.shape[1]))
    np.add.at(sums, index, np.where(finite, values, 0.0))
    np.add.at(counts, index, finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return means[index]


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

    @property
    def features(self) -> list[str]:
        return [*self.drivers, *(SEASON if self.season else ()),
                *(IGBP_PREFIX + c for c in self.igbp_classes),
                *(CLIMATOLOGY_PREFIX + d for d in self.climatology)]

    @property
    def context(self) -> list[str]:
        """The added columns (not tested by PCMCI+)."""
        return self.features[len(self.drivers):]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PredictorSpec:
        return cls(list(data["drivers"]), bool(data["season"]), list(data["igbp_classes"]),
                   list(data["climatology"]))


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
    return PredictorSpec(drivers, p.season, classes, time_varying if p.climatology else [])


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
    if spec.climatology:
        parts.append(location_means(frame[spec.climatology].to_numpy(dtype=np.float64),
                                    frame["site"].astype(str).to_numpy()))
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
    if spec.climatology:
        values = np.stack([np.asarray(drivers[d], dtype=np.float64).reshape(-1) for d in spec.climatology], axis=-1)
        means = location_means(values, np.tile(np.arange(n_pixels), n_months))
        columns.extend(means[:, k] for k in range(len(spec.climatology)))
    return np.stack(columns, axis=-1).astype(np.float32)
