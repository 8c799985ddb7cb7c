"""GeoTIFF rasters through rasterio: static layers (SoilGrids SOC) and dated exports (Earth Engine).

A raster spec is ``VAR=GLOB`` or ``VAR[UNITS]=GLOB`` (e.g. ``soc30=soil/soc_15-30cm_mean.tif``,
``nir[1]='exports/nir_*.tif'``). Time-varying variables take each file's date from its name
(YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD). Band 1 is read, its nodata and its scale/offset tags
applied, and it is resampled onto the target EPSG:4326 grid with average resampling
(rasterio.warp.reproject, which also reprojects a raster in another CRS); the number of valid
source pixels per cell comes from a sum-resampled validity mask. Units, in this order: the
spec's ``[UNITS]``, the band's units metadata, a ``units`` tag, the SoilGrids file-name
convention (``soc_<depth>cm_<stat>``: dg kg-1, SoilGrids 2.0 "mapped units"), and for variables
whose canonical unit is "1" the assumption "1" (said in the log); each is converted to the
canonical unit through the contract's RULES.
"""
from __future__ import annotations

import datetime as dt
import glob
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from ciml_ter.data.contract import RULES, canonical_units
from ciml_ter.errors import InputError
from ciml_ter.grid import GridWindow

from .names import date_from_name

_SPEC = re.compile(r"^\s*(?P<var>[A-Za-z0-9_]+)\s*(?:\[(?P<units>[^\]]*)\])?\s*=\s*(?P<pattern>.+?)\s*$")
_SOILGRIDS = re.compile(r"^soc_\d+-\d+cm_(mean|Q0\.05|Q0\.5|Q0\.95)", re.IGNORECASE)


@dataclass(frozen=True)
class RasterSpec:
    var: str
    pattern: str
    units: str | None = None


@dataclass(frozen=True)
class RasterItem:
    var: str
    path: Path
    date: dt.date | None  # None: static
    units: str | None  # from the spec, if given


def parse_spec(spec) -> RasterSpec:
    """A RasterSpec from ``"VAR=GLOB"``, ``"VAR[UNITS]=GLOB"``, a (var, glob) or (var, glob, units)
    tuple, or a RasterSpec."""
    if isinstance(spec, RasterSpec):
        out = spec
    elif isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
        out = RasterSpec(str(spec[0]), str(spec[1]), None if len(spec) == 2 else spec[2])
    else:
        m = _SPEC.match(str(spec))
        if m is None:
            raise InputError(f"raster {spec!r}: expected VAR=GLOB or VAR[UNITS]=GLOB "
                             f"(e.g. soc30=soil/soc_15-30cm_mean.tif)")
        pattern = m["pattern"].strip("'\"")
        out = RasterSpec(m["var"], pattern, m["units"])
    if out.var not in RULES:
        raise InputError(f"raster {out.var}={out.pattern}: {out.var!r} is not a contract variable "
                         f"(expected one of {', '.join(RULES)})")
    return out


def expand(spec: RasterSpec) -> list[RasterItem]:
    """The files of a spec, each with its date (time-varying variables) or None (static)."""
    paths = sorted(Path(p) for p in glob.glob(spec.pattern)) if glob.has_magic(spec.pattern) \
        else [Path(spec.pattern)]
    paths = [p for p in paths if p.exists()]
    if not paths:
        raise InputError(f"raster {spec.var}={spec.pattern}: no file matches")
    static = RULES[spec.var].static
    items = []
    for path in paths:
        date = None
        if not static:
            date = date_from_name(path.name)
            if date is None:
                raise InputError(f"raster {path}: no date in the file name for time-varying "
                                 f"{spec.var!r} (expected YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD)")
        items.append(RasterItem(spec.var, path, date, spec.units))
    if static and len(items) > 1:
        raise InputError(f"raster {spec.var}={spec.pattern}: {len(items)} files match a static "
                         f"variable; give one file")
    return items


def target_transform(window: GridWindow):
    """The north-up affine transform of the target grid (rasterio's from_origin warns under
    affine 3, so it is built directly)."""
    from affine import Affine
    return Affine(window.res, 0.0, window.west, 0.0, -window.res, window.north)


def _units(item: RasterItem, src, log) -> str:
    if item.units is not None:
        return item.units.strip()
    band_units = (src.units or (None,))[0]
    if band_units:
        return band_units.strip()
    tags = {**src.tags(), **src.tags(1)}
    for key in ("units", "UNITS", "unit"):
        if tags.get(key):
            return str(tags[key]).strip()
    if item.var.startswith("soc") and _SOILGRIDS.match(item.path.name):
        log(f"{item.path.name}: no units in the file; SoilGrids name: taking SOC in dg kg-1 "
            f"(SoilGrids 2.0 mapped units)")
        return "dg kg-1"
    if "1" in RULES[item.var].accepted and RULES[item.var].canonical == "1":
        log(f"{item.path.name}: no units in the file; taking {item.var!r} as dimensionless ('1')")
        return "1"
    raise InputError(f"raster {item.path}: no units for {item.var!r} (band units and 'units' tag "
                     f"empty); give them as {item.var}[UNITS]=..., accepted: "
                     f"{', '.join(repr(u) for u in RULES[item.var].accepted)}")


def _source_window(src, window: GridWindow):
    """The part of ``src`` that covers the target window (padded), as a rasterio Window."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window, from_bounds

    south = window.north - window.n_lat * window.res
    east = window.west + window.n_lon * window.res
    try:
        left, bottom, right, top = transform_bounds("EPSG:4326", src.crs, window.west, south, east,
                                                    window.north, densify_pts=21)
    except Exception:  # e.g. bounds outside the validity of the source projection
        return Window(0, 0, src.width, src.height)
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        return Window(0, 0, src.width, src.height)
    win = from_bounds(left, bottom, right, top, transform=src.transform)
    col0 = max(0, int(math.floor(win.col_off)) - 2)
    row0 = max(0, int(math.floor(win.row_off)) - 2)
    col1 = min(src.width, int(math.ceil(win.col_off + win.width)) + 2)
    row1 = min(src.height, int(math.ceil(win.row_off + win.height)) + 2)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


# rasterio 1.4 multiplies Affine objects with ``*``, which affine 3 marks as pending deprecation;
# that library-internal warning is silenced around rasterio calls (nothing else is).
_AFFINE_MUL = re.escape("Use `@` matmul instead of `*` mul operator")


def read_on_grid(item: RasterItem, window: GridWindow, log=print) -> tuple[np.ndarray, np.ndarray, dict]:
    """Band 1 of a raster on the target grid in the variable's canonical unit: (mean float32 with
    NaN, valid source pixels per cell float32, provenance)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_AFFINE_MUL, category=PendingDeprecationWarning)
        return _read_on_grid(item, window, log)


def _read_on_grid(item: RasterItem, window: GridWindow, log) -> tuple[np.ndarray, np.ndarray, dict]:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.warp import Resampling, reproject

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", NotGeoreferencedWarning)
            warnings.filterwarnings("ignore", message=_AFFINE_MUL, category=PendingDeprecationWarning)
            src = rasterio.open(item.path)
    except (RasterioIOError, NotGeoreferencedWarning) as exc:
        raise InputError(f"raster {item.path}: cannot open as a georeferenced raster ({exc})") from None
    with src:
        if src.crs is None:
            raise InputError(f"raster {item.path}: no coordinate reference system")
        units = _units(item, src, log)
        rule = RULES[item.var]
        if units not in rule.accepted:
            raise InputError(f"raster {item.path}: {item.var!r} in units {units!r}; accepted: "
                             f"{', '.join(repr(u) for u in rule.accepted)}")
        shape = window.shape
        mean = np.full(shape, np.nan, dtype=np.float32)
        count = np.zeros(shape, dtype=np.float32)
        win = _source_window(src, window)
        if win is not None:
            raw = src.read(1, window=win, masked=True)
            values = raw.astype(np.float64).filled(np.nan) * src.scales[0] + src.offsets[0]
            valid = np.isfinite(values)
            kwargs = dict(src_transform=src.window_transform(win), src_crs=src.crs,
                          dst_transform=target_transform(window), dst_crs="EPSG:4326")
            reproject(values.astype(np.float32), mean, src_nodata=np.nan, dst_nodata=np.nan,
                      resampling=Resampling.average, **kwargs)
            reproject(valid.astype(np.float32), count, src_nodata=None, dst_nodata=0.0,
                      resampling=Resampling.sum, **kwargs)
        da = canonical_units(xr.DataArray(mean, attrs={"units": units}), item.var)
        provenance = {"file": item.path.name, "crs": src.crs.to_string(), "units_found": units,
                      "resampling": "average (rasterio.warp.reproject)",
                      "scale": float(src.scales[0]), "offset": float(src.offsets[0])}
    return np.asarray(da.values, dtype=np.float32), count, provenance
