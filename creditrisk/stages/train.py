"""Stage 03 — train: split the labelled applicants, fit encoding + XGBoost, calibrate, log.

Notebook ``03_train.ipynb``, in three named steps that :func:`run` chains:

1. :func:`split` — stratified by default, by ``SK_ID_CURR``, persisted to ``data/splits/``;
2. :func:`fit` — :func:`creditrisk.modeling.train.train_model` on the training split only;
3. :func:`log` — one MLflow run (experiment ``creditrisk_pd``): parameters, training metrics,
   lineage tags (git commit, lock file, data checksums, feature SQL, split hashes), the feature
   list and the model with its signature and input example; then
   ``reports/training_run.json`` so evaluate, validate and register find the model.

An interactive run writes its splits, its ``training_run.json`` and its MLflow run into its
scratch folder (``scratch/03_train/``, with an MLflow store of its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditrisk import tracking
from creditrisk.features import catalog
from creditrisk.features.engine import store_engine
from creditrisk.governance.deviations import as_records, synthetic_data
from creditrisk.io import read_json, write_json
from creditrisk.modeling.model import CalibrationMethod, TrainedModel, TrainParams
from creditrisk.modeling.split import Splits, TrainingSample, save_splits, split_store
from creditrisk.modeling.train import train_model
from creditrisk.provenance import file_sha256, git_info, lock_info
from creditrisk.stages.context import RunContext
from creditrisk.stages.params import StageParams, parameter

TRAINING_RUN_FILE = "training_run.json"


class Params(StageParams):
    """Parameters of the train stage: the split, then the model's hyper-parameters."""

    STAGE = "train"

    test_share: float = parameter(
        0.2, "share of labelled applicants held out for evaluation", gt=0, lt=1
    )
    split_seed: int = parameter(42, "seed of the stratified split by applicant")
    max_rows: int = parameter(
        0, "most training applicants, above it a stratified seeded sample; 0 keeps all", ge=0
    )
    n_estimators: int = parameter(
        2000, "upper bound on trees; early stopping picks the number", ge=1
    )
    learning_rate: float = parameter(0.05, "shrinkage of each tree", gt=0, le=1)
    max_depth: int = parameter(4, "depth of each tree", ge=1, le=12)
    min_child_weight: float = parameter(
        40.0, "minimum hessian per leaf, about 540 applicants at an 8 % PD", ge=0
    )
    early_stopping_rounds: int = parameter(100, "rounds without a better validation log loss", ge=1)
    calibration_method: CalibrationMethod = parameter("sigmoid", "sigmoid (Platt) or isotonic")
    seed: int = parameter(42, "seed of the fold carving and of XGBoost's sampling")

    def model_params(self) -> TrainParams:
        """The hyper-parameters as the trainer takes them (the rest keep their defaults)."""
        return TrainParams(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            min_child_weight=self.min_child_weight,
            early_stopping_rounds=self.early_stopping_rounds,
            calibration_method=self.calibration_method,
            seed=self.seed,
        )


@dataclass(frozen=True)
class SplitOutcome:
    """The two splits and what was written of them."""

    splits: Splits
    files: dict[str, dict[str, Any]]
    sample: TrainingSample | None = None


@dataclass(frozen=True)
class Outcome:
    """What the train stage produced."""

    trained: TrainedModel
    mlflow_run_id: str
    model_uri: str
    tracking_uri: str
    splits: dict[str, dict[str, Any]]
    record: dict[str, Any]
    path: Path
    sample: TrainingSample | None = None

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        return {
            "mlflow_run_id": self.mlflow_run_id,
            "training_sample": None if self.sample is None else self.sample.as_dict(),
            "model_uri": self.model_uri,
            "best_iteration": self.trained.best_iteration,
            "validation_auc": self.trained.metrics["validation_auc"],
            "calibration_brier": self.trained.metrics["calibration_brier"],
            "n_features": len(self.trained.features),
        }


def split(params: Params, ctx: RunContext) -> SplitOutcome:
    """Split the feature store's labelled applicants; write ``data/splits/``.

    Raises:
        FileNotFoundError: There is no feature store: run the features stage first.
    """
    store = ctx.workspace.feature_store
    if not store.exists():
        raise FileNotFoundError(f"no feature store at {store}: run the features stage first")
    splits, sample = split_store(
        store, test_share=params.test_share, seed=params.split_seed, max_rows=params.max_rows
    )
    files = save_splits(splits, ctx.outputs.splits, relative_to=ctx.outputs.home)
    return SplitOutcome(splits=splits, files=files, sample=sample)


def fit(params: Params, splits: SplitOutcome) -> TrainedModel:
    """Train the calibrated model on the training split (never the test split)."""
    return train_model(splits.splits.train, params.model_params())


def log(params: Params, ctx: RunContext, trained: TrainedModel, splits: SplitOutcome) -> Outcome:
    """Log the MLflow training run and write ``reports/training_run.json``."""
    import mlflow

    from creditrisk.modeling import pd_model

    uri = ctx.output_tracking_uri
    experiment_id = tracking.configure(uri)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(
            {
                **trained.params.model_dump(),
                "n_features": len(trained.features),
                "test_share": params.test_share,
                "split_seed": params.split_seed,
                "max_rows": params.max_rows,
            }
        )
        if splits.sample is not None:
            mlflow.log_dict(splits.sample.as_dict(), "training_sample.json")
            mlflow.set_tag("training_sample", "true")
        mlflow.log_metrics(trained.metrics)
        mlflow.set_tags(lineage_tags(ctx, splits.files))
        mlflow.log_dict(pd_model.feature_manifest(trained), "features.json")
        mlflow.log_dict(dict(splits.files), "splits.json")
        mlflow.log_dict(params.as_record(), "train_parameters.json")
        mlflow.log_dict(
            trained.importance().reset_index().to_dict(orient="records"), "importance.json"
        )
        info = pd_model.log_model(trained, input_example=trained.input_example)
        mlflow_run_id: str = run.info.run_id
    # MLflow 3's logged-model URI (models:/m-<id>): a registered version made from it points at
    # the model's own artifacts, whereas runs:/<id>/model is only an alias for loading.
    model_uri: str = info.model_uri
    record = {
        "mlflow_run_id": mlflow_run_id,
        "model_uri": model_uri,
        "tracking_uri": uri,
        "mode": ctx.mode,
        "pipeline_run_id": ctx.run_id,
        "best_iteration": trained.best_iteration,
        "n_features": len(trained.features),
        "splits": splits.files,
        "training_sample": None if splits.sample is None else splits.sample.as_dict(),
        "metrics": trained.metrics,
        "parameters": params.as_record(),
        "deviations": as_records(params.deviations()),
    }
    path = write_json(ctx.outputs.reports / TRAINING_RUN_FILE, record)
    return Outcome(
        trained, mlflow_run_id, model_uri, uri, splits.files, record, path, splits.sample
    )


def run(params: Params, ctx: RunContext) -> Outcome:
    """Split, fit and log: the notebook's three steps in one call."""
    splits = split(params, ctx)
    return log(params, ctx, fit(params, splits), splits)


def lineage_tags(ctx: RunContext, split_files: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Tags that trace a run back to code, environment, data, feature definition and splits.

    Returns:
        ``git_commit``/``git_dirty`` (when in git), ``lock_sha256``/``lock_matches`` (the
        locked environment), ``pipeline_run_id`` and ``mode``, ``data_snapshot_id``,
        ``data_sha256.<table>`` and ``synthetic_data`` (from the ingestion summary),
        ``feature_sql_hash``, ``feature_store_sha256``, ``feature_engine`` (``duckdb`` or
        ``spark``, with ``feature_spark_version`` and ``feature_spark_master``) and
        ``split_sha256.<split>`` / ``split_rows.<split>``. Absent sources are left out.
    """
    tags: dict[str, str] = {"feature_sql_hash": catalog.sql_hash(), "mode": ctx.mode}
    git = git_info(ctx.project_root)
    if git.commit:
        tags["git_commit"] = git.commit
        tags["git_dirty"] = str(git.dirty).lower()
    lock = lock_info(ctx.project_root)
    if lock.sha256:
        tags["lock_sha256"] = lock.sha256
        tags["lock_matches"] = str(lock.matches).lower()
    if ctx.run_id:
        tags["pipeline_run_id"] = ctx.run_id
    summary_path = ctx.workspace.ingestion_summary
    if summary_path.exists():
        summary = read_json(summary_path)
        tags["data_snapshot_id"] = str(summary.get("snapshot_id"))
        tags["synthetic_data"] = str(synthetic_data(summary) is not None).lower()
        for table, entry in sorted(summary.get("tables", {}).items()):
            tags[f"data_sha256.{table}"] = str(entry.get("sha256") or "absent")
    if ctx.workspace.feature_store.exists():
        tags["feature_store_sha256"] = file_sha256(ctx.workspace.feature_store)
        # Which engine computed the features (Spark: its version and master).
        for key, value in store_engine(ctx.workspace.feature_store).items():
            tags[f"feature_{key}"] = value
    for name, entry in split_files.items():
        tags[f"split_sha256.{name}"] = str(entry.get("sha256"))
        tags[f"split_rows.{name}"] = str(entry.get("rows"))
    return tags


def read_training_run(reports: Path) -> dict[str, Any]:
    """The train stage's record (run id, model URI, store, splits) in a ``reports/`` folder.

    Raises:
        FileNotFoundError: The train stage has not run in that workspace.
    """
    path = reports / TRAINING_RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the train stage first")
    record: dict[str, Any] = read_json(path)
    return record
