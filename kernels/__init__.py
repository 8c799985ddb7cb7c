"""Array kernels of ciml-ter: pure functions, NumPy (numba CPU) or CuPy (GPU) by input type."""
from .area import AUTHALIC_RADIUS_M, pixel_area
from .composite import MonthlyMedian, monthly_median
from .envelope import sg_upper_envelope
from .resample import block_resample
from .scvtg import scvtg
from .spectral import IndexResult, lswi, nirv
from .trend import TrendResult, mann_kendall_theil_sen

__all__ = [
    "AUTHALIC_RADIUS_M",
    "IndexResult",
    "MonthlyMedian",
    "TrendResult",
    "block_resample",
    "lswi",
    "mann_kendall_theil_sen",
    "monthly_median",
    "nirv",
    "pixel_area",
    "scvtg",
    "sg_upper_envelope",
]
