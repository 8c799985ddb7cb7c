"""``ciml-ter synth``: a synthetic world with known TER truth (input cube, truth, towers)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ciml_ter.config import PipelineConfig
from ciml_ter.data.synth import write_synthetic_world
from ciml_ter.files import check_output
from ciml_ter.stages import Runtime


@dataclass
class SynthSummary:
    """The world written (``data.synth.write_synthetic_world``'s summary)."""

    world: dict

    def lines(self) -> list[str]:
        w = self.world
        return [f"wrote {w['out']}: {w['grid'][0]} x {w['grid'][1]} grid, {w['land_pixels']:,} land pixels, "
                f"{w['days']} days, {w['sites']} towers; truth parents: {', '.join(w['parents'])}; "
                f"decoys: {', '.join(w['decoys'])}"]


def synthesize(out: Path, config: PipelineConfig, runtime: Runtime, *, res: float, years: tuple[int, int],
               bbox, n_sites: int, seed: int, months: str | None = None,
               landcover: str = "default") -> SynthSummary:
    """Write a world into the folder ``out``: ``res`` degrees over ``bbox`` (W, S, E, N), the days
    of ``years`` (first, last) or of ``months`` ("YYYY-MM:YYYY-MM"), ``n_sites`` towers, random
    ``seed``; ``landcover`` "default" (MCD12C1 biomes) or "climate"."""
    check_output(out, "folder")
    return SynthSummary(write_synthetic_world(out, res=res, years=years, bbox=bbox, n_sites=n_sites, seed=seed,
                                              progress=runtime.progress, months=months, device=runtime.device,
                                              landcover=landcover))
