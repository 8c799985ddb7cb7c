"""Device choice: NumPy on the CPU or CuPy on a CUDA GPU, and which GPU an MPI rank uses.

GPU libraries are imported lazily, on first use, and the result is cached; importing
``ciml_ter`` never imports CuPy, cuDF, cuML or mpi4py.
"""
from __future__ import annotations

import functools
import importlib
import os

import numpy as np

from ciml_ter.errors import DeviceError
from ciml_ter.kernels._dispatch import array_module, is_cupy_array

DEVICES = ("auto", "cpu", "cuda")
# Environment variables that launchers set to a process's rank on its own node. The MPI
# launchers' come first: under `mpirun` inside an sbatch job every rank inherits the batch
# step's SLURM_LOCALID (0), while under `srun` only SLURM_LOCALID (or also the MPI one) is set.
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                        "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")

__all__ = ["DEVICES", "array_module", "is_cupy_array", "optional_module", "cupy_or_none",
           "gpu_count", "resolve_device", "get_namespace", "to_device", "to_host",
           "local_rank", "gpu_for_rank", "use_rank_gpu", "xgboost_has_cuda", "xgboost_device"]


@functools.cache
def optional_module(name: str):
    """Import an optional library once; return it, or the ImportError that stopped it."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a broken CUDA install raises more than ImportError
        return ImportError(f"{name}: {type(exc).__name__}: {exc}")


def cupy_or_none():
    """CuPy if it imports and sees at least one GPU, else None."""
    cp = optional_module("cupy")
    if isinstance(cp, ImportError):
        return None
    try:
        return cp if cp.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


def gpu_count() -> int:
    """Number of CUDA GPUs CuPy can see (0 without CuPy or without a GPU)."""
    cp = cupy_or_none()
    return cp.cuda.runtime.getDeviceCount() if cp is not None else 0


def _why_no_gpu() -> str:
    cp = optional_module("cupy")
    if isinstance(cp, ImportError):
        return f"CuPy is not importable ({cp}); install ciml-ter[cuda12] or ciml-ter[cuda13]"
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy cannot query the CUDA runtime ({type(exc).__name__}: {exc})"
    return f"CuPy sees {n} CUDA devices"


def resolve_device(device: str | None = "auto", *arrays) -> str:
    """Return "cpu" or "cuda" for a ``device=`` option and/or the arrays to work on.

    "auto" (or None) follows the arrays (CuPy -> "cuda") and otherwise picks "cuda" when a GPU
    is present. "cuda" without a GPU raises DeviceError: there is no silent CPU fallback.
    """
    device = "auto" if device is None else str(device).lower()
    if device not in DEVICES:
        raise DeviceError(f"device: expected one of {', '.join(DEVICES)}, found {device!r}")
    on_gpu = any(is_cupy_array(a) for a in arrays)
    if device == "cpu":
        return "cpu"
    if device == "cuda" or on_gpu:
        if cupy_or_none() is None:
            raise DeviceError(f"device 'cuda' was requested but no CUDA GPU is usable: {_why_no_gpu()}")
        return "cuda"
    return "cuda" if cupy_or_none() is not None else "cpu"


def get_namespace(device: str):
    """The array module for a resolved device: numpy for "cpu", cupy for "cuda"."""
    if device == "cpu":
        return np
    if device == "cuda":
        cp = cupy_or_none()
        if cp is None:
            raise DeviceError(f"device 'cuda' was requested but no CUDA GPU is usable: {_why_no_gpu()}")
        return cp
    raise DeviceError(f"device: expected 'cpu' or 'cuda', found {device!r}")


def to_device(a, device: str):
    """Copy a host or device array to ``device`` ("cpu" or "cuda"); no copy if already there."""
    return get_namespace(device).asarray(a) if device == "cuda" else to_host(a)


def to_host(a) -> np.ndarray:
    """A NumPy array with the values of ``a`` (CuPy arrays are copied to the host)."""
    return a.get() if is_cupy_array(a) else np.asarray(a)


def local_rank(environ=None) -> int:
    """This process's rank on its node, from the launcher's environment (0 when unset)."""
    environ = os.environ if environ is None else environ
    for name in LOCAL_RANK_VARIABLES:
        value = environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise DeviceError(f"{name}: expected an integer local rank, found {value!r}") from None
    return 0


def gpu_for_rank(rank_on_node: int, n_gpus: int) -> int:
    """GPU index for a local rank: rank modulo the number of GPUs on the node."""
    if n_gpus <= 0:
        raise DeviceError(f"cannot map local rank {rank_on_node} to a GPU: this node has no CUDA GPU")
    return rank_on_node % n_gpus


def use_rank_gpu(environ=None) -> int:
    """Make this rank's GPU (local rank mod GPU count) the current CuPy device; return its index."""
    index = gpu_for_rank(local_rank(environ), gpu_count())
    get_namespace("cuda").cuda.Device(index).use()
    return index


def xgboost_has_cuda() -> bool:
    """Whether the installed XGBoost was built with CUDA (``xgboost.build_info()``)."""
    import xgboost

    return bool(xgboost.build_info().get("USE_CUDA", False))


def xgboost_device(device: str, environ=None, n_gpus: int | None = None) -> str:
    """XGBoost's ``device`` for a resolved device: "cpu", or "cuda:<i>" with this rank's GPU
    (local rank mod ``n_gpus``, from ``environ``; plain "cuda" would put every rank on GPU 0).

    DeviceError when the installed XGBoost has no CUDA support: it would otherwise run on the
    CPU with only a warning.
    """
    if device == "cpu":
        return "cpu"
    if device != "cuda":
        raise DeviceError(f"device: expected 'cpu' or 'cuda', found {device!r}")
    if not xgboost_has_cuda():
        import xgboost

        raise DeviceError(f"device 'cuda' was requested but the installed xgboost {xgboost.__version__} "
                          f"was built without CUDA; install a CUDA build (the PyPI manylinux wheel) or "
                          f"use --device cpu")
    return f"cuda:{gpu_for_rank(local_rank(environ), gpu_count() if n_gpus is None else n_gpus)}"
