"""Assertions about the workspace's locks, shared by the tests that stop runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from creditrisk import locking
from creditrisk.settings import Workspace


def assert_locks_free(home: Path) -> None:
    """Neither the workspace lock nor the writer lock is held by anyone."""
    workspace = Workspace(home)
    for path in (workspace.lock_file, locking.writer_lock_file(workspace)):
        lock = FileLock(path)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            pytest.fail(f"{path.name} is still held")
        lock.release()
