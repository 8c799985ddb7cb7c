"""A real job on the project's own single-node Slurm cluster (slurm/start.sh)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _support import REPO, RUNTIME

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """Start slurmctld + slurmd (+ munged) with state in a temp dir; stop them afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the Slurm test cluster needs root (slurmctld/slurmd run as SlurmUser=root)")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "CIML_SLURM_DIR": str(state)}
    started = subprocess.run(["bash", str(REPO / "slurm" / "start.sh")], env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"export SLURM_CONF={state}/slurm.conf"
    env["SLURM_CONF"] = f"{state}/slurm.conf"
    again = subprocess.run(["bash", str(REPO / "slurm" / "start.sh")], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # idempotent
    yield env
    stopped = subprocess.run(["bash", str(REPO / "slurm" / "stop.sh")], env=env, capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    for pidfile in ("slurmctld.pid", "slurmd.pid"):
        assert not (state / pidfile).exists()


def test_cluster_has_one_idle_node_with_all_cpus(slurm_cluster):
    result = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c %t"], env=slurm_cluster,
                            capture_output=True, text=True, timeout=30, check=True)
    name, cpus, state = result.stdout.split()
    assert name == "localhost" and int(cpus) == os.cpu_count() and state in ("idle", "mix", "alloc")


def test_sbatch_global_run_on_two_tasks(slurm_cluster, tmp_path):
    output = tmp_path / "job.out"
    env = {**slurm_cluster, "CIML_TER": str(Path(sys.executable).with_name("ciml-ter")), "CIML_SMOKE": "1"}
    result = subprocess.run(["sbatch", "--wait", "--ntasks=2", f"--output={output}", f"--chdir={REPO}",
                             str(REPO / "jobs" / "global_run.sh")], env=env, capture_output=True,
                            text=True, timeout=600)
    text = output.read_text() if output.exists() else ""
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n--- job output ---\n{text}"
    job_id = result.stdout.split()[-1]
    assert f"ciml-ter job {job_id} on" in text and "2 task(s)" in text
    assert "MPI ranks reporting: 2/2; allreduce sum of ranks = 1 (ok)" in text
    assert "ciml-ter job finished" in text
    # The rank table: ranks 0 and 1, each with its own local rank (so its own GPU on a GPU node).
    rows = [[cell.strip() for cell in line.strip("│ ").split("│")] for line in text.splitlines()
            if line.startswith("│")]
    assert [(row[0], row[3]) for row in rows] == [("0", "0"), ("1", "1")], text
    print(text)


def test_sbatch_predict_on_two_tasks_equals_one_rank(slurm_cluster, tmp_path):
    """The real job script on a small world: the same ter.nc as a 1-rank run in this process."""
    import hashlib

    from ciml_ter.config import config_from_dict, save_config
    from ciml_ter.stages.predict import predict
    from world import build_world

    world = build_world(tmp_path / "world")
    config = config_from_dict({**world["config"].to_dict(), "predict": {"tile_size": 3, "shap": True},
                               "paths": {"model": str(world["model"]), "features": str(world["features"]),
                                         "run": str(tmp_path / "run_{year}")}})
    reference = predict(world["model"], world["features"], tmp_path / "one", config, RUNTIME, shap=True)
    cfg = save_config(config, tmp_path / "c.toml")
    output = tmp_path / "job.out"
    env = {**slurm_cluster, "CIML_TER": str(Path(sys.executable).with_name("ciml-ter")),
           "CIML_ARGS": "--year 2003"}
    result = subprocess.run(["sbatch", "--wait", "--ntasks=2", f"--output={output}", f"--chdir={REPO}",
                             str(REPO / "jobs" / "global_run.sh"), str(cfg)], env=env,
                            capture_output=True, text=True, timeout=600)
    text = output.read_text() if output.exists() else ""
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n--- job output ---\n{text}"
    assert "2 task(s)" in text and "computed by 1 worker(s)" in text and "ciml-ter job finished" in text
    sha = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "run_2003" / "ter.nc",
                                                               Path(reference.out))]
    assert sha[0] == sha[1]
