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
from ciml_ter.reporting import write_report
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import imread
from PIL import Image

from _support import RUNTIME

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_FIGURES = {"map-ter-mean", "map-ter-std", "map-trend", "map-driver", "map-share-env",
                    "series-budget", "model-scatter-obs-est", "model-pft-mae"}
METRICS = {
    "model": {"test": {"mae": 12.3456, "rmae": 0.2345, "r2": 0.8123, "slope_obs_on_est": 0.97,
                       "slope_est_on_obs": 0.88, "n": 12345}, "causal": True,
              "by_pft": {"ENF": {"test": {"mae": 10.5, "rmae": 0.21, "r2": 0.77, "n": 300}}}},
    "baselines": {"random_forest": {"test": {"mae": 15.25, "rmae": 0.31, "r2": 0.7012,
                                             "slope_obs_on_est": 1.1, "slope_est_on_obs": 0.7, "n": 12345}},
                  "q10": {"skipped": "no temperature column (TA_F, lst_night or lst_day)"}},
    "units": "g C m-2 month-1",
    "uncertainty": {
        "levels": [0.9], "offset": 1.234, "min_group_sites": 5,
        **{method: {"90": {"overall": {"coverage": cov, "median_width": width, "n": 12345, "n_sites": 40},
                           "by_pft": {"ENF": {"coverage": cov - 0.02, "median_width": width + 1, "n": 300, "n_sites": 6}},
                           "by_lat_band": {"23.5N-60N": {"coverage": cov, "median_width": width, "n": 12045,
                                                         "n_sites": 39}},
                           "site_distribution": {"min": 0.41, "q10": 0.7, "median": 0.93, "q90": 1.0, "max": 1.0}}}
           for method, cov, width in (("conformal", 0.897, 61.23), ("conformal_pooled_absolute", 0.9012, 96.5),
                                      ("ensemble_spread", 0.2134, 15.6))}},
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
    assert tables["table-metrics"][0] == ["model", "MAE (g C m-2 month-1)", "relative MAE (MAE / mean obs.)", "R²",
                                          "slope obs. on est.", "slope est. on obs.", "n (site-months)", "note"]
    # one number of decimals per column: 3 significant digits of its largest value
    assert metrics["causal XGBoost"][1:7] == ["12.3", "0.234", "0.812", "0.97", "0.880", "12345"]
    assert metrics["random forest"][1:4] == ["15.2", "0.310", "0.701"]
    assert metrics["Q10"][1] == "–" and "no temperature column" in metrics["Q10"][-1]
    # no verdict in this metrics.json (as before evaluate wrote one): no interval, no sentence
    assert "verdict" not in report.read_text(encoding="utf-8")
    # no slopes per PFT in metrics.json: those columns are left out, not shown empty
    assert tables["table-metrics-by-pft"] == [["PFT", "MAE (g C m-2 month-1)", "relative MAE (MAE / mean obs.)", "R²",
                                               "n (site-months)"], ["ENF", "10.5", "0.210", "0.770", "300"]]
    assert tables["table-global-budget"][1:] == [["2001", "95.0"], ["2002", "95.3"], ["2003", "95.6"]]
    coverage = tables["table-coverage-90"]
    assert coverage[0] == ["towers", "sites", "site-months", "conformal (normalised, per PFT): coverage (%)",
                           "conformal (normalised, per PFT): median width", "conformal (pooled, not normalised): "
                           "coverage (%)", "conformal (pooled, not normalised): median width",
                           "ensemble spread (ŷ ± zσ̂): coverage (%)", "ensemble spread (ŷ ± zσ̂): median width"]
    assert coverage[1] == ["all towers", "40", "12345", "89.7", "61.2", "90.1", "96.5", "21.3", "15.6"]
    assert [row[0] for row in coverage[2:]] == ["PFT ENF", "latitudes 23.5N-60N"]
    text = report.read_text(encoding="utf-8")
    assert "Per site, the conformal coverage runs from 41 % to 100 % (median 93 %" in text
    # a metrics.json of a model without nested members, calibrated without the site-bias term
    assert "scaled by σ̂ + s0 (ŷ the tower&#x27;s fold, σ̂ the spread of the other folds&#x27; means, s0 =" in text
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
    """Ocean (-1 in a dominant-driver map) stays blank; the legend lists the names of the codes
    present, one colour each (no continuous colour bar)."""
    from ciml_ter.figures import map_figure

    values = np.array([[0.0, 2.0, -1.0], [2.0, 0.0, -1.0]])
    fig = map_figure({"values": values, "lat": [1.0, 0.0], "lon": [0.0, 1.0, 2.0], "units": "feature",
                       "labels": {0: "lst_night", 1: "lai", 2: "soc30"}}, None)
    shown = fig.axes[0].collections[0].get_array()
    assert np.ma.getmaskarray(shown).reshape(2, 3).tolist() == [[False, False, True]] * 2
    assert shown.compressed().tolist() == [0, 1, 1, 0]  # positions among the codes shown
    assert len(fig.axes) == 1  # no colour bar
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["lst_night", "soc30"]
    colours = [tuple(h.get_facecolor()) for h in legend.legend_handles]
    assert len(set(colours)) == 2 and colours == [tuple(fig.axes[0].collections[0].cmap(k)) for k in range(2)]


@pytest.mark.parametrize("n", [6, 40, 300])
def test_trend_dots_are_visible_at_every_map_size(n):
    """Every significant cell of an n x n map (every k-th on dense grids) gets a dot that changes
    several pixels, on a light and on a dark cell colour alike (black with a white rim)."""
    from ciml_ter.figures import map_figure, png

    def grey(spec):
        return np.asarray(Image.open(io.BytesIO(png(map_figure(spec, None)))).convert("L"), dtype=float) / 255

    grid = {"lat": np.linspace(60, 30, n), "lon": np.linspace(-10, 20, n), "units": "g C m-2 yr-2",
            "diverging": True, "vmax": 1.0}
    for fill in (0.0, 1.0):  # white and dark red in RdBu_r
        plain = {**grid, "values": np.full((n, n), fill)}
        dotted = {**plain, "stipple": np.ones((n, n), dtype=bool)}
        (dots,) = [c for c in map_figure(dotted, None).axes[0].collections if isinstance(c, PathCollection)]
        assert len(dots.get_offsets()) >= min(n, 30) ** 2
        changed = (np.abs(grey(dotted) - grey(plain)) > 0.3).sum()
        assert changed >= 6 * len(dots.get_offsets()), (fill, changed / len(dots.get_offsets()))


def test_scatter_is_binned_and_nothing_is_clipped():
    """Thousands of site-months are drawn as hexbin counts; every point lies inside the axes
    with a margin, in every panel; each panel is named as the CLI names the model."""
    from ciml_ter.figures import scatter_figure

    rng = np.random.default_rng(0)
    obs = rng.gamma(2, 40, 5000)
    frame = pd.DataFrame({"ter_obs": obs, "ter_test": obs * rng.normal(1, 0.1, obs.size),
                          "q10_test": obs * 1.3 + 5})
    fig = scatter_figure(frame, {"causal XGBoost": "ter_test", "Q10": "q10_test"}, "g C m-2 month-1")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title().splitlines()[0] for ax in panels] == ["causal XGBoost", "Q10"]
    top = max(obs.max(), (obs * 1.3 + 5).max(), frame.ter_test.max())
    for ax in panels:
        assert any(type(c).__name__ == "PolyCollection" and c.get_array().size > 50 for c in ax.collections)
        lo, hi = ax.get_xlim()
        assert ax.get_ylim() == (lo, hi) and lo < 0 and hi > top + 0.01 * top


# --------------------------------------------------------------------------- report_command
FEATURES = ["lst_day", "lst_night", "lai", "soc30"]
BASELINES = {"xgboost_plain": 0.95, "lloyd_taylor": 0.8, "q10": 0.75, "random_forest": 0.9}
TRUTH_ATTRS = {"formula": "R_REF*exp(E0*(1/(T_REF-T0)-1/(lst_night-T0)))*(1+soc30/15)",
               "parents": json.dumps(["lst_night", "soc30"]), "decoys": json.dumps(["lst_day"]), "seed": 7}


def _model_dir(path: Path, n: int, seed: int) -> Path:
    """metrics.json (with every baseline and the verdict), predictions.csv and structure.csv as
    evaluate writes them."""
    from ciml_ter.assessment import verdict

    rng = np.random.default_rng(seed)
    obs = rng.gamma(2, 30, n)
    pred = pd.DataFrame({"site": [f"S-{k % 20:02d}" for k in range(n)], "ter_obs": obs,
                         "ter_test": obs * rng.normal(1, 0.1, n)})
    entry = {"mae": 5.0, "rmae": 0.1, "r2": 0.97, "slope_obs_on_est": 1.01, "slope_est_on_obs": 0.96, "n": n}
    baselines = {}
    for key, r2 in BASELINES.items():
        pred[f"{key}_test"] = obs * rng.normal(1, 0.2, n)
        baselines[key] = {"test": {**entry, "r2": r2, "mae": 5.0 + 10 * (0.97 - r2)}, "by_pft": {"ENF": {"test": entry}}}
    path.mkdir(parents=True)
    pred.to_csv(path / "predictions.csv", index=False)
    pd.DataFrame({"feature": FEATURES, "pcmci_effect": [0.05, 0.6, 0.15, 0.2], "xgb_weight_causal": [0.1, 0.4, 0.2, 0.3],
                  "xgb_weight_plain": 0.25, "shap_causal": [0.02, 0.7, 0.1, 0.18], "shap_plain": 0.25}
                 ).to_csv(path / "structure.csv", index=False)
    tests = {"model": pred["ter_test"].to_numpy(), **{k: pred[f"{k}_test"].to_numpy() for k in BASELINES}}
    metrics = {"model": {"test": entry, "causal": True, "by_pft": {"ENF": {"test": entry}}, "model_id": f"m{seed + 1}"},
               "baselines": baselines,
               "units": "g C m-2 month-1", "n_folds": 5, "n_sites": 20,
               "verdict": verdict(obs, pred["site"].to_numpy(), tests, causal=True, seed=0, n_boot=200,
                                  groups={"PFT": np.array(["ENF", "GRA"])[np.arange(n) % 2]})}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """A 3-year run on a 6 x 8 grid with its analysis, model, real-tower evaluation and the
    synthetic world's truth.nc (next to a cube.zarr titled as ciml-ter synth titles it)."""
    import xarray as xr

    root = tmp_path_factory.mktemp("synthetic")
    lat, lon = np.arange(59.5, 53, -1.0), np.arange(-9.5, -1, 1.0)
    months = pd.date_range("2001-01-01", periods=36, freq="MS")
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    land = (xx + yy) > 48
    land[0, 0] = False
    truth = np.where(land, 40 + 20 * np.sin(2 * np.pi * months.month.to_numpy() / 12)[:, None, None] + xx, np.nan)
    estimate = truth + np.random.default_rng(2).normal(0, 1.5, truth.shape)
    grid = {"lat": ("lat", lat), "lon": ("lon", lon)}
    world = root / "world"
    world.mkdir()
    xr.Dataset({"ter": (("time", "lat", "lon"), truth.astype(np.float32))}, coords={"time": months, **grid},
               attrs=TRUTH_ATTRS).to_netcdf(world / "truth.nc", engine="h5netcdf")
    (world / "cube.zarr").mkdir()
    (world / "cube.zarr" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                               "attributes": {"title": "ciml-ter synthetic world"}}))
    features = root / "features.zarr"
    features.mkdir()
    (features / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                    "attributes": {"source": str(world / "cube.zarr")}}))
    run = root / "run"
    run.mkdir()
    xr.Dataset({"ter": (("time", "lat", "lon"), estimate.astype(np.float32)),
                "ter_std": (("time", "lat", "lon"), 0.05 * estimate.astype(np.float32))},
               coords={"time": months, **grid}).to_netcdf(run / "ter.nc", engine="h5netcdf")
    (run / "manifest.json").write_text(json.dumps({
        "format": "ciml-ter-run/1", "model_id": "m1", "config_hash": "c1", "months": months.strftime("%Y-%m").tolist(),
        "features_path": str(features), "run_id": "r1"}))
    analysis = root / "analysis"
    analysis.mkdir()
    share = np.where(land, 0.6 + 0.02 * (xx - xx.mean()), np.nan)  # varies over land: drawn as a map
    dominant = np.where(land, np.where(xx > -6, 1, 3), -1)
    xr.Dataset({"ter_mean": (("lat", "lon"), estimate.mean(axis=0)), "ter_std_mean": (("lat", "lon"), 0.05 * truth[0]),
                "trend_slope": (("lat", "lon"), np.where(land, yy - 56, np.nan)),
                "trend_significant": (("lat", "lon"), (land & (yy > 57)).astype(np.uint8)),
                "dominant_feature": (("lat", "lon"), dominant),
                "group_share_environment": (("lat", "lon"), share), "group_share_biotic": (("lat", "lon"), 1 - share),
                "land": (("lat", "lon"), land.astype(np.uint8))}, coords=grid,
               attrs={"features": json.dumps(FEATURES), "groups": json.dumps(["environment", "biotic"])}
               ).to_netcdf(analysis / "maps.nc", engine="h5netcdf")
    (analysis / "summary.json").write_text(json.dumps({
        "run_id": "r1", "budget": {"land_area_m2": 2.1e11}, "trend": {"p_threshold": 0.05, "significant_share_of_land": 0.3},
        "drivers": {"groups": {"environment": {"mean": 0.7}, "biotic": {"mean": 0.3}}}}))
    pd.DataFrame({"year": [2001, 2002, 2003], "budget_pg_c_yr": [0.011, 0.012, 0.0125],
                  "uncertainty_pg_c_yr": 0.001}).to_csv(analysis / "budget.csv", index=False)
    pd.DataFrame({"region": ["lat north of 60N", "lat 23.5N-60N", "lat tropics 23.5S-23.5N"], "pixels": [0, 30, 0],
                  "budget_pg_c_yr": [0.0, 0.0121, 0.0], "trend_g_c_m2_yr2": [np.nan, 0.52, np.nan],
                  "trend_se": [np.nan, 0.0412, np.nan]}).to_csv(analysis / "regions.csv", index=False)
    pd.DataFrame({"feature": FEATURES, "mean_share": [0.01, 0.6, 0.1, 0.29], "std_share": [0.001, 0.05, 0.02, 0.03]}
                 ).to_csv(analysis / "drivers.csv", index=False)
    model = _model_dir(root / "model", 1500, 0)
    towers = _model_dir(root / "towers", 300, 1)
    return {"root": root, "run": run, "analysis": analysis, "model": model, "towers": towers,
            "truth": world / "truth.nc"}


TOWERS = "Real FLUXNET towers (site-only predictors)"


def _report_of(synthetic, out: Path, **kw) -> dict:
    """The report of the synthetic run, and what the report stage gave write_report."""
    from ciml_ter.config import PipelineConfig
    from ciml_ter.stages import report as module

    seen = {}
    original = module.write_report

    def spy(out_html, **given):
        seen.update(given)
        return original(out_html, **given)

    mp = pytest.MonkeyPatch()
    mp.setattr(module, "write_report", spy)
    try:
        path = module.report(synthetic["run"], out, PipelineConfig(), RUNTIME, analysis=synthetic["analysis"], **kw).out
    finally:
        mp.undo()
    return {"html": path.read_text(encoding="utf-8"), "kw": seen}


@pytest.fixture(scope="module")
def found(synthetic, tmp_path_factory) -> dict:
    """As `ciml-ter report` (and the pipeline) writes it: the truth found from the run's
    features cube, the model's evaluation."""
    return _report_of(synthetic, tmp_path_factory.mktemp("found") / "r.html", model=synthetic["model"])


@pytest.fixture(scope="module")
def given(synthetic, tmp_path_factory) -> dict:
    """As the demo writes it (less the model section): truth.nc given, real towers evaluated."""
    return _report_of(synthetic, tmp_path_factory.mktemp("given") / "r.html", truth=synthetic["truth"],
                      evaluations={TOWERS: {"model_dir": synthetic["towers"]}})


class _Text(HTMLParser):
    """Text of the elements with an id, and of every figcaption (by figure id)."""

    def __init__(self, text: str):
        super().__init__()
        self.by_id, self.captions, self._open, self._figure, self._caption = {}, {}, [], None, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self._figure = attrs.get("id")
        if tag == "figcaption":
            self._caption, self.captions[self._figure] = True, ""
        if "id" in attrs:
            self._open.append([tag, attrs["id"], 0])
            self.by_id[attrs["id"]] = ""
        for entry in self._open:
            entry[2] += entry[0] == tag

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._caption = False
        for entry in list(self._open):
            if entry[0] == tag:
                entry[2] -= 1
                if entry[2] == 0:
                    self._open.remove(entry)

    def handle_data(self, data):
        for _, key, _ in self._open:
            self.by_id[key] += data
        if self._caption:
            self.captions[self._figure] += data


@pytest.mark.parametrize("which", ["found", "given"])
def test_synthetic_report_says_so_and_maps_the_truth(request, which):
    report = request.getfixturevalue(which)
    html_text = report["html"]
    text = _Text(html_text)
    notice = " ".join(text.by_id["notice"].split())
    assert "Synthetic world" in notice and "nothing here describes the real Earth" in notice
    assert TRUTH_ATTRS["formula"] in notice and "parents (causes) are lst_night, soc30" in notice
    assert "lst_day are decoys" in notice and "R²" in notice
    assert "synthetic world" in re.search(r"<title>(.*)</title>", html_text).group(1)
    figures = _Parsed(html_text).figures
    order = [f for f in figures if f.startswith("map-")]
    assert order[:3] == ["map-ter-mean", "map-truth-mean", "map-truth-diff"]  # truth beside the estimate
    assert "colour bar: g C m-2 month-1" in figures["map-truth-diff"]["alt"]
    maps = report["kw"]["maps"]
    assert (maps["truth_mean"]["vmin"], maps["truth_mean"]["vmax"]) == (maps["ter_mean"]["vmin"], maps["ter_mean"]["vmax"])
    assert maps["truth_diff"]["diverging"] and "cmap" not in maps["truth_diff"]  # RdBu_r, symmetric about 0
    assert "truth" in report["kw"]["series"]["budget"]


def test_a_run_of_real_inputs_is_not_called_synthetic(tmp_path):
    from ciml_ter.stages.report import find_truth

    assert find_truth({}) == (False, None)
    (tmp_path / "f.zarr").mkdir()
    (tmp_path / "f.zarr" / "zarr.json").write_text(json.dumps({"attributes": {"source": str(tmp_path / "c.zarr")}}))
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "c.zarr" / "zarr.json").write_text(json.dumps({"attributes": {"title": "MODIS cube"}}))
    (tmp_path / "truth.nc").write_text("")
    assert find_truth({"features_path": str(tmp_path / "f.zarr")}) == (False, None)


def test_synthetic_report_captions_say_what_titles_do_not(found):
    page = found["html"]
    figures, captions = _Parsed(page).figures, _Text(page).captions
    for fid, img in figures.items():
        title = img["alt"].split(";")[0]
        assert captions[fid].strip() and captions[fid].strip() != title, fid
    assert "2001-01 to 2003-12 (36 months)" in captions["map-ter-mean"]
    assert "p < 0.05" in captions["map-trend"] and "30.0 % of the land area" in captions["map-trend"]
    budget = captions["series-budget"]
    assert "±σ" in budget and "fully correlated" in budget and "upper bound" in budget


def test_synthetic_report_driver_legend_and_share_colour_bars(found):
    from ciml_ter.figures import map_figure

    figures = _Parsed(found["html"]).figures
    assert figures["map-dominant-driver"]["alt"].endswith("legend: lst_night, soc30")
    for group in ("environment", "biotic"):
        assert figures[f"map-share-{group}"]["alt"].endswith("colour bar: fraction of |SHAP|")
    spec = found["kw"]["maps"]["share_biotic"]
    assert map_figure(spec, None).axes[1].get_ylabel() == "fraction of |SHAP|"


def test_synthetic_report_tables(found):
    tables = _Parsed(found["html"]).tables
    regions = tables["table-regions"]
    assert regions[0] == ["region", "land cells", "mean annual TER (Pg C yr-1)", "mean cell trend (g C m-2 yr-2)",
                          "trend s.e. (g C m-2 yr-2)"]
    assert regions[1:] == [["lat 23.5N-60N", "30", "0.0121", "0.520", "0.0412"]]  # no row of 0 cells
    metrics = tables["table-metrics"]
    assert metrics[0][:3] == ["model", "MAE (g C m-2 month-1)", "test MAE (95 % site-bootstrap)"]
    assert "note" not in metrics[0]  # no empty column
    verdict = json.loads((found["kw"]["model_dir"] / "metrics.json").read_text())["verdict"]
    boot = verdict["bootstrap"]["models"]
    # one decimal: 3 significant digits of the column's largest number (a baseline's upper bound, above 10)
    assert metrics[1][2] == "{mae:.1f} ({low:.1f}–{high:.1f})".format(**boot["model"])
    sentence = " ".join(_Text(found["html"]).by_id["metrics-verdict"].split())
    assert sentence.startswith("The causal weights helped: test MAE") and "By test MAE the causal XGBoost ranks" in sentence
    assert sentence.endswith(" ".join(verdict["where"])) and verdict["where"][0].startswith("By PFT, ")  # per group
    assert [row[0] for row in metrics[1:]] == ["causal XGBoost", "plain XGBoost", "Lloyd–Taylor", "Q10",
                                               "random forest"]
    shares = tables["table-driver-shares"]
    assert shares[0] == ["feature", "mean fraction of |SHAP| (area-weighted over land)", "s.d. across land cells"]
    assert [row[0] for row in shares[1:]] == ["lst_night", "soc30", "lai", "lst_day"]
    for table in tables.values():
        assert all(len(row) == len(table[0]) and all(cell for cell in row) for row in table), table


def test_synthetic_report_real_towers_figure(given):
    key = "real-fluxnet-towers-site-only-predictors"
    page = given["html"]
    figures, text = _Parsed(page).figures, _Text(page)
    assert f"{key}-scatter-obs-est" in figures and "observed vs held-out" in text.captions[f"{key}-scatter-obs-est"].lower()
    sentence = text.by_id[f"{key}-text"]
    assert sentence.startswith("On 300 held-out site-months from 20 towers, the causal XGBoost explains 97 %")
    assert "the best baseline" not in sentence and "no baseline has a lower test MAE (best: plain XGBoost, 5.2)" in sentence
    assert "flattens" not in sentence  # slope 0.96
    verdict = json.loads((given["kw"]["evaluations"][TOWERS]["model_dir"] / "metrics.json").read_text())["verdict"]
    assert " ".join(text.by_id[f"{key}-verdict"].split()) == " ".join([verdict["sentence"], verdict["ranking"],
                                                                        *verdict["where"]])
    towers = _Parsed(page).tables[f"table-{key}-metrics"]
    assert [row[0] for row in towers[1:]] == ["causal XGBoost", "plain XGBoost", "Lloyd–Taylor", "Q10",
                                              "random forest"]


def test_a_skipped_evaluation_says_why(tmp_path):
    key = "real-fluxnet-towers-site-only-predictors"
    page = write_report(tmp_path / "r.html", evaluations={
        TOWERS: {"skipped": "no FLUXNET folder at /nowhere; give `ciml-ter demo --fluxnet DIR`"}}).read_text()
    assert not _Parsed(page).figures
    assert _Text(page).by_id[f"{key}-text"] == "Not run: no FLUXNET folder at /nowhere; give ciml-ter demo --fluxnet DIR."
    assert "<code>ciml-ter demo --fluxnet DIR</code>" in page


def test_evaluation_sentence_ranks_by_mae_and_names_a_flattening_model():
    """One criterion everywhere: a baseline with a lower test MAE is named as better even when
    the model's R² is higher; a slope of the estimates on the observations of 0.53 is said."""
    from ciml_ter.reporting import evaluation_sentence

    model = {"mae": 30.0, "rmae": 0.4, "r2": 0.50, "slope_est_on_obs": 0.53, "n": 100}
    metrics = {"model": {"test": model, "causal": False}, "units": "g C m-2 month-1",
               "baselines": {"random_forest": {"test": {**model, "mae": 29.0, "r2": 0.45}},
                             "xgboost_plain": {"test": {**model, "mae": 31.0, "r2": 0.47}}}}
    sentence = evaluation_sentence(metrics)
    assert "the best baseline by test MAE, random forest, does better (29.0)" in sentence
    assert "slope of 0.53, so high TER is underestimated" in sentence
