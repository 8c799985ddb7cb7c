"""``ciml-ter sites``: the site-month table (Parquet) from flux data, with predictors from the
towers' own meteorology, from a feature cube at each site's pixel, or from point extracts at the
towers through the same feature code."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ciml_ter.config import PipelineConfig
from ciml_ter.files import check_output, fingerprint
from ciml_ter.predictors import plan
from ciml_ter.sitetable import SiteTableReport, build_site_table, site_table_from_frame, write_site_table
from ciml_ter.stages import Runtime, stamp


@dataclass
class SitesSummary:
    """The table written and the report of what was read, kept and left out."""

    out: Path
    table: pd.DataFrame
    report: SiteTableReport
    model_features: list[str]  # what a model trained on it under the same config takes

    @property
    def left_out(self) -> int:
        """Sites left out (off the grid, on water, without points, ...)."""
        return sum(len(v) for v in self.report.dropped_sites.values())

    def lines(self) -> list[str]:
        return [*self.report.lines(), f"a model trained on it with this config takes: {', '.join(self.model_features)}",
                f"wrote {self.out}: {len(self.table):,} site-months of {self.table['site'].nunique()} sites"]


def made_from(config: PipelineConfig, *, fluxnet: Sequence[Path] = (), abcflux: Sequence[Path] = (),
              features: Path | None = None, window: int = 1, points: Sequence[str] = (),
              points_window: int = 1) -> dict:
    """The stamp of a site-month table made from these flux and predictor inputs, with the pixel
    windows used (``stages.stamp``)."""
    from ciml_ter.data.points.extracts import parse_spec

    inputs = {"fluxnet": [fingerprint(f) for f in fluxnet], "abcflux": [fingerprint(f) for f in abcflux]}
    if features is not None:
        inputs.update(features=fingerprint(features), window=window)
    if points:
        inputs.update(points=[fingerprint(parse_spec(p)[1]) for p in points], points_window=points_window)
    return stamp(config, **inputs)


def build_sites(out: Path, config: PipelineConfig, runtime: Runtime, *, fluxnet: Sequence[Path] = (),
                abcflux: Sequence[Path] = (), features: Path | None = None, window: int = 1,
                points: Sequence[str] = (), points_window: int = 1) -> SitesSummary:
    """Build the table (``sitetable.build_site_table``) from FLUXNET folders and ABCflux files and
    write it to ``out``. Predictors: the feature cube ``features`` at each tower (``window`` 1 or
    3), or the ``points`` extracts (``[PRODUCT=]PATH``; ``points_window`` for ORNL subsets)
    through the feature code with ``config.features``, or the towers' meteorology."""
    check_output(out, "file")
    frame, report = build_site_table(fluxnet, abcflux, features=features, window=window, points=points,
                                     points_window=points_window, features_config=config.features)
    write_site_table(frame, out, mode=report.mode, provenance={
        **report.provenance, "made_from": made_from(config, fluxnet=fluxnet, abcflux=abcflux, features=features,
                                                    window=window, points=points, points_window=points_window)})
    spec = plan(site_table_from_frame(frame, str(out), list(report.predictors)), config)
    return SitesSummary(Path(out), frame, report, spec.features)
