"""Stage 04 — evaluate: the trained model on the test split it never saw.

Notebook ``04_evaluate.ipynb``, in named steps that :func:`run` chains:

1. :func:`load` — the model the train stage logged, and the splits;
2. :func:`measure` — discrimination and calibration on the test split (and the training split,
   for the over-fitting gap);
3. :func:`decide` — the cut-off from the credit policy's economics, the scorecard scaling;
4. :func:`explain` — global importance and adverse reason codes of declined applicants;
5. :func:`screen_fairness` — approval, bad rate and AUC by gender and age band;
6. :func:`save` — ``reports/metrics.json`` and ``reports/evaluation/*.png``, and in pipeline
   mode the metrics, the decision policy and the figures on the training run in MLflow.

The decision policy logged here is a *proposal*: production decides with the policy frozen on a
registry version, which only the register stage creates, after validate has checked it. An
interactive run (a what-if with another margin, say) writes its report and figures to
``scratch/04_evaluate/`` and logs nothing to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from creditrisk import tracking
from creditrisk.features.catalog import ID_COLUMN, TARGET_COLUMN
from creditrisk.governance.deviations import as_records
from creditrisk.io import write_json
from creditrisk.modeling import evaluate, plots, scorecard
from creditrisk.modeling import explain as explanations
from creditrisk.modeling.model import TrainedModel
from creditrisk.modeling.split import Splits, load_splits
from creditrisk.provenance import to_json_value
from creditrisk.scoring.scorer import DECISION_POLICY_FILE
from creditrisk.stages.context import RunContext
from creditrisk.stages.params import StageParams, parameter
from creditrisk.stages.train import read_training_run

METRICS_FILE = "metrics.json"
EVALUATION_DIR = "evaluation"

#: Attributes screened for fairness: a column of the feature store, or a derived band.
FAIRNESS_ATTRIBUTES = ("CODE_GENDER", "AGE_BAND")


class Params(StageParams):
    """Parameters of the evaluate stage: the decision policy, the score scaling, the bins."""

    STAGE = "evaluate"

    policy: Literal["expected_profit", "approval_rate", "max_bad_rate"] = parameter(
        "expected_profit", "cut-off rule: expected_profit, approval_rate or max_bad_rate"
    )
    lgd: float = parameter(0.45, "loss given default, as a share of the exposure", gt=0, le=1)
    margin: float = parameter(
        0.10, "margin earned on a repaid loan, as a share of the exposure", gt=0
    )
    approval_rate: float = parameter(
        0.80, "target approval rate, for the approval_rate policy", gt=0, le=1
    )
    max_bad_rate: float = parameter(
        0.05, "ceiling on the bad rate among approved, for max_bad_rate", gt=0, lt=1
    )
    base_score: float = parameter(600.0, "scorecard points at the base odds")
    base_odds: float = parameter(50.0, "good-to-bad odds at the base score", gt=0)
    pdo: float = parameter(20.0, "points to double the odds", gt=0)
    n_bins: int = parameter(10, "bins of the calibration and lift tables", ge=2)
    reason_examples: int = parameter(
        5, "declined test applicants shown with their reason codes", policy="operational", ge=0
    )

    def threshold_policy(self) -> evaluate.ThresholdPolicy:
        return evaluate.ThresholdPolicy(
            kind=self.policy,
            lgd=self.lgd,
            margin=self.margin,
            approval_rate=self.approval_rate,
            max_bad_rate=self.max_bad_rate,
        )

    def scaling(self) -> scorecard.ScoreScaling:
        return scorecard.ScoreScaling(
            base_score=self.base_score, base_odds=self.base_odds, pdo=self.pdo
        )


@dataclass(frozen=True)
class Loaded:
    """The model under evaluation and the applicants it is measured on."""

    training: dict[str, Any]
    trained: TrainedModel
    splits: Splits
    pd_train: Any  # np.ndarray
    pd_test: Any


@dataclass(frozen=True)
class Decision:
    """The cut-off the credit policy chooses and how PDs map to points."""

    decision: evaluate.ThresholdDecision
    scaling: scorecard.ScoreScaling
    bands: pd.DataFrame

    @property
    def threshold(self) -> float:
        return self.decision.threshold

    def policy_record(self) -> dict[str, Any]:
        """``decision_policy.json``: what a registered version serves with."""
        return {"decision": self.decision.as_dict(), "score_scaling": self.scaling.as_dict()}


@dataclass(frozen=True)
class Outcome:
    """What the evaluate stage measured on the test split, and where it wrote it."""

    mlflow_run_id: str
    metrics: dict[str, float]
    decision: Decision
    tables: dict[str, pd.DataFrame]
    reasons: pd.DataFrame
    figures: dict[str, Any]
    figure_paths: dict[str, Path]
    report: dict[str, Any]
    path: Path
    logged: bool

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        keys = ("test_auc", "test_gini", "test_ks", "test_brier", "test_ece")
        return {
            "mlflow_run_id": self.mlflow_run_id,
            **{key: self.metrics[key] for key in keys},
            "threshold": self.decision.threshold,
            "approval_rate": self.decision.decision.approval_rate,
            "bad_rate_approved": self.decision.decision.bad_rate_approved,
            "logged_to_mlflow": self.logged,
        }


def load(ctx: RunContext) -> Loaded:
    """The model the workspace's train stage logged, its splits, and its PDs on both.

    Raises:
        FileNotFoundError: The train stage has not run in the workspace.
    """
    # The workspace's reports/ are written by the pipeline only: its model is in the store.
    training = read_training_run(ctx.workspace.reports)
    trained = tracking.load_trained(training["model_uri"], ctx.tracking_uri)
    splits = load_splits(ctx.workspace.splits)
    return Loaded(
        training, trained, splits, trained.predict_pd(splits.train), trained.predict_pd(splits.test)
    )


def _flat(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    renamed = {"roc_auc": "auc"}
    return {f"{prefix}_{renamed.get(k, k)}": float(v) for k, v in metrics.items()}


def measure(params: Params, loaded: Loaded) -> dict[str, float]:
    """Test and training metrics, flat (``test_auc``, …, ``train_test_auc_gap``)."""
    y_train, y_test = loaded.splits.train[TARGET_COLUMN], loaded.splits.test[TARGET_COLUMN]
    test = evaluate.classification_metrics(y_test, loaded.pd_test, n_bins=params.n_bins)
    train = evaluate.classification_metrics(y_train, loaded.pd_train, n_bins=params.n_bins)
    metrics = {**_flat("test", test), **_flat("train", train)}
    metrics["train_test_auc_gap"] = metrics["train_auc"] - metrics["test_auc"]
    return metrics


def decide(params: Params, loaded: Loaded) -> Decision:
    """The cut-off and the score scaling.

    Policies that fit the cut-off to outcomes are fitted on the training split and reported on
    the test split; the expected-profit cut-off (break-even PD) needs no fitting.
    """
    y_train, y_test = loaded.splits.train[TARGET_COLUMN], loaded.splits.test[TARGET_COLUMN]
    policy = params.threshold_policy()
    threshold = evaluate.choose_threshold(y_train, loaded.pd_train, policy=policy).threshold
    decision = evaluate.decision_at_threshold(y_test, loaded.pd_test, threshold, policy=policy)
    scaling = params.scaling()
    scores = scorecard.pd_to_score(loaded.pd_test, scaling)
    bands = scorecard.band_table(y_test, loaded.pd_test, scores, scaling=scaling)
    return Decision(decision, scaling, bands)


def explain(
    params: Params, loaded: Loaded, decision: Decision
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global importance (gain, mean |SHAP|) and reason codes of the first declined applicants."""
    test = loaded.splits.test
    contributions = loaded.trained.contributions(test)
    importance = explanations.global_importance(loaded.trained.importance()["gain"], contributions)
    declined = test.loc[loaded.pd_test >= decision.threshold].head(params.reason_examples)
    codes = explanations.reason_codes(
        contributions.loc[declined.index], declined[list(loaded.trained.features)]
    )
    reasons = pd.DataFrame(
        {
            ID_COLUMN: declined[ID_COLUMN].to_numpy(),
            "probability_of_default": loaded.pd_test[test.index.get_indexer(declined.index)],
            "reason_codes": [[code.as_dict() for code in row] for row in codes],
        }
    )
    return importance, reasons


def screen_fairness(loaded: Loaded, decision: Decision) -> dict[str, pd.DataFrame]:
    """Approval rate, bad rate, AUC and adverse impact ratio by gender and by age band."""
    test = loaded.splits.test
    groups = {
        "CODE_GENDER": test["CODE_GENDER"].rename("CODE_GENDER"),
        "AGE_BAND": evaluate.age_band(test["AGE_YEARS"]).rename("AGE_BAND"),
    }
    y_test = test[TARGET_COLUMN]
    return {
        f"fairness_{name}": evaluate.fairness_table(
            y_test, loaded.pd_test, group, decision.threshold
        )
        for name, group in groups.items()
    }


def json_records(frame: pd.DataFrame, *, index: bool = True) -> list[dict[str, Any]]:
    """A table as JSON-ready records (numpy scalars converted; the index kept as a column)."""
    rows = (frame.reset_index() if index else frame).to_dict(orient="records")
    return [to_json_value(row) for row in rows]  # type: ignore[misc]


def save(
    params: Params,
    ctx: RunContext,
    loaded: Loaded,
    metrics: dict[str, float],
    decision: Decision,
    tables: dict[str, pd.DataFrame],
    reasons: pd.DataFrame,
) -> Outcome:
    """Write the report and figures; in pipeline mode, log them to the training run."""
    y_test = loaded.splits.test[TARGET_COLUMN]
    figures = plots.evaluation_figures(
        y_test,
        loaded.pd_test,
        decision=decision.decision,
        importance=tables["importance"],
        scaling=decision.scaling,
        n_bins=params.n_bins,
    )
    reports = ctx.outputs.reports
    figure_paths = plots.save_figures(figures, reports / EVALUATION_DIR)
    mlflow_run_id = loaded.training["mlflow_run_id"]
    report = {
        "mlflow_run_id": mlflow_run_id,
        "model_uri": loaded.training["model_uri"],
        "mode": ctx.mode,
        "pipeline_run_id": ctx.run_id,
        "metrics": metrics,
        "decision_policy": decision.policy_record(),
        "parameters": params.as_record(),
        "deviations": as_records(params.deviations()),
        "tables": {name: json_records(frame) for name, frame in tables.items()},
    }
    path = write_json(reports / METRICS_FILE, report)
    logged = ctx.mode == "pipeline"
    if logged:
        tracking.log_to_run(
            mlflow_run_id,
            ctx.tracking_uri,
            metrics=metrics,
            dicts={
                # The proposal validate checks; serving reads the policy frozen on a version.
                DECISION_POLICY_FILE: report["decision_policy"],
                f"{EVALUATION_DIR}/{METRICS_FILE}": report,
            },
        )
        tracking.log_to_run(
            mlflow_run_id,
            ctx.tracking_uri,
            files=list(figure_paths.values()),
            artifact_path=EVALUATION_DIR,
        )
    return Outcome(
        mlflow_run_id,
        metrics,
        decision,
        tables,
        reasons,
        figures,
        figure_paths,
        report,
        path,
        logged,
    )


def tables_of(
    params: Params, loaded: Loaded, decision: Decision, importance: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Every table of the report: lift, calibration, bands, importance, fairness."""
    y_test = loaded.splits.test[TARGET_COLUMN]
    return {
        "lift": evaluate.lift_table(y_test, loaded.pd_test, n_bins=params.n_bins),
        "calibration": evaluate.calibration_table(y_test, loaded.pd_test, n_bins=params.n_bins),
        "bands": decision.bands,
        "importance": importance,
        **screen_fairness(loaded, decision),
    }


def run(params: Params, ctx: RunContext) -> Outcome:
    """Load, measure, decide, explain, screen and save: the notebook's steps in one call."""
    loaded = load(ctx)
    metrics = measure(params, loaded)
    decision = decide(params, loaded)
    importance, reasons = explain(params, loaded, decision)
    tables = tables_of(params, loaded, decision, importance)
    return save(params, ctx, loaded, metrics, decision, tables, reasons)
