"""The feature catalog: every column of the feature store, declared once.

Each column has a name, a DuckDB type, a description a loan officer can read (reason codes quote
it), the relation it comes from, its feature group (= the SQL file that computes it) and its
kind. The SQL in ``sql/`` must emit exactly these columns, in this order, with these types; a
test and :func:`creditrisk.features.engine.build_feature_store` check it.

Conventions (from ``FEATURES.md``): ratios are NULL when the denominator is 0 or NULL; aggregates
over an applicant with no rows in the source table are NULL, counts included (FEATURES.md states
no count that is 0 for an applicant without rows); a *share* counts every row in its denominator
and a row whose condition is NULL as not meeting it. Integers are BIGINT throughout.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

DType = Literal["BIGINT", "DOUBLE", "VARCHAR"]
Kind = Literal["id", "target", "numeric", "categorical", "flag"]

#: Folder of the feature SQL, one SELECT per file.
SQL_DIR = Path(__file__).with_name("sql")

#: Feature groups in output order; each is computed by ``sql/<group>.sql``.
GROUPS: tuple[str, ...] = (
    "application",
    "bureau",
    "bureau_balance",
    "previous_application",
    "installments_payments",
    "credit_card_balance",
    "pos_cash_balance",
)

ID_COLUMN = "SK_ID_CURR"
TARGET_COLUMN = "TARGET"

# Shared wording, so every count and share says the same thing about applicants without rows.
_NO_BUREAU = "NULL when the applicant has no credit-bureau records"
_NO_BB = "NULL when none of the applicant's bureau credits has monthly status records"
_NO_PREV = "NULL when the applicant has no previous Home Credit applications"
_NO_INSTAL = "NULL when the applicant has no instalment payment records"
_NO_CARD = "NULL when the applicant has no credit-card history"
_NO_POS = "NULL when the applicant has no point-of-sale or cash loan history"


@dataclass(frozen=True)
class FeatureSpec:
    """One column of the feature store.

    Attributes:
        name: Column name as the SQL emits it.
        dtype: DuckDB type of the column.
        description: Plain-language meaning, including units and when the value is NULL.
        source_table: Relation the value is computed from (``application`` is
            application_train UNION ALL application_test).
        group: Feature group, i.e. the SQL file (``sql/<group>.sql``) that computes it.
        kind: ``id`` and ``target`` for the key and label; otherwise how a model should treat it.
    """

    name: str
    dtype: DType
    description: str
    source_table: str
    group: str
    kind: Kind


def _application(name: str, dtype: DType, kind: Kind, description: str) -> FeatureSpec:
    return FeatureSpec(name, dtype, description, "application", "application", kind)


def _history(group: str, name: str, dtype: DType, kind: Kind, description: str) -> FeatureSpec:
    return FeatureSpec(name, dtype, description, group, group, kind)


def _numeric_group(group: str, rows: tuple[tuple[str, str, str], ...]) -> tuple[FeatureSpec, ...]:
    """Numeric features of one history group from (name, dtype, description) rows."""
    return tuple(
        _history(group, name, cast(DType, dtype), "numeric", text) for name, dtype, text in rows
    )


_ADDRESS_FLAGS = (
    (
        "REG_REGION_NOT_LIVE_REGION",
        "permanent address and contact address are in different regions",
    ),
    ("REG_REGION_NOT_WORK_REGION", "permanent address and work address are in different regions"),
    ("LIVE_REGION_NOT_WORK_REGION", "contact address and work address are in different regions"),
    ("REG_CITY_NOT_LIVE_CITY", "permanent address and contact address are in different cities"),
    ("REG_CITY_NOT_WORK_CITY", "permanent address and work address are in different cities"),
    ("LIVE_CITY_NOT_WORK_CITY", "contact address and work address are in different cities"),
)
_SOCIAL_CIRCLE = (
    (
        "OBS_30_CNT_SOCIAL_CIRCLE",
        "People in the client's social circle with a 30-day payment record",
    ),
    ("DEF_30_CNT_SOCIAL_CIRCLE", "People in the client's social circle who were 30 days past due"),
    (
        "OBS_60_CNT_SOCIAL_CIRCLE",
        "People in the client's social circle with a 60-day payment record",
    ),
    ("DEF_60_CNT_SOCIAL_CIRCLE", "People in the client's social circle who were 60 days past due"),
)
_BUREAU_ENQUIRIES = (
    ("HOUR", "in the hour before the application"),
    ("DAY", "in the day before the application (excluding the last hour)"),
    ("WEEK", "in the week before the application (excluding the last day)"),
    ("MON", "in the month before the application (excluding the last week)"),
    ("QRT", "in the 3 months before the application (excluding the last month)"),
    ("YEAR", "in the year before the application (excluding the last 3 months)"),
)
_CONTACT_FLAGS = (
    ("FLAG_MOBIL", "The client gave a mobile phone number"),
    ("FLAG_EMP_PHONE", "The client gave an employer phone number"),
    ("FLAG_WORK_PHONE", "The client gave a work phone number"),
    ("FLAG_CONT_MOBILE", "The client's mobile phone was reachable"),
    ("FLAG_PHONE", "The client gave a home phone number"),
    ("FLAG_EMAIL", "The client gave an e-mail address"),
)

#: Raw application columns passed through unchanged, in FEATURES.md order.
_KEPT: tuple[FeatureSpec, ...] = (
    *(
        _application(
            f"EXT_SOURCE_{i}",
            "DOUBLE",
            "numeric",
            f"External credit score {i} (normalised, higher = lower risk); NULL when unavailable",
        )
        for i in (1, 2, 3)
    ),
    _application("AMT_ANNUITY", "DOUBLE", "numeric", "Regular instalment (annuity) of the loan"),
    _application("AMT_CREDIT", "DOUBLE", "numeric", "Credit amount of the loan applied for"),
    _application(
        "AMT_GOODS_PRICE",
        "DOUBLE",
        "numeric",
        "Price of the goods the loan pays for (consumer loans)",
    ),
    _application("AMT_INCOME_TOTAL", "DOUBLE", "numeric", "Declared income of the client"),
    _application(
        "DAYS_BIRTH",
        "BIGINT",
        "numeric",
        "Client's age in days at application (negative: days before the application)",
    ),
    _application(
        "DAYS_EMPLOYED",
        "BIGINT",
        "numeric",
        "Days since the current employment started (negative); 365243 means not employed or "
        "pensioner",
    ),
    _application(
        "DAYS_REGISTRATION",
        "DOUBLE",
        "numeric",
        "Days since the client last changed their registration (negative)",
    ),
    _application(
        "DAYS_ID_PUBLISH",
        "BIGINT",
        "numeric",
        "Days since the client last changed the identity document used to apply (negative)",
    ),
    _application(
        "DAYS_LAST_PHONE_CHANGE",
        "DOUBLE",
        "numeric",
        "Days since the client last changed phone (negative)",
    ),
    _application(
        "OWN_CAR_AGE",
        "DOUBLE",
        "numeric",
        "Age of the client's car in years; NULL when the client has no car or it is unknown",
    ),
    _application("CODE_GENDER", "VARCHAR", "categorical", "Gender of the client"),
    _application("CNT_CHILDREN", "BIGINT", "numeric", "Number of children of the client"),
    _application("CNT_FAM_MEMBERS", "DOUBLE", "numeric", "Number of family members of the client"),
    _application(
        "REGION_RATING_CLIENT",
        "BIGINT",
        "numeric",
        "Home Credit's rating (1, 2 or 3) of the region where the client lives",
    ),
    _application(
        "REGION_RATING_CLIENT_W_CITY",
        "BIGINT",
        "numeric",
        "Home Credit's rating (1, 2 or 3) of the client's region, taking the city into account",
    ),
    _application(
        "REGION_POPULATION_RELATIVE",
        "DOUBLE",
        "numeric",
        "Normalised population of the client's region (higher = more populated)",
    ),
    _application(
        "WEEKDAY_APPR_PROCESS_START",
        "VARCHAR",
        "categorical",
        "Day of the week the application was made",
    ),
    _application(
        "HOUR_APPR_PROCESS_START",
        "BIGINT",
        "numeric",
        "Approximate hour of the day the application was made",
    ),
    _application(
        "NAME_INCOME_TYPE",
        "VARCHAR",
        "categorical",
        "Income type of the client (working, pensioner, state servant, ...)",
    ),
    _application(
        "NAME_EDUCATION_TYPE", "VARCHAR", "categorical", "Highest education the client achieved"
    ),
    _application(
        "NAME_HOUSING_TYPE",
        "VARCHAR",
        "categorical",
        "Housing situation of the client (owned, rented, with parents, ...)",
    ),
    _application(
        "NAME_CONTRACT_TYPE",
        "VARCHAR",
        "categorical",
        "Type of loan applied for (cash loan or revolving loan)",
    ),
    _application("NAME_FAMILY_STATUS", "VARCHAR", "categorical", "Family status of the client"),
    *(
        _application(name, "BIGINT", "flag", f"1 when the client's {meaning}, else 0")
        for name, meaning in _ADDRESS_FLAGS
    ),
    *(_application(name, "DOUBLE", "numeric", meaning) for name, meaning in _SOCIAL_CIRCLE),
    *(
        _application(
            f"AMT_REQ_CREDIT_BUREAU_{period}",
            "DOUBLE",
            "numeric",
            f"Number of enquiries about the client at the credit bureau {when}",
        )
        for period, when in _BUREAU_ENQUIRIES
    ),
    *(
        _application(name, "BIGINT", "flag", f"{meaning} (1 = yes, 0 = no)")
        for name, meaning in _CONTACT_FLAGS
    ),
    _application("FLAG_OWN_CAR", "VARCHAR", "categorical", "Whether the client owns a car (Y/N)"),
    _application(
        "FLAG_OWN_REALTY",
        "VARCHAR",
        "categorical",
        "Whether the client owns a house or flat (Y/N)",
    ),
    *(
        _application(
            f"FLAG_DOCUMENT_{i}",
            "BIGINT",
            "flag",
            f"The client provided document {i} (1 = yes, 0 = no)",
        )
        for i in range(2, 22)
    ),
)

_APPLICATION_DERIVED: tuple[FeatureSpec, ...] = (
    _application(
        "TOT_MISSING_COUNT",
        "BIGINT",
        "numeric",
        "Number of empty fields in the application form (all 121 raw application columns "
        "except TARGET)",
    ),
    _application("AGE_YEARS", "DOUBLE", "numeric", "Client's age in years (-DAYS_BIRTH / 365)"),
    _application(
        "DAYS_EMPLOYED_ANOMALY",
        "BIGINT",
        "flag",
        "1 when DAYS_EMPLOYED holds the 365243 'not employed / pensioner' code, else 0 "
        "(also 0 when DAYS_EMPLOYED is missing)",
    ),
    _application(
        "EMPLOYED_YEARS",
        "DOUBLE",
        "numeric",
        "Years in the current employment (-DAYS_EMPLOYED / 365); NULL for the 'not employed / "
        "pensioner' code or when unknown",
    ),
    _application(
        "EMPLOYMENT_YEARS_TO_AGE",
        "DOUBLE",
        "numeric",
        "Share of the client's life spent in the current employment (DAYS_EMPLOYED / "
        "DAYS_BIRTH); NULL for the 'not employed / pensioner' code",
    ),
    _application(
        "PAYMENT_RATE",
        "DOUBLE",
        "numeric",
        "Annuity as a share of the credit amount (AMT_ANNUITY / AMT_CREDIT); NULL when the credit "
        "amount is 0 or missing",
    ),
    _application(
        "CREDIT_TO_INCOME",
        "DOUBLE",
        "numeric",
        "Credit amount relative to income (AMT_CREDIT / AMT_INCOME_TOTAL); NULL when income is "
        "0 or missing",
    ),
    _application(
        "ANNUITY_TO_INCOME",
        "DOUBLE",
        "numeric",
        "Annuity relative to income (AMT_ANNUITY / AMT_INCOME_TOTAL); NULL when income is 0 or "
        "missing",
    ),
    _application(
        "GOODS_TO_CREDIT",
        "DOUBLE",
        "numeric",
        "Goods price relative to the credit amount (AMT_GOODS_PRICE / AMT_CREDIT); NULL when the "
        "credit amount is 0 or missing",
    ),
    _application(
        "INCOME_PER_PERSON",
        "DOUBLE",
        "numeric",
        "Income per family member (AMT_INCOME_TOTAL / CNT_FAM_MEMBERS); NULL when the family "
        "size is 0 or missing",
    ),
    _application(
        "CHILDREN_RATIO",
        "DOUBLE",
        "numeric",
        "Children as a share of the family (CNT_CHILDREN / CNT_FAM_MEMBERS); NULL when the family "
        "size is 0 or missing",
    ),
    *(
        _application(
            f"EXT_SOURCE_{i}_IS_MISSING",
            "BIGINT",
            "flag",
            f"1 when external credit score {i} is unavailable, else 0",
        )
        for i in (1, 2, 3)
    ),
    _application(
        "OWN_CAR_AGE_IS_MISSING", "BIGINT", "flag", "1 when the age of the car is unknown, else 0"
    ),
    _application(
        "DOC_COUNT",
        "BIGINT",
        "numeric",
        "Number of documents (2 to 21) the client provided (missing flags count as not provided)",
    ),
    _application(
        "CONTACT_COUNT",
        "BIGINT",
        "numeric",
        "Number of contact channels the client gave (mobile, employer phone, work phone, "
        "reachable mobile, home phone, e-mail; missing flags count as 0)",
    ),
    _application(
        "ADDR_MISMATCH_SUM",
        "BIGINT",
        "numeric",
        "Number of mismatches between permanent, contact and work addresses at region and city "
        "level (0 to 6; missing flags count as 0)",
    ),
)

_BUREAU: tuple[FeatureSpec, ...] = _numeric_group(
    "bureau",
    (
        (
            "BUREAU_N_ACTIVE",
            "BIGINT",
            f"Number of active credits at other institutions (credit bureau); 0 when the "
            f"applicant has bureau records but none active; {_NO_BUREAU}",
        ),
        (
            "BUREAU_N_CLOSED",
            "BIGINT",
            f"Number of closed credits at other institutions (credit bureau); 0 when the "
            f"applicant has bureau records but none closed; {_NO_BUREAU}",
        ),
        (
            "BUREAU_LAST_CREDIT_DAYS",
            "BIGINT",
            f"Days since the most recent credit-bureau credit was opened (negative); {_NO_BUREAU}",
        ),
        (
            "BUREAU_LAST_UPDATE_DAYS",
            "BIGINT",
            f"Days since the most recent update of a credit-bureau record (negative); {_NO_BUREAU}",
        ),
        (
            "BUREAU_TOTAL_DEBT",
            "DOUBLE",
            f"Total outstanding debt on credits at other institutions; {_NO_BUREAU}",
        ),
        (
            "BUREAU_TOTAL_CREDIT",
            "DOUBLE",
            f"Total amount of credits at other institutions; {_NO_BUREAU}",
        ),
        (
            "BUREAU_LIMIT_SUM",
            "DOUBLE",
            f"Total credit-card limit at other institutions; {_NO_BUREAU}",
        ),
        (
            "BUREAU_UTIL_MEAN",
            "DOUBLE",
            f"Average share of each bureau credit still owed (debt / credit amount, credits with "
            f"a 0 or missing amount skipped); {_NO_BUREAU}",
        ),
        (
            "BUREAU_OVERDUE_SUM",
            "DOUBLE",
            f"Total amount currently overdue on credits at other institutions; {_NO_BUREAU}",
        ),
        (
            "BUREAU_MAX_OVERDUE",
            "DOUBLE",
            f"Largest amount ever overdue on a credit at another institution; {_NO_BUREAU}",
        ),
        (
            "BUREAU_PROLONG_SUM",
            "BIGINT",
            f"Number of times credits at other institutions were prolonged; {_NO_BUREAU}",
        ),
    ),
)

_BUREAU_BALANCE: tuple[FeatureSpec, ...] = (
    _history(
        "bureau_balance",
        "BB_DELINQ_SHARE_MEAN",
        "DOUBLE",
        "numeric",
        f"Average, over the applicant's bureau credits, of the share of months reported past "
        f"due (status 1 to 5); {_NO_BB}",
    ),
    _history(
        "bureau_balance",
        "BB_WORST_STATUS_MAX",
        "BIGINT",
        "numeric",
        f"Worst monthly past-due bucket ever reported on a bureau credit (0 = on time, closed or "
        f"unknown; 1 to 5 = increasingly late); {_NO_BB}",
    ),
    _history(
        "bureau_balance",
        "BB_MONTHS_SINCE_LAST_DELINQ_MIN",
        "BIGINT",
        "numeric",
        f"Months since the most recent past-due month on any bureau credit; NULL when never "
        f"past due or {_NO_BB.removeprefix('NULL when ')}",
    ),
)

_PREVIOUS: tuple[FeatureSpec, ...] = _numeric_group(
    "previous_application",
    (
        (
            "PREV_TOTAL",
            "BIGINT",
            f"Number of previous applications at Home Credit; {_NO_PREV}",
        ),
        (
            "PREV_APPROVED",
            "BIGINT",
            f"Number of previous Home Credit applications that were approved; {_NO_PREV}",
        ),
        (
            "PREV_REFUSED",
            "BIGINT",
            f"Number of previous Home Credit applications that were refused; {_NO_PREV}",
        ),
        (
            "PREV_CANCELLED",
            "BIGINT",
            f"Number of previous Home Credit applications that were cancelled; {_NO_PREV}",
        ),
        (
            "PREV_UNUSED",
            "BIGINT",
            f"Number of previous Home Credit offers the client did not use; {_NO_PREV}",
        ),
        (
            "PREV_APP_CREDIT_RATIO_MEAN",
            "DOUBLE",
            f"Average ratio of amount asked for to amount granted on previous applications; "
            f"{_NO_PREV}",
        ),
        (
            "PREV_DOWNPAYMENT_RATE_MEAN",
            "DOUBLE",
            f"Average down payment as a share of the credit on previous applications; {_NO_PREV}",
        ),
        (
            "PREV_CNT_PAYMENT_MEAN",
            "DOUBLE",
            f"Average term (number of instalments) of previous applications; {_NO_PREV}",
        ),
        (
            "PREV_LAST_DECISION_DAYS",
            "BIGINT",
            f"Days since the decision on the most recent previous application (negative); "
            f"{_NO_PREV}",
        ),
        (
            "PREV_EARLIEST_DECISION_DAYS",
            "BIGINT",
            f"Days since the decision on the oldest previous application (negative); {_NO_PREV}",
        ),
        (
            "PREV_APPROVAL_RATE",
            "DOUBLE",
            f"Share of previous Home Credit applications that were approved; {_NO_PREV}",
        ),
        (
            "PREV_REFUSED_RATE",
            "DOUBLE",
            f"Share of previous Home Credit applications that were refused; {_NO_PREV}",
        ),
    ),
)

_INSTALMENTS: tuple[FeatureSpec, ...] = tuple(
    _history("installments_payments", name, "DOUBLE", "numeric", description)
    for name, description in (
        (
            "INSTAL_PAYMENT_RATIO_MEAN",
            f"Average share of each instalment actually paid (averaged per previous loan, then "
            f"over loans); {_NO_INSTAL}",
        ),
        (
            "INSTAL_PAYMENT_RATIO_STD",
            f"How irregularly instalments were paid: standard deviation of the paid share within "
            f"each previous loan, averaged over loans; NULL also when every loan has a single "
            f"payment; {_NO_INSTAL}",
        ),
        (
            "INSTAL_LATE_MEAN",
            f"Average days an instalment was paid after its due date (negative = early; averaged "
            f"per previous loan, then over loans); {_NO_INSTAL}",
        ),
        (
            "INSTAL_LATE_MAX",
            f"Most days any instalment was paid after its due date; {_NO_INSTAL}",
        ),
        (
            "INSTAL_LATE_SHARE",
            f"Share of instalments paid late (per previous loan, then averaged over loans); "
            f"{_NO_INSTAL}",
        ),
        (
            "INSTAL_SEVERE_LATE_SHARE",
            f"Share of instalments paid more than 30 days late (per previous loan, then averaged "
            f"over loans); {_NO_INSTAL}",
        ),
    )
)

_CREDIT_CARDS: tuple[FeatureSpec, ...] = _numeric_group(
    "credit_card_balance",
    (
        (
            "CC_UTIL_MEAN",
            "DOUBLE",
            f"Average credit-card balance as a share of the card limit (per card, then averaged "
            f"over cards); {_NO_CARD}",
        ),
        (
            "CC_UTIL_MAX",
            "DOUBLE",
            f"Highest monthly credit-card balance as a share of the card limit; {_NO_CARD}",
        ),
        (
            "CC_MINPAY_COVERAGE_MEAN",
            "DOUBLE",
            f"Average monthly card payment relative to the minimum payment due (per card, then "
            f"averaged over cards); {_NO_CARD}",
        ),
        (
            "CC_MINPAY_MET_SHARE",
            "DOUBLE",
            f"Share of months in which at least the minimum card payment was paid (months with "
            f"no minimum due count as not met; per card, then averaged over cards); {_NO_CARD}",
        ),
        (
            "CC_DPD_ANY_SHARE",
            "DOUBLE",
            f"Share of months a credit card was past due (per card, then averaged over cards); "
            f"{_NO_CARD}",
        ),
        ("CC_DPD_MAX", "BIGINT", f"Most days past due on a credit card in any month; {_NO_CARD}"),
        (
            "CC_CASH_RATIO_MEAN",
            "DOUBLE",
            f"Average monthly ATM cash withdrawals as a share of the card limit (per card, then "
            f"averaged over cards); {_NO_CARD}",
        ),
    ),
)

_POS_CASH: tuple[FeatureSpec, ...] = _numeric_group(
    "pos_cash_balance",
    (
        (
            "POS_DPD_ANY_SHARE",
            "DOUBLE",
            f"Share of months a point-of-sale or cash loan was past due (per loan, then averaged "
            f"over loans); {_NO_POS}",
        ),
        (
            "POS_DPD_MAX",
            "BIGINT",
            f"Most days past due on a point-of-sale or cash loan in any month; {_NO_POS}",
        ),
        (
            "POS_MONTHS_SINCE_LAST_ACTIVE",
            "BIGINT",
            f"Months since a point-of-sale or cash loan was last active, for the loan inactive "
            f"the longest; NULL when no loan was ever active or "
            f"{_NO_POS.removeprefix('NULL when ')}",
        ),
    ),
)

#: Every column of the feature store, in output order: key, label, then the features.
COLUMNS: tuple[FeatureSpec, ...] = (
    _application(ID_COLUMN, "BIGINT", "id", "Identifier of the loan application (applicant)"),
    _application(
        TARGET_COLUMN,
        "BIGINT",
        "target",
        "1 when the client had payment difficulties on the loan, 0 otherwise; NULL for "
        "applications not yet labelled",
    ),
    *_KEPT,
    *_APPLICATION_DERIVED,
    *_BUREAU,
    *_BUREAU_BALANCE,
    *_PREVIOUS,
    *_INSTALMENTS,
    *_CREDIT_CARDS,
    *_POS_CASH,
)

#: The model inputs: every column except the key and the label, in output order.
FEATURES: tuple[FeatureSpec, ...] = tuple(c for c in COLUMNS if c.kind not in ("id", "target"))

_BY_NAME: dict[str, FeatureSpec] = {c.name: c for c in COLUMNS}


def column_names() -> list[str]:
    """All output column names in order, including ``SK_ID_CURR`` and ``TARGET``."""
    return [c.name for c in COLUMNS]


def feature_names() -> list[str]:
    """Model input names in output order (without the key and the label)."""
    return [f.name for f in FEATURES]


def categorical_features() -> list[str]:
    """Features kept as strings; they need encoding in the model pipeline."""
    return [f.name for f in FEATURES if f.kind == "categorical"]


def numeric_features() -> list[str]:
    """Features that are numbers, 0/1 flags included."""
    return [f.name for f in FEATURES if f.kind in ("numeric", "flag")]


def feature(name: str) -> FeatureSpec:
    """The spec of one output column (features, ``SK_ID_CURR`` and ``TARGET``).

    Raises:
        KeyError: When the feature store has no such column.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"the feature store has no column {name!r}") from None


def group_columns(group: str) -> list[str]:
    """Columns the view ``<group>_features`` emits: ``SK_ID_CURR`` then the group's features."""
    if group not in GROUPS:
        raise KeyError(f"unknown feature group {group!r}; expected one of {list(GROUPS)}")
    names = [f.name for f in FEATURES if f.group == group]
    return [ID_COLUMN, TARGET_COLUMN, *names] if group == "application" else [ID_COLUMN, *names]


def sql_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The feature SQL files, sorted by name."""
    return sorted(sql_dir.glob("*.sql"))


def sql_hash(sql_dir: Path = SQL_DIR) -> str:
    """SHA-256 over the feature SQL files (name and bytes, sorted by name).

    Lineage records it so a score can be traced to the exact feature definition.
    """
    digest = hashlib.sha256()
    for path in sql_files(sql_dir):
        # The name is hashed too: renaming or adding a file changes the definition.
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def as_frame(include_key_and_target: bool = False) -> Any:
    """The catalog as a pandas DataFrame (one row per feature) for display in notebooks.

    Args:
        include_key_and_target: Also list SK_ID_CURR and TARGET.
    """
    import pandas as pd  # only notebooks need it; keep the catalog import light

    specs = COLUMNS if include_key_and_target else FEATURES
    return pd.DataFrame([asdict(spec) for spec in specs])
