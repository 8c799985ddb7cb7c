"""Tiles, manifest identity checks, atomic tile files, detection of incomplete/corrupt tiles."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ciml_ter.errors import InputError
from ciml_ter.tiles import RunDir, Tile, auto_tile_edge, land_tiles, make_tiles


def test_tiles_cover_the_grid_exactly_once():
    tiles = make_tiles(7, 11, 3)
    cover = np.zeros((7, 11), dtype=int)
    for t in tiles:
        cover[t.y0:t.y1, t.x0:t.x1] += 1
    assert (cover == 1).all()
    assert len(tiles) == 3 * 4 and tiles[-1] == Tile(2, 3, 6, 7, 9, 11)
    with pytest.raises(ValueError, match="tile_size: expected an integer >= 1, found 0"):
        make_tiles(3, 3, 0)


def test_ocean_tiles_are_skipped():
    land = np.zeros((4, 4), dtype=bool)
    land[3, 0] = True
    with_land, ocean = land_tiles(make_tiles(4, 4, 2), land)
    assert [(t.row, t.col) for t in with_land] == [(1, 0)]
    assert len(ocean) == 3


def _manifest(**changes):
    m = {"config_hash": "abc", "model_id": "m1", "grid": {"lat0": 10.0, "n_lat": 4},
         "months": ["2001-01"], "variables": ["ter"], "tiles": make_tiles(4, 4, 2)}
    m.update(changes)
    return m


def test_write_read_and_finished(tmp_path):
    run = RunDir(tmp_path / "run")
    run.prepare(_manifest())
    tile = make_tiles(4, 4, 2)[1]
    assert not run.is_finished(tile)
    run.write_tile(tile, {"ter": np.full((1, 2, 2), 3.5, np.float32)}, {"model_id": "m1"})
    assert run.is_finished(tile)
    np.testing.assert_array_equal(run.read_tile(tile)["ter"], np.full((1, 2, 2), 3.5, np.float32))
    assert not [p for p in run.tile_dir.iterdir() if p.name.endswith(".tmp")]


def test_truncated_or_unchecksummed_tile_is_not_finished(tmp_path):
    run = RunDir(tmp_path)
    run.prepare(_manifest())
    tile = make_tiles(4, 4, 2)[0]
    path = run.write_tile(tile, {"ter": np.arange(40.0).reshape(10, 2, 2)})
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    assert not run.is_finished(tile)
    run.write_tile(tile, {"ter": np.arange(40.0).reshape(10, 2, 2)})
    assert run.is_finished(tile)
    path.with_suffix(".sha256").unlink()  # killed between the two renames
    assert not run.is_finished(tile)


def test_same_run_is_reused_and_a_different_one_refused(tmp_path):
    run = RunDir(tmp_path)
    run.prepare(_manifest())
    tile = make_tiles(4, 4, 2)[0]
    run.write_tile(tile, {"ter": np.zeros((1, 2, 2))})
    run.prepare(_manifest())  # same identity: fine, tile kept
    assert run.is_finished(tile)
    with pytest.raises(InputError, match="different config_hash .* refusing to mix outputs"):
        run.prepare(_manifest(config_hash="xyz"))
    with pytest.raises(InputError, match="different model_id, grid"):
        run.prepare(_manifest(model_id="m2", grid={"lat0": 11.0, "n_lat": 4}))
    run.prepare(_manifest(config_hash="xyz"), restart=True)
    assert not run.is_finished(tile)
    assert json.loads((tmp_path / "manifest.json").read_text())["config_hash"] == "xyz"


def test_a_run_without_a_manifest_format_needs_restart(tmp_path):
    """A run directory from before manifests carried "format" (or another JSON document) is
    refused with the way out named; --restart starts over."""
    run = RunDir(tmp_path)
    run.prepare(_manifest())
    tile = make_tiles(4, 4, 2)[0]
    run.write_tile(tile, {"ter": np.zeros((1, 2, 2))})
    old = json.loads((tmp_path / "manifest.json").read_text())
    del old["format"]
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(InputError, match="format 'ciml-ter-run/1', found None; use another --out or --restart"):
        run.prepare(_manifest())
    run.prepare(_manifest(), restart=True)
    assert not run.is_finished(tile) and run.manifest()["format"] == "ciml-ter-run/1"


def test_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="run directory is not writable"):
        RunDir(blocker / "run").prepare(_manifest())


@pytest.mark.parametrize("workers, edge", [(1, 125), (2, 62), (8, 31), (1000, 16)])
def test_auto_tile_edge_gives_a_few_land_tiles_per_worker(workers, edge):
    """A global 1 deg grid (180 x 360) used to be one 500-pixel tile: no progress, no balance."""
    land = np.zeros((180, 360), dtype=bool)
    land[20:150, 10:300] = True
    assert auto_tile_edge(land, workers) == edge
    n_land = len(land_tiles(make_tiles(180, 360, edge), land)[0])
    assert n_land >= 4 * workers or edge == 16


def test_a_resumed_run_keeps_its_tiles(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.recorded_tiles() is None
    tiles = make_tiles(10, 10, 4)
    run.prepare({"config_hash": "a", "model_id": "m", "grid": {}, "months": [], "variables": [], "tiles": tiles})
    assert run.recorded_tiles() == tiles
