"""HDF-EOS ``StructMetadata.0``: the grid geometry of a MODIS (HDF-EOS2) or VIIRS (HDF-EOS5) file.

The text is ODL (``GROUP=``/``END_GROUP=``, ``OBJECT=``/``END_OBJECT=``, ``KEY=VALUE`` lines).
A grid's geometry is always taken from it, never from a table per tile: ``XDim``, ``YDim``,
``UpperLeftPointMtrs``/``LowerRightMtrs`` (outer corners of the corner pixels; metres for
GCTP_SNSOID, packed degrees DDDMMMSSS.SS for GCTP_GEO) and ``ProjParams`` (first element the
sphere radius in metres for the sinusoidal projection). Reference: HDF-EOS Library User's Guide
Vol. 1 (grid structure) and the MODIS Land Sinusoidal grid description (R = 6371007.181 m).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SINUSOIDAL = ("GCTP_SNSOID", "HE5_GCTP_SNSOID")
GEOGRAPHIC = ("GCTP_GEO", "HE5_GCTP_GEO")

_LINE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*=\s*(.*?)\s*$")


class StructMetadataError(ValueError):
    """The StructMetadata text is missing, malformed or describes an unsupported grid."""


def _value(text: str):
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if text.startswith("(") and text.endswith(")"):
        return tuple(_value(v) for v in _split(text[1:-1]))
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_odl(text: str) -> dict:
    """Nested dicts of an ODL text: each GROUP/OBJECT becomes a dict under its name."""
    root: dict = {}
    stack = [root]
    for raw in text.replace("\x00", "").splitlines():
        m = _LINE.match(raw)
        if m is None:
            if raw.strip() in ("END", ""):
                continue
            raise StructMetadataError(f"cannot parse StructMetadata line {raw.strip()!r}")
        key, value = m.group(1), m.group(2)
        if key in ("GROUP", "OBJECT"):
            node: dict = {}
            stack[-1][value] = node
            stack.append(node)
        elif key in ("END_GROUP", "END_OBJECT"):
            if len(stack) == 1:
                raise StructMetadataError(f"unbalanced {key}={value} in StructMetadata")
            stack.pop()
        else:
            stack[-1][key] = _value(value)
    if len(stack) != 1:
        raise StructMetadataError("StructMetadata ends inside a GROUP/OBJECT (truncated text?)")
    return root


@dataclass(frozen=True)
class GridGeometry:
    """One HDF-EOS grid: size, outer corners and projection."""

    name: str
    projection: str  # without the HE5_ prefix: "GCTP_SNSOID" or "GCTP_GEO"
    x_dim: int
    y_dim: int
    upper_left: tuple[float, float]  # metres (SNSOID) or degrees (GEO, unpacked), x then y
    lower_right: tuple[float, float]
    sphere_radius_m: float | None  # SNSOID only
    fields: tuple[str, ...]

    @property
    def pixel_x(self) -> float:
        return (self.lower_right[0] - self.upper_left[0]) / self.x_dim

    @property
    def pixel_y(self) -> float:
        return (self.upper_left[1] - self.lower_right[1]) / self.y_dim


def packed_dms_to_degrees(value: float) -> float:
    """HDF-EOS packed degrees (DDDMMMSSS.SS) to decimal degrees: -180000000.0 -> -180.0."""
    sign = -1.0 if value < 0 else 1.0
    v = abs(float(value))
    degrees = int(v // 1_000_000)
    minutes = int((v - degrees * 1_000_000) // 1_000)
    seconds = v - degrees * 1_000_000 - minutes * 1_000
    return sign * (degrees + minutes / 60.0 + seconds / 3600.0)


def _fields(grid: dict) -> tuple[str, ...]:
    names = []
    for obj in grid.get("DataField", {}).values():
        if isinstance(obj, dict) and "DataFieldName" in obj:
            names.append(str(obj["DataFieldName"]))
    return tuple(names)


def grids(text: str) -> list[GridGeometry]:
    """Every grid described in a StructMetadata text."""
    tree = parse_odl(text)
    structure = tree.get("GridStructure")
    if not isinstance(structure, dict):
        raise StructMetadataError("StructMetadata has no GridStructure group")
    out = []
    for key, grid in structure.items():
        if not (key.startswith("GRID_") and isinstance(grid, dict)):
            continue
        try:
            projection = str(grid["Projection"]).replace("HE5_", "")
            x_dim, y_dim = int(grid["XDim"]), int(grid["YDim"])
            ul = tuple(float(v) for v in grid["UpperLeftPointMtrs"])
            lr = tuple(float(v) for v in grid["LowerRightMtrs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StructMetadataError(f"grid {grid.get('GridName', key)!r}: missing or bad "
                                      f"{exc} in StructMetadata") from None
        radius = None
        if projection in ("GCTP_SNSOID",):
            params = grid.get("ProjParams", ())
            radius = float(params[0]) if params else 0.0
            if not radius > 0:
                raise StructMetadataError(f"grid {grid.get('GridName', key)!r}: ProjParams has no "
                                          f"sphere radius (found {params!r})")
        elif projection == "GCTP_GEO":
            ul = (packed_dms_to_degrees(ul[0]), packed_dms_to_degrees(ul[1]))
            lr = (packed_dms_to_degrees(lr[0]), packed_dms_to_degrees(lr[1]))
        out.append(GridGeometry(str(grid.get("GridName", key)), projection, x_dim, y_dim, ul, lr,
                                radius, _fields(grid)))
    if not out:
        raise StructMetadataError("StructMetadata describes no grid")
    return out


def grid_for(text: str, field: str) -> GridGeometry:
    """The grid that holds ``field`` (the only grid when the fields are not listed)."""
    found = grids(text)
    for g in found:
        if field in g.fields:
            return g
    if len(found) == 1:
        return found[0]
    raise StructMetadataError(f"no grid lists the field {field!r} (grids: "
                              f"{', '.join(g.name for g in found)})")
