"""Scoring with a registered model: feature-store rows in, what a lender acts on out.

* :mod:`.scorer` — :class:`Scorer` (a loaded registry version and its frozen decision policy):
  PD, score, band, decision and reason codes;
* :mod:`.batch` — raw tables (files or S3) → typed Parquet → the feature SQL → scores in chunks.

The REST service and the batch command line (``serving/``) are edges over these; the monitor
stage scores production batches with the same code.
"""

from creditrisk.scoring.scorer import (
    APPROVE,
    DECLINE,
    DEFAULT_REASONS,
    SCORE_COLUMNS,
    ModelInfo,
    Scorer,
    Scores,
    ScoringError,
    UnscorableInput,
    resolve_model,
)

__all__ = [
    "APPROVE",
    "DECLINE",
    "DEFAULT_REASONS",
    "SCORE_COLUMNS",
    "ModelInfo",
    "Scorer",
    "Scores",
    "ScoringError",
    "UnscorableInput",
    "resolve_model",
]
