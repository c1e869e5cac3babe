"""Online features (creditrisk.features.online): the feature SQL prepared once, bit-identical to
compute_features, batched, in this process or in a feature process — all on a real DuckDB.

Parity is bit for bit: floats are compared by their eight bytes (NaN equals NaN, -0.0 differs
from 0.0), with the same schema and row order, against compute_features on a one-thread
connection (what the REST service used before, and what the online path promises to equal).
"""

from __future__ import annotations

import json
import os
import signal
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from creditrisk.data.tables import arrow_schema, tables
from creditrisk.features import compute_features
from creditrisk.features.online import OnlineFeatures, online_query, request_keys

HISTORY = ("bureau", "previous_application", "installments_payments")
HISTORY += ("credit_card_balance", "POS_CASH_balance")
Request = dict[str, pa.Table]


# --------------------------------------------------------------------------------------------
# Fixtures: real applicants of the tiny snapshot with every history row they own


@pytest.fixture(scope="module")
def raw_tables(tiny_raw: Path) -> dict[str, pa.Table]:
    """The tiny snapshot as read from CSV (types inferred by Arrow, not canonical)."""
    return {stem: pacsv.read_csv(tiny_raw / f"{stem}.csv") for stem in tables()}


def one_request(raw: Mapping[str, pa.Table], stem: str, row: int) -> Request:
    applicant = raw[stem].slice(row, 1)
    key = applicant.column("SK_ID_CURR")[0]
    request = {stem: applicant}
    for name in HISTORY:
        request[name] = raw[name].filter(pc.equal(raw[name]["SK_ID_CURR"], key))
    credits = request["bureau"].column("SK_ID_BUREAU").combine_chunks()
    request["bureau_balance"] = raw["bureau_balance"].filter(
        pc.is_in(raw["bureau_balance"]["SK_ID_BUREAU"], value_set=credits)
    )
    return request


def canonical(request: Request) -> Request:
    """The request as the REST service builds it: canonical columns and types."""
    out = {}
    for name, table in request.items():
        schema = arrow_schema(tables()[name].columns)
        out[name] = pa.table(
            {
                f.name: table.column(f.name).cast(f.type)
                if f.name in table.column_names
                else pa.nulls(table.num_rows, f.type)
                for f in schema
            },
            schema=schema,
        )
    return out


@pytest.fixture(scope="module")
def requests_(raw_tables: dict[str, pa.Table]) -> list[Request]:
    """Thirty test applicants and ten labelled ones, each with its history; some have none."""
    return [one_request(raw_tables, "application_test", i) for i in range(30)] + [
        one_request(raw_tables, "application_train", i) for i in range(10)
    ]


@pytest.fixture(scope="module")
def reference() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("set threads = 1")
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def online() -> Iterator[OnlineFeatures]:
    features = OnlineFeatures()
    yield features
    features.close()


def identical(left: pa.Table, right: pa.Table) -> None:
    assert left.schema == right.schema
    assert left.num_rows == right.num_rows

    def key(value: Any) -> Any:
        return struct.pack("<d", value) if isinstance(value, float) else value

    for name in left.column_names:
        assert [key(v) for v in left.column(name).to_pylist()] == [
            key(v) for v in right.column(name).to_pylist()
        ], name


# --------------------------------------------------------------------------------------------
# Parity


def test_history_of_the_fixture_is_typical(requests_: list[Request]) -> None:
    """The parity cases cover applicants with every kind of history, and some with none."""
    with_bureau = sum(r["bureau_balance"].num_rows > 0 for r in requests_)
    with_cards = sum(r["credit_card_balance"].num_rows > 0 for r in requests_)
    without = sum(all(r[name].num_rows == 0 for name in HISTORY) for r in requests_)
    assert with_bureau >= 10 and with_cards >= 3 and without >= 1


@pytest.mark.parametrize("typed", ["canonical", "as-read-from-csv"])
def test_online_features_equal_compute_features_bit_for_bit(
    requests_: list[Request],
    online: OnlineFeatures,
    reference: duckdb.DuckDBPyConnection,
    typed: str,
) -> None:
    for request in requests_:
        request = canonical(request) if typed == "canonical" else request
        identical(online.compute(request), compute_features(request, connection=reference))


def _with(table: pa.Table, name: str, values: list[Any], type_: pa.DataType | None = None) -> Any:
    index = table.column_names.index(name)
    return table.set_column(index, name, pa.array(values, type_ or table.schema.field(name).type))


def edge_cases(base: Request) -> dict[str, Request]:
    app = base["application_test"]
    instalments = base["installments_payments"]
    payments = instalments.column("AMT_PAYMENT").to_pylist()
    specials = [float("inf"), float("-inf"), float("nan")]
    with_target = app.append_column("TARGET", pa.array([1], pa.int64()))
    nothing = pa.table(
        {f.name: pa.nulls(1, f.type) for f in app.schema if f.name != "SK_ID_CURR"}
    ).add_column(0, "SK_ID_CURR", pa.array([999_999], pa.int64()))
    return {
        "nan-inf-negative-zero": base
        | {
            "application_test": _with(
                _with(app, "AMT_INCOME_TOTAL", [float("nan")]), "EXT_SOURCE_2", [-0.0]
            ),
            "installments_payments": _with(
                instalments,
                "AMT_PAYMENT",
                [specials[i] if i < 3 else v for i, v in enumerate(payments)],
            ),
        },
        "strings-quotes-backslashes-unicode": base
        | {
            "application_test": _with(
                _with(app, "NAME_CONTRACT_TYPE", ["Cash 'loans' \"x\" \\ é ✓ 𝔘 \u2028 \n\t"]),
                "CODE_GENDER",
                [""],
            )
        },
        "all-null-applicant-only": {"application_test": nothing},
        "missing-and-extra-columns": {
            "application_test": app.select(["SK_ID_CURR", "AMT_CREDIT"]).append_column(
                "NOT_A_COLUMN", pa.array(["x"])
            ),
            "bureau": base["bureau"].select(["SK_ID_CURR", "SK_ID_BUREAU", "CREDIT_ACTIVE"]),
        },
        "int-as-float-and-float-as-int": base
        | {
            "application_test": _with(
                _with(app, "CNT_CHILDREN", [2.0], pa.float64()),
                "AMT_CREDIT",
                [100_000],
                pa.int64(),
            )
        },
        "application-train-with-target": {
            **{k: v for k, v in base.items() if k != "application_test"},
            "application_train": with_target,
        },
        "test-applicant-target-is-ignored": base | {"application_test": with_target},
        "test-applicant-target-is-ignored-canonical": base
        | {"application_test": canonical({"application_train": with_target})["application_train"]},
        "lowercase-relation-names": {
            "application": app,
            "pos_cash_balance": base["POS_CASH_balance"],
        },
        "no-history-keys": {"application_test": app},
    }


def test_edge_cases_equal_compute_features(
    requests_: list[Request], online: OnlineFeatures, reference: duckdb.DuckDBPyConnection
) -> None:
    base = next(
        r for r in requests_ if r["installments_payments"].num_rows >= 3 and "application_test" in r
    )
    for name, request in edge_cases(base).items():
        try:
            identical(online.compute(request), compute_features(request, connection=reference))
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"applicationtrain": pa.table({"SK_ID_CURR": [1]})}, "unknown table"),
        ({"application_train": pa.table({"SK_ID_CURR": [1, 1]})}, "distinct"),
        (
            {"application_train": pa.table({"SK_ID_CURR": pa.array([None], pa.int64())})},
            "no SK_ID_CURR",
        ),
        (
            {"application_test": pa.table({"SK_ID_CURR": [1], "AMT_CREDIT": ["lots"]})},
            "does not fit",
        ),
    ],
    ids=["unknown-table", "duplicate-id", "null-id", "impossible-value"],
)
def test_bad_requests_fail_as_compute_features_does(
    online: OnlineFeatures, request_: Request, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compute_features(request_)
    with pytest.raises(ValueError, match=message):
        online.compute(request_)
    # and the statement still works afterwards
    assert online.compute({"application_test": pa.table({"SK_ID_CURR": [5]})}).num_rows == 1


# --------------------------------------------------------------------------------------------
# Batches


def test_a_batch_gives_each_request_what_it_gets_alone(
    requests_: list[Request], online: OnlineFeatures
) -> None:
    typed = [canonical(r) for r in requests_]
    alone = [online.compute(r) for r in typed]
    for size in (2, 8, 16):
        for start in range(0, len(typed) - size + 1, size):
            batch = online.compute_many(typed[start : start + size])
            for offset, table in enumerate(batch):
                identical(table, alone[start + offset])


def test_requests_sharing_a_key_never_share_an_execution(
    requests_: list[Request], online: OnlineFeatures
) -> None:
    with_credits = [r for r in requests_ if r["bureau_balance"].num_rows > 0][:2]
    first, second = with_credits
    same_applicant = first
    with pytest.raises(ValueError, match="share an SK_ID_CURR or an SK_ID_BUREAU"):
        online.compute_many([first, same_applicant])
    credit = first["bureau"].column("SK_ID_BUREAU")[0].as_py()
    borrowed = second | {
        "bureau": _with(second["bureau"], "SK_ID_BUREAU", [credit] * second["bureau"].num_rows)
    }
    assert request_keys(first).clashes(request_keys(borrowed))
    assert not request_keys(first).clashes(request_keys(second))
    with pytest.raises(ValueError, match="share an SK_ID_CURR or an SK_ID_BUREAU"):
        online.compute_many([first, borrowed])


# --------------------------------------------------------------------------------------------
# The plan is built once


def _binding_seconds(connection: duckdb.DuckDBPyConnection, tmp: Path, run: Any) -> float:
    profile = tmp / "profile.json"
    connection.execute("pragma enable_profiling = 'json'")
    connection.execute("set profiling_mode = 'detailed'")
    connection.execute(f"set profiling_output = '{profile}'")
    try:
        run()
    finally:
        connection.execute("pragma disable_profiling")
    return float(json.loads(profile.read_text())["planner"]["binding_time"])


def test_the_prepared_plan_is_reused_not_bound_again(
    requests_: list[Request], tmp_path: Path
) -> None:
    """An execution binds in a small fraction of what planning the same query takes.

    This guards the property the latency rests on (bench/studies/online_features.md): a DuckDB
    upgrade that re-binds a prepared statement on every execution would fail here.
    """
    connection = duckdb.connect()
    online = OnlineFeatures(connection)
    request = canonical(requests_[0])
    online.compute(request)
    texts = [json.dumps({"SK_ID_CURR": []})] * 7  # parsed only when executed
    planned = _binding_seconds(
        connection, tmp_path, lambda: connection.execute(online_query(), texts).fetchall()
    )
    reused = _binding_seconds(connection, tmp_path, lambda: online.compute(request))
    assert planned > 0
    assert reused < 0.2 * planned, (reused, planned)
    online.close()


# --------------------------------------------------------------------------------------------
# The feature process


def test_feature_process_equals_in_process_and_survives_its_death(
    requests_: list[Request], online: OnlineFeatures
) -> None:
    remote = OnlineFeatures(separate_process=True)
    try:
        pid = remote.process_id
        assert pid is not None and pid != os.getpid()
        typed = [canonical(r) for r in requests_[:8]]
        for request in typed:
            identical(remote.compute(request), online.compute(request))
        for table, expected in zip(
            remote.compute_many(typed), online.compute_many(typed), strict=True
        ):
            identical(table, expected)
        with pytest.raises(ValueError, match="does not fit"):
            remote.compute({"application_test": pa.table({"SK_ID_CURR": [1], "AMT_CREDIT": ["x"]})})

        os.kill(pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
        with pytest.raises(RuntimeError, match="feature process stopped"):
            remote.compute(typed[0])
        assert remote.process_id not in (None, pid)  # a new one
        identical(remote.compute(typed[0]), online.compute(typed[0]))
    finally:
        remote.close()
    with pytest.raises(ValueError, match="prepares its own connection"):
        OnlineFeatures(duckdb.connect(), separate_process=True)
