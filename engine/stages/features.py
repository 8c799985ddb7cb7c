"""``ciml-ter features``: the monthly predictor cube (Zarr) from a daily / 8-day input cube,
written band by band of grid rows (``ciml_ter.features`` computes each band)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ciml_ter import __version__
from ciml_ter.config import PipelineConfig
from ciml_ter.data.contract import in_time_order, require_contract
from ciml_ter.data.cube import open_cube, write_zarr
from ciml_ter.errors import InputError
from ciml_ter.features import band_features, plan
from ciml_ter.files import check_output, fingerprint, output_folder
from ciml_ter.stages import Runtime, stamp


@dataclass
class FeaturesSummary:
    """A feature cube written: its features, months, grid and how it was banded."""

    out: Path
    features: list[str]
    months: int
    grid: tuple[int, int]
    factor: int
    bands: int
    band_rows: int
    band_budget_bytes: int | None
    budget_source: str
    scvtg_years: list[int]
    device: str
    notes: list[str]

    def lines(self) -> list[str]:
        return [*self.notes, f"wrote {self.out}: {len(self.features)} features x {self.months} months on a {self.grid[0]} x "
                f"{self.grid[1]} grid (factor {self.factor}, SCVTG years {self.scvtg_years}, {self.device})"]


def made_from(cube: Path, config: PipelineConfig) -> dict:
    """The stamp of a feature cube made from the input cube ``cube`` (``stages.stamp``)."""
    return stamp(config, cube=fingerprint(cube))


def make_features(cube: Path, out: Path, config: PipelineConfig, runtime: Runtime, *,
                  res: float | None = None, restart: bool = False) -> FeaturesSummary:
    """Write the monthly predictor cube of the input cube ``cube`` to the Zarr store ``out``.

    ``res``: output resolution in degrees (an integer multiple of the input's; None keeps it);
    ``restart``: replace an existing ``out`` (otherwise refused). A time dimension out of order
    is sorted (said in the summary's notes); one that repeats a date is refused (the contract).
    Progress after each band of rows."""
    settings = config.features
    check_output(out, "folder")
    if Path(out).exists() and not restart:
        raise InputError(f"{out}: already exists; choose a new --out (features are not overwritten)")
    ds = open_cube(cube)
    require_contract(ds, str(cube))
    ds, notes = in_time_order(ds, str(cube))
    device = runtime.device
    plan_ = plan(ds, str(cube), res, settings, device)
    attrs = {"Conventions": "CF-1.8", "title": "ciml-ter monthly predictor cube",
             "source": str(cube), "ciml_ter_version": __version__, "device": device.kind,
             "features": json.dumps(plan_.features), "scvtg_years": json.dumps(plan_.years),
             "features_config": json.dumps({k: getattr(settings, k) for k in settings.__dataclass_fields__}),
             "made_from": json.dumps(made_from(cube, config))}
    bands = list(range(0, ds.lat.size, plan_.band_rows))
    with output_folder(out) as tmp:  # only a finished cube carries the requested name
        for i, start in enumerate(bands):
            band = band_features(ds, slice(start, min(start + plan_.band_rows, ds.lat.size)), plan_, settings,
                                 device.xp)
            if i == 0:
                band.attrs.update(attrs)
                write_zarr(band, tmp, mode="w")
            else:
                write_zarr(band, tmp, append_dim="lat")
            runtime.step(i + 1, len(bands), f"rows {start}-{start + band.lat.size * plan_.factor}")
    return FeaturesSummary(Path(out), plan_.features, len(plan_.months),
                           (int(ds.lat.size // plan_.factor), int(ds.lon.size // plan_.factor)), plan_.factor,
                           len(bands), plan_.band_rows, plan_.band_budget_bytes, plan_.budget_source, plan_.years,
                           device.kind, notes)
