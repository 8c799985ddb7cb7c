"""Two ranks: collectives work, each rank reports, rank 0 gathers, local rank is read right."""
from __future__ import annotations

import os

import pytest

from ciml_ter import device
from ciml_ter.stages.info import rank_report

pytestmark = pytest.mark.mpi


def test_allreduce_and_allgather(comm):
    from mpi4py import MPI

    size, rank = comm.Get_size(), comm.Get_rank()
    assert size == 2
    assert comm.allreduce(rank + 1, op=MPI.SUM) == size * (size + 1) // 2
    assert comm.allgather(rank) == list(range(size))


def test_rank_report_gathers_every_rank_on_rank_0(comm):
    report = rank_report()
    if comm.Get_rank() == 0:
        assert report["size"] == comm.Get_size()
        assert report["rank_sum"] == report["rank_sum_expected"] == 1
        assert [e["rank"] for e in report["ranks"]] == [0, 1]
        assert len({e["pid"] for e in report["ranks"]}) == 2
    else:
        assert report == {}
    comm.Barrier()


def test_local_rank_matches_open_mpi(comm):
    assert device.local_rank() == int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"])
    assert comm.allgather(device.local_rank()) == [0, 1]  # one node
