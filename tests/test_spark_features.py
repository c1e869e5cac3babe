"""The feature SQL on Spark: the same store as DuckDB's, recorded as Spark's.

One session-scoped local Spark session (``spark`` fixture). Parity is checked on the tiny
synthetic snapshot and on edge cases (zero denominators, applicants without any history, NULL
keys in history rows, one-row credits): same rows, columns, types and NULLs, floats within
1e-9 relative, strings equal; the file is one Parquet file ordered by SK_ID_CURR like DuckDB's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_fixtures import sample_tables, write_bronze

from creditrisk.data.ingest import ingest
from creditrisk.features.catalog import column_names, sql_hash
from creditrisk.features.engine import build_feature_store, store_engine
from creditrisk.settings import PROJECT_ROOT, SparkSettings
from creditrisk.spark import features as spark_features
from creditrisk.spark.session import SparkUnavailable, get_session, spark_info

pytestmark = pytest.mark.spark

SPARK_SETTINGS = SparkSettings(master="local[2]")


def assert_same_store(spark_file: Path, duckdb_file: Path) -> None:
    """Same rows in the same order, columns, Arrow types and NULLs; floats within 1e-9."""
    left, right = pq.read_table(spark_file), pq.read_table(duckdb_file)
    assert left.schema.names == right.schema.names == column_names()
    assert left.schema.types == right.schema.types
    assert left.num_rows == right.num_rows
    assert left.column("SK_ID_CURR").equals(right.column("SK_ID_CURR"))
    for name in left.column_names:
        a, b = left.column(name), right.column(name)
        assert a.null_count == b.null_count, name
        assert a.is_null().equals(b.is_null()), name
        if pa.types.is_floating(a.type):
            x = a.to_numpy(zero_copy_only=False)
            y = b.to_numpy(zero_copy_only=False)
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=0, equal_nan=True, err_msg=name)
        else:
            assert a.equals(b), name


def spark_build(spark: Any, bronze: Path, output: Path) -> Any:
    return spark_features.build_feature_store(
        spark, bronze, output, engine=spark_info(spark, SPARK_SETTINGS)
    )


@pytest.fixture(scope="module")
def tiny_bronze(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("spark_tiny")
    bronze = data / "bronze"
    ingest(str(tiny_raw), bronze, work_dir=data, threads=1, echo=lambda _: None)
    return bronze


def test_the_tiny_snapshot_gives_duckdbs_feature_store(
    spark: Any, tiny_bronze: Path, tmp_path: Path
) -> None:
    on_spark = spark_build(spark, tiny_bronze, tmp_path / "spark" / "feature_store.parquet")
    on_duckdb = build_feature_store(tiny_bronze, tmp_path / "duckdb.parquet", threads=1)

    assert_same_store(on_spark.output, on_duckdb.output)
    assert (on_spark.rows, on_spark.n_labelled) == (on_duckdb.rows, on_duckdb.n_labelled)
    assert on_spark.rows == 2317 and on_spark.n_labelled == 2000
    assert on_spark.sql_hash == on_duckdb.sql_hash == sql_hash()
    # One file, nothing of Spark's staging left beside it; it says who wrote it.
    assert [p.name for p in on_spark.output.parent.iterdir()] == ["feature_store.parquet"]
    assert store_engine(on_spark.output) == {
        "engine": "spark",
        "spark_version": spark.version,
        "spark_master": "local[2]",
    }
    assert store_engine(on_duckdb.output) == {"engine": "duckdb"}
    # Every reader of the DuckDB store reads it: pandas, and DuckDB itself.
    import duckdb

    ((rows,),) = duckdb.execute(
        "select count(*) from read_parquet(?)", [str(on_spark.output)]
    ).fetchall()
    assert rows == 2317 and len(pd.read_parquet(on_spark.output)) == 2317


def edge_tables() -> dict[str, pd.DataFrame]:
    """The sample (zero denominators, orphans, an applicant without history) plus history rows
    with NULL keys and one-row credits."""
    frames = sample_tables()
    frames["application_train"] = pd.concat(
        [
            frames["application_train"],
            pd.DataFrame(
                {
                    "SK_ID_CURR": [4, 5],
                    "TARGET": [0, 0],
                    "AMT_INCOME_TOTAL": [0.0, 50000.0],  # zero income: every ratio on it NULL
                    "AMT_CREDIT": [0.0, 1.0],
                    "AMT_ANNUITY": [0.0, None],
                    "AMT_GOODS_PRICE": [0.0, 0.0],
                    "CNT_FAM_MEMBERS": [0.0, 1.0],
                    "DAYS_BIRTH": [-10000, -12000],
                    "DAYS_EMPLOYED": [0, 365243],
                }
            ),
        ],
        ignore_index=True,
    )
    frames["bureau"] = pd.concat(
        [
            frames["bureau"],
            pd.DataFrame(
                {
                    "SK_ID_CURR": [None, 4],  # a history row without its applicant
                    "SK_ID_BUREAU": [30, 40],
                    "CREDIT_ACTIVE": ["Active", "Active"],
                    "AMT_CREDIT_SUM": [0.0, 0.0],
                    "AMT_CREDIT_SUM_DEBT": [0.0, 0.0],
                }
            ),
        ],
        ignore_index=True,
    )
    frames["bureau_balance"] = pd.concat(
        [
            frames["bureau_balance"],
            pd.DataFrame(
                {"SK_ID_BUREAU": [None, 40], "MONTHS_BALANCE": [0, 0], "STATUS": ["1", "0"]}
            ),  # credit 40: one month
        ],
        ignore_index=True,
    )
    frames["installments_payments"] = pd.concat(
        [
            frames["installments_payments"],
            pd.DataFrame(
                {
                    "SK_ID_PREV": [None, 800],
                    "SK_ID_CURR": [4, None],
                    "AMT_INSTALMENT": [0.0, 5.0],
                    "AMT_PAYMENT": [0.0, 5.0],
                    "DAYS_INSTALMENT": [-1.0, -1.0],
                    "DAYS_ENTRY_PAYMENT": [-1.0, -1.0],
                }
            ),
        ],
        ignore_index=True,
    )
    return frames


def test_edge_cases_give_duckdbs_feature_store(spark: Any, tmp_path: Path) -> None:
    bronze = write_bronze(tmp_path / "bronze", edge_tables())
    on_spark = spark_build(spark, bronze, tmp_path / "spark.parquet")
    on_duckdb = build_feature_store(bronze, tmp_path / "duckdb.parquet", threads=1)

    assert_same_store(on_spark.output, on_duckdb.output)
    store = pd.read_parquet(on_spark.output).set_index("SK_ID_CURR")
    assert list(store.index) == [1, 2, 3, 4, 5]
    # Zero denominators are NULL (not an error under ANSI, not infinity).
    assert pd.isna(store.loc[4, "CREDIT_TO_INCOME"]) and pd.isna(store.loc[4, "ANNUITY_TO_INCOME"])
    assert np.isfinite(store.select_dtypes("number").to_numpy(dtype=float, na_value=0.0)).all()


def test_missing_bronze_files_bind_empty_on_spark(spark: Any, tmp_path: Path) -> None:
    frames = sample_tables()
    bronze = write_bronze(tmp_path / "bronze", frames)
    for stem in ("credit_card_balance", "bureau_balance", "application_test"):
        (bronze / f"{stem}.parquet").unlink()
    on_spark = spark_build(spark, bronze, tmp_path / "spark.parquet")
    on_duckdb = build_feature_store(bronze, tmp_path / "duckdb.parquet", threads=1)
    assert_same_store(on_spark.output, on_duckdb.output)
    assert on_spark.rows == 2


def test_a_failed_spark_build_leaves_the_previous_store_untouched(
    spark: Any, tmp_path: Path
) -> None:
    bronze = write_bronze(tmp_path / "bronze", sample_tables())
    output = tmp_path / "features" / "feature_store.parquet"
    spark_build(spark, bronze, output)
    before = output.read_bytes()
    # A value the canonical type cannot hold: ANSI casting refuses it.
    pq.write_table(
        pa.table({"SK_ID_CURR": ["1", "not a number"], "TARGET": [0, 1]}),
        bronze / "application_train.parquet",
    )
    with pytest.raises(Exception, match="CAST_INVALID_INPUT"):
        spark_build(spark, bronze, output)
    assert output.read_bytes() == before
    assert [p.name for p in output.parent.iterdir()] == ["feature_store.parquet"]


def test_part_files_out_of_key_order_are_refused(tmp_path: Path) -> None:
    bronze = write_bronze(tmp_path / "bronze", sample_tables())
    store = build_feature_store(bronze, tmp_path / "store.parquet", threads=1).output
    table = pq.read_table(store)
    pq.write_table(table.slice(2), tmp_path / "part-00000.parquet")
    pq.write_table(table.slice(0, 2), tmp_path / "part-00001.parquet")
    with pytest.raises(RuntimeError, match="not in key order"):
        spark_features.merge_parts(
            sorted(tmp_path.glob("part-*.parquet")), tmp_path / "merged.parquet", {}
        )
    assert not (tmp_path / "merged.parquet").exists()


def test_without_java_the_engine_says_what_to_install() -> None:
    settings = SparkSettings(master="local[1]", java_home="/nonexistent-java")
    with pytest.raises(SparkUnavailable, match=r"Java 17.*openjdk-17-jre-headless"):
        get_session(settings)


def test_spark_options_must_be_spark_options() -> None:
    with pytest.raises(ValueError, match="spark"):
        SparkSettings(options={"driver.memory": "2g"})


def test_a_pipeline_run_on_spark_records_the_engine_and_reuses_only_its_own_store(
    tiny_raw: Path, tmp_path: Path
) -> None:
    """``creditrisk run --engine spark``: run.json names Spark (version, master), the store is
    DuckDB's, a re-run on Spark skips, and a run on DuckDB re-builds the store."""
    home = tmp_path / "ws"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "creditrisk.cli", "run", "--to", "features", *args],
            env={
                **os.environ,
                "CREDITRISK_HOME": str(home),
                "CREDITRISK_SPARK_MASTER": "local[2]",
                "CREDITRISK_SPARK_OPTIONS": json.dumps(
                    {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}
                ),
            },
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def latest() -> dict[str, Any]:
        record: dict[str, Any] = json.loads((home / "runs" / "latest" / "run.json").read_text())
        return record

    first = run("--data", str(tiny_raw), "--engine", "spark")
    assert first.returncode == 0, first.stdout + first.stderr
    record = latest()
    assert record["engine"] == "spark"
    assert record["spark"]["master"] == "local[2]" and record["spark"]["version"].startswith("4.")
    features = record["stages"][1]
    assert features["parameters"]["engine"] == "spark"
    assert features["results"]["engine"] == "spark"
    assert ("features", "engine", "operational") in {
        (d["stage"], d["parameter"], d["kind"]) for d in features["deviations"]
    }
    store = home / "data" / "features" / "feature_store.parquet"
    assert store_engine(store)["engine"] == "spark"
    reference = build_feature_store(home / "data" / "bronze", tmp_path / "duckdb.parquet")
    assert_same_store(store, reference.output)

    again = run("--data", str(tiny_raw), "--engine", "spark")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [s["status"] for s in latest()["stages"]] == ["skipped", "skipped"]
    assert latest()["spark"] == record["spark"]  # reused: the Spark that computed it

    on_duckdb = run("--data", str(tiny_raw))
    assert on_duckdb.returncode == 0, on_duckdb.stdout + on_duckdb.stderr
    assert [s["status"] for s in latest()["stages"]] == ["skipped", "succeeded"]
    assert latest()["engine"] == "duckdb" and latest()["spark"] is None
    assert store_engine(store) == {"engine": "duckdb"}


# ---------------------------------------------------------------------------------------------
# Spark Connect: a server started on 127.0.0.1, the engine as a client (SPARK_REMOTE)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server from the pyspark distribution (its SparkConnectServer class, as
    ``sbin/start-connect-server.sh`` starts it, in the foreground), on a free local port."""
    import pyspark
    from conftest import free_port

    home = Path(pyspark.__file__).parent
    port = free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    command = [
        str(home / "bin" / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master",
        "local[2]",
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.shuffle.partitions=4",
    ]
    with log.open("w") as out:
        server = subprocess.Popen(
            command,
            env={**os.environ, "SPARK_HOME": str(home), "PYSPARK_PYTHON": sys.executable},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "Spark Connect server started" not in log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Connect server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_through_spark_connect_the_store_is_duckdbs(
    connect_server: str, tiny_bronze: Path, tmp_path: Path
) -> None:
    """``SPARK_REMOTE=sc://… creditrisk features --engine spark``: the store is computed by the
    Connect server. (A separate process: pyspark refuses a Connect session beside the tests'
    local one.)"""
    home = tmp_path / "ws"
    shutil.copytree(tiny_bronze, home / "data" / "bronze")
    result = subprocess.run(
        [sys.executable, "-m", "creditrisk.cli", "features", "--engine", "spark"],
        env={**os.environ, "CREDITRISK_HOME": str(home), "SPARK_REMOTE": connect_server},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2,317 applicants" in result.stdout and "on spark" in result.stdout
    store = home / "data" / "features" / "feature_store.parquet"
    on_duckdb = build_feature_store(tiny_bronze, tmp_path / "duckdb.parquet", threads=1)
    assert_same_store(store, on_duckdb.output)
    assert store_engine(store)["spark_master"] == connect_server
    assert "CANNOT_MODIFY_CONFIG" not in result.stderr  # no launch options sent to a server
