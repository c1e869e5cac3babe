"""What a pipeline run leaves behind: ``run.json``, the incremental state, ``runs/latest``.

``runs/<run_id>/run.json`` (:class:`RunRecord`) is the audit record of one run: who ran what,
from which commit, with which parameters, on which data (input fingerprints), producing which
data (output fingerprints) and results. It is rewritten atomically as stages progress and is
final once the run ends.

``runs/.state.json`` (:class:`PipelineState`) remembers, per stage, its last successful run:
the incremental runner compares against it to decide whether a stage can be skipped. Deleting
it (or all of ``runs/``) makes the next run execute every stage.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, JsonValue, ValidationError

from creditrisk.governance.deviations import Deviation
from creditrisk.io import write_text
from creditrisk.pipeline.code import CodeFingerprint
from creditrisk.pipeline.fingerprints import Fingerprint
from creditrisk.provenance import GitInfo, LockInfo, utc_now
from creditrisk.settings import EngineName

__all__ = [
    "ErrorInfo",
    "GitInfo",
    "Interruption",
    "PipelineState",
    "RunRecord",
    "StageRecord",
    "StageState",
    "latest_run_id",
    "new_run_id",
    "point_latest",
    "utc_now",
]

logger = logging.getLogger(__name__)

StageStatus = Literal["running", "succeeded", "failed", "interrupted", "skipped", "not-run"]
RunStatus = Literal["running", "succeeded", "failed", "interrupted"]

STATE_FILE = ".state.json"
HASH_CACHE_FILE = ".hash-cache.json"
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"


class ErrorInfo(BaseModel):
    """Why a stage failed: the exception's class name and message."""

    type: str
    message: str


class Interruption(BaseModel):
    """How a run that did not finish was stopped, and who noticed."""

    cause: str = Field(
        description="e.g. 'SIGTERM received' or 'the run's process ended without finishing "
        "its record (killed, or the machine stopped)'"
    )
    noticed: dt.datetime = Field(description="when it was recorded")
    noticed_by: str = Field(description="the run that recorded it (itself, or the next run)")


class StageRecord(BaseModel):
    """One stage of one run, as recorded in ``run.json``."""

    name: str
    position: int = Field(description="1-based position in the pipeline")
    notebook: str = Field(description="source notebook, relative to the project root")
    notebook_sha256: str | None = None
    status: StageStatus = "not-run"
    started: dt.datetime | None = None
    duration_s: float | None = None
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    inputs: dict[str, Fingerprint] = Field(default_factory=dict)
    outputs: dict[str, Fingerprint] = Field(default_factory=dict)
    results: dict[str, JsonValue] = Field(default_factory=dict)
    ipynb: str | None = Field(default=None, description="executed notebook, workspace-relative")
    html: str | None = Field(default=None, description="rendered notebook, workspace-relative")
    reused_from: str | None = Field(default=None, description="run whose outputs were reused")
    code: CodeFingerprint | None = Field(
        default=None, description="the modules, data files and packages the notebook runs"
    )
    deviations: list[Deviation] = Field(
        default_factory=list, description="parameters that differ from pipeline.yaml's policy"
    )
    run_files: list[str] = Field(
        default_factory=list,
        description="files the stage wrote into the run folder besides its notebook (model card)",
    )
    error: ErrorInfo | None = None


class SparkRecord(BaseModel):
    """Which Spark a stage computed on: its version and where it ran."""

    version: str
    master: str


class RunRecord(BaseModel):
    """One pipeline run: ``runs/<run_id>/run.json``."""

    run_id: str
    status: RunStatus = "running"
    started: dt.datetime
    finished: dt.datetime | None = None
    workspace: str
    project_root: str
    git: GitInfo = Field(default_factory=GitInfo)
    user: str
    host: str
    python: str
    platform: str
    packages: dict[str, str] = Field(default_factory=dict)
    lock: LockInfo = Field(
        default_factory=LockInfo, description="the lock files and whether the packages match"
    )
    kernel: str
    force: bool = False
    overrides: dict[str, JsonValue] = Field(default_factory=dict)
    engine: EngineName = Field(
        default="duckdb", description="the feature engine the run's stages were given"
    )
    spark: SparkRecord | None = Field(
        default=None, description="the Spark a stage of this run computed on (or reused)"
    )
    stages: list[StageRecord] = Field(default_factory=list)
    interruption: Interruption | None = Field(
        default=None, description="set when the run was stopped before it finished"
    )
    recovered: list[str] = Field(
        default_factory=list,
        description="what this run cleaned up after interrupted runs before it started",
    )

    def stage(self, name: str) -> StageRecord:
        """The record of stage ``name`` (KeyError if it was not selected)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def write(self, runs_dir: Path) -> Path:
        """Write ``<runs_dir>/<run_id>/run.json`` atomically and return its path."""
        path = runs_dir / self.run_id / "run.json"
        write_text(path, self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """Read a ``run.json``."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


class StageState(BaseModel):
    """A stage's last successful run: what the next run compares against."""

    run_id: str
    finished: dt.datetime
    notebook_sha256: str
    parameters: dict[str, JsonValue]
    inputs: dict[str, Fingerprint]
    outputs: dict[str, Fingerprint]
    results: dict[str, JsonValue] = Field(default_factory=dict)
    ipynb: str | None = None
    html: str | None = None
    code: CodeFingerprint | None = None
    run_files: list[str] = Field(default_factory=list)


class PipelineState(BaseModel):
    """``runs/.state.json``: the last successful run of every stage."""

    version: Literal[2] = 2  # 2: stages carry a code fingerprint; a version-1 state re-runs all
    stages: dict[str, StageState] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> PipelineState:
        """Read the state; a missing or unreadable file is an empty state (everything runs)."""
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (ValidationError, ValueError):
            logger.warning("ignoring unreadable pipeline state %s: every stage will run", path)
            return cls()

    def save(self, path: Path) -> None:
        """Write the state atomically."""
        write_text(path, self.model_dump_json(indent=2) + "\n")


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id such as ``20261122T061500Z-3f9a1c`` (UTC time + random)."""
    now = now or utc_now()
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def point_latest(runs_dir: Path, run_id: str) -> None:
    """Make ``runs/latest`` point at ``run_id``.

    A relative symlink, replaced atomically; where symlinks are unavailable (Windows without
    developer mode), the text file ``runs/LATEST`` holds the id instead.
    """
    link = runs_dir / LATEST_LINK
    temporary = runs_dir / f".{LATEST_LINK}.{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(run_id, temporary, target_is_directory=True)
        os.replace(temporary, link)
    except (OSError, NotImplementedError):
        with contextlib.suppress(OSError):
            temporary.unlink()
        write_text(runs_dir / LATEST_FILE, run_id + "\n")


def latest_run_id(runs_dir: Path) -> str | None:
    """The id ``runs/latest`` (or ``runs/LATEST``) points at; None before the first run."""
    link = runs_dir / LATEST_LINK
    if link.is_symlink():
        return Path(os.readlink(link)).name
    with contextlib.suppress(OSError):
        return (runs_dir / LATEST_FILE).read_text(encoding="utf-8").strip() or None
    return None
