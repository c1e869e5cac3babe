"""Feature store tests: the SQL in creditrisk/features/sql run by real DuckDB.

Every group is checked on hand-built rows with the expected numbers worked out in the comments;
then the engine: declared columns, Parquet/in-memory parity, missing and empty bronze files,
input order, the SQL hash and the TOT_MISSING_COUNT column list.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_fixtures import ARROW_TYPES, canonical, sample_tables, write_bronze

from creditrisk.data.tables import tables
from creditrisk.features import (
    COLUMNS,
    FEATURES,
    GROUPS,
    SQL_DIR,
    bind_memory_sources,
    build_feature_store,
    categorical_features,
    column_names,
    compute_features,
    feature,
    feature_names,
    feature_query,
    feature_sql,
    group_columns,
    numeric_features,
    register_feature_views,
    sql_hash,
)

FEATURES_MD = Path(__file__).resolve().parents[2] / "shared" / "home_credit" / "FEATURES.md"
APPLICATION_COLUMNS = tables()["application_train"].columns


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def connection() -> Any:
    """One long-lived connection, as the REST service will keep: every call re-binds inputs."""
    con = duckdb.connect()
    yield con
    con.close()


def run(connection: duckdb.DuckDBPyConnection, **frames: Any) -> dict[int, dict[str, Any]]:
    """compute_features on the given tables -> {SK_ID_CURR: row as a dict, NULL as None}."""
    result = compute_features(frames, connection=connection)
    return {row["SK_ID_CURR"]: row for row in result.to_pylist()}


def applicants(*ids: int) -> pd.DataFrame:
    """Applicants with nothing but an id (and no label)."""
    return pd.DataFrame({"SK_ID_CURR": list(ids)})


def assert_same_table(left: pa.Table, right: pa.Table) -> None:
    """Same columns, types and values (NULL == NULL, NaN == NaN), rows in the same order."""
    assert left.schema.names == right.schema.names
    assert left.schema.types == right.schema.types
    pd.testing.assert_frame_equal(left.to_pandas(), right.to_pandas(), check_exact=True)


def sort_by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("SK_ID_CURR")


# --------------------------------------------------------------------------------------------
# (a) the catalog and the columns the SQL emits


def test_catalog_declares_each_column_once_with_a_consistent_kind() -> None:
    names = column_names()
    assert len(names) == len(set(names))
    assert names[:2] == ["SK_ID_CURR", "TARGET"]
    assert feature_names() == names[2:]
    assert set(categorical_features()) | set(numeric_features()) == set(feature_names())
    assert not set(categorical_features()) & set(numeric_features())
    for spec in COLUMNS:
        # categoricals stay strings and every string is a categorical; integers are BIGINT
        assert (spec.dtype == "VARCHAR") == (spec.kind == "categorical"), spec.name
        assert spec.dtype in ("BIGINT", "DOUBLE", "VARCHAR")
        assert spec.group in GROUPS
        assert len(spec.description) > 15, spec.name
    assert feature("AGE_YEARS").group == "application"
    with pytest.raises(KeyError, match="NOT_A_FEATURE"):
        feature("NOT_A_FEATURE")


def test_kept_application_columns_keep_their_raw_type() -> None:
    raw = tables()["application_train"].duckdb_types
    kept = [f for f in FEATURES if f.name in raw]
    assert len(kept) == 70  # FEATURES.md lists 70 raw application columns kept as-is
    for spec in kept:
        assert spec.dtype == raw[spec.name], spec.name


@pytest.mark.skipif(
    not FEATURES_MD.exists(), reason="shared/home_credit/FEATURES.md not beside repo"
)
def test_catalog_has_exactly_the_features_of_the_spec() -> None:
    tokens: set[str] = set()
    for token in re.findall(r"`([A-Z][A-Z0-9_{},]*)`", FEATURES_MD.read_text(encoding="utf-8")):
        braces = re.fullmatch(r"([A-Z0-9_]*)\{([A-Z0-9,]+)\}([A-Z0-9_]*)", token)
        if braces:
            tokens |= {braces[1] + part + braces[3] for part in braces[2].split(",")}
        else:
            tokens.add(token)
    tokens |= {f"FLAG_DOCUMENT_{i}" for i in range(2, 22)}  # "FLAG_DOCUMENT_2 … _21"
    history_columns = {
        c.name
        for stem, s in tables().items()
        if not stem.startswith("application")
        for c in s.columns
    }
    application_columns = {c.name for c in APPLICATION_COLUMNS}
    # Raw inputs of the history tables, the key, the label, STATUS codes and row-level helpers
    # appear in the spec's definitions but are not features.
    not_features = (history_columns - application_columns) | {
        "SK_ID_CURR", "TARGET", "C", "X", "PAYMENT_RATIO", "LATE_DAYS",
    }  # fmt: skip
    assert tokens - not_features == set(feature_names())


def test_sql_emits_the_declared_columns_and_types_on_empty_inputs() -> None:
    result = compute_features({})
    assert result.num_rows == 0
    assert result.schema.names == column_names()
    assert result.schema.types == [ARROW_TYPES[c.dtype] for c in COLUMNS]


def test_sql_emits_the_declared_columns_and_types_on_rows() -> None:
    with duckdb.connect() as con:
        bind_memory_sources(con, sample_tables())
        register_feature_views(con)
        store = con.sql("select * from feature_store")
        # DuckDB's own types, before any Arrow conversion
        assert store.columns == column_names()
        assert [str(t) for t in store.types] == [c.dtype for c in COLUMNS]
        for group in GROUPS:
            view = con.sql(f"select * from {group}_features")
            assert view.columns == group_columns(group), group
        assert len(store.fetchall()) == 3


def test_composed_query_equals_the_views(connection: duckdb.DuckDBPyConnection) -> None:
    via_views = compute_features(sample_tables(), connection=connection)
    composed = connection.sql(feature_query()).to_arrow_table()
    assert_same_table(sort_by_id(via_views), sort_by_id(composed))


# --------------------------------------------------------------------------------------------
# (b) every feature group on hand-built rows


def test_application_features(connection: duckdb.DuckDBPyConnection) -> None:
    first = {
        "SK_ID_CURR": 1,
        "TARGET": 0,
        "DAYS_BIRTH": -14600,  # 40 years
        "DAYS_EMPLOYED": -3650,  # 10 years
        "AMT_ANNUITY": 20000.0,
        "AMT_CREDIT": 400000.0,
        "AMT_GOODS_PRICE": 360000.0,
        "AMT_INCOME_TOTAL": 100000.0,
        "CNT_FAM_MEMBERS": 4.0,
        "CNT_CHILDREN": 2,
        "EXT_SOURCE_2": 0.6,
        "EXT_SOURCE_3": 0.3,
        "OWN_CAR_AGE": 5.0,
        "CODE_GENDER": "F",
        "NAME_CONTRACT_TYPE": "Cash loans",
        "FLAG_DOCUMENT_3": 1,
        "FLAG_DOCUMENT_8": 1,
        "FLAG_DOCUMENT_9": 0,
        "FLAG_MOBIL": 1,
        "FLAG_EMP_PHONE": 1,
        "FLAG_PHONE": 0,
        "REG_CITY_NOT_WORK_CITY": 1,
        "LIVE_CITY_NOT_WORK_CITY": 1,
        "REG_REGION_NOT_LIVE_REGION": 0,
    }
    second = {
        "SK_ID_CURR": 2,
        "TARGET": 1,
        "DAYS_BIRTH": -20000,
        "DAYS_EMPLOYED": 365243,  # the "not employed / pensioner" sentinel
        "AMT_ANNUITY": 1000.0,
        "AMT_CREDIT": 0.0,  # zero denominator
        "AMT_GOODS_PRICE": 500.0,
        "AMT_INCOME_TOTAL": 5000.0,
        "CNT_FAM_MEMBERS": 0.0,  # zero denominator
        "CNT_CHILDREN": 1,
    }
    fourth = {
        "SK_ID_CURR": 4,
        "TARGET": 0,
        "DAYS_BIRTH": 0,  # zero denominator
        "DAYS_EMPLOYED": -10,
        "AMT_ANNUITY": 10.0,
        "AMT_CREDIT": None,  # NULL denominator
        "AMT_GOODS_PRICE": 10.0,
        "AMT_INCOME_TOTAL": 0.0,  # zero denominator
        "CNT_FAM_MEMBERS": None,  # NULL denominator
        "CNT_CHILDREN": 0,
    }
    train = pd.DataFrame([first, second, fourth])
    # unlabelled applicant with only an id and a NULL DAYS_EMPLOYED; TARGET given here is ignored
    test = pd.DataFrame({"SK_ID_CURR": [3], "TARGET": [1], "DAYS_EMPLOYED": [None]})
    rows = run(connection, application_train=train, application_test=test)
    one, two, three, four = rows[1], rows[2], rows[3], rows[4]

    assert (one["TARGET"], two["TARGET"], three["TARGET"]) == (0, 1, None)
    # kept as-is
    assert one["CODE_GENDER"] == "F"
    assert one["NAME_CONTRACT_TYPE"] == "Cash loans"
    assert one["AMT_CREDIT"] == 400000.0
    assert one["DAYS_EMPLOYED"] == -3650
    assert two["DAYS_EMPLOYED"] == 365243  # the raw value stays, the derived ones handle it

    assert one["AGE_YEARS"] == pytest.approx(40.0)  # 14600 / 365
    assert one["DAYS_EMPLOYED_ANOMALY"] == 0
    assert one["EMPLOYED_YEARS"] == pytest.approx(10.0)  # 3650 / 365
    assert one["EMPLOYMENT_YEARS_TO_AGE"] == pytest.approx(0.25)  # -3650 / -14600
    assert one["PAYMENT_RATE"] == pytest.approx(0.05)  # 20000 / 400000
    assert one["CREDIT_TO_INCOME"] == pytest.approx(4.0)  # 400000 / 100000
    assert one["ANNUITY_TO_INCOME"] == pytest.approx(0.2)  # 20000 / 100000
    assert one["GOODS_TO_CREDIT"] == pytest.approx(0.9)  # 360000 / 400000
    assert one["INCOME_PER_PERSON"] == pytest.approx(25000.0)  # 100000 / 4
    assert one["CHILDREN_RATIO"] == pytest.approx(0.5)  # 2 / 4
    assert (one["EXT_SOURCE_1_IS_MISSING"], one["EXT_SOURCE_2_IS_MISSING"]) == (1, 0)
    assert (one["EXT_SOURCE_3_IS_MISSING"], one["OWN_CAR_AGE_IS_MISSING"]) == (0, 0)
    assert one["DOC_COUNT"] == 2  # documents 3 and 8; document 9 is 0, the rest NULL
    assert one["CONTACT_COUNT"] == 2  # mobile + employer phone; home phone 0, others NULL
    assert one["ADDR_MISMATCH_SUM"] == 2  # the two city/work mismatches
    # 23 of the 121 form columns are filled for applicant 1 (TARGET is not a form column)
    assert one["TOT_MISSING_COUNT"] == 121 - 23 == 121 - (len(first) - 1)

    # sentinel: flagged, employment length unknown
    assert two["DAYS_EMPLOYED_ANOMALY"] == 1
    assert two["EMPLOYED_YEARS"] is None
    assert two["EMPLOYMENT_YEARS_TO_AGE"] is None
    # zero or NULL denominators give NULL, never inf or NaN
    assert two["PAYMENT_RATE"] is None  # credit 0
    assert two["GOODS_TO_CREDIT"] is None  # credit 0
    assert two["INCOME_PER_PERSON"] is None  # family size 0
    assert two["CHILDREN_RATIO"] is None  # family size 0
    assert two["CREDIT_TO_INCOME"] == 0.0  # 0 / 5000: a zero numerator is a value
    assert two["ANNUITY_TO_INCOME"] == pytest.approx(0.2)  # 1000 / 5000
    assert four["CREDIT_TO_INCOME"] is None  # income 0
    assert four["ANNUITY_TO_INCOME"] is None  # income 0
    assert four["PAYMENT_RATE"] is None  # credit NULL
    assert four["GOODS_TO_CREDIT"] is None  # credit NULL
    assert four["INCOME_PER_PERSON"] is None  # family size NULL
    assert four["CHILDREN_RATIO"] is None  # family size NULL
    assert four["EMPLOYMENT_YEARS_TO_AGE"] is None  # DAYS_BIRTH 0
    assert four["EMPLOYED_YEARS"] == pytest.approx(10 / 365)
    assert (two["EXT_SOURCE_1_IS_MISSING"], two["OWN_CAR_AGE_IS_MISSING"]) == (1, 1)
    # all flags NULL count as 0
    assert (two["DOC_COUNT"], two["CONTACT_COUNT"], two["ADDR_MISMATCH_SUM"]) == (0, 0, 0)

    # NULL DAYS_EMPLOYED is not the sentinel; NULL DAYS_BIRTH gives NULL age
    assert three["DAYS_EMPLOYED_ANOMALY"] == 0
    assert three["EMPLOYED_YEARS"] is None
    assert three["AGE_YEARS"] is None
    assert three["TOT_MISSING_COUNT"] == 120  # everything but SK_ID_CURR is empty


def test_bureau_features(connection: duckdb.DuckDBPyConnection) -> None:
    bureau = pd.DataFrame(
        {
            "SK_ID_CURR": [1, 1, 1, 2, 4],
            "SK_ID_BUREAU": [10, 11, 12, 20, 40],
            "CREDIT_ACTIVE": ["Active", "Closed", "Active", "Sold", None],
            "DAYS_CREDIT": [-100, -500, -50, -10, -1],
            "DAYS_CREDIT_UPDATE": [-10, -400, -20, -5, -1],
            "AMT_CREDIT_SUM": [1000.0, 2000.0, 0.0, 100.0, None],
            "AMT_CREDIT_SUM_DEBT": [500.0, 0.0, 300.0, 50.0, None],
            "AMT_CREDIT_SUM_LIMIT": [0.0, None, 200.0, None, None],
            "AMT_CREDIT_SUM_OVERDUE": [0.0, 50.0, None, 0.0, None],
            "AMT_CREDIT_MAX_OVERDUE": [100.0, None, 250.0, None, None],
            "CNT_CREDIT_PROLONG": [1, 0, 2, None, None],
        }
    )
    rows = run(connection, application_train=applicants(1, 2, 3, 4), bureau=bureau)

    one = rows[1]
    assert one["BUREAU_N_ACTIVE"] == 2  # credits 10 and 12
    assert one["BUREAU_N_CLOSED"] == 1  # credit 11
    assert one["BUREAU_LAST_CREDIT_DAYS"] == -50  # max(-100, -500, -50)
    assert one["BUREAU_LAST_UPDATE_DAYS"] == -10  # max(-10, -400, -20)
    assert one["BUREAU_TOTAL_DEBT"] == pytest.approx(800.0)  # 500 + 0 + 300
    assert one["BUREAU_TOTAL_CREDIT"] == pytest.approx(3000.0)  # 1000 + 2000 + 0
    assert one["BUREAU_LIMIT_SUM"] == pytest.approx(200.0)  # 0 + NULL (skipped) + 200
    # debt / credit per credit: 500/1000 = 0.5, 0/2000 = 0, 300/0 = NULL (skipped) -> mean 0.25
    assert one["BUREAU_UTIL_MEAN"] == pytest.approx(0.25)
    assert one["BUREAU_OVERDUE_SUM"] == pytest.approx(50.0)  # 0 + 50 + NULL
    assert one["BUREAU_MAX_OVERDUE"] == pytest.approx(250.0)  # max(100, NULL, 250)
    assert one["BUREAU_PROLONG_SUM"] == 3  # 1 + 0 + 2

    two = rows[2]  # one 'Sold' credit: rows exist but none active or closed -> 0, not NULL
    assert (two["BUREAU_N_ACTIVE"], two["BUREAU_N_CLOSED"]) == (0, 0)
    assert two["BUREAU_UTIL_MEAN"] == pytest.approx(0.5)  # 50 / 100
    assert two["BUREAU_PROLONG_SUM"] is None  # the only value is NULL
    assert two["BUREAU_MAX_OVERDUE"] is None

    four = rows[4]  # a credit whose status is NULL counts as not active
    assert (four["BUREAU_N_ACTIVE"], four["BUREAU_N_CLOSED"]) == (0, 0)
    assert four["BUREAU_UTIL_MEAN"] is None  # credit amount NULL

    # no bureau rows at all: every bureau feature is NULL, counts included (FEATURES.md:
    # "counts are 0 only where stated", and BUREAU_N_ACTIVE's 0 is stated for applicants with rows)
    three = rows[3]
    for name in group_columns("bureau")[1:]:
        assert three[name] is None, name


def test_bureau_balance_features(connection: duckdb.DuckDBPyConnection) -> None:
    bureau = pd.DataFrame(
        # credit 11 is listed twice: it is still one credit of applicant 1
        {
            "SK_ID_CURR": [1, 1, 1, 1, 2, 3, 5, 6],
            "SK_ID_BUREAU": [10, 11, 11, 12, 20, 30, 50, 60],
        }
    )
    months = [
        # credit 10: buckets 0, 0, 1, 2, 0 -> delinquent months -2 and -3
        (10, 0, "C"), (10, -1, "0"), (10, -2, "1"), (10, -3, "2"), (10, -4, "X"),
        # credit 11: buckets 5, none (NULL status), 0, 0 -> delinquent month -5
        (11, -5, "5"), (11, -6, None), (11, -7, "X"), (11, -8, "0"),
        # credit 12: closed throughout, never delinquent
        (12, 0, "C"), (12, -1, "C"),
        # credit 20 (applicant 2): never delinquent
        (20, 0, "X"), (20, -1, "C"), (20, -2, "0"),
        # credit 50 (applicant 5) only closed months, credit 60 (applicant 6) only unknown ones
        (50, 0, "C"), (50, -1, "C"), (60, 0, "X"),
        # credit 99 is not in bureau: it reaches no applicant
        (99, 0, "5"),
    ]  # fmt: skip
    bureau_balance = pd.DataFrame(months, columns=["SK_ID_BUREAU", "MONTHS_BALANCE", "STATUS"])
    rows = run(
        connection,
        application_train=applicants(1, 2, 3, 4, 5, 6),
        bureau=bureau,
        bureau_balance=bureau_balance,
    )

    one = rows[1]
    # shares per credit: 10 -> 2/5 = 0.4, 11 -> 1/4 = 0.25 (the NULL status month counts in the
    # denominator as not delinquent), 12 -> 0/2 = 0; mean over credits = 0.65 / 3
    assert one["BB_DELINQ_SHARE_MEAN"] == pytest.approx(0.65 / 3)
    assert one["BB_WORST_STATUS_MAX"] == 5  # credit 11's '5'
    # months since last delinquency: 10 -> -max(-2, -3) = 2, 11 -> 5, 12 -> NULL; min = 2
    assert one["BB_MONTHS_SINCE_LAST_DELINQ_MIN"] == 2

    two = rows[2]  # never delinquent: X and C count as 0
    assert two["BB_DELINQ_SHARE_MEAN"] == 0.0
    assert two["BB_WORST_STATUS_MAX"] == 0
    assert two["BB_MONTHS_SINCE_LAST_DELINQ_MIN"] is None

    for applicant in (rows[5], rows[6]):  # C and X are bucket 0, not "no bucket"
        assert (applicant["BB_WORST_STATUS_MAX"], applicant["BB_DELINQ_SHARE_MEAN"]) == (0, 0.0)

    # 3 has a bureau credit without monthly rows, 4 has no bureau credit at all
    for applicant in (rows[3], rows[4]):
        for name in group_columns("bureau_balance")[1:]:
            assert applicant[name] is None, name


def test_previous_application_features(connection: duckdb.DuckDBPyConnection) -> None:
    previous = pd.DataFrame(
        {
            "SK_ID_PREV": [101, 102, 103, 104, 105, 201, 401, 401],
            "SK_ID_CURR": [1, 1, 1, 1, 1, 2, 4, 4],
            "NAME_CONTRACT_STATUS": [
                "Approved", "Refused", "Canceled", "Unused offer", "Approved",
                "Refused", "Approved", "Approved",
            ],
            "AMT_APPLICATION": [100.0, 50.0, 0.0, 30.0, 200.0, 10.0, 1.0, 1.0],
            "AMT_CREDIT": [80.0, 0.0, None, 40.0, 250.0, 10.0, 1.0, 1.0],
            "AMT_DOWN_PAYMENT": [8.0, None, None, 0.0, None, None, None, None],
            "CNT_PAYMENT": [12.0, None, 24.0, 6.0, 18.0, None, None, None],
            "DAYS_DECISION": [-100, -300, -50, -700, -20, -5, -1, -1],
        }
    )  # fmt: skip
    rows = run(connection, application_train=applicants(1, 2, 3, 4), previous_application=previous)

    one = rows[1]
    assert one["PREV_TOTAL"] == 5
    assert (one["PREV_APPROVED"], one["PREV_REFUSED"]) == (2, 1)
    assert (one["PREV_CANCELLED"], one["PREV_UNUSED"]) == (1, 1)
    # asked / granted: 100/80 = 1.25, 50/0 = NULL, 0/NULL = NULL, 30/40 = 0.75, 200/250 = 0.8
    assert one["PREV_APP_CREDIT_RATIO_MEAN"] == pytest.approx((1.25 + 0.75 + 0.8) / 3)
    # down payment / credit: 8/80 = 0.1, NULL, NULL, 0/40 = 0, NULL -> mean 0.05
    assert one["PREV_DOWNPAYMENT_RATE_MEAN"] == pytest.approx(0.05)
    assert one["PREV_CNT_PAYMENT_MEAN"] == pytest.approx(15.0)  # (12 + 24 + 6 + 18) / 4
    assert one["PREV_LAST_DECISION_DAYS"] == -20
    assert one["PREV_EARLIEST_DECISION_DAYS"] == -700
    assert one["PREV_APPROVAL_RATE"] == pytest.approx(0.4)  # 2 / 5
    assert one["PREV_REFUSED_RATE"] == pytest.approx(0.2)  # 1 / 5

    two = rows[2]  # previous applications but none approved -> 0, not NULL
    assert (two["PREV_TOTAL"], two["PREV_APPROVED"], two["PREV_REFUSED"]) == (1, 0, 1)
    assert (two["PREV_APPROVAL_RATE"], two["PREV_REFUSED_RATE"]) == (0.0, 1.0)
    assert two["PREV_CNT_PAYMENT_MEAN"] is None  # the only term is NULL

    # PREV_TOTAL counts distinct SK_ID_PREV, the status counts count rows (FEATURES.md, literally)
    four = rows[4]
    assert (four["PREV_TOTAL"], four["PREV_APPROVED"]) == (1, 2)
    assert four["PREV_APPROVAL_RATE"] == pytest.approx(2.0)

    for name in group_columns("previous_application")[1:]:
        assert rows[3][name] is None, name


def test_installments_payments_features(connection: duckdb.DuckDBPyConnection) -> None:
    instalments = pd.DataFrame(
        [
            # applicant 1, credit 1001: ratio 1.0, late -5 (paid early)
            (1001, 1, 100.0, 100.0, -30.0, -35.0),
            # ratio 0.5, late 40 (> 30: severely late)
            (1001, 1, 100.0, 50.0, -60.0, -20.0),
            # instalment 0 -> ratio NULL; late 10
            (1001, 1, 0.0, 10.0, -90.0, -80.0),
            # ratio 1.0; payment date NULL -> late NULL, counted as not late
            (1001, 1, 100.0, 100.0, -120.0, None),
            # applicant 1, credit 1002, one payment: ratio 0.5, late 0 (on time, not late)
            (1002, 1, 200.0, 100.0, -10.0, -10.0),
            # applicant 2, credit 9999 (absent from previous_application): ratio 2.0, late 31
            (9999, 2, 100.0, 200.0, -40.0, -9.0),
            # applicant 4: exactly 30 days late -> late, but not more than 30
            (4444, 4, 100.0, 100.0, -50.0, -20.0),
        ],
        columns=[
            "SK_ID_PREV", "SK_ID_CURR", "AMT_INSTALMENT", "AMT_PAYMENT",
            "DAYS_INSTALMENT", "DAYS_ENTRY_PAYMENT",
        ],
    )  # fmt: skip
    previous = pd.DataFrame({"SK_ID_PREV": [1001, 1002], "SK_ID_CURR": [1, 1]})
    rows = run(
        connection,
        application_train=applicants(1, 2, 3, 4),
        installments_payments=instalments,
        previous_application=previous,
    )

    one = rows[1]
    # credit 1001: ratios 1, 0.5, 1 -> mean 5/6; sample std: deviations 1/6, -1/3, 1/6,
    # squares sum to 1/36 + 1/9 + 1/36 = 1/6, / (3 - 1) = 1/12 -> std = sqrt(1/12)
    # credit 1002: mean 0.5, std NULL (one row) -> skipped in the mean over credits
    assert one["INSTAL_PAYMENT_RATIO_MEAN"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert one["INSTAL_PAYMENT_RATIO_STD"] == pytest.approx(math.sqrt(1 / 12))
    # late days: credit 1001 mean (-5 + 40 + 10) / 3 = 15, credit 1002 mean 0 -> 7.5
    assert one["INSTAL_LATE_MEAN"] == pytest.approx(7.5)
    assert one["INSTAL_LATE_MAX"] == pytest.approx(40.0)
    # late share: 1001 -> 2 of 4 rows (40, 10; the NULL row counts as not late), 1002 -> 0
    assert one["INSTAL_LATE_SHARE"] == pytest.approx((0.5 + 0.0) / 2)
    # severe (> 30 days): 1001 -> 1 of 4, 1002 -> 0
    assert one["INSTAL_SEVERE_LATE_SHARE"] == pytest.approx((0.25 + 0.0) / 2)

    two = rows[2]  # its credit is not in previous_application, and still counts
    assert two["INSTAL_PAYMENT_RATIO_MEAN"] == pytest.approx(2.0)
    assert two["INSTAL_PAYMENT_RATIO_STD"] is None  # sample std of one row
    assert two["INSTAL_LATE_MAX"] == pytest.approx(31.0)
    assert (two["INSTAL_LATE_SHARE"], two["INSTAL_SEVERE_LATE_SHARE"]) == (1.0, 1.0)

    assert (rows[4]["INSTAL_LATE_SHARE"], rows[4]["INSTAL_SEVERE_LATE_SHARE"]) == (1.0, 0.0)

    for name in group_columns("installments_payments")[1:]:
        assert rows[3][name] is None, name


def test_credit_card_balance_features(connection: duckdb.DuckDBPyConnection) -> None:
    months = pd.DataFrame(
        [
            # card 501: util 0.5, coverage 300/100 = 3 (met), cash 100/1000 = 0.1, no DPD
            (501, 1, -1, 500.0, 1000, 100.0, 300.0, 100.0, 0, 0),
            # util 1.2, coverage 0.5 (not met), cash 0, DPD 10
            (501, 1, -2, 1200.0, 1000, 0.0, 50.0, 100.0, 10, 0),
            # limit 0 and minimum 0: util, coverage, cash NULL; coverage NULL counts as not met;
            # SK_DPD NULL and SK_DPD_DEF 0 -> condition NULL -> not past due
            (501, 1, -3, 0.0, 0, None, 0.0, 0.0, None, 0),
            # card 502: util 0.5, coverage exactly 1 (met), cash 0.25, past due through DPD_DEF
            (502, 1, -1, 100.0, 200, 50.0, 100.0, 100.0, 0, 2),
        ],
        columns=[
            "SK_ID_PREV", "SK_ID_CURR", "MONTHS_BALANCE", "AMT_BALANCE",
            "AMT_CREDIT_LIMIT_ACTUAL", "AMT_DRAWINGS_ATM_CURRENT", "AMT_PAYMENT_TOTAL_CURRENT",
            "AMT_INST_MIN_REGULARITY", "SK_DPD", "SK_DPD_DEF",
        ],
    )  # fmt: skip
    rows = run(connection, application_train=applicants(1, 2), credit_card_balance=months)

    one = rows[1]
    # card 501: util mean (0.5 + 1.2) / 2 = 0.85, max 1.2; card 502: 0.5 / 0.5
    assert one["CC_UTIL_MEAN"] == pytest.approx((0.85 + 0.5) / 2)
    assert one["CC_UTIL_MAX"] == pytest.approx(1.2)
    # coverage: 501 -> (3 + 0.5) / 2 = 1.75, 502 -> 1
    assert one["CC_MINPAY_COVERAGE_MEAN"] == pytest.approx((1.75 + 1.0) / 2)
    # minimum met: 501 -> 1 of 3 months, 502 -> 1 of 1
    assert one["CC_MINPAY_MET_SHARE"] == pytest.approx((1 / 3 + 1.0) / 2)
    # past due: 501 -> 1 of 3 months, 502 -> 1 of 1
    assert one["CC_DPD_ANY_SHARE"] == pytest.approx((1 / 3 + 1.0) / 2)
    assert one["CC_DPD_MAX"] == 10
    # cash: 501 -> (0.1 + 0) / 2 = 0.05, 502 -> 0.25
    assert one["CC_CASH_RATIO_MEAN"] == pytest.approx((0.05 + 0.25) / 2)

    for name in group_columns("credit_card_balance")[1:]:
        assert rows[2][name] is None, name


def test_pos_cash_balance_features(connection: duckdb.DuckDBPyConnection) -> None:
    months = pd.DataFrame(
        [
            # loan 601: past due in 1 of 3 months (-2); last Active month -1
            (601, 1, -1, "Active", 0, 0),
            (601, 1, -2, "Active", 5, 0),
            (601, 1, -3, "Signed", 0, None),  # 0 > 0 or NULL > 0 -> NULL -> not past due
            # loan 602: never past due; last Active month -12
            (602, 1, -10, "Completed", 0, 0),
            (602, 1, -12, "Active", 0, 0),
            # applicant 2, loan 603: never Active, DPD unknown
            (603, 2, -1, "Completed", None, None),
        ],
        columns=[
            "SK_ID_PREV", "SK_ID_CURR", "MONTHS_BALANCE", "NAME_CONTRACT_STATUS",
            "SK_DPD", "SK_DPD_DEF",
        ],
    )  # fmt: skip
    rows = run(connection, application_train=applicants(1, 2, 3), POS_CASH_balance=months)

    one = rows[1]
    assert one["POS_DPD_ANY_SHARE"] == pytest.approx((1 / 3 + 0.0) / 2)
    assert one["POS_DPD_MAX"] == 5
    # months since last Active: 601 -> 1, 602 -> 12; max over loans = 12
    assert one["POS_MONTHS_SINCE_LAST_ACTIVE"] == 12

    two = rows[2]
    assert two["POS_DPD_ANY_SHARE"] == 0.0  # one month, condition NULL -> not past due
    assert two["POS_DPD_MAX"] is None
    assert two["POS_MONTHS_SINCE_LAST_ACTIVE"] is None  # never Active

    for name in group_columns("pos_cash_balance")[1:]:
        assert rows[3][name] is None, name


def test_rebinding_a_connection_drops_the_previous_request(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    bureau = pd.DataFrame({"SK_ID_CURR": [1], "SK_ID_BUREAU": [10], "CREDIT_ACTIVE": ["Active"]})
    assert run(connection, application=applicants(1), bureau=bureau)[1]["BUREAU_N_ACTIVE"] == 1
    # the next request has no bureau table: nothing of the previous one may leak into it
    assert run(connection, application=applicants(1))[1]["BUREAU_N_ACTIVE"] is None


# --------------------------------------------------------------------------------------------
# in-memory inputs: missing, extra, wrong-typed columns; order; bad keys


def test_inputs_are_conformed_to_the_canonical_columns(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    train = pa.table(
        {
            "SK_ID_CURR": pa.array(["7"]),  # string id -> BIGINT
            "AMT_CREDIT": pa.array(["1000.5"]),  # string amount -> DOUBLE
            "AMT_ANNUITY": pa.array([100], pa.int32()),  # int32 -> DOUBLE
            "DAYS_BIRTH": pa.array([-3650.0]),  # float -> BIGINT
            "NOT_A_COLUMN": pa.array([1]),  # ignored
        }
    )
    rows = run(connection, application_train=train)
    assert rows[7]["AMT_CREDIT"] == 1000.5
    assert rows[7]["PAYMENT_RATE"] == pytest.approx(100 / 1000.5)
    assert rows[7]["DAYS_BIRTH"] == -3650
    assert rows[7]["AGE_YEARS"] == pytest.approx(10.0)

    with pytest.raises(ValueError, match="canonical type"):
        run(connection, application_train=pd.DataFrame({"SK_ID_CURR": [1], "AMT_CREDIT": ["x"]}))


def test_applicants_keep_their_input_order(connection: duckdb.DuckDBPyConnection) -> None:
    ids = [30, 5, 1000, 7, 12, 1]
    frames = {
        "application_train": applicants(*ids[:4]),
        "application_test": applicants(*ids[4:]),
        "bureau": pd.DataFrame({"SK_ID_CURR": [7, 5], "SK_ID_BUREAU": [1, 2]}),
    }
    result = compute_features(frames, connection=connection)
    assert result.column("SK_ID_CURR").to_pylist() == ids
    # "application" rows come first, then train, then test
    frames["application"] = applicants(99)
    result = compute_features(frames, connection=connection)
    assert result.column("SK_ID_CURR").to_pylist() == [99, *ids]


def test_input_order_does_not_depend_on_the_order_duckdb_returns() -> None:
    # DuckDB keeps small inputs in order by itself but promises nothing for joins and
    # aggregates (on large inputs with several threads it does reorder): simulate that.
    ids = [30, 5, 1000, 7, 12, 1]
    with duckdb.connect() as con:
        compute_features({}, connection=con)  # binds the inputs, registers the views
        con.execute(
            "create or replace temp view feature_store as select * from ("
            + feature_sql("feature_store")
            + ") as store order by SK_ID_CURR desc"
        )
        result = compute_features({"application": applicants(*ids)}, connection=con)
    assert result.column("SK_ID_CURR").to_pylist() == ids


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ({"applicationtrain": applicants(1)}, "unknown table"),
        ({"application_train": applicants(1, 1)}, "distinct"),
        ({"application_train": pd.DataFrame({"SK_ID_CURR": [1.0, None]})}, "no SK_ID_CURR"),
    ],
)
def test_bad_inputs_fail_loudly(frames: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_features(frames)


# --------------------------------------------------------------------------------------------
# (c) parity, (d) missing and empty bronze files


def test_parquet_build_equals_in_memory_computation(tmp_path: Path) -> None:
    frames = sample_tables()
    bronze = write_bronze(tmp_path / "bronze", frames)
    summary = build_feature_store(bronze, tmp_path / "features" / "store.parquet", threads=1)

    from_parquet = pq.read_table(summary.output)
    in_memory = compute_features(frames)
    assert_same_table(sort_by_id(from_parquet), sort_by_id(in_memory))
    assert from_parquet.column("SK_ID_CURR").to_pylist() == [1, 2, 3]  # sorted by SK_ID_CURR

    assert (summary.rows, summary.n_labelled) == (3, 2)
    assert summary.n_features == len(FEATURES)
    assert list(summary.columns) == column_names()
    assert summary.sql_hash == sql_hash()
    assert summary.bytes == summary.output.stat().st_size > 0
    assert summary.as_dict()["output"] == str(summary.output)
    assert [p.name for p in summary.output.parent.iterdir()] == ["store.parquet"]  # no temp left


def test_missing_and_empty_bronze_files_count_as_empty_tables(tmp_path: Path) -> None:
    bronze = tmp_path / "bronze"
    bronze.mkdir()
    train_spec = tables()["application_train"]
    pq.write_table(
        canonical(pd.DataFrame({"SK_ID_CURR": [1, 2], "TARGET": [0, 1]}), train_spec),
        bronze / "application_train.parquet",
    )
    # an empty bureau file (what ingest writes for a header-only table) ...
    pq.write_table(
        canonical(pd.DataFrame({"SK_ID_CURR": []}), tables()["bureau"]), bronze / "bureau.parquet"
    )
    # ... a POS file with only some columns and an extra one; every other file is missing
    pq.write_table(
        pa.table({"SK_ID_CURR": [2], "SK_ID_PREV": [5], "SK_DPD": [4], "EXTRA": ["x"]}),
        bronze / "POS_CASH_balance.parquet",
    )
    summary = build_feature_store(bronze, tmp_path / "store.parquet")
    store = {row["SK_ID_CURR"]: row for row in pq.read_table(summary.output).to_pylist()}

    assert (summary.rows, summary.n_labelled) == (2, 2)
    assert store[1]["BUREAU_N_ACTIVE"] is None
    assert store[1]["TOT_MISSING_COUNT"] == 120
    assert store[2]["POS_DPD_MAX"] == 4
    assert store[2]["POS_DPD_ANY_SHARE"] == 1.0  # SK_DPD 4 > 0
    assert store[2]["POS_MONTHS_SINCE_LAST_ACTIVE"] is None  # status column absent -> NULL


def test_empty_bronze_folder_gives_an_empty_store_with_the_declared_schema(
    tmp_path: Path,
) -> None:
    summary = build_feature_store(tmp_path / "nothing-here", tmp_path / "store.parquet")
    schema = pq.read_schema(summary.output)
    assert (summary.rows, summary.n_labelled) == (0, 0)
    assert schema.names == column_names()
    assert schema.types == [ARROW_TYPES[c.dtype] for c in COLUMNS]


def test_a_failed_build_leaves_the_previous_store_untouched(tmp_path: Path) -> None:
    bronze = write_bronze(tmp_path / "bronze", sample_tables())
    output = tmp_path / "store.parquet"
    output.write_bytes(b"previous store")
    (bronze / "bureau.parquet").write_bytes(b"not parquet")
    with pytest.raises(duckdb.Error):
        build_feature_store(bronze, output)
    assert output.read_bytes() == b"previous store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bronze", "store.parquet"]


# --------------------------------------------------------------------------------------------
# (e) the SQL hash, (g) the TOT_MISSING_COUNT column list


def test_sql_hash_pins_the_sql_files(tmp_path: Path) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, copy)
    assert sql_hash(copy) == sql_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", sql_hash())

    bureau = copy / "bureau.sql"
    bureau.write_text(bureau.read_text().replace("'Active'", "'ACTIVE'"))
    changed = sql_hash(copy)
    assert changed != sql_hash()

    (copy / "bureau.sql").rename(copy / "credit_bureau.sql")  # same bytes, other name
    assert sql_hash(copy) not in (changed, sql_hash())


def test_tot_missing_count_lists_every_raw_application_column_but_target() -> None:
    sql = (SQL_DIR / "application.sql").read_text()
    block = sql[sql.index("completeness as (") : sql.index("as TOT_MISSING_COUNT")]
    listed = re.findall(r"case when (\w+) is null then 1 else 0 end", block)
    expected = [c.name for c in APPLICATION_COLUMNS if c.name != "TARGET"]
    assert listed == expected
    assert len(listed) == 121


def test_tot_missing_count_counts_each_column(connection: duckdb.DuckDBPyConnection) -> None:
    value = {"BIGINT": 1, "DOUBLE": 1.0, "VARCHAR": "x"}
    complete = {c.name: value[c.duckdb_type] for c in APPLICATION_COLUMNS}
    rows = [{**complete, "SK_ID_CURR": 0}]
    # applicant i has every column but the i-th one (SK_ID_CURR is the key, TARGET the label)
    others = [c for c in APPLICATION_COLUMNS if c.name not in ("SK_ID_CURR", "TARGET")]
    for i, column in enumerate(others, start=1):
        rows.append({**complete, "SK_ID_CURR": i, column.name: None})
    train = pa.Table.from_pylist(
        rows,
        schema=pa.schema([(c.name, ARROW_TYPES[c.duckdb_type]) for c in APPLICATION_COLUMNS]),
    )
    unlabelled = pa.Table.from_pylist([{**complete, "SK_ID_CURR": 1000, "TARGET": None}])
    result = run(connection, application_train=train, application_test=unlabelled)

    assert result[0]["TOT_MISSING_COUNT"] == 0
    assert result[1000]["TOT_MISSING_COUNT"] == 0  # a missing label is not a missing field
    for i, column in enumerate(others, start=1):
        assert result[i]["TOT_MISSING_COUNT"] == 1, column.name
