"""Embedded MLflow tracking: one SQLite store per workspace unless a server is configured.

Locally every run, model and registry entry lives in ``<workspace>/mlflow.db`` with artifacts in
``<workspace>/mlartifacts``; at scale ``MLFLOW_TRACKING_URI`` (``Settings.mlflow``) points at a
tracking server and the server decides where artifacts go. Every function takes the tracking URI
it works on explicitly, so a stage can read the production store and write to a scratch store
in one process (an interactive run) without MLflow's global state deciding which is which.
Nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from creditrisk.settings import (
    DEFAULT_MODEL_NAME,
    Settings,
    Workspace,
    default_environment,
    scoped_environment,
)

if TYPE_CHECKING:
    from creditrisk.modeling.model import TrainedModel

#: The experiment every training run of the PD model is logged to.
EXPERIMENT = "creditrisk_pd"

#: The default registered model, served as ``models:/CreditRiskPD@champion``; a workspace's own
#: is ``Settings.model_name`` (``CREDITRISK_MODEL_NAME``).
MODEL_NAME = DEFAULT_MODEL_NAME

#: Where a pipeline run's rendered notebooks are attached inside an MLflow run.
AUDIT_ARTIFACT_DIR = "pipeline_runs"

_MIRRORED_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def tracking_uri(settings: Settings, workspace: Workspace | None = None) -> str:
    """The MLflow tracking URI: the configured server, else the workspace's SQLite store.

    Args:
        settings: ``settings.mlflow.tracking_uri`` (``MLFLOW_TRACKING_URI``) wins when set.
        workspace: The workspace whose ``mlflow.db`` is the embedded default (default: the
            settings' workspace).
    """
    return settings.mlflow.tracking_uri or (workspace or settings.workspace).mlflow_uri


def sqlite_uri(database: Path) -> str:
    """``sqlite:///<absolute path>`` of a local MLflow database."""
    return f"sqlite:///{database.resolve()}"


def artifact_location(uri: str, experiment: str = EXPERIMENT) -> str | None:
    """Where a new experiment keeps its artifacts, or None to let the tracking server decide.

    A local SQLite store has no artifact server; without an explicit location MLflow would
    write artifacts relative to the current directory, i.e. wherever a notebook happens to run.
    They go beside the database instead, one folder per experiment:
    ``<workspace>/mlartifacts/creditrisk_pd`` for a workspace's ``mlflow.db``.

    Args:
        uri: The tracking URI in use.
        experiment: The experiment's name, used as its folder.
    """
    if urlparse(uri).scheme != "sqlite":
        return None
    # sqlite:///relative.db or sqlite:////absolute.db: the path after the third slash.
    database = Path(unquote(uri.removeprefix("sqlite:///"))).expanduser().resolve()
    return (database.parent / "mlartifacts" / experiment).as_uri()


def quiet_artifact_downloads() -> None:
    """No tqdm bar per artifact download (every model load), unless the user asked for one."""
    default_environment("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def configure(uri: str) -> str:
    """Point MLflow's fluent API (tracking and registry) at ``uri``; create the experiment.

    The experiment ``creditrisk_pd`` is created on first use; pass the returned id to
    ``mlflow.start_run(experiment_id=…)``.

    MLflow mirrors the URIs it is given into ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``
    for subprocesses. Those variables are put back as they were, and no active experiment is
    set: otherwise a second store configured later in the same process (a test, an interactive
    run writing to scratch) would silently keep logging into the first one.

    Args:
        uri: The tracking store to log to.

    Returns:
        The experiment id of ``creditrisk_pd``.
    """
    import mlflow  # heavy import; only callers that track pay for it
    from mlflow.exceptions import MlflowException

    quiet_artifact_downloads()
    if urlparse(uri).scheme == "sqlite":
        Path(unquote(uri.removeprefix("sqlite:///"))).expanduser().parent.mkdir(
            parents=True, exist_ok=True
        )
    with scoped_environment(keep=_MIRRORED_VARIABLES):
        mlflow.set_tracking_uri(uri)
        # Unset, so that the registry follows whichever tracking store is set next instead of
        # staying pinned to this one.
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(EXPERIMENT, artifact_location=artifact_location(uri)))
    except MlflowException:
        # Another process (a parallel test, a second notebook) created it first.
        existing = client.get_experiment_by_name(EXPERIMENT)
        if existing is None:
            raise
        return str(existing.experiment_id)


@contextmanager
def using_store(uri: str | None) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs set to ``uri`` for the block.

    MLflow resolves ``models:/<name>/<version>`` and ``models:/m-<id>`` URIs, and registers a
    version from a logged model, through clients built on its *global* URIs, whatever client or
    ``tracking_uri`` argument the caller passes. Without this, a stage kernel (or JupyterLab,
    started in ``notebooks/``) would look for the model in ``./mlflow.db`` of its working
    directory. The previous global URIs and the variables MLflow mirrors them into are put
    back afterwards. ``None`` changes nothing.
    """
    if uri is None:
        yield
        return
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    # The explicitly set values (None when unset), not MLflow's resolved defaults.
    before = (
        getattr(tracking_state, "_tracking_uri", None),
        getattr(registry_state, "_registry_uri", None),
    )
    with scoped_environment(keep=_MIRRORED_VARIABLES):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before[0])  # type: ignore[arg-type]
            mlflow.set_registry_uri(before[1])  # type: ignore[arg-type]


def load_trained(model_uri: str, tracking_uri: str | None) -> TrainedModel:
    """The trained model behind an MLflow model URI, loaded as serving loads it (the pyfunc).

    The model's files are downloaded from ``tracking_uri`` explicitly, so MLflow's current
    (global) tracking URI does not decide which store a model comes from.

    Args:
        model_uri: ``models:/CreditRiskPD/3``, ``models:/m-<id>`` or ``runs:/<id>/model``.
        tracking_uri: The tracking (and registry) store holding it (None: MLflow's current).
    """
    import mlflow

    with _model_copy(model_uri, tracking_uri) as local:
        loaded = mlflow.pyfunc.load_model(str(local))
        # The model reads every file it needs when it loads: the copy may go afterwards.
        trained: TrainedModel = loaded.unwrap_python_model().trained
    return trained


@contextmanager
def _model_copy(model_uri: str, tracking_uri: str | None) -> Iterator[Path]:
    """The model's files copied into a temporary folder, removed after the block.

    Downloading a registered version from a local artifact store without a destination hands
    back the store's own folder, and MLflow then writes ``registered_model_meta`` into it: every
    load would rewrite a file of the registered model. A copy keeps the store read-only.
    """
    import tempfile

    import mlflow

    quiet_artifact_downloads()
    with tempfile.TemporaryDirectory(prefix="creditrisk-model-") as scratch:
        with using_store(tracking_uri):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri,
                dst_path=scratch,
                tracking_uri=tracking_uri,
                registry_uri=tracking_uri,
            )
        yield Path(local)


def model_metadata(model_uri: str, tracking_uri: str | None) -> Any:
    """The logged model's ``MLmodel`` (``mlflow.models.Model``: signature, input example, …)."""
    from mlflow.models import Model

    with _model_copy(model_uri, tracking_uri) as local:
        return Model.load(str(local))


def run_artifacts(run_id: str, tracking_uri: str, path: str | None = None) -> set[str]:
    """The artifact paths directly under ``path`` of a run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    return {entry.path for entry in client.list_artifacts(run_id, path)}


def load_run_dict(run_id: str, name: str, tracking_uri: str | None) -> dict[str, Any]:
    """A JSON artifact of a run, e.g. ``decision_policy.json``."""
    import json

    import mlflow

    quiet_artifact_downloads()
    with using_store(tracking_uri):
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{run_id}/{name}", tracking_uri=tracking_uri
        )
    loaded: dict[str, Any] = json.loads(Path(local).read_text(encoding="utf-8"))
    return loaded


def log_to_run(
    run_id: str,
    tracking_uri: str,
    *,
    tags: Mapping[str, str] | None = None,
    files: Sequence[Path] = (),
    dicts: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    artifact_path: str | None = None,
) -> None:
    """Add tags, metrics, files and JSON documents to an existing (finished) MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    if metrics:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    for name, payload in (dicts or {}).items():
        client.log_dict(run_id, payload, name)


def attach_audit_record(
    mlflow_run_id: str,
    files: list[Path],
    tracking_uri: str,
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
    folder = f"{AUDIT_ARTIFACT_DIR}/{pipeline_run_id}"
    log_to_run(
        mlflow_run_id,
        tracking_uri,
        files=files,
        dicts={f"{folder}/{results_name}": results} if results is not None else None,
        artifact_path=folder,
    )
    return folder


def end_orphaned_runs(tracking_uri: str, pipeline_run_id: str) -> list[str]:
    """Mark ``KILLED`` the MLflow runs a killed pipeline run left ``RUNNING``.

    Returns:
        The MLflow run ids marked.
    """
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    quoted = pipeline_run_id.replace("'", "")
    orphans = client.search_runs(
        experiments,
        filter_string=f"tags.pipeline_run_id = '{quoted}' and attributes.status = 'RUNNING'",
        run_view_type=ViewType.ALL,
    )
    for run in orphans:
        client.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_id for run in orphans]
