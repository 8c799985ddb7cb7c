"""Find and read point extracts: each file is recognised from its own name and header, never
guessed; what is not a point extract, or is one of a product outside the catalog, is listed and
skipped (an Earth Engine export, which names no product, needs ``PRODUCT=PATH``). ORNL subsets
are decoded once every file is read: MODISTools writes one file per band, so a layer's QC band
may sit in another file.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ciml_ter.data.products import catalog, names
from ciml_ter.errors import InputError

from . import appeears, earthengine, longcsv, ornl
from .series import Extract

SPEC = re.compile(r"^(?P<product>[A-Z][A-Z0-9]{4,9})=(?P<path>.+)$")
MAX_COMMENT_LINES = 100  # '# key: value' lines read before a MODISTools 1.0 table


@dataclass
class PointFiles:
    """The extracts read and the files skipped, each with its reason."""

    extracts: list[Extract] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def parse_spec(spec: str | Path) -> tuple[str | None, Path]:
    """``[PRODUCT=]PATH`` -> (product short name or None, path); an unknown PRODUCT is an error."""
    m = SPEC.match(str(spec))
    if m is None:
        return None, Path(spec)
    if catalog.product_for(m["product"]) is None:
        raise InputError(f"--points {spec}: unknown product {m['product']!r}; supported: "
                         f"{', '.join(sorted(_point_products()))}")
    return m["product"], Path(m["path"])


def _point_products() -> set[str]:
    return {name for name, p in catalog.BY_SHORT_NAME.items() if p.cadence != catalog.YEARLY}


def _header(path: Path) -> tuple[list[str], dict, int]:
    """The CSV header's column names, the ``# key: value`` lines before it, and their count."""
    comments = {}
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for skip in range(MAX_COMMENT_LINES + 1):
            line = f.readline()
            if not line.startswith("#"):
                return [c.strip().strip('"') for c in line.rstrip("\r\n").split(",")], comments, skip
            key, _, value = line[1:].partition(":")
            comments[key.strip()] = value.strip()
    return [], comments, MAX_COMMENT_LINES


def _supported(product: str, path: Path, files: PointFiles) -> bool:
    if product in _point_products():
        return True
    files.skipped.append((str(path), f"product {product} is not supported (supported: "
                                     f"{', '.join(sorted(_point_products()))})"))
    return False


def _add(extract: Extract, files: PointFiles) -> None:
    """Keep an extract that gives a layer the method uses; list one that gives none."""
    if extract.series:
        files.extracts.append(extract)
        return
    product = catalog.product_for(extract.product)
    wanted = ", ".join(dict.fromkeys(f"{catalog.layer_key(layer.sds)} ({layer.var})" for layer in product.layers))
    files.skipped.append((str(extract.path), f"{extract.product}: none of the layers the method uses ({wanted})"))


def _check_hint(hint: str | None, product: str, path: Path) -> None:
    if hint is not None and catalog.product_for(hint) is not catalog.product_for(product):
        raise InputError(f"{path}: --points {hint}=... but the file holds {product}")


def read_file(path: Path, hint: str | None, window: int, files: PointFiles, subsets: dict) -> None:
    """Read one file into ``files`` (or list it as skipped, with the reason); ORNL subset rows go
    to ``subsets`` (product -> [(path, rows)]) to be decoded together."""
    if path.suffix.lower() != ".csv":
        files.skipped.append((str(path), "not a CSV point extract"))
        return
    if appeears.is_companion(path):
        files.skipped.append((str(path), "AppEEARS lookup table: documentation (QC is decoded by the "
                                         "catalog's rule)"))
        return
    header, comments, skip = _header(path)
    if appeears.recognise(path, header):
        product, _version = appeears.product_of(path)
        _check_hint(hint, product, path)
        if _supported(product, path, files):
            _add(appeears.read(path, header, catalog.product_for(product)), files)
    elif ornl.recognise_long(header) or ornl.recognise_v1(comments, header):
        table = ornl.tables(path, header, comments, skip)
        for product, rows in table.groupby("product", sort=True):
            _check_hint(hint, str(product), path)
            if _supported(str(product), path, files):
                subsets[str(product)].append((path, rows))
    elif earthengine.recognise(header):
        if hint is None:
            raise InputError(f"{path}: an Earth Engine export does not name its product; give it as "
                             f"--points PRODUCT={path} (e.g. MOD11A1, MCD43A4, MOD13A1)")
        _add(earthengine.read(path, header, hint), files)
    elif longcsv.recognise(header):
        if hint is not None:
            raise InputError(f"{path}: the long CSV names its variables; give it without {hint}=")
        files.extracts.append(longcsv.read(path, header))
    else:
        files.skipped.append((str(path), "CSV not recognised as a point extract (expected an AppEEARS "
                                         "results file, an ORNL/MODISTools subset, an Earth Engine export "
                                         f"or the long CSV {', '.join(longcsv.COLUMNS)})"))


def read_points(specs, window: int = 1) -> PointFiles:
    """Every point extract under ``specs`` (``[PRODUCT=]PATH``: files or folders). ``window``: the
    central window x window pixels of ORNL subsets (odd). InputError when none is usable."""
    if window < 1 or window % 2 == 0:
        raise InputError(f"--points-window {window}: expected an odd number of pixels (1, 3, 5 ...)")
    files = PointFiles()
    subsets = defaultdict(list)
    for spec in specs:
        hint, path = parse_spec(spec)
        if not path.exists():
            raise InputError(f"--points {spec}: no such file or folder")
        for item in names.walk([path]):
            read_file(item, hint, window, files, subsets)
    for product, parts in sorted(subsets.items()):
        where = parts[0][0] if len(parts) == 1 else parts[0][0].parent / f"{parts[0][0].name} and {len(parts) - 1} more"
        _add(ornl.read(where, pd.concat([rows for _p, rows in parts], ignore_index=True), product, window), files)
    if not files.extracts:
        listed = "; ".join(f"{Path(p).name}: {why}" for p, why in files.skipped[:5]) or "no files"
        raise InputError(f"no point extract in {', '.join(map(str, specs))} ({listed})")
    return files
