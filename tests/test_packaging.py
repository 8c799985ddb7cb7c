"""Non-editable install works and importing ciml_ter stays light (no GPU/MPI/XGBoost imports)."""
from __future__ import annotations

import subprocess
import sys
import sysconfig

import pytest

from _support import REPO

HEAVY = ("cupy", "cuml", "mpi4py", "xgboost")


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory):
    """Build a wheel of the repo and install it (not editable, no deps) into a target dir."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(REPO)], check=True, timeout=300)
    wheel = next((tmp / "dist").glob("ciml_ter-*.whl"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    return target


def _isolated_python(target, code, *flags):
    """Run code with -S (no .pth files, so not the editable finder), the wheel dir first."""
    path = f"{target}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"
    return subprocess.run([sys.executable, "-S", *flags, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}, cwd=target.parent,
                          timeout=300)


def test_wheel_install_imports_both_packages(wheel_install):
    result = _isolated_python(wheel_install, "import ciml_ter, ciml_ter.kernels, ciml_ter.data; "
                              "print(ciml_ter.__file__); print(ciml_ter.kernels.__file__)")
    assert result.returncode == 0, result.stderr
    files = result.stdout.split()
    assert all(f.startswith(str(wheel_install)) for f in files), files


def test_import_time_has_no_heavy_modules(wheel_install):
    result = _isolated_python(wheel_install, "import ciml_ter", "-X", "importtime")
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "ciml_ter" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}, sorted(imported)


def test_wheel_ships_the_fluxnet_sample_and_its_citation(wheel_install):
    """The demo's real towers come from inside the installed package, never a sibling folder."""
    result = _isolated_python(wheel_install, "from ciml_ter.data.flux import SHIPPED_SAMPLE as s; "
                              "print(s); print(len(list(s.glob('FLX_*_FLUXNET2015_SUBSET_MM_*.csv'))), "
                              "(s / 'sites.csv').is_file(), (s / 'CITATION.md').is_file())")
    where, counts = result.stdout.strip().splitlines()
    assert where.startswith(str(wheel_install)), where
    assert counts == "20 True True"
