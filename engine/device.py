"""Device choice: one ``Device`` value (NumPy on the CPU or CuPy on a CUDA GPU, which GPU this MPI
rank uses, XGBoost's device string), resolved once at entry and passed explicitly.

GPU libraries are imported lazily, on first use, and the result is cached; importing
``ciml_ter`` never imports CuPy, cuDF, cuML or mpi4py.
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field, replace

import numpy as np

from ciml_ter.errors import DeviceError
from ciml_ter.kernels._dispatch import array_module, is_cupy_array

DEVICES = ("auto", "cpu", "cuda")
# Environment variables that launchers set to a process's rank on its own node. The MPI
# launchers' come first: under `mpirun` inside an sbatch job every rank inherits the batch
# step's SLURM_LOCALID (0), while under `srun` only SLURM_LOCALID (or also the MPI one) is set.
LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                        "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")

__all__ = ["CPU", "DEVICES", "Device", "array_module", "is_cupy_array", "optional_module", "cupy_or_none",
           "gpu_count", "to_host", "local_rank", "gpu_for_rank", "xgboost_has_cuda"]


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


@dataclass(frozen=True)
class Device:
    """Where a computation runs, resolved once at entry and handed to every stage and worker.

    ``kind`` "cpu" or "cuda"; ``index`` the CUDA ordinal of this process's GPU (local rank mod
    GPU count; 0 on the CPU); ``requested`` what the user asked for ("auto", "cpu" or "cuda"),
    which the training rule ``for_rows`` needs. Picklable: the array module and XGBoost's device
    string are derived, never stored.
    """

    kind: str = "cpu"
    index: int = 0
    requested: str = field(default="cpu", compare=False)  # same place however it was asked for

    @classmethod
    def resolve(cls, requested: str | Device | None = "auto", *arrays, environ=None) -> Device:
        """The device for a ``device=`` option and/or the arrays to work on (heat's
        ``sanitize_device``): "auto" (or None) follows the arrays (CuPy -> "cuda") and otherwise
        takes the GPU when one is present; "cuda" without a usable GPU raises DeviceError (no
        silent CPU fallback). A Device passes through unchanged."""
        if isinstance(requested, Device):
            return requested
        requested = "auto" if requested is None else str(requested).lower()
        if requested not in DEVICES:
            raise DeviceError(f"device: expected one of {', '.join(DEVICES)}, found {requested!r}")
        on_gpu = any(is_cupy_array(a) for a in arrays)
        if requested == "cpu":
            return cls("cpu", 0, requested)
        if requested == "cuda" or on_gpu:
            if cupy_or_none() is None:
                raise DeviceError(f"device 'cuda' was requested but no CUDA GPU is usable: {_why_no_gpu()}")
        elif cupy_or_none() is None:
            return cls("cpu", 0, requested)
        return cls("cuda", gpu_for_rank(local_rank(environ), gpu_count()), requested)

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def xp(self):
        """The array module: numpy on the CPU, cupy on the GPU."""
        if self.kind == "cpu":
            return np
        cp = cupy_or_none()
        if cp is None:
            raise DeviceError(f"device 'cuda' was requested but no CUDA GPU is usable: {_why_no_gpu()}")
        return cp

    @property
    def xgboost(self) -> str:
        """XGBoost's ``device``: "cpu" or "cuda:<index>" (plain "cuda" would be GPU 0 on every
        rank). DeviceError when the installed XGBoost has no CUDA support: it would otherwise run
        on the CPU with only a warning."""
        if self.kind == "cpu":
            return "cpu"
        if not xgboost_has_cuda():
            import xgboost

            raise DeviceError(f"device 'cuda' was requested but the installed xgboost {xgboost.__version__} "
                              f"was built without CUDA; install a CUDA build (the PyPI manylinux wheel) or "
                              f"use --device cpu")
        return f"cuda:{self.index}"

    def for_rank(self, environ=None, n_gpus: int | None = None) -> Device:
        """The same kind on this process's GPU (local rank mod GPU count): for a worker that got
        a Device resolved on another MPI rank."""
        if self.kind == "cpu":
            return self
        n = gpu_count() if n_gpus is None else n_gpus
        return replace(self, index=gpu_for_rank(local_rank(environ), n))

    def for_rows(self, n_rows: int, gpu_min_rows: int) -> Device:
        """The device for training on ``n_rows`` site-months: an explicit "cpu"/"cuda" is kept;
        "auto" takes the GPU only from ``gpu_min_rows`` rows (below that, members trained one
        after another on the GPU are slower than CPU workers side by side)."""
        if self.requested == "auto" and self.kind == "cuda" and n_rows < gpu_min_rows:
            return Device("cpu", 0, self.requested)
        return self

    def use(self) -> Device:
        """Make this GPU CuPy's current device (nothing on the CPU); returns self."""
        if self.kind == "cuda":
            self.xp.cuda.Device(self.index).use()
        return self

    def asarray(self, a):
        """``a`` on this device (no copy when it is already there)."""
        return self.xp.asarray(a) if self.kind == "cuda" else to_host(a)


CPU = Device()  # the default where no device is given: NumPy, XGBoost "cpu"


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


def xgboost_has_cuda() -> bool:
    """Whether the installed XGBoost was built with CUDA (``xgboost.build_info()``)."""
    import xgboost

    return bool(xgboost.build_info().get("USE_CUDA", False))
