"""Fixtures for the modelling tests: a real `small` feature store and models trained on it once.

`small` (30,000 labelled applicants) rather than `tiny`: with tiny's 400 test applicants and
~35 defaults, the test AUC of the full and the application-only model differ by less than
their noise, and a reliability table by decile has ~3 defaults per bin. The snapshot is built
once per session (about 12-15 s on 2 cores), the two models once per module (about 5 s).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from creditrisk.features import catalog
from creditrisk.modeling.model import TrainedModel, TrainParams
from creditrisk.modeling.split import Splits, split_applicants
from creditrisk.modeling.train import train_model
from creditrisk.settings import Settings, Workspace

MODELING_SEED = 11


@dataclass(frozen=True)
class ModelingData:
    """A private workspace holding the feature store and the ingestion summary."""

    workspace: Workspace
    features: pd.DataFrame


def _build_snapshot(home: Path) -> None:
    """Synthetic `small` snapshot → ingest → feature store, in the workspace ``home``."""
    from creditrisk.data import synthetic
    from creditrisk.data.ingest import ingest
    from creditrisk.features.engine import build_feature_store
    from creditrisk.io import write_json

    workspace = Workspace(home)
    synthetic.generate(workspace.raw, size="small", seed=MODELING_SEED)
    summary = ingest(
        str(workspace.raw), workspace.bronze, work_dir=workspace.data, echo=lambda _: None
    )
    write_json(workspace.ingestion_summary, summary)
    build_feature_store(workspace.bronze, workspace.feature_store)


@pytest.fixture(scope="session")
def modeling_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The shared, read-only snapshot workspace, built once per test session.

    Under pytest-xdist every worker would otherwise build its own copy (xdist_group does not
    keep this module on one worker with the installed pytest/xdist), so the first worker builds
    it in the session's shared temporary folder and the others wait on a file lock.
    """
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        home = tmp_path_factory.mktemp("modeling_snapshot")
        _build_snapshot(home)
        return Workspace(home)
    shared = tmp_path_factory.getbasetemp().parent  # this session's folder, common to workers
    home = shared / "modeling_snapshot"
    with FileLock(str(shared / "modeling_snapshot.lock")):
        if not (home / "BUILT").exists():
            _build_snapshot(home)
            (home / "BUILT").touch()
    return Workspace(home)


@pytest.fixture(scope="module")
def modeling_data(
    modeling_snapshot: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> ModelingData:
    """A private workspace holding the snapshot's feature store and ingestion summary."""
    workspace = Workspace(tmp_path_factory.mktemp("modeling_workspace"))
    for source, target in (
        (modeling_snapshot.feature_store, workspace.feature_store),
        (modeling_snapshot.ingestion_summary, workspace.ingestion_summary),
    ):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return ModelingData(workspace=workspace, features=pd.read_parquet(workspace.feature_store))


@pytest.fixture(scope="module")
def splits(modeling_data: ModelingData) -> Splits:
    return split_applicants(modeling_data.features, test_share=0.2, seed=42)


@pytest.fixture(scope="module")
def params() -> TrainParams:
    """Default parameters; one XGBoost thread per xdist worker (two busy-waiting thread pools
    on two cores make training several times slower)."""
    return TrainParams(n_jobs=1 if os.environ.get("PYTEST_XDIST_WORKER") else 0)


@pytest.fixture(scope="module")
def trained(splits: Splits, params: TrainParams) -> TrainedModel:
    """The full model (every feature), default parameters."""
    return train_model(splits.train, params)


@pytest.fixture(scope="module")
def trained_application_only(splits: Splits, params: TrainParams) -> TrainedModel:
    """The same model without the credit-history tables (application features only)."""
    application = [f.name for f in catalog.FEATURES if f.group == "application"]
    return train_model(splits.train, params, features=application)


PIPELINE_RUN_ID = "20261122T000000Z-modeltest"


def settings_for(workspace: Workspace) -> Settings:
    """Settings of a test workspace: its own SQLite store, whatever the caller's environment."""
    return Settings(home=workspace.home, mlflow={"tracking_uri": None})


@dataclass(frozen=True)
class LoggedRun:
    """A training run logged into the modelling workspace's own SQLite store."""

    run_id: str
    model_uri: str
    splits_info: dict[str, dict[str, Any]]
    workspace: Workspace


@pytest.fixture(scope="module")
def logged_run(
    modeling_data: ModelingData, splits: Splits, trained: TrainedModel
) -> Iterator[LoggedRun]:
    """Save the splits and log the full model, as the train stage's ``log`` step does.

    MLflow's global tracking and registry URIs are unset afterwards.
    """
    import mlflow

    from creditrisk.stages import train
    from creditrisk.stages.context import governed

    workspace = modeling_data.workspace
    params = train.Params()
    with governed(settings_for(workspace), PIPELINE_RUN_ID) as context:
        ctx = context("train")
        files = train.save_splits(splits, ctx.outputs.splits, relative_to=ctx.outputs.home)
        outcome = train.log(params, ctx, trained, train.SplitOutcome(splits, files))
    try:
        yield LoggedRun(outcome.mlflow_run_id, outcome.model_uri, files, workspace)
    finally:
        # Unset, not "restored" to the default: MLflow's default is sqlite:///mlflow.db in
        # the working directory, and a registry pinned there outlives this module.
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
