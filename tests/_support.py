"""Helpers shared by test modules (import as ``from _support import ...``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from ciml_ter.data.flux import SHIPPED_SAMPLE
from ciml_ter.device import CPU
from ciml_ter.stages import Runtime

REPO = Path(__file__).resolve().parents[1]
FLUXNET_SAMPLE = SHIPPED_SAMPLE  # the 20-site FLUXNET2015 sample inside the package
CLI = [str(Path(sys.executable).with_name("ciml-ter"))]
RUNTIME = Runtime(CPU)  # the stages' runtime in tests: the CPU, no lines, no progress listener


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``ciml-ter`` script; capture text output (``timeout`` in seconds)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=full_env,
                          timeout=timeout)


def ingest_with(paths, out, *, log=print, device: str = "cpu", bbox=None, **settings):
    """``stages.ingest.ingest`` as the tests call it: [ingest] ``settings`` (res, months, rasters,
    landcover, min_valid_fraction) and ``bbox`` laid over the default config, except that there
    is no land cover unless ``landcover`` is given (None or "" = none); lines to ``log``,
    ``device`` resolved as at the CLI's entry."""
    from ciml_ter.config import config_from_dict
    from ciml_ter.device import Device
    from ciml_ter.grid import parse_bbox
    from ciml_ter.stages.ingest import ingest

    settings.setdefault("landcover", None)
    ingest_settings = {k: ("" if v is None else list(v) if k == "rasters" else v) for k, v in settings.items()}
    config = config_from_dict({"device": device, "grid": {"bbox": list(parse_bbox(bbox))},
                               "ingest": ingest_settings}, "test")
    return ingest(paths, out, config, Runtime(Device.resolve(config.device), log))


def make_cube(n_lat=4, n_lon=5, days=20, start="2003-01-01", seed=1):
    """A small input cube that meets the contract: daily reflectances and LST, 8-day
    vegetation fractions, static soil carbon and land mask (all land), random values."""
    rng = np.random.default_rng(seed)
    lat = 10.0 - 0.5 * np.arange(n_lat) - 0.25
    lon = -5.0 + 0.5 * np.arange(n_lon) + 0.25
    days_ = pd.date_range(start, periods=days, freq="D").values
    eight = pd.date_range(start, periods=max(1, days // 8), freq="8D").values
    daily, eight_day, static = ("time", "lat", "lon"), ("time8", "lat", "lon"), ("lat", "lon")
    shape_d, shape_8, shape_s = (days, n_lat, n_lon), (eight.size, n_lat, n_lon), (n_lat, n_lon)
    var = {
        "nir": (daily, rng.uniform(0.2, 0.5, shape_d), "1"),
        "red": (daily, rng.uniform(0.02, 0.1, shape_d), "1"),
        "swir1": (daily, rng.uniform(0.1, 0.3, shape_d), "1"),
        "lst_day": (daily, rng.uniform(280, 310, shape_d), "K"),
        "lst_night": (daily, rng.uniform(270, 290, shape_d), "K"),
        "lai": (eight_day, rng.uniform(0, 5, shape_8), "m2 m-2"),
        "ci": (eight_day, rng.uniform(0.4, 0.9, shape_8), "1"),
        "pv": (eight_day, rng.uniform(0, 0.5, shape_8), "1"),
        "npv": (eight_day, rng.uniform(0, 0.3, shape_8), "1"),
        "bs": (eight_day, rng.uniform(0, 0.2, shape_8), "1"),
        "soc0": (static, rng.uniform(5, 50, shape_s), "g kg-1"),
        "soc10": (static, rng.uniform(5, 40, shape_s), "g kg-1"),
        "soc30": (static, rng.uniform(2, 30, shape_s), "g kg-1"),
        "land": (static, np.ones(shape_s, dtype=np.uint8), None),
    }
    ds = xr.Dataset({k: (dims, v.astype(np.float32) if v.dtype.kind == "f" else v)
                     for k, (dims, v, _) in var.items()},
                    coords={"time": days_, "time8": eight, "lat": lat, "lon": lon})
    for k, (_, _, units) in var.items():
        if units is not None:
            ds[k].attrs["units"] = units
    return ds
