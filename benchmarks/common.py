"""What every benchmark records: the machine, library versions, and a best-of-N timer."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("ciml-ter", "numpy", "numba", "scipy", "xgboost", "shap", "pymannkendall", "xarray", "mpi4py",
            "cupy-cuda12x", "cupy-cuda13x")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: str = "cpu") -> dict:
    """Device description, date and installed versions, for a results JSON."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    machine = {"device": device, "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
               "python": platform.python_version(), "platform": platform.platform()}
    if device == "cuda":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        machine.update({"gpu": props["name"].decode(), "driver": cupy.cuda.runtime.driverGetVersion()})
    return {"date": datetime.date.today().isoformat(), "machine": machine, "versions": versions}


def timed(fn, repeats: int = 3):
    """Best wall time (s) of ``repeats`` calls of ``fn``, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result
