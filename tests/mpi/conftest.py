"""MPI tests run under ``mpirun -n 2 python -m pytest -m mpi``.

A failing test aborts the whole communicator so that the other rank never waits forever in a
collective; ``make test`` also puts a timeout around mpirun.
"""
from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="session")
def comm():
    """MPI.COMM_WORLD with at least 2 ranks (else the test cannot show anything)."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if world.Get_size() < 2:
        pytest.skip("MPI tests need mpirun -n 2 (make test runs them so)")
    return world


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.get_closest_marker("mpi"):
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_size() > 1:
            sys.stderr.write(f"\nrank {MPI.COMM_WORLD.Get_rank()}: {item.nodeid} failed:\n"
                             f"{report.longreprtext}\naborting MPI_COMM_WORLD\n")
            sys.stderr.flush()
            MPI.COMM_WORLD.Abort(1)
