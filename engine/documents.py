"""The JSON documents the engine writes and reads back (causal weights, model manifests)."""
from __future__ import annotations

import json
from pathlib import Path

from ciml_ter.errors import InputError


def read_document(path: str | Path, fmt: str, what: str) -> dict:
    """The JSON object in ``path`` whose ``format`` is ``fmt``; InputError naming the file
    and ``what`` was expected when it is missing, not JSON, or of another format."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: expected a JSON {what}, could not parse it ({exc})") from None
    found = document.get("format") if isinstance(document, dict) else type(document).__name__
    if found != fmt:
        raise InputError(f"{path}: expected a {what} of format {fmt!r}, found {found!r}")
    return document
