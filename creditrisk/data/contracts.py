"""Raw data contracts: what each Home Credit table must look like before features are built.

Each table's contract is a pair of Pandera schemas over the columns the pipeline uses:

* ``errors``: structural and definitional rules (keys present and non-null, the right types,
  flags in {0, 1}, ``EXT_SOURCE_*`` in [0, 1], days before the application ≤ 0, …). Any failure
  stops the ingest stage, naming the table, column and rule.
* ``warnings``: rules a healthy feed can still break (an unseen category level, a new product);
  failures are counted and reported, and the stage goes on, since the model pipeline maps
  unknown levels to "unknown".

Key uniqueness is not a row-local rule, so it is checked over the whole table in DuckDB
(:func:`duplicate_keys`). Schemas are validated on Arrow record batches streamed from the typed
Parquet file (:func:`validate_parquet`), so a 27M-row table is never loaded into pandas at once.
Columns the pipeline does not use are not part of any contract: they may be missing or extra.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq

from creditrisk.data.tables import APPLICATION_TABLES, TableSpec, table, tables

#: Kaggle's DAYS_* sentinel: "not employed / pensioner" (application) or "no date" (previous).
DAYS_SENTINEL = 365243
BATCH_ROWS = 2_000_000
EXAMPLES_PER_RULE = 5

_PANDAS_DTYPES: dict[str, Any] = {
    "int": "Int64",  # nullable, so a NULL key is reported as a NULL, not as a float column
    "float": "float64",
    "string": pd.StringDtype("pyarrow"),
}

# Columns read by the feature SQL (FEATURES.md), per table. TOT_MISSING_COUNT looks at every
# application column, but a column absent from the feed simply counts as missing there.
_FLAGS_ADDRESS = (
    "REG_REGION_NOT_LIVE_REGION",
    "REG_REGION_NOT_WORK_REGION",
    "LIVE_REGION_NOT_WORK_REGION",
    "REG_CITY_NOT_LIVE_CITY",
    "REG_CITY_NOT_WORK_CITY",
    "LIVE_CITY_NOT_WORK_CITY",
)
_FLAGS_CONTACT = (
    "FLAG_MOBIL",
    "FLAG_EMP_PHONE",
    "FLAG_WORK_PHONE",
    "FLAG_CONT_MOBILE",
    "FLAG_PHONE",
    "FLAG_EMAIL",
)
_FLAGS_DOCUMENT = tuple(f"FLAG_DOCUMENT_{i}" for i in range(2, 22))
_SOCIAL_CIRCLE = (
    "OBS_30_CNT_SOCIAL_CIRCLE",
    "DEF_30_CNT_SOCIAL_CIRCLE",
    "OBS_60_CNT_SOCIAL_CIRCLE",
    "DEF_60_CNT_SOCIAL_CIRCLE",
)
_BUREAU_ENQUIRIES = tuple(
    f"AMT_REQ_CREDIT_BUREAU_{p}" for p in ("HOUR", "DAY", "WEEK", "MON", "QRT", "YEAR")
)
_WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_DPD_BUCKETS = ("C", "X", "0", "1", "2", "3", "4", "5")

# Levels seen in the full Kaggle data but too rare for the reference profile's sample.
_EXTRA_LEVELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("application", "CODE_GENDER"): ("XNA",),
    ("application", "NAME_FAMILY_STATUS"): ("Unknown",),
    ("application", "NAME_INCOME_TYPE"): (
        "Unemployed",
        "Student",
        "Businessman",
        "Maternity leave",
    ),
    ("bureau", "CREDIT_ACTIVE"): ("Bad debt",),
    ("previous_application", "NAME_CONTRACT_STATUS"): ("Unused offer",),
    ("credit_card_balance", "NAME_CONTRACT_STATUS"): (
        "Demand",
        "Sent proposal",
        "Refused",
        "Approved",
    ),
    ("POS_CASH_balance", "NAME_CONTRACT_STATUS"): (
        "Returned to the store",
        "Amortized debt",
        "Canceled",
        "XNA",
        "Approved",
        "Demand",
    ),
}


@dataclass(frozen=True)
class TableContract:
    """The contract of one table: two Pandera schemas and the keys that must be unique."""

    table: str
    errors: pa.DataFrameSchema
    warnings: pa.DataFrameSchema
    unique_keys: tuple[tuple[str, ...], ...] = ()
    warn_unique_keys: tuple[tuple[str, ...], ...] = ()

    @property
    def required_columns(self) -> list[str]:
        """Columns the pipeline uses: a feed without them cannot be ingested."""
        return list(self.errors.columns)


@dataclass
class RuleResult:
    """One evaluated rule, as reported in ``ingestion_summary.json``."""

    column: str
    rule: str
    severity: str  # "error" or "warning"
    failures: int = 0
    examples: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failures == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "failures": self.failures,
            "examples": self.examples,
        }


@dataclass
class ContractReport:
    """All rules of one table with their failure counts."""

    table: str
    rows: int
    rules: list[RuleResult]

    @property
    def errors(self) -> list[RuleResult]:
        return [r for r in self.rules if r.severity == "error" and not r.passed]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.rules if r.severity == "warning" and not r.passed]

    @property
    def status(self) -> str:
        return "failed" if self.errors else "warning" if self.warnings else "passed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "rows_checked": self.rows,
            "rules_evaluated": len(self.rules),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "rules": [r.as_dict() for r in self.rules],
        }


# ---------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """What one used column must satisfy: its checks, and whether it may be NULL."""

    checks: tuple[pa.Check, ...] = ()
    nullable: bool = True


def _rule(*checks: pa.Check, nullable: bool = True) -> _Rule:
    return _Rule(checks, nullable)


_KEY = _Rule(nullable=False)


def _non_negative() -> pa.Check:
    return pa.Check.ge(0, name="non_negative")


def _not_after_application() -> pa.Check:
    # DAYS_*/MONTHS_* count backwards from the application date: future dates are impossible.
    return pa.Check.le(0, name="not_after_application")


def _binary() -> pa.Check:
    return pa.Check.isin([0, 1], name="binary_flag")


def _application_rules() -> dict[str, _Rule]:
    rating = pa.Check.isin([1, 2, 3], name="rating_1_to_3")
    yes_no = pa.Check.isin(["Y", "N"], name="yes_no")
    return {
        "SK_ID_CURR": _KEY,
        "TARGET": _rule(_binary(), nullable=False),  # application_train only
        **{f"EXT_SOURCE_{i}": _rule(pa.Check.in_range(0, 1, name="score_0_1")) for i in (1, 2, 3)},
        "AMT_INCOME_TOTAL": _rule(pa.Check.gt(0, name="positive")),
        "AMT_CREDIT": _rule(pa.Check.gt(0, name="positive")),
        "AMT_ANNUITY": _rule(_non_negative()),
        "AMT_GOODS_PRICE": _rule(_non_negative()),
        # An applicant is an adult: 18 to 100 years before the application.
        "DAYS_BIRTH": _rule(
            pa.Check.in_range(-36_525, -6_570, name="age_18_to_100"), nullable=False
        ),
        "DAYS_EMPLOYED": _rule(
            pa.Check(
                lambda s: (s <= 0) | (s == DAYS_SENTINEL),
                name="not_after_application_or_sentinel_365243",
            )
        ),
        "DAYS_REGISTRATION": _rule(_not_after_application()),
        "DAYS_ID_PUBLISH": _rule(_not_after_application()),
        "DAYS_LAST_PHONE_CHANGE": _rule(_not_after_application()),
        "OWN_CAR_AGE": _rule(_non_negative()),
        "CNT_CHILDREN": _rule(_non_negative()),
        "CNT_FAM_MEMBERS": _rule(pa.Check.ge(1, name="at_least_one_person")),
        "REGION_RATING_CLIENT": _rule(rating),
        "REGION_RATING_CLIENT_W_CITY": _rule(rating),
        "REGION_POPULATION_RELATIVE": _rule(pa.Check.in_range(0, 1, name="share_0_1")),
        "WEEKDAY_APPR_PROCESS_START": _rule(pa.Check.isin(list(_WEEKDAYS), name="weekday")),
        "HOUR_APPR_PROCESS_START": _rule(pa.Check.in_range(0, 23, name="hour_0_23")),
        "FLAG_OWN_CAR": _rule(yes_no),
        "FLAG_OWN_REALTY": _rule(yes_no),
        **{n: _rule(_binary()) for n in (*_FLAGS_ADDRESS, *_FLAGS_CONTACT, *_FLAGS_DOCUMENT)},
        **{n: _rule(_non_negative()) for n in (*_SOCIAL_CIRCLE, *_BUREAU_ENQUIRIES)},
        **{n: _Rule() for n in _LEVEL_COLUMNS["application"]},
    }


def _bureau_rules() -> dict[str, _Rule]:
    return {
        "SK_ID_CURR": _KEY,
        "SK_ID_BUREAU": _KEY,
        "CREDIT_ACTIVE": _Rule(),
        "DAYS_CREDIT": _rule(_not_after_application()),
        # DAYS_CREDIT_UPDATE is positive for a few real rows: no range rule.
        "DAYS_CREDIT_UPDATE": _Rule(),
        # Debt and limit can be negative in the real feed (over-payments): no sign rule.
        "AMT_CREDIT_SUM_DEBT": _Rule(),
        "AMT_CREDIT_SUM_LIMIT": _Rule(),
        "AMT_CREDIT_SUM": _rule(_non_negative()),
        "AMT_CREDIT_SUM_OVERDUE": _rule(_non_negative()),
        "AMT_CREDIT_MAX_OVERDUE": _rule(_non_negative()),
        "CNT_CREDIT_PROLONG": _rule(_non_negative()),
    }


def _bureau_balance_rules() -> dict[str, _Rule]:
    return {
        "SK_ID_BUREAU": _KEY,
        "MONTHS_BALANCE": _rule(_not_after_application(), nullable=False),
        # The feature SQL parses STATUS as a DPD bucket: any other value would be silently 0.
        "STATUS": _rule(pa.Check.isin(list(_DPD_BUCKETS), name="dpd_bucket_C_X_0_to_5")),
    }


def _previous_application_rules() -> dict[str, _Rule]:
    return {
        "SK_ID_PREV": _KEY,
        "SK_ID_CURR": _KEY,
        "NAME_CONTRACT_STATUS": _Rule(),
        "AMT_APPLICATION": _rule(_non_negative()),
        "AMT_CREDIT": _rule(_non_negative()),
        # AMT_DOWN_PAYMENT has tiny negative values in the real feed: no sign rule.
        "AMT_DOWN_PAYMENT": _Rule(),
        "CNT_PAYMENT": _rule(_non_negative()),
        "DAYS_DECISION": _rule(_not_after_application()),
    }


def _installments_rules() -> dict[str, _Rule]:
    return {
        "SK_ID_PREV": _KEY,
        "SK_ID_CURR": _KEY,
        "DAYS_INSTALMENT": _rule(_not_after_application()),
        "DAYS_ENTRY_PAYMENT": _rule(_not_after_application()),
        "AMT_INSTALMENT": _rule(_non_negative()),
        "AMT_PAYMENT": _rule(_non_negative()),
    }


def _monthly_balance_rules() -> dict[str, _Rule]:
    """Rules shared by the monthly card and POS/cash balances."""
    return {
        "SK_ID_PREV": _KEY,
        "SK_ID_CURR": _KEY,
        "MONTHS_BALANCE": _rule(_not_after_application(), nullable=False),
        "NAME_CONTRACT_STATUS": _Rule(),
        "SK_DPD": _rule(_non_negative()),
        "SK_DPD_DEF": _rule(_non_negative()),
    }


def _credit_card_rules() -> dict[str, _Rule]:
    return {
        **_monthly_balance_rules(),
        # Balances go negative after over-payment; drawings have rare negative corrections in
        # the real feed: no sign rule on either.
        "AMT_BALANCE": _Rule(),
        "AMT_DRAWINGS_ATM_CURRENT": _Rule(),
        "AMT_CREDIT_LIMIT_ACTUAL": _rule(_non_negative()),
        "AMT_INST_MIN_REGULARITY": _rule(_non_negative()),
        "AMT_PAYMENT_TOTAL_CURRENT": _rule(_non_negative()),
    }


_ERROR_RULES = {
    "application": _application_rules,
    "bureau": _bureau_rules,
    "bureau_balance": _bureau_balance_rules,
    "previous_application": _previous_application_rules,
    "installments_payments": _installments_rules,
    "credit_card_balance": _credit_card_rules,
    "POS_CASH_balance": _monthly_balance_rules,
}

#: Categorical columns whose unseen levels are reported as warnings, per table family.
_LEVEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "application": (
        "NAME_CONTRACT_TYPE",
        "CODE_GENDER",
        "NAME_INCOME_TYPE",
        "NAME_EDUCATION_TYPE",
        "NAME_HOUSING_TYPE",
        "NAME_FAMILY_STATUS",
    ),
    "bureau": ("CREDIT_ACTIVE",),
    "bureau_balance": (),
    "previous_application": ("NAME_CONTRACT_STATUS",),
    "installments_payments": (),
    "credit_card_balance": ("NAME_CONTRACT_STATUS",),
    "POS_CASH_balance": ("NAME_CONTRACT_STATUS",),
}


def _family(spec: TableSpec) -> str:
    return "application" if spec.name in APPLICATION_TABLES else spec.name


def _levels(spec: TableSpec, name: str) -> pa.Check:
    """Allowed levels: those of the real-data profile plus known rare ones."""
    allowed = [*spec.column(name).levels, *_EXTRA_LEVELS.get((_family(spec), name), ())]
    return pa.Check.isin(sorted(set(allowed)), name="allowed_levels")


def _schema(spec: TableSpec, rules: dict[str, _Rule], severity: str) -> pa.DataFrameSchema:
    # A rule for a column the table does not have (TARGET in application_test) does not apply.
    columns = {
        name: pa.Column(
            _PANDAS_DTYPES[spec.column(name).dtype],
            list(rule.checks),
            nullable=rule.nullable,
            name=name,
        )
        for name, rule in rules.items()
        if name in spec.column_names
    }
    return pa.DataFrameSchema(columns, name=f"{spec.name}:{severity}", strict=False)


@cache
def contract(table_name: str) -> TableContract:
    """The contract of one table (by Kaggle stem)."""
    spec = table(table_name)
    family = _family(spec)
    errors = _ERROR_RULES[family]()
    warnings = {name: _rule(_levels(spec, name)) for name in _LEVEL_COLUMNS[family]}
    unique = (spec.primary_key,) if spec.primary_key and spec.name != "bureau_balance" else ()
    # One status per credit and month is the norm; a duplicate month double-counts in the
    # delinquency share, so it is reported, but the real feed is not guaranteed clean.
    warn_unique = (spec.primary_key,) if spec.name == "bureau_balance" else ()
    return TableContract(
        table=spec.name,
        errors=_schema(spec, errors, "errors"),
        warnings=_schema(spec, warnings, "warnings"),
        unique_keys=unique,
        warn_unique_keys=warn_unique,
    )


def contracts() -> dict[str, TableContract]:
    """Every table's contract, keyed by Kaggle stem."""
    return {name: contract(name) for name in tables()}


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _rule_names(schema: pa.DataFrameSchema) -> Iterator[tuple[str, str]]:
    for name, col in schema.columns.items():
        yield name, f"dtype('{col.dtype}')"
        if not col.nullable:
            yield name, "not_nullable"
        for check in col.checks:
            yield name, _check_label(check)


def _check_label(check: pa.Check) -> str:
    return check.name or str(check)


def _to_pandas(batch: pa_arrow.RecordBatch) -> pd.DataFrame:
    string = pd.StringDtype("pyarrow")
    mapping = {
        pa_arrow.string(): string,
        pa_arrow.large_string(): string,
        pa_arrow.int64(): pd.Int64Dtype(),
    }
    return batch.to_pandas(types_mapper=mapping.get)


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value if isinstance(value, int | float | str | bool) else str(value)


def _validate_frame(
    schema: pa.DataFrameSchema,
    frame: pd.DataFrame,
    results: dict[tuple[str, str], RuleResult],
    row_offset: int,
) -> None:
    if not schema.columns:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        check_labels = {
            (name, i): _check_label(ch)
            for name, col in schema.columns.items()
            for i, ch in enumerate(col.checks)
        }
        for row in cases.itertuples(index=False):
            column = str(row.column)
            if row.check_number is not None and row.check_number == row.check_number:
                label = check_labels.get((column, int(row.check_number)), str(row.check))
            else:
                label = str(row.check)
                if label.startswith("dtype("):
                    label = f"dtype('{schema.columns[column].dtype}')"
            result = results.get((column, label))
            if result is None:
                continue
            result.failures += 1
            if len(result.examples) < EXAMPLES_PER_RULE:
                index = row.index
                result.examples.append(
                    {
                        "row": int(index) + row_offset + 1 if index == index else None,
                        "value": _json_value(row.failure_case),
                    }
                )


def validate_parquet(
    table_name: str, parquet_path: Path, connection: duckdb.DuckDBPyConnection | None = None
) -> ContractReport:
    """Evaluate a table's contract on its typed Parquet file, streaming record batches.

    Args:
        table_name: Kaggle stem of the table.
        parquet_path: the typed Parquet written by ingest (canonical columns).
        connection: DuckDB connection for the whole-table key checks.

    Returns:
        Every rule of the contract with its failure count and a few failing rows (1-based).
    """
    spec_contract = contract(table_name)
    results: dict[tuple[str, str], RuleResult] = {}
    for schema, severity in ((spec_contract.errors, "error"), (spec_contract.warnings, "warning")):
        for column, label in _rule_names(schema):
            results[(column, label)] = RuleResult(column, label, severity)

    used = sorted({*spec_contract.errors.columns, *spec_contract.warnings.columns})
    parquet = pq.ParquetFile(parquet_path)
    present = [c for c in used if c in parquet.schema_arrow.names]
    rows = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=present):
        frame = _to_pandas(batch)
        for schema in (spec_contract.errors, spec_contract.warnings):
            _validate_frame(schema, frame, results, rows)
        rows += batch.num_rows

    rules = list(results.values())
    con = connection or duckdb.connect()
    for keys, severity in [
        *((k, "error") for k in spec_contract.unique_keys),
        *((k, "warning") for k in spec_contract.warn_unique_keys),
    ]:
        rules.append(_unique_rule(con, parquet_path, keys, severity))
    return ContractReport(table=table_name, rows=rows, rules=rules)


def duplicate_keys(
    con: duckdb.DuckDBPyConnection, parquet_path: Path, keys: Iterable[str], limit: int = 5
) -> tuple[int, list[dict[str, Any]]]:
    """Number of key values that occur more than once, and a few of them with their counts."""
    key_list = ", ".join(f'"{k}"' for k in keys)
    rows = con.execute(
        f"""
        with duplicated as (
            select {key_list}, count(*) as n_rows
            from read_parquet($path)
            group by {key_list}
            having count(*) > 1
        )
        select *, count(*) over () as n_duplicated
        from duplicated
        order by {key_list}
        limit $limit
        """,
        {"path": str(parquet_path), "limit": limit},
    ).fetchall()
    names = [*keys, "n_rows"]
    return (rows[0][-1] if rows else 0), [dict(zip(names, row[:-1], strict=True)) for row in rows]


def _unique_rule(
    con: duckdb.DuckDBPyConnection, parquet_path: Path, keys: tuple[str, ...], severity: str
) -> RuleResult:
    n_duplicated, examples = duplicate_keys(con, parquet_path, keys)
    return RuleResult(
        column=", ".join(keys),
        rule="unique",
        severity=severity,
        failures=n_duplicated,
        examples=[{k: _json_value(v) for k, v in ex.items()} for ex in examples],
    )
