"""Batch scoring: raw Home Credit tables in, one score per applicant out.

The core of ``creditrisk score --input DIR|s3://… --output scores.parquet|.csv`` (``make
score``, whose command-line edge is :mod:`serving.batch`) and of the monitor stage's production
batches:

1. **Stage** every table the input holds (Kaggle file names, CSV/CSV.GZ/ZIP or Parquet) into
   typed Parquet with the canonical columns. A row whose value does not fit its type is set
   aside into the rejects file with the reason; so is an applicant without ``SK_ID_CURR`` or
   with an ``SK_ID_CURR`` that appears twice. Nothing else is dropped. Every reject names where
   it is in its file, one way for all reasons: the CSV file line (1-based, the header is line
   1, a quoted value's line breaks count), or for Parquet the row (1-based); and the row's
   ``SK_ID_CURR`` whenever it can be read, a row refused for another column's type included.
2. **Features**: the same SQL as training (:func:`creditrisk.features.build_feature_store`),
   run by DuckDB over the staged files with a memory limit, spilling to disk beyond it.
3. **Score** the feature rows in chunks with the champion (:class:`creditrisk.scoring.Scorer`)
   and append each chunk to the output, so memory stays bounded whatever the input size. The
   output is written to a temporary file and renamed when complete.

Every job ends with one JSON log line (request id, entities, rejects, duration, model version)
on the ``creditrisk.batch`` logger; no applicant data is logged.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from creditrisk.data import sources
from creditrisk.data.ingest import convert_csv
from creditrisk.data.tables import APPLICATION_TABLES, TableSpec, tables
from creditrisk.features.catalog import ID_COLUMN
from creditrisk.features.engine import build_feature_store, duckdb_info
from creditrisk.io import atomic_path
from creditrisk.scoring.scorer import DEFAULT_REASONS, Scorer
from creditrisk.settings import EngineName, SparkSettings

logger = logging.getLogger("creditrisk.batch")

#: Applicants scored per chunk: the scoring step's memory is proportional to it.
DEFAULT_CHUNK_ROWS = 50_000

#: DuckDB's memory limit for staging and features (it spills to disk beyond it).
DEFAULT_MEMORY_LIMIT = "2GB"

REJECT_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),  # CSV input: the file line the row starts on (1 = the header)
        ("row", pa.int64()),  # Parquet input: the row (1-based)
        (ID_COLUMN, pa.int64()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)


class BatchError(Exception):
    """The job cannot run at all (no applicants, unreadable input, unknown output format)."""


@dataclass(frozen=True)
class BatchResult:
    """What a batch job did; also the content of its JSON log line."""

    request_id: str
    input: str
    output: str
    rejects: str
    entities: int
    rejected: int
    duration_s: float
    model_name: str
    model_version: str
    tables: dict[str, int]
    engine: dict[str, str] = field(default_factory=lambda: duckdb_info().as_dict())

    def as_dict(self) -> dict[str, Any]:
        """Flat: ``"engine": "duckdb"`` (or ``"spark"`` with ``spark_version``, ``spark_master``)
        beside the job's figures."""
        out = asdict(self)
        out.update(out.pop("engine"))
        return out


def output_format(path: Path) -> str:
    """``parquet`` or ``csv`` from the file name (``.csv.gz`` is CSV, compressed)."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise BatchError(f"{path}: the output must end in .parquet, .csv or .csv.gz")


def rejects_path_for(output: Path) -> Path:
    """``scores.parquet`` → ``scores.rejects.parquet`` (same format as the output)."""
    name = output.name
    for suffix in (".parquet", ".csv.gz", ".csv"):
        if name.lower().endswith(suffix):
            return output.with_name(f"{name[: -len(suffix)]}.rejects{suffix}")
    raise BatchError(f"{output}: unknown output format")


# ---------------------------------------------------------------------------------------------
# Staging: raw files → typed Parquet, unparseable rows set aside
# ---------------------------------------------------------------------------------------------


def _reject(table: str, file: str, reason: str, **fields: Any) -> dict[str, Any]:
    return {"table": table, "file": file, "reason": reason, **fields}


@dataclass
class _Staged:
    """One table staged: its typed Parquet, the rows set aside and the file they came from."""

    path: Path
    source: Path
    csv: bool
    rejects: list[dict[str, Any]] = field(default_factory=list)


def _stage_csv(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, found: sources.SourceFile, work: Path
) -> _Staged:
    local = sources.csv_path(found, sources.fetch(found, work / "download"), work / "unzip")
    header = sources.read_header(local, spec.name)
    out = work / "staged" / f"{spec.name}.parquet"
    conversion = convert_csv(con, spec, local, header, out, reject_limit=0)
    rejects = [
        # DuckDB's line counts records (a quoted line break does not count): made a file line
        # by _place_csv_rejects.
        _reject(
            spec.name,
            found.name,
            f"{r['error_type'].lower()}: {r['message']}",
            line=r["line"],
            column=r["column"],
        )
        for r in conversion.rejects
    ]
    return _Staged(out, local, True, rejects)


def _stage_parquet(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, found: sources.SourceFile, work: Path
) -> _Staged:
    local = sources.fetch(found, work / "download")
    schema = pq.ParquetFile(local).schema_arrow
    textual = {
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    }
    out = work / "staged" / f"{spec.name}.parquet"
    casts, checks = [], []
    for column in spec.columns:
        quoted = f'"{column.name}"'
        if column.name not in schema.names:
            casts.append(f"cast(null as {column.duckdb_type}) as {quoted}")
            continue
        # An empty text is a missing value, as in the CSV files (where the two cannot differ).
        value = f"nullif({quoted}, '')" if column.name in textual else quoted
        casts.append(f"try_cast({value} as {column.duckdb_type}) as {quoted}")
        if column.duckdb_type != "VARCHAR":
            checks.append(
                f"when {value} is not null and try_cast({value} as {column.duckdb_type}) "
                f"is null then '{column.name}'"
            )
    failing = f"case {' '.join(checks)} else null end" if checks else "null"
    con.execute(
        f"create or replace temp table staged_input as "
        f"select row_number() over () as __row, {failing} as __bad, {', '.join(casts)} "
        f"from read_parquet($path)",
        {"path": str(local)},
    )
    names = ", ".join(f'"{c.name}"' for c in spec.columns)
    con.execute(
        f"copy (select {names} from staged_input where __bad is null order by __row) "
        "to $out (format parquet, compression zstd)",
        {"out": str(out)},
    )
    # The applicant of a row refused for another column (its SK_ID_CURR was read, or is NULL).
    applicant = ID_COLUMN if ID_COLUMN in spec.column_names else "null"
    bad = con.execute(
        f"select __row, __bad, {applicant} from staged_input where __bad is not null order by __row"
    ).fetchall()
    con.execute("drop table staged_input")
    rejects = [
        _reject(
            spec.name,
            found.name,
            "type: value does not fit the column's type",
            row=row,
            column=column,
            **{ID_COLUMN: key},
        )
        for row, column, key in bad
    ]
    return _Staged(out, local, False, rejects)


def _unscorable_applicants(
    con: duckdb.DuckDBPyConnection, staged: Path, table: str, file: str
) -> list[dict[str, Any]]:
    """Applicants without SK_ID_CURR, or whose SK_ID_CURR repeats: set aside, all of them.

    Their ``row`` is the staged row (1-based), which :func:`_place` turns into the file's line
    or row.
    """
    con.execute(
        "create or replace temp table applicants as "
        "select row_number() over () as __row, * from read_parquet($path)",
        {"path": str(staged)},
    )
    flagged = con.execute(
        f"""
        select __row, {ID_COLUMN},
               case when {ID_COLUMN} is null then 'missing {ID_COLUMN}'
                    else 'duplicate {ID_COLUMN}: the applicant appears more than once' end
        from (
            select __row, {ID_COLUMN}, count(*) over (partition by {ID_COLUMN}) as n
            from applicants
        )
        where {ID_COLUMN} is null or n > 1
        order by __row
        """
    ).fetchall()
    if flagged:
        names = ", ".join(f'"{name}"' for name in pq.ParquetFile(staged).schema_arrow.names)
        with atomic_path(staged, suffix=".parquet") as temporary:
            con.execute(
                f"copy (select {names} from applicants where {ID_COLUMN} is not null and "
                f"{ID_COLUMN} in (select {ID_COLUMN} from applicants group by all "
                f"having count(*) = 1) order by __row) to $out (format parquet, "
                "compression zstd)",
                {"out": str(temporary)},
            )
    con.execute("drop table applicants")
    return [
        _reject(table, file, reason, row=row, **{ID_COLUMN: key, "column": ID_COLUMN})
        for row, key, reason in flagged
    ]


@dataclass(frozen=True)
class _Place:
    line: int  # the file line the record starts on (1 = the header)
    applicant: int | None  # its SK_ID_CURR, when the text is an integer


def _csv_places(
    path: Path, records: Iterable[int], staged_rows: Iterable[int], rejected: set[int]
) -> tuple[dict[int, _Place], dict[int, _Place]]:
    """File lines and SK_ID_CURR of some records of a CSV, in one pass that stops after them.

    Args:
        records: Records by DuckDB's reject line (1 + the records and blank lines before it).
        staged_rows: Staged rows (1-based): the records DuckDB did not reject, in order.
        rejected: Every record DuckDB rejected (they are not staged).
    """
    wanted, wanted_rows = set(records), set(staged_rows)
    by_record: dict[int, _Place] = {}
    by_row: dict[int, _Place] = {}
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    csv.field_size_limit(2**31 - 1)
    with opener(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text)
        header = next(reader, [])
        key = header.index(ID_COLUMN) if ID_COLUMN in header else None
        last_line, staged = reader.line_num, 0
        try:
            for record, fields in enumerate(reader, start=2):
                place = _Place(last_line + 1, _integer(fields, key))
                last_line = reader.line_num
                if not fields:  # a blank line: DuckDB counts it but reads no row
                    continue
                if record in rejected:
                    if record in wanted:
                        by_record[record] = place
                else:
                    staged += 1
                    if staged in wanted_rows:
                        by_row[staged] = place
                if len(by_record) == len(wanted) and len(by_row) == len(wanted_rows):
                    break
        except csv.Error:  # a line Python's reader cannot read either: the rest stays unplaced
            pass
    return by_record, by_row


def _integer(fields: list[str], index: int | None) -> int | None:
    if index is None or index >= len(fields):
        return None
    try:
        return int(fields[index].strip())
    except ValueError:
        return None


def _place(staged: _Staged, unscorable: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's rejects, each with its file line (CSV) or input row (Parquet)."""
    rejects = staged.rejects + unscorable
    if not staged.csv:
        # Staged rows are the input rows without the refused ones, in order.
        refused = sorted(reject["row"] for reject in staged.rejects)
        for reject in unscorable:
            reject["row"] = _nth_kept(reject["row"], refused)
        return rejects
    if not rejects:
        return rejects
    rejected = {reject["line"] for reject in staged.rejects}
    by_record, by_row = _csv_places(
        staged.source, rejected, (reject["row"] for reject in unscorable), rejected
    )
    for reject in staged.rejects:
        place = by_record.get(reject["line"])
        if place is not None:
            reject["line"] = place.line
            reject.setdefault(ID_COLUMN, place.applicant)
    for reject in unscorable:
        place = by_row.get(reject.pop("row"))
        reject["line"] = place.line if place is not None else None
    return rejects


def _nth_kept(n: int, removed: list[int]) -> int:
    """The position (1-based) of the n-th item kept when the ``removed`` positions are dropped."""
    position = n
    for gone in removed:  # ascending
        if gone <= position:
            position += 1
        else:
            break
    return position


def stage_inputs(
    input_uri: str, work: Path, con: duckdb.DuckDBPyConnection
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Stage every table of the input into ``work/staged``; rows per table and the rejects.

    Raises:
        BatchError: No application file, or a table delivered twice.
    """
    try:
        found, _ = sources.discover(input_uri, sources.SCORING_SUFFIXES)
    except sources.SourceError as exc:
        raise BatchError(str(exc)) from exc
    if not any(name in found for name in APPLICATION_TABLES):
        raise BatchError(
            f"no application file in {input_uri}: expected application_test or "
            "application_train (.csv, .csv.gz, .zip or .parquet)"
        )
    (work / "staged").mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    rejects: list[dict[str, Any]] = []
    for name, spec in tables().items():
        if name not in found:
            continue
        stage = _stage_parquet if found[name].name.lower().endswith(".parquet") else _stage_csv
        try:
            staged = stage(con, spec, found[name], work)
        except (sources.SourceError, duckdb.Error) as exc:
            raise BatchError(f"{name}: cannot read {found[name].name}: {exc}") from exc
        unscorable = (
            _unscorable_applicants(con, staged.path, name, found[name].name)
            if name in APPLICATION_TABLES
            else []
        )
        rejects += _place(staged, unscorable)
        rows[name] = pq.ParquetFile(staged.path).metadata.num_rows
    return rows, rejects


# ---------------------------------------------------------------------------------------------
# Scoring in chunks
# ---------------------------------------------------------------------------------------------


def output_schema(reasons: int) -> pa.Schema:
    """The columns of a batch output, whatever the chunk holds."""
    fields = [
        pa.field(ID_COLUMN, pa.int64()),
        pa.field("probability_of_default", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("score_band", pa.string()),
        pa.field("decision", pa.string()),
    ]
    for k in range(1, reasons + 1):
        fields.append(pa.field(f"reason_{k}", pa.string()))
        fields.append(pa.field(f"reason_{k}_description", pa.string()))
    fields += [
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC")),
    ]
    return pa.schema(fields)


class _TableWriter:
    """Appends Arrow tables to one Parquet or CSV file."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str) -> None:
        self.fmt = fmt
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(path, schema, compression="zstd")
        else:
            stream = (
                pa.CompressedOutputStream(str(path), "gzip")
                if path.name.endswith(".gz")
                else pa.OSFile(str(path), "wb")
            )
            self._stream = stream
            self._csv = pacsv.CSVWriter(stream, schema)

    def write(self, table: pa.Table) -> None:
        if self.fmt == "parquet":
            self._parquet.write_table(table)
        else:
            self._csv.write_table(table)

    def close(self) -> None:
        if self.fmt == "parquet":
            self._parquet.close()
        else:
            self._csv.close()
            self._stream.close()


@contextmanager
def _writer(path: Path, schema: pa.Schema) -> Iterator[_TableWriter]:
    fmt = output_format(path)
    with atomic_path(path, suffix=path.suffix) as temporary:
        writer = _TableWriter(Path(temporary), schema, fmt)
        try:
            yield writer
        finally:
            writer.close()


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="applicant", desc="scoring", disable=not enabled)


def score_features(
    scorer: Scorer,
    feature_file: Path,
    output: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    reasons: int = DEFAULT_REASONS,
    progress: bool = False,
) -> int:
    """Score a feature-store Parquet file chunk by chunk into ``output``; rows written."""
    schema = output_schema(reasons)
    source = pq.ParquetFile(feature_file)
    total = source.metadata.num_rows
    written = 0
    scored_at = datetime.now(UTC)
    with _writer(output, schema) as writer, _progress(total, progress) as bar:
        for batch in source.iter_batches(batch_size=chunk_rows):
            frame = scorer.score_frame(batch.to_pandas(), reasons=reasons)
            frame["scored_at"] = scored_at
            writer.write(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            written += len(frame)
            bar.update(len(frame))
        if total == 0:
            writer.write(schema.empty_table())
    return written


def _write_rejects(rejects: list[dict[str, Any]], path: Path) -> None:
    table = (
        pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
        if rejects
        else REJECT_SCHEMA.empty_table()
    )
    with _writer(path, REJECT_SCHEMA) as writer:
        writer.write(table)


def _score_on_spark(
    work: Path,
    scorer: Scorer,
    output: Path,
    *,
    reasons: int,
    features_output: Path | None,
    settings: SparkSettings,
    spark: Any,
) -> tuple[int, dict[str, str]]:
    """Features and scores of the staged tables on Spark; applicants scored and the engine."""
    from contextlib import nullcontext

    from creditrisk.spark.scoring import score_staged
    from creditrisk.spark.session import spark_info, spark_session

    with nullcontext(spark) if spark is not None else spark_session(settings) as session:
        info = spark_info(session, settings)
        schema = output_schema(reasons)
        with _writer(output, schema) as writer:
            entities = score_staged(
                session,
                work / "staged",
                scorer,
                writer.write,
                schema=schema,
                reasons=reasons,
                scored_at=datetime.now(UTC),
                work=work,
                engine=info,
                features_output=features_output,
            )
    return entities, info.as_dict()


def score_batch(
    input_uri: str | Path,
    output: str | Path,
    *,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
    scorer: Scorer | None = None,
    rejects: str | Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    reasons: int = DEFAULT_REASONS,
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
    work_dir: str | Path | None = None,
    request_id: str | None = None,
    progress: bool = False,
    features_output: str | Path | None = None,
    engine: EngineName = "duckdb",
    spark_settings: SparkSettings | None = None,
    spark: Any = None,
) -> BatchResult:
    """Score every applicant of a raw-table input with the champion (or ``model_uri``).

    Args:
        input_uri: A directory or ``s3://bucket/prefix`` with Kaggle-named files.
        output: ``.parquet``, ``.csv`` or ``.csv.gz``; written atomically.
        model_uri: A registry URI; default ``models:/CreditRiskPD@champion``.
        tracking_uri: The MLflow tracking/registry URI; default MLflow's current one.
        scorer: An already loaded scorer (then ``model_uri`` is ignored).
        rejects: Where unscorable rows go; default ``<output>.rejects.<ext>`` beside it.
        chunk_rows: Applicants scored at a time (bounds the scoring memory).
        reasons: Reason codes per applicant.
        memory_limit: DuckDB's memory limit for staging and features (None: DuckDB's default).
        threads: DuckDB threads (None: all cores).
        work_dir: Where temporary files go (default: the system's temporary directory).
        request_id: Id of the job in the log line (default: a new UUID).
        progress: Show a progress bar.
        features_output: Keep the computed features there as Parquet (the monitor reads them);
            by default they are removed with the other temporary files.
        engine: ``duckdb`` (features and scores here), or ``spark``: features and scores on
            Spark (:mod:`creditrisk.spark.scoring`), the same output columns and rejects.
        spark_settings: The Spark session's settings (default: from the environment).
        spark: A running Spark session to use (kept running); default one from
            ``spark_settings``, stopped at the end.

    Raises:
        BatchError: The input has no application file, a file cannot be read, or the output
            format is unknown.
    """
    started = time.perf_counter()
    output = Path(output)
    output_format(output)
    rejects_path = Path(rejects) if rejects else rejects_path_for(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    request_id = request_id or str(uuid.uuid4())
    scorer = scorer or Scorer.load(model_uri, tracking_uri=tracking_uri)
    work = Path(tempfile.mkdtemp(prefix="creditrisk-batch-", dir=work_dir))
    con = duckdb.connect(str(work / "duckdb.db"))
    try:
        if memory_limit:
            con.execute("set memory_limit = ?", [memory_limit])
        if threads:
            con.execute("set threads = ?", [threads])
        con.execute("set temp_directory = ?", [str(work / "spill")])
        rows, rejected_rows = stage_inputs(str(input_uri), work, con)
        if features_output is not None:
            Path(features_output).parent.mkdir(parents=True, exist_ok=True)
        if engine == "spark":
            entities, engine_info = _score_on_spark(
                work,
                scorer,
                output,
                reasons=reasons,
                features_output=None if features_output is None else Path(features_output),
                settings=spark_settings or SparkSettings(),
                spark=spark,
            )
        else:
            features = work / "features.parquet"
            build_feature_store(work / "staged", features, connection=con)
            entities = score_features(
                scorer, features, output, chunk_rows=chunk_rows, reasons=reasons, progress=progress
            )
            engine_info = duckdb_info().as_dict()
            if features_output is not None:
                shutil.move(features, features_output)
        _write_rejects(rejected_rows, rejects_path)
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)
    result = BatchResult(
        request_id=request_id,
        input=str(input_uri),
        output=str(output),
        rejects=str(rejects_path),
        entities=entities,
        rejected=len(rejected_rows),
        duration_s=round(time.perf_counter() - started, 3),
        model_name=scorer.info.name,
        model_version=scorer.info.version,
        tables=rows,
        engine=engine_info,
    )
    logger.info(json.dumps({"event": "batch_scored", **result.as_dict()}))
    return result
