"""Tiles of the output grid, the run directory's manifest, atomic tile files and resume.

A run directory holds ``manifest.json`` (format ``ciml-ter-run/1``: config hash, model id,
grid, tile list; read back through ``documents.read_document``) and
``tiles/r{row}_c{col}.h5``, each written under a temporary name, checksummed (SHA-256 in a
``.sha256`` sidecar) and renamed when complete. A tile is finished when both files exist and
the checksum matches; anything else (missing, truncated, corrupt) is redone.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ciml_ter import __version__
from ciml_ter.documents import read_document
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_output, atomic_write

MANIFEST = "manifest.json"
FORMAT = "ciml-ter-run/1"
TILE_DIR = "tiles"
# Manifest keys that must match for a rerun to reuse finished tiles.
IDENTITY_KEYS = ("config_hash", "model_id", "grid", "months", "variables")


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

        A different config hash, model, grid, month list or variable list is refused unless
        ``restart`` is true, in which case the old tiles are removed.
        """
        manifest = {"format": FORMAT, **manifest, "tiles": [[t.row, t.col, t.y0, t.y1, t.x0, t.x1]
                                          for t in manifest["tiles"]],
                    "engine_version": __version__}
        manifest_path = self.path / MANIFEST
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
