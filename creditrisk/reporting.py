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


def stability_figure(score_bins: pd.DataFrame, backtest: pd.DataFrame | None = None) -> Any:
    """Reference and current shares per score bin (the PSI's bins); with outcomes, the realised
    default rate against the mean PD per score band with the Jeffreys interval."""
    from matplotlib.figure import Figure

    panels = 2 if backtest is not None else 1
    fig = Figure(figsize=(6.5 * panels, 3.6))
    ax = fig.add_subplot(1, panels, 1)
    positions = range(len(score_bins))
    ax.bar([p - 0.2 for p in positions], score_bins["expected_share"], 0.4, label="reference")
    ax.bar([p + 0.2 for p in positions], score_bins["actual_share"], 0.4, label="current")
    ax.set_xticks(list(positions), list(score_bins["bin"]), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of applicants")
    ax.set_title("score distribution by reference decile", fontsize=10)
    ax.legend(fontsize=8)
    if backtest is not None:
        bands = backtest[backtest["group"] != "all"]
        ax2 = fig.add_subplot(1, 2, 2)
        x = range(len(bands))
        rate = bands["realised_default_rate"]
        ax2.errorbar(
            list(x),
            rate,
            yerr=[rate - bands["jeffreys_lower"], bands["jeffreys_upper"] - rate],
            fmt="o",
            capsize=4,
            label="realised default rate (95% Jeffreys)",
        )
        ax2.plot(list(x), bands["mean_pd"], "s", color="tab:red", label="mean PD")
        ax2.set_xticks(list(x), list(bands["group"]))
        ax2.set_xlabel("score band")
        ax2.set_title("back-test", fontsize=10)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_image(figure: Any) -> Any:
    """A matplotlib figure as an inline PNG: built without pyplot, a figure has no display
    hook in the kernel and would show as its text repr in the notebook and its HTML record."""
    from IPython.display import Image

    from creditrisk.modeling.plots import figure_png

    return Image(data=figure_png(figure), format="png")


def report_link(path: Path, run_copy: Path | None = None, title: str | None = None) -> Any:
    """A link to a large self-contained report (e.g. Evidently's): beside the rendered notebook
    when the pipeline copied it into the run folder, else to the workspace's file."""
    import html
    import os

    from IPython.display import HTML

    target = run_copy.name if run_copy is not None else os.path.relpath(path, Path.cwd())
    size = path.stat().st_size / 1e6
    label = html.escape(title or path.name)
    return HTML(
        f'<p>📄 <a href="{html.escape(target)}" target="_blank">{label}</a> '
        f"({size:.1f} MB, self-contained; also at <code>{html.escape(str(path))}</code>)</p>"
    )
