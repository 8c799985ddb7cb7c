"""The HTML report: self-contained, every figure a valid embedded PNG, tables with the right
numbers, and rendered by headless Chromium (Debian package ``chromium``)."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ciml_ter import __version__
from ciml_ter.errors import InputError
from ciml_ter.report import write_report
from matplotlib.figure import Figure
from matplotlib.image import imread
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_FIGURES = {"map-ter-mean", "map-ter-std", "map-trend", "map-driver", "map-share-env",
                    "series-budget", "model-scatter-obs-est"}
METRICS = {
    "model": {"test": {"mae": 12.3456, "rmae": 0.2345, "r2": 0.8123, "slope_obs_on_est": 0.97,
                       "slope_est_on_obs": 0.88, "n": 12345},
              "by_pft": {"ENF": {"test": {"mae": 10.5, "rmae": 0.21, "r2": 0.77, "n": 300}}}},
    "baselines": {"random_forest": {"test": {"mae": 15.25, "rmae": 0.31, "r2": 0.7012,
                                             "slope_obs_on_est": 1.1, "slope_est_on_obs": 0.7, "n": 12345}},
                  "q10": {"skipped": "no temperature column (TA_F, lst_night or lst_day)"}},
    "units": "g C m-2 month-1",
}


class _Parsed(HTMLParser):
    """Figures (id -> img attributes) and tables (id -> rows of cell texts) of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.figures, self.tables, self.tags = {}, {}, []
        self._figure = self._table = None
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "figure":
            self._figure = attrs["id"]
        elif tag == "img" and self._figure:
            self.figures[self._figure] = attrs
        elif tag == "table":
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _world():
    """A 1-degree window (lat descending) with an elliptic continent, and report inputs on it."""
    lat = np.arange(59.5, -20, -1.0)
    lon = np.arange(-29.5, 50, 1.0)
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    land = ((xx - 10) / 30) ** 2 + ((yy - 20) / 30) ** 2 < 1
    ter = np.where(land, 50 + 40 * np.cos(np.radians(yy)) + 5 * np.sin(np.radians(3 * xx)), np.nan)
    trend = np.where(land, 0.02 * (yy - 20) + 0.01 * np.sin(np.radians(5 * xx)), np.nan)
    driver = np.where(land, (xx > 10).astype(float) + (yy > 30), np.nan)
    grid = {"lat": lat, "lon": lon}
    maps = {
        "ter_mean": {**grid, "values": ter, "units": "g C m-2 month-1", "title": "Mean TER",
                     "cmap": "YlOrBr"},
        "ter_std": {**grid, "values": 0.1 * ter, "units": "g C m-2 month-1", "title": "TER std",
                    "cmap": "magma"},
        "trend": {**grid, "values": trend, "units": "g C m-2 yr-2", "title": "TER trend",
                  "diverging": True, "stipple": np.abs(trend) > 0.2},
        "driver": {**grid, "values": driver, "units": "feature", "title": "Dominant driver",
                   "labels": {0: "lst_night", 1: "lai", 2: "soc0"}},
        "share_env": {**grid, "values": np.where(land, 0.5, np.nan), "units": "1",
                      "title": "Environment share", "vmin": 0.0, "vmax": 1.0, "section": "Drivers"},
    }
    years = np.arange(2001, 2021)
    budget = 95 + 0.3 * (years - 2001)
    series = {"budget": {"x": years, "y": budget, "lower": budget - 4, "upper": budget + 4,
                         "truth": budget + 1, "units": "Pg C yr-1", "title": "Global TER budget"}}
    tables = {"Global budget": pd.DataFrame({"year": years[:3], "ter_pg_c": budget[:3]}),
              "Trend by class": [{"class": "EBF", "slope": 0.0123, "se": 0.00456}]}
    return maps, series, land, tables


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "metrics.json").write_text(json.dumps(METRICS), encoding="utf-8")
    fig = Figure(figsize=(4, 4))
    fig.add_subplot().scatter([1, 2, 3], [1.1, 2.2, 2.7])
    fig.savefig(model_dir / "scatter_obs_est.png")
    maps, series, land, tables = _world()
    return write_report(root / "out" / "report.html", maps=maps, series=series, land=land,
                        tables=tables, model_dir=model_dir, meta={"run": "RUN_DIR"},
                        title="Synthetic world")


def test_report_is_self_contained_with_valid_figures(report):
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"https?://", text)
    page = _Parsed(text)
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    assert all(a["src"].startswith("data:") for t, a in page.tags if "src" in a)
    assert "<title>Synthetic world</title>" in text and f"ciml-ter {__version__}" in text
    assert [t for t, _ in page.tags if t == "h2"] and "RUN_DIR" in text
    assert set(page.figures) == EXPECTED_FIGURES
    for fid, img in page.figures.items():
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix) and img["alt"], fid
        png = base64.b64decode(img["src"][len(prefix):], validate=True)
        assert png.startswith(PNG_SIGNATURE), fid
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        assert imread(io.BytesIO(png)).shape[0] > 100, fid


def test_report_tables_have_the_numbers(report):
    tables = _Parsed(report.read_text(encoding="utf-8")).tables
    metrics = {row[0]: row for row in tables["table-metrics"][1:]}
    assert tables["table-metrics"][0] == ["model", "mae", "rmae", "r2", "slope_obs_on_est",
                                          "slope_est_on_obs", "n", "note"]
    assert metrics["model"][1:7] == ["12.35", "0.2345", "0.8123", "0.97", "0.88", "12345"]
    assert metrics["random_forest"][1:4] == ["15.25", "0.31", "0.7012"]
    assert metrics["q10"][1] == "–" and "no temperature column" in metrics["q10"][-1]
    assert tables["table-metrics-by-pft"][1][:4] == ["ENF", "10.5", "0.21", "0.77"]
    assert tables["table-global-budget"][1:] == [["2001", "95"], ["2002", "95.3"], ["2003", "95.6"]]
    assert tables["table-trend-by-class"][1] == ["EBF", "0.0123", "0.00456"]


def test_report_rejects_a_map_off_its_grid(tmp_path):
    maps, _, land, _ = _world()
    with pytest.raises(InputError, match="land mask"):
        write_report(tmp_path / "r.html", maps={"m": maps["ter_mean"]}, land=land[1:])
    with pytest.raises(InputError, match="metrics.json"):
        write_report(tmp_path / "r.html", model_dir=tmp_path)


def _chromium() -> str:
    """Path of Chromium; installed with apt-get when missing and root on Debian."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("headless Chromium is not installed and we are not root: "
                    "'sudo apt-get install chromium' to run the screenshot test")
    if not Path("/etc/debian_version").exists():
        pytest.skip("headless Chromium is not installed and this is not Debian: install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode:
            pytest.fail(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get installed chromium but no chromium on PATH")
    return found


def _headless(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    profile.mkdir(exist_ok=True)
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", *args, page.as_uri()]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = _chromium()
    # The DOM as loaded, from a test copy with a probe that records each image's decoded width
    # (the report itself has no scripts and its CSP forbids them).
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8")
                     .replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
                     .replace("</body>", "<script>addEventListener('load', () => document"
                              ".querySelectorAll('img').forEach(i => i.dataset.decoded = "
                              "i.complete ? i.naturalWidth : 0));</script></body>"), encoding="utf-8")
    dom = _Parsed(_headless(chromium, probe, tmp_path / "profile-dom", "--dump-dom").stdout)
    assert set(dom.figures) == EXPECTED_FIGURES
    for fid, img in dom.figures.items():
        png = base64.b64decode(img["src"].split(",", 1)[1])
        with Image.open(io.BytesIO(png)) as im:
            assert int(img.get("data-decoded", 0)) == im.width, fid

    shot = tmp_path / "shot.png"
    _headless(chromium, report, tmp_path / "profile-shot", f"--screenshot={shot}",
              "--window-size=1400,3000")
    assert shot.stat().st_size > 50_000
    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1400)
    assert pixels[..., :3].std() > 0.05
    assert (pixels[..., :3].min(axis=-1) < 0.9).mean() > 0.05  # not a blank white page


def test_categorical_map_colours_only_the_listed_codes_it_holds():
    """Ocean (-1 in a dominant-driver map) stays blank; the legend lists the codes present."""
    from ciml_ter.report import _map_figure

    values = np.array([[0.0, 2.0, -1.0], [2.0, 0.0, -1.0]])
    fig = _map_figure({"values": values, "lat": [1.0, 0.0], "lon": [0.0, 1.0, 2.0], "units": "feature",
                       "labels": {0: "lst_night", 1: "lai", 2: "soc30"}}, None)
    shown = fig.axes[0].collections[0].get_array()
    assert np.ma.getmaskarray(shown).reshape(2, 3).tolist() == [[False, False, True]] * 2
    assert shown.compressed().tolist() == [0, 1, 1, 0]  # positions among the codes shown
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["lst_night", "soc30"]
