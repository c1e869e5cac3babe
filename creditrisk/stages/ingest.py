"""Stage 01 — ingest: raw Home Credit files → checksums, contracts, typed Parquet in data/bronze.

Notebook ``01_ingest.ipynb``; ``creditrisk ingest`` runs the same :func:`run` without it. With
no ``source``, ``data/raw`` is read, filled with synthetic data of ``size``/``seed`` on demand
(an interactive run generates into its scratch folder instead, never into ``data/raw``).
Writes ``data/bronze/`` (swapped in only when every table passed) and
``reports/ingestion_summary.json``, the snapshot's identity for everything downstream.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditrisk.data import ingest as ingestion
from creditrisk.data import sources
from creditrisk.governance.deviations import as_records
from creditrisk.io import write_json
from creditrisk.stages.context import RunContext
from creditrisk.stages.params import StageParams, parameter

Echo = Callable[[str], object]


class Params(StageParams):
    """Parameters of the ingest stage."""

    STAGE = "ingest"

    source: str = parameter(
        "",
        "folder or s3://bucket/prefix of Kaggle CSVs; empty: data/raw, synthetic",
        policy="operational",
    )
    size: str = parameter(
        "small",
        "synthetic size if generating: tiny, small, full or an applicant count",
        policy="operational",
    )
    seed: int = parameter(42, "synthetic data seed when generating", policy="operational")
    expected_checksums: dict[str, str] = parameter(
        {}, "table -> SHA-256 or MD5 of its file; a mismatch fails", policy="operational"
    )
    threads: int = parameter(0, "DuckDB threads; 0 uses all cores", policy="operational", ge=0)
    memory_limit: str = parameter(
        "", "DuckDB memory limit such as 4GB; empty keeps the DuckDB default", policy="operational"
    )


@dataclass(frozen=True)
class Outcome:
    """What the ingest stage wrote: the summary and where it and bronze are."""

    summary: dict[str, Any]
    summary_path: Path
    bronze: Path

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        summary = self.summary
        return {
            "snapshot_id": summary["snapshot_id"],
            "source": summary["source"]["uri"],
            "synthetic": summary["source"]["synthetic"] is not None,
            "status": summary["status"],
            "contracts_passed": summary["contracts_passed"],
            "rows": {name: t["rows"] for name, t in summary["tables"].items()},
            "missing_tables": summary["missing_tables"],
            "warnings": len(summary["warnings"]),
            "duration_seconds": summary["duration_seconds"],
        }


def resolve_source(params: Params, ctx: RunContext, echo: Echo = print) -> str:
    """The source to ingest: ``params.source``, or the workspace's raw data.

    Synthetic data are generated when ``data/raw`` is empty or holds synthetic data of another
    size or seed (its ``_SYNTHETIC.json`` marker says so); a folder without that marker holds
    real files and is never touched. An interactive run never writes ``data/raw``: data it
    must generate go to its scratch folder.
    """
    if params.source.strip():
        text = params.source.strip()
        if sources.is_s3(text):
            return text
        path = Path(text).expanduser()
        return str((path if path.is_absolute() else ctx.workspace.home / path).resolve())
    from creditrisk.data import synthetic

    n_applicants = synthetic.resolve_size(params.size)

    def usable(raw: Path) -> tuple[bool, bool]:
        """(holds files, holds synthetic data of another size or seed)."""
        has_files = raw.is_dir() and any(p for p in raw.iterdir() if not p.name.startswith("."))
        marker = synthetic.read_marker(raw) if raw.is_dir() else None
        stale = marker is not None and (
            marker.get("n_applicants") != n_applicants or marker.get("seed") != params.seed
        )
        return has_files, stale

    raw = ctx.workspace.raw
    has_files, stale = usable(raw)
    if has_files and not stale:
        return str(raw)
    target = ctx.outputs.raw
    why = "is empty" if not has_files else "holds synthetic data of another size or seed"
    where = "" if target == raw else f" into {target} (an interactive run leaves data/raw as is)"
    echo(
        f"{raw} {why}: generating synthetic Home Credit data (size={params.size}, "
        f"seed={params.seed}){where}"
    )
    if target.exists() and (target != raw or stale):
        shutil.rmtree(target)
    synthetic.generate(target, size=params.size, seed=params.seed)
    return str(target)


def run(params: Params, ctx: RunContext, *, echo: Echo = print) -> Outcome:
    """Ingest the snapshot and write the summary.

    Raises:
        IngestError: Bad input; the message names the table, column and rule. Nothing of the
            previous bronze or summary is changed.
    """
    uri = resolve_source(params, ctx, echo)
    out = ctx.outputs
    summary = ingestion.ingest(
        uri,
        out.bronze,
        work_dir=out.data,
        expected_checksums=params.expected_checksums,
        threads=params.threads or None,
        memory_limit=params.memory_limit or None,
        echo=echo,
    )
    summary["run"] = {"mode": ctx.mode, "pipeline_run_id": ctx.run_id}
    summary["parameters"] = params.as_record()
    summary["deviations"] = as_records(params.deviations())
    path = write_json(out.ingestion_summary, summary)
    return Outcome(summary=summary, summary_path=path, bronze=out.bronze)
