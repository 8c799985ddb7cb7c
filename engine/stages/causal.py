"""``ciml-ter causal``: PCMCI+ weights (pooled and per PFT) for a site-month table, as JSON."""
from __future__ import annotations

from pathlib import Path

from ciml_ter.causal import discover_weights, write_weights
from ciml_ter.config import PipelineConfig
from ciml_ter.progress import ProgressCallback
from ciml_ter.sitetable import read_site_table


def run(sites_path: str | Path, out_path: str | Path, config: PipelineConfig,
        progress: ProgressCallback = None) -> dict:
    """Discover the weights of the table at ``sites_path``, write them to ``out_path``; the result."""
    result = discover_weights(read_site_table(sites_path), config, progress=progress)
    write_weights(result, out_path)
    return result
