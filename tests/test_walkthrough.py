"""The README's five-minute walk-through, run as it stands there: every command exits 0, writes
what the next one reads, and the report holds the run's maps and the model's metrics."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from _support import REPO

MARKER = "<!-- walkthrough -->"


def walkthrough_commands() -> list[str]:
    """The command lines of the README block that follows the walk-through marker."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(re.escape(MARKER) + r"\s*```sh\n(.*?)```", text, re.S)
    assert block, f"README.md: no ```sh block after {MARKER}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_block_is_the_whole_chain():
    commands = walkthrough_commands()
    verbs = [line.split()[1] for line in commands if line.startswith("ciml-ter ")]
    assert verbs == ["synth", "features", "sites", "train", "predict", "analyze", "report"]


def test_readme_walkthrough_runs_as_written(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for line in walkthrough_commands():
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="map-ter-mean"' in html and 'id="table-metrics"' in html
    assert (tmp_path / "world" / "truth.nc").is_file() and (tmp_path / "run" / "ter.nc").is_file()
