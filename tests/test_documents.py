"""Reading the engine's own JSON documents back: one clear line for each way a file is wrong."""
from __future__ import annotations

import pytest

from ciml_ter.causal import read_weights
from ciml_ter.documents import read_document
from ciml_ter.errors import InputError


@pytest.mark.parametrize("text, message", [
    (None, r"w.json: thing not found"),
    ("{not json", r"w.json: expected a JSON thing, could not parse it \(Expecting"),
    ('{"format": "other/1"}', r"w.json: expected a thing of format 'mine/1', found 'other/1'"),
    ("[1, 2]", r"w.json: expected a thing of format 'mine/1', found 'list'"),
])
def test_bad_documents_are_named(tmp_path, text, message):
    if text is not None:
        (tmp_path / "w.json").write_text(text)
    with pytest.raises(InputError, match=message):
        read_document(tmp_path / "w.json", "mine/1", "thing")


def test_weights_reader_uses_it(tmp_path):
    (tmp_path / "w.json").write_text('{"format": "ciml-ter-ensemble/1"}')
    with pytest.raises(InputError, match="expected a causal weights file .* of format 'ciml-ter-causal-weights/2'"):
        read_weights(tmp_path / "w.json")
    (tmp_path / "ok.json").write_text('{"format": "ciml-ter-causal-weights/2", "pooled": {}}')
    assert read_weights(tmp_path / "ok.json")["pooled"] == {}
