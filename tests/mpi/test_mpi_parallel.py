"""The tile queue on 2 ranks: rank 0 hands out, rank 1 works, results in input order."""
from __future__ import annotations

import os

import pytest

from ciml_ter.parallel import is_root, map_tiles

pytestmark = pytest.mark.mpi


def _who(x):
    from mpi4py import MPI

    return x, MPI.COMM_WORLD.Get_rank(), os.getpid()


def test_rank_0_hands_out_and_the_others_work(comm):
    results = map_tiles(_who, range(12))
    if comm.Get_rank() == 0:
        assert [r[0] for r in results] == list(range(12))
        assert {r[1] for r in results} == set(range(1, comm.Get_size()))
        assert is_root()
    else:
        assert results is None and not is_root()
    comm.Barrier()
