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


def test_a_second_writer_of_an_output_stops_and_the_lock_goes_with_the_first(tmp_path):
    from ciml_ter.errors import InputError
    from ciml_ter.files import output_lock

    with output_lock(tmp_path / "m"):
        with pytest.raises(InputError, match=r"m: ciml-ter process \d+ on .* is writing it; wait until it finishes"):
            with output_lock(tmp_path / "m"):
                pass
    assert list(tmp_path.iterdir()) == []  # the lock file is gone
    with output_lock(tmp_path / "m"):  # and the output can be written again
        pass


def test_an_output_folder_replaces_an_older_one_whole_or_not_at_all(tmp_path):
    from ciml_ter.files import output_folder

    old = tmp_path / "model"
    old.mkdir()
    (old / "fold09_seed09.ubj").write_text("stale member")
    with pytest.raises(KeyboardInterrupt):
        with output_folder(old) as partial:
            (partial / "manifest.json").write_text("new")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and (old / "fold09_seed09.ubj").exists()
    with output_folder(old) as partial:
        (partial / "manifest.json").write_text("new")
    assert sorted(p.name for p in old.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_check_output_and_fingerprint(tmp_path):
    import os

    from ciml_ter.errors import InputError
    from ciml_ter.files import check_output, fingerprint

    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="f: is a file; expected a folder"):
        check_output(tmp_path / "f", "folder")
    with pytest.raises(InputError, match=r"f/x/y.toml: .*f is a file, not a folder"):
        check_output(tmp_path / "f" / "x" / "y.toml", "file")
    assert check_output(tmp_path / "new" / "out.toml", "file") == tmp_path / "new" / "out.toml"
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "a").write_text("1")
    first = fingerprint(folder)
    assert fingerprint(folder) == first and fingerprint(tmp_path / "none") == "absent"
    os.utime(folder / "a", ns=(1, 1))
    assert fingerprint(folder) != first
