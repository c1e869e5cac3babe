"""The batch scorer on a real champion: raw tables in, PD, score, decision and reasons out."""

# The fixtures are imported and injected by name (see test_modeling.py).
# ruff: noqa: F811

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from modeling_fixtures import modeling_data, modeling_snapshot, params  # noqa: F401
from serving_fixtures import Champion, champion, raw_slice  # noqa: F401
from typer.testing import CliRunner

from creditrisk.cli import app
from creditrisk.features.catalog import ID_COLUMN
from creditrisk.scoring import Scorer, ScoringError
from creditrisk.scoring.batch import BatchError, score_batch

pytestmark = pytest.mark.xdist_group("serving")


@pytest.fixture(scope="module")
def scorer(champion: Champion) -> Scorer:
    return Scorer.load(tracking_uri=champion.tracking_uri)


def applicant_ids(raw: Path) -> list[int]:
    ids: list[int] = []
    for name in ("application_train", "application_test"):
        ids += pd.read_csv(raw / f"{name}.csv", usecols=[ID_COLUMN])[ID_COLUMN].tolist()
    return ids


def test_every_applicant_is_scored_by_the_champion(
    champion: Champion, raw_slice: Path, scorer: Scorer, tmp_path: Path, caplog
) -> None:
    output = tmp_path / "scores.parquet"
    with caplog.at_level(logging.INFO, logger="creditrisk.batch"):
        result = score_batch(raw_slice, output, scorer=scorer, request_id="job-42")

    scores = pd.read_parquet(output)
    assert sorted(scores[ID_COLUMN]) == sorted(applicant_ids(raw_slice))
    assert result.entities == len(scores) == 600 and result.rejected == 0
    assert (scores["model_name"] == "CreditRiskPD").all()
    assert (scores["model_version"] == "1").all() and result.model_version == "1"
    assert scores["probability_of_default"].between(0, 1).all()
    threshold = scorer.info.threshold
    expected = np.where(scores["probability_of_default"] < threshold, "approve", "decline")
    assert (scores["decision"] == expected).all()
    assert {"approve", "decline"} == set(scores["decision"])
    # Higher PD, lower score; bands follow the score.
    ordered = scores.sort_values("probability_of_default")
    assert ordered["score"].is_monotonic_decreasing
    assert set(scores["score_band"]) <= {"A", "B", "C", "D", "E"}
    declined = scores[scores["decision"] == "decline"]
    assert declined["reason_1"].notna().all() and declined["reason_1_description"].notna().all()
    assert pd.read_parquet(tmp_path / "scores.rejects.parquet").empty
    # One JSON line per job, without applicant data.
    (line,) = [r.getMessage() for r in caplog.records if r.name == "creditrisk.batch"]
    logged = json.loads(line)
    assert logged["event"] == "batch_scored" and logged["request_id"] == "job-42"
    assert logged["entities"] == 600 and logged["model_version"] == "1"
    assert str(scores[ID_COLUMN].iloc[0]) not in line


def test_batch_pd_equals_the_pd_of_the_feature_store_rows(
    champion: Champion, raw_slice: Path, scorer: Scorer, tmp_path: Path
) -> None:
    """Same SQL, same model: scoring raw tables reproduces the training-side PD."""
    # One DuckDB thread: sums in a fixed order, so a mean cannot differ in its last bit.
    score_batch(raw_slice, tmp_path / "scores.parquet", scorer=scorer, reasons=0, threads=1)
    scores = pd.read_parquet(tmp_path / "scores.parquet").set_index(ID_COLUMN)
    store = pd.read_parquet(champion.workspace.feature_store)
    rows = store[store[ID_COLUMN].isin(scores.index)].set_index(ID_COLUMN)
    assert len(rows) == len(scores)
    expected = pd.Series(scorer.trained.predict_pd(rows), index=rows.index)
    np.testing.assert_allclose(
        scores["probability_of_default"].loc[expected.index], expected, rtol=0, atol=1e-9
    )
    assert "reason_1" not in scores.columns  # reasons=0: no reason columns, no SHAP


def test_chunking_does_not_change_the_scores(
    raw_slice: Path, scorer: Scorer, tmp_path: Path
) -> None:
    score_batch(raw_slice, tmp_path / "one.parquet", scorer=scorer)
    score_batch(raw_slice, tmp_path / "many.parquet", scorer=scorer, chunk_rows=64)
    one = pd.read_parquet(tmp_path / "one.parquet").drop(columns="scored_at")
    many = pd.read_parquet(tmp_path / "many.parquet").drop(columns="scored_at")
    pd.testing.assert_frame_equal(one, many)
    assert pq.ParquetFile(tmp_path / "many.parquet").metadata.num_row_groups == 10  # 600 / 64


def test_unscorable_rows_are_rejected_with_the_reason_and_the_rest_scored(
    raw_slice: Path, scorer: Scorer, tmp_path: Path
) -> None:
    damaged = tmp_path / "raw"
    shutil.copytree(raw_slice, damaged)
    test_file = damaged / "application_test.csv"
    frame = pd.read_csv(test_file, dtype=str, keep_default_na=False)
    duplicated = frame.loc[3, ID_COLUMN]
    frame.loc[1, "AMT_CREDIT"] = "lots"  # not a number
    frame.loc[2, ID_COLUMN] = ""  # no applicant id
    frame.loc[4, ID_COLUMN] = duplicated  # the same applicant twice
    frame.to_csv(test_file, index=False)
    bureau = damaged / "bureau.csv"
    history = pd.read_csv(bureau, dtype=str, keep_default_na=False)
    history.loc[0, "DAYS_CREDIT"] = "last year"
    history.to_csv(bureau, index=False)

    result = score_batch(damaged, tmp_path / "scores.csv", scorer=scorer)

    rejects = pacsv.read_csv(tmp_path / "scores.rejects.csv").to_pandas()
    by_reason = {row["reason"].split(":")[0]: row for _, row in rejects.iterrows()}
    assert set(rejects["table"]) == {"application_test", "bureau"}
    cast = rejects[
        (rejects["table"] == "application_test") & rejects["reason"].str.startswith("cast")
    ]
    assert cast["column"].tolist() == ["AMT_CREDIT"] and cast["line"].tolist() == [3]
    assert "lots" in cast["reason"].iloc[0]
    assert "missing SK_ID_CURR" in by_reason
    duplicates = rejects[rejects["reason"].str.startswith("duplicate")]
    assert duplicates[ID_COLUMN].tolist() == [int(duplicated)] * 2
    assert rejects[rejects["table"] == "bureau"]["column"].tolist() == ["DAYS_CREDIT"]
    assert result.rejected == len(rejects) == 5
    scores = pacsv.read_csv(tmp_path / "scores.csv").to_pandas()
    assert len(scores) == 600 - 4  # bad amount, no id, both rows of the duplicated id
    assert int(duplicated) not in set(scores[ID_COLUMN])


def test_every_reject_names_its_file_line_and_applicant(
    raw_slice: Path, scorer: Scorer, tmp_path: Path
) -> None:
    """CSV rejects of every reason give the file line (header = line 1, a quoted line break
    counts); a row refused for a bad amount keeps its SK_ID_CURR."""
    damaged = tmp_path / "raw"
    shutil.copytree(raw_slice, damaged)
    test_file = damaged / "application_test.csv"
    frame = pd.read_csv(test_file, dtype=str, keep_default_na=False)
    ids = frame[ID_COLUMN].tolist()
    frame.loc[0, "NAME_TYPE_SUITE"] = "Family\nand friends"  # row 0 spans lines 2 and 3
    frame.loc[1, "AMT_CREDIT"] = "lots"  # line 4
    frame.loc[2, ID_COLUMN] = ""  # line 5
    frame.loc[4, ID_COLUMN] = ids[3]  # lines 6 and 7: the same applicant twice
    frame.loc[6, "CNT_CHILDREN"] = "two"  # line 9
    frame.to_csv(test_file, index=False)
    assert test_file.read_text().splitlines()[3].startswith(ids[1] + ",")  # line 4, 1-based
    bureau = damaged / "bureau.csv"
    history = pd.read_csv(bureau, dtype=str, keep_default_na=False)
    history.loc[2, "DAYS_CREDIT"] = "last year"  # line 4 of bureau.csv
    history.to_csv(bureau, index=False)

    score_batch(damaged, tmp_path / "scores.parquet", scorer=scorer, reasons=0)

    rejects = pd.read_parquet(tmp_path / "scores.rejects.parquet")
    assert rejects["row"].isna().all()  # CSV input: lines only
    found = {
        (table, int(line), column, None if pd.isna(key) else int(key), reason.split(":")[0])
        for table, line, column, key, reason in rejects[
            ["table", "line", "column", ID_COLUMN, "reason"]
        ].itertuples(index=False)
    }
    assert found == {
        ("application_test", 4, "AMT_CREDIT", int(ids[1]), "cast"),
        ("application_test", 5, ID_COLUMN, None, "missing SK_ID_CURR"),
        ("application_test", 6, ID_COLUMN, int(ids[3]), "duplicate SK_ID_CURR"),
        ("application_test", 7, ID_COLUMN, int(ids[3]), "duplicate SK_ID_CURR"),
        ("application_test", 9, "CNT_CHILDREN", int(ids[6]), "cast"),
        ("bureau", 4, "DAYS_CREDIT", int(history.loc[2, ID_COLUMN]), "cast"),
    }


def test_parquet_rejects_name_the_input_row_and_applicant(
    raw_slice: Path, scorer: Scorer, tmp_path: Path
) -> None:
    folder = tmp_path / "parquet"
    folder.mkdir()
    applications = pd.read_csv(raw_slice / "application_test.csv", dtype=str)
    ids = applications[ID_COLUMN].tolist()
    applications.loc[0, "AMT_INCOME_TOTAL"] = "a lot"  # row 1
    applications.loc[3, ID_COLUMN] = ids[2]  # rows 3 and 4: one applicant twice
    applications.to_parquet(folder / "application_test.parquet", index=False)

    score_batch(folder, tmp_path / "scores.parquet", scorer=scorer, reasons=0)

    rejects = pd.read_parquet(tmp_path / "scores.rejects.parquet")
    assert rejects["line"].isna().all()
    assert rejects[["row", "column", ID_COLUMN]].values.tolist() == [
        [1, "AMT_INCOME_TOTAL", int(ids[0])],
        [3, ID_COLUMN, int(ids[2])],
        [4, ID_COLUMN, int(ids[2])],
    ]


def test_parquet_input_and_an_explicit_model_version(
    champion: Champion, raw_slice: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "parquet"
    folder.mkdir()
    for path in raw_slice.glob("*.csv"):
        table = pacsv.read_csv(path)
        pq.write_table(table, folder / f"{path.stem}.parquet")
    applications = pd.read_parquet(folder / "application_test.parquet")
    applications["AMT_INCOME_TOTAL"] = applications["AMT_INCOME_TOTAL"].astype(str)
    applications.loc[0, "AMT_INCOME_TOTAL"] = "a lot"
    applications.to_parquet(folder / "application_test.parquet", index=False)

    result = score_batch(
        folder,
        tmp_path / "scores.parquet",
        model_uri="models:/CreditRiskPD/1",
        tracking_uri=champion.tracking_uri,
        threads=1,
    )

    rejects = pd.read_parquet(tmp_path / "scores.rejects.parquet")
    assert rejects[["table", "row", "column"]].values.tolist() == [
        ["application_test", 1, "AMT_INCOME_TOTAL"]
    ]
    assert result.entities == 599 and result.model_version == "1"
    csv_scores = tmp_path / "from_csv.parquet"
    score_batch(raw_slice, csv_scores, tracking_uri=champion.tracking_uri, threads=1)
    by_id = pd.read_parquet(csv_scores).set_index(ID_COLUMN)["probability_of_default"]
    parquet = pd.read_parquet(tmp_path / "scores.parquet").set_index(ID_COLUMN)
    np.testing.assert_allclose(
        parquet["probability_of_default"], by_id.loc[parquet.index], atol=1e-12
    )


def test_s3_input(champion: Champion, raw_slice: Path, scorer: Scorer, tmp_path: Path, s3_env):
    client = boto3.client("s3")
    client.create_bucket(Bucket="lender")
    for path in raw_slice.glob("*.csv"):
        client.upload_file(str(path), "lender", f"daily/2026-11-22/{path.name}")

    result = score_batch("s3://lender/daily/2026-11-22", tmp_path / "s3.parquet", scorer=scorer)

    local = tmp_path / "local.parquet"
    score_batch(raw_slice, local, scorer=scorer)
    assert result.entities == 600
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "s3.parquet").drop(columns="scored_at"),
        pd.read_parquet(local).drop(columns="scored_at"),
    )


def test_input_without_applications_is_refused(
    raw_slice: Path, scorer: Scorer, tmp_path: Path
) -> None:
    histories = tmp_path / "histories"
    shutil.copytree(raw_slice, histories)
    for name in ("application_train", "application_test"):
        (histories / f"{name}.csv").unlink()
    with pytest.raises(BatchError, match="no application file"):
        score_batch(histories, tmp_path / "scores.parquet", scorer=scorer)
    with pytest.raises(BatchError, match=r"\.parquet, \.csv or \.csv\.gz"):
        score_batch(raw_slice, tmp_path / "scores.xlsx", scorer=scorer)
    assert not (tmp_path / "scores.parquet").exists()


def test_a_corrupt_gzip_input_is_refused_naming_the_file(
    raw_slice: Path, scorer: Scorer, tmp_path: Path
) -> None:
    """DuckDB does not check a gzip trailer: the scorer verifies it, or a changed digit is
    scored as if it were the applicant's."""
    import gzip

    batch = tmp_path / "batch"
    shutil.copytree(raw_slice, batch)
    original = (batch / "application_test.csv").read_bytes()
    packed = bytearray(gzip.compress(original, mtime=0))
    packed[-8] ^= 0xFF  # the CRC-32 in the trailer
    (batch / "application_test.csv").unlink()
    (batch / "application_test.csv.gz").write_bytes(bytes(packed))
    with pytest.raises(BatchError, match=r"application_test\.csv\.gz is corrupt: CRC check failed"):
        score_batch(batch, tmp_path / "scores.parquet", scorer=scorer)
    assert not (tmp_path / "scores.parquet").exists()


def test_unknown_model_is_a_clear_error(champion: Champion) -> None:
    with pytest.raises(ScoringError, match="does not resolve"):
        Scorer.load("models:/CreditRiskPD@nobody", tracking_uri=champion.tracking_uri)
    with pytest.raises(ScoringError, match="not a registry URI"):
        Scorer.load("runs:/abc/model", tracking_uri=champion.tracking_uri)


def test_creditrisk_score_command(
    champion: Champion, raw_slice: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITRISK_HOME", str(champion.workspace.home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copytree(raw_slice, champion.workspace.home / "incoming", dirs_exist_ok=True)

    result = CliRunner().invoke(
        app, ["score", "--input", "incoming", "--output", "out/scores.csv", "--no-progress"]
    )

    assert result.exit_code == 0, result.output
    assert "600 applicants scored by CreditRiskPD version 1" in result.output
    written = pacsv.read_csv(champion.workspace.home / "out" / "scores.csv")
    assert written.num_rows == 600
    assert (champion.workspace.home / "out" / "scores.rejects.csv").exists()
    missing = CliRunner().invoke(
        app, ["score", "--input", "nowhere", "--output", "x.parquet", "--no-progress"]
    )
    assert missing.exit_code == 1 and "scoring failed" in missing.output
