"""Array kernels of ciml-ter: pure functions, NumPy (numba CPU) or CuPy (GPU) by input type."""
from .area import AUTHALIC_RADIUS_M, pixel_area
from .binning import BinSums, SinusoidalTile, bin_sinusoidal, binned_mean
from .composite import MonthlyMedian, monthly_median
from .envelope import sg_upper_envelope
from .resample import block_resample
from .scvtg import scvtg, scvtg_names
from .spectral import IndexResult, lswi, nirv
from .trend import TrendResult, mann_kendall_theil_sen

__all__ = [
    "AUTHALIC_RADIUS_M",
    "BinSums",
    "IndexResult",
    "MonthlyMedian",
    "SinusoidalTile",
    "TrendResult",
    "bin_sinusoidal",
    "binned_mean",
    "block_resample",
    "lswi",
    "mann_kendall_theil_sen",
    "monthly_median",
    "nirv",
    "pixel_area",
    "scvtg",
    "scvtg_names",
    "sg_upper_envelope",
]
