"""Stage 05 — validate: every governance gate, the canary against the champion, the deviations.

Notebook ``05_validate.ipynb``, in named steps that :func:`run` chains:

1. :func:`gates` — the model's metrics against the limits (the stage's parameters, defaults
   the documented policy), the artefacts on disk and in MLflow, the metrics in
   ``reports/metrics.json`` against the run's, the decision policy it proposes against the one
   logged to its run, the ingestion contracts;
2. :func:`canary` — the current champion and the candidate on the same test applicants, each
   at its own cut-off (the champion's frozen on its registry version);
3. :func:`report` — ``reports/validation.json``: every gate, the canary, the decision policy
   that would be served, every deviation from the documented policy (this stage's gate limits
   and the train and evaluate parameters the model was made with) and the synthetic-data flag;
   in pipeline mode also logged to the training run.

The notebook then calls :meth:`Outcome.raise_for_failures`: a failed gate stops the pipeline
before register, so the champion is untouched. An interactive run writes its report to
``scratch/05_validate/`` and tags nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from creditrisk import governance, registry, tracking
from creditrisk.governance import Gate, GateThresholds
from creditrisk.governance.deviations import (
    Deviation,
    as_records,
    from_records,
    synthetic_data,
)
from creditrisk.io import read_json, write_json
from creditrisk.modeling.split import split_files
from creditrisk.scoring.scorer import DECISION_POLICY_FILE, served_policy
from creditrisk.stages.context import RunContext
from creditrisk.stages.evaluate import EVALUATION_DIR, METRICS_FILE
from creditrisk.stages.evaluate import json_records as table_records
from creditrisk.stages.params import StageParams, parameter
from creditrisk.stages.train import TRAINING_RUN_FILE, read_training_run

#: Files the MLflow training run must hold (besides the model) for serving and audit.
REQUIRED_RUN_ARTEFACTS = (
    DECISION_POLICY_FILE,
    "features.json",
    "splits.json",
    f"{EVALUATION_DIR}/{METRICS_FILE}",
)


class Params(StageParams):
    """Parameters of the validate stage: the gate limits and the canary."""

    STAGE = "validate"

    min_auc: float = parameter(0.70, "minimum test ROC-AUC", policy="gate_min")
    min_ks: float = parameter(0.25, "minimum test KS statistic", policy="gate_min")
    max_ece: float = parameter(
        0.03, "maximum expected calibration error on the test split, PD units", policy="gate_max"
    )
    max_train_test_auc_gap: float = parameter(
        0.08, "maximum train AUC minus test AUC (over-fitting)", policy="gate_max"
    )
    canary: bool = parameter(
        True, "compare with the current champion when there is one", policy="gate_switch"
    )
    max_approval_rate_change: float = parameter(
        0.05, "canary: largest change of the approval rate", policy="gate_max"
    )
    max_mean_pd_change: float = parameter(
        0.02, "canary: largest change of the mean PD", policy="gate_max"
    )
    max_score_psi: float = parameter(
        0.10, "canary: largest PSI between champion and challenger PDs", policy="gate_max"
    )
    canary_bins: int = parameter(10, "quantile bins of the canary PSI", ge=2)

    def thresholds(self) -> GateThresholds:
        """The gate limits as :mod:`creditrisk.governance` takes them."""
        return GateThresholds(
            min_auc=self.min_auc,
            min_ks=self.min_ks,
            max_ece=self.max_ece,
            max_train_test_auc_gap=self.max_train_test_auc_gap,
            max_approval_rate_change=self.max_approval_rate_change,
            max_mean_pd_change=self.max_mean_pd_change,
            max_score_psi=self.max_score_psi,
        )


@dataclass(frozen=True)
class Candidate:
    """What validate judges: the trained model, its evaluation, its data."""

    training: dict[str, Any]
    evaluation: dict[str, Any]
    ingestion_summary: dict[str, Any]

    @property
    def mlflow_run_id(self) -> str:
        return str(self.training["mlflow_run_id"])

    @property
    def model_uri(self) -> str:
        return str(self.training["model_uri"])

    @property
    def decision_policy(self) -> dict[str, Any]:
        policy: dict[str, Any] = self.evaluation["decision_policy"]
        return policy

    @property
    def threshold(self) -> float:
        return float(self.decision_policy["decision"]["threshold"])


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
class Outcome:
    """Every gate the candidate faced, the deviations, and the report written from them."""

    gates: list[Gate]
    canary: Canary
    deviations: list[Deviation]
    report: dict[str, Any]
    path: Path

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    def table(self) -> pd.DataFrame:
        """One row per gate, failures first: what a reviewer reads in the notebook."""
        frame = pd.DataFrame([gate.model_dump() for gate in self.gates])
        return frame.sort_values("passed", kind="stable").reset_index(drop=True)

    def deviation_table(self) -> pd.DataFrame:
        """One row per parameter that differs from the documented policy."""
        columns = ["stage", "parameter", "value", "policy", "kind", "meaning"]
        return pd.DataFrame([d.model_dump() for d in self.deviations], columns=columns)

    def raise_for_failures(self) -> None:
        """Stop the pipeline (raise :class:`GateFailure`) if any gate failed."""
        governance.raise_for_failures(self.gates)

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        return {
            "mlflow_run_id": self.report["mlflow_run_id"],
            "passed": self.passed,
            "n_gates": len(self.gates),
            "failed": self.report["failed"],
            "policy_followed": self.report["policy_followed"],
            "deviations": [d.describe() for d in self.deviations if d.kind != "operational"],
            "synthetic_data": self.report["synthetic_data"] is not None,
            "canary_evaluated": self.canary.as_dict()["evaluated"],
            "champion_version": self.canary.champion_version,
        }


def candidate(ctx: RunContext) -> Candidate:
    """The workspace's trained model, its evaluation and its ingestion summary.

    Raises:
        FileNotFoundError: An earlier stage has not run in the workspace.
    """
    reports = ctx.workspace.reports
    metrics_path = reports / METRICS_FILE
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} not found: run the evaluate stage first")
    summary = read_json(ctx.workspace.ingestion_summary)
    return Candidate(read_training_run(reports), read_json(metrics_path), summary)


def required_artefacts(ctx: RunContext) -> dict[str, Path]:
    """The local files a model must leave behind to be validated and traced."""
    workspace = ctx.workspace
    return {
        "ingestion_summary": workspace.ingestion_summary,
        "feature_store": workspace.feature_store,
        **{f"{name}_split": path for name, path in split_files(workspace.splits).items()},
        "training_run": workspace.reports / TRAINING_RUN_FILE,
        "metrics": workspace.reports / METRICS_FILE,
        "evaluation_plots": workspace.reports / EVALUATION_DIR,
    }


def mlflow_artefact_gates(run_id: str, model_uri: str, tracking_uri: str) -> list[Gate]:
    """The logged model has a signature and an input example; the run holds its artefacts."""
    try:
        info = tracking.model_metadata(model_uri, tracking_uri)
    except Exception as exc:  # any failure to read the model means it cannot be served
        return [governance.check_gate("model:loadable", False, f"{model_uri}: {exc}")]
    gates = [
        governance.check_gate(
            "model:signature", info.signature is not None, f"{model_uri} input/output schema"
        ),
        governance.check_gate(
            "model:input_example",
            info.saved_input_example_info is not None,
            f"{model_uri} input example",
        ),
    ]
    logged = tracking.run_artifacts(run_id, tracking_uri)
    logged |= tracking.run_artifacts(run_id, tracking_uri, EVALUATION_DIR)
    for name in REQUIRED_RUN_ARTEFACTS:
        gates.append(
            governance.check_gate(f"run_artefact:{name}", name in logged, f"runs:/{run_id}/{name}")
        )
    return gates


def decision_policy_gate(model: Candidate, tracking_uri: str) -> Gate:
    """The decision policy the evaluation proposes is the one logged to the model's run.

    The two can only differ if something other than the evaluate stage wrote one of them; the
    version register creates would then serve a cut-off no evaluation produced.
    """
    try:
        logged = tracking.load_run_dict(model.mlflow_run_id, DECISION_POLICY_FILE, tracking_uri)
    except Exception as exc:
        return governance.check_gate(
            "decision_policy:logged",
            False,
            f"runs:/{model.mlflow_run_id}/{DECISION_POLICY_FILE}: {exc}",
        )
    same = logged == model.decision_policy
    logged_threshold = (logged.get("decision") or {}).get("threshold")
    return governance.check_gate(
        "decision_policy:logged",
        same,
        f"reports/{METRICS_FILE} proposes cut-off {model.threshold:.6g}; the run's "
        f"{DECISION_POLICY_FILE} holds {logged_threshold}",
    )


def gates(params: Params, ctx: RunContext, model: Candidate) -> list[Gate]:
    """Every gate but the canary's."""
    uri = ctx.tracking_uri
    metrics = model.evaluation.get("metrics", {})
    return [
        governance.check_gate(
            "evaluation_of_this_model",
            model.evaluation.get("mlflow_run_id") == model.mlflow_run_id,
            f"reports/{METRICS_FILE} is for MLflow run {model.evaluation.get('mlflow_run_id')}, "
            f"the trained model is run {model.mlflow_run_id}",
        ),
        *governance.metric_gates(metrics, params.thresholds()),
        *governance.artefact_gates(required_artefacts(ctx)),
        *mlflow_artefact_gates(model.mlflow_run_id, model.model_uri, uri),
        decision_policy_gate(model, uri),
        governance.consistency_gate(
            metrics, registry.run_metrics(model.mlflow_run_id, tracking_uri=uri)
        ),
        governance.contracts_gate(model.ingestion_summary),
    ]


def champion_threshold(champion: Any, tracking_uri: str) -> float | None:
    """The PD cut-off the champion serves with (frozen on its version; else its run's)."""
    try:
        policy, _ = served_policy(champion, tracking_uri)
        return float(policy["decision"]["threshold"])
    except Exception:  # an older champion without a decision policy: use the candidate's
        return None


def canary(params: Params, ctx: RunContext, model: Candidate) -> Canary:
    """Score the test applicants with the current champion and the candidate; compare them."""
    if not params.canary:
        return Canary(None, None, [], {}, None, skipped="disabled by the canary parameter")
    test_split = split_files(ctx.workspace.splits)["test"]
    if not test_split.exists():  # its artefact gate has failed already
        return Canary(None, None, [], {}, None, skipped=f"{test_split} does not exist")
    uri = ctx.tracking_uri
    champion = registry.current_champion(ctx.settings.model_name, tracking_uri=uri)
    if champion is None:
        return Canary(None, None, [], {}, None, skipped="no champion yet: nothing to compare")
    version, run_id = str(champion.version), str(champion.run_id)
    champion_policy = registry.decision_policy_of(champion)
    if run_id == model.mlflow_run_id and champion_policy == model.decision_policy:
        return Canary(version, run_id, [], {}, None, skipped="the candidate is the champion")
    test = pd.read_parquet(test_split)
    champion_uri = f"models:/{champion.name}/{version}"
    try:
        champion_pd = tracking.load_trained(champion_uri, uri).predict_pd(test)
    except Exception as exc:
        gate = governance.check_gate(
            "canary:champion_scores",
            False,
            f"the champion ({champion_uri}) cannot score the test split: {exc}. Validate "
            "without the canary (canary=false) only if the feature set changed on purpose.",
        )
        return Canary(version, run_id, [gate], {}, None)
    candidate_pd = tracking.load_trained(model.model_uri, uri).predict_pd(test)
    threshold = model.threshold
    champion_cutoff = champion_threshold(champion, uri)
    found = governance.canary(
        candidate_pd,
        champion_pd,
        threshold,
        params.thresholds(),
        champion_threshold_pd=champion_cutoff,
    )
    cutoff = champion_cutoff if champion_cutoff is not None else threshold
    summary = {
        "n_applicants": len(test),
        "champion_threshold": cutoff,
        "challenger_threshold": threshold,
        "champion_mean_pd": float(champion_pd.mean()),
        "challenger_mean_pd": float(candidate_pd.mean()),
        "champion_approval_rate": float((champion_pd < cutoff).mean()),
        "challenger_approval_rate": float((candidate_pd < threshold).mean()),
    }
    table = governance.psi_table(champion_pd, candidate_pd, bins=params.canary_bins)
    return Canary(version, run_id, found, summary, table)


def deviations(params: Params, model: Candidate) -> list[Deviation]:
    """Every deviation from the documented policy behind this model, stage by stage."""
    return [
        *from_records(model.ingestion_summary.get("deviations")),
        *from_records(model.training.get("deviations")),
        *from_records(model.evaluation.get("deviations")),
        *params.deviations(),
    ]


def report(
    params: Params,
    ctx: RunContext,
    model: Candidate,
    found: list[Gate],
    compared: Canary,
) -> Outcome:
    """Write ``reports/validation.json`` (whether or not the gates pass) and, in pipeline mode,
    attach it to the training run."""
    every_gate = [*found, *compared.gates]
    behind = deviations(params, model)
    marker = synthetic_data(model.ingestion_summary)
    document = governance.validation_report(
        every_gate, thresholds=params.thresholds(), pipeline_run_id=ctx.run_id
    )
    document.update(
        {
            "mode": ctx.mode,
            "mlflow_run_id": model.mlflow_run_id,
            "model_uri": model.model_uri,
            "decision_policy": model.decision_policy,
            "headline_metrics": {
                key: model.evaluation["metrics"][key]
                for key in registry.HEADLINE_METRICS
                if key in model.evaluation.get("metrics", {})
            },
            "policy_followed": not [d for d in behind if d.kind != "operational"],
            "deviations": as_records(behind),
            "synthetic_data": marker,
            "parameters": params.as_record(),
            "canary": compared.as_dict(),
            "canary_psi_table": None
            if compared.psi_table is None
            else table_records(
                compared.psi_table.replace([float("inf"), float("-inf")], None), index=False
            ),
        }
    )
    path = write_json(ctx.outputs.reports / governance.VALIDATION_FILE, document)
    if ctx.mode == "pipeline":
        tracking.log_to_run(
            model.mlflow_run_id,
            ctx.tracking_uri,
            tags={"validation_passed": str(document["passed"]).lower()},
            files=[path],
        )
    return Outcome(every_gate, compared, behind, document, path)


def run(params: Params, ctx: RunContext) -> Outcome:
    """Gates, canary and report: the notebook's steps in one call (failing is the caller's)."""
    model = candidate(ctx)
    return report(params, ctx, model, gates(params, ctx, model), canary(params, ctx, model))
