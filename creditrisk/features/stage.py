"""Stage 02: build the feature store from bronze Parquet, as the notebook and CLI run it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from creditrisk.settings import Workspace


class FeaturesParams(BaseModel):
    """Parameters of the features stage."""

    model_config = ConfigDict(extra="forbid")

    threads: int = Field(0, ge=0, description="DuckDB threads, 0 = all cores")
    memory_limit: str = Field("", description="DuckDB memory limit, e.g. 4GB; empty = default")


def run_stage(params: FeaturesParams, workspace: Workspace) -> dict[str, Any]:
    """Build ``data/features/feature_store.parquet``; returns the build summary as a dict."""
    from creditrisk.features.engine import build_feature_store

    if not (workspace.bronze / "application_train.parquet").exists():
        raise FileNotFoundError(
            f"no bronze data in {workspace.bronze}: run the ingest stage first "
            "(make pipeline, or creditrisk run --only ingest)"
        )
    summary = build_feature_store(
        workspace.bronze,
        workspace.feature_store,
        threads=params.threads or None,
        memory_limit=params.memory_limit or None,
    )
    return summary.as_dict()
