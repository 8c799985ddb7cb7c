"""Land cover on the target grid: ``pft`` (IGBP class, MCD12C1 Majority_Land_Cover_Type_1) and
``land`` (1 where the class is not 0 = water).

Sources: ``"default"`` = the MCD12C1 2019 (Collection 6) IGBP 0.05 deg GeoTIFF shipped inside the
package (``ciml_ter/data/landcover``; NASA LP DAAC MCD12C1 v006, doi:10.5067/MODIS/MCD12C1.006,
public domain under the EOSDIS data use policy; its CITATION.md says where it comes from). Other
sources: a path to an MCD12C1 HDF4 granule or to an IGBP GeoTIFF on a regular lat/lon grid.

Coarser output grids take the block mode (ties to the smaller class, as the input contract aggregates classes),
finer ones the class of the cell containing each output cell's centre.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ciml_ter.errors import InputError
from ciml_ter.kernels import block_resample
from ciml_ter.grid import GridWindow

from .catalog import MCD12C1, PFT_FILL
from .geometry import GranuleError, cmg_slices
from .names import parse_granule_name
from .structmeta import GridGeometry

MCD12C1_RES = 0.05  # degrees: the CMG grid, from 90 N and 180 W
SHIPPED_LANDCOVER = Path(__file__).resolve().parent.parent / "landcover" / "MCD12C1.A2019001.006.2020220162300.tif"


def default_landcover_path() -> Path:
    """The MCD12C1 2019 IGBP GeoTIFF shipped inside the package."""
    if not SHIPPED_LANDCOVER.is_file():
        raise InputError(f"landcover 'default': expected the MCD12C1 2019 GeoTIFF shipped with ciml-ter at "
                         f"{SHIPPED_LANDCOVER}, found nothing; reinstall ciml-ter or pass --landcover PATH "
                         f"to an MCD12C1 file")
    return SHIPPED_LANDCOVER


def classes_on_grid(classes: np.ndarray, geometry: GridGeometry, rows: slice | None, cols: slice | None,
                    factor: int) -> np.ndarray:
    """uint8 classes (PFT_FILL = none) on the output grid from a window ``classes`` subset at
    ``factor`` cells per output cell (mode of each block)."""
    if factor == 1:
        out = classes.astype(np.float64)
    else:
        out = block_resample(np.where(classes == PFT_FILL, np.nan, classes.astype(np.float64)), factor,
                             "mode", 0.0)
    return np.where(np.isnan(out), PFT_FILL, out).astype(np.uint8)


def _nearest(classes: np.ndarray, geometry: GridGeometry, window: GridWindow) -> np.ndarray:
    d = geometry.pixel_x
    lat = window.north - (np.arange(window.n_lat) + 0.5) * window.res
    lon = window.west + (np.arange(window.n_lon) + 0.5) * window.res
    r = np.clip(np.floor((geometry.upper_left[1] - lat) / d).astype(int), 0, geometry.y_dim - 1)
    c = np.clip(np.floor((lon - geometry.upper_left[0]) / d).astype(int), 0, geometry.x_dim - 1)
    return classes[np.ix_(r, c)].astype(np.uint8)


def _tif(path: Path, window: GridWindow) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        t = src.transform
        if t.b != 0 or t.d != 0 or t.e >= 0 or abs(t.a + t.e) > 1e-9 or src.crs is None \
                or not src.crs.is_geographic:
            raise InputError(f"landcover {path}: expected a north-up regular lat/lon grid (found CRS "
                             f"{src.crs}, transform {tuple(t)[:6]})")
        geometry = GridGeometry(path.name, "GCTP_GEO", src.width, src.height, (t.c, t.f),
                                (t.c + src.width * t.a, t.f + src.height * t.e), None, ())
        nodata = src.nodata
        if window.res < t.a - 1e-12:
            classes = src.read(1)
            if nodata is not None:
                classes = np.where(classes == nodata, PFT_FILL, classes)
            return _nearest(classes, geometry, window)
        rows, cols, factor = cmg_slices(geometry, window, f"landcover {path.name}")
        from rasterio.windows import Window
        classes = src.read(1, window=Window(cols.start, rows.start, cols.stop - cols.start,
                                            rows.stop - rows.start))
    if nodata is not None:
        classes = np.where(classes == nodata, PFT_FILL, classes)
    return classes_on_grid(classes, geometry, rows, cols, factor)


def _hdf(path: Path, window: GridWindow) -> np.ndarray:
    from .hdf4 import read_hdf4

    name = parse_granule_name(path)
    if name is None or name.product != "MCD12C1":
        raise InputError(f"landcover {path}: expected an MCD12C1 granule name "
                         f"(MCD12C1.AYYYYDDD.CCC.YYYYDDDHHMMSS.hdf) or a GeoTIFF")
    try:
        data = read_hdf4(name, MCD12C1, window)
    except GranuleError as exc:
        raise InputError(f"landcover {path}: {exc}") from None
    pft = data.layers["pft"]
    classes = np.where(np.isnan(pft), PFT_FILL, pft).astype(np.uint8)
    return classes_on_grid(classes, data.geometry, data.rows, data.cols, data.factor)


def landcover_on_grid(window: GridWindow, source: str | Path = "default") -> tuple[np.ndarray, np.ndarray, dict]:
    """(pft uint8 IGBP 0-17 with 255 = fill, land uint8 0/1, provenance) on ``window``."""
    path = default_landcover_path() if str(source) == "default" else Path(source)
    if not path.exists():
        raise InputError(f"landcover {path}: file not found")
    if path.suffix.lower() in (".hdf", ".hdf4"):
        pft = _hdf(path, window)
    else:
        pft = _tif(path, window)
    land = ((pft != 0) & (pft != PFT_FILL)).astype(np.uint8)
    provenance = {"landcover_source": path.name,
                  "landcover_product": "MCD12C1 Majority_Land_Cover_Type_1 (IGBP), NASA LP DAAC",
                  "landcover_resampling": "block mode (coarser) / nearest (finer)"}
    return pft, land, provenance
