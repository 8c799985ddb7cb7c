"""Tiles of the output grid, the run directory's manifest, atomic tile files, resume, and the
run's output ``ter.nc`` (written by ``RunDir.stitch``, read by ``RunDir.read_output``).

A run directory holds ``manifest.json`` (format ``ciml-ter-run/1``: config hash, model id,
grid, tile list, how the run was made and the ``run_id`` that analyses and reports carry to tell
runs apart; read back through ``documents.read_document``) and
``tiles/r{row}_c{col}.h5``, each written under a temporary name, checksummed (SHA-256 in a
``.sha256`` sidecar) and renamed when complete. A tile is finished when both files exist and
the checksum matches; anything else (missing, truncated, corrupt) is redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ciml_ter import __version__
from ciml_ter.documents import read_document
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_output, atomic_write
from ciml_ter.units import TER_UNITS

MANIFEST = "manifest.json"
OUTPUT = "ter.nc"
FORMAT = "ciml-ter-run/1"
TILE_DIR = "tiles"
# Manifest keys that must match for a rerun to reuse finished tiles.
IDENTITY_KEYS = ("config_hash", "model_id", "grid", "months", "variables", "made_from", "calibration_id")
FLAG_FILL = 255  # the extrapolation flag's fill value (no estimate)
INTERVAL_METHOD = ("split-conformal, site-grouped: yhat -/+ q sqrt(tau^2 + kappa^2 (ter_std + s0)^2), q the "
                   "conformal quantile of |y - yhat| / sqrt(tau^2 + kappa^2 (sigma + s0)^2) at held-out towers (tau "
                   "a site's bias, sigma the spread of the models that never saw the tower), per PFT (pooled where a "
                   "PFT has too few towers), the towers' random error removed by SIMEX")


@dataclass
class TerOutput:
    """A run's ``ter.nc``: cell centres (degrees), month starts, ``ter`` and ``ter_std``
    (time, lat, lon) in g C m-2 month-1 (float64), ``shap`` {feature: (time, lat, lon)} when
    asked for, the file's global attributes, the prediction intervals {level name ("90"):
    (lower, upper)} and the extrapolation flag (1 outside the towers' range, 0 inside, NaN
    without an estimate) when the run has them."""

    lat: np.ndarray
    lon: np.ndarray
    months: pd.DatetimeIndex
    ter: np.ndarray
    ter_std: np.ndarray
    shap: dict[str, np.ndarray]
    attrs: dict
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    extrapolation: np.ndarray | None = None

    @property
    def land(self) -> np.ndarray:
        """Cells with an estimate in at least one month."""
        return np.isfinite(self.ter).any(axis=0)


def cf_attributes(name: str, base: float | None) -> dict:
    """Units and long name of an output variable of ``ter.nc`` (``ter``, ``ter_std``,
    ``ter_lower_<level>``, ``ter_upper_<level>``, ``extrapolation``, ``shap_<f>``)."""
    if name == "ter":
        return {"units": TER_UNITS, "long_name": "terrestrial ecosystem respiration (ensemble mean)"}
    if name == "ter_std":
        return {"units": TER_UNITS, "long_name": "standard deviation of TER across fold means"}
    for side in ("lower", "upper"):
        if name.startswith(f"ter_{side}_"):
            percent = name.rsplit("_", 1)[1]
            return {"units": TER_UNITS, "long_name": f"{side} bound of the {percent} % prediction interval of TER",
                    "interval_level": int(percent) / 100, "interval_method": INTERVAL_METHOD,
                    "interval_target": "true monthly TER (not a tower's measurement of it)",
                    "comment": "calibrated at flux towers held out of the model (calibration.json of the model); "
                               "where extrapolation is 1 no tower speaks for the bound"}
    if name == "extrapolation":
        return {"units": "1", "long_name": "predictors outside the range of the towers' training rows",
                "flag_values": np.array([0, 1], dtype=np.uint8),
                "flag_meanings": "within_training_range outside_training_range",
                "comment": "1 where any predictor of the model lies outside [min, max] of its training rows: no "
                           "calibration speaks for the prediction interval there"}
    attrs = {"units": TER_UNITS, "long_name": f"SHAP value of {name[5:]} for TER (ensemble mean)"}
    if base is not None:
        attrs["shap_base_value"] = base
    return attrs


@dataclass(frozen=True, order=True)
class Tile:
    """A block of the grid: tile indices (row, col) and pixel bounds [y0, y1) x [x0, x1)."""

    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def name(self) -> str:
        return f"r{self.row:04d}_c{self.col:04d}"

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def make_tiles(n_lat: int, n_lon: int, tile_size: int) -> list[Tile]:
    """Cut an n_lat x n_lon grid into tiles of at most tile_size x tile_size pixels, row-major."""
    if tile_size < 1:
        raise ValueError(f"tile_size: expected an integer >= 1, found {tile_size}")
    return [Tile(r, c, y0, min(y0 + tile_size, n_lat), x0, min(x0 + tile_size, n_lon))
            for r, y0 in enumerate(range(0, n_lat, tile_size))
            for c, x0 in enumerate(range(0, n_lon, tile_size))]


def auto_tile_edge(land: np.ndarray, workers: int, per_worker: int = 4, largest: int = 500,
                   smallest: int = 16) -> int:
    """Tile edge (pixels) for a land mask and a number of workers: ``largest`` halved until there
    are at least ``per_worker`` land tiles per worker (so that progress shows and the queue
    balances), never below ``smallest``."""
    edge = largest
    while edge > smallest and len(land_tiles(make_tiles(*land.shape, edge), land)[0]) < per_worker * workers:
        edge //= 2
    return max(edge, smallest)


def land_tiles(tiles: list[Tile], land: np.ndarray) -> tuple[list[Tile], list[Tile]]:
    """Split tiles into those with at least one land pixel and those with none (skipped)."""
    with_land, ocean = [], []
    for t in tiles:
        (with_land if np.any(land[t.y0:t.y1, t.x0:t.x1]) else ocean).append(t)
    return with_land, ocean


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunDir:
    """A run directory: its manifest, its finished tiles and atomic writes of new ones."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tile_dir = self.path / TILE_DIR

    def tile_path(self, tile: Tile) -> Path:
        return self.tile_dir / f"{tile.name}.h5"

    def prepare(self, manifest: dict, restart: bool = False) -> dict:
        """Create the run directory or check that it belongs to the same run.

        A different config hash, model, grid, month list, variable list or input (``made_from``)
        is refused unless ``restart`` is true, in which case the old tiles are removed and the run
        gets a new ``run_id``; a resumed run keeps its ``run_id``.
        """
        manifest = {"format": FORMAT, **manifest, "tiles": [[t.row, t.col, t.y0, t.y1, t.x0, t.x1]
                                          for t in manifest["tiles"]],
                    "engine_version": __version__}
        manifest_path = self.path / MANIFEST
        run_id = None
        try:
            self.tile_dir.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"{self.path}: run directory is not writable ({exc.strerror})") from None
        if manifest_path.exists():
            try:
                old = self._recorded_manifest()
            except InputError:
                if not restart:
                    raise
                old = {}  # another document, or a run from before manifests had a format: start over
            differing = [k for k in IDENTITY_KEYS if old.get(k) != manifest.get(k)]
            if differing and not restart:
                raise InputError(
                    f"{self.path}: holds a run with a different {', '.join(differing)} "
                    f"(e.g. {differing[0]} {old.get(differing[0])!r} there, "
                    f"{manifest.get(differing[0])!r} now); refusing to mix outputs: "
                    f"use another --out or --restart to start over")
            if differing:
                for f in self.tile_dir.iterdir():
                    f.unlink()
            else:
                run_id = old.get("run_id")
        manifest["run_id"] = run_id or uuid.uuid4().hex[:16]
        atomic_write(manifest_path, json.dumps(manifest, indent=1, sort_keys=True))
        return manifest

    def _recorded_manifest(self) -> dict:
        """``manifest()`` with the way out named when the file is another document, or a run
        written before manifests carried a format."""
        try:
            return self.manifest()
        except InputError as exc:
            raise InputError(f"{exc}; use another --out or --restart to start over") from None

    def manifest(self) -> dict:
        """The run's manifest; InputError when the directory holds none or another document."""
        return read_document(self.path / MANIFEST, FORMAT, "run manifest (from `ciml-ter predict`)")

    def recorded_tiles(self) -> list[Tile] | None:
        """The tiles of the run already in this directory (None when there is none): a resumed
        run keeps its tiling whatever the number of workers now."""
        path = self.path / MANIFEST
        if not path.is_file():
            return None
        return [Tile(*t) for t in self._recorded_manifest()["tiles"]]

    def is_finished(self, tile: Tile) -> bool:
        """True when the tile file exists and matches its recorded checksum."""
        path = self.tile_path(tile)
        sidecar = path.with_suffix(".sha256")
        if not (path.exists() and sidecar.exists()):
            return False
        return sidecar.read_text().strip() == file_sha256(path)

    def write_tile(self, tile: Tile, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> Path:
        """Write one tile's arrays to HDF5 atomically: temp file, checksum, rename."""
        path = self.tile_path(tile)
        with atomic_output(path) as tmp:
            with h5py.File(tmp, "w") as f:
                for name, value in arrays.items():
                    f.create_dataset(name, data=value)
                for key, value in {**(attrs or {}), "y0": tile.y0, "x0": tile.x0}.items():
                    f.attrs[key] = value
            checksum = file_sha256(tmp)
        # the sidecar comes second: a kill between the two leaves the tile unfinished
        atomic_write(path.with_suffix(".sha256"), checksum + "\n")
        return path

    def read_tile(self, tile: Tile) -> dict[str, np.ndarray]:
        """The arrays of a finished tile."""
        with h5py.File(self.tile_path(tile), "r") as f:
            return {name: f[name][...] for name in f}

    @property
    def output(self) -> Path:
        """The stitched output file, ``ter.nc``."""
        return self.path / OUTPUT

    def stitch(self, tiles: list[Tile], lat: np.ndarray, lon: np.ndarray, months: pd.DatetimeIndex,
               variables: list[str], manifest: dict, features: list[str], base: float | None) -> Path:
        """Write ``ter.nc`` (CF-1.8, NetCDF4) from the finished tile files, one tile at a time."""
        import h5netcdf

        n_months, n_lat, n_lon = len(months), lat.size, lon.size
        with atomic_output(self.output) as tmp, h5netcdf.File(tmp, "w", track_order=True) as f:
            f.dimensions = {"time": n_months, "lat": n_lat, "lon": n_lon}
            days = (months - pd.Timestamp("1970-01-01")).days.to_numpy()
            coords = {"time": (days, {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian",
                                      "standard_name": "time", "long_name": "month start"}),
                      "lat": (lat, {"units": "degrees_north", "standard_name": "latitude"}),
                      "lon": (lon, {"units": "degrees_east", "standard_name": "longitude"})}
            for name, (values, attrs) in coords.items():
                var = f.create_variable(name, (name,), data=np.asarray(values))
                var.attrs.update(attrs)
            out = {}
            for name in variables:
                dtype, fill = ("u1", np.uint8(FLAG_FILL)) if name == "extrapolation" else ("f4", np.float32(np.nan))
                var = f.create_variable(name, ("time", "lat", "lon"), dtype=dtype, fillvalue=fill,
                                        chunks=(1, min(n_lat, 512), min(n_lon, 512)))
                var.attrs.update(cf_attributes(name, base))
                out[name] = var
            for t in tiles:
                arrays = self.read_tile(t)
                for name in variables:
                    out[name][:, t.y0:t.y1, t.x0:t.x1] = arrays[name]
            f.attrs.update({"Conventions": "CF-1.8", "title": "ciml-ter monthly terrestrial ecosystem "
                            "respiration", "source": f"ciml-ter {__version__}", "model_id": manifest["model_id"],
                            "config_hash": manifest["config_hash"], "features": json.dumps(features),
                            "institution": "ciml-ter", "references": "Zhao & Zhu (2025), "
                            "doi:10.1038/s43247-025-02240-1"})
        return self.output

    def _open_output(self):
        """``ter.nc`` as a lazy xarray Dataset; InputError naming the file when it is missing or not
        a run's output."""
        import xarray as xr

        if not self.output.is_file():
            raise InputError(f"{self.output}: prediction output not found; expected a run directory from "
                             f"'ciml-ter predict' at {self.path}")
        try:
            ds = xr.open_dataset(self.output, engine="h5netcdf")
        except Exception as exc:  # h5py/h5netcdf raise many types for a bad file
            raise InputError(f"{self.output}: cannot open as NetCDF4 ({type(exc).__name__}: {exc})") from None
        if not {"ter", "ter_std"} <= set(ds.data_vars):
            ds.close()
            raise InputError(f"{self.output}: expected the variables ter and ter_std of 'ciml-ter predict', "
                             f"found {', '.join(map(str, ds.data_vars)) or 'none'}")
        return ds

    def output_axes(self) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
        """(lat, lon, month starts) of ``ter.nc``, without reading its values."""
        with self._open_output() as ds:
            return (np.asarray(ds.lat.values, dtype=np.float64), np.asarray(ds.lon.values, dtype=np.float64),
                    pd.DatetimeIndex(ds.time.values))

    def read_output(self, shap: bool = False, months: list[str] | None = None) -> TerOutput:
        """The run's ``ter.nc`` (with the SHAP variables when ``shap``; only ``months``, "YYYY-MM",
        when given)."""
        with self._open_output() as ds:
            all_months = pd.DatetimeIndex(ds.time.values)
            index = (np.arange(len(all_months)) if months is None
                     else np.array([list(all_months.strftime("%Y-%m")).index(m) for m in months], dtype=int))
            names = [v for v in ds.data_vars if str(v).startswith("shap_")] if shap else []

            def values(name):
                return np.asarray(ds[name].values[index], dtype=np.float64)

            levels = [str(v)[len("ter_lower_"):] for v in ds.data_vars if str(v).startswith("ter_lower_")]
            return TerOutput(np.asarray(ds.lat.values, dtype=np.float64), np.asarray(ds.lon.values, dtype=np.float64),
                             all_months[index], values("ter"), values("ter_std"),
                             {str(v)[5:]: values(v) for v in names}, dict(ds.attrs),
                             {k: (values(f"ter_lower_{k}"), values(f"ter_upper_{k}")) for k in levels},
                             values("extrapolation") if "extrapolation" in ds else None)
