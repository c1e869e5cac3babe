"""Registry aliases, promotion, rollback and the promotion ledger, on a real SQLite MLflow store.

Each test gets its own store (a copy of one migrated empty database, so the schema is created
once per session) and logs small real scikit-learn models into it.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from creditrisk import registry, tracking
from creditrisk.governance import consistency_gate, metric_gates
from creditrisk.governance.deviations import Deviation
from creditrisk.registry import (
    LedgerError,
    PromotionRecord,
    PromotionRefused,
    RegistryError,
    champion_uri,
    current_champion,
    promote,
    read_ledger,
    register,
    rollback,
    run_metrics,
)
from creditrisk.settings import Settings, Workspace
from creditrisk.stages import register as register_stage
from creditrisk.stages.context import NotInPipeline, RunContext, governed

GOOD_METRICS = {"test_auc": 0.78, "test_ks": 0.42, "test_ece": 0.01, "train_auc": 0.80}
WEAK_METRICS = {"test_auc": 0.61, "test_ks": 0.18, "test_ece": 0.01, "train_auc": 0.63}
HIGH_RISK_APPLICANT = np.array([[2.0]])


@dataclass
class Store:
    uri: str
    experiment_id: str
    ledger: Path

    def log_model(
        self, *, risk_rises_with_x: bool = True, metrics: dict[str, float] | None = None
    ) -> tuple[str, str]:
        """Train and log a one-feature logistic PD model; return (model URI, run id)."""
        import mlflow
        from sklearn.linear_model import LogisticRegression

        x = np.linspace(-2, 2, 40).reshape(-1, 1)
        default = (x[:, 0] > 0).astype(int)
        model = LogisticRegression().fit(x, default if risk_rises_with_x else 1 - default)
        with mlflow.start_run(experiment_id=self.experiment_id) as run:
            mlflow.log_metrics(metrics or GOOD_METRICS)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],  # skips slow requirement inference
                pyfunc_predict_fn="predict_proba",
            )
        return info.model_uri, run.info.run_id

    def register(self, *, passed: bool = True, **options: object) -> str:
        model_uri, run_id = self.log_model(**options)  # type: ignore[arg-type]
        gates = metric_gates(GOOD_METRICS if passed else WEAK_METRICS)
        return register(model_uri, run_id=run_id, gates=gates, ledger_path=self.ledger)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema created (the migrations take seconds)."""
    from mlflow import MlflowClient

    database = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{database}").search_experiments()
    return database


def open_store(
    empty_store: Path, directory: Path, uri: str, monkeypatch: pytest.MonkeyPatch
) -> Store:
    import mlflow

    shutil.copyfile(empty_store, directory / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("CREDITRISK_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment(
        "creditrisk_pd", artifact_location=(directory / "artifacts").as_uri()
    )
    return Store(uri, experiment_id, directory / "reports" / "promotion_ledger.jsonl")


@pytest.fixture
def store(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    import mlflow

    yield open_store(empty_store, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", monkeypatch)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets it (and the env var)


@pytest.fixture
def workspace_store(
    empty_store: Path, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    import mlflow

    yield open_store(empty_store, workspace.home, workspace.mlflow_uri, monkeypatch)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets it (and the env var)


def aliases(model_name: str = "CreditRiskPD") -> dict[str, str]:
    from mlflow import MlflowClient

    registered = MlflowClient().get_registered_model(model_name)
    return {alias: str(version) for alias, version in registered.aliases.items()}


def champion_pd() -> float:
    """The champion's PD for one high-risk-if-x-is-large applicant, loaded as serving does."""
    import mlflow

    model = mlflow.pyfunc.load_model(champion_uri())
    return float(np.asarray(model.predict(HIGH_RISK_APPLICANT))[0, 1])


# ---------------------------------------------------------------------------------------------
# register
# ---------------------------------------------------------------------------------------------


def test_register_creates_the_model_and_sets_challenger(store: Store) -> None:
    from mlflow import MlflowClient

    model_uri, run_id = store.log_model()
    version = register(
        model_uri,
        run_id=run_id,
        tags={"feature_sql_sha256": "c" * 64},
        gates=metric_gates(GOOD_METRICS),
        actor="analyst",
        ledger_path=store.ledger,
        pipeline_run_id="20261122T061500Z-3f9a1c",
    )

    assert version == "1"
    assert aliases() == {"challenger": "1"}
    assert current_champion() is None  # registering never makes a champion
    client = MlflowClient()
    assert "probability of default" in client.get_registered_model("CreditRiskPD").description
    tags = client.get_model_version("CreditRiskPD", "1").tags
    assert tags["validation_passed"] == "true"
    assert tags["validation_failed_gates"] == ""
    assert tags["pipeline_run_id"] == "20261122T061500Z-3f9a1c"
    assert tags["feature_sql_sha256"] == "c" * 64
    assert {gate["name"] for gate in json.loads(tags["validation_gates"])} >= {"auc", "ks"}

    (entry,) = read_ledger(store.ledger)
    assert (entry.action, entry.alias, entry.version) == ("register", "challenger", "1")
    assert (entry.actor, entry.mlflow_run_id, entry.model_source) == ("analyst", run_id, model_uri)
    assert entry.pipeline_run_id == "20261122T061500Z-3f9a1c"
    assert entry.validation_passed is True and entry.previous_champion is None
    assert datetime.fromisoformat(entry.timestamp).utcoffset().total_seconds() == 0  # type: ignore[union-attr]

    assert store.register() == "2" and aliases() == {"challenger": "2"}


def test_pipeline_run_id_is_never_taken_from_the_environment(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("CREDITRISK_RUN_ID", "20261122T061500Z-3f9a1c")
    version = store.register()
    assert "pipeline_run_id" not in MlflowClient().get_model_version("CreditRiskPD", version).tags
    record = promote(version, reason="by hand", ledger_path=store.ledger)
    assert record.pipeline_run_id is None
    assert [r.pipeline_run_id for r in read_ledger(store.ledger)] == [None, None]


POLICY = {
    "decision": {"policy": "expected_profit", "threshold": 0.18},
    "score_scaling": {"base_score": 600.0, "base_odds": 50.0, "pdo": 20.0},
}
RELAXED = Deviation(
    stage="validate", parameter="min_auc", value=0.6, policy=0.7, kind="relaxed", meaning="m"
)


def test_register_freezes_what_the_version_serves_with(store: Store) -> None:
    from mlflow import MlflowClient

    model_uri, run_id = store.log_model()
    synthetic = {"generator": "creditrisk.data.synthetic", "n_applicants": 2000, "seed": 42}
    version = register(
        model_uri,
        run_id=run_id,
        gates=metric_gates(GOOD_METRICS),
        ledger_path=store.ledger,
        decision_policy=POLICY,
        headline_metrics={"test_auc": 0.78, "test_ks": 0.42},
        deviations=[RELAXED],
        synthetic_data=synthetic,
    )

    frozen = MlflowClient().get_model_version("CreditRiskPD", version)
    assert registry.decision_policy_of(frozen) == POLICY
    assert registry.headline_metrics_of(frozen) == {"test_auc": 0.78, "test_ks": 0.42}
    assert registry.deviations_of(frozen) == [RELAXED]
    assert registry.synthetic_data_of(frozen) == synthetic
    (entry,) = read_ledger(store.ledger)
    assert entry.decision_policy == POLICY and entry.deviations == [RELAXED]
    assert entry.synthetic_data == synthetic
    # The alias move repeats what the version serves with, read from the version itself.
    record = promote(version, reason="first", ledger_path=store.ledger)
    assert record.decision_policy == POLICY and record.deviations == [RELAXED]
    assert record.synthetic_data == synthetic
    assert read_ledger(store.ledger)[-1] == record

    # A version registered without them reads as "not recorded".
    bare = MlflowClient().get_model_version("CreditRiskPD", store.register())
    assert registry.decision_policy_of(bare) is None
    assert registry.headline_metrics_of(bare) is None
    assert registry.deviations_of(bare) is None
    assert registry.synthetic_data_of(bare) is None


def test_version_for_run_tells_versions_apart_by_their_decision_policy(store: Store) -> None:
    model_uri, run_id = store.log_model()
    assert registry.version_for_run(run_id) is None
    first = register(model_uri, run_id=run_id, ledger_path=store.ledger, decision_policy=POLICY)
    other = {**POLICY, "decision": {"policy": "expected_profit", "threshold": 0.31}}
    second = register(model_uri, run_id=run_id, ledger_path=store.ledger, decision_policy=other)

    assert (first, second) == ("1", "2")
    assert registry.version_for_run(run_id) == "2"  # the newest, whatever its policy
    assert registry.version_for_run(run_id, decision_policy=POLICY) == "1"
    assert registry.version_for_run(run_id, decision_policy=other) == "2"
    third = {**POLICY, "decision": {"policy": "expected_profit", "threshold": 0.5}}
    assert registry.version_for_run(run_id, decision_policy=third) is None
    assert registry.version_for_run("0" * 32) is None


def test_consistency_gate_against_the_logged_run(store: Store) -> None:
    _, run_id = store.log_model(metrics=GOOD_METRICS)
    logged = run_metrics(run_id)
    assert consistency_gate(GOOD_METRICS, logged).passed
    assert not consistency_gate({**GOOD_METRICS, "test_auc": 0.79}, logged).passed


# ---------------------------------------------------------------------------------------------
# promote and rollback
# ---------------------------------------------------------------------------------------------


def test_promote_moves_champion_and_keeps_the_previous_one(store: Store) -> None:
    first, second = store.register(), store.register()
    record = promote(first, actor="risk-officer", reason="first model", ledger_path=store.ledger)
    assert record.action == "promote" and record.version == "1"
    assert record.previous_champion is None and record.validation_passed is True
    assert not record.forced
    assert aliases()["champion"] == "1" and "previous_champion" not in aliases()

    record = promote(second, actor="risk-officer", reason="retrained", ledger_path=store.ledger)
    assert (record.version, record.previous_champion) == ("2", "1")
    assert aliases() == {"champion": "2", "previous_champion": "1", "challenger": "2"}
    champion = current_champion()
    assert champion is not None and champion.version in ("2", 2)
    assert {gate.name for gate in record.gates} == {"auc", "ks", "ece", "train_test_auc_gap"}

    with pytest.raises(RegistryError, match="already is the champion"):
        promote(second, reason="again", ledger_path=store.ledger)
    with pytest.raises(RegistryError, match="no version 9"):
        promote(9, reason="typo", ledger_path=store.ledger)


def test_second_promotion_then_rollback_restores_the_first(store: Store) -> None:
    first = store.register(risk_rises_with_x=True)
    second = store.register(risk_rises_with_x=False)
    promote(first, reason="first", ledger_path=store.ledger)
    assert champion_pd() > 0.9  # serving loads models:/CreditRiskPD@champion and predicts
    promote(second, reason="retrained", ledger_path=store.ledger)
    assert champion_pd() < 0.1

    record = rollback(actor="ops", reason="approval rate collapsed", ledger_path=store.ledger)

    assert (record.action, record.version, record.previous_champion) == ("rollback", "1", "2")
    assert record.actor == "ops" and record.reason == "approval rate collapsed"
    assert aliases()["champion"] == "1" and "previous_champion" not in aliases()
    assert champion_pd() > 0.9
    with pytest.raises(RegistryError, match="records no champion before the current one"):
        rollback(reason="again", ledger_path=store.ledger)


def test_repeated_rollbacks_walk_back_through_the_champions(store: Store) -> None:
    versions = [store.register() for _ in range(3)]
    for version in versions:
        promote(version, reason=f"v{version}", ledger_path=store.ledger)
    assert aliases()["previous_champion"] == "2"
    assert rollback(reason="bad v3", ledger_path=store.ledger).version == "2"
    assert aliases()["champion"] == "2" and aliases()["previous_champion"] == "1"
    assert rollback(reason="bad v2 too", ledger_path=store.ledger).version == "1"
    assert registry.champion_history(read_ledger(store.ledger)) == ["1"]


def test_failed_validation_refuses_promotion_unless_forced(store: Store) -> None:
    good, weak = store.register(passed=True), store.register(passed=False)
    promote(good, reason="first", ledger_path=store.ledger)
    lines_before = store.ledger.read_bytes()

    with pytest.raises(PromotionRefused, match=r"validation failed: auc: 0\.61") as refused:
        promote(weak, reason="try the weak one", ledger_path=store.ledger)
    assert "champion is unchanged" in str(refused.value)
    assert aliases()["champion"] == good
    assert store.ledger.read_bytes() == lines_before  # a refusal moves nothing, records nothing

    record = promote(weak, reason="override by CRO", force=True, ledger_path=store.ledger)
    assert aliases()["champion"] == weak
    assert record.forced and record.validation_passed is False
    last = read_ledger(store.ledger)[-1]
    assert last.forced and last.reason == "override by CRO" and last.version == weak
    assert {gate.name for gate in last.gates if not gate.passed} == {"auc", "ks"}


def test_gates_given_to_promote_override_the_version_tags(store: Store) -> None:
    version = store.register(passed=True)
    with pytest.raises(PromotionRefused):
        promote(
            version,
            reason="canary failed",
            gates=metric_gates(WEAK_METRICS),
            ledger_path=store.ledger,
        )
    assert current_champion() is None


def test_unvalidated_version_is_refused(store: Store) -> None:
    model_uri, run_id = store.log_model()
    version = register(model_uri, run_id=run_id, ledger_path=store.ledger)  # no gates
    with pytest.raises(PromotionRefused, match="no recorded validation"):
        promote(version, reason="untested", ledger_path=store.ledger)


def test_rollback_without_history_errors_clearly(store: Store) -> None:
    with pytest.raises(RegistryError, match=r"records no champion before the current one \(none\)"):
        rollback(reason="panic", ledger_path=store.ledger)
    promote(store.register(), reason="only one", ledger_path=store.ledger)
    with pytest.raises(RegistryError, match=r"records no champion before the current one \(1\)"):
        rollback(reason="panic", ledger_path=store.ledger)
    assert aliases()["champion"] == "1"


def test_rollback_refuses_when_the_alias_moved_outside_the_ledger(store: Store) -> None:
    from mlflow import MlflowClient

    versions = [store.register() for _ in range(3)]
    promote(versions[0], reason="a", ledger_path=store.ledger)
    promote(versions[1], reason="b", ledger_path=store.ledger)
    MlflowClient().set_registered_model_alias("CreditRiskPD", "champion", versions[2])
    with pytest.raises(RegistryError, match="moved outside creditrisk"):
        rollback(reason="c", ledger_path=store.ledger)
    assert aliases()["champion"] == "3"


def test_a_champion_the_ledger_does_not_explain_is_named(store: Store) -> None:
    """A promotion killed between the alias move and its ledger line is reported, not hidden."""
    from mlflow import MlflowClient

    from creditrisk.registry import unrecorded_champion

    first, second = store.register(), store.register()
    promote(first, reason="first", ledger_path=store.ledger)
    assert unrecorded_champion(store.ledger, tracking_uri=store.uri) is None
    MlflowClient().set_registered_model_alias("CreditRiskPD", "champion", second)
    message = unrecorded_champion(store.ledger, tracking_uri=store.uri)
    assert message is not None
    assert "champion is version 2 but the ledger" in message and "ends with version 1" in message
    assert aliases()["champion"] == "2"  # reported, not moved: that would be a change itself


def test_a_move_the_ledger_cannot_record_is_undone(store: Store) -> None:
    first, second = store.register(), store.register()
    promote(first, reason="first", ledger_path=store.ledger)
    unwritable = store.ledger.parent / "not_a_file.jsonl"
    unwritable.mkdir()
    with pytest.raises(IsADirectoryError):
        promote(second, reason="second", ledger_path=unwritable)
    assert aliases()["champion"] == first and "previous_champion" not in aliases()


# ---------------------------------------------------------------------------------------------
# The ledger
# ---------------------------------------------------------------------------------------------


def test_ledger_is_append_only_and_readable(store: Store) -> None:
    snapshots = []
    first = store.register()
    snapshots.append(store.ledger.read_bytes())
    second = store.register()
    snapshots.append(store.ledger.read_bytes())
    promote(first, reason="first", ledger_path=store.ledger)
    snapshots.append(store.ledger.read_bytes())
    promote(second, reason="second", ledger_path=store.ledger)
    snapshots.append(store.ledger.read_bytes())
    rollback(reason="back", ledger_path=store.ledger)
    snapshots.append(store.ledger.read_bytes())

    for earlier, later in itertools.pairwise(snapshots):
        assert later.startswith(earlier)  # earlier lines byte-identical
        assert later.count(b"\n") == earlier.count(b"\n") + 1  # exactly one line per move
    lines = snapshots[-1].decode().splitlines()
    assert [json.loads(line)["action"] for line in lines] == [
        "register",
        "register",
        "promote",
        "promote",
        "rollback",
    ]
    records = read_ledger(store.ledger)
    assert [(r.version, r.previous_champion) for r in records[2:]] == [
        ("1", None),
        ("2", "1"),
        ("1", "2"),
    ]
    assert all(isinstance(r, PromotionRecord) for r in records)


def test_ledger_refuses_to_append_after_an_interrupted_write(tmp_path: Path) -> None:
    ledger = tmp_path / "promotion_ledger.jsonl"
    record = PromotionRecord(
        timestamp="2026-11-22T06:15:00+00:00",
        action="promote",
        model_name="CreditRiskPD",
        alias="champion",
        version="1",
        previous_champion=None,
        actor="ops",
        reason="r",
    )
    registry.append_ledger(ledger, record)
    with ledger.open("ab") as stream:
        stream.write(b'{"timestamp": "2026-')  # a crash mid-write
    with pytest.raises(LedgerError, match="incomplete line"):
        registry.append_ledger(ledger, record)
    with pytest.raises(LedgerError, match=":2: not a promotion record"):
        read_ledger(ledger)
    assert read_ledger(tmp_path / "absent.jsonl") == []


# ---------------------------------------------------------------------------------------------
# Command-line layer
# ---------------------------------------------------------------------------------------------


def test_cli_layer_promotes_and_rolls_back_in_the_workspace(
    workspace_store: Store, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = workspace_store.register()
    second = workspace_store.register()
    # Without MLFLOW_TRACKING_URI the workspace's own mlflow.db is the registry.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    settings = Settings(home=workspace.home)
    assert tracking.tracking_uri(settings) == workspace.mlflow_uri

    # Outside a governed run a promotion by hand is refused, and nothing moves.
    with pytest.raises(NotInPipeline, match="promoting a version"):
        register_stage.promote_by_hand(RunContext.interactive("register", settings), first, "x")
    assert "champion" not in aliases()
    assert [r.action for r in read_ledger(workspace_store.ledger)] == ["register", "register"]
    # As `creditrisk promote` / `creditrisk rollback` do it: holding the workspace lock.
    run_id = "20261122T061500Z-byhand"
    with governed(settings, run_id) as context:
        record = register_stage.promote_by_hand(context("register"), first, "first champion")
    assert record.version == "1"
    with governed(settings, run_id) as context:
        record = register_stage.promote_by_hand(context("register"), second, "retrained")
    report = json.loads((workspace.reports / "registry_promotion.json").read_text())
    assert report["version"] == "2" and report["previous_champion"] == "1"
    assert report["champion_uri"] == "models:/CreditRiskPD@champion"

    with governed(settings, run_id) as context:
        record = register_stage.rollback_by_hand(context("register"), "bad scores")
    assert (record.action, record.version) == ("rollback", "1")
    report = json.loads((workspace.reports / "registry_promotion.json").read_text())
    assert report["action"] == "rollback" and report["version"] == "1"
    ledger = read_ledger(workspace.reports / "promotion_ledger.jsonl")
    assert [r.action for r in ledger] == ["register", "register", "promote", "promote", "rollback"]
    assert current_champion(tracking_uri=workspace.mlflow_uri).version in ("1", 1)  # type: ignore[union-attr]
