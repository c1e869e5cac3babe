"""The workspace lock: one governed run (pipeline, monitor, promotion by hand) per workspace.

A run holds a non-blocking file lock (``Workspace.lock_file``) for its whole duration and writes
its pid, run id, host and start time into a sidecar ``.owner`` file, so that

* a second run can say who holds the workspace, and
* a stage kernel the runner started can prove it belongs to the run holding the lock (a
  notebook that merely *claims* a run id, e.g. by setting ``CREDITRISK_RUN_ID`` in JupyterLab,
  cannot: :func:`held_by` is false and the stage runs in interactive mode or refuses).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from creditrisk.io import write_text
from creditrisk.provenance import utc_now
from creditrisk.settings import Workspace


class WorkspaceLocked(Exception):
    """Another run holds the workspace lock.

    Attributes:
        holder: The holder's pid, run id, host and start time, if it could be read.
    """

    def __init__(self, message: str, holder: Mapping[str, Any] | None = None) -> None:
        self.holder = dict(holder or {})
        super().__init__(message)


def owner_file(workspace: Workspace) -> Path:
    """The sidecar naming the lock's holder."""
    return workspace.lock_file.with_name(workspace.lock_file.name + ".owner")


def read_owner(workspace: Workspace) -> dict[str, Any] | None:
    """The holder recorded beside the lock, or None (no holder, or another tool's lock)."""
    try:
        owner = json.loads(owner_file(workspace).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def held_by(workspace: Workspace, run_id: str) -> bool:
    """Whether a live process of this host holds the workspace lock for ``run_id``.

    The owner file is written only after the lock is acquired and removed before it is
    released, so a matching owner whose process is alive is the holder.
    """
    owner = read_owner(workspace)
    return bool(
        owner
        and owner.get("run_id") == run_id
        and owner.get("host") == socket.gethostname()
        and _alive(owner.get("pid"))
    )


@contextlib.contextmanager
def workspace_lock(
    workspace: Workspace, run_id: str, wait_seconds: float = 0.0
) -> Iterator[dict[str, Any]]:
    """Hold the workspace lock for one run, waiting up to ``wait_seconds`` for it.

    Yields:
        The owner record written beside the lock.

    Raises:
        WorkspaceLocked: The lock is held by another run; the message names it.
    """
    from filelock import FileLock, Timeout

    workspace.home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(workspace.lock_file)
    try:
        if wait_seconds > 0:
            lock.acquire(timeout=wait_seconds)
        else:
            lock.acquire(blocking=False)
    except Timeout:
        holder = read_owner(workspace)
        raise WorkspaceLocked(locked_message(workspace, holder), holder) from None
    try:
        owner = {
            "pid": os.getpid(),
            "run_id": run_id,
            "host": socket.gethostname(),
            "started": utc_now().isoformat(timespec="seconds"),
        }
        write_text(owner_file(workspace), json.dumps(owner) + "\n")
        yield owner
    finally:
        with contextlib.suppress(OSError):
            owner_file(workspace).unlink()
        lock.release()


def locked_message(workspace: Workspace, holder: Mapping[str, Any] | None) -> str:
    """Why a run cannot start: who holds the workspace, and that waiting is the remedy."""
    if holder:
        who = (
            f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, "
            f"started {holder.get('started')})"
        )
    else:
        who = "another process"
    return (
        f"workspace {workspace.home} is in use by {who}. Wait for it to finish: the lock "
        f"{workspace.lock_file} is released automatically when that process ends."
    )
