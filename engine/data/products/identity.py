"""What a granule says about itself, checked against its file name.

Product and date are read from the standard name (``names``), and a renamed file would be
ingested on the wrong date or as the wrong sensor. Every granule also carries them in its own
metadata, written by the producer:

- MODIS HDF4 (HDF-EOS2): the ``CoreMetadata.0`` global attribute (ODL, ECS inventory metadata):
  ``OBJECT = SHORTNAME`` (group COLLECTIONDESCRIPTIONCLASS), ``RANGEBEGINNINGDATE`` /
  ``RANGEENDINGDATE`` (group RANGEDATETIME, "YYYY-MM-DD") and ``LOCALGRANULEID`` (the standard
  name the file was produced under);
- VIIRS HDF5 (HDF-EOS5): the attributes of ``HDFEOS/ADDITIONAL/FILE_ATTRIBUTES`` (the "Global
  Attributes" of the LAADS VIIRS land file specifications): ``ShortName``, ``RangeBeginningDate``,
  ``RangeEndingDate``, ``LocalGranuleID``; files that keep the ECS metadata as a
  ``HDFEOS INFORMATION/CoreMetadata.0`` dataset are read as HDF4 ones.

The short name comes from SHORTNAME, else from the LocalGranuleID; the date from the range
(where the name's date must lie: the catalog's ``Product.name_date``), else from the
LocalGranuleID. A disagreement is refused (``check``); a granule with none of them is reported
by the caller as unverified.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from ciml_ter.errors import InputError

from .catalog import NAME_DATE_WITHIN, Product
from .names import GranuleName, parse_granule_name

_ECS = {"short_name": "SHORTNAME", "begin": "RANGEBEGINNINGDATE", "end": "RANGEENDINGDATE",
        "granule_id": "LOCALGRANULEID"}
_HDF5 = {"short_name": "ShortName", "begin": "RangeBeginningDate", "end": "RangeEndingDate",
         "granule_id": "LocalGranuleID"}


@dataclass(frozen=True)
class Identity:
    """A granule's product and dates as its metadata give them (None where absent), with the
    names of the metadata fields they were read from (for messages)."""

    short_name: str | None = None
    begin: dt.date | None = None  # first day of the data (range beginning date)
    end: dt.date | None = None  # last day of the data (range ending date)
    granule_id: GranuleName | None = None  # the LocalGranuleID, parsed as a standard name
    fields: tuple[str, str, str, str] = tuple(_ECS.values())  # short name, begin, end, granule id

    @property
    def verifiable(self) -> bool:
        """True when both the product and the date can be checked."""
        has_name = self.short_name is not None or self.granule_id is not None
        return has_name and (self.begin is not None or self.granule_id is not None)


@dataclass(frozen=True)
class Probe:
    """What a granule's metadata say before its layers are read."""

    identity: Identity
    inside: bool  # the granule reaches the output window


def _date(text: str | None, what: str, path: Path) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise InputError(f"{path}: metadata {what} = {text!r} is not a date (expected YYYY-MM-DD)") from None


def _identity(values: dict, fields: dict, path: Path) -> Identity:
    granule_id = values.get("granule_id")
    return Identity(values.get("short_name"), _date(values.get("begin"), fields["begin"], path),
                    _date(values.get("end"), fields["end"], path),
                    None if granule_id is None else parse_granule_name(granule_id.strip()),
                    tuple(fields.values()))


def _ecs_value(text: str, name: str) -> str | None:
    m = re.search(rf"OBJECT\s*=\s*{name}\s*$(.*?)END_OBJECT\s*=\s*{name}\s*$", text, re.S | re.M)
    if m is None:
        return None
    value = re.search(r"^\s*VALUE\s*=\s*\"?([^\"\n]*?)\"?\s*$", m.group(1), re.M)
    return None if value is None else value.group(1)


def from_core_metadata(text: str, path: Path) -> Identity:
    """The identity in an ECS ``CoreMetadata.0`` text (ODL)."""
    return _identity({key: _ecs_value(text, name) for key, name in _ECS.items()}, _ECS, path)


def from_file_attributes(attrs: dict, path: Path) -> Identity:
    """The identity in the text attributes of an HDF-EOS5 ``FILE_ATTRIBUTES`` group."""
    return _identity({key: attrs[name] for key, name in _HDF5.items() if name in attrs}, _HDF5, path)


def _refuse(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}: a renamed file is refused (restore its standard name or remove it)")


def check(name: GranuleName, product: Product, identity: Identity) -> None:
    """Refuse (InputError) a granule whose name disagrees with its metadata: another product
    short name, or a date that is not where the product puts the name's date in the range."""
    short_field, begin_field, end_field, id_field = identity.fields
    short, short_from = identity.short_name, short_field
    if short is None and identity.granule_id is not None:
        short, short_from = identity.granule_id.product, id_field
    if short is not None and short != name.product:
        raise _refuse(name.path, f"the file name says product {name.product}, its metadata ({short_from}) "
                                 f"says {short}")
    date, begin = name.date, identity.begin
    if begin is not None and product.name_date == NAME_DATE_WITHIN:
        end = identity.end or begin
        if not begin <= date <= end:
            raise _refuse(name.path, f"the file name says {date}, outside its metadata's {begin_field}.."
                                     f"{end_field} {begin}..{end}")
    elif begin is not None and begin != date:
        raise _refuse(name.path, f"the file name says {date}, its metadata ({begin_field}) says {begin}")
    elif begin is None and identity.granule_id is not None and identity.granule_id.date != date:
        raise _refuse(name.path, f"the file name says {date}, its metadata ({id_field} "
                                 f"{identity.granule_id.path.name}) says {identity.granule_id.date}")
