"""Suite-wide hooks: the GPU skip rule."""
from __future__ import annotations

import pytest

def _cuda_gpu_present() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need a real CUDA GPU: skip them (with the reason) where none is present."""
    if any(item.get_closest_marker("gpu") for item in items) and not _cuda_gpu_present():
        skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy (none on this machine)")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)

