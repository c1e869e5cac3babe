"""Data freshness: how old each source table's snapshot is, against a maximum age.

A model scored on stale bureau or payment data decides on yesterday's applicant. The check reads
each table file's modification time in the source (a folder, or an S3 prefix's LastModified),
so it costs a listing, not a download. ``creditrisk freshness --fail-on-stale`` exits non-zero
when any required table is stale or missing; the caller writes the report (the monitor stage and
the command line to ``reports/data_freshness.json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from creditrisk.data import sources
from creditrisk.data.tables import tables

#: Default maximum age of a source snapshot, in hours (a daily feed with a day of slack).
DEFAULT_MAX_AGE_HOURS = 48.0

#: Tables that must be present for scoring (the others are optional history).
DEFAULT_REQUIRED = ("application_test",)


def check_freshness(
    source: str | Path,
    *,
    max_age_hours: float = DEFAULT_MAX_AGE_HOURS,
    per_table_hours: Mapping[str, float] | None = None,
    required: Sequence[str] = DEFAULT_REQUIRED,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The age of every table file in ``source`` against its maximum age.

    Args:
        source: A folder or ``s3://bucket/prefix`` of Kaggle-named files.
        max_age_hours: Maximum age of a table's file.
        per_table_hours: Maximum ages for particular tables (Kaggle stems), e.g. a monthly
            ``bureau_balance`` feed.
        required: Tables whose absence makes the source stale.
        now: The time to measure against (default: now, UTC).

    Returns:
        A JSON-ready report: ``source``, ``checked_at``, ``tables`` (per table present: file,
        modified_at, age_hours, max_age_hours, stale), ``missing_required``, ``stale`` (any stale
        table or missing required one) and ``reasons`` in words.

    Raises:
        SourceError: When the source cannot be listed.
    """
    if max_age_hours <= 0:
        raise ValueError(f"max_age_hours must be positive, got {max_age_hours}")
    now = now or datetime.now(UTC)
    limits = dict(per_table_hours or {})
    unknown = sorted(set(limits) - set(tables()))
    if unknown:
        raise ValueError(f"unknown tables in per_table_hours: {unknown}")
    found, _ = sources.discover(source, sources.SCORING_SUFFIXES)
    rows: list[dict[str, Any]] = []
    reasons: list[str] = []
    for name in tables():
        file = found.get(name)
        if file is None:
            continue
        limit = float(limits.get(name, max_age_hours))
        modified = file.modified
        age = (now - modified).total_seconds() / 3600 if modified is not None else None
        stale = age is None or age > limit
        rows.append(
            {
                "table": name,
                "file": file.name,
                "modified_at": modified.isoformat() if modified else None,
                "age_hours": round(age, 3) if age is not None else None,
                "max_age_hours": limit,
                "stale": stale,
            }
        )
        if stale:
            shown = "unknown" if age is None else f"{age:.1f} h"
            reasons.append(f"{name}: {file.name} is {shown} old (maximum {limit:g} h)")
    missing = [name for name in required if name not in found]
    reasons += [f"{name}: required, but not in {source}" for name in missing]
    return {
        "source": str(source),
        "checked_at": now.isoformat(),
        "max_age_hours": max_age_hours,
        "tables": rows,
        "missing_required": missing,
        "stale": bool(reasons),
        "reasons": reasons,
    }
