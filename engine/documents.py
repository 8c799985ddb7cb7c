"""The JSON documents the engine writes and reads back (causal weights, model and run manifests,
metrics and summaries). Documents that identify themselves carry a ``format`` key
("ciml-ter-ensemble/1", "ciml-ter-run/1", "ciml-ter-causal-weights/2")."""
from __future__ import annotations

import json
from pathlib import Path

from ciml_ter.errors import InputError


def read_json(path: str | Path, what: str):
    """The JSON value in ``path``; InputError naming the file and ``what`` was expected when it
    is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: expected a JSON {what}, could not parse it ({exc})") from None


def read_document(path: str | Path, fmt: str, what: str) -> dict:
    """The JSON object in ``path`` whose ``format`` is ``fmt``; InputError naming the file
    and ``what`` was expected when it is missing, not JSON, or of another format."""
    document = read_json(path, what)
    found = document.get("format") if isinstance(document, dict) else type(document).__name__
    if found != fmt:
        raise InputError(f"{path}: expected a {what} of format {fmt!r}, found {found!r}")
    return document
