"""Train the probability-of-default model: encoding + XGBoost + calibration.

The training split is carved into three stratified folds of applicants:

* **fit** — the encoder and the boosted trees are fitted here, and nowhere else;
* **validation** — early stopping picks the number of trees by log loss on it;
* **calibration** — the calibrator maps the trees' raw log-odds to a PD on it.

Every fold is transformed by the encoder fitted on the fit fold, exactly as a new applicant
will be, so neither early stopping nor calibration sees information the model would not have in
production. There is no resampling: the trees learn the real default rate, and calibration only
corrects the shape of the raw score, not its base rate.

"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from xgboost import XGBClassifier

from creditrisk.features import catalog
from creditrisk.features.catalog import TARGET_COLUMN
from creditrisk.modeling.model import (
    CalibrationMethod,
    Calibrator,
    TrainedModel,
    TrainParams,
    feature_frame,
)
from creditrisk.modeling.split import labelled_applicants

#: Rows of the fit fold kept as the logged model's input example.
INPUT_EXAMPLE_ROWS = 3


@dataclass(frozen=True)
class Folds:
    """The training split divided into disjoint sets of applicants (see the module docstring)."""

    fit: pd.DataFrame
    validation: pd.DataFrame
    calibration: pd.DataFrame


def carve_folds(train: pd.DataFrame, params: TrainParams) -> Folds:
    """Divide the training split into fit, validation and calibration folds.

    Stratified by TARGET and seeded; sorted by SK_ID_CURR first, so the folds do not depend on
    the order of the rows.

    Args:
        train: Training-split rows (unlabelled rows are dropped).
        params: Supplies the two shares and the seed.

    Raises:
        ValueError: When a fold would lack defaults or repaid loans.
    """
    labelled = labelled_applicants(train)
    rest, calibration = train_test_split(
        labelled,
        test_size=params.calibration_share,
        random_state=params.seed,
        stratify=labelled[TARGET_COLUMN],
    )
    fit, validation = train_test_split(
        rest,
        # The share is of the whole training split, not of what calibration left.
        test_size=params.validation_share / (1 - params.calibration_share),
        random_state=params.seed,
        stratify=rest[TARGET_COLUMN],
    )
    folds = Folds(fit=fit, validation=validation, calibration=calibration)
    for name in ("fit", "validation", "calibration"):
        outcomes = getattr(folds, name)[TARGET_COLUMN].nunique()
        if outcomes < 2:
            raise ValueError(f"the {name} fold needs both defaults and repaid loans")
    return folds


def model_features(features: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The model's inputs in catalog order, split into (categorical, numeric).

    Args:
        features: A subset of the catalog's features (e.g. application features only);
            default every feature.

    Raises:
        ValueError: When a name is not a feature of the catalog.
    """
    chosen = catalog.feature_names() if features is None else list(features)
    unknown = [name for name in chosen if name not in set(catalog.feature_names())]
    if unknown:
        raise ValueError(f"not features of the catalog: {unknown}")
    categorical = [name for name in catalog.categorical_features() if name in chosen]
    numeric = [name for name in catalog.numeric_features() if name in chosen]
    return categorical, numeric


def build_pipeline(params: TrainParams, features: Sequence[str] | None = None) -> Pipeline:
    """The unfitted model: categorical encoding, numeric pass-through, then XGBoost.

    Args:
        params: Hyper-parameters of the trees.
        features: Model inputs (default: every catalog feature).

    Returns:
        A Pipeline with steps ``encode`` (a ColumnTransformer emitting a DataFrame: categorical
        columns first, then numeric ones, original names kept) and ``model`` (XGBClassifier).
    """
    categorical, numeric = model_features(features)
    encoder = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    # An unseen level (a new product type, a typo) carries no learned risk:
                    # it is treated like a missing value, not as some neighbouring level.
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    dtype=np.float64,
                ),
                categorical,
            ),
            # NULLs stay NaN: "no bureau record" is information, XGBoost learns where it goes.
            ("numeric", "passthrough", numeric),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    classifier = XGBClassifier(
        tree_method="hist",
        objective="binary:logistic",
        eval_metric="logloss",  # a proper scoring rule: early stopping optimises the PD itself
        n_estimators=params.n_estimators,
        learning_rate=params.learning_rate,
        max_depth=params.max_depth,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        reg_lambda=params.reg_lambda,
        early_stopping_rounds=params.early_stopping_rounds,
        random_state=params.seed,
        n_jobs=params.n_jobs or None,
    )
    return Pipeline([("encode", encoder), ("model", classifier)])


def fit_calibrator(
    log_odds: np.ndarray, defaulted: np.ndarray, method: CalibrationMethod
) -> Calibrator:
    """Fit the map from raw log-odds to PD on the calibration fold.

    Args:
        log_odds: The trees' raw log-odds for the calibration fold's applicants.
        defaulted: Their outcomes (1 = default).
        method: ``sigmoid`` (Platt scaling) or ``isotonic``.
    """
    raw = np.asarray(log_odds, dtype=np.float64)
    outcome = np.asarray(defaulted, dtype=np.int64)
    if method == "sigmoid":
        # Unpenalised (C=inf): two parameters on thousands of applicants need no shrinkage.
        platt = LogisticRegression(C=np.inf, max_iter=1000).fit(raw.reshape(-1, 1), outcome)
        return Calibrator(
            method="sigmoid", slope=float(platt.coef_[0, 0]), intercept=float(platt.intercept_[0])
        )
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    isotonic.fit(raw, outcome)
    return Calibrator(
        method="isotonic",
        knots_log_odds=tuple(float(x) for x in isotonic.X_thresholds_),
        knots_pd=tuple(float(y) for y in isotonic.y_thresholds_),
    )


#: Below this many rows, predictions run on one thread (see ``TrainedModel._booster``).
def train_model(
    train: pd.DataFrame, params: TrainParams | None = None, *, features: Sequence[str] | None = None
) -> TrainedModel:
    """Fit the encoder and trees on the fit fold, early-stop on validation, calibrate.

    Args:
        train: The training split (feature-store rows with TARGET); never the test split.
        params: Hyper-parameters; defaults to :class:`TrainParams`.
        features: Model inputs (default every catalog feature), e.g. application features only
            to measure what the credit history adds.

    Returns:
        The trained model with its training diagnostics in ``metrics``.
    """
    params = params or TrainParams()
    started = time.perf_counter()
    categorical, numeric = model_features(features)
    ordered = [name for name in catalog.feature_names() if name in {*categorical, *numeric}]
    folds = carve_folds(train, params)
    pipeline = build_pipeline(params, ordered)
    encoder: ColumnTransformer = pipeline.named_steps["encode"]
    classifier: XGBClassifier = pipeline.named_steps["model"]

    def inputs(fold: pd.DataFrame) -> pd.DataFrame:
        return feature_frame(fold, ordered, categorical)

    # The encoder learns its levels from the fit fold only; the other folds are transformed
    # with it, exactly like applicants scored after deployment.
    encoder.fit(inputs(folds.fit))
    fit_x = encoder.transform(inputs(folds.fit))
    validation_x = encoder.transform(inputs(folds.validation))
    classifier.fit(
        fit_x,
        folds.fit[TARGET_COLUMN].to_numpy(),
        eval_set=[(validation_x, folds.validation[TARGET_COLUMN].to_numpy())],
        verbose=False,
    )
    calibration_x = encoder.transform(inputs(folds.calibration))
    calibration_log_odds = np.asarray(
        classifier.predict(calibration_x, output_margin=True), dtype=np.float64
    )
    calibration_y = folds.calibration[TARGET_COLUMN].to_numpy()
    calibrator = fit_calibrator(calibration_log_odds, calibration_y, params.calibration_method)
    trained = TrainedModel(
        pipeline=pipeline,
        calibrator=calibrator,
        params=params,
        features=tuple(ordered),
        categorical=tuple(categorical),
        input_example=inputs(folds.fit.head(INPUT_EXAMPLE_ROWS)).reset_index(drop=True),
    )
    trained.metrics = _training_metrics(
        trained, folds, fit_x, validation_x, calibration_log_odds, started
    )
    return trained


def _training_metrics(
    trained: TrainedModel,
    folds: Folds,
    fit_x: pd.DataFrame,
    validation_x: pd.DataFrame,
    calibration_log_odds: np.ndarray,
    started: float,
) -> dict[str, float]:
    classifier = trained.classifier
    calibration_y = folds.calibration[TARGET_COLUMN].to_numpy()
    metrics: dict[str, float] = {}
    for name in ("fit", "validation", "calibration"):
        fold = getattr(folds, name)
        metrics[f"{name}_rows"] = float(len(fold))
        metrics[f"{name}_default_rate"] = float(fold[TARGET_COLUMN].mean())
    metrics["fit_auc"] = float(
        roc_auc_score(folds.fit[TARGET_COLUMN], classifier.predict_proba(fit_x)[:, 1])
    )
    metrics["validation_auc"] = float(
        roc_auc_score(folds.validation[TARGET_COLUMN], classifier.predict_proba(validation_x)[:, 1])
    )
    metrics["validation_logloss"] = float(classifier.best_score)
    metrics["best_iteration"] = float(trained.best_iteration)
    raw_pd = 1.0 / (1.0 + np.exp(-calibration_log_odds))
    calibrated_pd = trained.calibrator.probability_of_default(calibration_log_odds)
    metrics["calibration_brier_raw"] = float(brier_score_loss(calibration_y, raw_pd))
    metrics["calibration_brier"] = float(brier_score_loss(calibration_y, calibrated_pd))
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    return metrics
