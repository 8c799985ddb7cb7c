"""``ciml-ter causal``: PCMCI+ results (pooled and per PFT) on the drivers of a site-month table, as JSON."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ciml_ter.causal import discover_weights, write_weights
from ciml_ter.files import check_output
from ciml_ter.config import PipelineConfig
from ciml_ter.predictors import plan
from ciml_ter.sitetable import read_site_table
from ciml_ter.stages import Runtime


@dataclass
class CausalSummary:
    """The causal weights written: the pooled parents of TER and the whole result."""

    out: Path
    result: dict

    @property
    def parents(self) -> list[str]:
        return self.result["pooled"]["parents"]

    def lines(self) -> list[str]:
        return [f"wrote {self.out}: parents of ter: {', '.join(self.parents) if self.parents else 'none found'}"]


def discover(sites: Path, out: Path, config: PipelineConfig, runtime: Runtime) -> CausalSummary:
    """Discover the weights of the site-month table ``sites`` and write them to ``out`` (JSON)."""
    check_output(out, "file")
    table = read_site_table(sites)
    result = discover_weights(table, config, progress=runtime.progress, features=plan(table, config).drivers)
    write_weights(result, out)
    return CausalSummary(Path(out), result)
