"""Batch scoring on Spark: the champion on the executors, the single-machine output exactly.

The same damaged raw slice is scored by ``score_batch`` on DuckDB and on Spark (the tests'
session-scoped local session): PDs within 1e-12, the same scores, bands, decisions, reason codes,
model version and column types, in the same row order; the same rejects; the features kept for
the monitor equal DuckDB's; the job's log line names the engine.
"""

# The fixtures are imported and injected by name (see test_modeling.py).
# ruff: noqa: F811

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from modeling_fixtures import modeling_data, modeling_snapshot, params, settings_for  # noqa: F401
from serving_fixtures import Champion, champion, raw_slice  # noqa: F401
from test_spark_features import assert_same_store
from typer.testing import CliRunner

from creditrisk.cli import app
from creditrisk.features.catalog import ID_COLUMN
from creditrisk.features.engine import store_engine
from creditrisk.pipeline.records import new_run_id
from creditrisk.scoring import Scorer
from creditrisk.scoring.batch import score_batch
from creditrisk.settings import SparkSettings
from creditrisk.stages import monitor
from creditrisk.stages.context import governed

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def scorer(champion: Champion) -> Scorer:
    return Scorer.load(tracking_uri=champion.tracking_uri)


@pytest.fixture(scope="module")
def damaged(raw_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slice with a bad amount, an applicant without id, one applicant twice and a bad
    bureau row: rows every engine must set aside the same way."""
    folder = tmp_path_factory.mktemp("damaged") / "raw"
    shutil.copytree(raw_slice, folder)
    test_file = folder / "application_test.csv"
    frame = pd.read_csv(test_file, dtype=str, keep_default_na=False)
    frame.loc[1, "AMT_CREDIT"] = "lots"
    frame.loc[2, ID_COLUMN] = ""
    frame.loc[4, ID_COLUMN] = frame.loc[3, ID_COLUMN]
    frame.to_csv(test_file, index=False)
    bureau = folder / "bureau.csv"
    history = pd.read_csv(bureau, dtype=str, keep_default_na=False)
    history.loc[0, "DAYS_CREDIT"] = "last year"
    history.to_csv(bureau, index=False)
    return folder


def test_spark_scores_are_the_single_machine_scores(
    spark: Any, scorer: Scorer, damaged: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    on_duckdb = score_batch(
        damaged, tmp_path / "duckdb.parquet", scorer=scorer, features_output=tmp_path / "fd.pq"
    )
    with caplog.at_level(logging.INFO, logger="creditrisk.batch"):
        on_spark = score_batch(
            damaged,
            tmp_path / "spark.parquet",
            scorer=scorer,
            engine="spark",
            spark=spark,
            features_output=tmp_path / "fs.pq",
        )

    left = pq.read_table(tmp_path / "spark.parquet")
    right = pq.read_table(tmp_path / "duckdb.parquet")
    assert left.schema == right.schema  # names and types, scored_at included
    a, b = left.to_pandas(), right.to_pandas()
    assert a[ID_COLUMN].tolist() == b[ID_COLUMN].tolist()  # every applicant, in the same order
    assert len(a) == on_spark.entities == on_duckdb.entities == 600 - 4
    np.testing.assert_allclose(
        a["probability_of_default"], b["probability_of_default"], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-9)
    exact = [c for c in a.columns if c not in ("probability_of_default", "score", "scored_at")]
    pd.testing.assert_frame_equal(a[exact], b[exact])  # bands, decisions, reasons, model
    assert {"approve", "decline"} == set(a["decision"])
    assert a["reason_1"].notna().all()
    assert a["scored_at"].nunique() == 1
    # The same rejects, and the features the monitor reads are DuckDB's.
    assert pq.read_table(tmp_path / "spark.rejects.parquet").equals(
        pq.read_table(tmp_path / "duckdb.rejects.parquet")
    )
    assert on_spark.rejected == on_duckdb.rejected == 5
    assert_same_store(tmp_path / "fs.pq", tmp_path / "fd.pq")
    assert store_engine(tmp_path / "fs.pq")["engine"] == "spark"
    # The job's log line says where it ran; the DuckDB job's says DuckDB.
    line = json.loads(caplog.records[-1].getMessage())
    assert line["engine"] == "spark" and line["spark_version"] == spark.version
    assert line["spark_master"] == "local[2]"
    assert on_duckdb.as_dict()["engine"] == "duckdb" and "duckdb_version" in on_duckdb.as_dict()
    # The tests' session is left running (score_batch did not start it).
    assert spark.range(1).count() == 1


def test_creditrisk_score_on_spark_writes_csv_like_duckdb(
    champion: Champion, damaged: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``creditrisk score --engine spark`` (the session from the settings: here the running one)
    writes the same CSV as the DuckDB engine."""
    home = champion.workspace.home
    monkeypatch.setenv("CREDITRISK_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copytree(damaged, home / "incoming-spark", dirs_exist_ok=True)
    outputs = {}
    for engine in ("spark", "duckdb"):
        output = f"out/{engine}.csv"
        result = CliRunner().invoke(
            app,
            ["score", "--engine", engine, "--input", "incoming-spark", "--output", output],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert f"596 applicants scored by CreditRiskPD version 1 on {engine}" in result.output
        outputs[engine] = pacsv.read_csv(home / output).to_pandas()
    a, b = outputs["spark"], outputs["duckdb"]
    assert list(a.columns) == list(b.columns)
    np.testing.assert_allclose(
        a["probability_of_default"], b["probability_of_default"], rtol=0, atol=1e-12
    )
    assert a["decision"].tolist() == b["decision"].tolist()
    assert a["reason_1"].tolist() == b["reason_1"].tolist()
    assert spark.range(1).count() == 1  # still running


def test_the_monitor_scores_a_batch_on_spark_with_the_same_verdict(
    champion: Champion, raw_slice: Path, spark: Any, tmp_path: Path
) -> None:
    """``creditrisk monitor --engine spark``: the batch's features and scores come from Spark;
    stability, drift and the back-test then give what they give on DuckDB's."""
    batch = tmp_path / "batch"  # labelled applicants only (application_train), as a back-test
    shutil.copytree(raw_slice, batch)
    (batch / "application_test.csv").unlink()
    outcomes = {}
    for engine in ("duckdb", "spark"):
        settings = settings_for(champion.workspace)
        with governed(settings, f"{new_run_id()}-spark-monitor") as context:
            params = monitor.Params(current=str(batch), engine=engine)  # type: ignore[arg-type]
            outcomes[engine] = monitor.run(params, context("monitor"))
    on_duckdb, on_spark = outcomes["duckdb"].summary, outcomes["spark"].summary
    assert on_spark["current"]["engine"]["engine"] == "spark"
    assert on_spark["current"]["engine"]["spark_master"] == "local[2]"
    assert on_duckdb["current"]["engine"]["engine"] == "duckdb"
    assert on_spark["current"]["rows"] == on_duckdb["current"]["rows"] == 300
    assert on_spark["score_psi"] == pytest.approx(on_duckdb["score_psi"], abs=1e-12)
    assert on_spark["drift"]["drifted"] == on_duckdb["drift"]["drifted"]
    assert on_spark["features_act"] == on_duckdb["features_act"]
    assert on_spark["backtest"] == on_duckdb["backtest"]
    assert outcomes["spark"].results()["rows"] == 300


def test_spark_settings_reach_the_batch_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITRISK_SPARK_MASTER", "local[3]")
    monkeypatch.setenv("CREDITRISK_ENGINE", "spark")
    from creditrisk.settings import Settings

    settings = Settings()
    assert settings.engine == "spark" and settings.spark == SparkSettings(master="local[3]")
