"""What this machine offers the engine: versions, CPUs, GPUs, MPI and Slurm."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys

import ciml_ter
from ciml_ter import device
from ciml_ter.errors import CimlTerError
from ciml_ter.parallel import launched_world_size

PACKAGES = ("numpy", "scipy", "pandas", "xarray", "h5py", "zarr", "numba", "numba-cuda",
            "xgboost", "shap", "tigramite", "scikit-learn", "cupy-cuda12x", "cupy-cuda13x",
            "mpi4py", "typer", "rich")


def package_versions() -> dict[str, str | None]:
    """Installed version of each package the engine uses (None when absent); no imports."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cupy_gpus() -> dict:
    """GPUs seen through CuPy: names, or the reason none are seen."""
    cp = device.optional_module("cupy")
    if isinstance(cp, ImportError):
        return {"available": False, "devices": [], "reason": str(cp)}
    try:
        n = cp.cuda.runtime.getDeviceCount()
        names = [cp.cuda.runtime.getDeviceProperties(i)["name"].decode() for i in range(n)]
    except Exception as exc:
        return {"available": False, "devices": [], "reason": f"{type(exc).__name__}: {exc}"}
    return {"available": n > 0, "devices": names, "reason": None if n else "no CUDA device"}


def numba_cuda_gpus() -> dict:
    """GPUs seen through numba-cuda (the CUDA simulator counts, and is reported as such)."""
    try:
        from numba import cuda
    except Exception as exc:
        return {"available": False, "devices": [], "simulator": False,
                "reason": f"{type(exc).__name__}: {exc}"}
    simulator = bool(os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"))
    try:
        available = bool(cuda.is_available())
        names = [str(g.name) for g in cuda.gpus] if available else []
    except Exception as exc:
        return {"available": False, "devices": [], "simulator": simulator,
                "reason": f"{type(exc).__name__}: {exc}"}
    return {"available": available, "devices": names, "simulator": simulator,
            "reason": None if available else "no CUDA driver or device"}


def mpi_summary() -> dict:
    """MPI library and world size, read without initialising MPI."""
    try:
        import mpi4py
        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = False
        from mpi4py import MPI
        library = MPI.Get_library_version().strip().splitlines()[0]
        version = mpi4py.__version__
    except Exception as exc:
        return {"mpi4py": None, "library": None, "ranks": 1, "reason": f"{type(exc).__name__}: {exc}"}
    return {"mpi4py": version, "library": library, "ranks": launched_world_size(), "reason": None}


def slurm_summary() -> dict:
    """Slurm client commands on PATH, their version, and the job this runs in (if any)."""
    sbatch = shutil.which("sbatch")
    version = None
    if sbatch:
        try:
            version = subprocess.run([sbatch, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            version = None
    return {"sbatch": sbatch, "srun": shutil.which("srun"), "version": version,
            "job_id": os.environ.get("SLURM_JOB_ID"), "ntasks": os.environ.get("SLURM_NTASKS")}


def system_info() -> dict:
    """Everything ``ciml-ter info`` reports, as a JSON-ready dict."""
    return {
        "ciml_ter": ciml_ter.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu": {"count": os.cpu_count(), "usable": len(os.sched_getaffinity(0))},
        "packages": package_versions(),
        "gpu": {"cupy": cupy_gpus(), "numba_cuda": numba_cuda_gpus()},
        "mpi": mpi_summary(),
        "slurm": slurm_summary(),
    }


def rank_report() -> dict:
    """Run on every MPI rank: who this rank is and which GPU it would use; gathered on rank 0.

    Returns, on rank 0, the world size, an allreduce check (sum of ranks) and each rank's entry;
    on other ranks an empty dict. Without a usable mpi4py: a CimlTerError saying how to install it.
    """
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as exc:  # not installed, or its MPI library cannot be loaded
        raise CimlTerError(f"info --mpi: mpi4py is not usable ({type(exc).__name__}: {exc}); install it against the "
                           "system's MPI: PIP_NO_BINARY=mpi4py pip install 'ciml-ter[mpi]'") from None

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    n_gpus = device.gpu_count()
    local = device.local_rank()
    mine = {"rank": rank, "host": socket.gethostname(), "pid": os.getpid(), "local_rank": local,
            "gpu": device.gpu_for_rank(local, n_gpus) if n_gpus else None,
            "slurm_procid": os.environ.get("SLURM_PROCID")}
    rank_sum = comm.allreduce(rank, op=MPI.SUM)
    entries = comm.gather(mine, root=0)
    if rank != 0:
        return {}
    return {"size": size, "rank_sum": rank_sum, "rank_sum_expected": size * (size - 1) // 2,
            "library": MPI.Get_library_version().strip().splitlines()[0], "ranks": entries}
