"""Stages 05 (validate) and 06 (register) on a real model in a real SQLite MLflow registry.

One model is trained and evaluated per module by the train and evaluate stages themselves, on
the `small` synthetic snapshot; every test works on its own copy of that workspace (its own
``mlflow.db``, ledger and reports), so the registry starts empty in each.
"""

# The fixtures are imported from modeling_fixtures and injected by name (see test_modeling.py).
# ruff: noqa: F811

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from modeling_fixtures import ModelingData, modeling_data, modeling_snapshot, params  # noqa: F401

from creditrisk import registry
from creditrisk.governance import GateFailure, GateThresholds
from creditrisk.io import read_json, write_json
from creditrisk.modeling.release import (
    RegisterStageParams,
    RegistrationRefused,
    ValidateStageParams,
    run_register,
    run_validate,
)
from creditrisk.modeling.stages import (
    EvaluateStageParams,
    TrainStageParams,
    read_training_run,
    run_evaluate,
    run_train,
)
from creditrisk.modeling.train import TrainParams
from creditrisk.pipeline.fingerprints import file_sha256
from creditrisk.settings import Workspace

pytestmark = pytest.mark.xdist_group("release")

PIPELINE_RUN_ID = "20261122T000000Z-releasetest"

#: Canary limits no pair of sensible models breaks, for tests about what follows the canary.
LOOSE_CANARY = GateThresholds(
    max_approval_rate_change=1.0, max_mean_pd_change=1.0, max_score_psi=10.0
)


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each workspace's own SQLite store; MLflow's global URIs unset afterwards."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("CREDITRISK_RUN_ID", PIPELINE_RUN_ID)
    yield
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def _train_and_evaluate(workspace: Workspace, model: TrainParams) -> None:
    run_train(TrainStageParams(model=model), workspace)
    run_evaluate(EvaluateStageParams(reason_examples=0), workspace)


@pytest.fixture(scope="module")
def evaluated(modeling_data: ModelingData, params: TrainParams) -> Workspace:
    """Stages 03 and 04 run once on the module's workspace (default parameters)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        _train_and_evaluate(modeling_data.workspace, params)
    return modeling_data.workspace


@pytest.fixture
def workspace(evaluated: Workspace, tmp_path: Path) -> Workspace:
    """A private copy of the evaluated workspace: its registry, reports and ledger are its own.

    The copied store keeps the original's artifact location, so the model files are shared
    (read-only here); everything the stages under test write lands in the copy or the run.
    """
    home = tmp_path / "ws"
    shutil.copytree(evaluated.home, home)
    return Workspace(home)


def gates_by_name(report: dict) -> dict[str, dict]:
    return {gate["name"]: gate for gate in report["gates"]}


def champion_version() -> str | None:
    champion = registry.current_champion()
    return None if champion is None else str(champion.version)


# ---------------------------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------------------------


def test_a_good_model_passes_every_gate_and_the_report_lists_them(workspace: Workspace) -> None:
    outcome = run_validate(ValidateStageParams(), workspace)

    assert outcome.passed, outcome.table()
    report = read_json(workspace.reports / "validation.json")
    assert report["passed"] is True and report["failed"] == []
    gates = gates_by_name(report)
    metrics = read_json(workspace.reports / "metrics.json")["metrics"]
    assert gates["auc"]["value"] == pytest.approx(metrics["test_auc"])
    assert gates["auc"]["threshold"] == 0.70 and gates["auc"]["comparison"] == ">="
    assert gates["ece"]["threshold"] == 0.03 and gates["ks"]["threshold"] == 0.25
    assert gates["train_test_auc_gap"]["value"] == pytest.approx(metrics["train_test_auc_gap"])
    for name in (
        "artefact:feature_store",
        "artefact:test_split",
        "artefact:metrics",
        "artefact:evaluation_plots",
        "model:signature",
        "model:input_example",
        "run_artefact:decision_policy.json",
        "mlflow_consistency",
        "ingestion_contracts",
    ):
        assert gates[name]["passed"] is True, name
    assert report["mlflow_run_id"] == read_training_run(workspace)["mlflow_run_id"]
    assert report["thresholds"]["min_auc"] == 0.70
    # No champion yet: the canary is skipped, and says so.
    assert report["canary"]["evaluated"] is False
    assert "no champion" in report["canary"]["skipped"]
    assert not any(name.startswith("canary") for name in gates)


def test_a_failed_gate_stops_the_pipeline_and_nothing_is_registered(
    workspace: Workspace,
) -> None:
    strict = ValidateStageParams(thresholds=GateThresholds(min_auc=0.99, max_ece=0.0001))

    outcome = run_validate(strict, workspace)

    assert not outcome.passed
    assert set(outcome.report["failed"]) == {"auc", "ece"}
    assert read_json(workspace.reports / "validation.json")["passed"] is False
    with pytest.raises(GateFailure, match=r"auc: 0\.\d+ \(required >= 0\.99\) FAILED"):
        outcome.raise_for_failures()
    with pytest.raises(RegistrationRefused, match="failed validation"):
        run_register(RegisterStageParams(), workspace)
    assert registry.version_for_run(outcome.report["mlflow_run_id"]) is None
    assert champion_version() is None
    assert registry.read_ledger(registry.ledger_path_for(workspace)) == []


def _stale_evaluation(workspace: Workspace) -> None:
    report = read_json(workspace.reports / "metrics.json")
    write_json(workspace.reports / "metrics.json", {**report, "mlflow_run_id": "0" * 32})


def _edited_metric(workspace: Workspace) -> None:
    report = read_json(workspace.reports / "metrics.json")
    report["metrics"]["test_auc"] += 0.01  # a report that no longer matches the logged run
    write_json(workspace.reports / "metrics.json", report)


def _missing_plots(workspace: Workspace) -> None:
    shutil.rmtree(workspace.reports / "evaluation")


def _missing_test_split(workspace: Workspace) -> None:
    (workspace.splits / "test.parquet").unlink()


def _failed_contracts(workspace: Workspace) -> None:
    summary = read_json(workspace.ingestion_summary)
    summary["contracts_passed"] = False
    summary["tables"]["bureau"]["contract"]["status"] = "failed"
    write_json(workspace.ingestion_summary, summary)


@pytest.mark.parametrize(
    ("damage", "gate", "detail"),
    [
        (_stale_evaluation, "evaluation_of_this_model", "0" * 32),
        (_edited_metric, "mlflow_consistency", "test_auc"),
        (_missing_plots, "artefact:evaluation_plots", "does not exist"),
        (_missing_test_split, "artefact:test_split", "does not exist"),
        (_failed_contracts, "ingestion_contracts", "bureau"),
    ],
    ids=["stale-evaluation", "edited-metric", "missing-plots", "missing-split", "failed-contracts"],
)
def test_each_governance_check_catches_its_defect(
    workspace: Workspace, damage, gate: str, detail: str
) -> None:
    damage(workspace)

    outcome = run_validate(ValidateStageParams(), workspace)

    gates = gates_by_name(outcome.report)
    assert gates[gate]["passed"] is False
    assert detail in gates[gate]["detail"]
    assert gate in outcome.report["failed"]
    with pytest.raises(GateFailure, match=gate):
        outcome.raise_for_failures()


# ---------------------------------------------------------------------------------------------
# register
# ---------------------------------------------------------------------------------------------


def test_register_promotes_the_first_model_and_leaves_an_audit_trail(
    workspace: Workspace,
) -> None:
    import mlflow

    run_validate(ValidateStageParams(), workspace)
    training = read_training_run(workspace)

    outcome = run_register(RegisterStageParams(), workspace)

    assert outcome.version == "1" and outcome.newly_registered and outcome.promoted
    assert outcome.champion_version == "1" and outcome.previous_champion is None
    assert champion_version() == "1"
    assert registry.version_for_run(training["mlflow_run_id"]) == "1"
    # The ledger: registration (challenger) then promotion (champion), both with the gates.
    ledger = registry.read_ledger(registry.ledger_path_for(workspace))
    assert [(r.action, r.alias, r.version) for r in ledger] == [
        ("register", "challenger", "1"),
        ("promote", "champion", "1"),
    ]
    assert all(r.validation_passed and r.gates for r in ledger)
    assert ledger[1].pipeline_run_id == PIPELINE_RUN_ID and "all" in ledger[1].reason
    promotion = read_json(workspace.reports / "registry_promotion.json")
    assert promotion["action"] == "promote" and promotion["version"] == "1"
    assert promotion["champion_uri"] == "models:/CreditRiskPD@champion"

    # Lineage: every link is what is on disk and in MLflow.
    lineage = read_json(workspace.reports / "lineage.json")
    summary = read_json(workspace.ingestion_summary)
    assert lineage["data"]["snapshot_id"] == summary["snapshot_id"]
    assert lineage["data"]["tables"]["bureau"]["sha256"] == summary["tables"]["bureau"]["sha256"]
    assert lineage["features"]["sha256"] == file_sha256(workspace.feature_store)
    assert lineage["splits"]["test"]["sha256"] == file_sha256(workspace.splits / "test.parquet")
    assert lineage["mlflow"]["run_id"] == training["mlflow_run_id"]
    assert lineage["model"] == {
        "name": "CreditRiskPD",
        "version": "1",
        "uri": "models:/CreditRiskPD/1",
    }
    assert lineage["pipeline_run"]["run_id"] == PIPELINE_RUN_ID

    # The model card names the version and shows the measured performance.
    card = (workspace.reports / "model_card.html").read_text()
    metrics = read_json(workspace.reports / "metrics.json")["metrics"]
    assert "Model card — CreditRiskPD v1" in card
    assert f"{metrics['test_auc']:.4f}"[:5] in card
    assert "data:image/png;base64," in card and "<script" not in card

    # Serving's view: the champion alias loads and returns the evaluated PDs.
    mlflow.set_tracking_uri(workspace.mlflow_uri)
    test = pd.read_parquet(workspace.splits / "test.parquet")
    served = mlflow.pyfunc.load_model(registry.champion_uri())
    pd_served = np.asarray(served.predict(test.head(200))).ravel()
    trained = served.unwrap_python_model().trained  # type: ignore[attr-defined]
    np.testing.assert_allclose(pd_served, trained.predict_pd(test.head(200)), atol=1e-12)
    # The run in MLflow carries the audit records.
    client = mlflow.MlflowClient()
    logged = {a.path for a in client.list_artifacts(training["mlflow_run_id"])}
    assert {"validation.json", "lineage.json", "model_card.html"} <= logged
    tags = client.get_run(training["mlflow_run_id"]).data.tags
    assert tags["validation_passed"] == "true" and tags["registered_version"] == "1"


def test_rerunning_register_reuses_the_version(workspace: Workspace) -> None:
    run_validate(ValidateStageParams(), workspace)
    run_register(RegisterStageParams(), workspace)

    again = run_register(RegisterStageParams(), workspace)

    assert again.version == "1" and not again.newly_registered and not again.promoted
    assert champion_version() == "1"
    assert len(registry.read_ledger(registry.ledger_path_for(workspace))) == 2


def test_register_refuses_a_model_validated_for_another_run(workspace: Workspace) -> None:
    run_validate(ValidateStageParams(), workspace)
    report = read_json(workspace.reports / "validation.json")
    write_json(workspace.reports / "validation.json", {**report, "mlflow_run_id": "f" * 32})

    with pytest.raises(RegistrationRefused, match="run the validate stage"):
        run_register(RegisterStageParams(), workspace)
    assert champion_version() is None


def test_challenger_faces_the_canary_then_promotion_and_rollback(
    workspace: Workspace, params: TrainParams
) -> None:
    run_validate(ValidateStageParams(), workspace)
    first = run_register(RegisterStageParams(), workspace)
    champion_run = read_training_run(workspace)["mlflow_run_id"]
    # A second model on the same data: another seed and shallower trees.
    _train_and_evaluate(workspace, params.model_copy(update={"seed": 7, "max_depth": 3}))
    challenger_run = read_training_run(workspace)["mlflow_run_id"]
    assert challenger_run != champion_run

    # A canary that tolerates no change at all fails, and the champion stays.
    frozen = GateThresholds(max_approval_rate_change=0.0, max_mean_pd_change=0.0)
    blocked = run_validate(ValidateStageParams(thresholds=frozen), workspace)
    assert not blocked.passed
    assert {"canary_mean_pd_change"} <= set(blocked.report["failed"])
    canary = blocked.report["canary"]
    assert canary["evaluated"] and canary["champion_version"] == first.version
    assert canary["champion_run_id"] == champion_run
    assert canary["n_applicants"] == len(pd.read_parquet(workspace.splits / "test.parquet"))
    assert abs(canary["challenger_mean_pd"] - canary["champion_mean_pd"]) > 0
    psi_rows = blocked.report["canary_psi_table"]
    assert len(psi_rows) == 10 and psi_rows[0]["lower"] is None  # open outer bin
    assert sum(row["expected_count"] for row in psi_rows) == canary["n_applicants"]
    with pytest.raises(RegistrationRefused):
        run_register(RegisterStageParams(), workspace)
    assert champion_version() == "1"

    # Within tolerance: registered as challenger; without auto-promotion the champion stays.
    passed = run_validate(ValidateStageParams(thresholds=LOOSE_CANARY), workspace)
    assert passed.passed, passed.table()
    gates = gates_by_name(passed.report)
    assert 0 < gates["canary_score_psi"]["value"] < 10
    manual = run_register(RegisterStageParams(auto_promote=False), workspace)
    assert manual.version == "2" and not manual.promoted
    assert champion_version() == "1"
    assert manual.record.action == "register" and manual.record.alias == "challenger"
    assert read_json(workspace.reports / "registry_promotion.json")["action"] == "register"

    # By hand, as `creditrisk promote` / `creditrisk rollback` do it.
    promoted = registry.promote_version(workspace, "2", reason="reviewed by model risk")
    assert promoted.previous_champion == "1" and champion_version() == "2"
    rolled_back = registry.rollback_champion(workspace, reason="smoke test failed")
    assert rolled_back.version == "1" and champion_version() == "1"
    actions = [
        (r.action, r.version) for r in registry.read_ledger(registry.ledger_path_for(workspace))
    ]
    assert actions == [
        ("register", "1"),
        ("promote", "1"),
        ("register", "2"),
        ("promote", "2"),
        ("rollback", "1"),
    ]


def test_validation_report_is_strict_json(workspace: Workspace) -> None:
    run_validate(ValidateStageParams(), workspace)
    text = (workspace.reports / "validation.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
