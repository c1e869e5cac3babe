"""Batch scoring on Spark: the champion's Scorer on the executors, the single-machine columns.

:func:`creditrisk.scoring.batch.score_batch` with ``engine="spark"`` stages the input as it
always does (typed Parquet and the rejects, on the driver with DuckDB, so the rejects are the
same file), then hands the staged tables to :func:`score_staged`:

1. the feature SQL runs on Spark over the staged tables (:mod:`creditrisk.spark.features`) and
   the feature rows are written as part files;
2. ``mapInPandas`` scores them on the executors with the same :class:`~creditrisk.scoring.Scorer`
   the driver loaded: the scorer travels pickled with the task (no executor needs the registry)
   and is unpickled once per Python worker process, keyed by its model version, not per batch;
3. the scored part files, in SK_ID_CURR order, are appended into the output file (Parquet, CSV
   or CSV.GZ) with exactly the single-machine schema.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from creditrisk.features.catalog import ID_COLUMN
from creditrisk.features.engine import EngineInfo
from creditrisk.spark.features import (
    bind_parquet_sources,
    feature_frame,
    merge_parts,
    ordered_tables,
    part_files,
    write_sorted,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from creditrisk.scoring.scorer import Scorer

#: Scorers unpickled in this (executor) process, by model version URI.
_SCORERS: dict[str, Scorer] = {}


def _scorer(key: str, payload: bytes) -> Scorer:
    scorer = _SCORERS.get(key)
    if scorer is None:
        scorer = pickle.loads(payload)  # the driver's own Scorer, pickled by the driver
        _SCORERS[key] = scorer
    return scorer


@dataclass(frozen=True)
class _ScorePartitions:
    """The function ``mapInPandas`` runs on each partition (picklable, no closure)."""

    key: str
    payload: bytes
    reasons: int
    scored_at: datetime

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = _scorer(self.key, self.payload)
        for batch in batches:
            frame = scorer.score_frame(batch, reasons=self.reasons)
            frame["scored_at"] = self.scored_at
            yield frame


def score_staged(
    spark: SparkSession,
    staged: Path,
    scorer: Scorer,
    write: Any,
    *,
    schema: pa.Schema,
    reasons: int,
    scored_at: datetime,
    work: Path,
    engine: EngineInfo,
    features_output: Path | None = None,
) -> int:
    """Features and scores on Spark for the staged tables in ``staged``.

    Args:
        spark: The session.
        staged: The staged tables (``<Kaggle stem>.parquet``), as for the DuckDB path.
        scorer: The driver's scorer; its model version is what every executor scores with.
        write: Appends an Arrow table to the output (the batch job's writer).
        schema: The output's Arrow schema (:func:`creditrisk.scoring.batch.output_schema`).
        reasons: Reason codes per applicant.
        scored_at: The job's timestamp, on every row.
        work: The job's temporary folder (the part files go there).
        engine: The session's :class:`EngineInfo`.
        features_output: Also keep the feature rows there, as one Parquet file.

    Returns:
        Applicants scored.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    bind_parquet_sources(spark, staged)
    features_dir, scores_dir = work / "spark-features", work / "spark-scores"
    write_sorted(feature_frame(spark), features_dir)  # sorted once: scored, and maybe kept
    rows = spark.read.parquet(str(features_dir))
    score = _ScorePartitions(scorer.info.uri, pickle.dumps(scorer), reasons, scored_at)
    scored = rows.orderBy(rows[ID_COLUMN].asc_nulls_last()).mapInPandas(
        score, from_arrow_schema(schema)
    )
    scored.write.parquet(str(scores_dir))
    entities = 0
    for chunk in ordered_tables(part_files(scores_dir), schema):
        write(chunk)
        entities += chunk.num_rows
    if entities == 0:
        write(schema.empty_table())
    if features_output is not None:
        merge_parts(part_files(features_dir), features_output, engine.as_dict())
    shutil.rmtree(features_dir, ignore_errors=True)
    shutil.rmtree(scores_dir, ignore_errors=True)
    return entities
