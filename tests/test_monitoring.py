"""Stability indices and the PD back-test on hand-computed examples."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta
from typer.testing import CliRunner

from creditrisk import governance
from creditrisk.cli import app
from creditrisk.locking import workspace_lock
from creditrisk.monitoring import (
    MISSING,
    PSI_EPSILON,
    UNSEEN,
    StabilityBands,
    backtest,
    categorical_table,
    characteristic_stability,
    jeffreys_interval,
    numeric_table,
)
from creditrisk.monitoring.drift import DriftSettings, run_drift, write_drift_report
from creditrisk.monitoring.freshness import check_freshness
from creditrisk.monitoring.trigger import RetrainRules, decide, read_history, record_and_decide
from creditrisk.settings import Workspace


def term(actual: float, expected: float) -> float:
    return (actual - expected) * math.log(actual / expected)


def test_numeric_psi_by_hand() -> None:
    # Reference median 2.5 splits [1, 2, 3, 4] in two halves; the current has 3 of 4 below it.
    table = numeric_table([1, 2, 3, 4], [1, 1, 1, 4], bins=2)
    assert table["expected_count"].tolist() == [2, 2]
    assert table["actual_count"].tolist() == [3, 1]
    assert table["upper"].iloc[0] == 2.5 and math.isinf(table["upper"].iloc[1])
    assert table["psi"].sum() == pytest.approx(term(0.75, 0.5) + term(0.25, 0.5), abs=1e-12)
    assert table["psi"].sum() == pytest.approx(0.274653, abs=1e-6)
    # the governance canary reads the same numbers
    assert governance.psi([1, 2, 3, 4], [1, 1, 1, 4], bins=2) == pytest.approx(
        table["psi"].sum(), abs=1e-15
    )


def test_missing_values_are_a_bin_of_their_own() -> None:
    # Present reference [1, 2, 3]: median 2, so bins (-inf, 2], (2, inf), then missing.
    nan = float("nan")
    table = numeric_table([1, 2, 3, nan], [nan, nan, 1, 3], bins=2, missing=True)
    assert table["expected_count"].tolist() == [2, 1, 1]
    assert table["actual_count"].tolist() == [1, 1, 2]
    assert math.isnan(table["lower"].iloc[-1])
    expected = term(0.25, 0.5) + 0.0 + term(0.5, 0.25)
    assert table["psi"].sum() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="NaN or infinite"):
        numeric_table([1, 2], [1, nan])
    with pytest.raises(ValueError, match="empty"):
        numeric_table([], [1.0])


def test_categorical_psi_counts_unseen_and_missing_levels() -> None:
    table = categorical_table(pd.Series(["a", "a", "b", None]), pd.Series(["a", "c", None, None]))
    assert table["level"].tolist() == ["a", "b", UNSEEN, MISSING]
    assert table["expected_count"].tolist() == [2, 1, 0, 1]
    assert table["actual_count"].tolist() == [1, 0, 1, 2]
    e = PSI_EPSILON
    expected = term(0.25, 0.5) + term(e, 0.25) + term(0.25, e) + term(0.5, 0.25)
    assert table["psi"].sum() == pytest.approx(expected, abs=1e-12)


def test_bands_read_the_index() -> None:
    bands = StabilityBands()
    assert [bands.band(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "watch",
        "watch",
        "act",
        "act",
    ]
    assert StabilityBands(watch=0.05, act=0.5).band(0.3) == "watch"
    with pytest.raises(ValueError):
        StabilityBands(watch=0.3, act=0.2)


def test_characteristic_stability_flags_the_shifted_feature() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    reference = pd.DataFrame(
        {
            "EXT_SOURCE_2": rng.uniform(0, 1, n),
            "AMT_INCOME_TOTAL": rng.lognormal(11, 0.5, n),
            "CODE_GENDER": rng.choice(["F", "M"], n, p=[0.65, 0.35]),
        }
    )
    current = pd.DataFrame(
        {
            "EXT_SOURCE_2": np.clip(rng.uniform(0, 1, n) - 0.3, 0, None),  # worse scores
            "AMT_INCOME_TOTAL": rng.lognormal(11, 0.5, n),  # unchanged
            "CODE_GENDER": rng.choice(["F", "M"], n, p=[0.65, 0.35]),
        }
    )
    current.loc[: n // 2, "AMT_INCOME_TOTAL"] = np.nan  # half of the incomes go missing
    summary, tables = characteristic_stability(
        reference, current, ["EXT_SOURCE_2", "AMT_INCOME_TOTAL", "CODE_GENDER"], ["CODE_GENDER"]
    )
    by_feature = summary.set_index("feature")
    assert by_feature.loc["EXT_SOURCE_2", "band"] == "act"
    assert by_feature.loc["AMT_INCOME_TOTAL", "band"] == "act"  # missing values count
    assert by_feature.loc["AMT_INCOME_TOTAL", "current_missing_share"] == pytest.approx(
        0.5, abs=1e-3
    )
    assert by_feature.loc["CODE_GENDER", "band"] == "stable"
    assert summary["csi"].is_monotonic_decreasing
    assert by_feature.loc["CODE_GENDER", "kind"] == "categorical"
    assert tables["EXT_SOURCE_2"]["psi"].sum() == pytest.approx(
        by_feature.loc["EXT_SOURCE_2", "csi"]
    )
    with pytest.raises(ValueError, match="absent"):
        characteristic_stability(reference, current, ["NOT_A_FEATURE"])


def test_jeffreys_interval_by_hand() -> None:
    lower, upper = jeffreys_interval(2, 100)
    assert lower == pytest.approx(beta.ppf(0.025, 2.5, 98.5))
    assert upper == pytest.approx(beta.ppf(0.975, 2.5, 98.5))
    assert jeffreys_interval(0, 50)[0] == 0.0 and jeffreys_interval(50, 50)[1] == 1.0


def test_backtest_compares_realised_rates_with_the_mean_pd_per_band() -> None:
    # Band A: 100 applicants, PD 2 %, 2 defaults (on target).
    # Band E: 50 applicants, PD 10 %, 20 defaults (the model under-predicts by far).
    pd_ = [0.02] * 100 + [0.10] * 50
    defaulted = [1, 1] + [0] * 98 + [1] * 20 + [0] * 30
    bands = ["A"] * 100 + ["E"] * 50
    table = backtest(pd_, defaulted, bands).set_index("group")
    assert table.loc["A", "applicants"] == 100 and table.loc["A", "defaults"] == 2
    assert table.loc["A", "realised_default_rate"] == pytest.approx(0.02)
    assert bool(table.loc["A", "calibrated"])
    assert table.loc["E", "realised_default_rate"] == pytest.approx(0.4)
    assert not bool(table.loc["E", "calibrated"])
    assert table.loc["all", "applicants"] == 150 and table.loc["all", "defaults"] == 22
    assert table.loc["all", "mean_pd"] == pytest.approx((2 + 5) / 150)
    with pytest.raises(ValueError, match="0 or 1"):
        backtest([0.1], [2], ["A"])


# --------------------------------------------------------------------------------------------
# Freshness


def _touch(path: Path, hours_old: float, now: datetime) -> None:
    path.write_text("SK_ID_CURR\n1\n")
    stamp = (now - timedelta(hours=hours_old)).timestamp()
    os.utime(path, (stamp, stamp))


def test_freshness_flags_old_and_missing_tables(tmp_path: Path) -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    _touch(tmp_path / "application_test.csv", 2, now)
    _touch(tmp_path / "bureau.csv", 72, now)
    _touch(tmp_path / "bureau_balance.csv", 500, now)
    report = check_freshness(
        tmp_path, max_age_hours=48, per_table_hours={"bureau_balance": 24 * 31}, now=now
    )
    rows = {row["table"]: row for row in report["tables"]}
    assert rows["application_test"]["age_hours"] == pytest.approx(2, abs=1e-3)
    assert not rows["application_test"]["stale"]
    assert rows["bureau"]["stale"] and not rows["bureau_balance"]["stale"]
    assert report["stale"] and report["reasons"] == [
        "bureau: bureau.csv is 72.0 h old (maximum 48 h)"
    ]
    (tmp_path / "application_test.csv").unlink()
    (tmp_path / "bureau.csv").unlink()
    missing = check_freshness(tmp_path, now=now)
    assert missing["stale"] and missing["missing_required"] == ["application_test"]
    with pytest.raises(ValueError, match="unknown tables"):
        check_freshness(tmp_path, per_table_hours={"bureau_monthly": 1})


def test_freshness_cli_fails_on_stale(workspace: Workspace) -> None:
    now = datetime.now(UTC)
    workspace.raw.mkdir(parents=True)
    _touch(workspace.raw / "application_test.csv", 1, now)
    fresh = CliRunner().invoke(app, ["freshness", "--fail-on-stale"])
    assert fresh.exit_code == 0, fresh.output
    assert json.loads((workspace.reports / "data_freshness.json").read_text())["stale"] is False
    _touch(workspace.raw / "bureau.csv", 100, now)
    stale = CliRunner().invoke(app, ["freshness", "--fail-on-stale"])
    assert stale.exit_code == 1
    assert "bureau" in stale.output
    assert CliRunner().invoke(app, ["freshness"]).exit_code == 0  # reported, not enforced


def test_freshness_cli_refuses_while_another_run_holds_the_workspace(
    workspace: Workspace,
) -> None:
    workspace.raw.mkdir(parents=True)
    _touch(workspace.raw / "application_test.csv", 1, datetime.now(UTC))
    with workspace_lock(workspace, "20261122T000000Z-other"):
        locked = CliRunner().invoke(app, ["freshness"])
    assert locked.exit_code == 3, locked.output
    assert "20261122T000000Z-other" in locked.output
    assert not (workspace.reports / "data_freshness.json").exists()
    assert CliRunner().invoke(app, ["freshness"]).exit_code == 0  # released: it runs
    assert (workspace.reports / "data_freshness.json").exists()


def test_freshness_of_an_s3_prefix_reads_last_modified(s3_env: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="feeds")
    s3.put_object(Bucket="feeds", Key="daily/application_test.csv.gz", Body=b"x")
    s3.put_object(Bucket="feeds", Key="daily/bureau.csv", Body=b"x")
    report = check_freshness("s3://feeds/daily", max_age_hours=1)
    assert {row["table"] for row in report["tables"]} == {"application_test", "bureau"}
    assert not report["stale"] and all(row["age_hours"] < 1 for row in report["tables"])
    later = check_freshness("s3://feeds/daily", now=datetime.now(UTC) + timedelta(days=3))
    assert later["stale"] and len(later["reasons"]) == 2


# --------------------------------------------------------------------------------------------
# Retrain trigger


def test_retrain_needs_k_consecutive_breaches(tmp_path: Path) -> None:
    rules = RetrainRules(max_score_psi=0.25, max_drift_share=0.3, consecutive=2)
    history, decision_path = tmp_path / "history.jsonl", tmp_path / "retrain_trigger.json"
    calm = {"score_psi": 0.05, "drift_share": 0.1}
    shifted = {"score_psi": 0.31, "drift_share": 0.1}
    drifted = {"score_psi": 0.1, "drift_share": 0.5}

    first = record_and_decide(shifted, rules, history, decision_path)
    assert not first.retrain and first.breaches_in_a_row == 1
    assert "breach 1 of 2" in first.reasons[0] and "score PSI 0.310 > 0.25" in first.reasons
    interrupted = record_and_decide(calm, rules, history, decision_path)
    assert not interrupted.retrain and interrupted.breaches_in_a_row == 0
    record_and_decide(drifted, rules, history, decision_path)
    second = record_and_decide(shifted, rules, history, decision_path)
    assert second.retrain and second.breaches_in_a_row == 2
    written = json.loads(decision_path.read_text())
    assert written["retrain"] is True and written["observation"] == shifted
    assert written["rules"]["consecutive"] == 2
    assert len(read_history(history)) == 4
    assert decide([], rules).retrain is False
    assert RetrainRules(consecutive=1).breaches(drifted) == ["drifted feature share 0.50 > 0.1"]
    with pytest.raises(ValueError):
        RetrainRules(consecutive=0)


def drift_frames(rows: int = 3_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(
        {
            "income": rng.lognormal(11, 0.5, rows),
            "score": rng.normal(0.5, 0.1, rows),
            "flag": rng.integers(0, 2, rows),
            "months": pd.array(rng.integers(0, 60, rows), dtype="Int64"),
            "kind": rng.choice(["cash", "revolving"], rows, p=[0.9, 0.1]),
            "empty": np.full(rows, np.nan),
        }
    )
    current = reference.sample(frac=1.0, random_state=1).reset_index(drop=True)
    return reference, current


def test_drift_flags_only_the_shifted_columns() -> None:
    reference, current = drift_frames()
    current["income"] *= 1.6  # a large shift of a number
    current["kind"] = "revolving"  # a category takes over
    features = ["income", "score", "flag", "months", "kind", "empty"]
    result = run_drift(reference, current, features, ["kind"])

    assert result.drifted == ["income", "kind"]
    assert result.skipped == {"empty": "no value in the reference data"}
    methods = dict(zip(result.columns["column"], result.columns["method"], strict=True))
    assert methods == {
        "income": "wasserstein",
        "score": "wasserstein",
        "flag": "jensenshannon",  # two values: tested like a category
        "months": "wasserstein",  # nullable integers are numbers
        "kind": "jensenshannon",
    }
    summary = result.summary
    assert (summary["tested"], summary["drifted"], summary["skipped"]) == (5, 2, 1)
    assert summary["drift_share"] == pytest.approx(0.4)
    assert summary["dataset_drift"] is True  # 0.4 > 0.10


def test_drift_of_an_unchanged_batch_and_the_dataset_threshold() -> None:
    reference, current = drift_frames()
    features = ["income", "score", "flag", "months", "kind"]
    calm = run_drift(reference, current, features, ["kind"])
    assert calm.drifted == [] and calm.summary["dataset_drift"] is False

    current["score"] += 0.05  # half a standard deviation: drifted under Wasserstein 0.1
    strict = run_drift(reference, current, features, ["kind"], DriftSettings(drift_share=0.2))
    assert strict.drifted == ["score"] and strict.summary["dataset_drift"] is False  # 0.2 = 0.2
    lenient = run_drift(
        reference, current, features, ["kind"], DriftSettings(numeric_threshold=0.6)
    )
    assert lenient.drifted == []


def test_drift_refuses_an_empty_batch_and_absent_features() -> None:
    reference, current = drift_frames()
    with pytest.raises(ValueError, match="empty"):
        run_drift(reference, current.iloc[:0], ["income"])
    with pytest.raises(ValueError, match="absent"):
        run_drift(reference, current.drop(columns="income"), ["income"])


def test_drift_reference_sample_is_fixed_and_reports_are_written(tmp_path: Path) -> None:
    reference, current = drift_frames(rows=4_000)
    settings = DriftSettings(reference_sample=1_500, seed=4)
    first = run_drift(reference, current, ["income", "kind"], ["kind"], settings)
    again = run_drift(reference, current, ["income", "kind"], ["kind"], settings)
    assert first.summary["reference_sample_rows"] == 1_500
    assert first.columns["score"].tolist() == again.columns["score"].tolist()

    paths = write_drift_report(first, tmp_path)
    assert "<html" in paths["html"].read_text(encoding="utf-8")[:2000].lower()
    written = json.loads(paths["json"].read_text(), parse_constant=pytest.fail)
    assert written["summary"]["tested"] == 2
    assert [c["column"] for c in written["columns"]] == ["income", "kind"]
    assert len(written["evidently"]["metrics"]) == 2


def test_breaches_count_within_one_stream_and_model_version(tmp_path: Path) -> None:
    rules = RetrainRules(consecutive=2)
    history, decision_path = tmp_path / "history.jsonl", tmp_path / "retrain_trigger.json"
    breach = {"stream": "production", "model_version": "3", "score_psi": 0.4}
    calm_split = {"stream": "test_split", "model_version": "3", "score_psi": 0.0}

    assert not record_and_decide(breach, rules, history, decision_path).retrain
    # The pipeline's own test split, calm, does not interrupt the production series...
    assert not record_and_decide(calm_split, rules, history, decision_path).retrain
    second = record_and_decide(breach, rules, history, decision_path)
    assert second.retrain and second.breaches_in_a_row == 2
    written = json.loads(decision_path.read_text())
    assert written["series"] == {"stream": "production", "model_version": "3"}
    assert written["runs_in_series"] == 2
    # ...and a new champion starts with a clean slate.
    new_model = record_and_decide({**breach, "model_version": "4"}, rules, history, decision_path)
    assert not new_model.retrain and new_model.breaches_in_a_row == 1


def test_a_failed_backtest_is_a_breach_unless_switched_off() -> None:
    run = {"calibrated": False, "realised_default_rate": 0.108, "mean_pd": 0.123}
    assert RetrainRules().breaches(run) == [
        "back-test: mean PD outside the realised rate's interval: "
        "realised default rate 0.1080, mean PD 0.1230"
    ]
    assert RetrainRules(calibration=False).breaches(run) == []
    assert RetrainRules().breaches({"calibrated": None}) == []  # no outcomes, no test
