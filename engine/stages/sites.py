"""``ciml-ter sites``: the site-month table (Parquet) from flux data, with predictors from the
towers' own meteorology or from a feature cube at each site's pixel."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ciml_ter.sitetable import SiteTableReport, build_site_table, write_site_table


def run(out: Path, fluxnet: Sequence[Path] = (), abcflux: Sequence[Path] = (), *,
        features: Path | None = None, window: int = 1) -> tuple[pd.DataFrame, SiteTableReport]:
    """Build the table (``sitetable.build_site_table``) and write it to ``out``; the table and
    the report of what was read, kept and left out."""
    frame, report = build_site_table(fluxnet, abcflux, features=features, window=window)
    write_site_table(frame, out, mode=report.mode)
    return frame, report
