"""What every benchmark records: the machine, library versions, and a best-of-N timer."""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import os
import platform
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("ciml-ter", "numpy", "numba", "numba-cuda", "scipy", "xgboost", "shap", "pymannkendall", "xarray",
            "mpi4py", "cupy-cuda12x", "cupy-cuda13x")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def smoke_rounds(config) -> None:
    """Fixed, few boosting rounds (50, no rounds search) for a smoke run (``--quick``, ``--dry``):
    it checks that a runner works, and its figures are never recorded as results."""
    config.xgboost.num_boost_round, config.xgboost.early_stopping_rounds = 50, 0


def environment(device: str = "cpu") -> dict:
    """Device description, date and installed versions, for a results JSON."""
    from ciml_ter.device import xgboost_has_cuda

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    machine = {"device": device, "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
               "python": platform.python_version(), "platform": platform.platform(),
               "xgboost_cuda_build": xgboost_has_cuda()}
    if device == "cuda":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        machine.update({"gpu": props["name"].decode(), "gpu_memory_bytes": int(props["totalGlobalMem"]),
                        "multiprocessors": int(props["multiProcessorCount"]),
                        "driver": cupy.cuda.runtime.driverGetVersion(),
                        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()})
    return {"date": datetime.date.today().isoformat(), "machine": machine, "versions": versions}


def write_result(folder: Path, name: str, result: dict) -> Path:
    """Write ``result`` as ``folder/name.json`` (a temporary file renamed: never half written)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@functools.cache
def global_land_cells(res: float) -> int:
    """Land cells of the global grid at ``res`` degrees (cell centres on the global-land-mask)."""
    import numpy as np
    from global_land_mask import globe

    lat = 90 - res * (np.arange(round(180 / res)) + 0.5)
    lon = -180 + res * (np.arange(round(360 / res)) + 0.5)
    return int(sum(int(globe.is_land(np.full(lon.size, y), lon).sum()) for y in lat))


class DeviceMemoryPeak:
    """Context manager sampling the device's used memory every 20 ms (``peak`` in bytes; all
    allocators count, XGBoost's too). On the CPU ``peak`` stays None."""

    def __init__(self, device: str):
        self.device, self.peak = device, None

    def __enter__(self):
        if self.device == "cuda":
            import cupy

            self._stop = threading.Event()
            device_id = cupy.cuda.Device().id

            def sample():
                with cupy.cuda.Device(device_id):
                    while not self._stop.is_set():
                        free, total = cupy.cuda.runtime.memGetInfo()
                        self.peak = max(self.peak or 0, total - free)
                        time.sleep(0.02)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            self._stop.set()
            self._thread.join()
        return False


def timed(fn, repeats: int = 3):
    """Best wall time (s) of ``repeats`` calls of ``fn``, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result
