"""Small I/O helpers at the edges: atomic writes and hashing.

A reader never sees a half-written file: everything is written next to its destination under a
temporary name, then renamed over it (``os.replace`` is atomic on one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(destination: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it over ``destination`` on success.

    On an exception the temporary file (or directory) is removed and the destination is left
    as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=f".tmp{suffix}", dir=destination.parent
    )
    os.close(fd)
    os.unlink(name)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, destination)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


def write_bytes(destination: Path | str, data: bytes) -> Path:
    """Write bytes through a temporary file in the same directory, synced, then renamed."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())  # the rename must not land before the data
        # mkstemp creates 0600 files; give the result the permissions of any other new file.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return destination


def write_text(destination: Path | str, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(destination, text.encode("utf-8"))


def write_json(destination: Path | str, payload: Any) -> Path:
    """Write JSON atomically (indented, keys in insertion order, non-JSON values as str)."""
    return write_text(destination, json.dumps(payload, indent=2, default=str) + "\n")


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    current = os.umask(0o022)
    os.umask(current)
    return current


def read_json(path: Path | str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def replace_directory(new: Path, destination: Path) -> None:
    """Swap a fully written directory into place; the previous one is removed afterwards."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    previous = destination.with_name(f".{destination.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if destination.exists():
        os.replace(destination, previous)
    os.replace(new, destination)
    shutil.rmtree(previous, ignore_errors=True)


class IncompleteLineError(ValueError):
    """A JSON-lines file ends in an incomplete line (an interrupted write)."""


def append_line(path: Path | str, line: str) -> None:
    """Append one line to an append-only file and fsync it; earlier lines are never touched.

    Raises:
        IncompleteLineError: The file ends in an incomplete line; appending would merge two
            records, so it is left for a person to inspect.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            raise IncompleteLineError(f"{path} ends with an incomplete line; inspect it first")
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:  # the new file's directory entry must survive a crash too
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
