"""Embedded MLflow tracking: one SQLite store per workspace unless a server is configured.

Locally every run, model and registry entry lives in ``<workspace>/mlflow.db`` with artifacts in
``<workspace>/mlartifacts``; at scale ``MLFLOW_TRACKING_URI`` points at a tracking server and the
server decides where artifacts go. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from creditrisk.settings import Workspace, scoped_environment

#: The experiment every training run of the PD model is logged to.
EXPERIMENT = "creditrisk_pd"

#: The registered model serving loads as ``models:/CreditRiskPD@champion``.
MODEL_NAME = "CreditRiskPD"

#: Environment variable that points every MLflow client at another store (e.g. a server).
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

#: Environment variable for a model registry separate from the tracking store.
REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"


def tracking_uri(workspace: Workspace) -> str:
    """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` when set, else the workspace's SQLite.

    The variable is the deployment's choice (a tracking server); :func:`configure` never sets it.

    Args:
        workspace: The workspace whose ``mlflow.db`` is the embedded default.
    """
    return os.environ.get(TRACKING_URI_ENV) or workspace.mlflow_uri


def artifact_location(uri: str, workspace: Workspace, experiment: str = EXPERIMENT) -> str | None:
    """Where a new experiment keeps its artifacts, or None to let the tracking server decide.

    A local SQLite store has no artifact server; without an explicit location MLflow would
    write artifacts relative to the current directory, i.e. wherever a notebook happens to run.
    They go beside the database instead, one folder per experiment:
    ``<workspace>/mlartifacts/creditrisk_pd`` for the default store.

    Args:
        uri: The tracking URI in use.
        workspace: The workspace (its ``mlartifacts`` folder is used for its own store).
        experiment: The experiment's name, used as its folder.
    """
    if urlparse(uri).scheme != "sqlite":
        return None
    if uri == workspace.mlflow_uri:
        root = workspace.home / "mlartifacts"
    else:
        # sqlite:///relative.db or sqlite:////absolute.db: the path after the third slash.
        database = Path(unquote(uri.removeprefix("sqlite:///"))).expanduser().resolve()
        root = database.parent / "mlartifacts"
    return (root / experiment).as_uri()


def quiet_artifact_downloads() -> None:
    """No tqdm bar per artifact download (every model load), unless the user asked for one."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def configure(workspace: Workspace) -> str:
    """Point MLflow (tracking and registry) at the workspace's store; create the experiment.

    The registry follows the tracking store unless ``MLFLOW_REGISTRY_URI`` is set. The
    experiment ``creditrisk_pd`` is created on first use; pass the returned id to
    ``mlflow.start_run(experiment_id=…)``.

    MLflow mirrors the URIs it is given into ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``
    (and :func:`mlflow.set_experiment` into ``MLFLOW_EXPERIMENT_ID``) for subprocesses. Those
    variables are put back as they were, and no active experiment is set: otherwise a second
    workspace configured later in the same process (a test, a notebook switching workspace)
    would silently keep logging into the first one, because the environment wins in
    :func:`tracking_uri`.

    Args:
        workspace: The workspace whose store is used unless ``MLFLOW_TRACKING_URI`` is set.

    Returns:
        The experiment id of ``creditrisk_pd``.
    """
    import mlflow  # heavy import; only callers that track pay for it
    from mlflow.exceptions import MlflowException

    quiet_artifact_downloads()
    uri = tracking_uri(workspace)
    registry = os.environ.get(REGISTRY_URI_ENV) or uri
    if uri == workspace.mlflow_uri:
        workspace.home.mkdir(parents=True, exist_ok=True)
    with scoped_environment(keep=(TRACKING_URI_ENV, REGISTRY_URI_ENV)):
        mlflow.set_tracking_uri(uri)
        # Unset (None) unless a separate registry is configured, so that the registry follows
        # whichever tracking store is set next instead of staying pinned to this workspace's.
        mlflow.set_registry_uri(os.environ.get(REGISTRY_URI_ENV))  # type: ignore[arg-type]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(
            client.create_experiment(
                EXPERIMENT, artifact_location=artifact_location(uri, workspace)
            )
        )
    except MlflowException:
        # Another process (a parallel test, a second notebook) created it first.
        existing = client.get_experiment_by_name(EXPERIMENT)
        if existing is None:
            raise
        return str(existing.experiment_id)


#: Where a pipeline run's rendered notebooks are attached inside an MLflow run.
AUDIT_ARTIFACT_DIR = "pipeline_runs"


def attach_audit_record(
    mlflow_run_id: str,
    files: list[Path],
    workspace: Workspace,
    pipeline_run_id: str,
    results: dict[str, Any] | None = None,
    results_name: str = "results.json",
) -> str:
    """Attach a stage's audit record to the MLflow run it worked on.

    The rendered notebook (and any other ``files``) and the results the stage recorded go under
    ``pipeline_runs/<pipeline_run_id>/`` in the run's artifacts, so the run in the MLflow UI
    links to the HTML of every stage that trained, evaluated, validated or registered it.

    Returns:
        The artifact folder used.
    """
    from mlflow import MlflowClient

    folder = f"{AUDIT_ARTIFACT_DIR}/{pipeline_run_id}"
    client = MlflowClient(tracking_uri=tracking_uri(workspace))
    for path in files:
        client.log_artifact(mlflow_run_id, str(path), artifact_path=folder)
    if results is not None:
        client.log_dict(mlflow_run_id, results, f"{folder}/{results_name}")
    return folder
