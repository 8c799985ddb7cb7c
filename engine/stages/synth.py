"""``ciml-ter synth``: a synthetic world with known TER truth (input cube, truth, towers)."""
from __future__ import annotations

from pathlib import Path

from ciml_ter.data.synth import write_synthetic_world
from ciml_ter.errors import InputError
from ciml_ter.progress import ProgressCallback


def run(out: Path, *, res: float, years: tuple[int, int], bbox: tuple[float, float, float, float],
        n_sites: int, seed: int, months: str | None = None, device: str = "cpu",
        landcover: str = "default", progress: ProgressCallback = None) -> dict:
    """Write the world into ``out``; ``months`` "FIRST:LAST" (e.g. 2001-01:2001-03) replaces
    ``years``; ``landcover`` "default" (MCD12C1 biomes) or "climate". Returns the summary of
    ``data.synth.write_synthetic_world``."""
    month_range = tuple(months.split(":")) if months else None
    if month_range is not None and len(month_range) != 2:
        raise InputError(f"--months {months!r}: expected FIRST:LAST, e.g. 2001-01:2001-03")
    return write_synthetic_world(out, res=res, years=years, bbox=bbox, n_sites=n_sites, seed=seed,
                                 progress=progress, months=month_range, device=device, landcover=landcover)
