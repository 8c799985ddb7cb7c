"""The window of a run, in one place: the box (W, S, E, N in degrees) parsed and checked, the
regular lat/lon grid of a resolution over it (``GridWindow``: cell centres, shape), and a month
range. The CLI, the config, ingest, the land cover, the rasters and the synthetic world all
take their grid from here, with the same checks and the same words.
"""
from __future__ import annotations

import datetime as dt
import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ciml_ter.errors import InputError

GLOBE = (-180.0, -90.0, 180.0, 90.0)
BBOX_RULE = "W,S,E,N in degrees with -180 <= W < E <= 180 and -90 <= S < N <= 90"


def bbox_ok(bbox) -> bool:
    """Whether four numbers are a box W, S, E, N on the globe (see ``BBOX_RULE``)."""
    w, s, e, n = bbox
    return -180.0 <= w < e <= 180.0 and -90.0 <= s < n <= 90.0


def parse_bbox(bbox, option: str = "--bbox") -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees from None (the globe), "W,S,E,N" or four numbers;
    InputError naming ``option`` and the rule otherwise."""
    if bbox is None:
        return GLOBE
    parts = bbox.split(",") if isinstance(bbox, str) else list(bbox)
    try:
        values = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(map(math.isfinite, values)) or not bbox_ok(values):
        raise InputError(f"{option} {bbox if isinstance(bbox, str) else ','.join(map(str, parts))!r}: "
                         f"expected {BBOX_RULE}, e.g. -10,35,30,60")
    return values


@dataclass(frozen=True)
class GridWindow:
    """A regular lat/lon grid (degrees): cell (i, j) spans lat (north - (i+1) res, north - i res]
    and lon [west + j res, west + (j+1) res); rows go south, columns east. What the readers fill
    and ``kernels.binning`` bins into (it reads ``north, west, res, n_lat, n_lon``)."""

    north: float
    west: float
    res: float
    n_lat: int
    n_lon: int

    def __post_init__(self):
        for name in ("north", "west", "res"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, found {value!r}")
        if self.res <= 0:
            raise ValueError(f"res: expected a positive number, found {self.res!r}")
        for name in ("n_lat", "n_lon"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, found {value!r}")

    @classmethod
    def over(cls, res: float, bbox=None, option: str = "--bbox") -> GridWindow:
        """The grid of ``res`` degrees over ``bbox`` (None: the globe), whose sides must be whole
        numbers of cells."""
        if isinstance(res, bool) or not isinstance(res, numbers.Real) or not res > 0:
            raise InputError(f"--res {res!r}: expected a positive number of degrees")
        w, s, e, n = parse_bbox(bbox, option)
        counts = []
        for span, what in ((n - s, "N - S"), (e - w, "E - W")):
            k = span / res
            if abs(k - round(k)) > 1e-6:
                raise InputError(f"{option} {w:g},{s:g},{e:g},{n:g}: {what} = {span:g} degrees is not a whole "
                                 f"number of {res:g}-degree cells (--res)")
            counts.append(int(round(k)))
        return cls(float(n), float(w), float(res), counts[0], counts[1])

    @property
    def shape(self) -> tuple[int, int]:
        """(n_lat, n_lon)."""
        return self.n_lat, self.n_lon

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre latitudes (descending) and longitudes (ascending), degrees."""
        lat = self.north - (np.arange(self.n_lat) + 0.5) * self.res
        lon = self.west + (np.arange(self.n_lon) + 0.5) * self.res
        return lat, lon


def parse_months(months, option: str = "--months") -> tuple[dt.date, dt.date] | None:
    """[first day, day after the last month) from None (no limit), "YYYY-MM:YYYY-MM", "YYYY-MM"
    or a pair; InputError naming ``option`` otherwise."""
    if months is None:
        return None
    parts = months.split(":") if isinstance(months, str) else list(months)
    if len(parts) == 1:
        parts = parts * 2
    try:
        if len(parts) != 2:
            raise ValueError
        first, last = (pd.Period(str(p).strip(), freq="M") for p in parts)
    except (ValueError, TypeError):  # pandas' DateParseError is a ValueError
        raise InputError(f"{option} {months!r}: expected YYYY-MM:YYYY-MM, e.g. 2001-01:2001-03") from None
    if last < first:
        raise InputError(f"{option} {months!r}: the last month is before the first")
    return first.start_time.date(), (last + 1).start_time.date()
