"""The batch scorer's command-line edge: ``creditrisk score`` (``make score``).

Paths are resolved against the workspace, as everywhere in the pipeline (``--input data/raw`` is
the workspace's raw data), the job's JSON log line goes to stderr, and the work is done by
:func:`creditrisk.scoring.batch.score_batch`: the same staging, feature SQL and scorer the
monitor stage uses for production batches.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from creditrisk import registry, tracking
from creditrisk.data.sources import is_s3
from creditrisk.scoring.batch import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_MEMORY_LIMIT,
    BatchError,
    BatchResult,
    score_batch,
)
from creditrisk.scoring.scorer import DEFAULT_REASONS
from creditrisk.settings import Settings

__all__ = ["BatchError", "BatchResult", "score_files"]


def score_files(
    settings: Settings,
    input_uri: str,
    output: Path,
    *,
    model_uri: str | None = None,
    rejects: Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    reasons: int = DEFAULT_REASONS,
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
    progress: bool = True,
    engine: str | None = None,
) -> BatchResult:
    """Score a raw-table input of the workspace with the champion (or ``model_uri``).

    Args:
        settings: Supply the workspace (relative paths) and the tracking store.
        input_uri: A folder (relative to the workspace) or ``s3://bucket/prefix``.
        output: ``.parquet``, ``.csv`` or ``.csv.gz`` (relative to the workspace).
        model_uri: A registry URI; default the champion of the workspace's model
            (``models:/<CREDITRISK_MODEL_NAME>@champion``).
        rejects: Where unscorable rows go; default beside the output.
        chunk_rows: Applicants scored at a time.
        reasons: Reason codes per applicant.
        memory_limit: DuckDB's memory limit for staging and features.
        progress: Show a progress bar.
        engine: ``duckdb`` or ``spark`` (default: the settings', ``CREDITRISK_ENGINE``); Spark's
            session comes from the settings' ``spark`` section.

    Raises:
        BatchError: The input cannot be read or has no applications.
        ScoringError: The model cannot be loaded.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    workspace = settings.workspace
    source = input_uri if is_s3(input_uri) else str(workspace.home / Path(input_uri).expanduser())
    return score_batch(
        source,
        workspace.home / output.expanduser(),
        model_uri=model_uri or registry.champion_uri(settings.model_name),
        tracking_uri=tracking.tracking_uri(settings),
        rejects=None if rejects is None else workspace.home / rejects.expanduser(),
        chunk_rows=chunk_rows,
        reasons=reasons,
        memory_limit=memory_limit or None,
        work_dir=workspace.data if workspace.data.is_dir() else None,
        progress=progress,
        engine="spark" if (engine or settings.engine) == "spark" else "duckdb",
        spark_settings=settings.spark,
    )
