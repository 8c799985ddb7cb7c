"""Atomic writes: a target holds its old content or the complete new one, never a part."""
from __future__ import annotations

import pytest
from ciml_ter.files import atomic_directory, atomic_output, atomic_write


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "a.json"
    atomic_write(path, "old")
    atomic_write(path, b"new bytes")
    assert path.read_bytes() == b"new bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "t.h5"
    atomic_write(path, "complete")
    with pytest.raises(RuntimeError):
        with atomic_output(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "complete" and [p.name for p in tmp_path.iterdir()] == ["t.h5"]


def test_directories_get_their_name_only_when_finished(tmp_path):
    store = tmp_path / "cube.zarr"
    with pytest.raises(ValueError):
        with atomic_directory(store) as partial:
            partial.mkdir()
            (partial / "chunk").write_text("x")
            raise ValueError("interrupted")
    assert not store.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(store) as partial:
        partial.mkdir()
        (partial / "chunk").write_text("x")
        assert not store.exists()
    assert (store / "chunk").read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["cube.zarr"]
