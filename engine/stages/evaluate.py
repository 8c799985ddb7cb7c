"""``ciml-ter evaluate``: the model against its baselines on the same site-grouped folds
(``ciml_ter.assessment``), written as ``metrics.json`` (metrics at every scale, the model structure
against the PCMCI+ effects, and the verdict), CSV tables (summary, per PFT, per site, per latitude
band, structure, predictions, coverage of the prediction intervals), ``calibration.json`` (the
intervals' calibration, ``ciml_ter.uncertainty``: ``predict`` reads it from the model directory)
and PNG figures (``ciml_ter.figures``, as in the report). The plain-XGBoost baseline is trained
into ``baseline_xgboost_plain/`` beside them and reused on a rerun with the same folds and config.
A folder other than the model's is built whole under a lock (``files.output_folder``); into the
model's own folder the files are added under its lock.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ciml_ter import figures
from ciml_ter.assessment import assess
from ciml_ter.config import PipelineConfig
from ciml_ter.ensemble import load_ensemble
from ciml_ter.files import atomic_write, check_output, output_folder, output_lock
from ciml_ter.sitetable import read_site_table
from ciml_ter.stages import Runtime
from ciml_ter.uncertainty import CALIBRATION, level_name, write_calibration

BASELINE_DIR = "baseline_xgboost_plain"


@dataclass
class EvaluateSummary:
    """An evaluation written to ``out``: its metrics.json document."""

    out: Path
    document: dict

    def lines(self) -> list[str]:
        verdict = self.document.get("verdict", {})
        return ([s for s in (verdict.get("sentence"), verdict.get("ranking")) if s] + list(verdict.get("where", []))
                + self._interval_lines()
                + [f"wrote {self.out}"])

    def _interval_lines(self) -> list[str]:
        found = self.document.get("uncertainty", {})
        if "skipped" in found:
            return [f"no prediction intervals: {found['skipped']}"]
        lines = []
        for level in found.get("levels", []):
            name = level_name(level)
            c, s = found["conformal"][name]["overall"], found["ensemble_spread"][name]["overall"]
            lines.append(f"{name} % intervals at held-out towers: conformal covers {100 * c['coverage']:.1f} % "
                         f"(median width {c['median_width']:.1f}), ensemble spread {100 * s['coverage']:.1f} % "
                         f"(median width {s['median_width']:.1f})")
        error = found.get("random_error")
        if error and found.get("levels"):
            flux = found["conformal_flux"]
            widths = ", ".join(f"{level_name(a)} % median width {flux[level_name(a)]['overall']['median_width']:.1f}"
                               for a in found["levels"])
            lines.append(f"intervals of the true flux (the map's): the towers' random error removed, known at "
                         f"{100 * error['share']:.0f} % of the site-months; {widths}")
        return lines


def evaluate(model: Path, out: Path, config: PipelineConfig, runtime: Runtime, *, sites: Path | None = None,
             temperature: str | None = None, rf_trees: int = 200, shap_rows: int = 1000) -> EvaluateSummary:
    """``evaluate_into`` the folder ``out``: the model's own folder under its lock, or a folder
    built whole (an earlier plain baseline there is carried over for reuse)."""
    check_output(out, "folder")
    options = {"sites": sites, "temperature": temperature, "rf_trees": rf_trees, "shap_rows": shap_rows}
    if Path(out).resolve() == Path(model).resolve():
        with output_lock(out):
            return evaluate_into(model, out, config, runtime, **options)
    with output_folder(out) as folder:
        if (Path(out) / BASELINE_DIR).is_dir():
            shutil.copytree(Path(out) / BASELINE_DIR, folder / BASELINE_DIR)
        summary = evaluate_into(model, folder, config, runtime, **options)
    return dataclasses.replace(summary, out=Path(out))


def evaluate_into(model: Path, out: Path, config: PipelineConfig, runtime: Runtime, *, sites: Path | None = None,
                  temperature: str | None = None, rf_trees: int = 200, shap_rows: int = 1000) -> EvaluateSummary:
    """metrics.json, CSV tables and PNG figures of the model directory ``model`` in ``out``.

    ``sites`` defaults to the table the model was trained on (its manifest); ``temperature``
    picks the column of the Lloyd–Taylor/Q10 baselines (default: TA_F, else lst_night, else
    lst_day); the plain baseline trains on ``runtime.device``."""
    ensemble = load_ensemble(model)
    table = read_site_table(sites or ensemble.manifest.get("sites_path"))
    out = Path(out)  # made only once the inputs are known to be there
    out.mkdir(parents=True, exist_ok=True)
    found = assess(ensemble, table, config, out / BASELINE_DIR, runtime.device, temperature=temperature,
                   progress=runtime.progress, rf_trees=rf_trees, shap_rows=shap_rows)
    atomic_write(out / "metrics.json", json.dumps(found.document, indent=1))
    if found.calibration is not None:
        write_calibration(out / CALIBRATION, found.calibration)
    else:
        (out / CALIBRATION).unlink(missing_ok=True)  # an older calibration would not match this evaluation
    for name, frame in found.tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    figures.save(figures.scatter_figure(found.tables["predictions"], figures.scatter_columns(found.document),
                                        found.document["units"]), out / "scatter_obs_est.png")
    pft = figures.pft_figure(figures.model_entries(found.document), found.document["units"])
    if pft is not None:
        figures.save(pft, out / "pft_mae.png")
    importance = figures.importance_figure(found.tables["structure"], None)
    if importance is not None:
        figures.save(importance, out / "importance.png")
    return EvaluateSummary(out, found.document)

