"""``ciml-ter causal``: PCMCI+ results (pooled and per PFT) on the drivers of a site-month table, as JSON."""
from __future__ import annotations

from pathlib import Path

from ciml_ter.causal import discover_weights, write_weights
from ciml_ter.config import PipelineConfig
from ciml_ter.predictors import plan
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import read_site_table


def run(sites_path: str | Path, out_path: str | Path, config: PipelineConfig,
        progress: ProgressCallback = None) -> dict:
    """Discover the weights of the table at ``sites_path``, write them to ``out_path``; the result."""
    table = read_site_table(sites_path)
    result = discover_weights(table, config, progress=progress, features=plan(table, config).drivers)
    write_weights(result, out_path)
    return result
