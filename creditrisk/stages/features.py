"""Stage 02 — features: the vetted feature set (FEATURES.md) in DuckDB SQL over bronze Parquet.

Notebook ``02_features.ipynb``; ``creditrisk features`` runs the same :func:`run`. Reads
``data/bronze/`` of the workspace and writes ``data/features/feature_store.parquet`` (an
interactive run writes its own copy under its scratch folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditrisk.features.engine import FeatureStoreSummary, build_feature_store
from creditrisk.stages.context import RunContext
from creditrisk.stages.params import StageParams, parameter


class Params(StageParams):
    """Parameters of the features stage."""

    STAGE = "features"

    threads: int = parameter(0, "DuckDB threads; 0 uses all cores", policy="operational", ge=0)
    memory_limit: str = parameter(
        "", "DuckDB memory limit such as 4GB; empty keeps the DuckDB default", policy="operational"
    )
    sample_rows: int = parameter(
        50000, "applicants sampled for the distribution plots", policy="operational", ge=1
    )


@dataclass(frozen=True)
class Outcome:
    """The feature store the stage wrote."""

    summary: FeatureStoreSummary
    path: Path

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        return {
            "rows": self.summary.rows,
            "n_labelled": self.summary.n_labelled,
            "n_features": self.summary.n_features,
            "sql_hash": self.summary.sql_hash,
            "seconds": self.summary.seconds,
        }


def run(params: Params, ctx: RunContext) -> Outcome:
    """Build the feature store from the workspace's bronze Parquet.

    Raises:
        FileNotFoundError: There is no bronze data: run the ingest stage first.
    """
    bronze = ctx.workspace.bronze
    if not (bronze / "application_train.parquet").exists():
        raise FileNotFoundError(
            f"no bronze data in {bronze}: run the ingest stage first "
            "(make pipeline, or creditrisk run --only ingest)"
        )
    path = ctx.outputs.feature_store
    summary = build_feature_store(
        bronze,
        path,
        threads=params.threads or None,
        memory_limit=params.memory_limit or None,
    )
    return Outcome(summary=summary, path=path)
