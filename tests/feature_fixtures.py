"""Bronze files for the feature tests of both engines: canonical Parquet from small frames, and
a sample with a little of everything (labelled and unlabelled applicants, every history table,
orphans, zero denominators)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from creditrisk.data.tables import TableSpec, tables

ARROW_TYPES = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "VARCHAR": pa.string()}


def canonical(frame: pd.DataFrame, spec: TableSpec) -> pa.Table:
    """What the ingest stage writes: exactly the canonical columns and types."""
    arrays = [
        pa.array(frame[c.name], type=ARROW_TYPES[c.duckdb_type], from_pandas=True)
        if c.name in frame.columns
        else pa.nulls(len(frame), ARROW_TYPES[c.duckdb_type])
        for c in spec.columns
    ]
    return pa.Table.from_arrays(arrays, names=spec.column_names)


def write_bronze(directory: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """All eight bronze files, empty (canonical schema, no rows) where no frame is given."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, spec in tables().items():
        frame = frames.get(stem, pd.DataFrame({c.name: [] for c in spec.columns}))
        pq.write_table(canonical(frame, spec), directory / f"{stem}.parquet")
    return directory


def sample_tables() -> dict[str, pd.DataFrame]:
    """A little of everything: labelled and unlabelled applicants, every history table, orphans."""
    return {
        "application_train": pd.DataFrame(
            {
                "SK_ID_CURR": [1, 2],
                "TARGET": [0, 1],
                "DAYS_BIRTH": [-14600, -20000],
                "DAYS_EMPLOYED": [-3650, 365243],
                "AMT_CREDIT": [400000.0, 0.0],
                "AMT_ANNUITY": [20000.0, 1000.0],
                "AMT_INCOME_TOTAL": [100000.0, None],
                "CODE_GENDER": ["F", "M"],
                "EXT_SOURCE_2": [0.6, None],
            }
        ),
        "application_test": pd.DataFrame(
            {"SK_ID_CURR": [3], "DAYS_BIRTH": [-9000], "NAME_CONTRACT_TYPE": ["Cash loans"]}
        ),
        "bureau": pd.DataFrame(
            {
                "SK_ID_CURR": [1, 1, 2],
                "SK_ID_BUREAU": [10, 11, 20],
                "CREDIT_ACTIVE": ["Active", "Closed", "Sold"],
                "AMT_CREDIT_SUM": [1000.0, 0.0, 300.0],
                "AMT_CREDIT_SUM_DEBT": [250.0, 10.0, None],
            }
        ),
        "bureau_balance": pd.DataFrame(
            {
                "SK_ID_BUREAU": [10, 10, 11, 99],
                "MONTHS_BALANCE": [0, -1, -3, 0],
                "STATUS": ["C", "2", "X", "5"],
            }
        ),
        "previous_application": pd.DataFrame(
            {
                "SK_ID_PREV": [100, 101],
                "SK_ID_CURR": [1, 3],
                "NAME_CONTRACT_STATUS": ["Approved", "Refused"],
                "AMT_APPLICATION": [100.0, 50.0],
                "AMT_CREDIT": [80.0, 0.0],
            }
        ),
        "installments_payments": pd.DataFrame(
            {
                "SK_ID_PREV": [100, 100, 555],
                "SK_ID_CURR": [1, 1, 2],
                "AMT_INSTALMENT": [100.0, 100.0, 10.0],
                "AMT_PAYMENT": [100.0, 40.0, 10.0],
                "DAYS_INSTALMENT": [-30.0, -60.0, -5.0],
                "DAYS_ENTRY_PAYMENT": [-31.0, -10.0, -5.0],
            }
        ),
        "credit_card_balance": pd.DataFrame(
            {
                "SK_ID_PREV": [700, 700],
                "SK_ID_CURR": [3, 3],
                "MONTHS_BALANCE": [-1, -2],
                "AMT_BALANCE": [50.0, 150.0],
                "AMT_CREDIT_LIMIT_ACTUAL": [100, 100],
                "SK_DPD": [0, 3],
                "SK_DPD_DEF": [0, 0],
            }
        ),
        "POS_CASH_balance": pd.DataFrame(
            {
                "SK_ID_PREV": [100, 100],
                "SK_ID_CURR": [1, 1],
                "MONTHS_BALANCE": [-2, -4],
                "NAME_CONTRACT_STATUS": ["Completed", "Active"],
                "SK_DPD": [0, 7],
                "SK_DPD_DEF": [0, 0],
            }
        ),
    }
