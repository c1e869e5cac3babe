"""Content fingerprints of stage inputs, outputs and notebooks.

A file's fingerprint is the SHA-256 of its bytes; a directory's is the SHA-256 over its files'
relative paths and content hashes, so renaming, adding or changing any file changes it. Hashing
gigabytes of CSV on every run would be slow, so file hashes are cached by path, size, mtime,
ctime and inode (:class:`HashCache`; ctime because tools such as ``cp -p`` or ``tar`` restore an
old mtime after rewriting a file); a file changed too recently to trust is hashed, not cached.

Remote inputs (``s3://…`` and other URIs) are fingerprinted by the hook
``creditrisk.data.sources.fingerprint(uri) -> str | None`` when that module provides it (for
S3, e.g., a digest of the listing's keys, ETags and sizes); without a hook, or when it fails,
the input counts as changed on every run.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from creditrisk.io import write_text
from creditrisk.pipeline.config import is_uri
from creditrisk.provenance import file_sha256

logger = logging.getLogger(__name__)

#: A file changed this recently may change again within the filesystem's timestamp resolution
#: without its timestamps changing (git's "racy" files), so its hash is not cached.
RACY_WINDOW_S = 2.0

_CACHE_VERSION = 2


class Fingerprint(BaseModel):
    """What a path or URI held: its kind and a digest of its content."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["file", "dir", "missing", "remote", "unknown"]
    digest: str | None = None  # sha256 hex locally; whatever the hook returns for remote
    files: int = 0
    bytes: int = 0

    def same_as(self, other: Fingerprint | None) -> bool:
        """Whether the content is known to be unchanged (``unknown`` never is)."""
        if other is None or self.kind != other.kind or self.kind == "unknown":
            return False
        return self.kind == "missing" or (self.digest is not None and self.digest == other.digest)


class HashCache:
    """SHA-256 of files, remembered by (path, size, mtime_ns, ctime_ns, inode) in a JSON file.

    Args:
        path: The cache file; read now if it exists, written by :meth:`save`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, list[int | str]] = {}
        self._dirty = False
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if loaded.get("version") == _CACHE_VERSION:
                self._entries = dict(loaded["files"])
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError, TypeError, KeyError):
            logger.warning("ignoring unreadable hash cache %s", path)

    def sha256(self, path: Path) -> str:
        """The SHA-256 hex digest of a file, from the cache when its stat is unchanged."""
        stat = path.stat()
        key = str(path)
        signature: list[int | str] = [
            stat.st_size,
            stat.st_mtime_ns,
            stat.st_ctime_ns,
            stat.st_ino,
        ]
        entry = self._entries.get(key)
        if entry is not None and entry[:-1] == signature:
            return str(entry[-1])
        digest = file_sha256(path)
        changed = max(stat.st_mtime_ns, stat.st_ctime_ns) / 1e9
        if time.time() - changed > RACY_WINDOW_S:
            self._entries[key] = [*signature, digest]
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache, forgetting files that no longer exist."""
        gone = [key for key in self._entries if not os.path.exists(key)]
        for key in gone:
            del self._entries[key]
        if not (self._dirty or gone):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text(self.path, json.dumps({"version": _CACHE_VERSION, "files": self._entries}))
        self._dirty = False


def fingerprint(location: str | Path, cache: HashCache) -> Fingerprint:
    """Fingerprint a local file or directory, or a remote URI.

    Args:
        location: An absolute local path, or a URI such as ``s3://bucket/prefix``.
        cache: File hashes computed before.

    Returns:
        The fingerprint; ``missing`` if a local path does not exist.
    """
    if isinstance(location, str) and is_uri(location):
        return remote_fingerprint(location)
    path = Path(location)
    if path.is_file():
        return Fingerprint(
            kind="file", digest=cache.sha256(path), files=1, bytes=path.stat().st_size
        )
    if path.is_dir():
        return _directory_fingerprint(path, cache)
    return Fingerprint(kind="missing")


def _directory_fingerprint(root: Path, cache: HashCache) -> Fingerprint:
    digest = hashlib.sha256()
    files = 0
    size = 0
    for directory, subdirectories, names in os.walk(root):
        subdirectories.sort()  # os.walk visits in this order: make the digest reproducible
        for name in sorted(names):
            path = Path(directory, name)
            if not path.is_file():
                continue  # sockets, broken links: not content
            relative = path.relative_to(root).as_posix()
            digest.update(f"{relative}\0{cache.sha256(path)}\n".encode())
            files += 1
            size += path.stat().st_size
    return Fingerprint(kind="dir", digest=digest.hexdigest(), files=files, bytes=size)


def remote_fingerprint(uri: str) -> Fingerprint:
    """Fingerprint a URI through ``creditrisk.data.sources.fingerprint`` if it exists.

    Args:
        uri: E.g. ``s3://bucket/prefix``.

    Returns:
        A ``remote`` fingerprint, or ``unknown`` (always changed) without a usable hook.
    """
    try:
        sources = importlib.import_module("creditrisk.data.sources")
    except ImportError:
        return Fingerprint(kind="unknown")
    hook = getattr(sources, "fingerprint", None)
    if not callable(hook):
        return Fingerprint(kind="unknown")
    try:
        digest = hook(uri)
    except Exception:
        # The stage itself will read the source and fail loudly if it is unreachable; here
        # the only consequence is that the stage re-runs.
        logger.warning("could not fingerprint %s; treating it as changed", uri, exc_info=True)
        return Fingerprint(kind="unknown")
    return Fingerprint(kind="remote", digest=str(digest)) if digest else Fingerprint(kind="unknown")


def notebook_sha256(path: Path) -> str:
    """SHA-256 of a notebook's cells (type, tags, source), ignoring outputs and metadata.

    Running a notebook interactively and saving it changes outputs and execution counts but
    not what the pipeline would execute, so it must not force a re-run.
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    cells = [
        {
            "type": cell.cell_type,
            "tags": sorted(cell.get("metadata", {}).get("tags", [])),
            "source": cell.source,
        }
        for cell in notebook.cells
    ]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()
