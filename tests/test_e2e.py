"""End to end: `make pipeline` in a temporary workspace, as a newcomer would run it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import real_runs

from creditrisk.features import column_names
from creditrisk.provenance import file_sha256
from creditrisk.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAGES = ["ingest", "features", "train", "evaluate", "validate", "register", "monitor"]
STEMS = [f"{i:02d}_{name}" for i, name in enumerate(STAGES, start=1)]

#: The tiny runs' policy, as make's PARAMS (space-separated key=value).
TINY_TRAINING = " ".join(real_runs.TINY_TRAINING)
TINY_POLICY = " ".join(real_runs.TINY_POLICY)


#: What the tiny run produced before the stage layer moved (commit 002d3e3, the same locked
#: packages): the move kept the feature store byte-identical and every PD identical. A change
#: of the feature SQL, the generator or a package version must update these on purpose.
GOLDEN_FEATURE_STORE_SHA256 = "cc983b826cf2b29f722e4b07b29223cd49f3aa9afc773548422247fce62af2e4"
GOLDEN_TEST_SPLIT_SHA256 = "74b5afb64eaa7c42cb1275a5a059d40898df518fcababce5f98057e944e7f1dc"
#: The PDs are compared rounded to 1e-6: on this machine they are bit-identical run to run and
#: whatever the thread count, but CI's machines (another CPU) gave other last bits twice (XGBoost
#: sums in float32 with the vector instructions the CPU has), with the store and split identical.
GOLDEN_TEST_PD_SHA256 = "c32c05a92831250f1f479becf8e8e039065c597bfed122a75fc90ff1cb20450b"


def make(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDITRISK_HOME": str(workspace)}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_ROOT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def latest_run(workspace: Path) -> tuple[Path, dict]:
    run_dir = (workspace / "runs" / "latest").resolve()
    return run_dir, json.loads((run_dir / "run.json").read_text())


def test_make_pipeline_ends_with_a_champion_then_rerun_skips(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()

    first = make(workspace, "pipeline", "SIZE=tiny", f"PARAMS={TINY_POLICY}")
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir, record = latest_run(workspace)
    assert record["status"] == "succeeded"
    assert [s["name"] for s in record["stages"]] == STAGES
    assert record["engine"] == "duckdb" and record["spark"] is None  # the default engine
    for stem in STEMS:
        html = (run_dir / f"{stem}.html").read_text()
        assert "<html" in html and "Traceback" not in html
        assert (run_dir / f"{stem}.ipynb").exists()
    stages = {s["name"]: s for s in record["stages"]}
    assert stages["ingest"]["results"]["rows"]["application_train"] == 2000
    assert stages["ingest"]["results"]["contracts_passed"] is True
    assert stages["features"]["results"]["rows"] == 2000 + 317
    summary = json.loads((workspace / "reports" / "ingestion_summary.json").read_text())
    assert summary["snapshot_id"] == stages["ingest"]["results"]["snapshot_id"]
    store = pq.read_table(workspace / "data" / "features" / "feature_store.parquet")
    assert store.column_names == column_names()
    assert store.num_rows == 2317
    assert "[1/7] ingest" in first.stdout and "[7/7] monitor" in first.stdout
    metrics = json.loads((workspace / "reports" / "metrics.json").read_text())
    mlflow_run_id = stages["train"]["results"]["mlflow_run_id"]
    assert metrics["mlflow_run_id"] == mlflow_run_id
    assert 0.5 < metrics["metrics"]["test_auc"] <= 1
    assert stages["evaluate"]["results"]["threshold"] == pytest.approx(0.1 / (0.1 + 0.45))
    assert (workspace / "reports" / "evaluation" / "calibration.png").stat().st_size > 0

    # Validated and registered: the champion is this run's model, as serving loads it.
    validation = json.loads((workspace / "reports" / "validation.json").read_text())
    assert validation["passed"] is True and validation["thresholds"]["min_auc"] == 0.6
    assert stages["validate"]["results"]["passed"] is True
    assert stages["register"]["results"]["champion_version"] == "1"
    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    champion = mlflow.pyfunc.load_model("models:/CreditRiskPD@champion")
    features = pd.read_parquet(workspace / "data" / "features" / "feature_store.parquet")
    scores = pd.DataFrame(champion.predict(features)).iloc[:, 0]
    assert len(scores) == len(features)
    assert scores.between(0, 1).all() and scores.nunique() > 10
    # Byte-identical to the run before the stage layer moved, and identical PDs.
    store_file = workspace / "data" / "features" / "feature_store.parquet"
    assert file_sha256(store_file) == GOLDEN_FEATURE_STORE_SHA256
    test_split = workspace / "data" / "splits" / "test.parquet"
    assert file_sha256(test_split) == GOLDEN_TEST_SPLIT_SHA256
    test_pds = np.asarray(champion.predict(pd.read_parquet(test_split)), dtype=np.float64)
    assert hashlib.sha256(np.round(test_pds, 6).tobytes()).hexdigest() == GOLDEN_TEST_PD_SHA256
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("CreditRiskPD", "champion").run_id == mlflow_run_id
    # The audit trail: ledger, promotion report, lineage, model card, HTML in the MLflow run.
    ledger = (workspace / "reports" / "promotion_ledger.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in ledger] == ["register", "promote"]
    promotion = json.loads((workspace / "reports" / "registry_promotion.json").read_text())
    assert promotion["version"] == "1" and promotion["pipeline_run_id"] == record["run_id"]
    lineage = json.loads((workspace / "reports" / "lineage.json").read_text())
    assert lineage["mlflow"]["run_id"] == mlflow_run_id
    assert lineage["pipeline_run"]["run_id"] == record["run_id"]
    card = (run_dir / "model_card.html").read_text()
    assert "CreditRiskPD v1" in card
    # Finding 3: relaxed gates and synthetic data are named, never shown as a clean pass.
    relaxed = (
        "Gates relaxed: min_auc 0.6 (policy 0.7), min_ks 0.15 (policy 0.25), max_ece 0.05 "
        "(policy 0.03), max_train_test_auc_gap 0.3 (policy 0.08)"
    )
    assert 'id="deviation-relaxed"' in card and relaxed in card
    assert "Off-policy parameters: train.min_child_weight 5 (policy 40)" in card
    assert 'id="deviation-synthetic"' in card and "Synthetic data: 2,000 generated" in card
    assert "All gates passed at the documented policy" not in card
    assert "All gates passed — 4 at relaxed limits" in card
    assert validation["policy_followed"] is False and validation["synthetic_data"]
    assert {(d["stage"], d["parameter"], d["kind"]) for d in validation["deviations"]} >= {
        ("validate", "min_auc", "relaxed"),
        ("validate", "max_train_test_auc_gap", "relaxed"),
        ("train", "min_child_weight", "changed"),
        ("ingest", "size", "operational"),
    }
    promote_record = json.loads(ledger[-1])
    assert "4 at relaxed limits" in promote_record["reason"]
    assert "trained on synthetic data" in promote_record["reason"]
    assert {d["parameter"] for d in promote_record["deviations"]} >= {"min_auc", "min_child_weight"}
    assert stages["validate"]["deviations"] and stages["train"]["deviations"]
    attached = client.list_artifacts(mlflow_run_id, f"pipeline_runs/{record['run_id']}")
    assert sorted(Path(a.path).name for a in attached) == sorted(
        name for stem in STEMS[2:6] for name in (f"{stem}.html", f"{stem}.results.json")
    )
    logged_results = mlflow.artifacts.load_dict(
        f"runs:/{mlflow_run_id}/pipeline_runs/{record['run_id']}/05_validate.results.json"
    )
    assert logged_results == stages["validate"]["results"]
    # The release engineer's file, and the monitor stage on the test split.
    manifest = json.loads((workspace / "reports" / "deploy_manifest.json").read_text())
    assert manifest["model"]["version"] == "1"
    assert f"CreditRiskPD version 1: {relaxed}" in manifest["warnings"]
    assert any("Synthetic data" in warning for warning in manifest["warnings"])
    monitored = stages["monitor"]["results"]
    assert monitored["stream"] == "test_split" and monitored["model_version"] == "1"
    assert monitored["rows"] == 400 and monitored["retrain"] is False
    stability = json.loads((workspace / "reports" / "stability.json").read_text())
    assert len(stability["features"]) == len(column_names()) - 2  # every feature, no id/target
    assert (run_dir / "drift_report.html").stat().st_size > 100_000  # beside the notebook's HTML
    assert "drift_report.html" in (run_dir / "07_monitor.html").read_text()

    second = make(workspace, "pipeline", "SIZE=tiny", f"PARAMS={TINY_POLICY}")
    assert second.returncode == 0, second.stdout + second.stderr
    rerun_dir, rerun = latest_run(workspace)
    assert rerun_dir != run_dir
    assert [s["status"] for s in rerun["stages"]] == ["skipped"] * 7
    assert all(s["reused_from"] == record["run_id"] for s in rerun["stages"])
    assert second.stdout.count("skipped") == 7
    # Finding 4: the run that reused everything is still a complete record.
    assert (workspace / "runs" / "latest").resolve() == rerun_dir
    for stem in STEMS:
        page = (rerun_dir / f"{stem}.html").read_text()
        assert f"Reused from run {record['run_id']}" in page
    assert (rerun_dir / "model_card.html").read_text() == card
    assert (rerun_dir / "drift_report.html").is_file()

    # The bank's default gates on the same model: validation fails, the pipeline stops there
    # with the reason in its HTML, and the champion is untouched.
    strict = make(workspace, "pipeline", "SIZE=tiny", f"PARAMS={TINY_TRAINING}")
    assert strict.returncode != 0
    output = strict.stdout + strict.stderr
    assert "validate" in output and "05_validate.html" in output and "auc" in output
    strict_dir, strict_record = latest_run(workspace)
    assert [s["status"] for s in strict_record["stages"]] == [
        "skipped",
        "skipped",
        "skipped",
        "skipped",
        "failed",
        "not-run",
        "not-run",
    ]
    html = (strict_dir / "05_validate.html").read_text()
    assert "GateFailure" in html and "required &gt;= 0.7" in html
    assert not json.loads((workspace / "reports" / "validation.json").read_text())["passed"]
    assert str(client.get_model_version_by_alias("CreditRiskPD", "champion").version) == "1"
    ledger_after = (workspace / "reports" / "promotion_ledger.jsonl").read_text().splitlines()
    assert ledger_after == ledger

    # A new cut-off goes through validate: the canary compares it with the champion, whose
    # frozen policy keeps serving (the old main rewrote the champion's decision_policy.json
    # as soon as evaluate ran again).
    recut = make(workspace, "pipeline", "SIZE=tiny", f"PARAMS={TINY_POLICY} evaluate.margin=0.3")
    assert recut.returncode != 0, recut.stdout + recut.stderr
    _, recut_record = latest_run(workspace)
    statuses = {s["name"]: s["status"] for s in recut_record["stages"]}
    assert statuses["train"] == "skipped" and statuses["evaluate"] == "succeeded"
    assert statuses["validate"] == "failed"
    validation = json.loads((workspace / "reports" / "validation.json").read_text())
    assert "canary_approval_rate_change" in validation["failed"]
    from creditrisk.scoring import Scorer

    served = Scorer.load(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    assert served.info.version == "1" and served.info.policy_source == "registry version"
    assert served.info.threshold == pytest.approx(0.1 / (0.1 + 0.45))
    assert (workspace / "reports" / "promotion_ledger.jsonl").read_text().splitlines() == ledger


def test_make_pipeline_on_real_format_directory(tmp_path: Path, tiny_raw: Path) -> None:
    """DATA=<a directory of Kaggle-format CSVs>: no generation, the files are used as they are."""
    lender = tmp_path / "home-credit"
    shutil.copytree(tiny_raw, lender)
    (lender / "_SYNTHETIC.json").unlink()
    (lender / "credit_card_balance.csv").unlink()  # a lender without a card book
    workspace = tmp_path / "ws"
    workspace.mkdir()

    # Up to the feature store: what follows reads only the store, as on generated data.
    result = make(workspace, "pipeline", f"DATA={lender}", "TO=features", f"PARAMS={TINY_POLICY}")

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (workspace / "data" / "raw").exists()
    _, record = latest_run(workspace)
    assert [s["name"] for s in record["stages"]] == ["ingest", "features"]
    assert record["stages"][1]["results"]["rows"] == 2000 + 317
    ingest_stage = record["stages"][0]
    assert ingest_stage["parameters"]["source"] == str(lender)
    assert ingest_stage["results"]["missing_tables"] == ["credit_card_balance"]
    summary = json.loads((workspace / "reports" / "ingestion_summary.json").read_text())
    assert summary["source"]["synthetic"] is None


def test_failed_stage_names_itself_and_its_html(tmp_path: Path, tiny_raw: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_raw, broken)
    train = broken / "application_train.csv"
    lines = train.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("DAYS_BIRTH")] = "yesterday"
    train.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()

    result = make(workspace, "pipeline", f"DATA={broken}")

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ingest" in output and "01_ingest.html" in output
    run_dir, record = latest_run(workspace)
    assert record["status"] == "failed"
    assert [s["status"] for s in record["stages"]] == ["failed"] + ["not-run"] * 6
    html = (run_dir / "01_ingest.html").read_text()
    assert "DAYS_BIRTH" in html and "IngestError" in html
    assert not (workspace / "data" / "features" / "feature_store.parquet").exists()
