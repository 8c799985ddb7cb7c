"""``ciml-ter ingest``: MODIS/VIIRS granules, GeoTIFF rasters and CF cubes -> the input cube (Zarr).

Steps: walk the PATHs and recognise each file by its standard name (unknown files are listed and
skipped); check each granule's name against its own metadata (product short name and date: a
renamed file is refused) and leave out, in one counted line, granules entirely outside the
window; refuse a run with no usable input (exit 2, nothing written); group the inputs by output
time dimension and date (daily products on ``time``, 8-day composites on ``time8`` at their start
dates, 4-day on ``time4``, dated rasters of other variables on ``time_<var>``); for each date read
every granule (readers in ``ciml_ter.data.products``: arrays + geometry + provenance; the inventory
and one date's computation in ``data.products.inventory``; the store in ``data.cube.IngestStore``),
bin sinusoidal tiles into the target window (``kernels.binning``; all tiles of a date accumulate
into one window), block-sum CMG cells, reproject rasters, read CF cubes by blocks of dates, then
take the valid-pixel mean with a minimum valid fraction. When several sources give one variable on
one date they are not pooled: the finer product's value is kept and the next fills only its gaps
(order: native resolution, then short name, so Terra MOD* before Aqua MYD*; then rasters, then
cubes); ``<var>_count`` holds the number of valid observations behind each value. Of reprocessed
duplicates of one granule only the newest is read.

Resume: the store's ``ingest_completed`` attribute records, per time dimension and variable, the
dates whose data are written, and ``ingest_inventory`` the input files behind each date (name,
size, modification time, SHA-256); both are updated only after a batch of dates is on disk, so an
interrupted run never presents partial data as complete. A rerun skips a complete date whose
files are unchanged and redoes (saying so) a date whose files changed: a tile added later, a file
replaced. A granule that could not be read is reported once (the summary's ``bad``; the CLI's
error line): a date with nothing else gets no slice, a date with other inputs is written but not
recorded complete, so a rerun with the file replaced redoes it. The store's metadata are
consolidated at the end of a run.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ciml_ter import __version__
from ciml_ter.config import PipelineConfig
from ciml_ter.data.contract import RULES
from ciml_ter.data.cube import IngestStore, changed_files
from ciml_ter.data.products import catalog
from ciml_ter.data.products.inventory import Plan, Sources, compute_date, load_cubes, plan_inputs
from ciml_ter.data.products.landcover import landcover_on_grid
from ciml_ter.device import Device
from ciml_ter.grid import GridWindow, parse_months
from ciml_ter.parallel import task_pool
from ciml_ter.stages import Runtime

STATIC_KEY = "static"
BATCH_BYTES = 512 << 20  # output data of one batch of dates held in memory before it is written
MAX_UNKNOWN_LINES = 20
MAX_NAMES = 5  # file names quoted in a counted line


@dataclass
class IngestSummary:
    """What one ingest run did. ``ok`` is False when a granule could not be read."""

    out: str
    written: dict = field(default_factory=dict)  # time dim -> ISO dates written
    skipped_present: dict = field(default_factory=dict)  # time dim -> dates already complete
    redone: dict = field(default_factory=dict)  # time dim -> complete dates redone: their files changed
    incomplete: dict = field(default_factory=dict)  # time dim -> dates with a granule that could not be read
    static_written: list = field(default_factory=list)
    static_skipped: list = field(default_factory=list)
    unknown: list = field(default_factory=list)  # (path, reason) of files not recognised
    bad: list = field(default_factory=list)  # (path, reason) of granules that could not be read
    outside_months: int = 0
    outside_window: list = field(default_factory=list)  # granules entirely outside the window
    unverified: list = field(default_factory=list)  # granules without product/date metadata
    variables: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad

    @property
    def dates_written(self) -> list[str]:
        return sorted({d for dates in self.written.values() for d in dates})

    def to_dict(self) -> dict:
        return {"out": self.out, "ok": self.ok, "written": self.written,
                "skipped_present": self.skipped_present, "redone": self.redone, "incomplete": self.incomplete,
                "static_written": self.static_written, "static_skipped": self.static_skipped,
                "unknown": [list(u) for u in self.unknown], "bad": [list(b) for b in self.bad],
                "outside_months": self.outside_months, "outside_window": self.outside_window,
                "unverified": self.unverified, "variables": self.variables}

    def lines(self) -> list[str]:
        return [f"wrote {self.out}: {len(self.dates_written)} date(s), {len(self.static_written)} static layer(s); "
                f"{sum(len(v) for v in self.skipped_present.values())} date(s) already there; "
                f"{len(self.unknown)} unknown file(s) skipped"]


def _var_attrs(var: str, sources: list[str], qc: dict, binned: bool) -> dict:
    attrs = {"units": RULES[var].canonical if var in RULES else "1", **catalog.cf_attrs(var)}
    attrs["source_products"] = ", ".join(sorted(set(sources)))
    if qc:
        attrs["qc_rule"] = "; ".join(f"{k}: {v}" for k, v in sorted(qc.items()))
    if binned:
        attrs["cell_methods"] = "area: mean (valid pixels)"
        attrs["ancillary_variables"] = f"{var}_count"
    return attrs


def _count_attrs(var: str) -> dict:
    return {"units": "1", "long_name": f"number of valid observations averaged into {var}",
            "standard_name": "number_of_observations"}


def _qc_of(provenance: dict, var: str) -> dict:
    out = {}
    for tag, entry in provenance.items():
        if isinstance(entry, dict) and var in entry.get("layers", {}):
            out[tag] = entry["layers"][var]["qc"]
    return out


def _batch_size(n_vars: int, window: GridWindow) -> int:
    per_date = max(1, n_vars) * window.n_lat * window.n_lon * 8  # float32 value + int32 count
    return max(1, BATCH_BYTES // per_date)


def _ingest_static(store: IngestStore, plan: Plan, window: GridWindow, device: Device, min_valid_fraction,
                   summary: IngestSummary, say: Callable) -> None:
    """The land cover and the static layers not yet in the store, each from its sources merged
    by precedence (``inventory.compute_date``, as a date's layers)."""
    done = store.static_done()
    layers, files = {}, {}
    if plan.landcover is not None and not {"pft", "land"} <= done:
        pft, land, prov = landcover_on_grid(window, plan.landcover)
        layers["pft"] = (pft, {**catalog.cf_attrs("pft"), "units": "1", "comment": "255 = no class (fill)",
                               **prov})
        layers["land"] = (land, {**catalog.cf_attrs("land"), "units": "1", **prov})
    elif plan.landcover is not None:
        summary.static_skipped += ["land", "pft"]
    summary.static_skipped += sorted(set(plan.static) & done)
    todo = sorted(set(plan.static) - done)
    for var, sources in zip(todo, load_cubes([plan.static[v] for v in todo], window, device, min_valid_fraction)):
        result = compute_date(sources, window, device, min_valid_fraction)
        for line in result.messages:
            say(line)
        mean, _, used = result.values[var]
        layers[var] = (mean, {**_var_attrs(var, used, {}, False), "source_files": ", ".join(sources.files())})
        files[var] = result.files
    if layers:
        store.write_static(layers)
        summary.static_written += list(layers)
        store.update_attrs({"ingest_static": json.dumps(sorted(done | set(layers)))})
        say(f"static: wrote {', '.join(sorted(layers))}")
    if files:
        store.record(STATIC_KEY, files, {var: [var] for var in files})


def _wanted(sources: Sources, done: set) -> Sources:
    """The part of a date's sources that gives a variable not yet complete."""
    return Sources([g for g in sources.granules if set(g.product.variables) - done],
                   [r for r in sources.rasters if r.var not in done],
                   [c for c in sources.cube if c.var not in done])


def _names(names: list) -> str:
    """Up to MAX_NAMES names, and how many more."""
    more = f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else ""
    return ", ".join(names[:MAX_NAMES]) + more


def _todo(store: IngestStore, dim: str, by_date: dict, summary: IngestSummary, say: Callable) -> dict:
    """The sources of each date of ``dim`` to compute: the variables not complete, or whose input
    files changed since they were written (``cube.changed_files`` against the inventory)."""
    completed = store.completed().get(dim, {})
    recorded = store.inventory(dim)
    todo, redone = {}, {}
    for date in sorted(by_date):
        sources, iso = by_date[date], date.isoformat()
        changed = changed_files(recorded.get(iso, {}), sources.file_variables())
        complete = {v for v in sources.variables() if iso in completed.get(v, [])}
        done = complete - set(changed)
        if done >= sources.variables():
            summary.skipped_present.setdefault(dim, []).append(iso)
            continue
        todo[date] = _wanted(sources, done)
        stale = sorted({mark for var in complete & set(changed) for mark in changed[var]})
        if stale:
            redone[iso] = stale
    if summary.skipped_present.get(dim):
        say(f"{dim}: {len(summary.skipped_present[dim])} date(s) already in {store.path.name}, skipped")
    if redone:
        summary.redone[dim] = sorted(redone)
        first = min(redone)
        say(f"{dim}: {len(redone)} date(s) written before are redone, their input files changed "
            f"(+ new, ~ changed, - no longer among the inputs), e.g. {first}: {_names(redone[first])}")
    return todo


def _write_batch(store: IngestStore, dim: str, dates: list, todo: dict, results: dict, summary: IngestSummary,
                 say: Callable) -> bool:
    """Write the dates of a batch that have values, then record their files and completion (a
    variable with a granule that could not be read is recorded incomplete). Returns True when
    the dates were appended after later ones."""
    per_date, sources, provenance = {}, defaultdict(set), {}
    for d in dates:
        for tag, entry in results[d].provenance.items():
            provenance.setdefault(tag, {}).update(entry)
        layers = {}
        for var, (mean, count, used) in results[d].values.items():
            sources[var] |= set(used)
            layers[var], layers[f"{var}_count"] = mean, count
        per_date[d] = layers
    variables = sorted({v for d in dates for v in results[d].values})
    binned = any(todo[d].granules for d in dates)
    attrs = {}
    for var in variables:
        attrs[var] = _var_attrs(var, sorted(sources[var]), _qc_of(provenance, var), binned)
        attrs[f"{var}_count"] = _count_attrs(var)
    disordered = store.write_dates(dim, per_date, attrs)
    store.add_source_products(sources)
    # Only now, with the data on disk, record the files and the dates as complete.
    complete, incomplete = defaultdict(list), defaultdict(list)
    for d in dates:
        for var in results[d].values:
            (incomplete if var in results[d].failed else complete)[var].append(d.isoformat())
    store.record(dim, {d.isoformat(): results[d].files for d in dates},
                 {d.isoformat(): list(results[d].values) for d in dates}, complete, incomplete, provenance)
    summary.written.setdefault(dim, []).extend(d.isoformat() for d in dates)
    say(f"{dim}: wrote {dates[0]}..{dates[-1]} ({len(dates)} date(s); {', '.join(variables)})")
    return disordered


def _ingest_dim(store: IngestStore, dim: str, by_date: dict, window: GridWindow, device: Device,
                min_valid_fraction, summary: IngestSummary, say: Callable, pool: Callable) -> None:
    """Write the dates of one time dim to compute (``_todo``), in batches; ``pool`` maps the dates'
    computation over MPI ranks (``parallel.task_pool``). A date none of whose inputs gave a value
    (every granule unreadable) gets no slice."""
    todo = _todo(store, dim, by_date, summary, say)
    dates, disordered = sorted(todo), False
    size = _batch_size(2 * len({v for d in dates for v in todo[d].variables()}), window)
    work = functools.partial(compute_date, window=window, device=device, min_valid_fraction=min_valid_fraction)
    for start in range(0, len(dates), size):
        batch = dates[start:start + size]
        loaded = load_cubes([todo[d] for d in batch], window, device, min_valid_fraction)
        results = dict(zip(batch, pool(work, loaded)))
        for d in batch:
            summary.bad.extend(results[d].bad)
            for line in results[d].messages:
                say(line)
            if results[d].failed:
                summary.incomplete.setdefault(dim, []).append(d.isoformat())
        written = [d for d in batch if results[d].values]
        if written:
            disordered |= _write_batch(store, dim, written, todo, results, summary, say)
    if disordered:
        say(f"note: {dim} is not in date order in {store.path.name} (dates added by an earlier run precede "
            f"some of this run's); readers sort by date")


def ingest(paths: list[Path], out: Path, config: PipelineConfig, runtime: Runtime) -> IngestSummary | None:
    """Build (or extend) the input cube ``out`` (Zarr) from granules, rasters and cubes.

    ``paths``: files or folders (walked) of MODIS/VIIRS granules (standard names) and CF cubes
    (.nc/.zarr whose variables carry contract names). From ``config``: [ingest] ``rasters``
    (``VAR=GLOB`` specs: static layers such as ``soc30=...tif``, dated exports such as
    ``nir=exports/nir_*.tif``), ``landcover`` ("default" = MCD12C1 2019, a path to an MCD12C1
    .hdf or IGBP .tif, "" = none), ``res`` degrees over [grid] ``bbox``, ``months``
    "YYYY-MM:YYYY-MM" ("" = all), ``min_valid_fraction`` (share of a cell's pixels that must be
    valid for a value). Under mpirun/srun the dates are computed by every rank from one queue
    and written by rank 0: the store is the same bit for bit as with one process. Returns an
    IngestSummary on rank 0 (None on the others); ``summary.ok`` is False when a granule could
    not be read (the caller should exit non-zero).
    """
    with task_pool() as pool:
        if pool is None:
            return None  # a worker rank: it served dates until rank 0 was done
        return _ingest(paths, Path(out), config, runtime, pool)


def _ingest(paths, out: Path, config: PipelineConfig, runtime: Runtime, pool) -> IngestSummary:
    c, say, device = config.ingest, runtime.say, runtime.device
    window = GridWindow.over(c.res, config.grid.bbox)
    months = c.months or None
    store = IngestStore(out, window)
    if store.exists():
        store.check_grid()
    plan = plan_inputs(list(paths), list(c.rasters), c.landcover or None, window, parse_months(months),
                       store.var_dims(), say, out, pool)
    summary = IngestSummary(str(out), unknown=plan.unknown, outside_months=plan.outside_months,
                            outside_window=plan.outside_window, unverified=plan.unverified)
    for path, reason in plan.unknown[:MAX_UNKNOWN_LINES]:
        say(f"skipped unknown file {path}: {reason}")
    if len(plan.unknown) > MAX_UNKNOWN_LINES:
        say(f"... and {len(plan.unknown) - MAX_UNKNOWN_LINES} more unknown files (listed in the summary)")
    if plan.outside_months:
        say(f"{plan.outside_months} input(s) dated outside --months {months}, skipped")
    if plan.outside_window:
        w, s, e, n = config.grid.bbox
        say(f"{len(plan.outside_window)} granule(s) entirely outside --bbox {w:g},{s:g},{e:g},{n:g}, not used: "
            f"{_names(plan.outside_window)}")
    if plan.unverified:
        say(f"note: {len(plan.unverified)} granule(s) lack a product short name or a date in their metadata "
            f"(CoreMetadata.0 / FILE_ATTRIBUTES); product and date come from their names alone: "
            f"{_names(plan.unverified)}")
    if store.exists():
        store.unconsolidate()
    else:
        store.create({"Conventions": "CF-1.8", "title": "ciml-ter input cube (ingest)",
                      "source": "MODIS/VIIRS land products, rasters and cubes via ciml-ter ingest",
                      "ciml_ter_version": __version__,
                      "ingest_grid": json.dumps({"res": c.res, "bbox": list(config.grid.bbox)}),
                      "ingest_completed": json.dumps({}), "ingest_static": json.dumps([])})
    _ingest_static(store, plan, window, device, float(c.min_valid_fraction), summary, say)
    for dim in sorted(plan.dated):
        _ingest_dim(store, dim, plan.dated[dim], window, device, float(c.min_valid_fraction), summary, say, pool)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.add_history(f"{stamp} ciml-ter ingest {__version__}: {len(summary.dates_written)} date(s) and "
                      f"{len(summary.static_written)} static layer(s) written (res={c.res}, "
                      f"min_valid_fraction={c.min_valid_fraction}, device={device}, bad granules={len(summary.bad)})")
    summary.variables = store.variables()
    if plan.landcover is None and "land" not in summary.variables:
        say("note: no land mask in the cube; pass landcover='default' (--landcover default) to add "
            "pft and land from MCD12C1")
    store.consolidate()
    return summary
