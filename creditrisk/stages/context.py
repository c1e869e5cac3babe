"""The run context every stage receives: which workspace, which run, which store, which mode.

Two modes, and only the runner can start the first:

``pipeline``
    The stage runs inside a governed run: the pipeline runner (``make pipeline``) started its
    kernel with the run's id, or a command (``creditrisk monitor``, ``creditrisk ingest``) holds
    the workspace lock itself. It writes the workspace: ``data/``, ``reports/``, MLflow runs and
    the registry. A context claims this mode only while the workspace lock is held for its run
    id by a live process (:func:`creditrisk.locking.held_by`); a notebook that merely sets
    ``CREDITRISK_RUN_ID`` is refused. A stage kernel in this mode dies with the runner and
    holds the writer lock while it lives (:func:`creditrisk.locking.join_run`).
``interactive``
    Everything else: JupyterLab, nbmake, papermill by hand. The stage reads the workspace and
    writes only under ``scratch/<notebook>/`` (its own ``data/``, ``reports/`` and, for
    training, an MLflow store ``scratch/<notebook>/mlflow.db``). It never writes ``reports/``,
    ``data/``, the registry or an MLflow run of the workspace's store: a what-if cannot change
    production. The first output of the notebook says so.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from creditrisk import locking, tracking
from creditrisk.settings import PROJECT_ROOT, Settings, Workspace

Mode = Literal["pipeline", "interactive"]

#: The stages in pipeline order; a stage's notebook is ``NN_<stage>.ipynb``.
STAGE_ORDER = ("ingest", "features", "train", "evaluate", "validate", "register", "monitor")


class NotInPipeline(RuntimeError):
    """A stage was asked to act on production outside a governed run."""


def notebook_name(stage: str) -> str:
    """``evaluate`` → ``04_evaluate`` (its notebook, its scratch folder, its run files)."""
    return f"{STAGE_ORDER.index(stage) + 1:02d}_{stage}"


@dataclass(frozen=True)
class RunContext:
    """Where a stage reads and writes, and under which run.

    Attributes:
        stage: The stage's name.
        mode: ``pipeline`` or ``interactive`` (see the module docstring).
        settings: Everything configured (``Settings``).
        workspace: The workspace the stage reads (and, in pipeline mode, writes).
        run_id: The governed run (pipeline mode), None interactively.
        tracking_uri: The workspace's MLflow store (a server, or its ``mlflow.db``).
        project_root: The checkout holding the notebooks, SQL and lock files.
    """

    stage: str
    mode: Mode
    settings: Settings
    workspace: Workspace
    run_id: str | None
    tracking_uri: str
    project_root: Path = field(default=PROJECT_ROOT)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def resolve(cls, stage: str, settings: Settings | None = None) -> RunContext:
        """The context of a stage notebook: pipeline mode when the runner started it.

        Raises:
            NotInPipeline: ``CREDITRISK_RUN_ID`` names a run that does not hold the workspace
                lock: something other than the runner tries to write production.
        """
        settings = settings or Settings()
        if settings.run_id:
            return cls.pipeline(stage, settings, settings.run_id)
        return cls.interactive(stage, settings)

    @classmethod
    def pipeline(cls, stage: str, settings: Settings, run_id: str) -> RunContext:
        """A governed run's context; the workspace lock must be held for ``run_id``.

        Raises:
            NotInPipeline: The lock is not held for ``run_id`` by a live process.
        """
        workspace = settings.workspace
        if not locking.held_by(workspace, run_id):
            raise NotInPipeline(
                f"run id {run_id!r} is set (CREDITRISK_RUN_ID) but the workspace lock of "
                f"{workspace.home} is not held by that run: only the pipeline runner "
                "(make pipeline) or a creditrisk command holding the lock writes production. "
                "Unset CREDITRISK_RUN_ID to run this notebook interactively (it then writes to "
                "scratch/ only)."
            )
        try:
            locking.join_run(workspace, run_id)  # a kernel dies with the runner, writes locked
        except locking.WorkspaceLocked as exc:
            raise NotInPipeline(str(exc)) from None
        return cls(stage, "pipeline", settings, workspace, run_id, tracking.tracking_uri(settings))

    @classmethod
    def interactive(cls, stage: str, settings: Settings | None = None) -> RunContext:
        """An interactive run's context: reads the workspace, writes only its scratch folder."""
        settings = settings or Settings()
        return cls(
            stage,
            "interactive",
            settings,
            settings.workspace,
            None,
            tracking.tracking_uri(settings),
        )

    # -- where things go ----------------------------------------------------------------------

    @property
    def interactive_mode(self) -> bool:
        return self.mode == "interactive"

    @property
    def notebook(self) -> str:
        return notebook_name(self.stage)

    @property
    def scratch(self) -> Path:
        """``scratch/<notebook>/``: everything an interactive run writes."""
        return self.workspace.scratch / self.notebook

    @property
    def outputs(self) -> Workspace:
        """Where the stage writes: the workspace, or a workspace rooted in its scratch folder."""
        return self.workspace if self.mode == "pipeline" else Workspace(self.scratch)

    @property
    def output_tracking_uri(self) -> str:
        """The MLflow store the stage may log new runs to (scratch's own when interactive)."""
        if self.mode == "pipeline":
            return self.tracking_uri
        return tracking.sqlite_uri(self.scratch / "mlflow.db")

    @property
    def run_dir(self) -> Path | None:
        """``runs/<run_id>/`` of a governed run, when the runner made it (the audit record)."""
        if self.run_id is None:
            return None
        directory = self.workspace.runs / self.run_id
        return directory if directory.is_dir() else None

    def require_pipeline(self, action: str) -> None:
        """Refuse ``action`` (a write to production) outside a governed run.

        Raises:
            NotInPipeline: In interactive mode.
        """
        if self.mode != "pipeline":
            raise NotInPipeline(
                f"{action} changes production and runs only in the governed pipeline "
                "(make pipeline): this is an interactive run"
            )

    def clear_scratch(self) -> None:
        """Empty this stage's scratch folder (an interactive run starts clean)."""
        if self.mode == "interactive" and self.scratch.exists():
            shutil.rmtree(self.scratch)

    def describe(self) -> str:
        """One line saying where this run reads and writes."""
        if self.mode == "pipeline":
            return f"PIPELINE run {self.run_id}: writes the workspace {self.workspace.home}"
        return (
            f"INTERACTIVE run: reads the workspace {self.workspace.home}, writes only to "
            f"{self.scratch} — reports/, data/, the registry and MLflow runs stay unchanged"
        )


@contextmanager
def governed(
    settings: Settings, run_id: str, *, wait_seconds: float = 0.0
) -> Iterator[Callable[[str], RunContext]]:
    """Hold the workspace lock for ``run_id`` and hand out pipeline-mode contexts.

    What a command that changes production outside the runner does (``creditrisk monitor``,
    ``creditrisk promote``): ``with governed(settings, run_id) as context:
    monitor.run(params, context("monitor"))``.

    Raises:
        WorkspaceLocked: Another run holds the workspace.
    """
    with locking.workspace_lock(settings.workspace, run_id, wait_seconds):
        yield lambda stage: RunContext.pipeline(stage, settings, run_id)
