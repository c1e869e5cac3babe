"""Ingest a snapshot of the Home Credit tables into typed Parquet ("bronze").

For each table of the source: checksums of the file as delivered (SHA-256, MD5, bytes), an
optional comparison with expected checksums, a typed CSV → Parquet conversion in DuckDB (bad
rows are collected with their line numbers, not guessed around), the table's Pandera contract,
then referential-integrity shares in DuckDB SQL. Every table lands in bronze with the canonical
Kaggle columns and types; a table the source lacks, or delivers header-only, is written empty,
so every later stage sees the same eight relations. The new bronze directory is swapped in
only when every table passed, so a failed ingest leaves the previous snapshot untouched.

The ingest stage (:mod:`creditrisk.stages.ingest`) chooses the source and where bronze and the
summary go; this module only reads the source it is given and writes the bronze it is given.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from creditrisk.data import sources
from creditrisk.data.contracts import ContractReport, contract, validate_parquet
from creditrisk.data.tables import APPLICATION_TABLES, TableSpec, empty_table, tables
from creditrisk.io import replace_directory
from creditrisk.provenance import current_user

REJECT_EXAMPLES = 5


class IngestError(RuntimeError):
    """Bad input: the message names the table and, where it applies, the column and rule."""

    def __init__(
        self, table: str, message: str, *, column: str | None = None, rule: str | None = None
    ) -> None:
        self.table, self.column, self.rule = table, column, rule
        where = table + (f".{column}" if column else "")
        super().__init__(f"{where}: {message}" + (f" [rule: {rule}]" if rule else ""))


@dataclass
class TableResult:
    """What ingest learnt about one table."""

    table: str
    status: str  # ingested | empty | absent
    file: str | None = None
    uri: str | None = None
    checksums: sources.Checksums | None = None
    rows: int = 0
    columns_in_file: int = 0
    missing_columns: list[str] | None = None
    extra_columns: list[str] | None = None
    contract: ContractReport | None = None
    parquet_bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "file": self.file,
            "uri": self.uri,
            "bytes": self.checksums.bytes if self.checksums else None,
            "sha256": self.checksums.sha256 if self.checksums else None,
            "md5": self.checksums.md5 if self.checksums else None,
            "rows": self.rows,
            "columns_in_file": self.columns_in_file,
            "missing_columns": self.missing_columns or [],
            "extra_columns": self.extra_columns or [],
            "parquet": f"data/bronze/{self.table}.parquet",
            "parquet_bytes": self.parquet_bytes,
            "seconds": round(self.seconds, 3),
            "contract": self.contract.as_dict() if self.contract else None,
        }


# ---------------------------------------------------------------------------------------------
# One table
# ---------------------------------------------------------------------------------------------


def _select_list(spec: TableSpec, present: set[str]) -> str:
    """Canonical columns in canonical order; a column the file lacks becomes a typed NULL."""
    parts = []
    for col in spec.columns:
        quoted = f'"{col.name}"'
        parts.append(
            quoted if col.name in present else f"cast(null as {col.duckdb_type}) as {quoted}"
        )
    return ", ".join(parts)


@dataclass(frozen=True)
class CsvConversion:
    """A typed CSV → Parquet conversion: rows written and the lines DuckDB rejected."""

    rows: int
    rejected_lines: int
    #: One entry per rejected line (up to the limit): line, column, error_type, message.
    rejects: list[dict[str, Any]]


#: DuckDB's reject error types, as the contract rule names they stand for.
REJECT_RULES = {
    "CAST": "type",
    "MISSING COLUMNS": "truncated_row",
    "TOO MANY COLUMNS": "extra_fields",
    "UNQUOTED VALUE": "csv_quoting",
    "LINE SIZE OVER MAXIMUM": "line_size",
    "INVALID ENCODING": "encoding",
}


def convert_csv(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    csv_file: Path,
    header: list[str],
    out: Path,
    *,
    reject_limit: int = 1000,
) -> CsvConversion:
    """Typed CSV → Parquet with the canonical columns; rows that do not parse are set aside.

    Known columns are read with their canonical type, unknown ones as text and dropped, and a
    canonical column the file lacks becomes a typed NULL. A row with a value that does not fit
    its type (or a malformed line) is not written; it is reported instead.

    Args:
        reject_limit: Most rejected lines listed (0: all of them).

    Raises:
        IngestError: The file cannot be read as CSV at all.
    """
    canonical = spec.duckdb_types
    columns = {name: canonical.get(name, "VARCHAR") for name in header}
    rejects = f"rejects_{spec.name.lower()}"
    query = f"""
        copy (
            select {_select_list(spec, set(header))}
            from read_csv(
                $path, header = true, auto_detect = false, columns = $columns,
                delim = ',', quote = '"', escape = '"', nullstr = '',
                store_rejects = true, rejects_table = '{rejects}',
                rejects_scan = '{rejects}_scan', rejects_limit = {int(reject_limit)}
            )
        ) to $out (format parquet, compression zstd)
    """
    try:
        count = con.execute(
            query, {"path": str(csv_file), "columns": columns, "out": str(out)}
        ).fetchone()
    except duckdb.Error as exc:
        raise IngestError(spec.name, f"cannot read {csv_file.name}: {exc}", rule="csv") from exc
    # DuckDB may report one bad line several times (once per missing field): one per line.
    (n_bad,) = con.execute(f"select count(distinct line) from {rejects}").fetchone() or (0,)
    rows = con.execute(
        f"""
        select line, min(column_name), min(error_type), min(error_message)
        from {rejects} group by line order by line
        """
    ).fetchall()
    return CsvConversion(
        rows=int(count[0]) if count else 0,
        rejected_lines=int(n_bad),
        rejects=[
            {"line": int(line), "column": column, "error_type": kind, "message": message}
            for line, column, kind, message in rows
        ],
    )


def _csv_to_parquet(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, csv_file: Path, header: list[str], out: Path
) -> int:
    """Typed CSV → Parquet; returns the row count, or raises naming the first bad rows."""
    conversion = convert_csv(con, spec, csv_file, header, out)
    undecodable = [r["line"] for r in conversion.rejects if r["error_type"] == "INVALID ENCODING"]
    if undecodable:
        shown = ", ".join(str(line) for line in undecodable[:REJECT_EXAMPLES])
        raise IngestError(
            spec.name,
            f"{csv_file.name} is not UTF-8 (Latin-1 or Windows-1252 perhaps; save it as "
            f"UTF-8): line{'s' if len(undecodable) > 1 else ''} {shown}"
            + (
                f" and {len(undecodable) - REJECT_EXAMPLES} more"
                if len(undecodable) > REJECT_EXAMPLES
                else ""
            ),
            rule="encoding",
        )
    if conversion.rejected_lines:
        first = conversion.rejects[:REJECT_EXAMPLES]
        detail = "; ".join(f"line {r['line']}: {r['message']}" for r in first)
        error_type = first[0]["error_type"]
        raise IngestError(
            spec.name,
            f"{conversion.rejected_lines} bad row(s) in {csv_file.name} (first: {detail})",
            column=first[0]["column"] if error_type == "CAST" else None,
            rule=REJECT_RULES.get(error_type, error_type.lower()),
        )
    return conversion.rows


def _write_empty(spec: TableSpec, out: Path) -> None:
    pq.write_table(empty_table(spec.columns), out)


def _check_contract(
    spec: TableSpec, parquet: Path, con: duckdb.DuckDBPyConnection
) -> ContractReport:
    report = validate_parquet(spec.name, parquet, con)
    if report.errors:
        worst = report.errors[0]
        examples = ", ".join(
            f"row {ex.get('row')}: {ex.get('value')!r}" if "row" in ex else str(ex)
            for ex in worst.examples[:3]
        )
        others = len(report.errors) - 1
        raise IngestError(
            spec.name,
            f"{worst.failures} value(s) break the contract (e.g. {examples})"
            + (f"; {others} more rule(s) failed" if others else ""),
            column=worst.column,
            rule=worst.rule,
        )
    return report


def _ingest_table(
    spec: TableSpec,
    source_file: sources.SourceFile,
    local: Path,
    staging: Path,
    out: Path,
    con: duckdb.DuckDBPyConnection,
) -> TableResult:
    started = time.perf_counter()
    csv_file = sources.csv_path(source_file, local, staging)
    header = sources.read_header(csv_file, spec.name)
    required = contract(spec.name).required_columns
    missing_required = [c for c in required if c not in header]
    if missing_required:
        raise IngestError(
            spec.name,
            f"{source_file.name} lacks column(s) the pipeline uses: {missing_required}",
            column=missing_required[0],
            rule="required_column",
        )
    rows = _csv_to_parquet(con, spec, csv_file, header, out)
    report = _check_contract(spec, out, con)
    return TableResult(
        table=spec.name,
        status="ingested" if rows else "empty",
        file=source_file.name,
        uri=source_file.uri,
        rows=rows,
        columns_in_file=len(header),
        missing_columns=[c for c in spec.column_names if c not in header],
        extra_columns=[c for c in header if c not in spec.column_names],
        contract=report,
        parquet_bytes=out.stat().st_size,
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------------------------
# Cross-table checks
# ---------------------------------------------------------------------------------------------


def _relation(name: str, bronze: Path) -> str:
    if name == "application":
        files = [bronze / f"{t}.parquet" for t in APPLICATION_TABLES]
        return " union all ".join(f"select \"SK_ID_CURR\" from read_parquet('{f}')" for f in files)
    return f"select * from read_parquet('{bronze / f'{name}.parquet'}')"


def referential_integrity(con: duckdb.DuckDBPyConnection, bronze: Path) -> list[dict[str, Any]]:
    """Share of child rows whose key finds a parent, per foreign key (orphans are a warning)."""
    results = []
    for spec in tables().values():
        for fk in spec.foreign_keys:
            row = con.execute(
                f"""
                with parent as (
                    select distinct "{fk.parent_column}" as parent_key
                    from ({_relation(fk.parent_table, bronze)})
                ),
                child as (select "{fk.column}" as child_key from ({_relation(spec.name, bronze)}))
                select
                    count(*) as child_rows,
                    sum(case when parent.parent_key is not null then 1 else 0 end) as linked,
                    count(distinct case when parent.parent_key is null then child.child_key end)
                from child left join parent on child.child_key = parent.parent_key
                """
            ).fetchone()
            child_rows, linked, orphan_keys = row or (0, 0, 0)
            linked = int(linked or 0)
            share = linked / child_rows if child_rows else None
            results.append(
                {
                    "child": spec.name,
                    "column": fk.column,
                    "parent": fk.parent_table,
                    "parent_column": fk.parent_column,
                    "child_rows": int(child_rows),
                    "rows_with_parent": linked,
                    "share_with_parent": round(share, 6) if share is not None else None,
                    "orphan_keys": int(orphan_keys or 0),
                    "status": "ok" if not child_rows or linked == child_rows else "warning",
                }
            )
    return results


def _applicants_in_both(con: duckdb.DuckDBPyConnection, bronze: Path) -> int:
    row = con.execute(
        f"""
        select count(*) from read_parquet('{bronze / "application_train.parquet"}') as train
        join read_parquet('{bronze / "application_test.parquet"}') as test using ("SK_ID_CURR")
        """
    ).fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def _expected_matches(expected: str, checksums: sources.Checksums) -> bool:
    value = expected.strip().lower().removeprefix("sha256:").removeprefix("md5:")
    return value in (checksums.sha256, checksums.md5)


def _connection(threads: int | None, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if threads:
        con.execute(f"set threads = {int(threads)}")
    if memory_limit:
        con.execute("set memory_limit = $limit", {"limit": memory_limit})
    con.execute("set preserve_insertion_order = true")
    return con


def _ingest_one(
    spec: TableSpec,
    found: Mapping[str, sources.SourceFile],
    staged: Mapping[str, Future[tuple[Path, sources.Checksums]]],
    expected: Mapping[str, str],
    staging: Path,
    new_bronze: Path,
    con: duckdb.DuckDBPyConnection,
) -> TableResult:
    """One table into the new bronze, once its file has been checksummed and verified."""
    out = new_bronze / f"{spec.name}.parquet"
    if spec.name not in found:
        _write_empty(spec, out)
        return TableResult(spec.name, "absent")
    try:
        local, checksums = staged[spec.name].result()
        if spec.name in expected and not _expected_matches(expected[spec.name], checksums):
            raise IngestError(
                spec.name,
                f"checksum mismatch for {found[spec.name].name}: expected "
                f"{expected[spec.name]}, got sha256 {checksums.sha256} / md5 {checksums.md5}",
                rule="expected_checksum",
            )
        result = _ingest_table(spec, found[spec.name], local, staging, out, con)
    except sources.SourceError as exc:  # a damaged file, an unreadable header, a bad ZIP
        raise IngestError(exc.table or spec.name, exc.detail, rule=exc.rule or "source") from exc
    result.checksums = checksums
    return result


def ingest(
    uri: str,
    bronze: Path,
    *,
    work_dir: Path,
    expected_checksums: Mapping[str, str] | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
    echo: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Ingest a snapshot into ``bronze`` and return its ingestion summary.

    Args:
        uri: A directory or ``s3://bucket/prefix`` holding the Kaggle-named files.
        bronze: The bronze directory to replace (only when every table passed).
        work_dir: Where the new bronze and the staged files are assembled (on the same file
            system as ``bronze``, so the swap is a rename); removed afterwards.
        expected_checksums: table → SHA-256 or MD5 hex of the file as delivered; a mismatch
            fails the stage naming the table.
        threads: DuckDB threads (default: all cores).
        memory_limit: DuckDB memory limit, e.g. ``"4GB"``.
        echo: where progress lines go.

    Returns:
        The ingestion summary (the caller writes it beside the data).

    Raises:
        IngestError: bad input; the message names the table, column and rule.
    """
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    try:
        found, unrecognised = sources.discover(uri)
    except sources.SourceError as exc:
        raise IngestError("source", str(exc)) from exc
    expected = {k: v for k, v in (expected_checksums or {}).items() if v}
    unknown_expected = sorted(set(expected) - set(tables()))
    if unknown_expected:
        raise IngestError("source", f"expected checksums name unknown tables {unknown_expected}")
    for spec in tables().values():
        if spec.required and spec.name not in found:
            raise IngestError(
                spec.name,
                f"missing file: no {spec.file_name} (or .csv.gz/.zip) in {uri}",
                rule="required_table",
            )

    work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ingest-", dir=work_dir))
    new_bronze, staging = work / "bronze", work / "staging"
    new_bronze.mkdir()
    con = _connection(threads, memory_limit)
    results: dict[str, TableResult] = {}
    try:
        # Checksums and gzip verification run in threads (hashlib and zlib release the GIL)
        # while DuckDB converts; a table is converted only once its file has been verified.
        with ThreadPoolExecutor(max_workers=2) as pool:
            staged: dict[str, Future[tuple[Path, sources.Checksums]]] = {
                name: pool.submit(sources.stage, f, staging) for name, f in found.items()
            }
            try:
                for spec in tables().values():
                    result = _ingest_one(spec, found, staged, expected, staging, new_bronze, con)
                    results[spec.name] = result
                    if result.status != "absent":
                        echo(
                            f"  {spec.name:<22} {result.rows:>12,} rows  "
                            f"{result.checksums.bytes / 1e6:>9.1f} MB  "
                            f"contract {result.contract.status}"
                            if result.contract and result.checksums
                            else f"  {spec.name}"
                        )
            except BaseException:
                for future in staged.values():  # files not read yet need not be: it failed
                    future.cancel()
                raise
        if results["application_train"].rows == 0:
            raise IngestError("application_train", "has no rows (header only)", rule="non_empty")
        overlap = _applicants_in_both(con, new_bronze)
        if overlap:
            raise IngestError(
                "application_test",
                f"{overlap} SK_ID_CURR value(s) also appear in application_train",
                column="SK_ID_CURR",
                rule="disjoint_applicants",
            )
        integrity = referential_integrity(con, new_bronze)
        replace_directory(new_bronze, bronze)
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)

    return _summary(uri, results, integrity, unrecognised, started_at, clock)


def _summary(
    uri: str,
    results: dict[str, TableResult],
    integrity: list[dict[str, Any]],
    unrecognised: list[str],
    started_at: datetime,
    clock: float,
) -> dict[str, Any]:
    from creditrisk.data import synthetic

    warnings: list[str] = []
    for r in results.values():
        if r.status == "absent":
            warnings.append(f"{r.table}: absent from the source (ingested as an empty table)")
        elif r.status == "empty":
            warnings.append(f"{r.table}: header only, no rows")
        if r.missing_columns:
            warnings.append(
                f"{r.table}: {len(r.missing_columns)} unused column(s) absent, kept as NULL: "
                f"{r.missing_columns[:10]}{' …' if len(r.missing_columns) > 10 else ''}"
            )
        if r.extra_columns:
            warnings.append(f"{r.table}: extra column(s) ignored: {r.extra_columns}")
        for rule in r.contract.warnings if r.contract else []:
            warnings.append(
                f"{r.table}.{rule.column}: {rule.failures} value(s) break {rule.rule} "
                f"(e.g. {[ex.get('value', ex) for ex in rule.examples[:3]]})"
            )
    for link in integrity:
        if link["status"] == "warning":
            warnings.append(
                f"{link['child']}.{link['column']}: {link['orphan_keys']} key(s) without a "
                f"parent in {link['parent']} ({1 - link['share_with_parent']:.2%} of rows)"
            )
    if unrecognised:
        warnings.append(f"source: files that are not Home Credit tables ignored: {unrecognised}")

    snapshot = hashlib.sha256(
        "".join(
            f"{name}:{r.checksums.sha256 if r.checksums else 'absent'}\n"
            for name, r in sorted(results.items())
        ).encode()
    ).hexdigest()
    marker = synthetic.read_marker(uri) if not sources.is_s3(uri) else None
    return {
        "snapshot_id": snapshot,
        "source": {
            "uri": uri,
            "kind": "s3" if sources.is_s3(uri) else "local",
            "synthetic": marker,
        },
        "ingested_at": started_at.isoformat(timespec="seconds"),
        "ingested_by": current_user(),
        "duration_seconds": round(time.perf_counter() - clock, 3),
        "status": "warning" if warnings else "passed",
        "contracts_passed": all(
            r.contract is None or not r.contract.errors for r in results.values()
        ),
        "tables": {name: r.as_dict() for name, r in results.items()},
        "missing_tables": [n for n, r in results.items() if r.status == "absent"],
        "empty_tables": [n for n, r in results.items() if r.status == "empty"],
        "unrecognised_files": unrecognised,
        "referential_integrity": integrity,
        "warnings": warnings,
    }
