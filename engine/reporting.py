"""The HTML report page: one self-contained file with embedded PNG figures (``ciml_ter.figures``)
and tables, written by ``write_report``; the ``ciml-ter report`` stage gathers its inputs.

Every input is optional; sections without input are left out. Figures are drawn with
matplotlib's Agg renderer (no pyplot state) and embedded as ``data:image/png;base64`` URIs; the
page has no scripts and a Content-Security-Policy that forbids any external resource.

Inputs of :func:`write_report`:

- ``maps``: ``{name: spec}``, each spec a map spec of ``figures.map_figure`` plus an optional
  ``caption`` (the text under the figure: what the title does not say, e.g. the averaging period;
  default the title) and ``section`` (heading, default "Maps").
- ``series``: ``{name: spec}``, each a series spec of ``figures.series_figure`` plus an optional
  ``caption`` and ``section`` (default "Time series").
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
  XGBoost", "Lloyd–Taylor", "Q10", "random forest"), and so does the coverage of the prediction
  intervals (its "uncertainty": conformal beside the ensemble spread); observed vs estimated TER per model (from
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
``table-metrics-by-pft``, the verdict's sentences under the metrics ``metrics-verdict``, the
coverage of the prediction intervals ``table-coverage-<level>`` (``coverage-text`` when there are
none); for an evaluation section the same with ``<section>-`` before
``metrics``/``scatter-obs-est``/``verdict``/``coverage``,
and its text ``<section>-text``.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ciml_ter import __version__
from ciml_ter.documents import read_json
from ciml_ter.figures import (DENSE_POINTS, importance_figure, map_alt, map_figure, model_entries, model_name,
                              pft_figure, png, scatter_columns, scatter_figure, series_figure)
from ciml_ter.files import atomic_write
from ciml_ter.uncertainty import METHOD_NAMES, TOWERS_UNSEEN, level_name
from ciml_ter.units import TER_UNITS

METRIC_COLUMNS = ("mae", "rmae", "r2", "slope_obs_on_est", "slope_est_on_obs", "n")
METRIC_HEADERS = {"mae": "MAE ({units})", "rmae": "relative MAE (MAE / mean obs.)", "r2": "R²",
                  "slope_obs_on_est": "slope obs. on est.", "slope_est_on_obs": "slope est. on obs.",
                  "n": "n (site-months)"}
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
                 title: str = "ciml-ter report", truth_parents: dict | None = None,
                 texts: dict | None = None, figures: dict | None = None) -> Path:
    """Write the report (see the module docstring for the inputs); returns its path.
    ``truth_parents`` ({"parents": [...], "decoys": [...]}) marks a synthetic world's true
    parents and decoys in the importance figure. ``texts`` ({name: {"section", "text"}}) are
    paragraphs, e.g. what a flat map would show; ``figures`` ({name: {"figure", "caption",
    "section", "alt"}}) are figures drawn by the caller (``ciml_ter.figures``), after the series."""
    page = _Page()
    for name, spec in (maps or {}).items():
        page.figure(spec.get("section", "Maps"), f"map-{name}", spec.get("caption", spec.get("title", name)),
                    png(map_figure(spec, land)), alt=map_alt(spec))
    for name, spec in (texts or {}).items():
        page.text(spec["section"], f"text-{name}", spec["text"])
    for name, spec in (series or {}).items():
        page.figure(spec.get("section", "Time series"), f"series-{name}",
                    spec.get("caption", spec.get("title", name)), png(series_figure(spec)),
                    alt=spec.get("title", name))
    for name, spec in (figures or {}).items():
        page.figure(spec["section"], f"figure-{name}", spec["caption"], png(spec["figure"]), alt=spec.get("alt"),
                    wide=spec.get("wide", False))
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


def _read_metrics(model_dir: Path) -> dict:
    return read_json(model_dir / "metrics.json", "metrics.json of `ciml-ter evaluate` in the model directory")


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
            for name, e in model_entries(metrics).items()]
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
    sentences = [verdict[k] for k in ("sentence", "ranking") if verdict.get(k)] + list(verdict.get("where", []))
    if sentences:
        page.text(section, name, " ".join(sentences))


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


def coverage_frame(found: dict, level: str) -> pd.DataFrame:
    """The coverage table of the prediction intervals at one level (metrics.json "uncertainty"):
    one row overall, per PFT and per latitude band; per method the coverage (%) and the median
    width."""
    methods = [m for m in METHOD_NAMES if level in found.get(m, {})]
    first = found[methods[0]][level]
    keys = [("all towers", "overall", None)] + [(f"PFT {g}", "by_pft", g) for g in first["by_pft"]] + \
        [(f"latitudes {g}", "by_lat_band", g) for g in first["by_lat_band"]]
    rows = []
    for label, scale, group in keys:
        entries = {m: found[m][level][scale] if group is None else found[m][level][scale][group] for m in methods}
        row = {"towers": label, "sites": entries[methods[0]]["n_sites"], "site-months": entries[methods[0]]["n"]}
        for m, e in entries.items():
            row[f"{METHOD_NAMES[m]}: coverage (%)"] = 100 * e["coverage"] if e["coverage"] is not None else np.nan
            row[f"{METHOD_NAMES[m]}: median width"] = e["median_width"] if e["median_width"] is not None else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _coverage_tables(page: _Page, section: str, key: str, metrics: dict) -> None:
    """The coverage of the prediction intervals at held-out towers, one table per level, or why
    there are none."""
    found = metrics.get("uncertainty")
    if not found:
        return
    if "skipped" in found:
        page.text(section, f"{key}coverage-text", f"No prediction intervals: {found['skipped']}.")
        return
    units = metrics.get("units", TER_UNITS)
    for level in (level_name(a) for a in found["levels"]):
        dist = found["conformal"][level]["site_distribution"]
        centre = ("ŷ and σ̂ the mean and spread of the K models that never saw the tower, as on the map"
                  if found.get("towers_ensemble") == TOWERS_UNSEEN
                  else "ŷ the tower's fold, σ̂ the spread of the other folds' means")
        scale = ("√(τ² + κ²(σ̂ + s0)²), τ the sites' own bias, which no spread shows" if found.get("site_bias")
                 else "σ̂ + s0")
        page.table(section, f"table-{key}coverage-{level}",
                   f"Coverage of the {level} % prediction intervals at held-out towers (widths in {units})",
                   coverage_frame(found, level),
                   f"Share of held-out site-months whose observed TER lies inside the interval. Conformal: calibrated "
                   f"on the other folds' towers only (nested), |y − ŷ| scaled by {scale} ({centre}, "
                   f"s0 = {found['offset']:.2g}), per PFT with at least {found['min_group_sites']} "
                   f"sites; for the true flux (the map's intervals): the towers' random error removed, so it "
                   f"covers fewer of the towers' noisy values than its level by design; pooled: the same without "
                   f"scaling or PFTs; ensemble spread: ŷ ± zσ̂ as products publish it. Per site, the conformal "
                   f"coverage runs from {100 * dist['min']:.0f} % to "
                   f"{100 * dist['max']:.0f} % (median {100 * dist['median']:.0f} %, 10–90 % of sites "
                   f"{100 * dist['q10']:.0f}–{100 * dist['q90']:.0f} %).")


def _model_section(page: _Page, model_dir: Path, truth_parents: dict | None = None) -> None:
    """Metrics of the model and its baselines, per-PFT metrics, the figures drawn from the
    evaluation's data, and the directory's other PNGs."""
    metrics = _read_metrics(model_dir)
    units = metrics.get("units", TER_UNITS)
    section = "Model accuracy"
    page.table(section, "table-metrics", "Held-out (test) metrics at the flux towers", _metrics_table(metrics),
               _metrics_note(metrics))
    _verdict_text(page, section, "metrics-verdict", metrics)
    _coverage_tables(page, section, "", metrics)
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
                    png(scatter_figure(predictions, scatter_columns(metrics, predictions), units)),
                    alt="Observed vs estimated TER per model", wide=True)
        drawn.add("scatter_obs_est")
    fig = pft_figure(model_entries(metrics), units)
    if fig is not None:
        page.figure(section, "model-pft-mae", "Held-out MAE per plant functional type, for the model and each "
                    "baseline; Lloyd–Taylor and Q10 are fitted per plant functional type on temperature only.",
                    png(fig), alt="Held-out MAE per plant functional type and model")
        drawn.add("pft_mae")
    structure = model_dir / "structure.csv"
    fig = importance_figure(pd.read_csv(structure), truth_parents) if structure.is_file() else None
    if fig is not None:
        marks = (" Bold: the synthetic world's true parents of TER; grey italic: its decoys (correlated "
                 "with parents, no effect)." if truth_parents else "")
        page.figure(section, "model-importance", "Per feature, each measure normalised to sum 1 over the "
                    "features: the PCMCI+ causal effect on TER, the number of tree splits on the feature "
                    "(XGBoost 'weight' importance) and the mean |SHAP| over the training site-months, of the "
                    f"causal and the plain model.{marks}", png(fig), alt="Causal effects vs model structure",
                    wide=True)
        drawn.add("importance")
    for path in sorted(model_dir.glob("*.png")):
        if path.stem not in drawn:
            caption = MODEL_FIGURE_CAPTIONS.get(path.stem, path.stem.replace("_", " "))
            page.figure(section, f"model-{path.stem}", caption, path.read_bytes())


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
    _coverage_tables(page, section, f"{key}-", metrics)
    if predictions is not None:
        page.figure(section, f"{key}-scatter-obs-est", _scatter_caption(predictions, units, spec.get("where", section)),
                    png(scatter_figure(predictions, scatter_columns(metrics, predictions), units)),
                    alt=f"Observed vs estimated TER per model, {section}", wide=True)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


SLOPE_UNDERESTIMATES = 0.8  # estimated-on-observed slope below which the sentence says high TER is underestimated


def evaluation_sentence(metrics: dict, predictions: pd.DataFrame | None = None) -> str:
    """One sentence of what an evaluation's numbers mean, ranking the models by test MAE (the
    measure the evaluation ranks by) and saying when the model flattens high TER."""
    entries = {n: e["test"] for n, e in model_entries(metrics).items() if "test" in e}
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
    others = {n: v["mae"] for n, v in entries.items() if n != name and _finite(v.get("mae"))}
    if others:
        best = min(others, key=others.get)
        text += (f"; the best baseline by test MAE, {best}, does better ({others[best]:.1f})" if others[best] < m["mae"]
                 else f"; no baseline has a lower test MAE (best: {best}, {others[best]:.1f})")
    slope = m.get("slope_est_on_obs")
    if _finite(slope) and slope < SLOPE_UNDERESTIMATES:
        text += (f". It flattens the extremes: the estimates regressed on the observations have a slope of "
                 f"{slope:.2f}, so high TER is underestimated and low TER overestimated")
    return text + "."
