"""Online features: the feature SQL planned once per connection, for a few applicants at a time.

:func:`~creditrisk.features.engine.compute_features` binds the request's rows as relations and
queries the ``feature_store`` view. In DuckDB that costs ~60–120 ms of binding and optimizing per
call for ~5 ms of execution: any statement that reads a catalog relation is planned again on
every execution. Here the composed :func:`~creditrisk.features.engine.feature_query` (the same SQL
files, unchanged) reads its seven input relations from CTEs over seven JSON parameters, and is
``PREPARE``\\d once per connection. A statement that reads no catalog relation keeps its plan, so a
call pays JSON encoding and execution only (~20–30 ms for one applicant with a typical history,
~5 ms per applicant in a batch of 8). Measurements: ``bench/studies/online_features.md``.

The request's rows travel as one bound parameter (``SET VARIABLE … = ?``); no value is ever spliced
into SQL text. Results are bit-identical to :func:`compute_features` on a one-thread connection,
which is why :class:`OnlineFeatures` sets ``threads = 1``: with more threads DuckDB partitions its
hash aggregates differently and an average of averages may differ in its last bit.

:meth:`OnlineFeatures.compute_many` runs several requests in one execution; each request's rows
are the same as computed alone, provided no two requests share an SK_ID_CURR or an SK_ID_BUREAU
(``bureau_balance`` reaches an applicant only through its credit id). :func:`request_keys` gives
what a batcher needs to keep clashing requests apart.
"""

from __future__ import annotations

import contextlib
import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

import duckdb
import pyarrow as pa

from creditrisk.data.tables import ColumnSpec, arrow_schema
from creditrisk.features.engine import (
    APPLICATION_VIEW,
    MemoryInputs,
    _conform,
    applicant_columns,
    feature_query,
    gather_inputs,
    history_specs,
    in_input_order,
    output_schema,
)

#: Name of the prepared statement and of the session variable holding a request's JSON.
STATEMENT = "creditrisk_features"
VARIABLE = "creditrisk_request"

_BUREAU_KEY = "SK_ID_BUREAU"


@cache
def _inputs() -> tuple[tuple[str, tuple[ColumnSpec, ...]], ...]:
    """The seven input relations in parameter order ($1 … $7) with their canonical columns."""
    applicants, _ = applicant_columns(APPLICATION_VIEW)
    return (
        (APPLICATION_VIEW, applicants),
        *((view, spec.columns) for view, spec in history_specs().items()),
    )


def _input_cte(view: str, columns: tuple[ColumnSpec, ...], parameter: int) -> str:
    """One input relation as a CTE over a JSON text ``{"column": [values…], …}``."""
    structure = json.dumps({c.name: f"{c.duckdb_type}[]" for c in columns})
    unnests = ", ".join(f'unnest(j."{c.name}") as "{c.name}"' for c in columns)
    return (
        f"{view} as (\nselect {unnests}\n"
        f"from (select json_transform(${parameter}::varchar, '{structure}') as j)\n)"
    )


def online_query() -> str:
    """:func:`feature_query` with its seven input relations read from parameters $1 … $7."""
    composed = feature_query()
    if not composed.startswith("with\n"):
        raise RuntimeError("feature_query() is expected to open with its CTEs")
    inputs = ",\n".join(
        _input_cte(view, columns, n) for n, (view, columns) in enumerate(_inputs(), start=1)
    )
    return f"with\n{inputs},\n{composed.removeprefix('with')}"


_EXECUTE = (
    f"execute {STATEMENT}("
    + ", ".join(f"getvariable('{VARIABLE}')[{n}]" for n in range(1, len(_inputs()) + 1))
    + ")"
)


def _encode(table: pa.Table) -> str:
    # json.dumps: shortest round-trip float repr and NaN/Infinity kept (DuckDB's JSON reader
    # takes them); msgspec and orjson are faster but write NaN as null.
    return json.dumps(table.to_pydict(), separators=(",", ":"))


@dataclass(frozen=True)
class RequestKeys:
    """The keys that decide whether two requests may share one execution."""

    applicants: frozenset[int]
    bureau_credits: frozenset[int]

    def clashes(self, other: RequestKeys) -> bool:
        return bool(
            self.applicants & other.applicants or self.bureau_credits & other.bureau_credits
        )

    def __or__(self, other: RequestKeys) -> RequestKeys:
        return RequestKeys(
            self.applicants | other.applicants, self.bureau_credits | other.bureau_credits
        )


def request_keys(tables_by_name: Mapping[str, Any]) -> RequestKeys:
    """SK_ID_CURR of a request's applicants and the SK_ID_BUREAU its credit history mentions.

    Raises:
        ValueError: As :func:`~creditrisk.features.engine.gather_inputs` does.
    """
    return _keys_of(gather_inputs(tables_by_name))


def _keys_of(inputs: MemoryInputs) -> RequestKeys:
    credits: set[int] = set()
    for view in ("bureau", "bureau_balance"):
        for table in inputs.histories[view]:
            if _BUREAU_KEY in table.column_names:
                credits.update(v for v in table.column(_BUREAU_KEY).to_pylist() if v is not None)
    return RequestKeys(frozenset(inputs.ids.to_pylist()), frozenset(credits))


def _empty_inputs() -> list[str]:
    """The seven inputs without rows, as JSON texts (a statement's self-check)."""
    return [_encode(arrow_schema(columns).empty_table()) for _, columns in _inputs()]


class _Statement:
    """The feature statement prepared on a one-thread DuckDB connection of this process."""

    def __init__(self, connection: duckdb.DuckDBPyConnection | None = None) -> None:
        self._connection = connection if connection is not None else duckdb.connect()
        self._connection.execute("set threads = 1")
        # DDL over our own SQL files; no request value is in it.
        self._connection.execute(f"prepare {STATEMENT} as\n{online_query()}")
        check = self.execute(_empty_inputs())
        if check.schema != output_schema():
            raise RuntimeError(
                f"the prepared feature statement and the catalog disagree: {check.schema}"
            )

    def execute(self, texts: list[str]) -> pa.Table:
        """The statement over the seven inputs as JSON texts; its rows in DuckDB's order."""
        with warnings.catch_warnings():
            # The DB-API Arrow path warns about an extra copy: one row per applicant, it is free.
            warnings.simplefilter("ignore", UserWarning)
            try:
                self._connection.execute(f"set variable {VARIABLE} = ?", [texts])
                return self._connection.execute(_EXECUTE).to_arrow_table()
            except duckdb.ConversionException as exc:
                raise ValueError(f"an input value does not fit its canonical type: {exc}") from exc
            finally:
                # Do not keep a request's rows in the session after it is done.
                self._connection.execute(f"reset variable {VARIABLE}")

    def close(self) -> None:
        self._connection.close()


def _to_ipc(table: pa.Table) -> pa.Buffer:
    # Arrow IPC: ~0.2 ms both ways for a batch, where pickling a Table takes ~2 ms.
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _feature_process(connection: Connection) -> None:
    """The child's loop: JSON texts in, the statement's rows (or what went wrong) out."""
    try:
        statement = _Statement()
    except Exception as exc:
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", None))
    try:
        while True:
            try:
                texts = connection.recv()
            except (EOFError, OSError):  # the parent has gone
                return
            if texts is None:
                return
            try:
                reply: tuple[str, Any] = ("ok", _to_ipc(statement.execute(texts)))
            except ValueError as exc:
                reply = ("value_error", str(exc))
            except Exception as exc:  # reported to the parent, which raises it
                reply = ("error", f"{type(exc).__name__}: {exc}")
            connection.send(reply)
    finally:
        statement.close()


class FeatureProcessError(RuntimeError):
    """The feature process is not available: it died and a new one could not be started."""


class FeatureProcessRestarted(FeatureProcessError):
    """The feature process died during the execution; a new one is ready: run it again."""


class _ProcessStatement:
    """The feature statement prepared in a child process, which has a GIL of its own.

    DuckDB releases the GIL while it executes but takes it back dozens of times per execution
    (to check for interrupts). Next to a busy Python thread each take waits up to the switch
    interval: one execution took 15–20x longer in a test with one spinning thread. In a child
    nothing competes, and it runs on another core. Executions go one at a time over a pipe (the
    rows as JSON texts one way, an Arrow table back). A child that dies (e.g. killed for memory)
    is replaced at once and the execution in flight raises :class:`FeatureProcessRestarted`
    (the caller may run it again); when no new child starts, :class:`FeatureProcessError`, and
    the next execution tries again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        # spawn, not fork: the parent runs threads (DuckDB's, the server's) that fork would copy.
        context = get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=_feature_process, args=(child,), name="creditrisk-features", daemon=True
        )
        process.start()
        child.close()
        self._connection, self._process = parent, process
        try:
            status, message = parent.recv()
        except EOFError as exc:
            raise RuntimeError("the feature process exited while starting") from exc
        if status != "ready":
            raise RuntimeError(f"the feature process cannot prepare the statement: {message}")

    def execute(self, texts: list[str]) -> pa.Table:
        with self._lock:
            try:
                self._connection.send(texts)
                status, payload = self._connection.recv()
            except (EOFError, OSError) as exc:
                self._stop()
                try:
                    self._start()
                except Exception as failed:
                    raise FeatureProcessError(
                        f"the feature process stopped and no new one started: {failed}"
                    ) from exc
                raise FeatureProcessRestarted(
                    "the feature process stopped; a new one was started"
                ) from exc
        if status == "value_error":
            raise ValueError(payload)
        if status != "ok":
            raise RuntimeError(f"the feature process failed: {payload}")
        return pa.ipc.open_stream(payload).read_all()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _stop(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.send(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()

    def close(self) -> None:
        with self._lock:
            self._stop()


class OnlineFeatures:
    """The feature statement, prepared once, for requests of a few applicants.

    Args:
        connection: The connection to prepare the statement on (its ``threads`` is set to 1); a
            private in-memory one by default. Preparing takes ~0.1–0.3 s. Such an instance is
            not thread-safe: a prepared statement belongs to its connection.
        separate_process: Prepare and execute the statement in a child process instead (no
            ``connection`` then). The instance is thread-safe; executions run one at a time in
            the child. This is what a multi-threaded server wants (see :class:`_ProcessStatement`).
    """

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection | None = None,
        *,
        separate_process: bool = False,
    ) -> None:
        if separate_process and connection is not None:
            raise ValueError("a separate process prepares its own connection")
        self._statement: _Statement | _ProcessStatement = (
            _ProcessStatement() if separate_process else _Statement(connection)
        )
        self._targets = {view: arrow_schema(columns) for view, columns in _inputs()}

    @property
    def process_id(self) -> int | None:
        """The feature process's id (None when the statement runs in this process)."""
        if isinstance(self._statement, _ProcessStatement):
            return self._statement.pid
        return None

    def close(self) -> None:
        self._statement.close()

    def compute(self, tables_by_name: Mapping[str, Any]) -> pa.Table:
        """Same inputs, output and errors as :func:`compute_features`."""
        return self.compute_many([tables_by_name])[0]

    def compute_many(self, requests: Sequence[Mapping[str, Any]]) -> list[pa.Table]:
        """Features of several requests in one execution; item i equals ``compute(requests[i])``.

        Raises:
            ValueError: On a request :func:`compute_features` refuses, on requests that share an
                SK_ID_CURR or an SK_ID_BUREAU, or on a value that does not fit its canonical type.
        """
        parts = [gather_inputs(request) for request in requests]
        if len(parts) > 1:
            seen = RequestKeys(frozenset(), frozenset())
            for inputs in parts:
                keys = _keys_of(inputs)
                if keys.clashes(seen):
                    raise ValueError("requests in one batch share an SK_ID_CURR or an SK_ID_BUREAU")
                seen |= keys
        sources: dict[str, list[tuple[str, pa.Table]]] = {view: [] for view in self._targets}
        for inputs in parts:
            sources[APPLICATION_VIEW] += inputs.applicants
            for view, tables_ in inputs.histories.items():
                sources[view] += [(view, table) for table in tables_]
        result = self._execute(
            {view: self._relation(view, pieces) for view, pieces in sources.items()}
        )
        return [in_input_order(result, inputs.ids) for inputs in parts]

    def _relation(self, view: str, pieces: list[tuple[str, pa.Table]]) -> pa.Table:
        """One input relation from its pieces, in order, with the canonical columns and types."""
        if not pieces:
            return self._targets[view].empty_table()
        # Pieces of one source with one schema (the requests of a batch) are cast in one go.
        runs: list[tuple[str, list[pa.Table]]] = []
        for source, table in pieces:
            if runs and runs[-1][0] == source and runs[-1][1][0].schema.equals(table.schema):
                runs[-1][1].append(table)
            else:
                runs.append((source, [table]))
        tables_ = [self._canonical(pa.concat_tables(run), source) for source, run in runs]
        return pa.concat_tables(tables_) if len(tables_) > 1 else tables_[0]

    def _canonical(self, table: pa.Table, source: str) -> pa.Table:
        """``table`` with exactly the canonical columns and types of its relation.

        Columns that already have the canonical type (what the REST service builds) are taken
        as they are, absent ones are NULL; any other type is cast by DuckDB, with the same
        casts as :func:`compute_features`.
        """
        if source in (APPLICATION_VIEW, "application_train", "application_test"):
            columns, ignore = applicant_columns(source)
            target = self._targets[APPLICATION_VIEW]
        else:
            columns, ignore = dict(_inputs())[source], frozenset()
            target = self._targets[source]
        if not ignore and table.schema.equals(target):
            return table
        index = {name: i for i, name in enumerate(table.column_names) if name not in ignore}
        arrays = []
        for field in target:
            column = table.column(index[field.name]) if field.name in index else None
            if column is None:
                arrays.append(pa.nulls(table.num_rows, field.type))
            elif column.type == field.type:
                arrays.append(column)
            elif column.type == pa.null():
                arrays.append(column.cast(field.type))
            else:  # another type: DuckDB casts it, exactly as compute_features does
                return _cast_by_duckdb(table, columns, ignore, target)
        return pa.Table.from_arrays(arrays, schema=target)

    def _execute(self, relations: Mapping[str, pa.Table]) -> pa.Table:
        return self._statement.execute([_encode(relations[view]) for view, _ in _inputs()])


def _cast_by_duckdb(
    table: pa.Table, columns: tuple[ColumnSpec, ...], ignore: frozenset[str], target: pa.Schema
) -> pa.Table:
    """``table`` conformed by DuckDB (the casts of compute_features), on a short-lived
    connection: the rare path of inputs whose types are not already canonical."""
    connection = duckdb.connect()
    try:
        conformed = _conform(connection.from_arrow(table), columns, ignore).to_arrow_table()
        return conformed.cast(target)
    except duckdb.ConversionException as exc:
        raise ValueError(f"an input value does not fit its canonical type: {exc}") from exc
    finally:
        connection.close()
