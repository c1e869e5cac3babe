"""The monitor stage on a real champion: the test split, an undrifted and a drifted production
batch from the generator, the retrain trigger over consecutive runs, auto-retrain, CloudWatch."""

# The fixtures are imported and injected by name (see test_modeling.py).
# ruff: noqa: F811

from __future__ import annotations

import json
import shlex
import shutil
import sys
import threading
import time
from pathlib import Path

import boto3
import pandas as pd
import pytest
from modeling_fixtures import modeling_data, modeling_snapshot, params, settings_for  # noqa: F401
from serving_fixtures import Champion, champion  # noqa: F401
from typer.testing import CliRunner

from creditrisk.cli import app
from creditrisk.data import synthetic
from creditrisk.pipeline.records import new_run_id
from creditrisk.pipeline.runner import PipelineLocked, _workspace_lock
from creditrisk.scoring import ScoringError
from creditrisk.settings import Workspace
from creditrisk.stages import monitor
from creditrisk.stages.context import governed

# Its own group: the runs below share one champion workspace (module fixtures) and its history.
pytestmark = pytest.mark.xdist_group("monitor")

BATCH_APPLICANTS = 2_000


def run_monitor(params: monitor.Params, workspace: Workspace) -> monitor.Outcome:
    """The monitor stage in pipeline mode, as a run of its own holding the workspace lock.

    The settings are read when called, so CREDITRISK_CLOUDWATCH_* set by a test apply.
    """
    with governed(settings_for(workspace), f"{new_run_id()}-monitortest") as context:
        return monitor.run(params, context("monitor"))


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name} holds {constant}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Production batches of new applicants: one with the base distribution, one drifted."""
    root = tmp_path_factory.mktemp("batches")
    specs = {"same": synthetic.DriftSpec(), "drifted": synthetic.DriftSpec.default()}
    for name, spec in specs.items():
        synthetic.generate(root / name, size=BATCH_APPLICANTS, seed=5, drift=spec)
    return {name: root / name for name in specs}


@pytest.fixture(scope="module")
def test_split_run(champion: Champion) -> dict:
    outcome = run_monitor(monitor.Params(), champion.workspace)
    return {"outcome": outcome, "stability": _strict_json(outcome.paths["stability"])}


def test_the_test_split_is_monitored_against_the_training_split(
    champion: Champion, test_split_run: dict
) -> None:
    outcome, stability = test_split_run["outcome"], test_split_run["stability"]
    summary = stability["summary"]
    assert summary["stream"] == "test_split"
    assert summary["model"]["version"] == "1"
    assert summary["reference"]["name"] == "training split"
    assert summary["reference"]["matches_champion"] is True
    assert summary["current"]["labelled"] is True
    # Same population: nothing moved, nothing to act on.
    assert summary["score_band"] == "stable" and summary["score_psi"] < 0.05
    assert summary["drift"]["drifted"] == 0
    assert summary["features_act"] == 0
    assert summary["backtest"]["calibrated"] is True
    assert outcome.decision.retrain is False

    # The score's bin table covers every applicant on both sides, shares sum to one.
    bins = stability["score"]["bins"]
    assert sum(b["expected_count"] for b in bins) == summary["reference"]["rows"]
    assert sum(b["actual_count"] for b in bins) == summary["current"]["rows"]
    assert sum(b["actual_share"] for b in bins) == pytest.approx(1.0, abs=1e-3)
    assert bins[0]["bin"].startswith("(-inf")
    # Every model input has its CSI and bin table, with a missing bin for numbers.
    features = {f["feature"]: f for f in stability["features"]}
    assert len(features) == len(outcome.feature_tables) == 130
    assert features["AMT_INCOME_TOTAL"]["bins"][-1]["bin"] == "(missing)"
    assert {b["bin"] for b in features["CODE_GENDER"]["bins"]} >= {"F", "M", "(unseen)"}
    # The back-test: one row per score band, then all applicants.
    assert stability["backtest"][-1]["group"] == "all"
    assert stability["backtest"][-1]["applicants"] == summary["current"]["rows"]


def test_the_drift_report_covers_every_feature(champion: Champion, test_split_run: dict) -> None:
    reports = champion.workspace.reports
    html = (reports / "drift_report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:1000].lower()
    assert "AMT_INCOME_TOTAL" in html
    report = _strict_json(reports / "drift_report.json")
    assert report["summary"]["features"] == 130
    assert report["summary"]["tested"] + report["summary"]["skipped"] == 130
    methods = {c["column"]: c["method"] for c in report["columns"]}
    assert methods["AMT_INCOME_TOTAL"] == "wasserstein"
    assert methods["CODE_GENDER"] == "jensenshannon"  # a category
    assert methods["FLAG_EMP_PHONE"] == "jensenshannon"  # a 0/1 flag
    assert len(report["evidently"]["metrics"]) == report["summary"]["tested"]


def test_a_drifted_batch_is_flagged_and_an_undrifted_one_is_not(
    champion: Champion, batches: dict[str, Path], s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = champion.workspace
    same = run_monitor(monitor.Params(current=str(batches["same"])), workspace)
    assert same.summary["stream"] == "production"
    assert same.summary["current"]["rows"] == BATCH_APPLICANTS
    # At most a noisy heavy-tailed column or two on 2,000 applicants; no dataset drift.
    assert same.summary["drift"]["drift_share"] <= 0.03
    assert same.summary["drift"]["dataset_drift"] is False
    assert same.summary["score_band"] == "stable"
    assert same.summary["features_act"] == 0
    assert same.summary["backtest"]["calibrated"] is True  # labels.csv found beside the batch
    assert same.summary["status"] != "act"
    assert same.summary["freshness"]["stale"] is False
    assert _strict_json(workspace.reports / "data_freshness.json")["stale"] is False

    # CloudWatch publishing, against moto's server.
    namespace = "CreditRisk/MonitorStageTest"
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_ENABLED", "true")
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_NAMESPACE", namespace)
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_DIMENSIONS", '{"Environment": "test"}')
    drifted = run_monitor(monitor.Params(current=str(batches["drifted"])), workspace)

    s = drifted.summary
    assert s["drift"]["drifted"] >= 13 and s["drift"]["dataset_drift"] is True
    assert {"AMT_INCOME_TOTAL", "EXT_SOURCE_2"} <= set(s["drifted_features"])
    assert s["score_psi"] > 0.10 and s["score_band"] != "stable"
    # Bureau scores read lower for the same people: the model over-predicts their PD.
    assert s["backtest"]["mean_pd"] > s["backtest"]["realised_default_rate"]
    assert s["status"] == "act"
    assert drifted.decision.retrain is False  # one breach; K = 2 in a row are needed
    assert drifted.decision.breaches_in_a_row == 1

    published = drifted.published
    assert published is not None and published["published"] is True
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert {"ScorePSI", "DriftedFeatureShare", "RowsScored"} <= names
    dimensions = {d["Name"]: d["Value"] for d in listed[0]["Dimensions"]}
    assert dimensions == {"Environment": "test", "ModelVersion": "1"}


def _kaggle_format(batch: Path, target: Path) -> Path:
    """The batch as a Kaggle-format sample: application_train.csv carrying TARGET, no
    labels.csv (the history tables as they are)."""
    shutil.copytree(batch, target)
    applications = pd.read_csv(target / "application_test.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(target / monitor.LABELS_FILE, dtype=str)
    train = applications.merge(labels, on="SK_ID_CURR", how="left", validate="one_to_one")
    train.to_csv(target / "application_train.csv", index=False)
    (target / "application_test.csv").unlink()
    (target / monitor.LABELS_FILE).unlink()
    return target


def test_a_batch_whose_applications_carry_target_is_back_tested_from_it(
    champion: Champion, batches: dict[str, Path], tmp_path: Path
) -> None:
    # It used to be monitored without a back-test: only labels.csv was looked for.
    batch = _kaggle_format(batches["same"], tmp_path / "kaggle")
    outcome = run_monitor(monitor.Params(current=str(batch)), champion.workspace)

    outcomes = pd.read_csv(batches["same"] / monitor.LABELS_FILE)["TARGET"]
    summary = _strict_json(outcome.paths["stability"])["summary"]
    assert summary["current"]["labelled"] is True
    assert summary["current"]["labels"] == {
        "source": "target_column",
        "location": f"{batch} application_train",
    }
    assert summary["backtest"]["applicants"] == BATCH_APPLICANTS
    assert summary["backtest"]["realised_default_rate"] == pytest.approx(outcomes.mean())
    assert summary["backtest"]["calibrated"] is True


def test_outcomes_come_from_labels_then_labels_csv_then_target(tmp_path: Path) -> None:
    ids = pd.Series([11, 12, 13])
    features = pd.DataFrame({"SK_ID_CURR": [11, 12, 13], "TARGET": [0.0, 0.0, 1.0]})
    batch = tmp_path / "batch"
    batch.mkdir()

    labels, origin = monitor.batch_labels("", str(batch), ids, features)
    assert labels is not None and labels.tolist() == [0, 0, 1]
    assert origin == {"source": "target_column", "location": f"{batch} application_train"}

    (batch / "labels.csv").write_text("SK_ID_CURR,TARGET\n13,0\n12,1\n11,1\n")
    labels, origin = monitor.batch_labels("", str(batch), ids, features)
    assert labels is not None and labels.tolist() == [1, 1, 0]
    assert origin == {"source": "labels_csv", "location": str(batch / "labels.csv")}

    given = tmp_path / "outcomes.csv"
    given.write_text("SK_ID_CURR,TARGET\n11,0\n12,1\n13,0\n")
    labels, origin = monitor.batch_labels(str(given), str(batch), ids, features)
    assert labels is not None and labels.tolist() == [0, 1, 0]
    assert origin == {"source": "labels_parameter", "location": str(given)}


def test_a_target_column_known_for_part_of_a_batch_is_refused(tmp_path: Path) -> None:
    # application_train rows with TARGET, application_test rows without: no partial back-test.
    features = pd.DataFrame({"SK_ID_CURR": [1, 2, 3], "TARGET": [0.0, None, 1.0]})
    with pytest.raises(ValueError, match="TARGET is known for 2 of 3 scored applicant"):
        monitor.batch_labels("", str(tmp_path), features["SK_ID_CURR"], features)
    unlabelled = features.assign(TARGET=None)
    assert monitor.batch_labels("", str(tmp_path), features["SK_ID_CURR"], unlabelled) == (
        None,
        None,
    )


def test_a_second_breach_in_a_row_calls_for_the_retrain_and_launches_it(
    champion: Champion, batches: dict[str, Path], tmp_path: Path
) -> None:
    """Two monitor runs of the drifted batch: the second is breach 2 of 2 (whatever ran before
    in this workspace, the newest run counts last)."""
    run_monitor(monitor.Params(current=str(batches["drifted"])), champion.workspace)
    marker = tmp_path / "retrain-ran"
    command = shlex.join(
        [
            sys.executable,
            "-c",
            "import os, pathlib, sys; "
            f"pathlib.Path({str(marker)!r}).write_text(os.environ['CREDITRISK_HOME'])",
        ]
    )
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--current",
            str(batches["drifted"]),
            "--auto-retrain",
            "--fail-on-retrain",
            "-p",
            f"retrain_command={command}",
        ],
        env={"CREDITRISK_HOME": str(champion.workspace.home)},
    )
    assert result.exit_code == 4, result.output
    assert "retrain CALLED FOR" in result.output

    trigger = _strict_json(champion.workspace.reports / "retrain_trigger.json")
    assert trigger["retrain"] is True and trigger["breaches_in_a_row"] >= 2
    assert trigger["series"] == {"stream": "production", "model_version": "1"}
    launched = trigger["launched"]
    assert launched["command"][0] == sys.executable and launched["pid"] > 0
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == str(champion.workspace.home)

    history = [
        json.loads(line)
        for line in (champion.workspace.reports / "monitor_history.jsonl").read_text().splitlines()
    ]
    # The series is this stream and model version only (a test-split run would be another).
    series = [h for h in history if (h["stream"], h["model_version"]) == ("production", "1")]
    assert trigger["runs_in_series"] == len(series) >= 2


def test_the_cli_refuses_unknown_parameters_and_a_missing_batch(champion: Champion) -> None:
    env = {"CREDITRISK_HOME": str(champion.workspace.home)}
    unknown = CliRunner().invoke(app, ["monitor", "-p", "consecutiv=3"], env=env)
    assert unknown.exit_code == 2 and "consecutiv" in unknown.output
    missing = CliRunner().invoke(app, ["monitor", "--current", "no/such/batch"], env=env)
    assert missing.exit_code == 1 and "monitoring failed" in missing.output


def test_monitoring_without_a_champion_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ScoringError, match="CreditRiskPD"):
        run_monitor(monitor.Params(), Workspace(tmp_path))


def test_a_retrain_waits_for_the_workspace_lock(tmp_path: Path) -> None:
    """The monitor stage of a running pipeline launches `creditrisk run --wait`: the retrain
    must wait for that run's lock rather than fail."""
    workspace = Workspace(tmp_path)
    released = threading.Event()

    def hold() -> None:
        with _workspace_lock(workspace, "running"):
            released.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.3)
    with pytest.raises(PipelineLocked, match="running"), _workspace_lock(workspace, "impatient"):
        pass
    threading.Timer(0.5, released.set).start()
    started = time.monotonic()
    with _workspace_lock(workspace, "retrain", wait_seconds=10):
        waited = time.monotonic() - started
    holder.join()
    assert 0.2 < waited < 10
