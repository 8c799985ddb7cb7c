"""``ciml-ter report``: one self-contained HTML file with embedded PNG figures and tables.

Every input is optional; sections without input are left out. Figures are drawn with
matplotlib's Agg renderer (no pyplot state) and embedded as ``data:image/png;base64`` URIs; the
page has no scripts and a Content-Security-Policy that forbids any external resource.

Inputs of :func:`write_report`:

- ``maps``: ``{name: spec}``, each spec a dict with
  ``values`` 2-D float array (lat, lon), NaN = no data; ``lat``, ``lon`` 1-D cell centres in
  degrees (any order, regular or not); ``units`` (the colour bar's label); ``title`` (drawn above
  the map); optional ``caption`` (the text under the figure: what the title does not say, e.g.
  the averaging period; default the title); optional ``cmap``; optional ``vmin``/``vmax``;
  optional ``diverging=True`` (limits symmetric about 0, default cmap ``RdBu_r``); optional
  ``stipple`` 2-D bool (a dot where True, e.g. significant trend; dots are sized from the cell
  size so they stay visible on any grid, and dense grids are stippled on every k-th cell);
  optional ``labels`` ``{int code: name}`` for a categorical map whose values are the codes (e.g.
  the dominant driver; a legend lists one colour per name; cells holding no listed code are left
  blank and only the codes present get a colour); optional ``section`` (heading, default "Maps").
- ``series``: ``{name: spec}``, each spec a dict with ``x`` (years), ``y``, optional ``lower`` and
  ``upper`` (uncertainty band, legend name ``band_label``), ``units``, ``title``, optional
  ``caption``, optional ``truth`` (a second line, e.g. the synthetic world's true values),
  optional ``label`` (legend name of ``y``, default "estimate"), optional ``section`` (default
  "Time series").
- ``land``: 2-D bool land mask on the maps' grid; its 0.5 contour is drawn on every map as the
  coastline.
- ``tables``: ``{name: table}``, a table being a pandas.DataFrame, a list of dicts, or a dict
  ``{"rows": DataFrame or list of dicts, "section": heading, "caption": text}``. Each is rendered
  as an HTML table: columns with no value are left out, whole-number columns in full, and every
  other numeric column with one number of decimals (3 significant digits of its largest value,
  at least one of its smallest non-zero one). Tables with a section come after the series,
  the others under "Tables" at the end.
- ``model_dir``: a directory with ``metrics.json`` as written by ``ciml-ter evaluate``
  (``{"model": {"test": {...}, "causal": bool, "by_pft": {pft: {"test": {...}}}}, "baselines":
  {name: {"test": {...}} or {"skipped": reason}}, "units": ..., "verdict": {...}}``; the verdict,
  absent from older files, adds site-bootstrap intervals beside the test MAE and its sentences
  under the table), optionally its
  ``predictions.csv`` and ``structure.csv``, and PNG figures. The metrics of the model and each
  baseline become tables (models named as the CLI names them: "causal XGBoost", "plain
  XGBoost", "Lloyd–Taylor", "Q10", "random forest"); observed vs estimated TER per model (from
  predictions.csv), the MAE per PFT and the importance comparison (structure.csv) are drawn
  here, and any other ``*.png`` (or one of those three when its data is missing) is embedded.
- ``evaluations``: ``{section: spec}``, further evaluations in sections of their own (e.g. real
  flux towers): ``{"model_dir": dir, "text": sentence}`` (a metrics table and the observed vs
  estimated figure) or ``{"skipped": reason}`` (the section says why there is nothing).
- ``notice``: paragraphs shown in a box under the title (e.g. that the world is synthetic);
  text between backticks is set as code.
- ``meta``: ``{key: value}`` shown under the title (run directory, config hash, ...).

Element ids (lower case, runs of other characters as "-"): the notice ``notice``; figures
``map-<name>``, ``series-<name>``, ``model-<figure>``; tables ``table-<name>``, ``table-metrics``,
``table-metrics-by-pft``, the verdict's sentences under the metrics ``metrics-verdict``; for an
evaluation section the same with ``<section>-`` before ``metrics``/``scatter-obs-est``/``verdict``,
and its text ``<section>-text``.
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
from ciml_ter.documents import read_json
from ciml_ter.errors import InputError
from ciml_ter.files import atomic_write
from ciml_ter.evaluation import BASELINE_NAMES, against_truth, metrics as fit_metrics
from ciml_ter.tiles import RunDir
from ciml_ter.units import TER_UNITS
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

METRIC_COLUMNS = ("mae", "rmae", "r2", "slope_obs_on_est", "slope_est_on_obs", "n")
METRIC_HEADERS = {"mae": "MAE ({units})", "rmae": "relative MAE (MAE / mean obs.)", "r2": "R²",
                  "slope_obs_on_est": "slope obs. on est.", "slope_est_on_obs": "slope est. on obs.",
                  "n": "n (site-months)"}
IMPORTANCE_NAMES = {"pcmci_effect": "PCMCI+ causal effect", "xgb_weight_causal": "split count, causal XGBoost",
                    "xgb_weight_plain": "split count, plain XGBoost", "shap_causal": "mean |SHAP|, causal XGBoost",
                    "shap_plain": "mean |SHAP|, plain XGBoost"}
SHARE_UNITS = "fraction of |SHAP|"
MAX_STIPPLE_DOTS = 60  # per axis; denser grids are stippled on every k-th cell
DENSE_POINTS = 1000  # scatter plots with more points than this are drawn as hexbin counts
SIGNIFICANT = 3  # digits of a table column's largest value

CSS = """
body { font-family: "Liberation Sans", Arial, sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .generated { color: #666; margin-top: 0; }
section { margin-top: 2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; max-width: 600px; }
figure.wide figcaption { max-width: 1000px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
p.caption { color: #444; font-size: 0.9em; max-width: 1000px; margin-top: -1em; }
div.notice { background: #fff6d6; border: 1px solid #e0c060; padding: 0.2em 1em; margin: 1em 0;
             max-width: 1100px; }
code { font-size: 0.9em; background: #f3f3f3; padding: 0 0.2em; }
dl.meta dt { font-weight: bold; float: left; margin-right: 0.5em; }
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_report(out_html: str | Path, *, maps: dict | None = None, series: dict | None = None,
                 land: np.ndarray | None = None, tables: dict | None = None,
                 model_dir: str | Path | None = None, evaluations: dict | None = None,
                 notice: list[str] | None = None, meta: dict | None = None,
                 title: str = "ciml-ter report", truth_parents: dict | None = None) -> Path:
    """Write the report (see the module docstring for the inputs); returns its path.
    ``truth_parents`` ({"parents": [...], "decoys": [...]}) marks a synthetic world's true
    parents and decoys in the importance figure."""
    page = _Page()
    for name, spec in (maps or {}).items():
        page.figure(spec.get("section", "Maps"), f"map-{name}", spec.get("caption", spec.get("title", name)),
                    _png(_map_figure(spec, land)), alt=_map_alt(spec))
    for name, spec in (series or {}).items():
        page.figure(spec.get("section", "Time series"), f"series-{name}",
                    spec.get("caption", spec.get("title", name)), _png(_series_figure(spec)),
                    alt=spec.get("title", name))
    specs = {name: t if isinstance(t, dict) and "rows" in t else {"rows": t} for name, t in (tables or {}).items()}
    for name, spec in specs.items():
        if "section" in spec:
            page.table(spec["section"], f"table-{name}", name, _table_frame(spec["rows"]), spec.get("caption"))
    if model_dir is not None:
        _model_section(page, Path(model_dir), truth_parents)
    for section, spec in (evaluations or {}).items():
        _evaluation_section(page, section, spec)
    for name, spec in specs.items():
        if "section" not in spec:
            page.table("Tables", f"table-{name}", name, _table_frame(spec["rows"]), spec.get("caption"))
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, page.render(title, meta or {}, notice or []))
    return out


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    parts = html.escape(str(text)).split("`")
    return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))


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

    def figure(self, section: str, name: str, caption: str, png: bytes, alt: str | None = None,
               wide: bool = False) -> None:
        data = base64.b64encode(png).decode("ascii")
        self.sections.setdefault(section, []).append(
            f'<figure id="{self._id(name)}"{" class=wide" if wide else ""}>'
            f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt or caption)}">'
            f"<figcaption>{_inline(caption)}</figcaption></figure>")

    def table(self, section: str, name: str, caption: str, frame: pd.DataFrame, note: str | None = None) -> None:
        body = _formatted(frame).to_html(index=False, border=0, na_rep="–", escape=True)
        body = body.replace("<table", f'<table id="{self._id(name)}"', 1)
        self.sections.setdefault(section, []).append(
            f"<h3>{html.escape(caption)}</h3>\n{body}" + (f'\n<p class="caption">{_inline(note)}</p>' if note else ""))

    def text(self, section: str, name: str, text: str) -> None:
        self.sections.setdefault(section, []).append(f'<p id="{self._id(name)}">{_inline(text)}</p>')

    def render(self, title: str, meta: dict, notice: list[str]) -> str:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        meta_html = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
                            for k, v in meta.items())
        notice_html = ('<div class="notice" id="notice">' + "".join(f"<p>{_inline(p)}</p>" for p in notice)
                       + "</div>\n") if notice else ""
        body = "\n".join(f'<section id="{self._id("section-" + name)}"><h2>{html.escape(name)}</h2>\n'
                         + "\n".join(blocks) + "\n</section>" for name, blocks in self.sections.items())
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
                f"<h1>{html.escape(title)}</h1>\n"
                f'<p class="generated">Generated by ciml-ter {__version__} on {now}</p>\n'
                + (f'<dl class="meta">{meta_html}</dl>\n' if meta_html else "")
                + notice_html + body + "\n</body></html>\n")


# --------------------------------------------------------------------------- tables
def _table_frame(table) -> pd.DataFrame:
    return table.copy() if isinstance(table, pd.DataFrame) else pd.DataFrame(table)


def _empty(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v))


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text: columns with no value left out, numbers per column (see
    :func:`_column_text`), a missing value as NaN (shown as "–")."""
    out = {}
    for name in frame.columns:
        column = frame[name]
        values = column.tolist()
        if all(_empty(v) for v in values):
            continue
        if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
            out[name] = [np.nan if _empty(v) else str(v) for v in values]
        else:
            out[name] = _column_text(column.to_numpy(dtype=np.float64))
    return pd.DataFrame(out, index=frame.index, dtype=object)


def _column_text(values: np.ndarray) -> list:
    """Numbers of one column with the same decimals: whole numbers in full, others with
    SIGNIFICANT digits of the largest magnitude (at least one digit of the smallest non-zero
    one, at most 8 decimals)."""
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 1e15:
        return [f"{v:.0f}" if np.isfinite(v) else np.nan for v in values]
    big = np.abs(finite).max() if finite.size else 0.0
    nonzero = np.abs(finite[finite != 0])
    decimals = 0
    if big > 0:
        decimals = SIGNIFICANT - 1 - math.floor(math.log10(big))
        decimals = max(decimals, -math.floor(math.log10(nonzero.min())))
    decimals = min(max(decimals, 0), 8)
    return [f"{v:.{decimals}f}" if np.isfinite(v) else np.nan for v in values]


# --------------------------------------------------------------------------- figures
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


def _map_alt(spec: dict) -> str:
    """Alt text: the title and what the colours mean (colour bar label or legend names)."""
    if "labels" in spec:
        return f"{spec.get('title', '')}; legend: {', '.join(_shown_labels(spec))}"
    return f"{spec.get('title', '')}; colour bar: {spec.get('units', '')}"


def _shown_codes(spec: dict) -> list:
    values = np.asarray(spec["values"], dtype=np.float64)
    present = set(np.unique(values[np.isfinite(values)]).astype(int).tolist())
    return sorted(c for c in spec["labels"] if c in present) or sorted(spec["labels"])


def _shown_labels(spec: dict) -> list[str]:
    return [str(spec["labels"][c]) for c in _shown_codes(spec)]


def _categorical_colours(n: int) -> list:
    """n distinct colours: tab10, else tab20 with the dark shades first."""
    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    tab20 = matplotlib.colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [tab20(order[i % 20]) for i in range(n)]


def _map_figure(spec: dict, land: np.ndarray | None) -> Figure:
    """A lat/lon map: cells as drawn on the grid, colour bar in the units (a legend of names for a
    categorical map), coastline, stipple."""
    values = np.asarray(spec["values"], dtype=np.float64)
    lat, lon = np.asarray(spec["lat"], dtype=np.float64), np.asarray(spec["lon"], dtype=np.float64)
    if values.shape != (lat.size, lon.size):
        raise InputError(f"map {spec.get('title', '')!r}: values have shape {values.shape}, "
                         f"lat/lon give {(lat.size, lon.size)}")
    lat_e, lon_e = _edges(lat), _edges(lon)
    width = lon_e.max() - lon_e.min()
    height = lat_e.max() - lat_e.min()
    fig_height = min(7.0, max(2.5, 4.3 * height / width + 1.0))
    fig = Figure(figsize=(6, fig_height), layout="constrained")
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    units = spec.get("units", "")
    if "labels" in spec:
        codes = _shown_codes(spec)
        colours = _categorical_colours(len(codes))
        index = np.full(values.shape, np.nan)  # position of each cell's code among the shown ones
        for k, code in enumerate(codes):
            index[values == code] = k
        ax.pcolormesh(lon_e, lat_e, np.ma.masked_invalid(index), cmap=ListedColormap(colours),
                      norm=BoundaryNorm(np.arange(len(codes) + 1) - 0.5, len(codes)))
        fig.legend(handles=[Patch(facecolor=c, edgecolor="0.3", linewidth=0.5, label=str(spec["labels"][code]))
                            for c, code in zip(colours, codes)],
                   loc="outside right upper", title=units or None, frameon=False, fontsize="small")
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
        # the axes box (inches) is about the map's aspect fitted into the figure less its margins
        box_w = min(4.4, (fig_height - 1.0) * width / height)
        pitch = 72 * box_w * step / values.shape[1]  # points between dots
        diameter = float(np.clip(0.45 * pitch, 2.5, 5.0))
        ax.scatter(lon[xx], lat[yy], s=diameter ** 2, c="k", marker="o", edgecolors="w",
                   linewidths=0.4, zorder=3)
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
                        label=spec.get("band_label", "uncertainty"))
    ax.plot(x, spec["y"], color="C0", marker="o", markersize=3, label=spec.get("label", "estimate"))
    if "truth" in spec:
        ax.plot(x, spec["truth"], color="k", linestyle="--", label="truth")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Year")
    ax.set_ylabel(spec.get("units", ""))
    ax.set_title(spec.get("title", ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _scatter_figure(predictions: pd.DataFrame, columns: dict[str, str], units: str) -> Figure:
    """Observed vs estimated TER, one panel per model (``{name: column}``), same axes in every
    panel with a margin so no point sits on the frame; hexbin counts when the points are many."""
    obs = predictions["ter_obs"].to_numpy(dtype=np.float64)
    panels = [(name, predictions[col].to_numpy(dtype=np.float64)) for name, col in columns.items()]
    ok_all = np.concatenate([v[np.isfinite(v) & np.isfinite(obs)] for _, v in panels] +
                            [obs[np.isfinite(obs)]])
    lo, hi = (float(ok_all.min()), float(ok_all.max())) if ok_all.size else (0.0, 1.0)
    lo = min(lo, 0.0)
    pad = 0.04 * (hi - lo or 1.0)
    lim = (lo - pad, hi + pad)
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.6 * ncols + 1.2, 3.5 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    dense = int(np.isfinite(obs).sum()) > DENSE_POINTS
    bins = []
    for ax, (name, est) in zip(axes.flat, panels):
        ok = np.isfinite(obs) & np.isfinite(est)
        if dense:
            bins.append(ax.hexbin(obs[ok], est[ok], gridsize=40, extent=(*lim, *lim), mincnt=1,
                                  cmap="viridis", norm=LogNorm(), linewidths=0.1))
        else:
            ax.scatter(obs[ok], est[ok], s=10, alpha=0.45, edgecolors="none", color="C0")
        ax.plot(lim, lim, color="k", linestyle="--", linewidth=0.8, label="1:1")
        m = fit_metrics(obs[ok], est[ok])
        ax.set_title(f"{name}\nMAE {m['mae']:.3g}, R² {m['r2']:.2f}, n {m['n']}", fontsize=10)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    if bins:
        top = max(float(b.get_array().max()) for b in bins if b.get_array().size) if any(
            b.get_array().size for b in bins) else 1.0
        norm = LogNorm(vmin=1, vmax=max(top, 2.0))
        for b in bins:
            b.set_norm(norm)
        fig.colorbar(bins[0], ax=axes.ravel().tolist(), shrink=0.8, label="site-months per hexagon")
    fig.supxlabel(f"observed TER ({units})")
    fig.supylabel(f"held-out estimated TER ({units})")
    return fig


def _pft_figure(entries: dict[str, dict], units: str) -> Figure | None:
    """Held-out MAE per PFT, one bar per model (``{name: metrics entry}``)."""
    table = pd.DataFrame({name: {pft: m.get("test", {}).get("mae", np.nan) for pft, m in e.get("by_pft", {}).items()}
                          for name, e in entries.items() if e.get("by_pft")})
    if table.empty:
        return None
    table = table.sort_index()
    fig = Figure(figsize=(max(5.5, 1.3 * len(table) + 2.5), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / table.shape[1]
    x = np.arange(len(table))
    for k, name in enumerate(table.columns):
        ax.bar(x + (k - (table.shape[1] - 1) / 2) * width, table[name].to_numpy(dtype=np.float64), width,
               label=name, color=f"C{k}")
    ax.set_xticks(x, table.index)
    ax.set_xlabel("plant functional type (IGBP)")
    ax.set_ylabel(f"held-out MAE ({units})")
    ax.set_title("Held-out MAE per plant functional type")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right upper", frameon=False, fontsize="small")
    return fig


def _importance_figure(structure: pd.DataFrame, truth_parents: dict | None) -> Figure | None:
    cols = [c for c in IMPORTANCE_NAMES if c in structure.columns and structure[c].notna().any()]
    if not cols or "feature" not in structure.columns:
        return None
    features = structure["feature"].astype(str).tolist()
    fig = Figure(figsize=(min(13, max(6.5, 0.5 * len(features) + 3)), 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(cols)
    x = np.arange(len(features))
    for k, c in enumerate(cols):
        ax.bar(x + (k - (len(cols) - 1) / 2) * width, structure[c].to_numpy(dtype=np.float64), width,
               label=IMPORTANCE_NAMES[c], color=f"C{k}")
    ax.set_xticks(x, features, rotation=45, ha="right")
    if truth_parents:
        for tick, f in zip(ax.get_xticklabels(), features):
            if f in truth_parents.get("parents", []):
                tick.set_fontweight("bold")
            elif f in truth_parents.get("decoys", []):
                tick.set_fontstyle("italic")
                tick.set_color("0.45")
    ax.set_ylabel("share (each measure sums to 1)")
    ax.set_title("Causal effects vs model structure, per feature")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right upper", frameon=False, fontsize="small")
    return fig


# --------------------------------------------------------------------------- model sections
def _read_metrics(model_dir: Path) -> dict:
    return read_json(model_dir / "metrics.json", "metrics.json of `ciml-ter evaluate` in the model directory")


def model_name(metrics: dict) -> str:
    """The model's name as the CLI prints it."""
    return "causal XGBoost" if metrics.get("model", {}).get("causal") else "XGBoost"


def _entries(metrics: dict) -> dict[str, dict]:
    """{display name: metrics entry} of the model and each baseline (key -> CLI name)."""
    return {model_name(metrics): metrics.get("model", {}),
            **{BASELINE_NAMES.get(k, k.replace("_", " ")): e for k, e in metrics.get("baselines", {}).items()}}


def _metric_frame(rows: list[dict], units: str) -> pd.DataFrame:
    """Rows of metrics with readable headers (a missing value as NaN)."""
    frame = pd.DataFrame(rows)
    for c in METRIC_COLUMNS:
        frame[c] = pd.to_numeric(frame.get(c, np.nan), errors="coerce").astype("float64")
    return frame.rename(columns={c: METRIC_HEADERS[c].format(units=units) for c in METRIC_COLUMNS})


def _bootstrap(metrics: dict) -> dict | None:
    """The site bootstrap of the verdict of ``ciml-ter evaluate`` (None in an older metrics.json)."""
    return (metrics.get("verdict") or {}).get("bootstrap")


def _metrics_table(metrics: dict) -> pd.DataFrame:
    """Test metrics per model; with a verdict, "MAE (low–high)" of the site bootstrap beside the MAE."""
    rows = [{"model": name, **{k: e.get("test", {}).get(k) for k in METRIC_COLUMNS}, "note": e.get("skipped", "")}
            for name, e in _entries(metrics).items()]
    frame = _metric_frame(rows, metrics.get("units", TER_UNITS))
    boot = _bootstrap(metrics)
    if boot:
        keys = ["model", *metrics.get("baselines", {})]  # the order of _entries
        scored = [k for k in keys if k in boot["models"]]
        text = iter(_column_text(np.array([boot["models"][k][c] for k in scored for c in ("mae", "low", "high")],
                                          dtype=np.float64)))
        cells = {k: f"{next(text)} ({next(text)}–{next(text)})" for k in scored}
        frame.insert(2, f"test MAE ({100 * boot['level']:g} % site-bootstrap)", [cells.get(k, np.nan) for k in keys])
    return frame


def _metrics_note(metrics: dict) -> str:
    folds, sites = metrics.get("n_folds"), metrics.get("n_sites")
    how = f"{folds}-fold cross-validation grouped by site" if folds else "cross-validation grouped by site"
    note = (f"Held out: each site-month is estimated by the models of the fold that left its site out "
            f"({how}{f', {sites} sites' if sites else ''}). Relative MAE is the MAE over the mean "
            f"observed TER; the slopes are those of the least-squares lines of observed on estimated and "
            f"estimated on observed TER (1: no bias in scale).")
    boot = _bootstrap(metrics)
    if boot:
        dropped = boot["n_rows_dropped"]
        note += (f" Site bootstrap: the MAE on the {boot['n_rows']} site-months every model estimates"
                 f"{f' ({dropped} left out)' if dropped else ''}, and in brackets the {100 * boot['level']:g} % "
                 f"interval of the MAE over {boot['n_boot']} resamples of the {boot['n_sites']} sites with "
                 f"replacement (whole sites, as their months are not independent).")
    return note


def _verdict_text(page: _Page, section: str, name: str, metrics: dict) -> None:
    """The verdict's sentences (causal weights, ranking against the best baseline), if any."""
    verdict = metrics.get("verdict") or {}
    sentences = [verdict[k] for k in ("sentence", "ranking") if verdict.get(k)]
    if sentences:
        page.text(section, name, " ".join(sentences))


def _scatter_columns(metrics: dict, predictions: pd.DataFrame) -> dict[str, str]:
    columns = {model_name(metrics): "ter_test"}
    for key in metrics.get("baselines", {}):
        if f"{key}_test" in predictions:
            columns[BASELINE_NAMES.get(key, key.replace("_", " "))] = f"{key}_test"
    return {k: v for k, v in columns.items() if v in predictions}


def _read_predictions(model_dir: Path) -> pd.DataFrame | None:
    path = model_dir / "predictions.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    return frame if {"ter_obs", "ter_test"} <= set(frame.columns) else None


def _scatter_caption(predictions: pd.DataFrame, units: str, where: str) -> str:
    n_sites = predictions["site"].nunique() if "site" in predictions else None
    dense = int(predictions["ter_obs"].notna().sum()) > DENSE_POINTS
    return (f"Observed vs held-out estimated monthly TER ({units}) at {where}"
            f"{f' ({n_sites} sites)' if n_sites else ''}, one panel per model on the same axes; "
            + ("colour: number of site-months per hexagon (log scale)" if dense else "one dot per site-month")
            + "; dashed: 1:1 line.")


def _model_section(page: _Page, model_dir: Path, truth_parents: dict | None = None) -> None:
    """Metrics of the model and its baselines, per-PFT metrics, the figures drawn from the
    evaluation's data, and the directory's other PNGs."""
    metrics = _read_metrics(model_dir)
    units = metrics.get("units", TER_UNITS)
    section = "Model accuracy"
    page.table(section, "table-metrics", "Held-out (test) metrics at the flux towers", _metrics_table(metrics),
               _metrics_note(metrics))
    _verdict_text(page, section, "metrics-verdict", metrics)
    by_pft = metrics.get("model", {}).get("by_pft", {})
    if by_pft:
        pft_rows = [{"PFT": pft, **{k: m.get("test", {}).get(k) for k in METRIC_COLUMNS}} for pft, m in by_pft.items()]
        page.table(section, "table-metrics-by-pft",
                   f"Held-out metrics of the {model_name(metrics)} per plant functional type (IGBP)",
                   _metric_frame(pft_rows, units))
    drawn = set()
    predictions = _read_predictions(model_dir)
    if predictions is not None:
        page.figure(section, "model-scatter-obs-est", _scatter_caption(predictions, units, "the flux towers"),
                    _png(_scatter_figure(predictions, _scatter_columns(metrics, predictions), units)),
                    alt="Observed vs estimated TER per model", wide=True)
        drawn.add("scatter_obs_est")
    fig = _pft_figure(_entries(metrics), units)
    if fig is not None:
        page.figure(section, "model-pft-mae", "Held-out MAE per plant functional type, for the model and each "
                    "baseline; Lloyd–Taylor and Q10 are fitted per plant functional type on temperature only.",
                    _png(fig), alt="Held-out MAE per plant functional type and model")
        drawn.add("pft_mae")
    structure = model_dir / "structure.csv"
    fig = _importance_figure(pd.read_csv(structure), truth_parents) if structure.is_file() else None
    if fig is not None:
        marks = (" Bold: the synthetic world's true parents of TER; grey italic: its decoys (correlated "
                 "with parents, no effect)." if truth_parents else "")
        page.figure(section, "model-importance", "Per feature, each measure normalised to sum 1 over the "
                    "features: the PCMCI+ causal effect on TER, the number of tree splits on the feature "
                    "(XGBoost 'weight' importance) and the mean |SHAP| over the training site-months, of the "
                    f"causal and the plain model.{marks}", _png(fig), alt="Causal effects vs model structure",
                    wide=True)
        drawn.add("importance")
    for png in sorted(model_dir.glob("*.png")):
        if png.stem not in drawn:
            caption = MODEL_FIGURE_CAPTIONS.get(png.stem, png.stem.replace("_", " "))
            page.figure(section, f"model-{png.stem}", caption, png.read_bytes())


MODEL_FIGURE_CAPTIONS = {  # the figures ciml-ter evaluate writes, embedded when their data is missing
    "scatter_obs_est": "Observed vs estimated TER at flux sites: held-out (out-of-fold) and ensemble",
    "pft_mae": "Test MAE per plant functional type, model and baselines",
    "importance": "Normalised PCMCI+ effects, XGBoost 'weight' importance and mean |SHAP| per feature, "
                  "causal and plain models",
}


def _evaluation_section(page: _Page, section: str, spec: dict) -> None:
    """A further evaluation (e.g. real towers): its sentence, metrics table and observed vs
    estimated figure, or why it was skipped."""
    key = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")
    if "skipped" in spec:
        reason = str(spec["skipped"]).rstrip()
        page.text(section, f"{key}-text", f"Not run: {reason}" + ("" if reason.endswith(".") else "."))
        return
    model_dir = Path(spec["model_dir"])
    metrics = _read_metrics(model_dir)
    units = metrics.get("units", TER_UNITS)
    predictions = _read_predictions(model_dir)
    text = spec.get("text") or evaluation_sentence(metrics, predictions)
    page.text(section, f"{key}-text", text)
    page.table(section, f"table-{key}-metrics", spec.get("caption", f"Held-out (test) metrics, {section}"),
               _metrics_table(metrics), _metrics_note(metrics))
    _verdict_text(page, section, f"{key}-verdict", metrics)
    if predictions is not None:
        page.figure(section, f"{key}-scatter-obs-est", _scatter_caption(predictions, units, spec.get("where", section)),
                    _png(_scatter_figure(predictions, _scatter_columns(metrics, predictions), units)),
                    alt=f"Observed vs estimated TER per model, {section}", wide=True)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def evaluation_sentence(metrics: dict, predictions: pd.DataFrame | None = None) -> str:
    """One sentence of what an evaluation's numbers mean."""
    entries = {n: e["test"] for n, e in _entries(metrics).items() if "test" in e}
    name = model_name(metrics)
    m = entries.get(name, {})
    if not (_finite(m.get("r2")) and _finite(m.get("mae"))):
        return f"No held-out metrics for the {name}."
    r2, units = m["r2"], metrics.get("units", TER_UNITS)
    sites = f" from {predictions['site'].nunique()} towers" if predictions is not None and "site" in predictions else ""
    fit = (f"explains {100 * r2:.0f} % of the variance of observed monthly TER (R² {r2:.2f})" if r2 > 0
           else f"does no better than the mean of the observations (R² {r2:.2f})")
    text = (f"On {m.get('n', 'the')} held-out site-months{sites}, the {name} {fit}, with a mean absolute error of "
            f"{m['mae']:.1f} {units}" + (f" ({100 * m['rmae']:.0f} % of the mean observed TER)"
                                        if _finite(m.get("rmae")) else ""))
    others = {n: v["r2"] for n, v in entries.items() if n != name and _finite(v.get("r2"))}
    if others:
        best = max(others, key=others.get)
        text += (f"; the best baseline, {best}, reaches R² {others[best]:.2f}" if others[best] > r2
                 else f"; no baseline does better (best: {best}, R² {others[best]:.2f})")
    return text + "."


# --------------------------------------------------------------------------- the command
def _cube_attrs(path: Path) -> dict:
    """Global attributes of a cube (Zarr or NetCDF, ``data.cube.open_cube``); {} when unreadable."""
    from ciml_ter.data.cube import open_cube

    try:
        with open_cube(path) as cube:
            return dict(cube.attrs)
    except InputError:
        return {}


def find_truth(manifest: dict) -> tuple[bool, Path | None]:
    """Whether a run's input cube is a ``ciml-ter synth`` world (the run's features cube names its
    source cube), and that world's ``truth.nc`` if it is there."""
    features = manifest.get("features_path")
    source = _cube_attrs(Path(features)).get("source") if features else None
    if not source:
        return False, None
    cube = Path(source)
    if "synthetic" not in str(_cube_attrs(cube).get("title", "")).lower():
        return False, None
    truth = cube.parent / "truth.nc"
    return True, truth if truth.is_file() else None


def _period(months: list[str]) -> str:
    return f"{months[0]} to {months[-1]} ({len(months)} months)" if months else "the run's months"


def _over(months: list[str]) -> str:
    """The months for use inside parentheses."""
    return f"the {len(months)} months {months[0]} to {months[-1]}" if months else "the run's months"


def _truth_parts(truth_path: Path, run_dir: Path, lat, lon, land, months: list[str]) -> dict:
    """The synthetic truth against the run: mean maps over the months both have, their
    difference, pixel-month R² and MAE, the true annual budget, and the truth's attributes."""
    import xarray as xr

    with xr.open_dataset(truth_path, engine="h5netcdf") as t:
        attrs = dict(t.attrs)
        t_lat, t_lon = t.lat.values.astype(np.float64), t.lon.values.astype(np.float64)
        t_months = pd.DatetimeIndex(t.time.values).strftime("%Y-%m").tolist()
        out = {"attrs": attrs}
        if t_lat.shape != lat.shape or t_lon.shape != lon.shape or not (
                np.allclose(t_lat, lat) and np.allclose(t_lon, lon)):
            out["problem"] = f"{truth_path} is on another grid than the run; no truth maps"
            return out
        common = [m for m in months if m in set(t_months)]
        if not common:
            out["problem"] = f"{truth_path} has no month of the run; no truth maps"
            return out
        truth = np.asarray(t.ter.values[[t_months.index(m) for m in common]], dtype=np.float64)
    with xr.open_dataset(run_dir / "ter.nc", engine="h5netcdf") as run:
        run_months = pd.DatetimeIndex(run.time.values).strftime("%Y-%m").tolist()
        estimate = np.asarray(run.ter.values[[run_months.index(m) for m in common]], dtype=np.float64)
    years = pd.PeriodIndex(common, freq="M").year.to_numpy()
    found = against_truth(truth, estimate, lat, lon, years, land)
    out.update({"months": common, "true_mean": found["true_mean"], "est_mean": found["est_mean"],
                "r2": found["fit"]["r2"], "mae": found["fit"]["mae"], "years": found["years"],
                "budget": found["true_budget"]})
    return out


def _notice(truth: dict | None) -> list[str]:
    lines = [("Synthetic world: every input of this report (the satellite predictors, the soils, the flux "
              "towers and their “observations”) was simulated by `ciml-ter synth`; nothing here describes the "
              "real Earth. The true TER is known, so the estimates can be checked against it.")]
    if truth is None:
        return lines
    a = truth["attrs"]
    parents = json.loads(a["parents"]) if "parents" in a else []
    decoys = json.loads(a["decoys"]) if "decoys" in a else []
    line = f"Truth: TER = `{a['formula']}`" if "formula" in a else "Truth: TER from the generator"
    if parents:
        line += f", whose parents (causes) are {', '.join(parents)}"
    if decoys:
        line += f"; {' and '.join(decoys)} are decoys, correlated with parents but without effect on TER"
    if "seed" in a:
        line += f" (seed {a['seed']})"
    lines.append(line + ". The tower “observations” are this truth at the tower cells with added noise and gaps.")
    if "r2" in truth:
        lines.append(f"Against the truth over {_period(truth['months'])}, the estimated TER has R² "
                     f"{truth['r2']:.3f} and a mean absolute error of {truth['mae']:.2f} {TER_UNITS} "
                     "(all land cell-months).")
    else:
        lines.append(truth["problem"] + ".")
    return lines


def run(run_dir: Path, out_html: Path, analysis_dir: Path | None = None,
        model_dir: Path | None = None, extra_tables: dict | None = None,
        truth_series: dict | None = None, truth: Path | None = None,
        evaluations: dict | None = None) -> Path:
    """``ciml-ter report``: maps, budget series and tables from a run (and its analysis and
    model directories) into one HTML file.

    A run of a ``ciml-ter synth`` world (found from the run's features cube, or ``truth`` given:
    the world's truth.nc) is reported as synthetic: a notice with the truth's formula and
    parents, the true mean TER map on the estimate's colour scale, estimate − truth, and the true
    budget beside the estimate. ``truth_series`` ({"x", "y"}) overrides that true budget;
    ``evaluations`` are passed to :func:`write_report`."""
    import xarray as xr

    run_dir = Path(run_dir)
    if not (run_dir / "ter.nc").exists():
        raise InputError(f"{run_dir}: no ter.nc; expected a run directory from 'ciml-ter predict'")
    manifest = RunDir(run_dir).manifest()
    months = list(manifest.get("months", []))
    if len(months) == 2:  # some manifests hold only the first and last month
        with xr.open_dataset(run_dir / "ter.nc", engine="h5netcdf") as run:
            months = pd.DatetimeIndex(run.time.values).strftime("%Y-%m").tolist()
    period = _period(months)
    synthetic, found = (True, Path(truth)) if truth is not None else find_truth(manifest)
    maps, series, tables = {}, {}, {}
    if analysis_dir is None:
        with xr.open_dataset(run_dir / "ter.nc", engine="h5netcdf") as run:
            ter = np.asarray(run.ter.values, dtype=np.float64)
            lat, lon = run.lat.values, run.lon.values
        land = np.isfinite(ter).any(axis=0)
        ter_mean = np.nanmean(np.where(land, ter, 0), axis=0) * np.where(land, 1, np.nan)
        summary, ds = {}, None
    else:
        analysis_dir = Path(analysis_dir)
        summary = read_json(analysis_dir / "summary.json", "summary.json of `ciml-ter analyze`")
        with xr.open_dataset(analysis_dir / "maps.nc", engine="h5netcdf") as ds:
            ds = ds.load()
        lat, lon, land = ds.lat.values, ds.lon.values, ds.land.values.astype(bool)
        ter_mean = ds.ter_mean.values.astype(np.float64)
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    truth_info = _truth_parts(found, run_dir, lat, lon, land, months) if found is not None else None

    def spec(values, title, units, caption, **kw):
        return {"values": np.asarray(values, dtype=np.float64), "lat": lat, "lon": lon, "units": units,
                "title": title, "caption": caption, **kw}

    mean_kw = {"cmap": "YlOrBr"}
    if truth_info and "r2" in truth_info:
        both = np.concatenate([v[np.isfinite(v)] for v in (ter_mean, truth_info["true_mean"])])
        mean_kw.update(vmin=float(both.min()), vmax=float(both.max()))
    maps["ter_mean"] = spec(ter_mean, "Mean TER" + (" (estimate)" if synthetic else ""), TER_UNITS,
                            f"Mean of the monthly TER estimates per grid cell over {period}; blank: no land."
                            + (" Same colour scale as the true mean TER." if "vmin" in mean_kw else ""), **mean_kw)
    if truth_info and "r2" in truth_info:
        tp = _period(truth_info["months"])
        maps["truth_mean"] = spec(truth_info["true_mean"], "True mean TER (synthetic world)", TER_UNITS,
                                  f"Mean of the synthetic world's true monthly TER over {tp}, on the same colour "
                                  "scale as the estimate.", **mean_kw)
        diff = truth_info["est_mean"] - truth_info["true_mean"]
        finite = diff[np.isfinite(diff)]
        maps["truth_diff"] = spec(diff, "Estimate − truth, mean TER", TER_UNITS,
                                  f"Mean estimate minus mean truth over {tp} (red: estimate too high, blue: too "
                                  f"low); over the land cells its mean is {finite.mean():+.2f} and its mean absolute "
                                  f"value {np.abs(finite).mean():.2f} {TER_UNITS}.", diverging=True)
    if ds is not None:
        maps["ter_std"] = spec(ds.ter_std_mean.values, "TER uncertainty (ensemble spread)", TER_UNITS,
                               "Mean over " + period + " of the monthly standard deviation of TER across the "
                               "ensemble's fold models (each trained with one fold of sites left out): the spread "
                               "of the models, not the error against observations.", cmap="magma")
        if "trend_slope" in ds:
            trend = summary.get("trend", {})
            years = pd.read_csv(analysis_dir / "budget.csv").year
            share = trend.get("significant_share_of_land")
            maps["trend"] = spec(ds.trend_slope.values, "Trend of annual TER (Theil–Sen)", "g C m-2 yr-2",
                                 f"Theil–Sen slope of each cell's annual TER totals, {years.min()}–{years.max()}; "
                                 f"dots: Mann–Kendall p < {trend.get('p_threshold', 0.05)}"
                                 + (f" ({100 * share:.1f} % of the land area)" if share is not None else "") + ".",
                                 diverging=True, stipple=ds.trend_significant.values.astype(bool))
        if "dominant_feature" in ds:
            features = json.loads(ds.attrs["features"])
            groups = json.loads(ds.attrs["groups"])
            maps["dominant_driver"] = spec(
                ds.dominant_feature.values, "Dominant driver", "dominant feature",
                f"The feature with the largest share of each cell's mean |SHAP| (|SHAP| averaged over {_over(months)}); "
                "the legend lists the features dominant somewhere.", labels=dict(enumerate(features)),
                section="Drivers")
            group_means = summary.get("drivers", {}).get("groups", {})
            for g in groups:
                mean = group_means.get(g, {}).get("mean")
                maps[f"share_{g}"] = spec(
                    ds[f"group_share_{g}"].values, f"Share of {g} drivers", SHARE_UNITS,
                    f"Sum over the {g} features of their shares of each cell's mean |SHAP| (over {_over(months)}); the "
                    "groups' shares add up to 1 in every cell"
                    + (f"; area-weighted mean over land {mean:.2f}." if mean is not None else "."),
                    cmap="viridis", vmin=0, vmax=1, section="Drivers")
            drivers = pd.read_csv(analysis_dir / "drivers.csv").sort_values("mean_share", ascending=False)
            tables["driver shares"] = {
                "rows": drivers.rename(columns={"mean_share": f"mean {SHARE_UNITS} (area-weighted over land)",
                                                "std_share": "s.d. across land cells"}),
                "section": "Drivers", "caption": f"Each feature's share of the mean |SHAP| per cell, over {period}."}
        budget = pd.read_csv(analysis_dir / "budget.csv")
        true_budget = None
        if truth_series:
            true_budget = np.asarray(truth_series["y"], dtype=np.float64)
        elif truth_info and "budget" in truth_info and list(truth_info["years"]) == budget.year.tolist():
            true_budget = truth_info["budget"]
        area = summary.get("budget", {}).get("land_area_m2")
        series["budget"] = {
            "x": budget.year.to_numpy(), "y": budget.budget_pg_c_yr.to_numpy(),
            "lower": (budget.budget_pg_c_yr - budget.uncertainty_pg_c_yr).to_numpy(),
            "upper": (budget.budget_pg_c_yr + budget.uncertainty_pg_c_yr).to_numpy(),
            "band_label": "±σ (upper bound)", "units": "Pg C yr-1", "title": "Annual TER over the land of the run",
            "caption": "Sum of each complete year's twelve monthly TER estimates over the land cells of the run"
                       + (f" ({area / 1e12:.2f} million km²)" if area else "") + ". Band: ±σ, with σ the ensemble "
                       "spread (standard deviation across fold models) summed over cells and months as if fully "
                       "correlated, an upper bound of that spread's effect on the total."
                       + (" Dashed: the synthetic world's true total." if true_budget is not None else ""),
            **({"truth": true_budget} if true_budget is not None else {})}
        regions = pd.read_csv(analysis_dir / "regions.csv")
        regions = regions[regions["pixels"] > 0].rename(columns={
            "pixels": "land cells", "budget_pg_c_yr": "mean annual TER (Pg C yr-1)",
            "trend_g_c_m2_yr2": "mean cell trend (g C m-2 yr-2)", "trend_se": "trend s.e. (g C m-2 yr-2)"})
        if len(regions):
            tables["regions"] = {"rows": regions, "caption": "Per region (regions with no land cell left out): "
                                 "total TER averaged over the complete years, and the area-weighted mean of the "
                                 "cells' Theil–Sen trends with its standard error (effective sample size)."}
        if "comparisons" in summary:
            rows = [{"product": k, "months in common": e.get("months"),
                     "mean annual TER, ours (Pg C yr-1)": float(np.mean(e["budget_ours_pg_c_yr"]))
                     if e.get("budget_ours_pg_c_yr") else None,
                     "mean annual TER, theirs (Pg C yr-1)": float(np.mean(e["budget_theirs_pg_c_yr"]))
                     if e.get("budget_theirs_pg_c_yr") else None,
                     f"mean difference, ours − theirs ({TER_UNITS})": e.get("mean_difference"),
                     "trend sign agreement (fraction of land cells)": e.get("trend_sign_agreement")}
                    for k, e in summary["comparisons"].items()]
            tables["product comparison"] = {"rows": rows, "section": "Product comparison"}
            for name in summary["comparisons"]:
                maps[f"diff_{name}"] = spec(ds[f"diff_{name}"].values, f"Mean TER minus {name}", TER_UNITS,
                                            f"Our mean monthly TER minus {name}'s over the months both cover "
                                            "(red: ours higher).", diverging=True, section="Product comparison")
    for name, table in (extra_tables or {}).items():
        tables[name] = table
    if truth_info is not None:  # the truth map beside the estimate, then the difference
        order = ["ter_mean", "truth_mean", "truth_diff"]
        maps = {**{k: maps[k] for k in order if k in maps}, **{k: v for k, v in maps.items() if k not in order}}
    truth_parents = None
    if truth_info is not None and "parents" in truth_info["attrs"]:
        truth_parents = {"parents": json.loads(truth_info["attrs"]["parents"]),
                         "decoys": json.loads(truth_info["attrs"].get("decoys", "[]"))}
    meta = {"run": str(run_dir), "model id": manifest.get("model_id"), "config hash": manifest.get("config_hash"),
            "months": f"{months[0]} to {months[-1]}" if months else "–"}
    if synthetic:
        meta["world"] = "synthetic (ciml-ter synth)" + (f", truth {found}" if found is not None else "")
    return write_report(out_html, maps=maps, series=series, land=land, tables=tables, model_dir=model_dir,
                        evaluations=evaluations, notice=_notice(truth_info) if synthetic else None, meta=meta,
                        truth_parents=truth_parents,
                        title="ciml-ter: terrestrial ecosystem respiration" + (", synthetic world" if synthetic else ""))
