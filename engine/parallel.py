"""Spreading work: tiles over MPI ranks (rank 0 hands them out from a queue, the others work),
and tasks over a pool of local threads or processes (``worker_pool``).

Without an MPI launcher (or with one rank) the work runs in this process and mpi4py is never
imported. Results come back to rank 0 in the order of the inputs, whatever rank did them.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, Iterable

from ciml_ter.errors import Interrupted

# Launcher variables that carry the world size before MPI is initialised.
WORLD_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS")


def launched_world_size(environ=None) -> int:
    """World size announced by an MPI launcher or srun (1 when not launched that way)."""
    environ = os.environ if environ is None else environ
    for name in WORLD_SIZE_VARIABLES:
        if environ.get(name):
            return int(environ[name])
    return 1


def under_mpi(environ=None) -> bool:
    """True when this process was started by mpirun/mpiexec/srun with more than one task."""
    return launched_world_size(environ) > 1


def _serial_map(work: Callable, items: Iterable, on_done: Callable | None = None) -> list:
    results = []
    for i, x in enumerate(items):
        results.append(work(x))
        if on_done:
            on_done(i, results[-1])
    return results


@contextmanager
def task_pool() -> Iterator[Callable | None]:
    """A map over MPI ranks with a dynamic queue, usable for several rounds of work.

    On rank 0 (or without MPI) it yields ``map(work, items, on_done=None) -> results`` (in input
    order; ``on_done(index, result)`` as each item finishes); every other rank serves work items
    until rank 0 leaves the block, then gets None. ``work`` must be picklable (a module-level
    function or a functools.partial of one).
    """
    if not under_mpi():
        yield _serial_map
        return
    from mpi4py import MPI
    from mpi4py.futures import MPICommExecutor, as_completed

    with MPICommExecutor(MPI.COMM_WORLD, root=0) as executor:
        if executor is None:
            yield None
            return

        def mapped(work: Callable, items: Iterable, on_done: Callable | None = None) -> list:
            futures = {executor.submit(work, x): i for i, x in enumerate(items)}
            results = [None] * len(futures)
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_done:
                    on_done(i, results[i])
            return results

        yield mapped


@contextmanager
def worker_pool(workers: int, gpu: bool = False) -> Iterator[concurrent.futures.Executor]:
    """A pool of ``workers`` processes (forkserver), or of threads for one worker or for work on
    the GPU (XGBoost releases the GIL; threads share the card). When the block raises (Ctrl-C
    included) the tasks not yet started are cancelled, not run, and the running ones are waited
    for; a worker's KeyboardInterrupt (a Ctrl-C reaches every process of the terminal) comes out
    as ``errors.Interrupted``."""
    pool = (concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
            if workers > 1 and not gpu else concurrent.futures.ThreadPoolExecutor(workers))
    try:
        yield pool
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted() from None
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def map_tiles(work: Callable, items: Iterable, on_done: Callable | None = None) -> list | None:
    """``[work(x) for x in items]`` over MPI ranks (one round of ``task_pool``): the results in
    input order on rank 0 (or without MPI), None on worker ranks."""
    with task_pool() as mapped:
        return None if mapped is None else mapped(work, list(items), on_done)


def mpi_rank() -> int:
    """This process's rank in MPI_COMM_WORLD (0 when not under MPI)."""
    if not under_mpi():
        return 0
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank()


def is_root() -> bool:
    """True on rank 0, or when not under MPI."""
    return mpi_rank() == 0
