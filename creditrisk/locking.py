"""The workspace lock: one governed run (pipeline, monitor, promotion by hand) per workspace.

A run holds a non-blocking file lock (``Workspace.lock_file``) for its whole duration and writes
its pid, run id, host and start time into a sidecar ``.owner`` file, so that

* a second run can say who holds the workspace, and
* a stage kernel the runner started can prove it belongs to the run holding the lock (a
  notebook that merely *claims* a run id, e.g. by setting ``CREDITRISK_RUN_ID`` in JupyterLab,
  cannot: :func:`held_by` is false and the stage runs in interactive mode or refuses).

Stage kernels run in their own session, so killing the runner (even its whole process group)
does not reach them, and a killed runner's lock is free at once. Two rules keep every
production write inside the lock:

* a kernel that joins a run (:func:`join_run`) dies with the process that started it (a
  parent-death signal on Linux, a watchdog thread elsewhere), and
* it holds the **writer lock** (``<lock>.writer``) until it ends. Whoever takes the workspace
  lock next waits for the writer lock, so no kernel of a dead run can still be writing when the
  next run starts. Commands that write in-process (``creditrisk promote``) hold both.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

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


#: How long a new run waits for the kernel of a killed run to die and free the writer lock.
WRITER_GRACE_SECONDS = 30.0

#: The writer locks this process holds as a stage kernel, kept until the process ends.
_JOINED: dict[Path, FileLock] = {}


def writer_lock_file(workspace: Workspace) -> Path:
    """The lock a process writing production holds (a stage kernel, or a command in-process)."""
    return workspace.lock_file.with_name(workspace.lock_file.name + ".writer")


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
    workspace: Workspace, run_id: str, wait_seconds: float = 0.0, *, writer: bool = True
) -> Iterator[dict[str, Any]]:
    """Hold the workspace lock for one run, waiting up to ``wait_seconds`` for it.

    Once it has the lock, it waits (up to :data:`WRITER_GRACE_SECONDS`) for the writer lock: a
    stage kernel of a run killed a moment ago may still be dying.

    Args:
        workspace: The workspace.
        run_id: The run taking it.
        wait_seconds: How long to wait for another run to finish (0: fail at once).
        writer: Also hold the writer lock (a command writing in-process); the pipeline runner
            leaves it to the stage kernels it starts.

    Yields:
        The owner record written beside the lock.

    Raises:
        WorkspaceLocked: The lock is held by another run; the message names it.
    """
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
    writer_lock = FileLock(writer_lock_file(workspace))
    try:
        try:
            writer_lock.acquire(timeout=max(wait_seconds, WRITER_GRACE_SECONDS))
        except Timeout:
            raise WorkspaceLocked(
                f"workspace {workspace.home}: a stage process of an earlier run still holds "
                f"{writer_lock_file(workspace)} after {WRITER_GRACE_SECONDS:.0f} s; find it with "
                f"`fuser {writer_lock_file(workspace)}` and stop it"
            ) from None
        if not writer:
            writer_lock.release()
    except BaseException:
        lock.release()
        raise
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
        if writer_lock.is_locked:
            writer_lock.release()
        lock.release()


def join_run(workspace: Workspace, run_id: str) -> None:
    """Make this process (a stage kernel the runner started) a writer of run ``run_id``.

    The process dies with its parent from now on, and holds the writer lock until it ends, so
    none of its writes can outlive the run. In the lock holder's own process (a command
    writing in-process) there is nothing to do: it holds both locks.

    Raises:
        WorkspaceLocked: Another process writes the workspace (the writer lock is taken).
    """
    owner = read_owner(workspace) or {}
    if owner.get("pid") == os.getpid() or writer_lock_file(workspace) in _JOINED:
        return
    die_with_parent()
    lock = FileLock(writer_lock_file(workspace), thread_local=False)
    try:
        lock.acquire(timeout=WRITER_GRACE_SECONDS)
    except Timeout:
        raise WorkspaceLocked(
            f"run {run_id}: another process holds the writer lock "
            f"{writer_lock_file(workspace)}; only one stage writes the workspace at a time"
        ) from None
    _JOINED[writer_lock_file(workspace)] = lock


def die_with_parent() -> None:
    """End this process when the process that started it ends, even by SIGKILL.

    Linux delivers SIGKILL on the parent's death (``PR_SET_PDEATHSIG``); elsewhere a daemon
    thread polls the parent. A parent already gone ends this process now.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
            _watch_parent(parent)
    else:
        _watch_parent(parent)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _watch_parent(parent: int, interval: float = 0.1) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


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
