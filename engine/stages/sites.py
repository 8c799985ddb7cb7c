"""``ciml-ter sites``: the site-month table (Parquet) from flux data, with predictors from the
towers' own meteorology, from a feature cube at each site's pixel, or from point extracts at the
towers through the same feature code."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ciml_ter.config import FeaturesConfig
from ciml_ter.sitetable import SiteTableReport, build_site_table, write_site_table


def run(out: Path, fluxnet: Sequence[Path] = (), abcflux: Sequence[Path] = (), *,
        features: Path | None = None, window: int = 1, points: Sequence[str] = (), points_window: int = 1,
        features_config: FeaturesConfig | None = None) -> tuple[pd.DataFrame, SiteTableReport]:
    """Build the table (``sitetable.build_site_table``) and write it to ``out``; the table and
    the report of what was read, kept and left out."""
    frame, report = build_site_table(fluxnet, abcflux, features=features, window=window, points=points,
                                     points_window=points_window, features_config=features_config)
    write_site_table(frame, out, mode=report.mode, provenance=report.provenance)
    return frame, report
