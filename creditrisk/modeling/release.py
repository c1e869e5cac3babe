"""Stages 05 (validate) and 06 (register): the governance gates, then the model registry.

validate
    Reads what stages 01–04 left (ingestion summary, training run, ``reports/metrics.json``),
    evaluates every gate of :mod:`creditrisk.governance` — metrics, required artefacts, the
    logged metrics against the MLflow run's, ingestion contracts — and a canary against the
    current champion on the same test applicants. It writes ``reports/validation.json``, logs
    it to the MLflow run, and the notebook then raises :class:`~creditrisk.governance.GateFailure`
    if any gate failed, so the register stage never runs and the champion is untouched.
register
    Registers the validated model as a new version of ``CreditRiskPD`` (alias ``challenger``)
    and, with auto-promotion on, moves ``champion`` to it (the replaced champion stays
    reachable as ``previous_champion``). Every move goes to the promotion ledger; the stage
    also writes ``reports/registry_promotion.json``, ``reports/lineage.json`` and the model card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from creditrisk import governance, registry, tracking
from creditrisk.governance import Gate, GateThresholds
from creditrisk.io import read_json
from creditrisk.modeling.split import SPLIT_FILES
from creditrisk.modeling.stages import (
    DECISION_POLICY_FILE,
    EVALUATION_DIR,
    METRICS_FILE,
    json_records,
    load_trained,
    read_training_run,
    training_run_path,
)
from creditrisk.settings import Workspace

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

#: Files the MLflow training run must hold (besides the model) for serving and audit.
REQUIRED_RUN_ARTIFACTS = (
    DECISION_POLICY_FILE,
    "features.json",
    "splits.json",
    f"{EVALUATION_DIR}/{METRICS_FILE}",
)


# ---------------------------------------------------------------------------------------------
# Stage 05: validate
# ---------------------------------------------------------------------------------------------


class ValidateStageParams(BaseModel):
    """Parameters of the validate stage: the gate limits and whether to run the canary."""

    model_config = ConfigDict(extra="forbid")

    thresholds: GateThresholds = Field(default_factory=GateThresholds)
    canary: bool = Field(
        True, description="compare with the current champion on the test split (if one exists)"
    )
    canary_bins: int = Field(10, ge=2, description="quantile bins of the canary's score PSI")


@dataclass(frozen=True)
class Canary:
    """The comparison with the current champion (or why there was none)."""

    champion_version: str | None
    champion_run_id: str | None
    gates: list[Gate]
    summary: dict[str, Any]
    psi_table: pd.DataFrame | None
    skipped: str | None = None  # why no comparison was made

    def as_dict(self) -> dict[str, Any]:
        return {
            "evaluated": self.skipped is None and bool(self.gates),
            "skipped": self.skipped,
            "champion_version": self.champion_version,
            "champion_run_id": self.champion_run_id,
            **self.summary,
        }


@dataclass(frozen=True)
class ValidationOutcome:
    """Every gate the candidate model faced, and the report written from them."""

    gates: list[Gate]
    canary: Canary
    report: dict[str, Any]
    path: Path

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    def table(self) -> pd.DataFrame:
        """One row per gate, failures first: what a reviewer reads in the notebook."""
        frame = pd.DataFrame([gate.model_dump() for gate in self.gates])
        return frame.sort_values("passed", kind="stable").reset_index(drop=True)

    def raise_for_failures(self) -> None:
        """Stop the pipeline (raise :class:`GateFailure`) if any gate failed."""
        governance.raise_for_failures(self.gates)


def required_artefacts(workspace: Workspace) -> dict[str, Path]:
    """The local files a model must leave behind to be validated and traced."""
    return {
        "ingestion_summary": workspace.ingestion_summary,
        "feature_store": workspace.feature_store,
        **{f"{name}_split": workspace.splits / file for name, file in SPLIT_FILES.items()},
        "training_run": training_run_path(workspace),
        "metrics": workspace.reports / METRICS_FILE,
        "evaluation_plots": workspace.reports / EVALUATION_DIR,
    }


def mlflow_artefact_gates(run_id: str, model_uri: str, tracking_uri: str) -> list[Gate]:
    """The logged model has a signature and an input example; the run holds its artefacts."""
    import mlflow
    from mlflow import MlflowClient

    gates = []
    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception as exc:  # any failure to read the model means it cannot be served
        return [governance.check_gate("model:loadable", False, f"{model_uri}: {exc}")]
    gates.append(
        governance.check_gate(
            "model:signature", info.signature is not None, f"{model_uri} input/output schema"
        )
    )
    gates.append(
        governance.check_gate(
            "model:input_example",
            info.saved_input_example_info is not None,
            f"{model_uri} input example",
        )
    )
    client = MlflowClient(tracking_uri=tracking_uri)
    logged = {entry.path for entry in client.list_artifacts(run_id)}
    logged |= {entry.path for entry in client.list_artifacts(run_id, EVALUATION_DIR)}
    for name in REQUIRED_RUN_ARTIFACTS:
        gates.append(
            governance.check_gate(f"run_artefact:{name}", name in logged, f"runs:/{run_id}/{name}")
        )
    return gates


def _champion_threshold(champion: ModelVersion) -> float | None:
    """The PD cut-off the champion was shipped with (its run's decision policy), if logged."""
    import mlflow

    try:
        policy = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/{DECISION_POLICY_FILE}")
        return float(policy["decision"]["threshold"])
    except Exception:  # an older champion without a decision policy: use the candidate's
        return None


def run_canary(
    params: ValidateStageParams,
    workspace: Workspace,
    *,
    candidate_run_id: str,
    candidate_uri: str,
    test: pd.DataFrame,
    threshold: float,
    tracking_uri: str,
) -> Canary:
    """Score the test applicants with the current champion and the candidate; compare them."""
    if not params.canary:
        return Canary(None, None, [], {}, None, skipped="disabled by the canary parameter")
    champion = registry.current_champion(tracking_uri=tracking_uri)
    if champion is None:
        return Canary(None, None, [], {}, None, skipped="no champion yet: nothing to compare")
    version, run_id = str(champion.version), champion.run_id
    if run_id == candidate_run_id:
        return Canary(version, run_id, [], {}, None, skipped="the candidate is the champion")
    uri = f"models:/{champion.name}/{version}"
    try:
        champion_pd = load_trained(uri, workspace).predict_pd(test)
    except Exception as exc:
        gate = governance.check_gate(
            "canary:champion_scores",
            False,
            f"the champion ({uri}) cannot score the test split: {exc}. Validate without the "
            "canary (canary=False) only if the feature set changed on purpose.",
        )
        return Canary(version, run_id, [gate], {}, None)
    candidate_pd = load_trained(candidate_uri, workspace).predict_pd(test)
    champion_threshold = _champion_threshold(champion)
    gates = governance.canary(
        candidate_pd,
        champion_pd,
        threshold,
        params.thresholds,
        champion_threshold_pd=champion_threshold,
    )
    summary = {
        "n_applicants": len(test),
        "champion_threshold": champion_threshold if champion_threshold is not None else threshold,
        "challenger_threshold": threshold,
        "champion_mean_pd": float(champion_pd.mean()),
        "challenger_mean_pd": float(candidate_pd.mean()),
        "champion_approval_rate": float((champion_pd < (champion_threshold or threshold)).mean()),
        "challenger_approval_rate": float((candidate_pd < threshold).mean()),
    }
    table = governance.psi_table(champion_pd, candidate_pd, bins=params.canary_bins)
    return Canary(version, run_id, gates, summary, table)


def run_validate(params: ValidateStageParams, workspace: Workspace) -> ValidationOutcome:
    """Evaluate every governance gate on the trained model; write ``reports/validation.json``.

    The report is written whether or not the gates pass; failing is the caller's decision
    (:meth:`ValidationOutcome.raise_for_failures`), so the notebook can show the table first.
    """
    training = read_training_run(workspace)
    run_id, model_uri = training["mlflow_run_id"], training["model_uri"]
    uri = tracking.tracking_uri(workspace)
    tracking.configure(workspace)
    evaluation = read_json(workspace.reports / METRICS_FILE)
    metrics = evaluation.get("metrics", {})

    gates = [
        governance.check_gate(
            "evaluation_of_this_model",
            evaluation.get("mlflow_run_id") == run_id,
            f"reports/{METRICS_FILE} is for MLflow run {evaluation.get('mlflow_run_id')}, "
            f"the trained model is run {run_id}",
        ),
        *governance.metric_gates(metrics, params.thresholds),
        *governance.artefact_gates(required_artefacts(workspace)),
        *mlflow_artefact_gates(run_id, model_uri, uri),
        governance.consistency_gate(metrics, registry.run_metrics(run_id, tracking_uri=uri)),
        governance.contracts_gate(read_json(workspace.ingestion_summary)),
    ]
    test_split = workspace.splits / SPLIT_FILES["test"]
    if test_split.exists():
        canary = run_canary(
            params,
            workspace,
            candidate_run_id=run_id,
            candidate_uri=model_uri,
            test=pd.read_parquet(test_split),
            threshold=float(evaluation["decision_policy"]["decision"]["threshold"]),
            tracking_uri=uri,
        )
    else:  # its artefact gate has failed already
        canary = Canary(None, None, [], {}, None, skipped=f"{test_split} does not exist")
    gates.extend(canary.gates)

    report = governance.validation_report(gates, thresholds=params.thresholds)
    report.update(
        {
            "mlflow_run_id": run_id,
            "model_uri": model_uri,
            "canary": canary.as_dict(),
            "canary_psi_table": None
            if canary.psi_table is None
            else json_records(
                canary.psi_table.replace([float("inf"), float("-inf")], None), index=False
            ),
        }
    )
    path = governance.write_validation(report, workspace)
    _log_to_run(run_id, {"validation_passed": str(report["passed"]).lower()}, [path])
    return ValidationOutcome(gates, canary, report, path)


def _log_to_run(run_id: str, tags: dict[str, str], files: list[Path]) -> None:
    """Attach files and tags to the (finished) MLflow training run."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    for path in files:
        client.log_artifact(run_id, str(path))


# ---------------------------------------------------------------------------------------------
# Stage 06: register
# ---------------------------------------------------------------------------------------------


class RegisterStageParams(BaseModel):
    """Parameters of the register stage."""

    model_config = ConfigDict(extra="forbid")

    auto_promote: bool = Field(
        True, description="move champion to the new version when every gate passed"
    )
    reason: str = Field("", description="why, for the ledger; empty: the gates and the run")
    actor: str = Field("", description="who, for the ledger; empty: the OS user")


class RegistrationRefused(registry.RegistryError):
    """The model in the workspace has no passing validation: it is not registered."""


@dataclass(frozen=True)
class RegistrationOutcome:
    """What the register stage did in the registry and wrote for the auditor."""

    version: str
    newly_registered: bool
    promoted: bool
    champion_version: str | None
    previous_champion: str | None
    record: registry.PromotionRecord
    paths: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "model_name": self.record.model_name,
            "version": self.version,
            "newly_registered": self.newly_registered,
            "promoted": self.promoted,
            "champion_version": self.champion_version,
            "previous_champion": self.previous_champion,
            "champion_uri": registry.champion_uri(self.record.model_name),
            "last_move": f"{self.record.action} {self.record.alias} → v{self.record.version}",
            "files": {name: str(path) for name, path in self.paths.items()},
        }


def _validated(workspace: Workspace, run_id: str) -> dict[str, Any]:
    path = workspace.reports / governance.VALIDATION_FILE
    if not path.exists():
        raise RegistrationRefused(f"{path} not found: run the validate stage before registering")
    report: dict[str, Any] = read_json(path)
    if report.get("mlflow_run_id") != run_id:
        raise RegistrationRefused(
            f"{path} validates MLflow run {report.get('mlflow_run_id')}, but the trained model "
            f"is run {run_id}: run the validate stage on it first"
        )
    if not report.get("passed"):
        raise RegistrationRefused(
            f"the model of run {run_id} failed validation ({', '.join(report.get('failed', []))})"
            "; it is not registered and the champion is unchanged"
        )
    return report


def _default_reason(validation: dict[str, Any], version: str) -> str:
    run = os.environ.get("CREDITRISK_RUN_ID") or "an interactive session"
    return (
        f"auto-promotion of version {version} by pipeline run {run}: all "
        f"{validation['n_gates']} governance gates passed"
    )


def run_register(params: RegisterStageParams, workspace: Workspace) -> RegistrationOutcome:
    """Register the validated model, promote it if allowed, write lineage and the model card.

    Re-running the stage for the same MLflow run reuses its version (no duplicate versions).

    Raises:
        RegistrationRefused: No validation report for this model, or it failed.
    """
    from creditrisk.features import catalog

    training = read_training_run(workspace)
    run_id, model_uri = training["mlflow_run_id"], training["model_uri"]
    validation = _validated(workspace, run_id)
    uri = tracking.tracking_uri(workspace)
    tracking.configure(workspace)
    ledger = registry.ledger_path_for(workspace)
    actor = params.actor or None
    summary = read_json(workspace.ingestion_summary)

    version = registry.version_for_run(run_id, tracking_uri=uri)
    newly_registered = version is None
    if version is None:
        version = registry.register(
            model_uri,
            run_id=run_id,
            tags={
                "feature_sql_hash": catalog.sql_hash(),
                "data_snapshot_id": str(summary.get("snapshot_id")),
                "test_auc": f"{validation_metric(workspace, 'test_auc'):.6f}",
            },
            gates=validation,
            actor=actor,
            reason=params.reason or "registered by the pipeline after passing validation",
            ledger_path=ledger,
            tracking_uri=uri,
        )
    champion = registry.current_champion(tracking_uri=uri)
    before = None if champion is None else str(champion.version)
    promoted = False
    if params.auto_promote and before != version:
        record = registry.promote(
            version,
            actor=actor,
            reason=params.reason or _default_reason(validation, version),
            gates=validation,
            ledger_path=ledger,
            tracking_uri=uri,
        )
        promoted = True
    else:
        record = registry.latest_record(ledger, version)
    after = registry.current_champion(tracking_uri=uri)
    paths = {"promotion": registry.write_promotion_report(record, workspace)}

    paths.update(_write_audit_records(workspace, training, validation, version, uri, summary))
    _log_to_run(
        run_id,
        {"registered_version": version},
        [paths["lineage"], paths["model_card"]],
    )
    return RegistrationOutcome(
        version=version,
        newly_registered=newly_registered,
        promoted=promoted,
        champion_version=None if after is None else str(after.version),
        previous_champion=before if promoted else record.previous_champion,
        record=record,
        paths=paths,
    )


def validation_metric(workspace: Workspace, key: str) -> float:
    """One metric of ``reports/metrics.json``."""
    return float(read_json(workspace.reports / METRICS_FILE)["metrics"][key])


def _write_audit_records(
    workspace: Workspace,
    training: dict[str, Any],
    validation: dict[str, Any],
    version: str,
    tracking_uri: str,
    summary: dict[str, Any],
) -> dict[str, Path]:
    from creditrisk import lineage, model_card
    from creditrisk.features import catalog

    pipeline_run_id = os.environ.get("CREDITRISK_RUN_ID") or None
    trace = lineage.build_lineage(
        ingestion_summary=summary,
        feature_store=workspace.feature_store,
        feature_sql_hash=catalog.sql_hash(),
        splits={name: workspace.splits / file for name, file in SPLIT_FILES.items()},
        mlflow_run_id=training["mlflow_run_id"],
        model_name=registry.DEFAULT_MODEL_NAME,
        model_version=version,
        pipeline_run_id=pipeline_run_id,
        runs_dir=workspace.runs,
        tracking_uri=tracking_uri,
    )
    paths = {"lineage": lineage.write_lineage(trace, workspace)}
    context = model_card_context(workspace, training, validation, version, summary)
    run_dir = workspace.runs / pipeline_run_id if pipeline_run_id else None
    written = model_card.write_model_card(
        model_card.render_model_card(context),
        workspace,
        run_dir if run_dir is not None and run_dir.is_dir() else None,
    )
    paths["model_card"] = written[0]
    return paths


# ---------------------------------------------------------------------------------------------
# The model card's content
# ---------------------------------------------------------------------------------------------

PURPOSE = (
    "Estimates the probability that an applicant for a retail loan defaults (payment "
    "difficulties, the Home Credit TARGET definition) from the application and whatever credit "
    "history the lender holds: credit bureau records and monthly balances, previous "
    "applications, instalment payments, credit-card and POS/cash loan balances. The PD is "
    "calibrated to observed default rates, mapped to scorecard points and bands, and turned "
    "into an approve/decline decision at the cut-off of the credit policy below."
)

INTENDED_USE = [
    "Application scoring for retail cash and revolving loans, as one input to the credit "
    "decision, with adverse reason codes for every decline.",
    "Not for pricing, collections or behavioural scoring of existing customers without "
    "re-validation; not for populations the training data does not cover.",
]

LIMITATIONS = [
    "Trained on one snapshot; the score's stability is monitored (PSI/CSI) and a drift above "
    "the policy triggers re-training.",
    "Calibrated on a held-out fold of the same period: a shift in the default rate (economic "
    "cycle) makes the PD level drift before the ranking does.",
    "Reject inference is not performed: the training population is approved applicants only.",
    "The fairness screen covers gender and age band; flagged groups need a business "
    "justification (age is a legitimate credit factor in many jurisdictions, gender is not).",
]

HEADLINE_METRICS = (
    "test_auc",
    "test_gini",
    "test_ks",
    "test_pr_auc",
    "test_brier",
    "test_ece",
    "test_log_loss",
    "test_base_rate",
    "test_mean_pd",
    "train_auc",
    "train_test_auc_gap",
)


def model_card_context(
    workspace: Workspace,
    training: dict[str, Any],
    validation: dict[str, Any],
    version: str | None,
    ingestion_summary: dict[str, Any],
) -> dict[str, Any]:
    """The model card's content, from the reports stages 01–05 wrote."""
    from datetime import UTC, datetime

    from creditrisk.features import catalog

    evaluation = read_json(workspace.reports / METRICS_FILE)
    metrics, tables = evaluation["metrics"], evaluation["tables"]
    splits = training.get("splits", {})
    groups: dict[str, list[str]] = {}
    for feature in catalog.FEATURES:
        groups.setdefault(feature.group, []).append(feature.name)
    fairness = [
        {
            "attribute": attribute,
            "group": row.get(attribute),
            **{k: row[k] for k in ("n", "approval_rate", "default_rate", "bad_rate_approved")},
            "auc": row.get("auc"),
            "adverse_impact_ratio": row.get("adverse_impact_ratio"),
            "flag": bool(row.get("adverse_impact")),
        }
        for attribute in ("CODE_GENDER", "AGE_BAND")
        for row in tables.get(f"fairness_{attribute}", [])
    ]
    plots = workspace.reports / EVALUATION_DIR
    images = {
        caption: plots / file
        for caption, file in (
            ("Calibration (reliability) on the test split", "calibration.png"),
            ("ROC curve on the test split", "roc_curve.png"),
            ("Score distribution by outcome", "score_distribution.png"),
        )
        if (plots / file).exists()
    }
    return {
        "model_name": registry.DEFAULT_MODEL_NAME,
        "model_version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mlflow_run_id": training["mlflow_run_id"],
        "pipeline_run_id": os.environ.get("CREDITRISK_RUN_ID"),
        "purpose": PURPOSE,
        "intended_use": INTENDED_USE,
        "data": {
            "snapshot_id": ingestion_summary.get("snapshot_id"),
            "source": (ingestion_summary.get("source") or {}).get("uri"),
            "ingested_at": ingestion_summary.get("ingested_at"),
            "applicants (application_train)": (
                ingestion_summary.get("tables", {}).get("application_train", {}).get("rows")
            ),
            "training split": splits.get("train", {}).get("rows"),
            "test split": splits.get("test", {}).get("rows"),
            "test default rate": metrics.get("test_base_rate"),
            "contracts passed": ingestion_summary.get("contracts_passed"),
            "missing tables": ", ".join(ingestion_summary.get("missing_tables") or []) or "none",
        },
        "features": {"count": len(catalog.FEATURES), "groups": groups},
        "performance": {key: metrics[key] for key in HEADLINE_METRICS if key in metrics},
        "calibration": [
            {k: row.get(k) for k in ("bin", "n", "mean_pd", "default_rate", "defaults")}
            for row in tables.get("calibration", [])
        ],
        "fairness": fairness,
        "decision_policy": {
            **{
                k: v
                for k, v in evaluation["decision_policy"]["decision"].items()
                if k in ("threshold", "approval_rate", "bad_rate_approved", "break_even_pd")
            },
            "policy": evaluation["decision_policy"]["decision"].get("policy", {}).get("kind"),
            "score_scaling": {
                k: v
                for k, v in evaluation["decision_policy"]["score_scaling"].items()
                if k in ("base_score", "base_odds", "pdo", "min_score", "max_score")
            },
        },
        "validation": validation,
        "limitations": LIMITATIONS,
        "images": images,
    }
