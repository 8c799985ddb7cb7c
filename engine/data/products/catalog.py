"""Product tables: which layers of which MODIS/VIIRS product become which contract variable, and
which quality-control rule keeps a pixel.

Scale factor, add_offset, _FillValue and valid_range are read from each file's own attributes
where the file has them (granules; ORNL subsets give the scale); ``Layer.stored`` holds the
values of the product specification, used where a file gives none (AppEEARS and Earth Engine
point extracts) and to recognise the MOD13/VNP13 convention below. MODIS HDF4 physical values
are ``scale_factor * (raw - add_offset)`` (the HDF4 SDsetcal convention the MODIS land products
use); the VIIRS HDF5 land products listed here carry add_offset 0, and the same rule is applied
to them. The 16-day vegetation index files (MOD13/MYD13, VNP13) write ``scale_factor`` 10000 and
mean raw / 10000 (their user guides' "scale factor 10000"): an attribute equal to 1 / the
specification's scale is read that way.

Layer and QC names are the HDF science dataset (SDS) names; AppEEARS and the ORNL DAAC subsets
write them with ``_`` for spaces (``layer_key``), Earth Engine under its own band names, listed
in ``aliases`` where they differ.

QC rules are written as bit fields (first bit, number of bits, accepted values), bit 0 = least
significant; a pixel is kept when every field of its QC word holds an accepted value, its raw
value is not _FillValue and lies inside valid_range.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DAILY, EIGHT_DAY, FOUR_DAY, SIXTEEN_DAY, YEARLY = "daily", "8-day", "4-day", "16-day", "yearly"
SINUSOIDAL, CMG = "sinusoidal", "cmg"
HDF4, HDF5 = "hdf4", "hdf5"
# Where the date in a granule's name lies in the date range its metadata give (CoreMetadata
# RANGEBEGINNINGDATE..RANGEENDINGDATE, the HDF5 RangeBeginningDate..RangeEndingDate): the first
# day for daily files and composites; a day inside the retrieval period for the BRDF products
# (MCD43 / VNP43: 16 days of observations "temporally weighted to the ninth day which is reflected
# in the Julian date in the file name", LP DAAC MCD43A4 v061 product page).
NAME_DATE_START, NAME_DATE_WITHIN = "start", "within"
# Output time dimension of each cadence (the contract allows one time dim per variable). The
# 16-day products give red/nir, which feed the daily NIRv: a composite sits on the daily axis at
# its first day, and the SG envelope bridges the days between composites as it bridges cloudy days.
TIME_DIMS = {DAILY: "time", EIGHT_DAY: "time8", FOUR_DAY: "time4", SIXTEEN_DAY: "time"}


def layer_key(name: str) -> str:
    """A layer name as AppEEARS and the ORNL DAAC subsets write it: spaces as ``_``, no leading
    ``_`` (AppEEARS prefixes one to names that begin with a digit: ``_250m_16_days_NDVI``)."""
    return name.replace(" ", "_").lstrip("_")


@dataclass(frozen=True)
class BitField:
    first_bit: int
    n_bits: int
    accepted: frozenset
    meaning: str

    def values(self, qc: np.ndarray) -> np.ndarray:
        return (qc.astype(np.int64) >> self.first_bit) & ((1 << self.n_bits) - 1)


@dataclass(frozen=True)
class QCRule:
    """Keep a pixel when each bit field of the QC layer ``sds`` holds an accepted value."""

    sds: str
    fields: tuple[BitField, ...]
    aliases: tuple[str, ...] = ()  # the QC layer's Earth Engine band names where they differ

    def accept(self, qc: np.ndarray) -> np.ndarray:
        keep = np.ones(qc.shape, dtype=bool)
        for f in self.fields:
            keep &= np.isin(f.values(qc), list(f.accepted))
        return keep

    @property
    def text(self) -> str:
        parts = []
        for f in self.fields:
            bits = (f"bit {f.first_bit}" if f.n_bits == 1
                    else f"bits {f.first_bit}-{f.first_bit + f.n_bits - 1}")
            parts.append(f"{bits} ({f.meaning}) in {sorted(f.accepted)}")
        return f"{self.sds}: " + " and ".join(parts)


@dataclass(frozen=True)
class Stored:
    """How a layer is stored, by its product specification: physical = scale * (raw - offset),
    in ``units``; raw ``fill`` and values outside the raw ``valid`` range are invalid."""

    scale: float
    fill: float | None
    valid: tuple[float, float]
    units: str
    offset: float = 0.0


@dataclass(frozen=True)
class Layer:
    """One contract variable from one science dataset (SDS) of a product."""

    var: str
    sds: str
    qc: QCRule | None = None
    stored: Stored | None = None
    aliases: tuple[str, ...] = ()  # the layer's Earth Engine band names where they differ


@dataclass(frozen=True)
class Product:
    short_names: tuple[str, ...]
    fmt: str  # HDF4 or HDF5
    grid: str  # SINUSOIDAL or CMG
    cadence: str
    layers: tuple[Layer, ...]
    nominal_res_m: float  # for precedence when two products give one variable on one date
    guide: str  # the user guide the SDS names and QC rules come from
    notes: dict = field(default_factory=dict)
    name_date: str = NAME_DATE_START  # NAME_DATE_START or NAME_DATE_WITHIN (above)

    @property
    def time_dim(self) -> str | None:
        return TIME_DIMS.get(self.cadence)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(layer.var for layer in self.layers)


def _bits(first, n, accepted, meaning) -> BitField:
    return BitField(first, n, frozenset(accepted), meaning)


# --- MODIS LST (MOD11A1/MYD11A1 1 km daily tiles, MOD11C1/MYD11C1 0.05 deg daily CMG) ---------
# Guide: Wan, Z., Collection-6.1 MODIS Land Surface Temperature Products Users' Guide (2019),
# tables for MOD11A1 / MOD11C1; LAADS file specification MOD11A1/MYD11A1 Version 61 (09/18/2019).
# LST_Day_1km / LST_Night_1km (and *_CMG): uint16, K, scale_factor 0.02, add_offset 0,
# _FillValue 0, valid_range 7500-65535. QC_Day / QC_Night: uint8 bit fields
#   bits 0-1 mandatory QA: 00 produced good, 01 produced other quality, 10 not produced (cloud),
#            11 not produced (other); bits 2-3 data quality; bits 4-5 emissivity error;
#   bits 6-7 average LST error: 00 <= 1 K, 01 <= 2 K, 10 <= 3 K, 11 > 3 K.
# Rule: produced (mandatory QA 00 or 01) and LST error <= 2 K.
def _mod11_qc(sds: str) -> QCRule:
    return QCRule(sds, (_bits(0, 2, {0, 1}, "mandatory QA: LST produced"),
                        _bits(6, 2, {0, 1}, "average LST error <= 2 K")))


_LST = Stored(0.02, 0, (7500, 65535), "K")
MOD11A1 = Product(("MOD11A1", "MYD11A1"), HDF4, SINUSOIDAL, DAILY,
                  (Layer("lst_day", "LST_Day_1km", _mod11_qc("QC_Day"), _LST),
                   Layer("lst_night", "LST_Night_1km", _mod11_qc("QC_Night"), _LST)),
                  926.625433, "MODIS Collection-6.1 LST Products Users' Guide (Wan 2019), MOD11A1")
MOD11C1 = Product(("MOD11C1", "MYD11C1"), HDF4, CMG, DAILY,
                  (Layer("lst_day", "LST_Day_CMG", _mod11_qc("QC_Day"), _LST),
                   Layer("lst_night", "LST_Night_CMG", _mod11_qc("QC_Night"), _LST)),
                  5559.752598, "MODIS Collection-6.1 LST Products Users' Guide (Wan 2019), MOD11C1")


# --- MODIS NBAR (MCD43A4 500 m daily tiles, MCD43C4 0.05 deg daily CMG) ------------------------
# Guide: Schaaf, C. & Wang, Z., MODIS BRDF/Albedo Product (MCD43) User's Guide, Collection
# V006/V061 (UMass Boston), sections MCD43A4 and MCD43C4; LP DAAC product pages MCD43A4/C4 v061.
# Nadir_Reflectance_Band1..7: int16, scale_factor 0.0001, add_offset 0, _FillValue 32767,
# valid_range 0-32766. Band 1 = red (620-670 nm), 2 = NIR (841-876 nm), 6 = SWIR (1628-1652 nm).
# MCD43A4 BRDF_Albedo_Band_Mandatory_Quality_BandN: uint8, 0 = processed, good quality (full BRDF
#   inversion), 1 = processed, see other QA (magnitude inversion), 255 = fill.
#   Rule: full inversion only (the guide urges users to isolate the full inversions).
# MCD43C4 BRDF_Quality: uint8, 0 = best (100 % full inversions), 1 = good (>= 75 % best full and
#   >= 90 % full inversions), 2 = relative good (>= 75 % full inversions), 3 = mixed (<= 75 % full,
#   <= 25 % fill), 4 = all magnitude inversions or <= 50 % fill, 5 = >= 50 % fill, 255 = fill.
#   Rule: BRDF_Quality <= 2.
def _mcd43_qc(band: int) -> QCRule:
    return QCRule(f"BRDF_Albedo_Band_Mandatory_Quality_Band{band}",
                  (_bits(0, 8, {0}, "full BRDF inversion"),))


_MCD43C4_QC = QCRule("BRDF_Quality", (_bits(0, 8, {0, 1, 2}, "CMG BRDF quality: >= 75 % full inversions"),))
_NBAR = Stored(1e-4, 32767, (0, 32766), "1")
MCD43A4 = Product(("MCD43A4",), HDF4, SINUSOIDAL, DAILY,
                  (Layer("red", "Nadir_Reflectance_Band1", _mcd43_qc(1), _NBAR),
                   Layer("nir", "Nadir_Reflectance_Band2", _mcd43_qc(2), _NBAR),
                   Layer("swir1", "Nadir_Reflectance_Band6", _mcd43_qc(6), _NBAR)),
                  463.312717, "MODIS MCD43 User's Guide C6/C6.1 (Schaaf & Wang), MCD43A4",
                  name_date=NAME_DATE_WITHIN)
MCD43C4 = Product(("MCD43C4",), HDF4, CMG, DAILY,
                  (Layer("red", "Nadir_Reflectance_Band1", _MCD43C4_QC, _NBAR),
                   Layer("nir", "Nadir_Reflectance_Band2", _MCD43C4_QC, _NBAR),
                   Layer("swir1", "Nadir_Reflectance_Band6", _MCD43C4_QC, _NBAR)),
                  5559.752598, "MODIS MCD43 User's Guide C6/C6.1 (Schaaf & Wang), MCD43C4",
                  name_date=NAME_DATE_WITHIN)


# --- MODIS LAI (MCD15A2H 8-day, MCD15A3H 4-day, 500 m tiles) -----------------------------------
# Guide: Myneni, R. et al., MODIS Collection 6.1 LAI/FPAR Product User's Guide (MOD15, 2021);
# LP DAAC product pages MCD15A2H/MCD15A3H v061.
# Lai_500m: uint8, m^2/m^2, scale_factor 0.1, add_offset 0, _FillValue 255, valid_range 0-100
#   (248-254 are non-vegetated / unclassified fill classes, outside valid_range).
# FparLai_QC: uint8; bit 0 MODLAND_QC (0 good: main algorithm, 1 other: back-up or fill);
#   bit 1 sensor; bit 2 dead detector; bits 3-4 cloud state; bits 5-7 SCF_QC: 000 main (RT)
#   method without saturation, 001 main with saturation, 010 main failed (geometry) empirical
#   back-up used, 011 main failed (other) back-up used, 100 not produced.
# Rule: SCF_QC in {0, 1} (main radiative-transfer algorithm, with or without saturation).
# Earth Engine names the MCD15A3H layer "Lai" (MODIS/061/MCD15A3H).
_MCD15_QC = QCRule("FparLai_QC", (_bits(5, 3, {0, 1}, "SCF_QC: main RT algorithm"),))
_LAI = Stored(0.1, 255, (0, 100), "m2 m-2")
MCD15A2H = Product(("MCD15A2H", "MOD15A2H", "MYD15A2H"), HDF4, SINUSOIDAL, EIGHT_DAY,
                   (Layer("lai", "Lai_500m", _MCD15_QC, _LAI),),
                   463.312717, "MODIS C6.1 LAI/FPAR User's Guide (Myneni et al.), MCD15A2H")
MCD15A3H = Product(("MCD15A3H",), HDF4, SINUSOIDAL, FOUR_DAY,
                   (Layer("lai", "Lai_500m", _MCD15_QC, _LAI, aliases=("Lai",)),),
                   463.312717, "MODIS C6.1 LAI/FPAR User's Guide (Myneni et al.), MCD15A3H")


# --- VIIRS (HDF-EOS5 .h5; datasets under HDFEOS/GRIDS/<grid>/Data Fields) ---------------------
# VNP43IA4 NBAR 500 m daily, grid VIIRS_Grid_BRDF. Guide: Schaaf, C. et al., VIIRS BRDF/Albedo
#   (VNP43) User Guide, Version 2 (LP DAAC). Nadir_Reflectance_I1..I3: int16, scale_factor 0.0001,
#   _FillValue 32767, valid_range 0-32766; I1 = red (600-680 nm), I2 = NIR (846-885 nm),
#   I3 = SWIR (1580-1640 nm). BRDF_Albedo_Band_Mandatory_Quality_In: 0 full inversion,
#   1 magnitude inversion, 255 fill. Rule: full inversion only (as MCD43A4).
def _vnp43_qc(band: int) -> QCRule:
    return QCRule(f"BRDF_Albedo_Band_Mandatory_Quality_I{band}",
                  (_bits(0, 8, {0}, "full BRDF inversion"),))


VNP43IA4 = Product(("VNP43IA4", "VJ143IA4"), HDF5, SINUSOIDAL, DAILY,
                   (Layer("red", "Nadir_Reflectance_I1", _vnp43_qc(1), _NBAR),
                    Layer("nir", "Nadir_Reflectance_I2", _vnp43_qc(2), _NBAR),
                    Layer("swir1", "Nadir_Reflectance_I3", _vnp43_qc(3), _NBAR)),
                   463.312717, "VIIRS VNP43 BRDF/Albedo User Guide V2 (Schaaf et al.), VNP43IA4",
                   name_date=NAME_DATE_WITHIN)

# VNP21A1D / VNP21A1N LST 1 km daily (day / night granules), grid VIIRS_Grid_Daily_1km_LST21.
#   Guide: Hulley, G. et al., VIIRS Land Surface Temperature and Emissivity (VNP21) User Guide,
#   Collection 2; LAADS file specification VNP21A1D/N. LST_1KM: uint16, K, scale_factor 0.02,
#   add_offset 0, _FillValue 0, valid_range 7500-65535. QC: uint16; bits 0-1 MODLAND QA (00 good,
#   01 produced unreliable, 10 not produced cloud, 11 not produced other); bits 2-3 data quality;
#   bits 4-5 cloud flag; ... bits 14-15 LST accuracy: 00 > 2 K, 01 1.5-2 K, 10 1-1.5 K, 11 < 1 K.
#   Rule: produced (QA 00 or 01) and LST accuracy better than 2 K (bits 14-15 != 00).
def _vnp21_qc() -> QCRule:
    return QCRule("QC", (_bits(0, 2, {0, 1}, "MODLAND QA: LST produced"),
                         _bits(14, 2, {1, 2, 3}, "LST accuracy <= 2 K")))


VNP21A1D = Product(("VNP21A1D", "VJ121A1D"), HDF5, SINUSOIDAL, DAILY,
                   (Layer("lst_day", "LST_1KM", _vnp21_qc(), _LST),),
                   926.625433, "VIIRS VNP21 LST&E User Guide C2 (Hulley et al.), VNP21A1D")
VNP21A1N = Product(("VNP21A1N", "VJ121A1N"), HDF5, SINUSOIDAL, DAILY,
                   (Layer("lst_night", "LST_1KM", _vnp21_qc(), _LST),),
                   926.625433, "VIIRS VNP21 LST&E User Guide C2 (Hulley et al.), VNP21A1N")

# VNP15A2H LAI 500 m 8-day. Guide: Knyazikhin, Y. & Myneni, R. et al., VIIRS LAI/FPAR (VNP15)
#   User's Guide, Collection 2. Lai: uint8, scale_factor 0.1, _FillValue 255, valid_range 0-100.
#   FparLai_QC: uint8; bits 0-2 SCF_QC (000 main RT method best, 001 main with saturation,
#   010/011 main failed, empirical back-up, 100 not produced); bit 3 dead detector; bits 4-7
#   biome. Rule: SCF_QC in {0, 1} (the VIIRS layout differs from MODIS: SCF_QC in bits 0-2).
VNP15A2H = Product(("VNP15A2H", "VJ115A2H"), HDF5, SINUSOIDAL, EIGHT_DAY,
                   (Layer("lai", "Lai", QCRule("FparLai_QC", (_bits(0, 3, {0, 1}, "SCF_QC: main RT algorithm"),)),
                          _LAI),),
                   463.312717, "VIIRS VNP15 LAI/FPAR User's Guide C2 (Knyazikhin, Myneni et al.), VNP15A2H")


# --- Vegetation indices, 16-day (MOD13Q1/MYD13Q1 250 m, MOD13A1/MYD13A1 500 m, VNP13A1 500 m) -----
# Guide: Didan, K. et al., MODIS Vegetation Index User's Guide (MOD13 Series), Collection 6.1
# (2019); LP DAAC product pages MOD13Q1/MOD13A1 v061. Grids MODIS_Grid_16DAY_250m_500m_VI and
# MODIS_Grid_16DAY_500m_VI. "<res> 16 days red reflectance" (band 1, 620-670 nm) and "... NIR
# reflectance" (band 2, 841-876 nm): int16, scale factor 10000 (physical = raw / 10000),
# _FillValue -1000, valid_range 0-10000. (The "MIR reflectance" layer is band 7, 2105-2155 nm, not
# the contract's 1.6 um swir1.) "<res> 16 days VI Quality": uint16 bit fields
#   bits 0-1 MODLAND QA: 00 VI produced, good quality; 01 VI produced, check other QA; 10 pixel
#            produced but most probably cloudy; 11 pixel not produced (other reasons);
#   bits 2-5 VI usefulness: 0000 highest ... 1100 lowest quality, 1101 quality so low that it is
#            not useful, 1110 L1B data faulty, 1111 not useful for any other reason / not processed;
#   bits 6-7 aerosol quantity; bit 8 adjacent cloud; bit 9 atmosphere BRDF correction; bit 10
#   mixed clouds; bits 11-13 land/water; bit 14 possible snow/ice; bit 15 possible shadow.
# "<res> 16 days pixel reliability" (SummaryQA): -1 fill, 0 good, 1 marginal, 2 snow/ice, 3 cloudy.
# Rule (on VI Quality, the finer of the two): VI produced (MODLAND 00 or 01), usefulness 0-12, no
# mixed clouds, no shadow. Earth Engine (MODIS/061/MOD13A1 ...) names the layers sur_refl_b01,
# sur_refl_b02 and DetailedQA.
def _vi_quality(sds: str, aliases: tuple[str, ...]) -> QCRule:
    return QCRule(sds, (_bits(0, 2, {0, 1}, "MODLAND QA: VI produced"),
                        _bits(2, 4, set(range(13)), "VI usefulness: useful (0-12)"),
                        _bits(10, 1, {0}, "no mixed clouds"),
                        _bits(15, 1, {0}, "no possible shadow")), aliases)


_VI_REFLECTANCE = Stored(1e-4, -1000, (0, 10000), "1")


def _mod13(short_names: tuple[str, ...], res: str, res_m: float) -> Product:
    qc = _vi_quality(f"{res} 16 days VI Quality", ("DetailedQA",))
    return Product(short_names, HDF4, SINUSOIDAL, SIXTEEN_DAY,
                   (Layer("red", f"{res} 16 days red reflectance", qc, _VI_REFLECTANCE, ("sur_refl_b01",)),
                    Layer("nir", f"{res} 16 days NIR reflectance", qc, _VI_REFLECTANCE, ("sur_refl_b02",))),
                   res_m, f"MODIS Vegetation Index User's Guide C6.1 (Didan et al. 2019), {short_names[0]}")


MOD13Q1 = _mod13(("MOD13Q1", "MYD13Q1"), "250m", 231.656358)
MOD13A1 = _mod13(("MOD13A1", "MYD13A1"), "500m", 463.312717)

# VNP13A1: Didan, K. et al., VIIRS Vegetation Indices (VNP13) User Guide / ATBD, Version 2 (LP
# DAAC); grid VIIRS_Grid_16Day_VI_500m. "500 m 16 days red reflectance" (I1, 600-680 nm), "... NIR
# reflectance" (I2, 846-885 nm), "... SWIR2 reflectance" (I3, 1580-1640 nm, the band VNP43IA4
# gives as swir1): int16, scale factor 10000 (raw / 10000), _FillValue -1000, valid_range 0-10000.
# "500 m 16 days VI Quality": the MOD13 bit layout above; same rule. Earth Engine
# (NASA/VIIRS/002/VNP13A1): red_reflectance, NIR_reflectance, SWIR2_reflectance, VI_Quality.
_VNP13_QC = _vi_quality("500 m 16 days VI Quality", ("VI_Quality",))
VNP13A1 = Product(("VNP13A1", "VJ113A1"), HDF5, SINUSOIDAL, SIXTEEN_DAY,
                  (Layer("red", "500 m 16 days red reflectance", _VNP13_QC, _VI_REFLECTANCE, ("red_reflectance",)),
                   Layer("nir", "500 m 16 days NIR reflectance", _VNP13_QC, _VI_REFLECTANCE, ("NIR_reflectance",)),
                   Layer("swir1", "500 m 16 days SWIR2 reflectance", _VNP13_QC, _VI_REFLECTANCE,
                         ("SWIR2_reflectance",))),
                  463.312717, "VIIRS VNP13 Vegetation Indices User Guide V2 (Didan et al.), VNP13A1")


# --- Land cover (MCD12C1 0.05 deg yearly CMG) ---------------------------------------------------
# Guide: Sulla-Menashe, D. & Friedl, M., User Guide to Collection 6 MODIS Land Cover (MCD12Q1 and
# MCD12C1) Product (2018). Majority_Land_Cover_Type_1: uint8, IGBP classes 0 water, 1 evergreen
# needleleaf forest, 2 evergreen broadleaf forest, 3 deciduous needleleaf, 4 deciduous broadleaf,
# 5 mixed forest, 6 closed shrublands, 7 open shrublands, 8 woody savannas, 9 savannas,
# 10 grasslands, 11 permanent wetlands, 12 croplands, 13 urban, 14 cropland/natural mosaic,
# 15 permanent snow and ice, 16 barren; _FillValue 255. No scaling, no QC layer.
MCD12C1 = Product(("MCD12C1",), HDF4, CMG, YEARLY,
                  (Layer("pft", "Majority_Land_Cover_Type_1"),),
                  5559.752598, "MODIS C6 Land Cover User Guide (Sulla-Menashe & Friedl 2018), MCD12C1")
IGBP_CLASSES = {0: "water", 1: "evergreen needleleaf forest", 2: "evergreen broadleaf forest",
                3: "deciduous needleleaf forest", 4: "deciduous broadleaf forest", 5: "mixed forest",
                6: "closed shrublands", 7: "open shrublands", 8: "woody savannas", 9: "savannas",
                10: "grasslands", 11: "permanent wetlands", 12: "croplands", 13: "urban and built-up",
                14: "cropland/natural vegetation mosaic", 15: "permanent snow and ice", 16: "barren",
                17: "unclassified"}
PFT_FILL = 255

PRODUCTS: tuple[Product, ...] = (MOD11A1, MOD11C1, MCD43A4, MCD43C4, MCD15A2H, MCD15A3H, VNP43IA4,
                                 VNP21A1D, VNP21A1N, VNP15A2H, MOD13Q1, MOD13A1, VNP13A1, MCD12C1)
BY_SHORT_NAME: dict[str, Product] = {name: p for p in PRODUCTS for name in p.short_names}


def product_for(short_name: str) -> Product | None:
    """The catalog entry of a product short name (e.g. "MYD11A1"), or None."""
    return BY_SHORT_NAME.get(short_name)


# CF attributes of the contract variables the products give (standard_name where CF has one).
CF_ATTRS = {
    "red": {"long_name": "red nadir BRDF-adjusted surface reflectance",
            "standard_name": "surface_bidirectional_reflectance"},
    "nir": {"long_name": "near-infrared nadir BRDF-adjusted surface reflectance",
            "standard_name": "surface_bidirectional_reflectance"},
    "swir1": {"long_name": "shortwave-infrared (1.6 um) nadir BRDF-adjusted surface reflectance",
              "standard_name": "surface_bidirectional_reflectance"},
    "nirv": {"long_name": "near-infrared reflectance of vegetation (NDVI x NIR)"},
    "lswi": {"long_name": "land surface water index (NIR - SWIR1) / (NIR + SWIR1)"},
    "lst_day": {"long_name": "daytime land surface temperature", "standard_name": "surface_temperature"},
    "lst_night": {"long_name": "nighttime land surface temperature",
                  "standard_name": "surface_temperature"},
    "lai": {"long_name": "leaf area index", "standard_name": "leaf_area_index"},
    "ci": {"long_name": "foliage clumping index"},
    "pv": {"long_name": "photosynthetic vegetation cover fraction"},
    "npv": {"long_name": "non-photosynthetic vegetation cover fraction"},
    "bs": {"long_name": "bare soil cover fraction"},
    "soc0": {"long_name": "soil organic carbon content at 0 cm"},
    "soc10": {"long_name": "soil organic carbon content at 10 cm"},
    "soc30": {"long_name": "soil organic carbon content at 30 cm"},
    "land": {"long_name": "land mask (1 land, 0 water)", "standard_name": "land_binary_mask"},
    "pft": {"long_name": "IGBP land cover class (MCD12C1 Majority_Land_Cover_Type_1)",
            "flag_values": list(range(18)),
            "flag_meanings": " ".join(v.replace(" ", "_").replace("/", "_")
                                      for v in IGBP_CLASSES.values())},
}


def cf_attrs(var: str) -> dict:
    """CF attributes (long_name, standard_name, ...) of a contract variable (empty if unknown)."""
    return dict(CF_ATTRS.get(var, {}))
