"""Stage 03 (train) as the notebook and the CLI run it: split, fit, calibrate, log to MLflow.

The stage leaves ``reports/training_run.json`` — the MLflow run id and model URI — so that the
evaluate, validate and register stages find the model the pipeline just trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from creditrisk.io import read_json, write_json
from creditrisk.modeling.split import save_splits, split_applicants
from creditrisk.modeling.train import TrainedModel, TrainParams, log_training_run, train_model
from creditrisk.settings import Workspace

TRAINING_RUN_FILE = "training_run.json"


class TrainStageParams(BaseModel):
    """Parameters of the train stage: the split, then the model's hyper-parameters."""

    model_config = ConfigDict(extra="forbid")

    test_share: float = Field(0.2, gt=0, lt=1, description="share of labelled applicants held out")
    split_seed: int = Field(42, description="seed of the stratified applicant split")
    model: TrainParams = Field(default_factory=TrainParams)


@dataclass(frozen=True)
class TrainingOutcome:
    """What the train stage produced."""

    trained: TrainedModel
    run_id: str
    model_uri: str
    splits: dict[str, dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {
            "mlflow_run_id": self.run_id,
            "model_uri": self.model_uri,
            "best_iteration": self.trained.best_iteration,
            "n_features": len(self.trained.features),
            "splits": self.splits,
            "metrics": self.trained.metrics,
        }


def training_run_path(workspace: Workspace) -> Path:
    return workspace.reports / TRAINING_RUN_FILE


def run_train(params: TrainStageParams, workspace: Workspace) -> TrainingOutcome:
    """Split the labelled applicants, train the calibrated model and log it to MLflow."""
    if not workspace.feature_store.exists():
        raise FileNotFoundError(
            f"no feature store at {workspace.feature_store}: run the features stage first"
        )
    features = pd.read_parquet(workspace.feature_store)
    splits = split_applicants(features, test_share=params.test_share, seed=params.split_seed)
    splits_info = save_splits(splits, workspace)
    trained = train_model(splits.train, params.model)
    run_id, model_uri = log_training_run(
        trained,
        splits_info,
        workspace=workspace,
        params_extra={"test_share": params.test_share, "split_seed": params.split_seed},
    )
    outcome = TrainingOutcome(trained, run_id, model_uri, splits_info)
    write_json(training_run_path(workspace), outcome.summary())
    return outcome


def read_training_run(workspace: Workspace) -> dict[str, Any]:
    """The train stage's record (run id, model URI, splits), for the later stages."""
    path = training_run_path(workspace)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the train stage first")
    record: dict[str, Any] = read_json(path)
    return record


# ---------------------------------------------------------------------------------------------
# Stage 04: evaluate
# ---------------------------------------------------------------------------------------------

METRICS_FILE = "metrics.json"
EVALUATION_DIR = "evaluation"
DECISION_POLICY_FILE = "decision_policy.json"

#: Attributes screened for fairness: a column of the feature store, or a derived band.
FAIRNESS_ATTRIBUTES = ("CODE_GENDER", "AGE_BAND")


class EvaluateStageParams(BaseModel):
    """Parameters of the evaluate stage: the decision policy, the score scaling, the bins."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["expected_profit", "approval_rate", "max_bad_rate"] = Field(
        "expected_profit", description="how the PD cut-off is chosen"
    )
    lgd: float = Field(0.45, gt=0, le=1, description="loss given default, share of exposure")
    margin: float = Field(0.10, gt=0, description="margin of a repaid loan, share of exposure")
    approval_rate: float = Field(0.80, gt=0, le=1, description="target approval rate policy")
    max_bad_rate: float = Field(0.05, gt=0, lt=1, description="bad-rate ceiling policy")
    base_score: float = Field(600, description="score at the base odds")
    base_odds: float = Field(50, gt=0, description="good:bad odds at the base score")
    pdo: float = Field(20, gt=0, description="points to double the odds")
    n_bins: int = Field(10, ge=2, description="bins of the calibration and lift tables")
    reason_examples: int = Field(5, ge=0, description="declined applicants shown with reasons")


@dataclass(frozen=True)
class EvaluationOutcome:
    """What the evaluate stage measured on the test split."""

    mlflow_run_id: str  # the training run the evaluation was logged to
    metrics: dict[str, Any]  # flat: test_auc, test_ks, …, train_auc, train_test_auc_gap
    decision: Any  # ThresholdDecision
    scaling: Any  # ScoreScaling
    tables: dict[str, pd.DataFrame]  # lift, calibration, bands, importance, fairness_*
    reasons: pd.DataFrame  # declined test applicants with their adverse reason codes
    figures: dict[str, Any]
    figure_paths: dict[str, Any]


def _flat(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    renamed = {"roc_auc": "auc"}
    return {f"{prefix}_{renamed.get(k, k)}": float(v) for k, v in metrics.items()}


def load_trained(model_uri: str, workspace: Workspace) -> TrainedModel:
    """The trained model behind an MLflow model URI (via the pyfunc, as serving loads it)."""
    import mlflow

    from creditrisk import tracking

    tracking.configure(workspace)
    loaded = mlflow.pyfunc.load_model(model_uri)
    trained: TrainedModel = loaded.unwrap_python_model().trained
    return trained


def run_evaluate(params: EvaluateStageParams, workspace: Workspace) -> EvaluationOutcome:
    """Measure the trained model on the test split; choose the threshold; log it all to MLflow."""
    from creditrisk.features.catalog import ID_COLUMN, TARGET_COLUMN
    from creditrisk.modeling import evaluate, explain, plots, scorecard
    from creditrisk.modeling.split import load_splits

    training = read_training_run(workspace)
    trained = load_trained(training["model_uri"], workspace)
    splits = load_splits(workspace)
    y_train, y_test = splits.train[TARGET_COLUMN], splits.test[TARGET_COLUMN]
    pd_train, pd_test = trained.predict_pd(splits.train), trained.predict_pd(splits.test)

    test_metrics = evaluate.classification_metrics(y_test, pd_test, n_bins=params.n_bins)
    train_metrics = evaluate.classification_metrics(y_train, pd_train, n_bins=params.n_bins)
    metrics = {**_flat("test", test_metrics), **_flat("train", train_metrics)}
    metrics["train_test_auc_gap"] = metrics["train_auc"] - metrics["test_auc"]

    policy = evaluate.ThresholdPolicy(
        kind=params.policy,
        lgd=params.lgd,
        margin=params.margin,
        approval_rate=params.approval_rate,
        max_bad_rate=params.max_bad_rate,
    )
    # Policies that fit the cut-off to outcomes are fitted on the training split and reported
    # on the test split; the expected-profit cut-off (break-even PD) needs no fitting.
    threshold = evaluate.choose_threshold(y_train, pd_train, policy=policy).threshold
    decision = evaluate.decision_at_threshold(y_test, pd_test, threshold, policy=policy)
    scaling = scorecard.ScoreScaling(
        base_score=params.base_score, base_odds=params.base_odds, pdo=params.pdo
    )
    scores = scorecard.pd_to_score(pd_test, scaling)

    contributions = trained.contributions(splits.test)
    importance = explain.global_importance(trained.importance()["gain"], contributions)
    groups = {
        "CODE_GENDER": splits.test["CODE_GENDER"].rename("CODE_GENDER"),
        "AGE_BAND": evaluate.age_band(splits.test["AGE_YEARS"]).rename("AGE_BAND"),
    }
    tables = {
        "lift": evaluate.lift_table(y_test, pd_test, n_bins=params.n_bins),
        "calibration": evaluate.calibration_table(y_test, pd_test, n_bins=params.n_bins),
        "bands": scorecard.band_table(y_test, pd_test, scores, scaling=scaling),
        "importance": importance,
        **{
            f"fairness_{name}": evaluate.fairness_table(y_test, pd_test, group, threshold)
            for name, group in groups.items()
        },
    }
    declined = splits.test.loc[pd_test >= threshold].head(params.reason_examples)
    codes = explain.reason_codes(
        contributions.loc[declined.index], declined[list(trained.features)]
    )
    reasons = pd.DataFrame(
        {
            ID_COLUMN: declined[ID_COLUMN].to_numpy(),
            "probability_of_default": pd_test[splits.test.index.get_indexer(declined.index)],
            "reason_codes": [[c.as_dict() for c in row] for row in codes],
        }
    )
    figures = plots.evaluation_figures(
        y_test,
        pd_test,
        decision=decision,
        importance=importance,
        scaling=scaling,
        n_bins=params.n_bins,
    )
    figure_paths = plots.save_figures(figures, workspace.reports / EVALUATION_DIR)
    report = _metrics_report(training, metrics, decision, scaling, tables)
    write_json(workspace.reports / METRICS_FILE, report)
    _log_evaluation(training["mlflow_run_id"], workspace, metrics, report, figure_paths)
    return EvaluationOutcome(
        training["mlflow_run_id"],
        metrics,
        decision,
        scaling,
        tables,
        reasons,
        figures,
        figure_paths,
    )


def json_records(frame: pd.DataFrame, *, index: bool = True) -> list[dict[str, Any]]:
    """A table as JSON-ready records (numpy scalars converted; the index kept as a column)."""
    from creditrisk.pipeline.results import to_json_value

    rows = (frame.reset_index() if index else frame).to_dict(orient="records")
    return [to_json_value(row) for row in rows]  # type: ignore[misc]


def _metrics_report(
    training: dict[str, Any],
    metrics: dict[str, float],
    decision: Any,
    scaling: Any,
    tables: dict[str, pd.DataFrame],
) -> dict[str, Any]:
    return {
        "mlflow_run_id": training["mlflow_run_id"],
        "model_uri": training["model_uri"],
        "metrics": metrics,
        "decision_policy": {"decision": decision.as_dict(), "score_scaling": scaling.as_dict()},
        "tables": {name: json_records(frame) for name, frame in tables.items()},
    }


def _log_evaluation(
    run_id: str,
    workspace: Workspace,
    metrics: dict[str, float],
    report: dict[str, Any],
    figure_paths: dict[str, Any],
) -> None:
    """Add the test metrics, decision policy and figures to the training run in MLflow."""
    import mlflow

    from creditrisk import tracking

    tracking.configure(workspace)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        # The threshold and score scaling travel with the model: serving reads this file.
        mlflow.log_dict(report["decision_policy"], DECISION_POLICY_FILE)
        mlflow.log_dict(report, f"{EVALUATION_DIR}/{METRICS_FILE}")
        for path in figure_paths.values():
            mlflow.log_artifact(str(path), artifact_path=EVALUATION_DIR)
