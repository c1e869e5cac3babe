"""Stage 02 — features: the vetted feature set (FEATURES.md) in SQL over bronze Parquet.

Notebook ``02_features.ipynb``; ``creditrisk features`` runs the same :func:`run`. Reads
``data/bronze/`` of the workspace and writes ``data/features/feature_store.parquet`` (an
interactive run writes its own copy under its scratch folder). The SQL runs on DuckDB, or
unchanged on Spark with ``engine=spark`` (``--engine spark``, ``ENGINE=spark``): the session
comes from the settings' ``spark`` section, and the store is the same single Parquet file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditrisk.features.engine import (
    EngineInfo,
    FeatureStoreSummary,
    build_feature_store,
    duckdb_info,
)
from creditrisk.settings import EngineName
from creditrisk.stages.context import RunContext
from creditrisk.stages.params import StageParams, parameter


class Params(StageParams):
    """Parameters of the features stage."""

    STAGE = "features"

    engine: EngineName = parameter(
        "duckdb",
        "feature engine: duckdb (embedded) or spark (CREDITRISK_SPARK_*)",
        policy="operational",
    )
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
    engine: EngineInfo

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        return {
            **self.engine.as_dict(),
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
    if params.engine == "spark":
        return _run_on_spark(bronze, path, ctx)
    summary = build_feature_store(
        bronze,
        path,
        threads=params.threads or None,
        memory_limit=params.memory_limit or None,
    )
    return Outcome(summary=summary, path=path, engine=duckdb_info())


def _run_on_spark(bronze: Path, path: Path, ctx: RunContext) -> Outcome:
    from creditrisk.spark.features import build_feature_store as build_on_spark
    from creditrisk.spark.session import spark_info, spark_session

    with spark_session(ctx.settings.spark) as spark:
        engine = spark_info(spark, ctx.settings.spark)
        summary = build_on_spark(spark, bronze, path, engine=engine)
    return Outcome(summary=summary, path=path, engine=engine)
