"""The Home Credit data model: the eight Kaggle files, their columns, keys and links.

Column names, order and value types come from the per-column profile of the real Kaggle data
(``reference/profile.csv``, a copy of ``shared/home_credit/profile.csv``); descriptions from
Kaggle's ``HomeCredit_columns_description.csv``. Everything else in the package (generator,
contracts, ingest, feature SQL) reads the data model from here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

import pyarrow as pa

DType = Literal["int", "float", "string"]

#: DuckDB/Arrow storage type of each profile dtype. Integers are 64-bit as in pandas.
DUCKDB_TYPES: dict[str, str] = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR"}

#: The Arrow type of each DuckDB storage type used for raw columns and features.
ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
}


@dataclass(frozen=True)
class ColumnSpec:
    """One raw column with the marginals observed on the real data."""

    name: str
    dtype: DType
    kind: str  # id, target, numeric or categorical
    null_share: float
    n_distinct: int
    quantiles: dict[str, float]  # min, p01 … p99, max (empty for strings)
    mean: float | None
    levels: dict[
        str, float
    ]  # level -> share of non-null values (categoricals, few-valued numerics)
    description: str = ""

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.dtype]


@dataclass(frozen=True)
class ForeignKey:
    """A child column that should find its parent row (orphans are reported, not fatal)."""

    column: str
    parent_table: str
    parent_column: str


@dataclass(frozen=True)
class TableSpec:
    """One Kaggle table: file name, canonical columns, keys and links."""

    name: str  # Kaggle stem, e.g. "POS_CASH_balance"
    view: str  # the lowercase relation name the feature SQL uses
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    required: bool = False  # must exist and have rows
    description: str = ""
    full_rows: int = 0  # row count of the full Kaggle data
    key_columns: tuple[str, ...] = field(default=())  # must never be NULL

    @property
    def file_name(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def duckdb_types(self) -> dict[str, str]:
        return {c.name: c.duckdb_type for c in self.columns}


_QUANTILE_FIELDS = ("min", "p01", "p05", "p25", "p50", "p75", "p95", "p99", "max")


def _parse_levels(text: str) -> dict[str, float]:
    levels: dict[str, float] = {}
    for part in filter(None, text.split(";")):
        level, _, share = part.rpartition("=")
        levels[level] = float(share)
    return levels


def _reference_rows(file_name: str) -> list[dict[str, str]]:
    path = resources.files("creditrisk.data").joinpath("reference").joinpath(file_name)
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@cache
def column_descriptions() -> dict[tuple[str, str], str]:
    """Kaggle's description of each (table, column)."""
    table_of_file = {
        "application_{train|test}.csv": "application_train",
        "bureau.csv": "bureau",
        "bureau_balance.csv": "bureau_balance",
        "previous_application.csv": "previous_application",
        "installments_payments.csv": "installments_payments",
        "credit_card_balance.csv": "credit_card_balance",
        "POS_CASH_balance.csv": "POS_CASH_balance",
    }
    out: dict[tuple[str, str], str] = {}
    for row in _reference_rows("columns_description.csv"):
        table = table_of_file.get(row["Table"])
        if table:
            # The description file calls SK_ID_BUREAU "SK_BUREAU_ID".
            column = "SK_ID_BUREAU" if row["Row"] == "SK_BUREAU_ID" else row["Row"]
            out[(table, column)] = row["Description"]
    return out


@cache
def _profiled_columns() -> dict[str, tuple[ColumnSpec, ...]]:
    descriptions = column_descriptions()
    by_table: dict[str, list[ColumnSpec]] = {}
    for row in _reference_rows("profile.csv"):
        quantiles = {k: float(row[k]) for k in _QUANTILE_FIELDS if row[k] not in ("", None)}
        by_table.setdefault(row["table"], []).append(
            ColumnSpec(
                name=row["column"],
                dtype=row["dtype"],  # type: ignore[arg-type]
                kind=row["kind"],
                null_share=float(row["null_share"] or 0.0),
                n_distinct=int(row["n_distinct"] or 0),
                quantiles=quantiles,
                mean=float(row["mean"]) if row["mean"] else None,
                levels=_parse_levels(row["top_values"] or ""),
                description=descriptions.get((row["table"], row["column"]), ""),
            )
        )
    return {table: tuple(cols) for table, cols in by_table.items()}


def _fk(column: str, parent: str, parent_column: str | None = None) -> ForeignKey:
    return ForeignKey(column, parent, parent_column or column)


@cache
def tables() -> dict[str, TableSpec]:
    """The eight Kaggle tables, keyed by Kaggle stem, in the order they are ingested."""
    cols = _profiled_columns()
    train = cols["application_train"]
    test = tuple(c for c in train if c.name != "TARGET")
    specs = [
        TableSpec(
            "application_train",
            "application_train",
            train,
            ("SK_ID_CURR",),
            (),
            True,
            "Labelled loan applications, one row per applicant (TARGET = 1: payment difficulties)",
            307_511,
            ("SK_ID_CURR",),
        ),
        TableSpec(
            "application_test",
            "application_test",
            test,
            ("SK_ID_CURR",),
            (),
            False,
            "Unlabelled applications to score, same columns as application_train without TARGET",
            48_744,
            ("SK_ID_CURR",),
        ),
        TableSpec(
            "bureau",
            "bureau",
            cols["bureau"],
            ("SK_ID_BUREAU",),
            (_fk("SK_ID_CURR", "application"),),
            False,
            "Credits at other institutions reported to the credit bureau",
            1_716_428,
            ("SK_ID_CURR", "SK_ID_BUREAU"),
        ),
        TableSpec(
            "bureau_balance",
            "bureau_balance",
            cols["bureau_balance"],
            ("SK_ID_BUREAU", "MONTHS_BALANCE"),
            (_fk("SK_ID_BUREAU", "bureau"),),
            False,
            "Monthly status of each bureau credit",
            27_299_925,
            ("SK_ID_BUREAU", "MONTHS_BALANCE"),
        ),
        TableSpec(
            "previous_application",
            "previous_application",
            cols["previous_application"],
            ("SK_ID_PREV",),
            (_fk("SK_ID_CURR", "application"),),
            False,
            "Earlier applications for Home Credit loans",
            1_670_214,
            ("SK_ID_PREV", "SK_ID_CURR"),
        ),
        TableSpec(
            "installments_payments",
            "installments_payments",
            cols["installments_payments"],
            (),
            (_fk("SK_ID_PREV", "previous_application"), _fk("SK_ID_CURR", "application")),
            False,
            "Repayment history of earlier Home Credit loans, one row per instalment payment",
            13_605_401,
            ("SK_ID_PREV", "SK_ID_CURR"),
        ),
        TableSpec(
            "credit_card_balance",
            "credit_card_balance",
            cols["credit_card_balance"],
            (),
            (_fk("SK_ID_PREV", "previous_application"), _fk("SK_ID_CURR", "application")),
            False,
            "Monthly balance of earlier Home Credit credit cards",
            3_840_312,
            ("SK_ID_PREV", "SK_ID_CURR", "MONTHS_BALANCE"),
        ),
        TableSpec(
            "POS_CASH_balance",
            "pos_cash_balance",
            cols["POS_CASH_balance"],
            (),
            (_fk("SK_ID_PREV", "previous_application"), _fk("SK_ID_CURR", "application")),
            False,
            "Monthly balance of earlier point-of-sale and cash loans",
            10_001_358,
            ("SK_ID_PREV", "SK_ID_CURR", "MONTHS_BALANCE"),
        ),
    ]
    return {spec.name: spec for spec in specs}


def arrow_schema(columns: Iterable[ColumnSpec]) -> pa.Schema:
    """The Arrow schema of these columns with their canonical types."""
    return pa.schema([(c.name, ARROW_TYPES[c.duckdb_type]) for c in columns])


def empty_table(columns: Iterable[ColumnSpec]) -> pa.Table:
    """A zero-row Arrow table with these columns and their canonical types."""
    return arrow_schema(columns).empty_table()


def table(name: str) -> TableSpec:
    """The spec of one table by Kaggle stem (``bureau``) or file name (``bureau.csv``)."""
    stem = name.removesuffix(".gz").removesuffix(".zip").removesuffix(".csv")
    specs = tables()
    if stem not in specs:
        raise KeyError(f"unknown Home Credit table {name!r}; expected one of {sorted(specs)}")
    return specs[stem]


#: Tables holding applicants (train and test), then the six history tables.
APPLICATION_TABLES = ("application_train", "application_test")
HISTORY_TABLES = (
    "bureau",
    "bureau_balance",
    "previous_application",
    "installments_payments",
    "credit_card_balance",
    "POS_CASH_balance",
)
