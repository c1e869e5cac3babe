"""End to end: `make pipeline` in a temporary workspace, as a newcomer would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest

from creditrisk.features import column_names
from creditrisk.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


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


def test_make_pipeline_then_rerun_skips(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()

    first = make(workspace, "pipeline", "SIZE=tiny")
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir, record = latest_run(workspace)
    assert record["status"] == "succeeded"
    assert [s["name"] for s in record["stages"]] == ["ingest", "features", "train", "evaluate"]
    for stem in ("01_ingest", "02_features", "03_train", "04_evaluate"):
        html = (run_dir / f"{stem}.html").read_text()
        assert "<html" in html and "Traceback" not in html
        assert (run_dir / f"{stem}.ipynb").exists()
    ingest_stage, features_stage, train_stage, evaluate_stage = record["stages"]
    assert ingest_stage["results"]["rows"]["application_train"] == 2000
    assert ingest_stage["results"]["contracts_passed"] is True
    assert features_stage["results"]["rows"] == 2000 + 317
    summary = json.loads((workspace / "reports" / "ingestion_summary.json").read_text())
    assert summary["snapshot_id"] == ingest_stage["results"]["snapshot_id"]
    store = pq.read_table(workspace / "data" / "features" / "feature_store.parquet")
    assert store.column_names == column_names()
    assert store.num_rows == 2317
    assert "[1/4] ingest" in first.stdout and "[4/4] evaluate" in first.stdout
    # The model the pipeline trained is in the workspace's MLflow store and scores PDs.
    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(train_stage["results"]["model_uri"])
    test = pd.read_parquet(workspace / "data" / "splits" / "test.parquet")
    scores = pd.DataFrame(model.predict(test)).iloc[:, 0]
    assert len(scores) == len(test)
    assert scores.between(0, 1).all() and scores.nunique() > 10
    metrics = json.loads((workspace / "reports" / "metrics.json").read_text())
    assert metrics["mlflow_run_id"] == train_stage["results"]["mlflow_run_id"]
    assert 0.5 < metrics["metrics"]["test_auc"] <= 1
    assert evaluate_stage["results"]["threshold"] == pytest.approx(0.1 / (0.1 + 0.45))
    assert (workspace / "reports" / "evaluation" / "calibration.png").stat().st_size > 0

    second = make(workspace, "pipeline", "SIZE=tiny")
    assert second.returncode == 0, second.stdout + second.stderr
    rerun_dir, rerun = latest_run(workspace)
    assert rerun_dir != run_dir
    assert [s["status"] for s in rerun["stages"]] == ["skipped"] * 4
    assert all(s["reused_from"] == record["run_id"] for s in rerun["stages"])
    assert second.stdout.count("skipped") == 4


def test_make_pipeline_on_real_format_directory(tmp_path: Path, tiny_raw: Path) -> None:
    """DATA=<a directory of Kaggle-format CSVs>: no generation, the files are used as they are."""
    lender = tmp_path / "home-credit"
    shutil.copytree(tiny_raw, lender)
    (lender / "_SYNTHETIC.json").unlink()
    (lender / "credit_card_balance.csv").unlink()  # a lender without a card book
    workspace = tmp_path / "ws"
    workspace.mkdir()

    result = make(workspace, "pipeline", f"DATA={lender}")

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (workspace / "data" / "raw").exists()
    _, record = latest_run(workspace)
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
    assert [s["status"] for s in record["stages"]] == ["failed", "not-run", "not-run", "not-run"]
    html = (run_dir / "01_ingest.html").read_text()
    assert "DAYS_BIRTH" in html and "IngestError" in html
    assert not (workspace / "data" / "features" / "feature_store.parquet").exists()
