"""Array-type dispatch and argument checks shared by the kernels.

Kernels are pure: they never import from ``ciml_ter`` (the engine) and never import CuPy
unless they were handed a CuPy array (which means CuPy is already imported).
"""
from __future__ import annotations

import math
import sys

import numpy as np

CUDA_THREADS_PER_BLOCK = 256


def is_cupy_array(a) -> bool:
    """True when ``a`` is a CuPy ndarray (checked without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Mixing host and device arrays is an error: the caller must move them first.
    """
    on_gpu = [is_cupy_array(a) for a in arrays if a is not None]
    if any(on_gpu):
        if not all(on_gpu):
            raise ValueError("arrays are on different devices: some are CuPy (GPU) arrays and some "
                             "are NumPy (host) arrays; move them to one device first")
        return sys.modules["cupy"]
    return np


def check_float(name: str, a) -> None:
    """Raise ValueError unless ``a`` has a floating-point dtype."""
    if a.dtype.kind != "f":
        raise ValueError(f"{name}: expected a floating-point array (float32 or float64), "
                         f"found dtype {a.dtype}")


def check_compute_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype; ValueError unless it is float32 or float64."""
    try:
        found = np.dtype(dtype)
    except TypeError:
        found = None
    if dtype is None or found not in (np.float32, np.float64):
        raise ValueError(f"compute_dtype: expected numpy.float32 or numpy.float64, found {dtype!r}")
    return found


def check_same_shape(**arrays) -> None:
    """Raise ValueError unless all named arrays share one shape."""
    shapes = {name: tuple(a.shape) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"mismatched shapes: {listed}; expected all equal")


def cuda_grid(n: int, threads: int = CUDA_THREADS_PER_BLOCK) -> tuple[int, int]:
    """Blocks and threads per block for a 1-D launch over ``n`` elements."""
    return max(1, math.ceil(n / threads)), threads
