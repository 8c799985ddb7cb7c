"""Device layer: namespace choice, explicit GPU errors, rank-to-GPU mapping."""
from __future__ import annotations

import numpy as np
import pytest

from ciml_ter import device
from ciml_ter.device import Device
from ciml_ter.errors import DeviceError


def _gpu_present() -> bool:
    return device.cupy_or_none() is not None


def test_numpy_arrays_choose_numpy():
    assert device.array_module(np.zeros(3), np.ones(2)) is np
    cpu = Device.resolve("cpu", np.zeros(3))
    assert (cpu.kind, cpu.xp, cpu.xgboost, str(cpu)) == ("cpu", np, "cpu", "cpu")
    assert Device.resolve(cpu) is cpu  # a resolved device passes through


@pytest.mark.skipif(_gpu_present(), reason="this checks the no-GPU error; a GPU is present")
def test_cuda_requested_without_gpu_is_an_explicit_error():
    with pytest.raises(DeviceError, match="device 'cuda' was requested but no CUDA GPU is usable"):
        Device.resolve("cuda")
    with pytest.raises(DeviceError, match="no CUDA GPU is usable"):
        _ = Device("cuda", 0, "cuda").xp
    auto = Device.resolve("auto")
    assert (auto.kind, auto.requested) == ("cpu", "auto")
    assert device.gpu_count() == 0


def test_unknown_device_name():
    with pytest.raises(DeviceError, match="expected one of auto, cpu, cuda, found 'tpu'"):
        Device.resolve("tpu")


def test_the_training_rule_keeps_small_tables_on_cpu_workers_only_when_auto():
    """``Device.for_rows``: with "auto" a table below ``gpu_min_rows`` trains on the CPU; an
    explicit "cuda" or "cpu" is kept whatever the size."""
    auto_gpu = Device("cuda", 1, "auto")
    assert auto_gpu.for_rows(199_999, 200_000) == device.CPU
    assert auto_gpu.for_rows(200_000, 200_000) is auto_gpu
    assert Device("cuda", 0, "cuda").for_rows(10, 200_000).kind == "cuda"
    assert Device("cpu", 0, "cpu").for_rows(10**9, 200_000).kind == "cpu"


def test_devices_are_equal_by_place_and_travel_to_workers():
    import pickle

    assert Device("cuda", 1, "auto") == Device("cuda", 1, "cuda") != Device("cuda", 0, "cuda")
    d = Device("cuda", 2, "auto")
    assert pickle.loads(pickle.dumps(d)) == d and pickle.loads(pickle.dumps(d)).requested == "auto"


@pytest.mark.parametrize("env, expected", [
    ({}, 0),
    ({"SLURM_LOCALID": "3"}, 3),
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "5"}, 5),
    # mpirun inside an sbatch job: every rank inherits the batch step's SLURM_LOCALID=0.
    ({"SLURM_LOCALID": "0", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, 1),
])
def test_local_rank_from_launcher_environment(env, expected):
    assert device.local_rank(env) == expected


def test_local_rank_rejects_garbage():
    with pytest.raises(DeviceError, match="SLURM_LOCALID: expected an integer local rank, found 'x'"):
        device.local_rank({"SLURM_LOCALID": "x"})


@pytest.mark.parametrize("rank, n_gpus, expected", [(0, 4, 0), (3, 4, 3), (5, 4, 1), (7, 2, 1), (2, 1, 0)])
def test_gpu_for_rank_is_local_rank_mod_gpu_count(rank, n_gpus, expected):
    assert device.gpu_for_rank(rank, n_gpus) == expected


def test_gpu_for_rank_without_gpus():
    with pytest.raises(DeviceError, match="node has no CUDA GPU"):
        device.gpu_for_rank(0, 0)


def test_to_host_returns_numpy():
    a = [1.0, 2.0]
    assert isinstance(device.to_host(a), np.ndarray)
    assert device.CPU.asarray(np.arange(3.0)).tolist() == [0.0, 1.0, 2.0]


@pytest.mark.gpu
def test_cupy_arrays_choose_cupy_and_cuda():
    import cupy as cp

    a = cp.arange(4.0)
    assert device.array_module(a) is cp
    assert Device.resolve("auto", a).kind == "cuda" and Device.resolve("auto", a).xp is cp
    assert device.to_host(a).tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="different devices"):
        device.array_module(a, np.zeros(4))


@pytest.mark.parametrize("env, n_gpus, expected", [
    ({}, 1, "cuda:0"),
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "3"}, 2, "cuda:1"),  # mpirun: 4 ranks on a 2-GPU node
    ({"SLURM_LOCALID": "0", "OMPI_COMM_WORLD_LOCAL_RANK": "2"}, 4, "cuda:2"),  # mpirun in sbatch
    ({"SLURM_LOCALID": "5"}, 4, "cuda:1"),  # srun
])
def test_xgboost_device_is_the_rank_s_gpu(env, n_gpus, expected, monkeypatch):
    """Each rank's boosters go to its own GPU: plain "cuda" would put every rank on GPU 0."""
    monkeypatch.setattr(device, "xgboost_has_cuda", lambda: True)
    assert Device("cuda", 0, "cuda").for_rank(env, n_gpus).xgboost == expected
    assert device.CPU.for_rank(env, n_gpus).xgboost == "cpu"


def test_xgboost_without_cuda_is_refused_not_run_on_the_cpu(monkeypatch):
    import xgboost

    monkeypatch.setattr(xgboost, "build_info", lambda: {"USE_CUDA": False})
    assert device.xgboost_has_cuda() is False
    with pytest.raises(DeviceError, match=r"xgboost .* was built without CUDA; install a CUDA build"):
        _ = Device("cuda", 0, "cuda").xgboost
    assert device.CPU.xgboost == "cpu"
