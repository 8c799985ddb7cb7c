"""A small world for the prediction tests: features cube, site table and a tiny ensemble."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter.config import config_from_dict
from ciml_ter.data.cube import write_zarr
from ciml_ter.sitetable import site_table_from_frame
from ciml_ter.device import CPU
from ciml_ter.stages.features import make_features
from ciml_ter.training import train_ensemble
from ciml_ter.uncertainty import CALIBRATION, tower_intervals, write_calibration

from _support import RUNTIME, make_cube

TINY = {"train": {"folds": 3, "seeds": 2, "workers": 1},
        "xgboost": {"num_boost_round": 40, "early_stopping_rounds": 5, "learning_rate": 0.3},
        "features": {"sg_window": 31, "sg_order": 2, "sg_max_iter": 2},
        "predict": {"tile_size": 4, "batch_rows": 50}}


def true_ter(lst_night, lai, soc30):
    """The world's TER (g C m-2 month-1): temperature response x substrate."""
    return 20 * np.exp(0.06 * (lst_night - 283.15)) * (0.5 + lai) * (1 + soc30 / 50)


def build_world(root: Path, n_lat: int = 12, n_lon: int = 10) -> dict:
    """Write root/cube.zarr, root/features.zarr, root/model; return their paths and config."""
    config = config_from_dict(TINY)
    ds = make_cube(n_lat=n_lat, n_lon=n_lon, days=365, start="2003-01-01", seed=7)
    land = np.ones((n_lat, n_lon), dtype=np.uint8)
    land[:4, :4] = 0  # an ocean corner: one whole tile of water
    land[-1, -1] = 0
    ds["land"][:] = land
    write_zarr(ds, root / "cube.zarr")
    make_features(root / "cube.zarr", root / "features.zarr", config, RUNTIME)
    train_on_features(root / "features.zarr", land, root / "model", config)
    return {"cube": root / "cube.zarr", "features": root / "features.zarr", "model": root / "model",
            "config": config, "land": land}


def train_on_features(features: Path, land: np.ndarray, model_dir: Path, config) -> None:
    """A tiny ensemble trained on towers at every third land pixel of a feature cube, whose
    "observations" are ``true_ter`` of the pixel's predictors with 5 % noise (their random error,
    ``ter_random_error``); the table carries
    the cube's units, as one from ``ciml-ter sites --features`` does; and its calibration
    (calibration.json, as ``evaluate`` writes it: ``predict`` adds the prediction intervals)."""
    from ciml_ter.data.cube import open_cube

    f = open_cube(features)
    names = json.loads(f.attrs["features"])
    rng = np.random.default_rng(3)
    rows = []
    for k, (i, j) in enumerate(zip(*np.nonzero(land))):
        if k % 3:
            continue
        for m in range(f.sizes["time"]):
            values = {name: float(f[name].values[m, i, j]) for name in names}
            truth = true_ter(values["lst_night"], values["lai"], values["soc30"])
            rows.append({"site": f"S{k:03d}", "lat": float(f.lat[i]), "lon": float(f.lon[j]), "pft": "GRA",
                         "time": pd.Timestamp(f.time.values[m]), "ter": truth * rng.normal(1, 0.05),
                         "ter_random_error": 0.05 * truth, **values})
    table = site_table_from_frame(pd.DataFrame(rows), "world", features=names)
    table.meta = {"units": {name: f[name].attrs["units"] for name in names}}
    ensemble = train_ensemble(table, config, model_dir, CPU)
    write_calibration(model_dir / CALIBRATION, tower_intervals(ensemble, table, config).calibration)
