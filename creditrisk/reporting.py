"""Tables and figures the stage notebooks show: data in, pandas frames or matplotlib out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd


def ingestion_tables(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per table: status, rows, size, checksum and contract outcome."""
    rows = []
    for name, t in summary["tables"].items():
        contract = t.get("contract") or {}
        rows.append(
            {
                "table": name,
                "status": t["status"],
                "file": t["file"],
                "rows": t["rows"],
                "MB": round((t["bytes"] or 0) / 1e6, 2),
                "sha256": (t["sha256"] or "")[:16],
                "contract": contract.get("status", "—"),
                "rules": contract.get("rules_evaluated", 0),
                "warnings": contract.get("warnings", 0),
                "missing cols": len(t["missing_columns"]),
                "extra cols": len(t["extra_columns"]),
            }
        )
    return pd.DataFrame(rows).set_index("table")


def contract_rules(summary: dict[str, Any], failing_only: bool = False) -> pd.DataFrame:
    """Every contract rule evaluated, with its failure count."""
    rows = [
        {
            "table": name,
            **{k: v for k, v in rule.items() if k != "examples"},
            "examples": rule["examples"][:3],
        }
        for name, t in summary["tables"].items()
        for rule in (t.get("contract") or {}).get("rules", [])
        if not failing_only or rule["failures"]
    ]
    columns = ["table", "column", "rule", "severity", "failures", "examples"]
    return pd.DataFrame(rows, columns=columns)


def integrity_table(summary: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(summary["referential_integrity"])


def feature_null_shares(feature_store: Path, top: int = 25) -> pd.DataFrame:
    """Share of NULLs per feature-store column, highest first (computed in DuckDB)."""
    con = duckdb.connect()
    columns = [
        row[0]
        for row in con.execute(
            "select name from parquet_schema($path) where num_children is null",
            {"path": str(feature_store)},
        ).fetchall()
    ]
    exprs = ", ".join(f'avg(case when "{c}" is null then 1.0 else 0.0 end)' for c in columns)
    shares = con.execute(f"select {exprs} from read_parquet($path)", {"path": str(feature_store)})
    frame = pd.DataFrame({"column": columns, "null_share": shares.fetchone() or ()})
    return frame.sort_values("null_share", ascending=False).head(top).reset_index(drop=True)


def feature_sample(
    feature_store: Path, columns: list[str], n: int = 50_000, seed: int = 0
) -> pd.DataFrame:
    """A reproducible random sample of some feature-store columns, for plots."""
    con = duckdb.connect()
    selected = ", ".join(f'"{c}"' for c in columns)
    return con.execute(
        f"select {selected} from read_parquet($path) using sample reservoir({int(n)} rows) "
        f"repeatable ({int(seed)})",
        {"path": str(feature_store)},
    ).df()


def distributions_figure(sample: pd.DataFrame, columns: list[str], by: str = "TARGET") -> Any:
    """Histograms of a few features, split by default status when labels are present."""
    import matplotlib.pyplot as plt

    n = len(columns)
    ncols = min(3, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=False):
        data = sample[[column, by]].dropna(subset=[column]) if by in sample else sample[[column]]
        if by in data and data[by].notna().any():
            for label, group in data.groupby(by):
                ax.hist(
                    group[column], bins=40, alpha=0.55, density=True, label=f"{by}={int(label)}"
                )
            ax.legend(fontsize=8)
        else:
            ax.hist(data[column], bins=40)
        ax.set_title(column, fontsize=10)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def ledger_table(records: list[Any], last: int = 10) -> pd.DataFrame:
    """The newest promotion-ledger records (``registry.PromotionRecord``), newest first."""
    columns = [
        "timestamp",
        "action",
        "alias",
        "version",
        "previous_champion",
        "actor",
        "validation_passed",
        "forced",
        "pipeline_run_id",
        "reason",
    ]
    rows = [{c: getattr(r, c) for c in columns} for r in records[-last:]]
    return pd.DataFrame(rows, columns=columns).iloc[::-1].reset_index(drop=True)


def lineage_table(lineage: dict[str, Any]) -> pd.DataFrame:
    """``reports/lineage.json`` as one row per link, in lineage order (data → run folder)."""
    data, features = lineage["data"], lineage["features"]
    rows = [
        ("data snapshot", data["snapshot_id"], data["source"]),
        *[
            (f"table {name}", (t["sha256"] or "absent")[:16], f"{t['rows']} rows")
            for name, t in data["tables"].items()
        ],
        ("feature store", features["sha256"][:16], f"{features['rows']} rows"),
        ("feature SQL", features["sql_sha256"][:16], "creditrisk/features/sql"),
        *[
            (f"split {name}", s["sha256"][:16], f"{s['rows']} rows")
            for name, s in lineage["splits"].items()
        ],
        ("MLflow run", lineage["mlflow"]["run_id"], lineage["mlflow"]["tracking_uri"]),
        ("model version", lineage["model"]["uri"], lineage["model"]["name"]),
        ("pipeline run", lineage["pipeline_run"]["run_id"], lineage["pipeline_run"]["dir"]),
    ]
    return pd.DataFrame(rows, columns=["link", "identity", "detail"])


def embedded_page(path: Path, height: int = 900) -> Any:
    """A self-contained HTML page (e.g. the model card) framed inside the notebook's output.

    ``srcdoc`` keeps the page's own styles from leaking into the notebook and works in the
    rendered HTML record as well as in JupyterLab.
    """
    import html

    from IPython.display import HTML

    page = html.escape(Path(path).read_text(encoding="utf-8"), quote=True)
    return HTML(
        f'<div><iframe srcdoc="{page}" title="{html.escape(Path(path).name)}" '
        f'style="width:100%;height:{height}px;border:1px solid #d0d7de"></iframe></div>'
    )
