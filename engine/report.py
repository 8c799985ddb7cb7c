"""``ciml-ter report``: one self-contained HTML file with embedded PNG figures and tables.

Every input is optional; sections without input are left out. Figures are drawn with
matplotlib's Agg renderer (no pyplot state) and embedded as ``data:image/png;base64`` URIs; the
page has no scripts and a Content-Security-Policy that forbids any external resource.

Inputs of :func:`write_report`:

- ``maps``: ``{name: spec}``, each spec a dict with
  ``values`` 2-D float array (lat, lon), NaN = no data; ``lat``, ``lon`` 1-D cell centres in
  degrees (any order, regular or not); ``units``; ``title``; optional ``cmap``; optional
  ``vmin``/``vmax``; optional ``diverging=True`` (limits symmetric about 0, default cmap
  ``RdBu_r``); optional ``stipple`` 2-D bool (dots where True, e.g. significant trend); optional
  ``labels`` ``{int code: name}`` for a categorical map whose values are the codes (e.g. the
  dominant driver; cells holding no listed code are left blank and only the codes present get
  a colour); optional ``section`` (heading, default "Maps").
- ``series``: ``{name: spec}``, each spec a dict with ``x`` (years), ``y``, optional ``lower`` and
  ``upper`` (uncertainty band), ``units``, ``title``, optional ``truth`` (a second line, e.g. the
  synthetic world's true values), optional ``label`` (legend name of ``y``, default
  "estimate"), optional ``section`` (default "Time series").
- ``land``: 2-D bool land mask on the maps' grid; its 0.5 contour is drawn on every map as the
  coastline.
- ``tables``: ``{name: pandas.DataFrame or list of dicts}``, rendered as HTML tables (whole numbers
  in full, other floats to 4 significant digits) under "Tables".
- ``model_dir``: a directory with ``metrics.json`` as written by ``ciml-ter evaluate``
  (``{"model": {"test": {...}, "by_pft": {pft: {"test": {...}}}}, "baselines": {name: {"test":
  {...}} or {"skipped": reason}}, "units": ...}``) and PNG figures; the metrics of the model
  and each baseline become tables and every ``*.png`` is embedded.
- ``meta``: ``{key: value}`` shown under the title (run directory, config hash, ...).

Element ids (lower case, runs of other characters as "-"): figures ``map-<name>``,
``series-<name>``, ``model-<png stem>``; tables ``table-<name>``, ``table-metrics``,
``table-metrics-by-pft``.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from ciml_ter import __version__
from ciml_ter.errors import InputError
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

METRIC_COLUMNS = ("mae", "rmae", "r2", "slope_obs_on_est", "slope_est_on_obs", "n")
MAX_STIPPLE_DOTS = 120  # per axis; denser grids are stippled on every k-th cell

CSS = """
body { font-family: "Liberation Sans", Arial, sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .generated { color: #666; margin-top: 0; }
section { margin-top: 2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
dl.meta dt { font-weight: bold; float: left; margin-right: 0.5em; }
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_report(out_html: str | Path, *, maps: dict | None = None, series: dict | None = None,
                 land: np.ndarray | None = None, tables: dict | None = None,
                 model_dir: str | Path | None = None, meta: dict | None = None,
                 title: str = "ciml-ter report") -> Path:
    """Write the report (see the module docstring for the inputs); returns its path."""
    page = _Page()
    for name, spec in (maps or {}).items():
        page.figure(spec.get("section", "Maps"), f"map-{name}", spec.get("title", name),
                    _png(_map_figure(spec, land)))
    for name, spec in (series or {}).items():
        page.figure(spec.get("section", "Time series"), f"series-{name}", spec.get("title", name),
                    _png(_series_figure(spec)))
    if model_dir is not None:
        _model_section(page, Path(model_dir))
    for name, table in (tables or {}).items():
        page.table("Tables", f"table-{name}", name, pd.DataFrame(table))
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page.render(title, meta or {}), encoding="utf-8")
    return out


class _Page:
    """Sections (in order of first use) of HTML blocks, with unique element ids."""

    def __init__(self):
        self.sections: dict[str, list[str]] = {}
        self.ids: set[str] = set()

    def _id(self, name: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "item"
        key, k = base, 1
        while key in self.ids:
            k += 1
            key = f"{base}-{k}"
        self.ids.add(key)
        return key

    def figure(self, section: str, name: str, caption: str, png: bytes) -> None:
        data = base64.b64encode(png).decode("ascii")
        cap = html.escape(caption)
        self.sections.setdefault(section, []).append(
            f'<figure id="{self._id(name)}"><img src="data:image/png;base64,{data}" alt="{cap}">'
            f"<figcaption>{cap}</figcaption></figure>")

    def table(self, section: str, name: str, caption: str, frame: pd.DataFrame) -> None:
        body = frame.to_html(index=False, border=0, na_rep="–", float_format=_number)
        body = body.replace("<table", f'<table id="{self._id(name)}"', 1)
        self.sections.setdefault(section, []).append(f"<h3>{html.escape(caption)}</h3>\n{body}")

    def render(self, title: str, meta: dict) -> str:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        meta_html = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
                            for k, v in meta.items())
        body = "\n".join(f'<section id="{self._id("section-" + name)}"><h2>{html.escape(name)}</h2>\n'
                         + "\n".join(blocks) + "\n</section>" for name, blocks in self.sections.items())
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
                f"<h1>{html.escape(title)}</h1>\n"
                f'<p class="generated">Generated by ciml-ter {__version__} on {now}</p>\n'
                + (f'<dl class="meta">{meta_html}</dl>\n' if meta_html else "")
                + body + "\n</body></html>\n")


def _number(v: float) -> str:
    """A float in a table: whole numbers in full, others to 4 significant digits."""
    return f"{v:.0f}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges from cell centres (midpoints; the outer edges mirrored)."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _degrees(pos: str, neg: str) -> FuncFormatter:
    return FuncFormatter(lambda v, _: f"{abs(v):g}°{pos if v > 0 else neg if v < 0 else ''}")


def _map_figure(spec: dict, land: np.ndarray | None) -> Figure:
    """A lat/lon map: cells as drawn on the grid, colour bar in the units, coastline, stipple."""
    values = np.asarray(spec["values"], dtype=np.float64)
    lat, lon = np.asarray(spec["lat"], dtype=np.float64), np.asarray(spec["lon"], dtype=np.float64)
    if values.shape != (lat.size, lon.size):
        raise InputError(f"map {spec.get('title', '')!r}: values have shape {values.shape}, "
                         f"lat/lon give {(lat.size, lon.size)}")
    lat_e, lon_e = _edges(lat), _edges(lon)
    width = lon_e.max() - lon_e.min()
    height = lat_e.max() - lat_e.min()
    fig = Figure(figsize=(6, min(7.0, max(2.5, 4.3 * height / width + 1.0))), layout="constrained")
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    units = spec.get("units", "")
    if "labels" in spec:
        present = set(np.unique(finite).astype(int).tolist())
        codes = sorted(c for c in spec["labels"] if c in present) or sorted(spec["labels"])
        palette = matplotlib.colormaps["tab20" if len(codes) > 10 else "tab10"]
        colours = ListedColormap([palette(i % palette.N) for i in range(len(codes))])
        index = np.full(values.shape, np.nan)  # position of each cell's code among the shown ones
        for k, code in enumerate(codes):
            index[values == code] = k
        mesh = ax.pcolormesh(lon_e, lat_e, np.ma.masked_invalid(index), cmap=colours,
                             norm=BoundaryNorm(np.arange(len(codes) + 1) - 0.5, len(codes)))
        bar = fig.colorbar(mesh, ax=ax, ticks=range(len(codes)), shrink=0.85)
        bar.ax.set_yticklabels([str(spec["labels"][c]) for c in codes])
        bar.set_label(units)
    else:
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if spec.get("diverging"):
            hi = spec.get("vmax", max(abs(lo), abs(hi)) or 1.0)
            lo = -hi
        mesh = ax.pcolormesh(lon_e, lat_e, np.ma.masked_invalid(values),
                             cmap=spec.get("cmap", "RdBu_r" if spec.get("diverging") else "viridis"),
                             vmin=spec.get("vmin", lo), vmax=spec.get("vmax", hi))
        fig.colorbar(mesh, ax=ax, shrink=0.85, label=units)
    if land is not None:
        mask = np.asarray(land, dtype=bool)
        if mask.shape != values.shape:
            raise InputError(f"land mask has shape {mask.shape}, map {spec.get('title', '')!r} "
                             f"{values.shape}")
        if mask.any() and not mask.all():
            ax.contour(lon, lat, mask.astype(np.float64), levels=[0.5], colors="k", linewidths=0.7)
    if "stipple" in spec:
        step = max(1, math.ceil(max(values.shape) / MAX_STIPPLE_DOTS))
        dots = np.zeros(values.shape, dtype=bool)
        dots[::step, ::step] = np.asarray(spec["stipple"], dtype=bool)[::step, ::step]
        yy, xx = np.nonzero(dots)
        ax.scatter(lon[xx], lat[yy], s=4, c="k", marker=".", linewidths=0)
    ax.set_xlim(lon_e.min(), lon_e.max())
    ax.set_ylim(lat_e.min(), lat_e.max())
    ax.set_aspect("equal")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(_degrees("E", "W"))
    ax.yaxis.set_major_formatter(_degrees("N", "S"))
    ax.set_xlabel("Longitude")
    ax.set_ylabel("Latitude")
    ax.set_title(spec.get("title", ""))
    return fig


def _series_figure(spec: dict) -> Figure:
    """A line over the years with its uncertainty band and, if given, the truth."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.asarray(spec["x"])
    if "lower" in spec and "upper" in spec:
        ax.fill_between(x, spec["lower"], spec["upper"], color="C0", alpha=0.25, linewidth=0,
                        label="uncertainty")
    ax.plot(x, spec["y"], color="C0", marker="o", markersize=3, label=spec.get("label", "estimate"))
    if "truth" in spec:
        ax.plot(x, spec["truth"], color="k", linestyle="--", label="truth")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Year")
    ax.set_ylabel(spec.get("units", ""))
    ax.set_title(spec.get("title", ""))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


MODEL_FIGURE_CAPTIONS = {  # the figures ciml-ter evaluate writes
    "scatter_obs_est": "Observed vs estimated TER at flux sites: held-out (out-of-fold) and ensemble",
    "pft_mae": "Test MAE per plant functional type, model and baselines",
    "importance": "Normalised PCMCI+ effects, XGBoost 'weight' importance and mean |SHAP| per feature, "
                  "causal and plain models",
}


def _model_section(page: _Page, model_dir: Path) -> None:
    """Metrics of the model and its baselines, per-PFT metrics, and the directory's PNGs."""
    path = model_dir / "metrics.json"
    if not path.is_file():
        raise InputError(f"{path} not found: the model directory needs ciml-ter evaluate's metrics.json")
    metrics = json.loads(path.read_text(encoding="utf-8"))
    entries = {"model": metrics.get("model", {}), **metrics.get("baselines", {})}
    rows = [{"model": name, **{k: entry.get("test", {}).get(k) for k in METRIC_COLUMNS},
             "note": entry.get("skipped", "")} for name, entry in entries.items()]
    units = metrics.get("units", "")
    section = "Model accuracy"
    page.table(section, "table-metrics", f"Out-of-fold (test) metrics; MAE in {units}", _metric_frame(rows))
    by_pft = metrics.get("model", {}).get("by_pft", {})
    if by_pft:
        pft_rows = [{"pft": pft, **{k: m.get("test", {}).get(k) for k in METRIC_COLUMNS}}
                    for pft, m in by_pft.items()]
        page.table(section, "table-metrics-by-pft",
                   f"Model test metrics by plant functional type; MAE in {units}", _metric_frame(pft_rows))
    for png in sorted(model_dir.glob("*.png")):
        caption = MODEL_FIGURE_CAPTIONS.get(png.stem, png.stem.replace("_", " "))
        page.figure(section, f"model-{png.stem}", caption, png.read_bytes())


def _metric_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of metrics with float columns (a missing value as NaN)."""
    return pd.DataFrame(rows).astype({c: "float64" for c in METRIC_COLUMNS})


def report_command(run_dir: Path, out_html: Path, analysis_dir: Path | None = None,
                   model_dir: Path | None = None, extra_tables: dict | None = None,
                   truth_series: dict | None = None) -> Path:
    """``ciml-ter report``: maps, budget series and tables from a run (and its analysis and
    model directories) into one HTML file. ``truth_series`` ({"x", "y"}) adds the true budget
    of a synthetic world beside the estimate."""
    import xarray as xr

    run_dir = Path(run_dir)
    if not (run_dir / "ter.nc").exists():
        raise InputError(f"{run_dir}: no ter.nc; expected a run directory from 'ciml-ter predict'")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    maps, series, tables = {}, {}, dict(extra_tables or {})
    if analysis_dir is None:
        with xr.open_dataset(run_dir / "ter.nc", engine="h5netcdf") as run:
            ter = np.asarray(run.ter.values, dtype=np.float64)
            lat, lon = run.lat.values, run.lon.values
        land = np.isfinite(ter).any(axis=0)
        maps["ter_mean"] = {"values": np.nanmean(np.where(land, ter, 0), axis=0) * np.where(land, 1, np.nan),
                            "lat": lat, "lon": lon, "units": "g C m-2 month-1", "title": "Mean TER",
                            "cmap": "YlOrBr"}
    else:
        analysis_dir = Path(analysis_dir)
        summary = json.loads((analysis_dir / "summary.json").read_text())
        with xr.open_dataset(analysis_dir / "maps.nc", engine="h5netcdf") as ds:
            ds = ds.load()
        lat, lon, land = ds.lat.values, ds.lon.values, ds.land.values.astype(bool)

        def spec(name, title, units, **kw):
            return {"values": ds[name].values.astype(np.float64), "lat": lat, "lon": lon, "units": units,
                    "title": title, **kw}

        maps["ter_mean"] = spec("ter_mean", "Mean TER", "g C m-2 month-1", cmap="YlOrBr")
        maps["ter_std"] = spec("ter_std_mean", "TER uncertainty (std across fold means)", "g C m-2 month-1",
                               cmap="magma")
        if "trend_slope" in ds:
            maps["trend"] = spec("trend_slope", "Trend of annual TER (Theil-Sen; dots: p < "
                                 f"{summary['trend']['p_threshold']})", "g C m-2 yr-2", diverging=True,
                                 stipple=ds.trend_significant.values.astype(bool))
        if "dominant_feature" in ds:
            features = json.loads(ds.attrs["features"])
            groups = json.loads(ds.attrs["groups"])
            maps["dominant_driver"] = spec("dominant_feature", "Dominant driver (largest mean |SHAP| share)",
                                           "feature", labels=dict(enumerate(features)), section="Drivers")
            for g in groups:
                maps[f"share_{g}"] = spec(f"group_share_{g}", f"Share of {g} drivers", "1", cmap="viridis",
                                          vmin=0, vmax=1, section="Drivers")
            tables["driver shares (area-weighted mean over land)"] = pd.read_csv(analysis_dir / "drivers.csv")
        budget = pd.read_csv(analysis_dir / "budget.csv")
        series["budget"] = {"x": budget.year.to_numpy(), "y": budget.budget_pg_c_yr.to_numpy(),
                            "lower": (budget.budget_pg_c_yr - budget.uncertainty_pg_c_yr).to_numpy(),
                            "upper": (budget.budget_pg_c_yr + budget.uncertainty_pg_c_yr).to_numpy(),
                            "units": "Pg C yr-1", "title": "Annual TER over the land of the run",
                            **({"truth": np.asarray(truth_series["y"])} if truth_series else {})}
        tables["regions"] = pd.read_csv(analysis_dir / "regions.csv")
        if "comparisons" in summary:
            tables["product comparison"] = [{"product": k, **{m: v for m, v in e.items() if not isinstance(v, (list, dict))}}
                                            for k, e in summary["comparisons"].items()]
            for name in summary["comparisons"]:
                maps[f"diff_{name}"] = spec(f"diff_{name}", f"Mean TER minus {name}", "g C m-2 month-1",
                                            diverging=True, section="Product comparison")
    meta = {"run": str(run_dir), "model id": manifest.get("model_id"), "config hash": manifest.get("config_hash"),
            "months": f"{manifest['months'][0]} to {manifest['months'][-1]}"}
    return write_report(out_html, maps=maps, series=series, land=land, tables=tables, model_dir=model_dir,
                        meta=meta, title="ciml-ter: terrestrial ecosystem respiration")
