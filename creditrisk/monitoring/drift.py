"""Data drift of the model's inputs with Evidently 0.7: one drift test per feature, every feature.

What the report tests, and how (see ``bench/studies/evidently_drift.md`` for the study behind it):

* **Every model feature**, declared explicitly with a ``DataDefinition``; nothing is inferred
  (inference would drop nullable integer columns and turn small-integer columns into categories).
* **Methods chosen per column, and recorded:** Wasserstein distance (normed by the reference's
  standard deviation) for numbers with more than five distinct values, Jensen–Shannon distance
  for flags, small counts and categories. Both read "drift from 0.1 on". Evidently's own choice
  depends on the reference size (p-value tests below 1,000 rows), so it is not left to it.
* **One ``ValueDrift`` metric per column** rather than ``DataDriftPreset``: the same per-column
  scores and flags in a sixth of the time (the preset recomputes drift twice more and builds
  correlation matrices for its plots). The dataset counts as drifted when the share of drifted
  features is *above* ``drift_share`` — the retrain trigger's reading of the same share
  (Evidently's preset uses ``≥``; the two differ only at equality).
* **A fixed, seeded reference sample** (50,000 rows by default): scores moved by at most 0.011
  against thresholds of 0.1 at full size.
* **Columns Evidently cannot test** (no non-null value in the reference or the current batch)
  are listed as skipped instead of aborting the report. Missing values are dropped by the drift
  tests; a change in missingness is what the CSI's *missing* bin reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from creditrisk.io import atomic_path, write_json
from creditrisk.provenance import to_json_value
from creditrisk.settings import default_environment

if TYPE_CHECKING:  # pragma: no cover
    from evidently.core.report import Snapshot

#: Numbers with at most this many distinct reference values are tested as categories.
FEW_VALUES = 5
#: The reference sample size used when none is given (0 or None: the whole reference).
DEFAULT_REFERENCE_SAMPLE = 50_000


@dataclass(frozen=True)
class DriftSettings:
    """How each column is tested, and when the dataset as a whole counts as drifted."""

    numeric_method: str = "wasserstein"
    numeric_threshold: float = 0.1
    categorical_method: str = "jensenshannon"
    categorical_threshold: float = 0.1
    drift_share: float = 0.10
    reference_sample: int | None = DEFAULT_REFERENCE_SAMPLE
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if self.reference_sample is not None and self.reference_sample < 0:
            raise ValueError(f"reference_sample must be >= 0, got {self.reference_sample}")


@dataclass
class DriftResult:
    """Per-column drift and the summary; ``snapshot`` is the Evidently report (for HTML)."""

    columns: pd.DataFrame
    skipped: dict[str, str]
    summary: dict[str, Any]
    snapshot: Snapshot | None = field(default=None, repr=False)

    @property
    def drifted(self) -> list[str]:
        return self.columns.loc[self.columns["drifted"], "column"].tolist()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: summary, per-column rows and the skipped columns."""
        payload = {"summary": self.summary, "columns": self.columns, "skipped": self.skipped}
        return to_json_value(payload)  # type: ignore[return-value]


def column_methods(
    reference: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    settings: DriftSettings,
) -> dict[str, tuple[str, str, float]]:
    """Per feature: (kind, method, threshold) — ``kind`` is Evidently's column type."""
    categorical_set = set(categorical)
    chosen: dict[str, tuple[str, str, float]] = {}
    for feature in features:
        if feature in categorical_set:
            chosen[feature] = ("categorical", *_categorical(settings))
        elif reference[feature].nunique(dropna=True) <= FEW_VALUES:
            chosen[feature] = ("numerical", *_categorical(settings))
        else:
            chosen[feature] = (
                "numerical",
                settings.numeric_method,
                settings.numeric_threshold,
            )
    return chosen


def _categorical(settings: DriftSettings) -> tuple[str, float]:
    return settings.categorical_method, settings.categorical_threshold


def untestable_columns(
    reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str]
) -> dict[str, str]:
    """Features without a single finite value on one side: Evidently would abort on them."""
    skipped: dict[str, str] = {}
    for feature in features:
        for side, frame in (("reference", reference), ("current", current)):
            if not _has_value(frame[feature]):
                skipped[feature] = f"no value in the {side} data"
                break
    return skipped


def _has_value(values: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return bool(np.isfinite(numbers).any())
    return bool(values.notna().any())


def reference_sample(reference: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A fixed, seeded sample of the reference (the whole of it when ``size`` is 0/None)."""
    if not size or len(reference) <= size:
        return reference
    return reference.sample(n=size, random_state=seed).sort_index()


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    settings: DriftSettings | None = None,
) -> DriftResult:
    """Test every feature of ``current`` against ``reference`` for drift.

    Args:
        reference: Reference rows (e.g. the training split); extra columns are ignored.
        current: The batch to test.
        features: The model's input features, all of which are tested.
        categorical: The features that are categories (the others are numbers).
        settings: Methods, thresholds, drift share and reference sample.

    Raises:
        ValueError: The current batch is empty, or a feature is absent from either frame.
    """
    default_environment("DO_NOT_TRACK", "1")  # Evidently's telemetry (UI only) stays off
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    settings = settings or DriftSettings()
    if len(current) == 0:
        raise ValueError("the current batch is empty: there is nothing to test for drift")
    absent = [f for f in features if f not in reference.columns or f not in current.columns]
    if absent:
        raise ValueError(f"features absent from the reference or current data: {absent}")
    sample = reference_sample(reference, settings.reference_sample, settings.seed)
    skipped = untestable_columns(sample, current, features)
    tested = [f for f in features if f not in skipped]
    methods = column_methods(sample, tested, categorical, settings)
    definition = DataDefinition(
        numerical_columns=[f for f in tested if methods[f][0] == "numerical"],
        categorical_columns=[f for f in tested if methods[f][0] == "categorical"],
        text_columns=[],
        datetime_columns=[],
        list_columns=[],
        unknown_columns=[],
    )
    metrics = [ValueDrift(column=f, method=methods[f][1], threshold=methods[f][2]) for f in tested]
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(_evidently_frame(current, tested), definition),
        reference_data=Dataset.from_pandas(_evidently_frame(sample, tested), definition),
    )
    columns = _column_results(snapshot.dict(), methods)
    drifted = int(columns["drifted"].sum())
    share = drifted / len(columns) if len(columns) else 0.0
    summary = {
        "features": len(features),
        "tested": len(columns),
        "skipped": len(skipped),
        "drifted": drifted,
        "drift_share": share,
        "drift_share_threshold": settings.drift_share,
        "dataset_drift": bool(len(columns) and share > settings.drift_share),
        "reference_rows": len(reference),
        "reference_sample_rows": len(sample),
        "current_rows": len(current),
        "settings": {
            "numeric_method": settings.numeric_method,
            "numeric_threshold": settings.numeric_threshold,
            "categorical_method": settings.categorical_method,
            "categorical_threshold": settings.categorical_threshold,
            "few_values": FEW_VALUES,
            "reference_sample": settings.reference_sample,
            "seed": settings.seed,
        },
    }
    return DriftResult(columns=columns, skipped=skipped, summary=summary, snapshot=snapshot)


def _evidently_frame(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The tested columns; nullable integers as floats (Evidently handles NaN, not pd.NA)."""
    out = frame[list(columns)].copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.api.extensions.ExtensionDtype) and (
            pd.api.types.is_numeric_dtype(out[column])
        ):
            out[column] = out[column].astype("float64")
    return out.reset_index(drop=True)


def _column_results(
    report: Mapping[str, Any], methods: Mapping[str, tuple[str, str, float]]
) -> pd.DataFrame:
    """Per column: score and drift flag (a FAILed drift test ⇔ drift, whatever the method)."""
    by_metric: dict[str, dict[str, Any]] = {}
    for metric in report["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            column = config["column"]
            by_metric[metric["id"]] = {
                "column": column,
                "kind": methods[column][0],
                "method": methods[column][1],
                "threshold": float(methods[column][2]),
                "score": float(metric["value"]),
                "drifted": False,
            }
    for test in report["tests"]:
        row = by_metric.get(test["metric_config"]["metric_id"])
        if row is not None:
            status = getattr(test["status"], "value", test["status"])
            row["drifted"] = str(status).upper() == "FAIL"
    rows = sorted(by_metric.values(), key=lambda r: list(methods).index(r["column"]))
    frame = pd.DataFrame(
        rows, columns=["column", "kind", "method", "threshold", "score", "drifted"]
    )
    return frame.astype({"drifted": bool})


def write_drift_report(result: DriftResult, reports: Path) -> dict[str, Path]:
    """``drift_report.html`` (Evidently's self-contained page) and ``drift_report.json``.

    The JSON holds our summary and per-column results, then Evidently's own result dictionary.
    """
    paths = {"html": reports / "drift_report.html", "json": reports / "drift_report.json"}
    reports.mkdir(parents=True, exist_ok=True)
    payload = result.as_dict()
    if result.snapshot is not None:
        with atomic_path(paths["html"], suffix=".html") as temporary:
            result.snapshot.save_html(str(temporary))
        payload["evidently"] = to_json_value(json.loads(result.snapshot.json()))
    write_json(paths["json"], payload)
    return paths
