"""Tile queue without MPI: in-process, in order, progress callbacks."""
from __future__ import annotations

from ciml_ter.parallel import is_root, launched_world_size, map_tiles, under_mpi


def _square(x):
    return x * x


def test_world_size_from_launcher_environment():
    assert launched_world_size({}) == 1
    assert launched_world_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launched_world_size({"SLURM_NTASKS": "3"}) == 3
    assert not under_mpi({"SLURM_NTASKS": "1"})


def test_serial_map_keeps_order_and_reports_progress(monkeypatch):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    done = []
    assert map_tiles(_square, range(5), on_done=lambda i, r: done.append((i, r))) == [0, 1, 4, 9, 16]
    assert done == [(0, 0), (1, 1), (2, 4), (3, 9), (4, 16)]
    assert is_root()
