"""The REST request and response models, generated from the data model.

Every row model is built from :mod:`creditrisk.data.tables` (the canonical Kaggle columns, their
types and the official descriptions), so the API accepts exactly what the pipeline ingests:
unknown fields are refused, a key column is required, every other column is optional (absent or
``null`` is a missing value, as an empty CSV cell). Validation is strict, as the CSV contract: an
integer column takes a JSON integer, a 0/1 flag only ``0`` or ``1``, a number column a finite
JSON number (an integer such as ``495000`` too), a text column a string. A quoted number, a
boolean, ``NaN``, ``Infinity`` or a number too large for a double (``1e309``) is a 422 naming
the field.
"""

# No `from __future__ import annotations` here: the row models are built at import time and
# PredictRequest's annotations must be evaluated against them, not left as strings.

from typing import Annotated, Any

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, StrictInt, create_model

from creditrisk.data.tables import ColumnSpec, TableSpec, tables

#: Request keys of the history tables → Kaggle stem.
HISTORY_KEYS: dict[str, str] = {
    "bureau": "bureau",
    "bureau_balance": "bureau_balance",
    "previous_application": "previous_application",
    "installments_payments": "installments_payments",
    "credit_card_balance": "credit_card_balance",
    "pos_cash_balance": "POS_CASH_balance",
}

#: A JSON integer that fits the 64-bit integer columns.
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]

#: A 0/1 indicator (FLAG_DOCUMENT_3, REG_CITY_NOT_WORK_CITY …): the JSON integer 0 or 1, never
#: ``true``/``false`` (a strict int, not a Literal: ``Literal[1]`` would take ``true``).
Flag = Annotated[StrictInt, Field(ge=0, le=1)]

#: A finite JSON number; a JSON integer is a number too. Strict: ``"495000"`` and ``true`` are
#: refused; so are NaN and the infinities (``Infinity``, ``1e309``), which no CSV cell can hold
#: and which the model cannot score.
Number = Annotated[float, Strict(), AllowInfNan(False)]

_PYTHON_TYPES: dict[str, Any] = {
    "BIGINT": Int64,
    "DOUBLE": Number,
    "VARCHAR": Annotated[str, Strict()],
}


def is_flag(column: ColumnSpec) -> bool:
    """An integer column whose values are 0 and 1 (the profile lists its levels: only those)."""
    return (
        column.duckdb_type == "BIGINT" and bool(column.levels) and set(column.levels) <= {"0", "1"}
    )


def _row_model(spec: TableSpec, model_name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for column in spec.columns:
        python_type = Flag if is_flag(column) else _PYTHON_TYPES[column.duckdb_type]
        description = column.description or column.name
        if column.name in spec.key_columns:
            fields[column.name] = (python_type, Field(description=description))
        else:
            fields[column.name] = (python_type | None, Field(None, description=description))
    return create_model(  # type: ignore[call-overload,no-any-return]
        model_name,
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"One row of {spec.name}: {spec.description}".strip(),
        **fields,
    )


ApplicationRow: Any = _row_model(tables()["application_test"], "ApplicationRow")
HISTORY_ROWS: dict[str, Any] = {
    key: _row_model(tables()[stem], "".join(part.title() for part in key.split("_")) + "Row")
    for key, stem in HISTORY_KEYS.items()
}


BureauRow: Any = HISTORY_ROWS["bureau"]
BureauBalanceRow: Any = HISTORY_ROWS["bureau_balance"]
PreviousApplicationRow: Any = HISTORY_ROWS["previous_application"]
InstallmentsPaymentsRow: Any = HISTORY_ROWS["installments_payments"]
CreditCardBalanceRow: Any = HISTORY_ROWS["credit_card_balance"]
PosCashBalanceRow: Any = HISTORY_ROWS["pos_cash_balance"]


class PredictRequest(BaseModel):
    """Applications to score, with whatever credit history the lender holds for them.

    Every history list is optional. Rows link up within the request (the rule /validate and
    /predict check): each application's ``SK_ID_CURR`` appears once; every ``bureau``,
    ``previous_application``, ``installments_payments``, ``credit_card_balance`` and
    ``pos_cash_balance`` row carries the ``SK_ID_CURR`` of one of this request's applications;
    every ``bureau_balance`` row carries the ``SK_ID_BUREAU`` of one of this request's
    ``bureau`` rows. A row that links to nothing (error type ``unlinked_row``) or a repeated
    ``SK_ID_CURR`` (``duplicate_key``) is a 422 naming the row; more applications than the
    service's limit (``maxItems`` of ``applications``) is a 413.
    """

    model_config = ConfigDict(extra="forbid")

    applications: Annotated[
        list[ApplicationRow],  # type: ignore[valid-type]
        Field(min_length=1, description="raw application_test rows, one per applicant"),
    ]
    bureau: list[BureauRow] = Field(default_factory=list)  # type: ignore[valid-type]
    bureau_balance: list[BureauBalanceRow] = Field(default_factory=list)  # type: ignore[valid-type]
    previous_application: list[PreviousApplicationRow] = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    installments_payments: list[InstallmentsPaymentsRow] = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    credit_card_balance: list[CreditCardBalanceRow] = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    pos_cash_balance: list[PosCashBalanceRow] = Field(  # type: ignore[valid-type]
        default_factory=list
    )


class ReasonCodeOut(BaseModel):
    feature: str = Field(description="model feature")
    description: str = Field(description="what the feature means, in words")
    value: float | int | str | bool | None = Field(description="the applicant's value")
    impact: float = Field(description="contribution to the log-odds of default (positive: adverse)")


class Prediction(BaseModel):
    SK_ID_CURR: int
    probability_of_default: float = Field(description="calibrated PD")
    score: float = Field(description="scorecard points")
    score_band: str
    decision: str = Field(description="approve or decline, at the model's PD cut-off")
    reason_codes: list[ReasonCodeOut] = Field(description="top adverse factors, largest first")


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str | None


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    predictions: list[Prediction]


class ValidateResponse(BaseModel):
    request_id: str
    valid: bool
    applications: int
    rows: dict[str, int]


class Health(BaseModel):
    status: str = Field(description="always ok: the process answers")


class Readiness(BaseModel):
    ready: bool = Field(description="whether a model is in service")
    model: str | None = Field(None, description="the registry URI of the model in service")
    reason: str | None = Field(None, description="why no model is in service")


class Reloaded(BaseModel):
    previous_version: str | None = Field(description="the version served before the reload")
    version: str = Field(description="the version served now")


class ErrorMessage(BaseModel):
    """A refused or failed request (401, 413, 503 …): what went wrong, in words."""

    detail: str


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where: body, then the list, row index and field")
    msg: str = Field(description="what is wrong with it")
    type: str = Field(description="the error's kind, e.g. float_type, finite_number, unlinked_row")


class ValidationErrors(BaseModel):
    """A request body that is not JSON (400) or breaks the contract (422), error by error."""

    detail: list[ErrorItem]
