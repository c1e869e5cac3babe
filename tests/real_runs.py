"""What the tests that run the real pipeline share: the tiny policy, starting a runner as a
shell would, and the state of the locks after it stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from creditrisk import locking
from creditrisk.settings import Workspace

#: 2,000 applicants cannot reach the bank's default gates (test AUC about 0.65 on 400 test
#: applicants); the tiny runs use leaves small enough for that sample and gates to match.
#: One DuckDB thread makes the feature store byte-reproducible (with several, a mean may differ
#: in its last bit from run to run: DuckDB adds partial sums in the order threads finish).
TINY_TRAINING = ("features.threads=1", "train.min_child_weight=5")
TINY_POLICY = (
    *TINY_TRAINING,
    "validate.min_auc=0.6",
    "validate.min_ks=0.15",
    "validate.max_ece=0.05",
    "validate.max_train_test_auc_gap=0.3",
)


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


def start_run(home: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``creditrisk run <args>`` on workspace ``home`` as a shell starts it: a process group
    (session) of its own, so a test can signal the group; stdout and stderr in one pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "creditrisk.cli", "run", *args],
        env={**os.environ, "CREDITRISK_HOME": str(home), "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
