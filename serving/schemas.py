"""The REST request and response models, generated from the data model.

Every row model is built from :mod:`creditrisk.data.tables` (the canonical Kaggle columns, their
types and the official descriptions), so the API accepts exactly what the pipeline ingests:
unknown fields are refused, a key column is required, every other column is optional (absent or
``null`` is a missing value, as an empty CSV cell). Integers must be JSON integers and numbers
JSON numbers; a wrong type is a 422 naming the field.
"""

# No `from __future__ import annotations` here: the row models are built at import time and
# PredictRequest's annotations must be evaluated against them, not left as strings.

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, create_model

from creditrisk.data.tables import TableSpec, tables

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

_PYTHON_TYPES: dict[str, Any] = {
    "BIGINT": Int64,
    "DOUBLE": float,
    "VARCHAR": str,
}


def _row_model(spec: TableSpec, model_name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for column in spec.columns:
        python_type = _PYTHON_TYPES[column.duckdb_type]
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

    History rows link to their application by ``SK_ID_CURR`` (``bureau_balance`` rows link to
    a ``bureau`` row by ``SK_ID_BUREAU``); every history list is optional.
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
