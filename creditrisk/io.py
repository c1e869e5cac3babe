"""Small I/O helpers at the edges: atomic writes and hashing.

A reader never sees a half-written file: everything is written next to its destination under a
temporary name, then renamed over it (``os.replace`` is atomic on one file system).
"""

from __future__ import annotations

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


def write_json(destination: Path | str, payload: Any) -> Path:
    """Write JSON atomically (indented, keys in insertion order, non-JSON values as str)."""
    destination = Path(destination)
    with atomic_path(destination) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return destination


def write_text(destination: Path | str, text: str) -> Path:
    destination = Path(destination)
    with atomic_path(destination) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return destination


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
