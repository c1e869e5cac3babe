"""Stages 05 (validate) and 06 (register) on a real model in a real SQLite MLflow registry.

One model is trained and evaluated per module by the train and evaluate stages themselves, on
the `small` synthetic snapshot; every test works on its own copy of that workspace (its own
``mlflow.db``, ledger and reports), so the registry starts empty in each. Every stage runs in
pipeline mode, holding the workspace lock for the run id (``governed``).
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
from modeling_fixtures import (  # noqa: F401
    ModelingData,
    modeling_data,
    modeling_snapshot,
    params,
    settings_for,
)

from creditrisk import registry
from creditrisk.governance import GateFailure
from creditrisk.io import read_json, write_json
from creditrisk.modeling.model import TrainParams
from creditrisk.modeling.train import train_model
from creditrisk.provenance import file_sha256
from creditrisk.scoring import Scorer
from creditrisk.settings import Workspace
from creditrisk.stages import evaluate, register, train, validate
from creditrisk.stages.context import governed
from creditrisk.stages.register import RegistrationRefused

pytestmark = pytest.mark.xdist_group("release")

PIPELINE_RUN_ID = "20261122T000000Z-releasetest"

#: Canary limits no pair of sensible models breaks, for tests about what follows the canary.
LOOSE_CANARY = {"max_approval_rate_change": 1.0, "max_mean_pd_change": 1.0, "max_score_psi": 10.0}


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each workspace's own SQLite store; MLflow's global URIs unset afterwards."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    yield
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def _train_and_evaluate(
    workspace: Workspace, model: TrainParams, train_params: train.Params | None = None
) -> None:
    """Stages 03 and 04 in pipeline mode; ``model`` as the trainer's hyper-parameters."""
    train_params = train_params or train.Params()
    with governed(settings_for(workspace), PIPELINE_RUN_ID) as context:
        ctx = context("train")
        splits = train.split(train_params, ctx)
        train.log(train_params, ctx, train_model(splits.splits.train, model), splits)
        evaluate.run(evaluate.Params(reason_examples=0), context("evaluate"))


def run_evaluate(workspace: Workspace, params: evaluate.Params) -> evaluate.Outcome:
    with governed(settings_for(workspace), PIPELINE_RUN_ID) as context:
        return evaluate.run(params, context("evaluate"))


def run_validate(workspace: Workspace, params: validate.Params | None = None) -> validate.Outcome:
    with governed(settings_for(workspace), PIPELINE_RUN_ID) as context:
        return validate.run(params or validate.Params(), context("validate"))


def run_register(workspace: Workspace, params: register.Params | None = None) -> register.Outcome:
    with governed(settings_for(workspace), PIPELINE_RUN_ID) as context:
        return register.run(params or register.Params(), context("register"))


@pytest.fixture(scope="module")
def evaluated(modeling_data: ModelingData, params: TrainParams) -> Workspace:
    """Stages 03 and 04 run once on the module's workspace (default parameters).

    MLflow's global URIs are unset afterwards, as in the fresh kernel each stage runs in: the
    stages under test must find the store through their context alone.
    """
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        _train_and_evaluate(modeling_data.workspace, params)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]
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


def champion_version(workspace: Workspace) -> str | None:
    champion = registry.current_champion(tracking_uri=workspace.mlflow_uri)
    return None if champion is None else str(champion.version)


def ledger(workspace: Workspace) -> list[registry.PromotionRecord]:
    return registry.read_ledger(workspace.reports / registry.LEDGER_FILE)


def read_training_run(workspace: Workspace) -> dict:
    return train.read_training_run(workspace.reports)


# ---------------------------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------------------------


def test_a_good_model_passes_every_gate_and_the_report_lists_them(workspace: Workspace) -> None:
    outcome = run_validate(workspace)

    assert outcome.passed, outcome.table()
    report = read_json(workspace.reports / "validation.json")
    assert report["passed"] is True and report["failed"] == []
    assert report["n_gates"] == len(report["gates"]) == 21  # no canary without a champion
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
        "decision_policy:logged",
        "mlflow_consistency",
        "ingestion_contracts",
    ):
        assert gates[name]["passed"] is True, name
    assert report["mlflow_run_id"] == read_training_run(workspace)["mlflow_run_id"]
    assert report["thresholds"]["min_auc"] == 0.70
    assert report["mode"] == "pipeline" and report["pipeline_run_id"] == PIPELINE_RUN_ID
    evaluation = read_json(workspace.reports / "metrics.json")
    assert report["decision_policy"] == evaluation["decision_policy"]
    assert report["policy_followed"] is True and report["synthetic_data"] is not None
    # No champion yet: the canary is skipped, and says so.
    assert report["canary"]["evaluated"] is False
    assert "no champion" in report["canary"]["skipped"]
    assert not any(name.startswith("canary") for name in gates)


def test_a_failed_gate_stops_the_pipeline_and_nothing_is_registered(
    workspace: Workspace,
) -> None:
    strict = validate.Params(min_auc=0.99, max_ece=0.0001)

    outcome = run_validate(workspace, strict)

    assert not outcome.passed
    assert set(outcome.report["failed"]) == {"auc", "ece"}
    assert read_json(workspace.reports / "validation.json")["passed"] is False
    with pytest.raises(GateFailure, match=r"auc: 0\.\d+ \(required >= 0\.99\) FAILED"):
        outcome.raise_for_failures()
    with pytest.raises(RegistrationRefused, match="failed validation"):
        run_register(workspace)
    uri = workspace.mlflow_uri
    assert registry.version_for_run(outcome.report["mlflow_run_id"], tracking_uri=uri) is None
    assert champion_version(workspace) is None
    assert ledger(workspace) == []


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

    outcome = run_validate(workspace)

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

    run_validate(workspace)
    training = read_training_run(workspace)

    outcome = run_register(workspace)

    assert outcome.version == "1" and outcome.registration.newly_registered and outcome.promoted
    assert outcome.champion_version == "1" and outcome.previous_champion is None
    assert champion_version(workspace) == "1"
    uri = workspace.mlflow_uri
    assert registry.version_for_run(training["mlflow_run_id"], tracking_uri=uri) == "1"
    # The ledger: registration (challenger) then promotion (champion), both with the gates.
    records = ledger(workspace)
    assert [(r.action, r.alias, r.version) for r in records] == [
        ("register", "challenger", "1"),
        ("promote", "champion", "1"),
    ]
    assert all(r.validation_passed and r.gates for r in records)
    validation = read_json(workspace.reports / "validation.json")
    assert records[1].pipeline_run_id == PIPELINE_RUN_ID
    assert records[1].reason == (
        f"auto-promotion of version 1 by pipeline run {PIPELINE_RUN_ID}: all 21 governance "
        "gates passed at the documented policy; trained on synthetic data"
    )
    # The policy was followed (fewer reason examples is operational, not policy), the data
    # were synthetic, and the ledger says both.
    assert validation["policy_followed"] is True
    operational = [("evaluate", "reason_examples", "operational")]
    kinds = [(d["stage"], d["parameter"], d["kind"]) for d in validation["deviations"]]
    assert kinds == operational
    assert validation["synthetic_data"] is not None
    assert all([(d.stage, d.parameter, d.kind) for d in r.deviations] == kinds for r in records)
    assert all(r.synthetic_data == validation["synthetic_data"] for r in records)
    assert all(r.decision_policy == validation["decision_policy"] for r in records)
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
    assert "All gates passed at the documented policy" in card

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
    # The decision policy serving uses is the one frozen on the version at registration.
    scorer = Scorer.load(tracking_uri=workspace.mlflow_uri)
    policy = read_json(workspace.reports / "metrics.json")["decision_policy"]
    assert scorer.info.version == "1" and scorer.info.policy_source == "registry version"
    assert scorer.info.threshold == pytest.approx(policy["decision"]["threshold"])


def test_rerunning_register_reuses_the_version(workspace: Workspace) -> None:
    run_validate(workspace)
    run_register(workspace)

    again = run_register(workspace)

    assert again.version == "1" and not again.registration.newly_registered and not again.promoted
    assert champion_version(workspace) == "1"
    assert len(ledger(workspace)) == 2


def test_the_same_run_with_another_cut_off_is_a_new_version(
    workspace: Workspace, params: TrainParams
) -> None:
    """The same trees deciding at another cut-off are another version; version 1 keeps its own."""
    # A run of this test's own: evaluating again rewrites the run's decision_policy.json, and
    # the module's run (its artifacts shared by every copy of the workspace) must stay as is.
    _train_and_evaluate(workspace, params)
    run_validate(workspace)
    first = run_register(workspace)
    run_id = read_training_run(workspace)["mlflow_run_id"]
    uri = workspace.mlflow_uri
    first_policy = read_json(workspace.reports / "metrics.json")["decision_policy"]

    # A higher margin per repaid loan: a higher break-even PD, so a higher cut-off.
    run_evaluate(workspace, evaluate.Params(margin=0.2, reason_examples=0))
    second_policy = read_json(workspace.reports / "metrics.json")["decision_policy"]
    new_cutoff = second_policy["decision"]["threshold"]
    assert new_cutoff > first_policy["decision"]["threshold"]
    passed = run_validate(workspace, validate.Params(**LOOSE_CANARY))
    assert passed.passed, passed.table()
    # The candidate is the champion's run at another cut-off: the canary compares them.
    assert passed.report["canary"]["evaluated"] is True
    assert passed.report["canary"]["champion_run_id"] == run_id

    second = run_register(workspace)

    assert first.version == "1"
    assert second.version == "2" and second.registration.newly_registered and second.promoted
    assert champion_version(workspace) == "2"
    client = registry.registry_client(uri)
    versions = {v: client.get_model_version("CreditRiskPD", v) for v in ("1", "2")}
    assert {v.run_id for v in versions.values()} == {run_id}
    assert registry.decision_policy_of(versions["1"]) == first_policy
    assert registry.decision_policy_of(versions["2"]) == second_policy
    assert registry.version_for_run(run_id, tracking_uri=uri, decision_policy=first_policy) == "1"
    assert registry.version_for_run(run_id, tracking_uri=uri, decision_policy=second_policy) == "2"
    # Version 1 still decides at its own cut-off, although its run now logs the new policy.
    old = Scorer.load("models:/CreditRiskPD/1", tracking_uri=uri)
    assert old.info.threshold == pytest.approx(first_policy["decision"]["threshold"])
    assert Scorer.load(tracking_uri=uri).info.threshold == pytest.approx(new_cutoff)
    # The ledger qualifies the second promotion: relaxed canary limits, an off-policy margin.
    promotion = ledger(workspace)[-1]
    assert (promotion.action, promotion.version) == ("promote", "2")
    assert promotion.decision_policy == second_policy
    assert {(d.stage, d.parameter, d.kind) for d in promotion.deviations} == {
        ("evaluate", "margin", "changed"),
        ("evaluate", "reason_examples", "operational"),
        ("validate", "max_approval_rate_change", "relaxed"),
        ("validate", "max_mean_pd_change", "relaxed"),
        ("validate", "max_score_psi", "relaxed"),
    }
    assert passed.report["n_gates"] == 24  # and the canary's three
    assert promotion.reason == (
        f"auto-promotion of version 2 by pipeline run {PIPELINE_RUN_ID}: all 24 governance "
        "gates passed, 3 at relaxed limits "
        "(max_approval_rate_change 1 (policy 0.05); max_mean_pd_change 1 (policy 0.02); "
        "max_score_psi 10 (policy 0.1)), 1 off-policy parameter(s) (evaluate.margin 0.2 "
        "(policy 0.1)); trained on synthetic data"
    )

    # The same policy again reuses its version.
    again = run_register(workspace)
    assert again.version == "2" and not again.registration.newly_registered and not again.promoted
    assert len(ledger(workspace)) == 4


def test_register_refuses_a_model_validated_for_another_run(workspace: Workspace) -> None:
    run_validate(workspace)
    report = read_json(workspace.reports / "validation.json")
    write_json(workspace.reports / "validation.json", {**report, "mlflow_run_id": "f" * 32})

    with pytest.raises(RegistrationRefused, match="run the validate stage"):
        run_register(workspace)
    assert champion_version(workspace) is None


def test_challenger_faces_the_canary_then_promotion_and_rollback(
    workspace: Workspace, params: TrainParams
) -> None:
    run_validate(workspace)
    first = run_register(workspace)
    champion_run = read_training_run(workspace)["mlflow_run_id"]
    # A second model on the same data: another seed and shallower trees.
    second = train.Params(seed=7, max_depth=3)
    model = second.model_params().model_copy(update={"n_jobs": params.n_jobs})
    _train_and_evaluate(workspace, model, second)
    challenger_run = read_training_run(workspace)["mlflow_run_id"]
    assert challenger_run != champion_run

    # A canary that tolerates no change at all fails, and the champion stays.
    frozen = validate.Params(max_approval_rate_change=0.0, max_mean_pd_change=0.0)
    blocked = run_validate(workspace, frozen)
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
        run_register(workspace)
    assert champion_version(workspace) == "1"

    # Within tolerance: registered as challenger; without auto-promotion the champion stays.
    passed = run_validate(workspace, validate.Params(**LOOSE_CANARY))
    assert passed.passed, passed.table()
    gates = gates_by_name(passed.report)
    assert 0 < gates["canary_score_psi"]["value"] < 10
    manual = run_register(workspace, register.Params(auto_promote=False))
    assert manual.version == "2" and not manual.promoted
    assert champion_version(workspace) == "1"
    assert manual.record.action == "register" and manual.record.alias == "challenger"
    assert read_json(workspace.reports / "registry_promotion.json")["action"] == "register"

    # By hand, as `creditrisk promote` / `creditrisk rollback` do it.
    with governed(settings_for(workspace), "20261122T000001Z-byhand") as context:
        promoted = register.promote_by_hand(context("register"), "2", "reviewed by model risk")
        assert promoted.previous_champion == "1" and champion_version(workspace) == "2"
        rolled_back = register.rollback_by_hand(context("register"), "smoke test failed")
    assert rolled_back.version == "1" and champion_version(workspace) == "1"
    actions = [(r.action, r.version) for r in ledger(workspace)]
    assert actions == [
        ("register", "1"),
        ("promote", "1"),
        ("register", "2"),
        ("promote", "2"),
        ("rollback", "1"),
    ]


def test_validation_report_is_strict_json(workspace: Workspace) -> None:
    run_validate(workspace)
    text = (workspace.reports / "validation.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
