"""Stage 01 ingest: checksums, typed Parquet, contracts, integrity, and bad input.

Most tests are about ingesting and call the domain function
(:func:`creditrisk.data.ingest.ingest`) on a workspace's bronze folder; those about the stage
(the summary file, where the source comes from, synthetic data on demand, interactive runs)
run :mod:`creditrisk.stages.ingest` with a run context.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from modeling_fixtures import settings_for

from creditrisk.data import synthetic
from creditrisk.data.ingest import IngestError
from creditrisk.data.ingest import ingest as ingest_snapshot
from creditrisk.data.tables import tables
from creditrisk.settings import Workspace
from creditrisk.stages import ingest as stage
from creditrisk.stages.context import NotInPipeline, RunContext, governed

QUIET = {"echo": lambda _line: None}
RUN_ID = "20261122T000000Z-ingesttest"


def ingest(source: Path | str, workspace: Workspace, **options) -> dict:
    """Ingest ``source`` into the workspace's bronze folder; the summary (not written)."""
    return ingest_snapshot(str(source), workspace.bronze, work_dir=workspace.data, **options)


def run_stage(workspace: Workspace, params: stage.Params) -> stage.Outcome:
    """The ingest stage in pipeline mode, holding the workspace lock."""
    with governed(settings_for(workspace), RUN_ID) as context:
        return stage.run(params, context("ingest"), **QUIET)


def resolve_source(workspace: Workspace, params: stage.Params, echo=print) -> str:
    with governed(settings_for(workspace), RUN_ID) as context:
        return stage.resolve_source(params, context("ingest"), echo)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite_csv(path: Path, edit) -> None:
    """Read a CSV as text columns, apply ``edit`` to the frame, write it back."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(path, index=False)


def _only_applications(raw: Path) -> Path:
    """Keep only application_train.csv: every other table becomes absent."""
    for path in raw.iterdir():
        if path.name != "application_train.csv":
            path.unlink()
    return raw


# ---------------------------------------------------------------------------------------------
# The happy path
# ---------------------------------------------------------------------------------------------


def test_ingest_writes_typed_bronze_and_summary(raw_copy: Path, workspace: Workspace) -> None:
    outcome = run_stage(workspace, stage.Params(source=str(raw_copy)))
    summary = outcome.summary
    assert outcome.summary_path == workspace.ingestion_summary
    assert outcome.bronze == workspace.bronze

    assert summary["status"] in ("passed", "warning")
    assert summary["contracts_passed"] is True
    for name, spec in tables().items():
        entry = summary["tables"][name]
        parquet = workspace.bronze / f"{name}.parquet"
        schema = pq.read_schema(parquet)
        assert schema.names == spec.column_names, name
        csv_rows = (raw_copy / spec.file_name).read_bytes().count(b"\n") - 1
        assert entry["rows"] == csv_rows == pq.ParquetFile(parquet).metadata.num_rows
        assert entry["sha256"] == _sha256(raw_copy / spec.file_name)
        assert (
            entry["md5"]
            == hashlib.md5(
                (raw_copy / spec.file_name).read_bytes(), usedforsecurity=False
            ).hexdigest()
        )
        assert entry["contract"]["rules_evaluated"] > 0
        assert entry["contract"]["errors"] == 0
    on_disk = json.loads(workspace.ingestion_summary.read_text())
    assert on_disk["snapshot_id"] == summary["snapshot_id"]
    assert on_disk["source"]["uri"] == str(raw_copy.resolve())
    assert on_disk["source"]["synthetic"]["seed"] == 7
    # The stage adds the run, its parameters and their deviations from the policy.
    assert on_disk["run"] == {"mode": "pipeline", "pipeline_run_id": RUN_ID}
    assert on_disk["parameters"]["source"] == str(raw_copy)
    assert [(d["parameter"], d["kind"]) for d in on_disk["deviations"]] == [
        ("source", "operational")
    ]
    assert outcome.results()["synthetic"] is True
    assert outcome.results()["snapshot_id"] == summary["snapshot_id"]
    # Kaggle types survive: integer ids stay integers, EXT scores are doubles, text stays text.
    schema = pq.read_schema(workspace.bronze / "application_train.parquet")
    assert str(schema.field("SK_ID_CURR").type) == "int64"
    assert str(schema.field("EXT_SOURCE_1").type) == "double"
    assert str(schema.field("CODE_GENDER").type) == "string"


def test_same_snapshot_same_id_and_changed_file_new_id(
    raw_copy: Path, workspace: Workspace
) -> None:
    first = ingest(raw_copy, workspace, **QUIET)["snapshot_id"]
    assert not workspace.ingestion_summary.exists()  # the stage writes it, not ingest
    assert ingest(raw_copy, workspace, **QUIET)["snapshot_id"] == first
    _rewrite_csv(raw_copy / "bureau.csv", lambda f: f.drop(index=f.index[:1], inplace=True))
    assert ingest(raw_copy, workspace, **QUIET)["snapshot_id"] != first


def test_referential_integrity_reports_orphans_as_warnings(
    raw_copy: Path, workspace: Workspace
) -> None:
    # Point three bureau_balance rows at a bureau credit that does not exist.
    def orphan(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[:3], "SK_ID_BUREAU"] = "99999999"

    _rewrite_csv(raw_copy / "bureau_balance.csv", orphan)
    summary = ingest(raw_copy, workspace, **QUIET)
    link = next(
        r
        for r in summary["referential_integrity"]
        if r["child"] == "bureau_balance" and r["column"] == "SK_ID_BUREAU"
    )
    assert link["status"] == "warning"
    assert link["orphan_keys"] >= 1
    assert link["child_rows"] - link["rows_with_parent"] >= 3
    assert any("bureau_balance.SK_ID_BUREAU" in w for w in summary["warnings"])


def test_absent_and_header_only_tables_are_recorded_not_fatal(
    raw_copy: Path, workspace: Workspace
) -> None:
    (raw_copy / "application_test.csv").unlink()
    for name in ("bureau_balance", "credit_card_balance"):
        path = raw_copy / f"{name}.csv"
        header = path.read_text().splitlines()[0]
        path.write_text(header + "\n")

    summary = ingest(raw_copy, workspace, **QUIET)

    assert summary["missing_tables"] == ["application_test"]
    assert sorted(summary["empty_tables"]) == ["bureau_balance", "credit_card_balance"]
    for name in ("application_test", "bureau_balance", "credit_card_balance"):
        table = pq.read_table(workspace.bronze / f"{name}.parquet")
        assert table.num_rows == 0
        assert table.column_names == tables()[name].column_names
    assert any("application_test: absent" in w for w in summary["warnings"])


def test_only_application_train_is_enough(raw_copy: Path, workspace: Workspace) -> None:
    summary = ingest(_only_applications(raw_copy), workspace, **QUIET)
    assert summary["tables"]["application_train"]["rows"] > 0
    assert len(summary["missing_tables"]) == 7


def test_gzip_and_zip_inputs(raw_copy: Path, workspace: Workspace) -> None:
    plain_rows = ingest(raw_copy, workspace, **QUIET)["tables"]
    bureau, train = raw_copy / "bureau.csv", raw_copy / "application_train.csv"
    with open(bureau, "rb") as src, gzip.open(raw_copy / "bureau.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    with zipfile.ZipFile(raw_copy / "application_train.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(train, "application_train.csv")
    bureau.unlink()
    train.unlink()

    summary = ingest(raw_copy, workspace, **QUIET)

    assert summary["tables"]["bureau"]["file"] == "bureau.csv.gz"
    assert summary["tables"]["bureau"]["rows"] == plain_rows["bureau"]["rows"]
    assert summary["tables"]["bureau"]["sha256"] == _sha256(raw_copy / "bureau.csv.gz")
    assert summary["tables"]["application_train"]["rows"] == plain_rows["application_train"]["rows"]


def test_unused_columns_may_be_missing_or_extra(raw_copy: Path, workspace: Workspace) -> None:
    def edit(frame: pd.DataFrame) -> None:
        frame.drop(columns=["APARTMENTS_AVG", "FONDKAPREMONT_MODE"], inplace=True)
        frame["BRANCH_CODE"] = "B1"

    _rewrite_csv(raw_copy / "application_train.csv", edit)
    summary = ingest(raw_copy, workspace, **QUIET)
    entry = summary["tables"]["application_train"]
    assert entry["missing_columns"] == ["APARTMENTS_AVG", "FONDKAPREMONT_MODE"]
    assert entry["extra_columns"] == ["BRANCH_CODE"]
    bronze = pq.read_table(workspace.bronze / "application_train.parquet")
    assert bronze.column_names == tables()["application_train"].column_names
    assert bronze.column("APARTMENTS_AVG").null_count == bronze.num_rows


def test_unseen_category_level_is_a_warning(raw_copy: Path, workspace: Workspace) -> None:
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[:2], "NAME_INCOME_TYPE"] = "Gig worker"

    _rewrite_csv(raw_copy / "application_train.csv", edit)
    summary = ingest(raw_copy, workspace, **QUIET)
    rules = summary["tables"]["application_train"]["contract"]["rules"]
    levels = next(
        r for r in rules if r["column"] == "NAME_INCOME_TYPE" and r["rule"] == "allowed_levels"
    )
    assert levels["severity"] == "warning"
    assert levels["failures"] == 2
    assert levels["examples"][0]["value"] == "Gig worker"
    assert summary["status"] == "warning"


def test_expected_checksums(raw_copy: Path, workspace: Workspace) -> None:
    good = _sha256(raw_copy / "bureau.csv")
    ingest(raw_copy, workspace, expected_checksums={"bureau": good}, **QUIET)
    with pytest.raises(IngestError, match=r"^bureau: checksum mismatch") as err:
        ingest(raw_copy, workspace, expected_checksums={"bureau": "0" * 64}, **QUIET)
    assert err.value.rule == "expected_checksum"


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error naming table, column and rule; nothing half-written
# ---------------------------------------------------------------------------------------------


def test_missing_application_train(raw_copy: Path, workspace: Workspace) -> None:
    (raw_copy / "application_train.csv").unlink()
    with pytest.raises(IngestError, match=r"application_train: missing file"):
        ingest(raw_copy, workspace, **QUIET)


def test_truncated_csv(raw_copy: Path, workspace: Workspace) -> None:
    path = raw_copy / "installments_payments.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # cut inside the last row
    with pytest.raises(IngestError, match=r"^installments_payments: 1 bad row") as err:
        ingest(raw_copy, workspace, **QUIET)
    assert err.value.rule == "truncated_row"


def test_wrong_type_names_column_and_line(raw_copy: Path, workspace: Workspace) -> None:
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[4], "AMT_CREDIT"] = "lots"

    _rewrite_csv(raw_copy / "application_train.csv", edit)
    with pytest.raises(IngestError) as err:
        ingest(raw_copy, workspace, **QUIET)
    assert err.value.table == "application_train"
    assert err.value.column == "AMT_CREDIT"
    assert err.value.rule == "type"
    assert "line 6" in str(err.value)  # header is line 1, the 5th data row is line 6


def test_duplicate_applicant(raw_copy: Path, workspace: Workspace) -> None:
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[1], "SK_ID_CURR"] = frame.loc[frame.index[0], "SK_ID_CURR"]

    _rewrite_csv(raw_copy / "application_train.csv", edit)
    with pytest.raises(IngestError) as err:
        ingest(raw_copy, workspace, **QUIET)
    assert (err.value.table, err.value.column, err.value.rule) == (
        "application_train",
        "SK_ID_CURR",
        "unique",
    )


def test_missing_used_column(raw_copy: Path, workspace: Workspace) -> None:
    _rewrite_csv(raw_copy / "bureau.csv", lambda f: f.drop(columns=["CREDIT_ACTIVE"], inplace=True))
    with pytest.raises(IngestError) as err:
        ingest(raw_copy, workspace, **QUIET)
    assert (err.value.table, err.value.column, err.value.rule) == (
        "bureau",
        "CREDIT_ACTIVE",
        "required_column",
    )


def test_out_of_range_value(raw_copy: Path, workspace: Workspace) -> None:
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[3], "EXT_SOURCE_2"] = "1.5"

    _rewrite_csv(raw_copy / "application_train.csv", edit)
    with pytest.raises(IngestError) as err:
        ingest(raw_copy, workspace, **QUIET)
    assert (err.value.column, err.value.rule) == ("EXT_SOURCE_2", "score_0_1")
    assert "row 4" in str(err.value)


def test_null_key_in_child_table(raw_copy: Path, workspace: Workspace) -> None:
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[0], "SK_ID_PREV"] = ""

    _rewrite_csv(raw_copy / "previous_application.csv", edit)
    with pytest.raises(IngestError) as err:
        ingest(raw_copy, workspace, **QUIET)
    assert (err.value.table, err.value.column, err.value.rule) == (
        "previous_application",
        "SK_ID_PREV",
        "not_nullable",
    )


def test_applicant_in_train_and_test(raw_copy: Path, workspace: Workspace) -> None:
    train_id = pd.read_csv(raw_copy / "application_train.csv", usecols=["SK_ID_CURR"]).iloc[0, 0]

    def edit(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[0], "SK_ID_CURR"] = str(train_id)

    _rewrite_csv(raw_copy / "application_test.csv", edit)
    with pytest.raises(IngestError, match="also appear in application_train"):
        ingest(raw_copy, workspace, **QUIET)


def test_failed_ingest_keeps_previous_snapshot(raw_copy: Path, workspace: Workspace) -> None:
    params = stage.Params(source=str(raw_copy))
    first = run_stage(workspace, params).summary
    before = {p.name: _sha256(p) for p in workspace.bronze.iterdir()}
    summary_before = workspace.ingestion_summary.read_text()

    def edit(frame: pd.DataFrame) -> None:
        frame.loc[frame.index[0], "DAYS_BIRTH"] = "not a number"

    _rewrite_csv(raw_copy / "application_train.csv", edit)
    with pytest.raises(IngestError):
        run_stage(workspace, params)

    assert {p.name: _sha256(p) for p in workspace.bronze.iterdir()} == before
    assert workspace.ingestion_summary.read_text() == summary_before
    assert json.loads(summary_before)["snapshot_id"] == first["snapshot_id"]
    leftovers = [p.name for p in workspace.data.iterdir() if p.name.startswith(".")]
    assert leftovers == []


# ---------------------------------------------------------------------------------------------
# Default source: synthetic data on demand
# ---------------------------------------------------------------------------------------------


def test_default_source_generates_synthetic_data_on_demand(workspace: Workspace) -> None:
    messages: list[str] = []
    params = stage.Params(size="300", seed=3)
    uri = resolve_source(workspace, params, echo=messages.append)
    assert uri == str(workspace.raw)
    assert synthetic.read_marker(workspace.raw)["n_applicants"] == 300
    assert "generating synthetic" in messages[0]

    # Same size and seed: reused, nothing regenerated.
    stamp = (workspace.raw / "application_train.csv").stat().st_mtime_ns
    messages.clear()
    resolve_source(workspace, params, echo=messages.append)
    assert messages == []
    assert (workspace.raw / "application_train.csv").stat().st_mtime_ns == stamp

    # Another size: regenerated.
    resolve_source(workspace, stage.Params(size="400", seed=3), echo=messages.append)
    assert synthetic.read_marker(workspace.raw)["n_applicants"] == 400


def test_real_files_in_data_raw_are_never_replaced(raw_copy: Path, workspace: Workspace) -> None:
    shutil.copytree(raw_copy, workspace.raw)
    (workspace.raw / "_SYNTHETIC.json").unlink()  # now it looks like a lender's own files
    before = _sha256(workspace.raw / "application_train.csv")
    uri = resolve_source(workspace, stage.Params(size="123", seed=1), **QUIET)
    assert uri == str(workspace.raw)
    assert _sha256(workspace.raw / "application_train.csv") == before


def test_an_interactive_run_writes_only_its_scratch_folder(workspace: Workspace) -> None:
    settings = settings_for(workspace)
    with pytest.raises(NotInPipeline):  # a run id alone, without the lock, is not a pipeline
        RunContext.pipeline("ingest", settings, RUN_ID)
    ctx = RunContext.interactive("ingest", settings)
    scratch = workspace.scratch / "01_ingest"
    messages: list[str] = []

    outcome = stage.run(stage.Params(size="300", seed=3), ctx, echo=messages.append)

    # data/raw is empty: the synthetic data are generated into the scratch folder instead.
    assert "an interactive run leaves data/raw as is" in messages[0]
    assert outcome.summary["source"]["uri"] == str(scratch / "data" / "raw")
    assert synthetic.read_marker(scratch / "data" / "raw")["n_applicants"] == 300
    assert outcome.summary_path == scratch / "reports" / "ingestion_summary.json"
    assert outcome.bronze == scratch / "data" / "bronze"
    assert (outcome.bronze / "application_train.parquet").exists()
    assert outcome.summary["run"] == {"mode": "interactive", "pipeline_run_id": None}
    # Nothing of the workspace itself is written.
    assert not workspace.raw.exists() and not workspace.bronze.exists()
    assert not workspace.ingestion_summary.exists()


# ---------------------------------------------------------------------------------------------
# S3 through a real moto server
# ---------------------------------------------------------------------------------------------


def test_ingest_from_s3(tiny_raw: Path, workspace: Workspace, s3_env: str) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="home-credit")
    for path in sorted(tiny_raw.glob("*.csv")):
        client.upload_file(str(path), "home-credit", f"snapshots/2026-11/{path.name}")
    client.put_object(Bucket="home-credit", Key="snapshots/2026-11/README.txt", Body=b"hi")
    client.put_object(Bucket="home-credit", Key="snapshots/2026-11/old/bureau.csv", Body=b"x")

    summary = ingest("s3://home-credit/snapshots/2026-11", workspace, **QUIET)

    assert summary["source"]["kind"] == "s3"
    assert summary["unrecognised_files"] == ["README.txt"]  # sub-folders are not read
    for name, spec in tables().items():
        entry = summary["tables"][name]
        assert entry["uri"] == f"s3://home-credit/snapshots/2026-11/{spec.file_name}"
        assert entry["sha256"] == _sha256(tiny_raw / spec.file_name)
    local = Workspace(workspace.home / "local")
    local_summary = ingest(tiny_raw, local, **QUIET)
    assert local_summary["source"]["kind"] == "local"
    assert summary["snapshot_id"] == local_summary["snapshot_id"]
    con = duckdb.connect()
    for name in tables():
        s3_rows = con.read_parquet(str(workspace.bronze / f"{name}.parquet")).fetchall()
        local_rows = con.read_parquet(str(local.bronze / f"{name}.parquet")).fetchall()
        assert s3_rows == local_rows, name


def test_missing_s3_prefix_is_a_clear_error(workspace: Workspace, s3_env: str) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="empty-bucket")
    with pytest.raises(IngestError, match=r"application_train: missing file"):
        ingest("s3://empty-bucket/nothing-here", workspace, **QUIET)
