"""The `creditrisk` command line: what `make data`, `make pipeline` and friends call."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from creditrisk.cli import app
from creditrisk.data import synthetic
from creditrisk.settings import Workspace

runner = CliRunner()


def test_generate_writes_into_the_workspace(workspace: Workspace) -> None:
    result = runner.invoke(app, ["generate", "--size", "150", "--seed", "3"])
    assert result.exit_code == 0, result.output
    marker = synthetic.read_marker(workspace.raw)
    assert marker is not None
    assert (marker["n_applicants"], marker["seed"]) == (150, 3)
    assert "150 applicants" in result.output


def test_generate_drift_writes_a_production_batch(workspace: Workspace) -> None:
    result = runner.invoke(app, ["generate", "--size", "200", "--drift", "--income-shift", "0.5"])
    assert result.exit_code == 0, result.output
    batch = workspace.data / "production"
    assert (batch / "application_test.csv").exists()
    assert (batch / "labels.csv").exists()
    assert not (batch / "application_train.csv").exists()
    drift = synthetic.read_marker(batch)["drift"]
    assert drift["income_shift"] == 0.5


def test_generate_refuses_to_overwrite_real_files(workspace: Workspace) -> None:
    workspace.raw.mkdir(parents=True)
    (workspace.raw / "application_train.csv").write_text("SK_ID_CURR\n1\n")
    result = runner.invoke(app, ["generate", "--size", "tiny"])
    assert result.exit_code == 1
    assert "not synthetic" in result.output
    assert (workspace.raw / "application_train.csv").read_text() == "SK_ID_CURR\n1\n"


def test_generate_rejects_an_unknown_size(workspace: Workspace) -> None:
    result = runner.invoke(app, ["generate", "--size", "huge"])
    assert result.exit_code != 0


def test_ingest_and_features_without_notebooks(raw_copy: Path, workspace: Workspace) -> None:
    result = runner.invoke(app, ["ingest", "--source", str(raw_copy)])
    assert result.exit_code == 0, result.output
    assert "snapshot" in result.output
    summary = json.loads(workspace.ingestion_summary.read_text())
    assert summary["tables"]["application_train"]["rows"] == 2000

    result = runner.invoke(app, ["features"])
    assert result.exit_code == 0, result.output
    assert pq.ParquetFile(workspace.feature_store).metadata.num_rows == 2317


def test_ingest_bad_input_exits_non_zero_with_the_reason(
    raw_copy: Path, workspace: Workspace
) -> None:
    (raw_copy / "application_train.csv").unlink()
    result = runner.invoke(app, ["ingest", "--source", str(raw_copy)])
    assert result.exit_code == 1
    assert "application_train: missing file" in result.output


def test_features_before_ingest_says_what_to_do(workspace: Workspace) -> None:
    result = runner.invoke(app, ["features"])
    # A clean refusal (exit 1, the reason on stderr), not a traceback.
    assert result.exit_code == 1, result.output
    assert "run the ingest stage first" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--only", "nonsense"], "nonsense"),
        (["run", "-p", "no_such_parameter=1"], "no_such_parameter"),
        (["run", "-p", "missing-equals-sign"], "missing-equals-sign"),
    ],
)
def test_run_rejects_bad_selection_and_overrides(
    workspace: Workspace, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (workspace.runs).exists() or not any(workspace.runs.iterdir())


def test_info_shows_the_workspace(workspace: Workspace) -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert str(workspace.feature_store) in result.output
    assert "champion" not in result.output  # no MLflow store in this workspace yet


def test_promote_and_rollback_move_the_champion(workspace: Workspace) -> None:
    """`creditrisk promote --version N` and `creditrisk rollback` on a real SQLite registry."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from creditrisk import registry, tracking
    from creditrisk.governance import metric_gates

    experiment_id = tracking.configure(workspace.mlflow_uri)
    gates = metric_gates({"test_auc": 0.8, "test_ks": 0.4, "test_ece": 0.01, "train_auc": 0.81})
    ledger = workspace.reports / registry.LEDGER_FILE
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)), rng.integers(0, 2, 60)
    versions = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment_id) as run:
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit(x, y),
                name="model",
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],
            )
        versions.append(
            registry.register(
                info.model_uri,
                run_id=run.info.run_id,
                gates=gates,
                tracking_uri=workspace.mlflow_uri,
                ledger_path=ledger,
            )
        )
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]

    def champion() -> str:
        found = registry.current_champion(tracking_uri=workspace.mlflow_uri)
        return str(found.version) if found else "none"

    for version in versions:
        result = runner.invoke(app, ["promote", "--version", str(version), "--reason", "test"])
        assert result.exit_code == 0, result.output
        assert champion() == str(version)
    result = runner.invoke(app, ["rollback", "--reason", "smoke test failed"])
    assert result.exit_code == 0, result.output
    assert champion() == str(versions[0])
    assert f"version {versions[0]}" in result.output
    shown = runner.invoke(app, ["info"])
    assert f"models:/CreditRiskPD@champion → version {versions[0]}" in shown.output
    actions = [line["action"] for line in map(json.loads, ledger.read_text().splitlines())]
    assert actions[-3:] == ["promote", "promote", "rollback"]
    report = json.loads((workspace.reports / "registry_promotion.json").read_text())
    assert report["action"] == "rollback"

    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 1
    assert "rollback refused" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["ingest"],
        ["features"],
        ["monitor"],
        ["freshness"],
        ["manifest"],
        ["promote", "--version", "1"],
        ["rollback"],
    ],
    ids=lambda args: args[0],
)
def test_commands_that_change_the_workspace_are_refused_while_a_run_holds_it(
    workspace: Workspace, args: list[str]
) -> None:
    """Another run (e.g. the pipeline) holds the workspace lock: refused with exit 3, naming
    the holder, and nothing is written."""
    from creditrisk.pipeline.runner import _workspace_lock

    with _workspace_lock(workspace, "20261122T000000Z-running"):
        result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    assert "in use by run 20261122T000000Z-running" in result.output
    assert not workspace.reports.exists() and not workspace.data.exists()
    assert not workspace.mlflow_db.exists()
