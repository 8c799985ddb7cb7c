"""Test granules in the real product formats, filled with known analytic fields of lat/lon.

MODIS: HDF4 SD files written with pyhdf (the SDS names, data types and attributes of the
Collection 6.1 products: scale_factor/add_offset via SDsetcal, _FillValue, valid_range, units,
long_name) and the HDF-EOS ``StructMetadata.0`` global attribute (GridStructure with XDim/YDim,
UpperLeftPointMtrs/LowerRightMtrs, GCTP_SNSOID or GCTP_GEO, ProjParams). VIIRS: HDF5 files
written with h5py in the HDF-EOS5 layout (``HDFEOS/GRIDS/<grid>/Data Fields/<name>``,
``HDFEOS INFORMATION/StructMetadata.0``). Rasters: GeoTIFFs written with rasterio.

Each granule carries its own identity as real files do: MODIS the ECS ``CoreMetadata.0`` global
attribute (ODL: LOCALGRANULEID, RANGEBEGINNINGDATE/TIME, RANGEENDINGDATE/TIME, VERSIONID,
SHORTNAME, the platform and sensor), VIIRS the attributes of ``HDFEOS/ADDITIONAL/FILE_ATTRIBUTES``
(ShortName, LocalGranuleID, RangeBeginningDate/Time, RangeEndingDate/Time, VersionID, the
"Global Attributes" of the LAADS VIIRS land file specifications). The range is the product's: one
day, an 8-, 4- or 16-day composite from its first day, the year of MCD12C1, and for the BRDF
products (MCD43, VNP43) the 16 days whose ninth is the date in the name.

Tiles are subsampled (e.g. 120 x 120 pixels over a full 10 deg MODIS tile) by writing a
StructMetadata whose XDim/YDim match: the geometry comes from the metadata, so a small tile is a
legitimate input. Pixel values come from the true inverse sinusoidal projection on the MODIS
sphere: lat = y / R, lon = x / (R cos lat).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

R = 6371007.181  # MODIS sphere radius (m)
TILE_M = 2 * math.pi * R / 36  # 1111950.5197 m: one 10-degree tile edge
X0, Y0 = -math.pi * R, math.pi * R / 2  # upper-left corner of tile h00v00


# --- geometry -------------------------------------------------------------------------------


def tile_corners(h: int, v: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """UpperLeftPointMtrs and LowerRightMtrs of MODIS tile (h, v)."""
    ul = (X0 + h * TILE_M, Y0 - v * TILE_M)
    return ul, (ul[0] + TILE_M, ul[1] - TILE_M)


def pixel_latlon(h: int, v: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees) of the pixel centres of an n x n tile (true inverse
    sinusoidal; |lon| > 180 off the globe)."""
    (x0, y0), _ = tile_corners(h, v)
    pixel = TILE_M / n
    y = y0 - (np.arange(n) + 0.5) * pixel
    x = x0 + (np.arange(n) + 0.5) * pixel
    lat = np.degrees(y / R)[:, None] * np.ones((1, n))
    lon = np.degrees(x[None, :] / (R * np.cos(np.radians(lat))))
    return lat, lon


def area_mean(f, south: float, north: float, west: float, east: float, k: int = 64) -> float:
    """Area mean of f(lat, lon) over a lat/lon cell on the sphere (midpoint rule, cos-lat weights)."""
    lat = south + (np.arange(k) + 0.5) * (north - south) / k
    lon = west + (np.arange(k) + 0.5) * (east - west) / k
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    w = np.cos(np.radians(la))
    return float(np.sum(f(la, lo) * w) / np.sum(w))


def lipschitz(f, south, north, west, east, k: int = 200) -> tuple[float, float]:
    """Largest |df/dlat| and |df/dlon| (per degree) of f over a box (finite differences)."""
    lat = np.linspace(south, north, k)
    lon = np.linspace(west, east, k)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    v = f(la, lo)
    return (float(np.max(np.abs(np.diff(v, axis=0))) / (lat[1] - lat[0])),
            float(np.max(np.abs(np.diff(v, axis=1))) / (lon[1] - lon[0])))


# --- HDF-EOS StructMetadata -------------------------------------------------------------------

_HDF4_TYPES = {np.dtype("uint8"): "DFNT_UINT8", np.dtype("int8"): "DFNT_INT8",
               np.dtype("int16"): "DFNT_INT16", np.dtype("uint16"): "DFNT_UINT16",
               np.dtype("int32"): "DFNT_INT32", np.dtype("uint32"): "DFNT_UINT32",
               np.dtype("float32"): "DFNT_FLOAT32"}
_HDF5_TYPES = {np.dtype("uint8"): "H5T_NATIVE_UCHAR", np.dtype("int8"): "H5T_NATIVE_SCHAR",
               np.dtype("int16"): "H5T_NATIVE_SHORT", np.dtype("uint16"): "H5T_NATIVE_USHORT",
               np.dtype("int32"): "H5T_NATIVE_INT", np.dtype("float32"): "H5T_NATIVE_FLOAT"}


def struct_metadata(grid: str, x_dim: int, y_dim: int, ul, lr, fields, projection: str = "GCTP_SNSOID",
                    hdfeos5: bool = False, radius: float = R) -> str:
    """The StructMetadata.0 text of a one-grid HDF-EOS file (fields: [(name, dtype)])."""
    pre = "HE5_" if hdfeos5 else ""
    types = _HDF5_TYPES if hdfeos5 else _HDF4_TYPES
    proj_params = (f"({radius:.6f},0,0,0,0,0,0,0,0,0,0,0,0)" if projection == "GCTP_SNSOID"
                   else "(0,0,0,0,0,0,0,0,0,0,0,0,0)")
    lines = ["GROUP=SwathStructure", "END_GROUP=SwathStructure", "GROUP=GridStructure",
             "\tGROUP=GRID_1", f'\t\tGridName="{grid}"', f"\t\tXDim={x_dim}", f"\t\tYDim={y_dim}",
             f"\t\tUpperLeftPointMtrs=({ul[0]:.6f},{ul[1]:.6f})",
             f"\t\tLowerRightMtrs=({lr[0]:.6f},{lr[1]:.6f})",
             f"\t\tProjection={pre}{projection}", f"\t\tProjParams={proj_params}",
             "\t\tSphereCode=-1" if projection == "GCTP_SNSOID" else "\t\tSphereCode=0",
             f"\t\tGridOrigin={pre}HDFE_GD_UL",
             "\t\tGROUP=Dimension", "\t\tEND_GROUP=Dimension", "\t\tGROUP=DataField"]
    for i, (name, dtype) in enumerate(fields, 1):
        lines += [f"\t\t\tOBJECT=DataField_{i}", f'\t\t\t\tDataFieldName="{name}"',
                  f"\t\t\t\tDataType={types[np.dtype(dtype)]}", '\t\t\t\tDimList=("YDim","XDim")',
                  f"\t\t\tEND_OBJECT=DataField_{i}"]
    lines += ["\t\tEND_GROUP=DataField", "\t\tGROUP=MergedFields", "\t\tEND_GROUP=MergedFields",
              "\tEND_GROUP=GRID_1", "END_GROUP=GridStructure", "GROUP=PointStructure",
              "END_GROUP=PointStructure", "END", ""]
    return "\n".join(lines)


def packed_dms(degrees: float) -> float:
    """Decimal degrees to HDF-EOS packed DDDMMMSSS.SS (whole degrees here)."""
    return float(round(degrees) * 1_000_000)


# --- granule identity (ECS inventory metadata) ----------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    """A granule's product, collection and date range, as its producer writes them."""

    short_name: str
    version: str  # collection, e.g. "061"
    begin: dt.date
    end: dt.date
    granule_id: str  # LocalGranuleID: the standard name the file was produced under
    platform: str = "Terra"

    @property
    def sensor(self) -> str:
        return "VIIRS" if self.short_name.startswith(("VNP", "VJ1")) else "MODIS"

    def core_metadata(self) -> str:
        """The ECS CoreMetadata.0 text (ODL) of a MODIS HDF4 granule, in the files' layout."""
        def obj(name, value, indent, klass=False):
            pad = " " * indent
            quoted = value if isinstance(value, int) else f'"{value}"'
            lines = [f"{pad}{'OBJECT':<23}= {name}"]
            if klass:
                lines.append(f"{pad}  {'CLASS':<21}= \"1\"")
            return lines + [f"{pad}  {'NUM_VAL':<21}= 1", f"{pad}  {'VALUE':<21}= {quoted}",
                            f"{pad}{'END_OBJECT':<23}= {name}", ""]

        def group(name, body, indent=2):
            pad = " " * indent
            return [f"{pad}{'GROUP':<23}= {name}", "", *body, f"{pad}{'END_GROUP':<23}= {name}", ""]

        sensor = [f"    {'OBJECT':<23}= ASSOCIATEDPLATFORMINSTRUMENTSENSORCONTAINER", f"      {'CLASS':<21}= \"1\"", "",
                  *obj("ASSOCIATEDSENSORSHORTNAME", self.sensor, 6, True),
                  *obj("ASSOCIATEDPLATFORMSHORTNAME", self.platform, 6, True),
                  *obj("ASSOCIATEDINSTRUMENTSHORTNAME", self.sensor, 6, True),
                  f"    {'END_OBJECT':<23}= ASSOCIATEDPLATFORMINSTRUMENTSENSORCONTAINER", ""]
        lines = [f"{'GROUP':<23}= INVENTORYMETADATA", f"  {'GROUPTYPE':<21}= MASTERGROUP", "",
                 *group("ECSDATAGRANULE", [*obj("LOCALGRANULEID", self.granule_id, 4),
                                           *obj("PRODUCTIONDATETIME", "2021-01-01T00:00:00.000Z", 4),
                                           *obj("DAYNIGHTFLAG", "Both", 4)]),
                 *group("RANGEDATETIME", [*obj("RANGEENDINGDATE", self.end.isoformat(), 4),
                                          *obj("RANGEENDINGTIME", "23:59:59.000000", 4),
                                          *obj("RANGEBEGINNINGDATE", self.begin.isoformat(), 4),
                                          *obj("RANGEBEGINNINGTIME", "00:00:00.000000", 4)]),
                 *group("COLLECTIONDESCRIPTIONCLASS", [*obj("VERSIONID", int(self.version), 4),
                                                       *obj("SHORTNAME", self.short_name, 4)]),
                 *group("ASSOCIATEDPLATFORMINSTRUMENTSENSOR", sensor),
                 f"{'END_GROUP':<23}= INVENTORYMETADATA", "", "END", ""]
        return "\n".join(lines)

    def file_attributes(self) -> dict:
        """The identity attributes of a VIIRS HDF-EOS5 granule's FILE_ATTRIBUTES group."""
        return {"ShortName": self.short_name, "LocalGranuleID": self.granule_id, "VersionID": self.version,
                "RangeBeginningDate": self.begin.isoformat(), "RangeBeginningTime": "00:00:00.000000",
                "RangeEndingDate": self.end.isoformat(), "RangeEndingTime": "23:59:59.000000",
                "PlatformShortName": self.platform, "SensorShortname": self.sensor}


def inventory(path: Path, days: int = 1, centred: bool = False) -> Inventory:
    """The identity a standard-named granule was produced with: its data span ``days`` days from
    the name's date, or (``centred``, the BRDF products) the 16 days whose ninth it is."""
    short_name, date_part, *rest = Path(path).name.split(".")
    date = dt.date(int(date_part[1:5]), 1, 1) + dt.timedelta(days=int(date_part[5:8]) - 1)
    begin = date - dt.timedelta(days=8) if centred else date
    platform = {"MOD": "Terra", "MYD": "Aqua", "MCD": "Terra+Aqua", "VNP": "Suomi-NPP", "VJ1": "NOAA-20"}
    return Inventory(short_name, rest[-3], begin, begin + dt.timedelta(days=days - 1), Path(path).name,
                     platform[short_name[:3]])


def yearly(path: Path) -> Inventory:
    """The identity of a yearly granule (MCD12C1): January 1 to December 31 of the name's year."""
    first = inventory(path)
    return Inventory(first.short_name, first.version, first.begin, dt.date(first.begin.year, 12, 31),
                     first.granule_id, first.platform)


# --- layers --------------------------------------------------------------------------------------


@dataclass
class Sds:
    """One science dataset: raw data and its attributes (MODIS conventions)."""

    name: str
    data: np.ndarray
    long_name: str
    units: str
    fill: float | None = None
    valid: tuple | None = None
    scale: float | None = None
    offset: float = 0.0
    extra: dict = field(default_factory=dict)


def encode(values: np.ndarray, scale: float, offset: float, dtype, fill, valid=None) -> np.ndarray:
    """Raw integers of physical ``values`` (MODIS: physical = scale * (raw - offset)); NaN -> fill."""
    raw = np.round(np.where(np.isnan(values), 0.0, values / scale + offset))
    if valid is not None:
        raw = np.clip(raw, valid[0], valid[1])
    raw = raw.astype(dtype)
    raw[np.isnan(values)] = fill
    return raw


def _sdc_type(dtype):
    from pyhdf.SD import SDC
    return {np.dtype("uint8"): SDC.UINT8, np.dtype("int8"): SDC.INT8, np.dtype("int16"): SDC.INT16,
            np.dtype("uint16"): SDC.UINT16, np.dtype("int32"): SDC.INT32, np.dtype("uint32"): SDC.UINT32,
            np.dtype("float32"): SDC.FLOAT32}[np.dtype(dtype)]


def write_hdf4(path: Path, grid: str, ul, lr, layers: list[Sds], projection: str = "GCTP_SNSOID",
               identity: Inventory | None = None, compress: bool = False) -> Path:
    """An HDF-EOS2 grid file as pyhdf writes it: SDSs with MODIS attributes, StructMetadata.0 and
    (``identity``) CoreMetadata.0."""
    from pyhdf.SD import SD, SDC

    path = Path(path)
    y_dim, x_dim = layers[0].data.shape
    sd = SD(str(path), SDC.WRITE | SDC.CREATE | SDC.TRUNC)
    try:
        for layer in layers:
            sds = sd.create(layer.name, _sdc_type(layer.data.dtype), layer.data.shape)
            sds.dim(0).setname(f"YDim:{grid}")
            sds.dim(1).setname(f"XDim:{grid}")
            if compress:
                sds.setcompress(SDC.COMP_DEFLATE, 4)
            if layer.fill is not None:
                sds.setfillvalue(np.asarray(layer.fill, dtype=layer.data.dtype).item())
            if layer.valid is not None:
                sds.setrange(*(np.asarray(layer.valid, dtype=layer.data.dtype).tolist()))
            sds.attr("long_name").set(SDC.CHAR8, layer.long_name)
            sds.attr("units").set(SDC.CHAR8, layer.units)
            if layer.scale is not None:
                sds.setcal(float(layer.scale), 0.0, float(layer.offset), 0.0, SDC.FLOAT32)
            for key, value in layer.extra.items():
                sds.attr(key).set(SDC.CHAR8, str(value))
            sds[:] = layer.data
            sds.endaccess()
        text = struct_metadata(grid, x_dim, y_dim, ul, lr, [(s.name, s.data.dtype) for s in layers],
                               projection)
        sd.attr("StructMetadata.0").set(SDC.CHAR8, text)
        if identity is not None:
            sd.attr("CoreMetadata.0").set(SDC.CHAR8, identity.core_metadata())
    finally:
        sd.end()
    return path


def write_hdf5(path: Path, grid: str, ul, lr, layers: list[Sds], identity: Inventory | None = None,
               fill_attribute: str = "_FillValue") -> Path:
    """A VIIRS HDF-EOS5 grid file as h5py writes it (HDFEOS/GRIDS/<grid>/Data Fields/...), with
    ``identity`` in HDFEOS/ADDITIONAL/FILE_ATTRIBUTES; ``fill_attribute`` is the fill value's
    attribute name (some real VIIRS files spell it ``_Fillvalue``)."""
    path = Path(path)
    y_dim, x_dim = layers[0].data.shape
    text = struct_metadata(grid, x_dim, y_dim, ul, lr, [(s.name, s.data.dtype) for s in layers],
                           hdfeos5=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("HDFEOS INFORMATION/StructMetadata.0", data=np.bytes_(text))
        f["HDFEOS INFORMATION"].attrs["HDFEOSVersion"] = np.bytes_("HDFEOS_5.1.15")
        attributes = f.create_group("HDFEOS/ADDITIONAL/FILE_ATTRIBUTES")
        for key, value in (identity.file_attributes() if identity is not None else {}).items():
            attributes.attrs[key] = np.bytes_(value)
        fields = f.create_group(f"HDFEOS/GRIDS/{grid}/Data Fields")
        for layer in layers:
            ds = fields.create_dataset(layer.name, data=layer.data, compression="gzip", compression_opts=4)
            if layer.fill is not None:
                ds.attrs[fill_attribute] = np.array([layer.fill], dtype=layer.data.dtype)
            if layer.valid is not None:
                ds.attrs["valid_range"] = np.array(layer.valid, dtype=layer.data.dtype)
            if layer.scale is not None:
                ds.attrs["scale_factor"] = np.array([layer.scale], dtype="f8")
                ds.attrs["add_offset"] = np.array([layer.offset], dtype="f8")
            ds.attrs["long_name"] = np.bytes_(layer.long_name)
            ds.attrs["units"] = np.bytes_(layer.units)
    return path


def granule_name(product: str, date: str, collection: str, tile=None, ext: str = "hdf") -> str:
    """Standard name, e.g. MOD11A1.A2019001.h18v03.061.2020001000000.hdf (date YYYY-MM-DD)."""
    d = dt.date.fromisoformat(date)
    tile_part = "" if tile is None else f".h{tile[0]:02d}v{tile[1]:02d}"
    return f"{product}.A{d.year}{d.timetuple().tm_yday:03d}{tile_part}.{collection}.2021001000000.{ext}"


# --- products --------------------------------------------------------------------------------


def _u8(value, n) -> np.ndarray:
    return np.full(n, value, dtype=np.uint8)


def mod11a1(folder: Path, date: str, h: int, v: int, n: int, day, night, qc_day=None, qc_night=None,
            product: str = "MOD11A1", scale: float = 0.02, offset: float = 0.0, metadata: bool = True) -> Path:
    """A MOD11A1/MYD11A1 C6.1 tile. ``day``/``night``: physical LST (K) arrays, NaN = fill;
    ``qc_*``: uint8 QC words (default 0 = good); ``metadata`` False: no CoreMetadata.0."""
    shape = (n, n)
    qc_day = np.zeros(shape, np.uint8) if qc_day is None else qc_day
    qc_night = np.zeros(shape, np.uint8) if qc_night is None else qc_night
    lst = dict(fill=0, valid=(7500, 65535), scale=scale, offset=offset, units="K")
    layers = [
        Sds("LST_Day_1km", encode(day, scale, offset, np.uint16, 0, (7500, 65535)),
            "Daily daytime 1km grid Land-surface Temperature", **lst),
        Sds("QC_Day", qc_day, "Quality control for daytime LST and emissivity", "none", valid=(0, 255)),
        Sds("Day_view_time", _u8(105, shape), "Local time of day observation", "hrs", 255, (0, 240), 0.1),
        Sds("Day_view_angl", _u8(65, shape), "View zenith angle of day observation", "degree", 255,
            (0, 130), 1.0, -65.0),
        Sds("LST_Night_1km", encode(night, scale, offset, np.uint16, 0, (7500, 65535)),
            "Daily nighttime 1km grid Land-surface Temperature", **lst),
        Sds("QC_Night", qc_night, "Quality control for nighttime LST and emissivity", "none", valid=(0, 255)),
        Sds("Night_view_time", _u8(225, shape), "Local time of night observation", "hrs", 255, (0, 240), 0.1),
        Sds("Night_view_angl", _u8(65, shape), "View zenith angle of night observation", "degree", 255,
            (0, 130), 1.0, -65.0),
        Sds("Emis_31", _u8(240, shape), "Band 31 emissivity", "none", 0, (1, 255), 0.002, 0.49),
        Sds("Emis_32", _u8(242, shape), "Band 32 emissivity", "none", 0, (1, 255), 0.002, 0.49),
        Sds("Clear_day_cov", np.full(shape, 2000, np.uint16), "Day clear-sky coverage", "none", 0,
            (1, 65535), 0.0005),
        Sds("Clear_night_cov", np.full(shape, 2000, np.uint16), "Night clear-sky coverage", "none", 0,
            (1, 65535), 0.0005),
    ]
    ul, lr = tile_corners(h, v)
    path = Path(folder) / granule_name(product, date, "061", (h, v))
    return write_hdf4(path, "MODIS_Grid_Daily_1km_LST", ul, lr, layers,
                      identity=inventory(path) if metadata else None)


def mcd43a4(folder: Path, date: str, h: int, v: int, n: int, bands: dict, quality: dict | None = None) -> Path:
    """An MCD43A4 C6.1 tile. ``bands``: {band number: reflectance array (NaN = fill)}, bands not
    given are filled; ``quality``: {band: uint8 mandatory quality (default 0 = full inversion)}."""
    shape = (n, n)
    quality = quality or {}
    layers = []
    for b in range(1, 8):
        q = quality.get(b, np.zeros(shape, np.uint8) if b in bands else _u8(255, shape))
        layers.append(Sds(f"BRDF_Albedo_Band_Mandatory_Quality_Band{b}", q,
                          "BRDF_Albedo_Band_Mandatory_Quality", "concatenated flags", 255, (0, 254)))
    for b in range(1, 8):
        values = bands.get(b, np.full(shape, np.nan))
        layers.append(Sds(f"Nadir_Reflectance_Band{b}", encode(values, 1e-4, 0.0, np.int16, 32767, (0, 32766)),
                          "Nadir_Reflectance", "reflectance, no units", 32767, (0, 32766), 1e-4))
    ul, lr = tile_corners(h, v)
    path = Path(folder) / granule_name("MCD43A4", date, "061", (h, v))
    return write_hdf4(path, "MOD_Grid_BRDF", ul, lr, layers, identity=inventory(path, 16, centred=True))


def mcd15a2h(folder: Path, date: str, h: int, v: int, n: int, lai, qc=None, product: str = "MCD15A2H") -> Path:
    """An MCD15A2H (or MCD15A3H) C6.1 tile; ``lai`` m2/m2 (NaN = fill 255); ``qc`` FparLai_QC."""
    shape = (n, n)
    qc = np.zeros(shape, np.uint8) if qc is None else qc
    layers = [
        Sds("Fpar_500m", encode(np.clip(lai / 6, 0, 1), 0.01, 0.0, np.uint8, 255, (0, 100)),
            "Fraction of photosynthetically active radiation", "Percent", 255, (0, 100), 0.01),
        Sds("Lai_500m", encode(lai, 0.1, 0.0, np.uint8, 255, (0, 100)), "Leaf area index", "m^2/m^2",
            255, (0, 100), 0.1),
        Sds("FparLai_QC", qc, "Quality for FPAR and LAI", "class-flag", 255, (0, 254)),
        Sds("FparExtra_QC", np.zeros(shape, np.uint8), "Extra detail quality for FPAR and LAI",
            "class-flag", 255, (0, 254)),
        Sds("FparStdDev_500m", _u8(5, shape), "Standard deviation of FPAR", "Percent", 255, (0, 100), 0.01),
        Sds("LaiStdDev_500m", _u8(3, shape), "Standard deviation of LAI", "m^2/m^2", 255, (0, 100), 0.1),
    ]
    ul, lr = tile_corners(h, v)
    path = Path(folder) / granule_name(product, date, "061", (h, v))
    grid = "MOD_Grid_MOD15A2H" if product != "MCD15A3H" else "MOD_Grid_MCD15A3H"
    return write_hdf4(path, grid, ul, lr, layers, identity=inventory(path, 4 if product == "MCD15A3H" else 8))


CMG_UL = (packed_dms(-180.0), packed_dms(90.0))
CMG_LR = (packed_dms(180.0), packed_dms(-90.0))


def cmg_latlon(n_lat: int = 3600, n_lon: int = 7200) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre lat (descending from 90) and lon (from -180) of a global CMG."""
    d_lat, d_lon = 180.0 / n_lat, 360.0 / n_lon
    return 90.0 - (np.arange(n_lat) + 0.5) * d_lat, -180.0 + (np.arange(n_lon) + 0.5) * d_lon


def mcd43c4(folder: Path, date: str, bands: dict, quality: np.ndarray) -> Path:
    """An MCD43C4 C6.1 CMG (global 0.05 deg, 3600 x 7200). ``bands``: {1, 2, 6: reflectance arrays};
    ``quality``: BRDF_Quality (uint8). Only the layers ingest reads plus the quality layer are
    written (the other NBAR bands would only make the file slower to write)."""
    layers = [Sds(f"Nadir_Reflectance_Band{b}", encode(bands[b], 1e-4, 0.0, np.int16, 32767, (0, 32766)),
                  f"Nadir_Reflectance_Band{b}", "reflectance, no units", 32767, (0, 32766), 1e-4)
              for b in sorted(bands)]
    layers.append(Sds("BRDF_Quality", quality, "BRDF_Quality", "concatenated flags", 255, (0, 254)))
    path = Path(folder) / granule_name("MCD43C4", date, "061")
    return write_hdf4(path, "MCD_CMG_BRDF_0.05Deg", CMG_UL, CMG_LR, layers, projection="GCTP_GEO",
                      identity=inventory(path, 16, centred=True), compress=True)


def mod11c1(folder: Path, date: str, day: np.ndarray, night: np.ndarray, qc_day=None, qc_night=None) -> Path:
    """A MOD11C1 C6.1 CMG (the grid size is that of the arrays; real files are 3600 x 7200)."""
    qc_day = np.zeros(day.shape, np.uint8) if qc_day is None else qc_day
    qc_night = np.zeros(day.shape, np.uint8) if qc_night is None else qc_night
    lst = dict(fill=0, valid=(7500, 65535), scale=0.02, units="K")
    layers = [Sds("LST_Day_CMG", encode(day, 0.02, 0.0, np.uint16, 0), "Daily daytime CMG Land-surface Temperature", **lst),
              Sds("QC_Day", qc_day, "Quality control for daytime LST and emissivity", "none", valid=(0, 255)),
              Sds("LST_Night_CMG", encode(night, 0.02, 0.0, np.uint16, 0),
                  "Daily nighttime CMG Land-surface Temperature", **lst),
              Sds("QC_Night", qc_night, "Quality control for nighttime LST and emissivity", "none", valid=(0, 255))]
    path = Path(folder) / granule_name("MOD11C1", date, "061")
    return write_hdf4(path, "MODIS_CMG_3MIN_LST", CMG_UL, CMG_LR, layers, projection="GCTP_GEO",
                      identity=inventory(path), compress=True)


def mcd12c1(folder: Path, year: int, classes: np.ndarray) -> Path:
    """An MCD12C1 C6 CMG with Majority_Land_Cover_Type_1 = ``classes`` (uint8 IGBP, 255 fill)."""
    layers = [Sds("Majority_Land_Cover_Type_1", classes.astype(np.uint8),
                  "Majority Land Cover Type 1 (IGBP)", "class number", 255, (0, 16))]
    path = Path(folder) / granule_name("MCD12C1", f"{year}-01-01", "006")
    return write_hdf4(path, "MOD12C1", CMG_UL, CMG_LR, layers, projection="GCTP_GEO",
                      identity=yearly(path), compress=True)


# --- VIIRS -----------------------------------------------------------------------------------------


def vnp21a1(folder: Path, date: str, h: int, v: int, n: int, lst, qc=None, night: bool = False) -> Path:
    """A VNP21A1D (or VNP21A1N) V2 tile: LST_1KM (K, NaN = fill 0) and QC (uint16)."""
    shape = (n, n)
    qc = np.full(shape, 0b11 << 14, np.uint16) if qc is None else qc  # good, LST accuracy < 1 K
    layers = [Sds("LST_1KM", encode(lst, 0.02, 0.0, np.uint16, 0, (7500, 65535)),
                  "Daily 1km Land Surface Temperature (LST)", "K", 0, (7500, 65535), 0.02),
              Sds("QC", qc, "Daily QC for LST and emissivity", "n/a", None, (0, 65535)),
              Sds("Emis_14", _u8(240, shape), "Daily Band 14 emissivity", "n/a", 0, (1, 255), 0.002, 0.49),
              Sds("Emis_15", _u8(240, shape), "Daily Band 15 emissivity", "n/a", 0, (1, 255), 0.002, 0.49),
              Sds("Emis_16", _u8(240, shape), "Daily Band 16 emissivity", "n/a", 0, (1, 255), 0.002, 0.49),
              Sds("View_Angle", _u8(65, shape), "View zenith angle of LST", "deg", 255, (0, 130), 1.0, -65.0),
              Sds("View_Time", _u8(105, shape), "Time of LST observation", "h", 255, (0, 240), 0.1)]
    ul, lr = tile_corners(h, v)
    product = "VNP21A1N" if night else "VNP21A1D"
    path = Path(folder) / granule_name(product, date, "002", (h, v), "h5")
    return write_hdf5(path, "VIIRS_Grid_Daily_1km_LST21", ul, lr, layers, inventory(path))


def vnp43ia4(folder: Path, date: str, h: int, v: int, n: int, bands: dict, quality: dict | None = None) -> Path:
    """A VNP43IA4 V2 tile: Nadir_Reflectance_I1..I3 and their mandatory quality."""
    shape = (n, n)
    quality = quality or {}
    layers = []
    for b in (1, 2, 3):
        layers.append(Sds(f"BRDF_Albedo_Band_Mandatory_Quality_I{b}", quality.get(b, np.zeros(shape, np.uint8)),
                          "BRDF_Albedo_Band_Mandatory_Quality", "concatenated flags", 255, (0, 254)))
        layers.append(Sds(f"Nadir_Reflectance_I{b}", encode(bands[b], 1e-4, 0.0, np.int16, 32767, (0, 32766)),
                          f"Nadir_Reflectance_I{b}", "reflectance", 32767, (0, 32766), 1e-4))
    ul, lr = tile_corners(h, v)
    path = Path(folder) / granule_name("VNP43IA4", date, "002", (h, v), "h5")
    return write_hdf5(path, "VIIRS_Grid_BRDF", ul, lr, layers, inventory(path, 16, centred=True))


def vnp15a2h(folder: Path, date: str, h: int, v: int, n: int, lai, qc=None) -> Path:
    """A VNP15A2H V2 tile: Lai (scale 0.1, fill 255) and FparLai_QC (SCF_QC in bits 0-2).
    The grid name is not taken from a real file; the reader finds the layer under any grid."""
    shape = (n, n)
    qc = np.zeros(shape, np.uint8) if qc is None else qc
    layers = [Sds("Fpar", encode(np.clip(lai / 6, 0, 1), 0.01, 0.0, np.uint8, 255, (0, 100)), "FPAR",
                  "Percent", 255, (0, 100), 0.01),
              Sds("Lai", encode(lai, 0.1, 0.0, np.uint8, 255, (0, 100)), "LAI", "m^2/m^2", 255, (0, 100), 0.1),
              Sds("FparLai_QC", qc, "LAI/FPAR QC", "class-flag", 255, (0, 254)),
              Sds("FparExtra_QC", np.zeros(shape, np.uint8), "LAI/FPAR extra QC", "class-flag", 255, (0, 254)),
              Sds("FparStdDev", _u8(5, shape), "FPAR standard deviation", "Percent", 255, (0, 100), 0.01),
              Sds("LaiStdDev", _u8(3, shape), "LAI standard deviation", "m^2/m^2", 255, (0, 100), 0.1)]
    ul, lr = tile_corners(h, v)
    path = Path(folder) / granule_name("VNP15A2H", date, "002", (h, v), "h5")
    return write_hdf5(path, "VNP_Grid_VNP15A2H", ul, lr, layers, inventory(path, 8))


# --- GeoTIFF ----------------------------------------------------------------------------------------


def geotiff(path: Path, values: np.ndarray, transform, crs: str = "EPSG:4326", nodata=None, units=None,
            dtype=None, tags: dict | None = None, scale: float | None = None, offset: float | None = None) -> Path:
    """A one-band GeoTIFF."""
    import rasterio

    data = values.astype(dtype or values.dtype)
    profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1,
               "dtype": data.dtype, "crs": crs, "transform": transform}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if units is not None:
            dst.units = (units,)
        if tags:
            dst.update_tags(**tags)
        if scale is not None or offset is not None:
            dst.scales = (scale if scale is not None else 1.0,)
            dst.offsets = (offset if offset is not None else 0.0,)
    return Path(path)


def north_up(west: float, north: float, x_res: float, y_res: float):
    """A north-up affine transform (rasterio's from_origin warns under affine 3)."""
    from affine import Affine
    return Affine(x_res, 0.0, west, 0.0, -y_res, north)


def latlon_geotiff(path: Path, f, west: float, north: float, res: float, n_lat: int, n_lon: int,
                   **kwargs) -> Path:
    """An EPSG:4326 GeoTIFF of f(lat, lon) at cell centres."""
    lat = north - (np.arange(n_lat) + 0.5) * res
    lon = west + (np.arange(n_lon) + 0.5) * res
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return geotiff(path, f(la, lo).astype(np.float32), north_up(west, north, res, res), **kwargs)


def mod13a1(folder: Path, date: str, h: int, v: int, n: int, red, nir, quality=None,
            product: str = "MOD13A1") -> Path:
    """A MOD13A1 (or MYD13A1) C6.1 16-day tile: "500m 16 days red/NIR reflectance" (int16, fill
    -1000, valid 0-10000) with the files' scale_factor 10000 (physical = raw / 10000, MOD13 user
    guide), "500m 16 days VI Quality" (uint16, default 0 = good) and the other layers of the file."""
    shape = (n, n)
    quality = np.zeros(shape, np.uint16) if quality is None else quality
    refl = dict(fill=-1000, valid=(0, 10000), scale=10000.0, units="reflectance")
    ndvi = (nir - red) / (nir + red)

    def raw(values):
        return np.where(np.isnan(values), -1000, np.round(values * 10000)).astype(np.int16)

    layers = [Sds("500m 16 days NDVI", raw(ndvi), "500m 16 days NDVI", "NDVI", -3000, (-2000, 10000), 10000.0),
              Sds("500m 16 days VI Quality", quality, "500m 16 days VI Quality", "bits", 65535, (0, 65534)),
              Sds("500m 16 days red reflectance", raw(red), "500m 16 days red reflectance", **refl),
              Sds("500m 16 days NIR reflectance", raw(nir), "500m 16 days NIR reflectance", **refl),
              Sds("500m 16 days composite day of the year", np.full(shape, 9, np.int16),
                  "500m 16 days composite day of the year", "Julian day of year", -1, (1, 366)),
              Sds("500m 16 days pixel reliability", np.zeros(shape, np.int8),
                  "500m 16 days pixel reliability summary QA", "rank", -1, (0, 3))]
    ul, lr = tile_corners(h, v)
    path = Path(folder) / granule_name(product, date, "061", (h, v))
    return write_hdf4(path, "MODIS_Grid_16DAY_500m_VI", ul, lr, layers, identity=inventory(path, 16))
