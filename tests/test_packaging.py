"""What ships beside the code: the licence, the citation file, and the README's install and
citation sections (the built wheel and sdist themselves: tests/test_wheel.py)."""
from __future__ import annotations

import configparser
import re

import yaml
from ciml_ter import __version__

from _support import REPO

PAPER_DOI = "10.1038/s43247-025-02240-1"


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser


def test_licence_is_the_mit_text_with_the_holder_and_setup_cfg_ships_it():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the ciml-ter developers\n")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    metadata = _setup_cfg()["metadata"]
    assert metadata["license"] == "MIT"
    assert metadata["license_files"].split() == ["LICENSE", "CITATION.cff"]


def test_citation_cff_cites_this_version_and_the_method_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software" and cff["message"] and cff["title"].startswith("ciml-ter")
    assert cff["authors"] == [{"name": "the ciml-ter developers"}]
    assert str(cff["version"]) == __version__ and cff["license"] == "MIT"
    for ref in cff["references"]:  # keys the CFF 1.2.0 schema requires of a reference
        assert {"type", "title", "authors"} <= set(ref), ref
        assert all("name" in a or "family-names" in a for a in ref["authors"]), ref
    paper = next(ref for ref in cff["references"] if ref.get("doi") == PAPER_DOI)
    assert paper["type"] == "article" and paper["year"] == 2025
    assert paper["journal"] == "Communications Earth & Environment"
    assert [a["family-names"] for a in paper["authors"]] == ["Zhao", "Zhu"]


def test_readme_install_section_names_every_user_extra():
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("\n## ", readme.index("## Install") + 1)]
    assert re.search(r"^pip install ciml-ter\s", install, re.M) and "make demo" in install
    extras = [name for name in _setup_cfg()["options.extras_require"] if name not in ("test", "dev")]
    assert extras == ["cuda12", "cuda13", "mpi"]
    for extra in extras:
        assert re.search(rf"pip install 'ciml-ter\[{extra}\]'", install), extra


def test_readme_citation_section_points_to_citation_cff_and_licence():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Data and citation"):]
    assert "CITATION.cff" in section and "LICENSE" in section and PAPER_DOI in section


def test_make_install_only_installs_and_says_where(tmp_path):
    """`make install` (a dry run here): a venv, ciml-ter installed into it, and where the command
    ends up and how to put it on the PATH; no test, no demo."""
    import subprocess

    venv = tmp_path / "v"
    done = subprocess.run(["make", "-n", "-C", str(REPO), "install", f"VENV={venv}"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    steps = done.stdout
    assert f"-m venv {venv}" in steps and f"{venv}/bin/python -m pip install -q -e ." in steps
    assert f"{venv}/bin/ciml-ter" in steps and f"source {venv}/bin/activate" in steps
    assert "-m pytest" not in steps and "ciml-ter demo" not in steps
