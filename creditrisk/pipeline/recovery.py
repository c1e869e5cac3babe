"""After a killed run: close its record truthfully and remove what it left half-written.

A run killed by SIGKILL (or a machine that stopped) cannot finish its own ``run.json``: it says
``running`` for ever, and its stage may have left a staging folder or a temporary file behind.
The next governed run calls :func:`recover` while it holds the workspace lock, so nothing else
is running and every ``running`` record is stale. What it does is returned as sentences, which
the new run records (``run.json`` ``recovered``) and prints.

Everything the stages publish is written beside its destination and renamed into place
(:mod:`creditrisk.io`), so what a killed run leaves is always one of

* a staging folder of ingest (``data/.ingest-*``) or of the synthetic generator
  (``.<dir>.partial-*``): removed;
* a temporary file of an atomic write (``.<name>.<random>.tmp…``): removed;
* the previous version of a directory being swapped (``.<dir>.previous``): put back when the
  new one never arrived, removed otherwise;
* an MLflow run left ``RUNNING``: marked ``KILLED``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from creditrisk.pipeline.records import ErrorInfo, Interruption, RunRecord, utc_now
from creditrisk.settings import Workspace

#: Why a record found ``running`` by the next run did not finish.
KILLED_CAUSE = (
    "the run's process ended without finishing its record (killed, or the machine stopped)"
)

_STAGING_DIR = re.compile(r"^\.(ingest-|.+\.partial-).+")
_ATOMIC_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp[^/]*$")
_PREVIOUS_DIR = re.compile(r"^\.(?P<name>.+)\.previous$")

#: Workspace folders a stage writes, swept for leftovers (the MLflow store is not: see
#: :func:`creditrisk.tracking.end_orphaned_runs`).
_SWEPT = ("data", "reports", "runs")


def recover(
    workspace: Workspace,
    run_id: str,
    *,
    end_mlflow_runs: Callable[[str], list[str]] | None = None,
) -> list[str]:
    """Mark stale records interrupted and remove half-written files; hold the lock to call.

    Args:
        workspace: The workspace.
        run_id: The run doing it (named in the records it closes).
        end_mlflow_runs: ``pipeline_run_id → MLflow runs marked KILLED``, for each stale run.

    Returns:
        One sentence per thing done, e.g. ``"run X: marked interrupted (stage train was running)"``.
    """
    notes = []
    for stale_id, note in mark_interrupted(workspace.runs, run_id):
        notes.append(note)
        ended = end_mlflow_runs(stale_id) if end_mlflow_runs is not None else []
        if ended:
            notes.append(f"run {stale_id}: MLflow run(s) {', '.join(ended)} marked KILLED")
    notes.extend(remove_leftovers(workspace))
    return notes


def mark_interrupted(runs_dir: Path, noticed_by: str) -> list[tuple[str, str]]:
    """Close every ``running`` record under ``runs_dir`` as ``interrupted``.

    Returns:
        ``(run id, what was done)`` per record closed.
    """
    notes = []
    for path in sorted(runs_dir.glob("*/run.json")):
        try:
            record = RunRecord.read(path)
        except (OSError, ValueError):
            continue  # not ours to judge; run.json is written atomically, so never half
        if record.status != "running" or record.run_id == noticed_by:
            continue
        now = utc_now()
        running = [stage.name for stage in record.stages if stage.status == "running"]
        for stage in record.stages:
            if stage.status == "running":
                stage.status = "interrupted"
                stage.error = ErrorInfo(
                    type="Interrupted", message=f"{KILLED_CAUSE}; noticed by run {noticed_by}"
                )
        record.status = "interrupted"
        record.interruption = Interruption(cause=KILLED_CAUSE, noticed=now, noticed_by=noticed_by)
        record.write(runs_dir)
        where = f"stage {running[0]} was running" if running else "between stages"
        notes.append((record.run_id, f"run {record.run_id}: marked interrupted ({where})"))
    return notes


def remove_leftovers(workspace: Workspace) -> list[str]:
    """Remove staging folders and temporary files; put back a directory swapped half-way."""
    notes = []
    for folder in (workspace.home / name for name in _SWEPT):
        if not folder.is_dir():
            continue
        for directory, subdirs, files in os.walk(folder, topdown=True):
            here = Path(directory)
            for name in list(subdirs):
                path = here / name
                previous = _PREVIOUS_DIR.match(name)
                if previous:
                    subdirs.remove(name)
                    notes.append(_settle_previous(path, here / previous["name"], workspace))
                elif _STAGING_DIR.match(name) or _ATOMIC_TEMPORARY.match(name):
                    subdirs.remove(name)
                    shutil.rmtree(path, ignore_errors=True)
                    notes.append(f"removed {_relative(path, workspace)}/ (left by a killed run)")
            for name in files:
                if _ATOMIC_TEMPORARY.match(name):
                    (here / name).unlink(missing_ok=True)
                    notes.append(
                        f"removed {_relative(here / name, workspace)} (left by a killed run)"
                    )
    return notes


def _settle_previous(previous: Path, destination: Path, workspace: Workspace) -> str:
    if destination.exists():
        shutil.rmtree(previous, ignore_errors=True)
        return f"removed {_relative(previous, workspace)}/ (the swap it belonged to finished)"
    os.replace(previous, destination)
    return (
        f"restored {_relative(destination, workspace)}/ from {previous.name} "
        "(a killed run had moved it aside)"
    )


def _relative(path: Path, workspace: Workspace) -> str:
    try:
        return path.relative_to(workspace.home).as_posix()
    except ValueError:
        return str(path)
