"""Outputs, in one place: atomic file writes, folders built whole, the write lock of an output,
the check that an output can be written, and the fingerprint that tells whether an input changed.

A reader (or a resumed run) never sees a half-written file: after a kill the target holds its
old content or does not exist. Folders (Zarr stores, model and analysis folders) are built under
a ``.partial`` name and swapped in whole when complete, so no file of an older folder stays
beside the new ones. Two processes writing one output at once: the second stops at once
(``output_lock``).
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ciml_ter.errors import InputError


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{tag}")


def fsync_file(path: str | Path) -> None:
    """Flush a written file's content to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it is flushed and renamed to
    ``path``; on an exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_output(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield ``.<name>.partial`` beside ``path`` (emptied first) to build a directory in; it is
    renamed to ``path`` on success only, so only a finished store carries the requested name (an
    older ``path`` is set aside, replaced and removed: none of its files stays); on an exception
    it is removed and an older ``path`` stays as it was."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if path.exists():  # an older folder: set aside, the new one renamed in, the old one removed
        old = _sibling(path, "old")
        path.rename(old)
        partial.rename(path)
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        partial.rename(path)


def check_output(path: str | Path, kind: str) -> Path:
    """Refuse, before any work, an output that cannot take the result: a folder where a file is
    to be written (``kind`` "file"), a file where a folder is to be written (``kind`` "folder"),
    or a place this process cannot write in (tried with a probe file in the nearest existing
    folder above it, so that a read-only file system counts as well as permissions)."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise InputError(f"{path}: is a folder; expected the path of a file to write")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file; expected a folder to write (or a path that does not exist yet)")
    above = path.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise InputError(f"{path}: {above} is a file, not a folder")
    probe = above / f".ciml-ter-probe.{os.getpid()}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{path}: cannot write in {above} ({exc.strerror or type(exc).__name__})") from None
    return path


@contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold the write lock of the output ``path`` (an flock on ``.<name>.lock`` beside it) while
    it is written: a second writer stops at once with an InputError naming the holder. The lock
    goes with its process (a killed writer leaves no stale lock); its file is removed on release."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise InputError(f"{path}: {holder} is writing it; wait until it finishes or choose another "
                                 "--out") from None
            raise InputError(f"{lock}: cannot lock the output ({exc.strerror}); the file system does not "
                             "support file locks") from None
        try:  # the lock is good only if its file is still the one at that path (not removed meanwhile)
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"ciml-ter process {os.getpid()} on {socket.gethostname()}".encode())
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Build the folder ``path`` whole: under its lock (``output_lock``), in an empty
    ``.<name>.partial`` folder (``atomic_directory``) that replaces ``path`` only once complete;
    on an exception (Ctrl-C included) nothing is left and an older ``path`` stays as it was."""
    with output_lock(path), atomic_directory(path) as partial:
        partial.mkdir()
        yield partial


def files_of(path: Path) -> list[Path]:
    """The files of an input or output: itself, or a folder's files (a Zarr store) in sorted order."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def fingerprint(path: str | Path) -> str:
    """A cheap identity of a file's or folder's content: a hash of the size and modification time
    of the file, or of every file under the folder with its relative path; it changes when
    anything there is rewritten, added or removed (and "absent" when nothing is there)."""
    path = Path(path)
    if not path.exists():
        return "absent"
    digest = hashlib.sha256()
    for f in files_of(path):
        stat = f.stat()
        digest.update(f"{f.relative_to(path) if f != path else ''}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
