"""Model tests on a real `small` feature store: split, pipeline, calibration, behaviour, MLflow.

The feature store is built once per session (xdist workers share it through a file lock) and
the two models once per module; see modeling_fixtures.py.
"""

# The fixtures are imported from modeling_fixtures and injected by name, which ruff reads as
# redefinitions; importing them (rather than a global plugin) keeps them local to this module.
# ruff: noqa: F811

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import xgboost
from modeling_fixtures import (  # noqa: F401
    PIPELINE_RUN_ID,
    LoggedRun,
    ModelingData,
    logged_run,
    modeling_data,
    modeling_snapshot,
    params,
    splits,
    trained,
    trained_application_only,
)
from pydantic import ValidationError
from sklearn.metrics import brier_score_loss, roc_auc_score

from creditrisk import tracking
from creditrisk.features import catalog
from creditrisk.features.catalog import ID_COLUMN, TARGET_COLUMN
from creditrisk.io import read_json
from creditrisk.modeling.model import BIAS_COLUMN, Calibrator, TrainedModel, TrainParams
from creditrisk.modeling.split import (
    Splits,
    check_disjoint,
    load_splits,
    split_applicants,
    split_store,
)
from creditrisk.modeling.train import carve_folds, fit_calibrator, train_model
from creditrisk.settings import Settings, Workspace

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("modeling")]


def _ids(frame: pd.DataFrame) -> set[int]:
    return set(frame[ID_COLUMN].tolist())


# ---------------------------------------------------------------------------------------------
# split


def test_split_holds_only_labelled_applicants_each_once(
    modeling_data: ModelingData, splits: Splits
) -> None:
    features = modeling_data.features
    labelled = features.loc[features[TARGET_COLUMN].notna()]
    assert features[TARGET_COLUMN].isna().any(), "the store should also hold unlabelled rows"
    assert not _ids(splits.train) & _ids(splits.test)
    assert _ids(splits.train) | _ids(splits.test) == _ids(labelled)
    assert len(splits.test) == pytest.approx(0.2 * len(labelled), abs=1)
    assert splits.train[TARGET_COLUMN].isin([0, 1]).all()


def test_split_is_stratified_by_default(modeling_data: ModelingData, splits: Splits) -> None:
    overall = modeling_data.features[TARGET_COLUMN].mean()
    # Stratification makes the rates equal up to one applicant's rounding, not sampling noise.
    assert splits.train[TARGET_COLUMN].mean() == pytest.approx(overall, abs=2 / len(splits.test))
    assert splits.test[TARGET_COLUMN].mean() == pytest.approx(overall, abs=2 / len(splits.test))


def test_split_does_not_depend_on_row_order(modeling_data: ModelingData, splits: Splits) -> None:
    shuffled = modeling_data.features.sample(frac=1.0, random_state=3)
    again = split_applicants(shuffled, test_share=0.2, seed=42)
    pd.testing.assert_frame_equal(again.train, splits.train)
    pd.testing.assert_frame_equal(again.test, splits.test)
    other_seed = split_applicants(shuffled, test_share=0.2, seed=43)
    assert _ids(other_seed.test) != _ids(splits.test)


def test_split_refuses_an_applicant_in_both(splits: Splits) -> None:
    leaked = Splits(train=splits.train, test=pd.concat([splits.test, splits.train.head(2)]))
    with pytest.raises(ValueError, match="2 applicant"):
        check_disjoint(leaked)
    duplicated = pd.concat([splits.train, splits.train.head(1)])
    with pytest.raises(ValueError, match="duplicated"):
        split_applicants(duplicated)


def test_saved_splits_round_trip_with_their_hashes(logged_run: LoggedRun, splits: Splits) -> None:
    folder = logged_run.workspace.splits
    assert sorted(p.name for p in folder.iterdir()) == ["test.parquet", "train.parquet"]
    for name, entry in logged_run.splits_info.items():
        path = logged_run.workspace.home / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert entry["rows"] == len(getattr(splits, name))
    loaded = load_splits(logged_run.workspace.splits)
    pd.testing.assert_frame_equal(loaded.train, splits.train)
    pd.testing.assert_frame_equal(loaded.test, splits.test)


def store_file(tmp_path: Path, applicants: int = 5000) -> Path:
    """A feature-store-like file: ids out of order, 8 % defaults, unlabelled rows, row groups."""
    rng = np.random.default_rng(3)
    ids = rng.permutation(np.arange(100_000, 100_000 + applicants))
    target = (rng.random(applicants) < 0.08).astype(float)
    target[: applicants // 10] = np.nan  # application_test rows
    frame = pd.DataFrame({ID_COLUMN: ids, TARGET_COLUMN: target, "X": rng.normal(size=applicants)})
    path = tmp_path / "feature_store.parquet"
    frame.to_parquet(path, index=False, row_group_size=700)
    return path


def test_max_rows_fits_on_a_stratified_sample_and_keeps_the_test_split(tmp_path: Path) -> None:
    store = store_file(tmp_path)
    full, none = split_store(store, test_share=0.2, seed=42)
    assert none is None
    reference = split_applicants(pd.read_parquet(store), 0.2, 42)
    pd.testing.assert_frame_equal(full.train, reference.train)  # max_rows=0: as before
    pd.testing.assert_frame_equal(full.test, reference.test)

    sampled, sample = split_store(store, test_share=0.2, seed=42, max_rows=1000)
    assert sample is not None and len(full.train) == 3600
    assert (sample.max_rows, sample.rows, sample.rows_before, sample.seed) == (1000, 1000, 3600, 42)
    assert len(sampled.train) == 1000
    assert set(sampled.train[ID_COLUMN]) < set(full.train[ID_COLUMN])
    pd.testing.assert_frame_equal(sampled.test, full.test)  # evaluation on the same applicants
    # Stratified: the sample's default rate is the split's, to one applicant.
    assert abs(sample.default_rate - sample.default_rate_before) <= 1 / 1000
    assert sample.default_rate == sampled.train[TARGET_COLUMN].mean()
    assert sampled.train[ID_COLUMN].is_monotonic_increasing
    kept = full.train.set_index(ID_COLUMN).loc[sampled.train[ID_COLUMN]].reset_index()
    pd.testing.assert_frame_equal(sampled.train, kept)  # whole rows, as the store has them
    # Seeded: the same seed, the same applicants; another seed, others.
    again, _ = split_store(store, test_share=0.2, seed=42, max_rows=1000)
    assert again.train[ID_COLUMN].tolist() == sampled.train[ID_COLUMN].tolist()
    other, _ = split_store(store, test_share=0.2, seed=7, max_rows=1000)
    assert other.train[ID_COLUMN].tolist() != sampled.train[ID_COLUMN].tolist()


def test_max_rows_above_the_training_split_takes_no_sample(tmp_path: Path) -> None:
    store = store_file(tmp_path)
    splits, sample = split_store(store, test_share=0.2, seed=42, max_rows=3600)
    assert sample is None and len(splits.train) == 3600
    with pytest.raises(ValueError, match="max_rows"):
        split_store(store, max_rows=-1)


def test_load_splits_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train split"):
        load_splits(Workspace(tmp_path).splits)


# ---------------------------------------------------------------------------------------------
# pipeline and training


def test_encoder_learns_levels_from_the_fit_fold_only(splits: Splits, params: TrainParams) -> None:
    quick = params.model_copy(
        update={"n_estimators": 60, "learning_rate": 0.3, "early_stopping_rounds": 10}
    )
    train = splits.train.head(6000).copy()
    folds = carve_folds(train, quick)
    held_out = _ids(folds.validation) | _ids(folds.calibration)
    # A level only validation and calibration applicants have: a fit-only encoder cannot know it.
    train.loc[train[ID_COLUMN].isin(held_out), "NAME_INCOME_TYPE"] = "Lottery winner"
    model = train_model(train, quick)

    fit_levels = set(folds.fit["NAME_INCOME_TYPE"].dropna())
    assert set(model.categories()["NAME_INCOME_TYPE"]) == fit_levels
    assert "Lottery winner" not in model.categories()["NAME_INCOME_TYPE"]
    # Unseen at fit time means "no information": scored exactly like a missing income type.
    rows = splits.test.head(200).copy()
    unseen = rows.assign(NAME_INCOME_TYPE="Lottery winner")
    missing = rows.assign(NAME_INCOME_TYPE=None)
    np.testing.assert_array_equal(model.predict_pd(unseen), model.predict_pd(missing))


def test_unseen_categories_in_new_applicants_give_valid_pds(
    trained: TrainedModel, splits: Splits
) -> None:
    rows = splits.test.head(300).assign(
        CODE_GENDER="XNA", NAME_FAMILY_STATUS="Unknown", NAME_CONTRACT_TYPE=None
    )
    assert "XNA" not in trained.categories()["CODE_GENDER"]
    probability = trained.predict_pd(rows)
    assert probability.shape == (300,)
    assert np.isfinite(probability).all()
    assert ((probability > 0) & (probability < 1)).all()


def test_fast_encoding_is_the_fitted_pipeline_exactly(
    trained: TrainedModel, splits: Splits
) -> None:
    """Scoring skips sklearn's per-call cost; it must give the fitted pipeline's numbers."""
    rows = splits.test.head(2000).copy()
    rows.loc[rows.index[:50], "CODE_GENDER"] = "XNA"  # unseen level
    rows.loc[rows.index[50:100], "NAME_CONTRACT_TYPE"] = None  # missing
    via_sklearn = trained._encoded(rows)

    np.testing.assert_array_equal(trained.encoded_matrix(rows), via_sklearn.to_numpy(float))
    margins = trained.classifier.predict(via_sklearn, output_margin=True)
    np.testing.assert_array_equal(trained.predict_log_odds(rows), margins.astype(np.float64))
    contributions = trained.classifier.get_booster()[: trained.n_trees].predict(
        xgboost.DMatrix(via_sklearn), pred_contribs=True
    )
    ours = trained.contributions(rows)
    np.testing.assert_array_equal(
        ours[list(via_sklearn.columns)].to_numpy(), contributions[:, :-1].astype(np.float64)
    )


def test_early_stopping_chose_the_number_of_trees(
    trained: TrainedModel, params: TrainParams
) -> None:
    rounds = trained.classifier.get_booster().num_boosted_rounds()
    assert trained.best_iteration + 1 < params.n_estimators
    # Training stopped exactly `early_stopping_rounds` after the best validation log loss.
    assert rounds == trained.best_iteration + 1 + params.early_stopping_rounds
    assert trained.metrics["best_iteration"] == trained.best_iteration
    assert trained.metrics["fit_auc"] > trained.metrics["validation_auc"] > 0.7


def test_predict_pd_ignores_key_target_and_extra_columns(
    trained: TrainedModel, splits: Splits
) -> None:
    rows = splits.test.head(500)
    expected = trained.predict_pd(rows)
    features_only = rows[list(trained.features)]
    relabelled = rows.assign(
        **{ID_COLUMN: rows[ID_COLUMN].to_numpy()[::-1] + 10**9, TARGET_COLUMN: 1}, NOTE="vip"
    )
    reordered = relabelled[list(reversed(relabelled.columns))]
    np.testing.assert_array_equal(trained.predict_pd(features_only), expected)
    np.testing.assert_array_equal(trained.predict_pd(reordered), expected)
    assert trained.predict_pd(rows.head(1))[0] == expected[0]


def test_predict_pd_accepts_json_records_and_empty_batches(
    trained: TrainedModel, splits: Splits
) -> None:
    rows = splits.test.head(20)
    expected = trained.predict_pd(rows)
    # As a REST body arrives: plain Python values, None for NULL, object columns throughout.
    records = pd.DataFrame(rows.astype(object).where(rows.notna(), None).to_dict("records"))
    np.testing.assert_allclose(trained.predict_pd(records), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(trained.predict_pd(rows.convert_dtypes()), expected, atol=1e-12)
    assert trained.predict_pd(rows.iloc[:0]).shape == (0,)
    assert trained.contributions(rows.iloc[:0]).shape == (0, len(trained.features) + 1)
    with pytest.raises(ValueError, match="AMT_CREDIT must be numeric"):
        trained.predict_pd(rows.assign(AMT_CREDIT="a lot"))


def test_predict_pd_names_missing_feature_columns(trained: TrainedModel, splits: Splits) -> None:
    rows = splits.test.head(5).drop(columns=["EXT_SOURCE_3", "BUREAU_N_ACTIVE"])
    with pytest.raises(ValueError, match=r"EXT_SOURCE_3.*BUREAU_N_ACTIVE"):
        trained.predict_pd(rows)


# ---------------------------------------------------------------------------------------------
# calibration


def test_mean_pd_matches_the_observed_default_rate(trained: TrainedModel, splits: Splits) -> None:
    probability = trained.predict_pd(splits.test)
    observed = splits.test[TARGET_COLUMN].mean()
    assert ((probability >= 0) & (probability <= 1)).all()
    assert probability.mean() == pytest.approx(observed, abs=0.01)


def test_pd_is_reliable_in_every_decile(trained: TrainedModel, splits: Splits) -> None:
    table = pd.DataFrame(
        {"pd": trained.predict_pd(splits.test), "defaulted": splits.test[TARGET_COLUMN]}
    )
    table["decile"] = pd.qcut(table["pd"], 10, labels=False)
    bins = table.groupby("decile").agg(
        mean_pd=("pd", "mean"), default_rate=("defaulted", "mean"), n=("pd", "size")
    )
    # Observed rate vs PD in standard errors: the test decile's binomial noise plus that of the
    # calibration fold's applicants in the same decile, whose outcomes set the PD level.
    calibration_per_decile = trained.metrics["calibration_rows"] / 10
    error = np.sqrt(
        bins["mean_pd"] * (1 - bins["mean_pd"]) * (1 / bins["n"] + 1 / calibration_per_decile)
    )
    z = (bins["default_rate"] - bins["mean_pd"]) / error
    assert (z.abs() < 3).all(), bins.assign(z=z)
    # And the PD ranks: the riskiest decile defaults far more often than the safest.
    assert bins["default_rate"].iloc[-1] > 8 * bins["default_rate"].iloc[0]


def _brier_difference(
    y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray
) -> tuple[float, float]:
    """Mean per-applicant Brier difference (candidate - baseline) and its standard error."""
    difference = (candidate - y) ** 2 - (baseline - y) ** 2
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def test_calibration_is_no_worse_than_a_rescaled_raw_score(
    trained: TrainedModel, splits: Splits
) -> None:
    y = splits.test[TARGET_COLUMN].to_numpy()
    raw = trained.predict_raw(splits.test)
    # Baseline: the raw tree probability scaled to the calibration fold's default rate.
    rescaled = np.clip(raw * trained.metrics["calibration_default_rate"] / raw.mean(), 0, 1)
    calibrated = trained.predict_pd(splits.test)
    difference, error = _brier_difference(y, calibrated, rescaled)
    # Without resampling the raw trees are already close to calibrated, and at `small` scale
    # Platt's two parameters carry noise from ~3,600 calibration applicants: across data and
    # fold seeds the two Brier scores differ by under 0.0006 either way. Non-inferiority:
    # calibration may not be worse by more than three paired standard errors.
    assert difference <= 3 * error, (difference, error)
    assert brier_score_loss(y, calibrated) < brier_score_loss(y, np.full(len(y), y.mean()))


def test_calibration_repairs_an_overconfident_score(
    trained: TrainedModel, splits: Splits, params: TrainParams
) -> None:
    calibration_fold = carve_folds(splits.train, params).calibration

    # Distort the trees' log-odds as resampling or a shifted base rate would: too steep, too high.
    def distorted(frame: pd.DataFrame) -> np.ndarray:
        return 2.0 * trained.predict_log_odds(frame) + 1.5

    platt = fit_calibrator(
        distorted(calibration_fold), calibration_fold[TARGET_COLUMN].to_numpy(), "sigmoid"
    )
    y = splits.test[TARGET_COLUMN].to_numpy()
    raw = 1 / (1 + np.exp(-distorted(splits.test)))
    rescaled = np.clip(raw * calibration_fold[TARGET_COLUMN].mean() / raw.mean(), 0, 1)
    calibrated = platt.probability_of_default(distorted(splits.test))
    difference, error = _brier_difference(y, calibrated, rescaled)
    assert difference < -3 * error, (difference, error)
    assert calibrated.mean() == pytest.approx(y.mean(), abs=0.01)
    assert platt.slope == pytest.approx(0.5, abs=0.15)  # undoes the factor 2


def test_calibrators_by_hand() -> None:
    platt = Calibrator(method="sigmoid", slope=1.0, intercept=-1.0)
    assert platt.probability_of_default(np.array([1.0]))[0] == pytest.approx(0.5)
    assert platt.probability_of_default(np.array([1.0 + np.log(3)]))[0] == pytest.approx(0.75)
    steps = Calibrator(method="isotonic", knots_log_odds=(-2.0, 0.0), knots_pd=(0.0, 0.2))
    assert steps.probability_of_default(np.array([-5.0, -1.0, 0.0, 9.0])).tolist() == (
        pytest.approx([1e-6, 0.1, 0.2, 0.2])  # clipped at the ends; never exactly 0
    )
    assert Calibrator.from_dict(json.loads(json.dumps(steps.to_dict()))) == steps


def test_platt_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(5)
    log_odds = rng.normal(-2.5, 1.0, 40_000)
    # The true PD is logistic in 0.5 * raw log-odds - 1: an over-confident, too-high score.
    defaulted = rng.random(log_odds.size) < 1 / (1 + np.exp(-(0.5 * log_odds - 1.0)))
    platt = fit_calibrator(log_odds, defaulted, "sigmoid")
    assert platt.slope == pytest.approx(0.5, abs=0.05)
    assert platt.intercept == pytest.approx(-1.0, abs=0.15)
    isotonic = fit_calibrator(log_odds, defaulted, "isotonic")
    assert np.all(np.diff(isotonic.knots_pd) >= 0)
    assert np.all(np.diff(isotonic.knots_log_odds) > 0)


def test_train_params_reject_inconsistent_shares() -> None:
    with pytest.raises(ValidationError, match="validation_share"):
        TrainParams(validation_share=0.5, calibration_share=0.4)
    with pytest.raises(ValidationError):
        TrainParams(learning_rate=0.1, max_leaves=8)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TrainParams(calibration_method="beta")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# behaviour


@pytest.mark.parametrize(
    "scores", [["EXT_SOURCE_3"], ["EXT_SOURCE_2"], ["EXT_SOURCE_2", "EXT_SOURCE_3"]]
)
def test_better_external_scores_do_not_raise_pd(
    trained: TrainedModel, splits: Splits, scores: list[str]
) -> None:
    applicants = splits.test.dropna(subset=scores)  # a missing score cannot be raised
    improved = applicants.copy()
    for score in scores:
        improved[score] = (improved[score] + 0.2).clip(upper=1.0)
    before, after = trained.predict_pd(applicants), trained.predict_pd(improved)
    assert len(applicants) > 1000
    assert np.mean(after <= before) >= 0.9
    assert after.mean() < before.mean()


def test_credit_history_adds_lift(
    trained: TrainedModel, trained_application_only: TrainedModel, splits: Splits
) -> None:
    y = splits.test[TARGET_COLUMN]
    full = roc_auc_score(y, trained.predict_pd(splits.test))
    application_only = roc_auc_score(y, trained_application_only.predict_pd(splits.test))
    assert not any(f.startswith(("BUREAU_", "PREV_")) for f in trained_application_only.features)
    assert full > 0.75
    assert full - application_only > 0.01, (full, application_only)


def test_contributions_add_up_to_the_raw_log_odds(trained: TrainedModel, splits: Splits) -> None:
    rows = splits.test.sample(300, random_state=1)
    contributions = trained.contributions(rows)
    assert list(contributions.columns) == [*trained.features, BIAS_COLUMN]
    assert contributions.index.equals(rows.index)
    np.testing.assert_allclose(
        contributions.sum(axis=1), trained.predict_log_odds(rows), rtol=0, atol=1e-4
    )
    # A high external score argues against default, on average over applicants who have one.
    has_score = rows["EXT_SOURCE_2"].notna()
    high = rows["EXT_SOURCE_2"] > rows.loc[has_score, "EXT_SOURCE_2"].median()
    assert contributions.loc[high, "EXT_SOURCE_2"].mean() < 0


def test_importance_covers_every_feature(trained: TrainedModel) -> None:
    importance = trained.importance()
    assert sorted(importance.index) == sorted(catalog.feature_names())
    assert importance["gain"].is_monotonic_decreasing
    assert importance["gain_share"].sum() == pytest.approx(1.0)
    assert {"EXT_SOURCE_2", "EXT_SOURCE_3"} <= set(importance.index[:5])


# ---------------------------------------------------------------------------------------------
# tracking and the MLflow model


def test_tracking_uri_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.tracking_uri(Settings(home=tmp_path))
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    # Artifacts go beside the SQLite database, one folder per experiment.
    assert tracking.artifact_location(uri) == (
        (tmp_path.resolve() / "mlartifacts" / "creditrisk_pd").as_uri()
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.tracking_uri(Settings(home=tmp_path)) == "http://mlflow.internal:5000"
    assert tracking.artifact_location("http://mlflow.internal:5000") is None


def test_run_records_params_metrics_and_lineage(
    logged_run: LoggedRun, trained: TrainedModel
) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(logged_run.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    home = logged_run.workspace.home
    assert experiment.name == tracking.EXPERIMENT
    assert experiment.artifact_location.startswith((home / "mlartifacts").as_uri())
    assert (home / "mlflow.db").exists()

    assert run.data.params["learning_rate"] == str(trained.params.learning_rate)
    assert run.data.params["calibration_method"] == "sigmoid"
    assert run.data.params["test_share"] == "0.2"
    for metric in ("fit_auc", "validation_auc", "best_iteration", "calibration_brier"):
        assert run.data.metrics[metric] == pytest.approx(trained.metrics[metric])

    tags = run.data.tags
    summary = read_json(logged_run.workspace.ingestion_summary)
    assert tags["pipeline_run_id"] == PIPELINE_RUN_ID
    assert tags["mode"] == "pipeline"
    assert tags["synthetic_data"] == "true"
    assert tags["feature_sql_hash"] == catalog.sql_hash()
    assert tags["feature_engine"] == "duckdb"  # the store DuckDB wrote carries no engine metadata
    assert "feature_spark_version" not in tags
    assert tags["data_snapshot_id"] == summary["snapshot_id"]
    assert tags["data_sha256.bureau"] == summary["tables"]["bureau"]["sha256"]
    assert tags["split_sha256.test"] == logged_run.splits_info["test"]["sha256"]
    assert len(tags["git_commit"]) == 40

    manifest = mlflow.artifacts.load_dict(f"runs:/{logged_run.run_id}/features.json")
    assert [f["name"] for f in manifest["features"]] == list(trained.features)


def test_configure_does_not_export_the_store_to_the_environment(
    logged_run: LoggedRun, tmp_path: Path
) -> None:
    # MLflow mirrors set_tracking_uri into MLFLOW_TRACKING_URI; left there, it would win for
    # every workspace configured later in this process (tracking_uri prefers the environment).
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ
    other = Workspace(tmp_path)
    assert tracking.tracking_uri(Settings(home=tmp_path)) == other.mlflow_uri


def test_logged_model_predicts_the_calibrated_pd(
    logged_run: LoggedRun, trained: TrainedModel, splits: Splits
) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model(f"runs:/{logged_run.run_id}/model")
    rows = splits.test.head(400)  # feature-store rows, SK_ID_CURR and TARGET included
    probability = model.predict(rows)
    assert probability.name == "probability_of_default"
    np.testing.assert_allclose(probability.to_numpy(), trained.predict_pd(rows), rtol=0, atol=1e-9)
    assert probability.dtype == np.float64
    assert probability.between(0, 1).all()
    assert not probability.isin([0.0, 1.0]).any()  # probabilities, not labels

    unwrapped = model.unwrap_python_model()
    np.testing.assert_allclose(
        unwrapped.contributions(rows).sum(axis=1), unwrapped.predict_log_odds(rows), atol=1e-4
    )


def test_logged_model_accepts_integer_and_null_batches(
    logged_run: LoggedRun, trained: TrainedModel, modeling_data: ModelingData
) -> None:
    import mlflow

    store = pq.read_table(logged_run.workspace.feature_store)
    with_history = store.filter(
        pc.and_(pc.is_valid(store["BUREAU_N_ACTIVE"]), pc.is_valid(store["PREV_TOTAL"]))
    )
    # One applicant as serving sees it: no NULL in these BIGINT columns, so pandas gives int64.
    one = with_history.slice(0, 1).to_pandas()
    assert one["BUREAU_N_ACTIVE"].dtype == np.int64
    without_history = store.filter(pc.is_null(store["BUREAU_N_ACTIVE"])).slice(0, 5).to_pandas()
    model = mlflow.pyfunc.load_model(logged_run.model_uri)
    for batch in (one, without_history):
        np.testing.assert_allclose(model.predict(batch), trained.predict_pd(batch), atol=1e-9)
    with pytest.raises(mlflow.exceptions.MlflowException, match="EXT_SOURCE_3"):
        model.predict(one.drop(columns=["EXT_SOURCE_3"]))


def test_logged_model_is_stored_without_pickles(logged_run: LoggedRun) -> None:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(logged_run.model_uri))
    files = {p.name for p in local.rglob("*") if p.is_file()}
    assert {"xgboost_model.json", "encoder.skops", "calibrator.json", "model_meta.json"} <= files
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".joblib"))]
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == list(catalog.feature_names())
