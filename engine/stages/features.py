"""``ciml-ter features``: the monthly predictor cube (Zarr) from a daily / 8-day input cube,
written band by band of grid rows (``ciml_ter.features`` computes each band)."""
from __future__ import annotations

import json
from pathlib import Path

from ciml_ter import __version__
from ciml_ter.config import FeaturesConfig
from ciml_ter.data.contract import require_contract
from ciml_ter.data.cube import open_cube, write_zarr
from ciml_ter.device import get_namespace, resolve_device
from ciml_ter.errors import InputError
from ciml_ter.features import band_features, plan
from ciml_ter.files import atomic_directory
from ciml_ter.progress import ProgressCallback


def run(cube: Path, out: Path, res: float | None = None, config: FeaturesConfig | None = None,
        device: str = "cpu", progress: ProgressCallback = None) -> dict:
    """Write the monthly predictor cube of ``cube`` to the Zarr store ``out``; return a summary.

    ``res``: output resolution in degrees (an integer multiple of the input's; None keeps it).
    ``progress(done, total, message)`` is called after each band.
    """
    config = config or FeaturesConfig()
    ds = open_cube(cube)
    require_contract(ds, str(cube))
    device = resolve_device(device)
    xp = get_namespace(device)
    plan_ = plan(ds, str(cube), res, config, device, xp)
    if Path(out).exists():
        raise InputError(f"{out}: already exists; choose a new --out (features are not overwritten)")
    attrs = {"Conventions": "CF-1.8", "title": "ciml-ter monthly predictor cube",
             "source": str(cube), "ciml_ter_version": __version__, "device": device,
             "features": json.dumps(plan_.features), "scvtg_years": json.dumps(plan_.years),
             "features_config": json.dumps({k: getattr(config, k) for k in config.__dataclass_fields__})}
    bands = list(range(0, ds.lat.size, plan_.band_rows))
    with atomic_directory(out) as tmp:  # only a finished cube carries the requested name
        for i, start in enumerate(bands):
            band = band_features(ds, slice(start, min(start + plan_.band_rows, ds.lat.size)), plan_, config, xp)
            if i == 0:
                band.attrs.update(attrs)
                write_zarr(band, tmp, mode="w")
            else:
                write_zarr(band, tmp, append_dim="lat")
            if progress:
                progress(i + 1, len(bands), f"rows {start}-{start + band.lat.size * plan_.factor}")
    return {"out": str(out), "features": plan_.features, "months": len(plan_.months),
            "grid": [int(ds.lat.size // plan_.factor), int(ds.lon.size // plan_.factor)],
            "factor": plan_.factor, "bands": len(bands), "band_rows": plan_.band_rows,
            "band_budget_bytes": plan_.band_budget_bytes, "budget_source": plan_.budget_source,
            "scvtg_years": plan_.years, "device": device}
