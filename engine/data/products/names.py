"""Recognise input files by their standard names.

MODIS and VIIRS land products follow the LP DAAC / LAADS naming convention
``<ShortName>.A<YYYY><DDD>[.h<HH>v<VV>].<CCC>.<YYYYDDDHHMMSS>.<hdf|h5>`` (ShortName, acquisition
year and day of year, sinusoidal tile for tiled products, collection, production time), e.g.
``MOD11A1.A2019001.h18v03.061.2020001000000.hdf``, ``MCD43C4.A2019001.061.2021001000000.hdf``,
``VNP15A2H.A2019001.h18v03.002.2022001000000.h5``. A file whose name does not follow it, or whose
product is not in the catalog, is *unknown*: the ingest stage lists it and skips it, never
silently. Raster exports (Earth Engine) carry their date in the name as YYYY-MM-DD, YYYY_MM_DD or
YYYYMMDD.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

_GRANULE = re.compile(
    r"^(?P<product>[A-Z][A-Z0-9]{4,9})\.A(?P<year>\d{4})(?P<doy>\d{3})"
    r"(?:\.h(?P<h>\d{2})v(?P<v>\d{2}))?\.(?P<collection>\d{3})\.(?P<production>\d{13})"
    r"\.(?P<ext>hdf|h5)$")
# Dates inside raster names: 2019-01-31, 2019_01_31 or 20190131, not inside a longer number.
_DATE = re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})(?P<sep>[-_]?)(?P<m>\d{2})(?P=sep)(?P<d>\d{2})(?!\d)")
CUBE_SUFFIXES = (".zarr", ".nc", ".nc4")


@dataclass(frozen=True)
class GranuleName:
    """What a standard granule name says."""

    path: Path
    product: str  # short name, e.g. "MOD11A1"
    date: dt.date  # acquisition (daily) or composite start date
    tile: tuple[int, int] | None  # (h, v) of the sinusoidal grid; None for CMG / global files
    collection: str  # e.g. "061" (MODIS C6.1) or "002" (VIIRS V2)
    production: str  # YYYYDDDHHMMSS

    @property
    def tile_name(self) -> str | None:
        """``hHHvVV`` or None."""
        return None if self.tile is None else f"h{self.tile[0]:02d}v{self.tile[1]:02d}"


def parse_granule_name(path: str | Path) -> GranuleName | None:
    """The fields of a standard MODIS/VIIRS granule name, or None if ``path`` has none."""
    path = Path(path)
    m = _GRANULE.match(path.name)
    if m is None:
        return None
    year, doy = int(m["year"]), int(m["doy"])
    if not 1 <= doy <= (366 if _leap(year) else 365):
        return None
    date = dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)
    tile = None if m["h"] is None else (int(m["h"]), int(m["v"]))
    if tile is not None and not (tile[0] <= 35 and tile[1] <= 17):
        return None
    return GranuleName(path, m["product"], date, tile, m["collection"], m["production"])


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def date_from_name(name: str) -> dt.date | None:
    """The date written in a file name as YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD (the last such date
    if there are several); None when there is none."""
    found = None
    for m in _DATE.finditer(Path(name).name):
        try:
            found = dt.date(int(m["y"]), int(m["m"]), int(m["d"]))
        except ValueError:
            continue
    return found


def is_cube(path: str | Path) -> bool:
    """True for a CF NetCDF file or a Zarr store (inputs that already carry contract names)."""
    path = Path(path)
    return path.suffix.lower() in CUBE_SUFFIXES or (path.is_dir() and (
        (path / "zarr.json").exists() or (path / ".zgroup").exists()))


def walk(paths) -> list[Path]:
    """Files under ``paths`` (files as given, folders walked in sorted order); Zarr stores are
    returned whole, hidden files and folders (names starting with '.') are left out."""
    found: list[Path] = []
    for item in paths:
        item = Path(item)
        if item.is_dir() and not is_cube(item):
            for sub in sorted(item.iterdir()):
                if not sub.name.startswith("."):
                    found.extend(walk([sub]))
        else:
            found.append(item)
    return found
