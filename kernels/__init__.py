"""Array kernels of ciml-ter: pure functions, NumPy (numba CPU) or CuPy (GPU) by input type."""
from .spectral import IndexResult, lswi, nirv

__all__ = ["IndexResult", "lswi", "nirv"]
