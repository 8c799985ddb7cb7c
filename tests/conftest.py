"""Suite-wide hooks: the GPU skip rule and the order in which test modules start."""
from __future__ import annotations

import pytest

# Modules that take minutes, started first so that pytest-xdist's workers (`make test`:
# -n 2 --dist loadfile) do not end the run with one of them alone on one worker.
SLOWEST_FIRST = ("test_demo.py", "test_wheel.py", "test_walkthrough.py", "test_benchmarks.py", "test_gpu_session.py",
                 "test_predict.py", "test_pipeline.py", "test_ingest_e2e.py", "test_cli.py")


def _cuda_gpu_present() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _start_rank(item) -> int:
    name = item.path.name
    return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need a real CUDA GPU: skip them (with the reason) where none is present.
    The slowest modules go first (a stable sort: every module keeps its own order)."""
    if any(item.get_closest_marker("gpu") for item in items) and not _cuda_gpu_present():
        skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy (none on this machine)")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)
    items.sort(key=_start_rank)
