"""Run the feature SQL in DuckDB: the one entry point for training, batch scoring and the API.

The SQL files in ``sql/`` are the only definition of a feature (ARCHITECTURE.md, principle 1).
Every caller goes through the same three steps on a DuckDB connection:

1. bind the seven input relations (``application``, ``bureau``, …, ``pos_cash_balance``), either
   over bronze Parquet files (:func:`bind_parquet_sources`) or over in-memory tables
   (:func:`bind_memory_sources`), always conformed to the canonical columns and types of
   :mod:`creditrisk.data.tables`;
2. register each feature group as the view ``<file>_features`` and the joined result as the view
   ``feature_store`` (:func:`register_feature_views`);
3. read ``feature_store``.

Binding replaces only the input relations, so a long-lived connection (the REST service) can
register the views once and re-bind the per-request tables before each query.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from creditrisk.data.tables import (
    APPLICATION_TABLES,
    ARROW_TYPES,
    ColumnSpec,
    TableSpec,
    empty_table,
    tables,
)
from creditrisk.features.catalog import (
    COLUMNS,
    FEATURES,
    GROUPS,
    ID_COLUMN,
    SQL_DIR,
    TARGET_COLUMN,
    sql_hash,
)
from creditrisk.io import atomic_path

#: Name of the view holding the joined feature store.
FEATURE_STORE_VIEW = "feature_store"

#: Name of the applicants relation the SQL reads: application_train UNION ALL application_test.
APPLICATION_VIEW = "application"

#: Parquet key-value metadata of a store another engine wrote: ``creditrisk.engine`` = ``spark``,
#: ``creditrisk.spark_version``, ``creditrisk.spark_master``. DuckDB's store carries none.
ENGINE_METADATA_PREFIX = "creditrisk."


@dataclass(frozen=True)
class FeatureStoreSummary:
    """What :func:`build_feature_store` wrote.

    Attributes:
        output: Path of the feature store Parquet file.
        rows: Number of applicants (rows).
        n_labelled: Applicants with a TARGET (application_train rows).
        n_features: Model input columns (all columns except SK_ID_CURR and TARGET).
        columns: Every column written, in order.
        seconds: Wall time of the build.
        sql_hash: SHA-256 of the feature SQL that produced the file.
        bytes: Size of the file on disk.
    """

    output: Path
    rows: int
    n_labelled: int
    n_features: int
    columns: tuple[str, ...]
    seconds: float
    sql_hash: str
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (path as string, columns as a list)."""
        out = asdict(self)
        out["output"] = str(self.output)
        out["columns"] = list(self.columns)
        return out


@dataclass(frozen=True)
class EngineInfo:
    """Which engine computed something, as records and MLflow runs name it.

    Attributes:
        engine: ``duckdb`` or ``spark``.
        version: The engine's version (DuckDB's or Spark's).
        master: Where Spark ran (``local[2]``, ``spark://…``, ``sc://…``); None for DuckDB.
    """

    engine: str
    version: str
    master: str | None = None

    def as_dict(self) -> dict[str, str]:
        """``{"engine": "spark", "spark_version": "4.3.0", "spark_master": "local[*]"}``, or
        ``{"engine": "duckdb", "duckdb_version": "1.4.2"}``."""
        out = {"engine": self.engine, f"{self.engine}_version": self.version}
        if self.master is not None:
            out[f"{self.engine}_master"] = self.master
        return out


def duckdb_info() -> EngineInfo:
    """This process's DuckDB, as a record names it."""
    return EngineInfo("duckdb", duckdb.__version__)


# --------------------------------------------------------------------------------------------
# The SQL


def group_view(group: str) -> str:
    """Name of the view that holds one feature group, e.g. ``bureau_features``."""
    return f"{group}_features"


def feature_sql(name: str, sql_dir: Path = SQL_DIR) -> str:
    """The text of one SQL file (``application``, …, ``feature_store``), without trailing blanks."""
    return (sql_dir / f"{name}.sql").read_text(encoding="utf-8").strip().removesuffix(";")


def feature_query(sql_dir: Path = SQL_DIR) -> str:
    """The whole feature store as one self-contained SELECT, composed from the SQL files.

    Each group file becomes a CTE named like its view (``bureau_features``) and
    ``feature_store.sql`` the final query. It reads only the seven input relations, so another
    engine (e.g. Spark SQL, after registering those relations) can run it as is.
    """
    groups = ",\n".join(
        f"{group_view(group)} as (\n{feature_sql(group, sql_dir)}\n)" for group in GROUPS
    )
    store = feature_sql(FEATURE_STORE_VIEW, sql_dir)
    return f"with\n{groups}\nselect * from (\n{store}\n) as {FEATURE_STORE_VIEW}\n"


def register_feature_views(connection: duckdb.DuckDBPyConnection, sql_dir: Path = SQL_DIR) -> None:
    """Create (or replace) the views ``<group>_features`` and ``feature_store``.

    The input relations must be bound first: DuckDB checks a view when it is created. Views are
    temporary (they live with the connection) and read the inputs at query time, so re-binding
    an input does not require registering them again.
    """
    views = [(group_view(group), group) for group in GROUPS]
    views.append((FEATURE_STORE_VIEW, FEATURE_STORE_VIEW))
    for view, file_stem in views:
        # DDL around our own SQL files; no value is pasted into SQL here.
        connection.execute(
            f"create or replace temp view {view} as\n{feature_sql(file_stem, sql_dir)}"
        )


def _feature_views_registered(connection: duckdb.DuckDBPyConnection) -> bool:
    # fetchall, not fetchone: DuckDB 2 refuses new work while a result is unfinished.
    ((found,),) = connection.execute(
        "select count(*) from duckdb_views() where temporary and view_name = ?",
        [FEATURE_STORE_VIEW],
    ).fetchall()
    return bool(found)


# --------------------------------------------------------------------------------------------
# Inputs


def _conform(
    relation: duckdb.DuckDBPyRelation,
    columns: tuple[ColumnSpec, ...],
    ignore: frozenset[str] = frozenset(),
) -> duckdb.DuckDBPyRelation:
    """Project ``relation`` onto the canonical columns: cast to the canonical type, NULL if absent.

    Extra columns are dropped, and so are the ``ignore`` ones (they become NULL). Expressions are
    built with DuckDB's expression API, so no name or value is pasted into SQL text.
    """
    present = set(relation.columns) - ignore
    expressions = []
    for column in columns:
        source = (
            duckdb.ColumnExpression(column.name)
            if column.name in present
            else duckdb.ConstantExpression(None)
        )
        expressions.append(source.cast(duckdb.sqltype(column.duckdb_type)).alias(column.name))
    return relation.select(*expressions)


def applicant_columns(stem: str) -> tuple[tuple[ColumnSpec, ...], frozenset[str]]:
    """Canonical columns for applicants of one source, and the source columns to ignore.

    Applicants of every source take the application_train columns so they can be stacked into
    ``application``; application_test rows are unlabelled by definition, so a TARGET column in
    them is ignored (NULL).
    """
    ignore = frozenset({TARGET_COLUMN}) if stem == "application_test" else frozenset()
    return tables()["application_train"].columns, ignore


def history_specs() -> dict[str, TableSpec]:
    """The six history tables by the relation name the SQL reads (``pos_cash_balance``, …)."""
    return {spec.view: spec for spec in tables().values() if spec.name not in APPLICATION_TABLES}


def bind_parquet_sources(
    connection: duckdb.DuckDBPyConnection, bronze_dir: Path | str
) -> dict[str, Path | None]:
    """Bind the seven input relations over ``<bronze_dir>/<Kaggle stem>.parquet``.

    DuckDB scans the files lazily when the features are queried (no pandas, nothing loaded
    here). A missing file binds an empty relation with the canonical columns; columns missing
    from a file are NULL, extra ones are ignored, and every column is cast to its canonical type.

    Returns:
        Kaggle stem -> the file bound, or None when it was missing.
    """
    bronze_dir = Path(bronze_dir)
    bound: dict[str, Path | None] = {}
    relations: dict[str, duckdb.DuckDBPyRelation] = {}
    for stem, spec in tables().items():
        path = bronze_dir / f"{stem}.parquet"
        bound[stem] = path if path.is_file() else None
        # The path is handed to DuckDB as an argument, never spliced into SQL text.
        raw = (
            connection.read_parquet(str(path))
            if path.is_file()
            else connection.from_arrow(empty_table(spec.columns))
        )
        if stem in APPLICATION_TABLES:
            relations[stem] = _conform(raw, *applicant_columns(stem))
        else:
            relations[spec.view] = _conform(raw, spec.columns)
    train, test = (relations.pop(stem) for stem in ("application_train", "application_test"))
    connection.register(APPLICATION_VIEW, train.union(test))  # UNION ALL
    for view, relation in relations.items():
        connection.register(view, relation)
    return bound


def _to_arrow(name: str, data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    import pandas as pd  # only to recognise a DataFrame; the engine works on Arrow

    if isinstance(data, pd.DataFrame):
        try:
            # from_pandas turns NaN in float columns into NULL, as SQL expects
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"table {name!r} cannot be converted to Arrow: {exc}") from exc
    raise TypeError(
        f"table {name!r}: expected a pandas DataFrame or a pyarrow Table, got {type(data).__name__}"
    )


def _relation_of(name: str) -> str:
    """Map a caller's table key (Kaggle stem or relation name) to where its rows go."""
    if name in (*APPLICATION_TABLES, APPLICATION_VIEW):
        return name
    for view, spec in history_specs().items():
        if name in (view, spec.name):
            return view
    raise ValueError(f"unknown table {name!r}; expected one of {[APPLICATION_VIEW, *tables()]}")


def _applicant_ids(name: str, table: pa.Table) -> pa.Array:
    if ID_COLUMN not in table.column_names:
        raise ValueError(f"table {name!r} has no {ID_COLUMN} column")
    try:
        return pc.cast(table.column(ID_COLUMN), pa.int64()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"table {name!r}: {ID_COLUMN} is not an integer id") from exc


@dataclass(frozen=True)
class MemoryInputs:
    """In-memory tables sorted to the input relation their rows go to (see :func:`gather_inputs`).

    Attributes:
        ids: SK_ID_CURR of the applicants in input order.
        applicants: ``(Kaggle stem or "application", table)`` in the order of ``ids``.
        histories: Relation name (``bureau``, …, ``pos_cash_balance``) -> its tables.
    """

    ids: pa.Array
    applicants: tuple[tuple[str, pa.Table], ...]
    histories: Mapping[str, tuple[pa.Table, ...]]


def gather_inputs(
    tables_by_name: Mapping[str, Any] | Iterable[tuple[str, Any]],
) -> MemoryInputs:
    """Sort caller tables to the seven input relations and check the applicants' keys.

    Keys are Kaggle stems (``application_train``, ``application_test``, ``bureau``, …,
    ``POS_CASH_balance``) or ``application`` for applicants of either kind; the lowercase relation
    names (``pos_cash_balance``) are accepted too. ``(name, table)`` pairs may repeat a name (the
    requests of one micro-batch).

    Raises:
        ValueError: On an unknown table name, or applicants with a NULL or duplicate SK_ID_CURR.
    """
    items = tables_by_name.items() if isinstance(tables_by_name, Mapping) else tables_by_name
    by_relation: dict[str, list[tuple[str, pa.Table]]] = {}
    for name, data in items:
        by_relation.setdefault(_relation_of(name), []).append((name, _to_arrow(name, data)))
    applicants = [
        (stem, name, table)
        for stem in (APPLICATION_VIEW, *APPLICATION_TABLES)
        for name, table in by_relation.pop(stem, [])
    ]
    ids = (
        pa.concat_arrays([_applicant_ids(name, table) for _, name, table in applicants])
        if applicants
        else pa.array([], pa.int64())
    )
    if ids.null_count:
        raise ValueError(f"{ids.null_count} applicant row(s) have no {ID_COLUMN}")
    if len(pc.unique(ids)) != len(ids):
        raise ValueError(f"applicants must have distinct {ID_COLUMN} values")
    return MemoryInputs(
        ids=ids,
        applicants=tuple((stem, table) for stem, _, table in applicants),
        histories={
            view: tuple(table for _, table in by_relation.get(view, [])) for view in history_specs()
        },
    )


def bind_memory_sources(
    connection: duckdb.DuckDBPyConnection,
    tables_by_name: Mapping[str, Any],
) -> pa.Array:
    """Bind the seven input relations over in-memory tables (pandas DataFrames or Arrow tables).

    Table names as in :func:`gather_inputs`. Absent tables bind empty, absent columns are NULL,
    extra columns are ignored and every column is cast to its canonical type. Every input
    relation is re-bound, so nothing of an earlier call on the same connection remains.

    Returns:
        SK_ID_CURR of the applicants in input order: ``application``, then ``application_train``,
        then ``application_test``.

    Raises:
        ValueError: On an unknown table name, or applicants with a NULL or duplicate SK_ID_CURR.
    """
    # Check the keys before binding anything: a rejected request leaves no half-bound state.
    inputs = gather_inputs(tables_by_name)
    columns, _ = applicant_columns(APPLICATION_VIEW)
    applicants = connection.from_arrow(empty_table(columns))
    for stem, table in inputs.applicants:
        applicants = applicants.union(
            _conform(connection.from_arrow(table), *applicant_columns(stem))
        )
    connection.register(APPLICATION_VIEW, applicants)

    for view, spec in history_specs().items():
        relation = connection.from_arrow(empty_table(spec.columns))
        for table in inputs.histories[view]:
            relation = relation.union(_conform(connection.from_arrow(table), spec.columns))
        connection.register(view, relation)
    return inputs.ids


# --------------------------------------------------------------------------------------------
# Entry points


def _check_columns(relation: duckdb.DuckDBPyRelation) -> None:
    types = (str(t) for t in relation.types)
    check_feature_columns(list(zip(relation.columns, types, strict=True)))


def check_feature_columns(emitted: list[tuple[str, str]]) -> None:
    """Fail loudly unless the SQL emits exactly the catalog's columns and (DuckDB) types, in
    order: ``emitted`` is the query's ``(name, type)`` pairs, as another engine maps them too."""
    declared = [(c.name, c.dtype) for c in COLUMNS]
    if emitted != declared:
        raise RuntimeError(
            "the feature SQL and the catalog disagree: "
            f"only in SQL {sorted(set(emitted) - set(declared))}, "
            f"only in catalog {sorted(set(declared) - set(emitted))} (or the order differs)"
        )


def _configure(
    connection: duckdb.DuckDBPyConnection, threads: int | None, memory_limit: str | None
) -> None:
    if threads is not None:
        connection.execute("set threads = ?", [threads])
    if memory_limit is not None:
        connection.execute("set memory_limit = ?", [memory_limit])


def build_feature_store(
    bronze_dir: Path | str,
    output: Path | str,
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> FeatureStoreSummary:
    """Compute the feature store over the bronze Parquet files and write it as Parquet.

    DuckDB reads the files directly and streams the result into a temporary file beside
    ``output``, which is then renamed over it (a reader never sees half a file). Rows are ordered
    by SK_ID_CURR, so the row order is reproducible; with several threads a mean may still differ
    in its last bit between runs, as DuckDB adds partial sums in whatever order threads finish.

    Args:
        bronze_dir: Folder with ``<Kaggle stem>.parquet`` files; a missing file counts as empty.
        output: Destination Parquet file.
        connection: DuckDB connection to use (its input relations and feature views are
            replaced, and ``threads``/``memory_limit`` are set on it); a private in-memory one by
            default, closed afterwards.
        threads: DuckDB worker threads (default: DuckDB's, the number of cores).
        memory_limit: DuckDB memory limit such as ``"1.5GB"`` (default: DuckDB's, 80% of RAM);
            DuckDB spills to disk beyond it.

    Returns:
        What was written.
    """
    started = time.perf_counter()
    output = Path(output)
    own_connection = connection is None
    con = duckdb.connect() if connection is None else connection
    try:
        if own_connection:
            # Row order is fixed by the ORDER BY below; elsewhere DuckDB may reorder freely,
            # which lets it stream and aggregate in parallel with less memory.
            con.execute("set preserve_insertion_order = false")
        _configure(con, threads, memory_limit)
        bind_parquet_sources(con, bronze_dir)
        register_feature_views(con)
        _check_columns(con.sql("select * from feature_store"))
        with atomic_path(output) as tmp:
            con.execute(
                "copy (select * from feature_store order by SK_ID_CURR) "
                "to ? (format parquet, compression zstd)",
                [str(tmp)],
            )
        ((rows, labelled),) = con.execute(
            "select count(*), count(TARGET) from read_parquet(?)", [str(output)]
        ).fetchall()
    finally:
        if own_connection:
            con.close()
    return FeatureStoreSummary(
        output=output,
        rows=int(rows),
        n_labelled=int(labelled),
        n_features=len(FEATURES),
        columns=tuple(c.name for c in COLUMNS),
        seconds=round(time.perf_counter() - started, 3),
        sql_hash=sql_hash(),
        bytes=output.stat().st_size,
    )


def compute_features(
    tables_by_name: Mapping[str, Any],
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Compute the feature store for in-memory tables, e.g. the rows of one scoring request.

    Runs the same SQL as :func:`build_feature_store`. Absent tables and columns are NULL, extra
    columns are ignored, wrong-typed columns are cast to the canonical type.

    Args:
        tables_by_name: Kaggle stem (``application_train``, ``application_test``, ``bureau``, …,
            ``POS_CASH_balance``, or ``application`` for applicants of either kind) -> pandas
            DataFrame or pyarrow Table.
        connection: DuckDB connection to reuse (a long-lived one avoids setup per call): its
            input relations are re-bound on every call, the feature views are registered on
            the first. A private in-memory one by default.

    Returns:
        Exactly the feature-store columns, one row per applicant, in the applicants' input order.

    Raises:
        ValueError: On an unknown table name, applicants with a NULL or duplicate SK_ID_CURR, or
            a value that cannot be cast to its canonical type.
    """
    own_connection = connection is None
    con = duckdb.connect() if connection is None else connection
    try:
        ids = bind_memory_sources(con, tables_by_name)
        # A long-lived connection keeps its views: only the input relations change per call.
        if not _feature_views_registered(con):
            register_feature_views(con)
        try:
            result = con.sql("select * from feature_store").to_arrow_table()
        except duckdb.ConversionException as exc:
            raise ValueError(f"an input value does not fit its canonical type: {exc}") from exc
    finally:
        if own_connection:
            con.close()
    return in_input_order(result, ids)


@cache
def output_schema() -> pa.Schema:
    """The Arrow schema of a feature-store row: the catalog's columns and types, in order."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.dtype]) for c in COLUMNS])


def in_input_order(result: pa.Table, ids: pa.Array) -> pa.Table:
    """Feature rows in the order of ``ids``, with the catalog's Arrow types.

    DuckDB does not promise the input order through joins and aggregates: it is restored by key.
    """
    positions = pc.index_in(ids, value_set=result.column(ID_COLUMN))
    return result.take(positions).cast(output_schema())


def store_engine(path: Path | str) -> dict[str, str]:
    """Which engine wrote a feature store: ``{"engine": "spark", "spark_version": …, …}`` from
    the file's metadata, or ``{"engine": "duckdb"}`` for a store DuckDB wrote."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    found = {
        key.decode().removeprefix(ENGINE_METADATA_PREFIX): value.decode()
        for key, value in metadata.items()
        if key.decode().startswith(ENGINE_METADATA_PREFIX)
    }
    return found or {"engine": "duckdb"}
