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

from creditrisk.data.tables import TableSpec, table, tables

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


def _column(spec: TableSpec, name: str, *checks: pa.Check, nullable: bool = True) -> pa.Column:
    return pa.Column(
        _PANDAS_DTYPES[spec.column(name).dtype], list(checks), nullable=nullable, name=name
    )


def _levels(spec: TableSpec, family: str, name: str) -> pa.Check:
    """Allowed levels: those of the real-data profile plus known rare ones."""
    allowed = [*spec.column(name).levels, *_EXTRA_LEVELS.get((family, name), ())]
    return pa.Check.isin(sorted(set(allowed)), name="allowed_levels")


def _non_negative() -> pa.Check:
    return pa.Check.ge(0, name="non_negative")


def _not_after_application() -> pa.Check:
    # DAYS_*/MONTHS_* count backwards from the application date: future dates are impossible.
    return pa.Check.le(0, name="not_after_application")


def _binary() -> pa.Check:
    return pa.Check.isin([0, 1], name="binary_flag")


def _application(spec: TableSpec) -> tuple[dict[str, pa.Column], dict[str, pa.Column]]:
    c = lambda name, *checks, nullable=True: _column(spec, name, *checks, nullable=nullable)  # noqa: E731
    errors = {
        "SK_ID_CURR": c("SK_ID_CURR", nullable=False),
        **(
            {"TARGET": c("TARGET", _binary(), nullable=False)}
            if "TARGET" in spec.column_names
            else {}
        ),
        **{
            f"EXT_SOURCE_{i}": c(f"EXT_SOURCE_{i}", pa.Check.in_range(0, 1, name="score_0_1"))
            for i in (1, 2, 3)
        },
        "AMT_INCOME_TOTAL": c("AMT_INCOME_TOTAL", pa.Check.gt(0, name="positive")),
        "AMT_CREDIT": c("AMT_CREDIT", pa.Check.gt(0, name="positive")),
        "AMT_ANNUITY": c("AMT_ANNUITY", _non_negative()),
        "AMT_GOODS_PRICE": c("AMT_GOODS_PRICE", _non_negative()),
        # An applicant is an adult: 18 to 100 years before the application.
        "DAYS_BIRTH": c(
            "DAYS_BIRTH", pa.Check.in_range(-36_525, -6_570, name="age_18_to_100"), nullable=False
        ),
        "DAYS_EMPLOYED": c(
            "DAYS_EMPLOYED",
            pa.Check(
                lambda s: (s <= 0) | (s == DAYS_SENTINEL),
                element_wise=False,
                name="not_after_application_or_sentinel_365243",
            ),
        ),
        "DAYS_REGISTRATION": c("DAYS_REGISTRATION", _not_after_application()),
        "DAYS_ID_PUBLISH": c("DAYS_ID_PUBLISH", _not_after_application()),
        "DAYS_LAST_PHONE_CHANGE": c("DAYS_LAST_PHONE_CHANGE", _not_after_application()),
        "OWN_CAR_AGE": c("OWN_CAR_AGE", _non_negative()),
        "CNT_CHILDREN": c("CNT_CHILDREN", _non_negative()),
        "CNT_FAM_MEMBERS": c("CNT_FAM_MEMBERS", pa.Check.ge(1, name="at_least_one_person")),
        "REGION_RATING_CLIENT": c(
            "REGION_RATING_CLIENT", pa.Check.isin([1, 2, 3], name="rating_1_to_3")
        ),
        "REGION_RATING_CLIENT_W_CITY": c(
            "REGION_RATING_CLIENT_W_CITY", pa.Check.isin([1, 2, 3], name="rating_1_to_3")
        ),
        "REGION_POPULATION_RELATIVE": c(
            "REGION_POPULATION_RELATIVE", pa.Check.in_range(0, 1, name="share_0_1")
        ),
        "WEEKDAY_APPR_PROCESS_START": c(
            "WEEKDAY_APPR_PROCESS_START", pa.Check.isin(list(_WEEKDAYS), name="weekday")
        ),
        "HOUR_APPR_PROCESS_START": c(
            "HOUR_APPR_PROCESS_START", pa.Check.in_range(0, 23, name="hour_0_23")
        ),
        "FLAG_OWN_CAR": c("FLAG_OWN_CAR", pa.Check.isin(["Y", "N"], name="yes_no")),
        "FLAG_OWN_REALTY": c("FLAG_OWN_REALTY", pa.Check.isin(["Y", "N"], name="yes_no")),
        **{n: c(n, _binary()) for n in (*_FLAGS_ADDRESS, *_FLAGS_CONTACT, *_FLAGS_DOCUMENT)},
        **{n: c(n, _non_negative()) for n in (*_SOCIAL_CIRCLE, *_BUREAU_ENQUIRIES)},
        **{
            n: c(n)
            for n in (
                "NAME_CONTRACT_TYPE",
                "CODE_GENDER",
                "NAME_INCOME_TYPE",
                "NAME_EDUCATION_TYPE",
                "NAME_HOUSING_TYPE",
                "NAME_FAMILY_STATUS",
            )
        },
    }
    warn = {
        n: c(n, _levels(spec, "application", n))
        for n in (
            "NAME_CONTRACT_TYPE",
            "CODE_GENDER",
            "NAME_INCOME_TYPE",
            "NAME_EDUCATION_TYPE",
            "NAME_HOUSING_TYPE",
            "NAME_FAMILY_STATUS",
        )
    }
    return errors, warn


def _bureau(spec: TableSpec) -> tuple[dict[str, pa.Column], dict[str, pa.Column]]:
    c = lambda name, *checks, nullable=True: _column(spec, name, *checks, nullable=nullable)  # noqa: E731
    errors = {
        "SK_ID_CURR": c("SK_ID_CURR", nullable=False),
        "SK_ID_BUREAU": c("SK_ID_BUREAU", nullable=False),
        "CREDIT_ACTIVE": c("CREDIT_ACTIVE"),
        "DAYS_CREDIT": c("DAYS_CREDIT", _not_after_application()),
        # DAYS_CREDIT_UPDATE is positive for a few real rows: no range rule.
        "DAYS_CREDIT_UPDATE": c("DAYS_CREDIT_UPDATE"),
        # Debt and limit can be negative in the real feed (over-payments): no sign rule.
        "AMT_CREDIT_SUM_DEBT": c("AMT_CREDIT_SUM_DEBT"),
        "AMT_CREDIT_SUM_LIMIT": c("AMT_CREDIT_SUM_LIMIT"),
        "AMT_CREDIT_SUM": c("AMT_CREDIT_SUM", _non_negative()),
        "AMT_CREDIT_SUM_OVERDUE": c("AMT_CREDIT_SUM_OVERDUE", _non_negative()),
        "AMT_CREDIT_MAX_OVERDUE": c("AMT_CREDIT_MAX_OVERDUE", _non_negative()),
        "CNT_CREDIT_PROLONG": c("CNT_CREDIT_PROLONG", _non_negative()),
    }
    warn = {"CREDIT_ACTIVE": c("CREDIT_ACTIVE", _levels(spec, "bureau", "CREDIT_ACTIVE"))}
    return errors, warn


def _bureau_balance(spec: TableSpec) -> tuple[dict[str, pa.Column], dict[str, pa.Column]]:
    c = lambda name, *checks, nullable=True: _column(spec, name, *checks, nullable=nullable)  # noqa: E731
    errors = {
        "SK_ID_BUREAU": c("SK_ID_BUREAU", nullable=False),
        "MONTHS_BALANCE": c("MONTHS_BALANCE", _not_after_application(), nullable=False),
        # The feature SQL parses STATUS as a DPD bucket: any other value would be silently 0.
        "STATUS": c("STATUS", pa.Check.isin(list(_DPD_BUCKETS), name="dpd_bucket_C_X_0_to_5")),
    }
    return errors, {}


def _previous_application(spec: TableSpec) -> tuple[dict[str, pa.Column], dict[str, pa.Column]]:
    c = lambda name, *checks, nullable=True: _column(spec, name, *checks, nullable=nullable)  # noqa: E731
    errors = {
        "SK_ID_PREV": c("SK_ID_PREV", nullable=False),
        "SK_ID_CURR": c("SK_ID_CURR", nullable=False),
        "NAME_CONTRACT_STATUS": c("NAME_CONTRACT_STATUS"),
        "AMT_APPLICATION": c("AMT_APPLICATION", _non_negative()),
        "AMT_CREDIT": c("AMT_CREDIT", _non_negative()),
        # AMT_DOWN_PAYMENT has tiny negative values in the real feed: no sign rule.
        "AMT_DOWN_PAYMENT": c("AMT_DOWN_PAYMENT"),
        "CNT_PAYMENT": c("CNT_PAYMENT", _non_negative()),
        "DAYS_DECISION": c("DAYS_DECISION", _not_after_application()),
    }
    warn = {
        "NAME_CONTRACT_STATUS": c(
            "NAME_CONTRACT_STATUS",
            _levels(spec, "previous_application", "NAME_CONTRACT_STATUS"),
        )
    }
    return errors, warn


def _installments(spec: TableSpec) -> tuple[dict[str, pa.Column], dict[str, pa.Column]]:
    c = lambda name, *checks, nullable=True: _column(spec, name, *checks, nullable=nullable)  # noqa: E731
    errors = {
        "SK_ID_PREV": c("SK_ID_PREV", nullable=False),
        "SK_ID_CURR": c("SK_ID_CURR", nullable=False),
        "DAYS_INSTALMENT": c("DAYS_INSTALMENT", _not_after_application()),
        "DAYS_ENTRY_PAYMENT": c("DAYS_ENTRY_PAYMENT", _not_after_application()),
        "AMT_INSTALMENT": c("AMT_INSTALMENT", _non_negative()),
        "AMT_PAYMENT": c("AMT_PAYMENT", _non_negative()),
    }
    return errors, {}


def _monthly_balance(
    spec: TableSpec, family: str, extra: dict[str, tuple[pa.Check, ...]]
) -> tuple[dict[str, pa.Column], dict[str, pa.Column]]:
    c = lambda name, *checks, nullable=True: _column(spec, name, *checks, nullable=nullable)  # noqa: E731
    errors = {
        "SK_ID_PREV": c("SK_ID_PREV", nullable=False),
        "SK_ID_CURR": c("SK_ID_CURR", nullable=False),
        "MONTHS_BALANCE": c("MONTHS_BALANCE", _not_after_application(), nullable=False),
        "NAME_CONTRACT_STATUS": c("NAME_CONTRACT_STATUS"),
        "SK_DPD": c("SK_DPD", _non_negative()),
        "SK_DPD_DEF": c("SK_DPD_DEF", _non_negative()),
        **{name: c(name, *checks) for name, checks in extra.items()},
    }
    warn = {
        "NAME_CONTRACT_STATUS": c(
            "NAME_CONTRACT_STATUS", _levels(spec, family, "NAME_CONTRACT_STATUS")
        )
    }
    return errors, warn


def _declarations(spec: TableSpec) -> tuple[dict[str, pa.Column], dict[str, pa.Column]]:
    if spec.name in ("application_train", "application_test"):
        return _application(spec)
    if spec.name == "bureau":
        return _bureau(spec)
    if spec.name == "bureau_balance":
        return _bureau_balance(spec)
    if spec.name == "previous_application":
        return _previous_application(spec)
    if spec.name == "installments_payments":
        return _installments(spec)
    if spec.name == "credit_card_balance":
        return _monthly_balance(
            spec,
            "credit_card_balance",
            {
                # Balances go negative after over-payment; drawings have rare negative
                # corrections in the real feed: no sign rule on either.
                "AMT_BALANCE": (),
                "AMT_CREDIT_LIMIT_ACTUAL": (_non_negative(),),
                "AMT_DRAWINGS_ATM_CURRENT": (),
                "AMT_INST_MIN_REGULARITY": (_non_negative(),),
                "AMT_PAYMENT_TOTAL_CURRENT": (_non_negative(),),
            },
        )
    if spec.name == "POS_CASH_balance":
        return _monthly_balance(spec, "POS_CASH_balance", {})
    raise KeyError(spec.name)


@cache
def contract(table_name: str) -> TableContract:
    """The contract of one table (by Kaggle stem)."""
    spec = table(table_name)
    errors, warn = _declarations(spec)
    unique = (spec.primary_key,) if spec.primary_key and spec.name != "bureau_balance" else ()
    # One status per credit and month is the norm; a duplicate month double-counts in the
    # delinquency share, so it is reported, but the real feed is not guaranteed clean.
    warn_unique = (spec.primary_key,) if spec.name == "bureau_balance" else ()
    return TableContract(
        table=spec.name,
        errors=pa.DataFrameSchema(errors, name=f"{spec.name}:errors", strict=False),
        warnings=pa.DataFrameSchema(warn, name=f"{spec.name}:warnings", strict=False),
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
