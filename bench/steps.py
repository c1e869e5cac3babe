"""One benchmark step per process, so each step's peak memory is its own (see run.py).

    python bench/steps.py generate  RAW_DIR SIZE
    python bench/steps.py ingest    RAW_DIR WORKSPACE
    python bench/steps.py features  WORKSPACE
    python bench/steps.py reference RAW_DIR OUTPUT.parquet

The reference is the approach this project replaces: every CSV read fully into pandas,
registered in DuckDB, each feature group's SQL result pulled back into pandas and merged there.
It runs the very same SQL files, so the comparison is about data movement, not about the SQL.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def generate(raw_dir: str, size: str) -> dict:
    from creditrisk.data import synthetic

    result = synthetic.generate(Path(raw_dir), size=size, seed=42)
    return {"rows": result.rows, "applicants": result.n_applicants}


def ingest(raw_dir: str, workspace: str) -> dict:
    from creditrisk.data.ingest import ingest as run_ingest
    from creditrisk.io import write_json
    from creditrisk.settings import Workspace

    ws = Workspace(workspace)
    summary = run_ingest(raw_dir, ws.bronze, work_dir=ws.data, echo=lambda _line: None)
    write_json(ws.ingestion_summary, summary)
    return {
        "rows": sum(t["rows"] for t in summary["tables"].values()),
        "bytes": sum(t["bytes"] or 0 for t in summary["tables"].values()),
        "status": summary["status"],
    }


def features(workspace: str) -> dict:
    from creditrisk.features.engine import build_feature_store
    from creditrisk.settings import Workspace

    ws = Workspace(workspace)
    summary = build_feature_store(ws.bronze, ws.feature_store)
    return {"rows": summary.rows, "features": summary.n_features}


def reference(raw_dir: str, output: str) -> dict:
    import duckdb
    import pandas as pd

    from creditrisk.data.tables import tables
    from creditrisk.features.catalog import GROUPS, ID_COLUMN
    from creditrisk.features.engine import feature_sql

    raw = Path(raw_dir)
    con = duckdb.connect()
    read_started = time.perf_counter()
    frames = {name: pd.read_csv(raw / spec.file_name) for name, spec in tables().items()}
    read_seconds = time.perf_counter() - read_started
    frames["application"] = pd.concat(
        [frames.pop("application_train"), frames.pop("application_test")], ignore_index=True
    )
    for name, frame in frames.items():
        view = tables()[name].view if name in tables() else name
        con.register(view, frame)
    store = con.execute(feature_sql(GROUPS[0])).df()  # one row per applicant, with TARGET
    for group in GROUPS[1:]:
        store = store.merge(con.execute(feature_sql(group)).df(), on=ID_COLUMN, how="left")
    store.to_parquet(output)
    return {"rows": len(store), "columns": store.shape[1], "read_csv_seconds": read_seconds}


STEPS = {"generate": generate, "ingest": ingest, "features": features, "reference": reference}

if __name__ == "__main__":
    step, *args = sys.argv[1:]
    started = time.perf_counter()
    details = STEPS[step](*args)
    details["seconds_inside"] = round(time.perf_counter() - started, 3)
    print(json.dumps(details))
