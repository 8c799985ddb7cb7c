"""The figures of ciml-ter, in one place: maps, series, observed vs estimated TER, MAE per PFT and
the model structure. ``ciml-ter evaluate`` saves them as PNG files and the report embeds the same
figures. Drawn with matplotlib's object API on the Agg renderer (no pyplot state).

Map specs (``map_figure``): a dict with ``values`` 2-D float array (lat, lon), NaN = no data;
``lat``, ``lon`` 1-D cell centres in degrees (any order, regular or not); ``units`` (the colour
bar's label); ``title``; optional ``cmap``, ``vmin``/``vmax``, ``diverging=True`` (limits
symmetric about 0, default cmap ``RdBu_r``), ``stipple`` 2-D bool (a dot where True, sized from
the cell size; dense grids stippled on every k-th cell), ``labels`` ``{int code: name}`` for a
categorical map (a legend lists the codes present). Series specs (``series_figure``): ``x``
(years), ``y``, optional ``lower``/``upper`` (band, legend ``band_label``), optional ``bounds``
(a list of ``{"lower", "upper", "label"}`` drawn as dotted lines), ``units``, ``title``, optional
``truth`` and ``label``.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ciml_ter.errors import InputError
from ciml_ter.evaluation import BASELINE_NAMES, metrics as fit_metrics
from ciml_ter.files import atomic_write

IMPORTANCE_NAMES = {"pcmci_effect": "PCMCI+ causal effect", "xgb_weight_causal": "split count, causal XGBoost",
                    "xgb_weight_plain": "split count, plain XGBoost", "shap_causal": "mean |SHAP|, causal XGBoost",
                    "shap_plain": "mean |SHAP|, plain XGBoost"}
MAX_STIPPLE_DOTS = 60  # per axis; denser grids are stippled on every k-th cell
DENSE_POINTS = 1000  # scatter plots with more points than this are drawn as hexbin counts


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG file (atomically)."""
    return atomic_write(path, png(fig))


def model_name(metrics: dict) -> str:
    """The model's name as the CLI prints it, from a metrics.json document."""
    return "causal XGBoost" if metrics.get("model", {}).get("causal") else "XGBoost"


def model_entries(metrics: dict) -> dict[str, dict]:
    """{display name: metrics entry} of the model and each baseline of a metrics.json document."""
    return {model_name(metrics): metrics.get("model", {}),
            **{BASELINE_NAMES.get(k, k.replace("_", " ")): e for k, e in metrics.get("baselines", {}).items()}}


def scatter_columns(metrics: dict, predictions: pd.DataFrame | None = None) -> dict[str, str]:
    """{display name: column of predictions.csv} of the model and each baseline with test estimates
    (those present in ``predictions`` when given)."""
    columns = {model_name(metrics): "ter_test"}
    for key in metrics.get("baselines", {}):
        if "test" in metrics["baselines"][key]:
            columns[BASELINE_NAMES.get(key, key.replace("_", " "))] = f"{key}_test"
    return {k: v for k, v in columns.items() if predictions is None or v in predictions}


def png(fig: Figure) -> bytes:
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


def map_alt(spec: dict) -> str:
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


def map_figure(spec: dict, land: np.ndarray | None) -> Figure:
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
    if "towers" in spec:  # (lat, lon) of the flux towers, degrees
        t_lat, t_lon = (np.asarray(a, dtype=np.float64) for a in spec["towers"])
        ax.scatter(t_lon, t_lat, s=22, marker="^", facecolors="w", edgecolors="k", linewidths=0.8, zorder=4,
                   label=f"{t_lat.size} flux towers")
        ax.legend(loc="lower left", fontsize="x-small", framealpha=0.8)
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


def series_figure(spec: dict) -> Figure:
    """A line over the years with its uncertainty band and, if given, the truth."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.asarray(spec["x"])
    if "lower" in spec and "upper" in spec:
        ax.fill_between(x, spec["lower"], spec["upper"], color="C0", alpha=0.25, linewidth=0,
                        label=spec.get("band_label", "uncertainty"))
    for k, bound in enumerate(spec.get("bounds", [])):
        ax.plot(x, bound["lower"], color=f"C{k + 1}", linestyle=":", linewidth=1.5, label=bound["label"])
        ax.plot(x, bound["upper"], color=f"C{k + 1}", linestyle=":", linewidth=1.5)
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


def seasonal_figure(cycle: pd.DataFrame, units: str, title: str) -> Figure:
    """Mean seasonal cycle, one line per region (``cycle``: a ``month`` column 1-12 and one column
    per region)."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for k, name in enumerate(c for c in cycle.columns if c != "month"):
        ax.plot(cycle["month"], cycle[name], marker="o", markersize=3, color=f"C{k}", label=name)
    ax.set_xticks(range(1, 13), ["J", "F", "M", "A", "M", "J", "J", "A", "S", "O", "N", "D"])
    ax.set_xlabel("Month")
    ax.set_ylabel(units)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", title="latitude band", title_fontsize="small")
    return fig


def dependence_figure(curves: pd.DataFrame, truth: dict[str, tuple[np.ndarray, np.ndarray]], units: str,
                      decoys: list[str]) -> Figure:
    """One panel per feature of ``truth``: the binned SHAP dependence (``curves``: feature, value,
    shap_mean, shap_std) beside the true response (x, y), both in ``units``; decoys' true response
    is 0."""
    names = list(truth)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.4 * ncols + 0.6, 2.9 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        c = curves[curves["feature"] == name].sort_values("value")
        ax.fill_between(c["value"], c["shap_mean"] - c["shap_std"], c["shap_mean"] + c["shap_std"], color="C0",
                        alpha=0.2, linewidth=0)
        ax.plot(c["value"], c["shap_mean"], color="C0", marker="o", markersize=2.5, label="SHAP (mean ± s.d.)")
        x, y = truth[name]
        ax.plot(x, y, color="k", linestyle="--", label="true response")
        ax.set_title(f"{name}{' (decoy)' if name in decoys else ''}", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize="x-small")
    fig.supylabel(f"contribution to TER ({units})")
    fig.supxlabel("predictor value")
    return fig


def scatter_figure(predictions: pd.DataFrame, columns: dict[str, str], units: str) -> Figure:
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


def pft_figure(entries: dict[str, dict], units: str) -> Figure | None:
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


def importance_figure(structure: pd.DataFrame, truth_parents: dict | None) -> Figure | None:
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
