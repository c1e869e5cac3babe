"""Publishing the monitor stage's numbers to Amazon CloudWatch, where alarms and dashboards live.

Each monitor run becomes one data point per metric, in one namespace (default ``CreditRisk/PD``)
under the configured dimensions (default ``Model=CreditRiskPD``), plus ``ModelVersion`` when the
run names the champion it scored:

========================  =====  ===========================================================
Metric                    Unit   Meaning
========================  =====  ===========================================================
``ScorePSI``              None   population stability index of the PD scores
``DriftedFeatureShare``   None   share of tested input features that drifted, a 0–1 ratio
``DriftedFeatures``       Count  input features that drifted
``FeaturesTested``        Count  input features tested for drift
``RowsScored``            Count  applications scored in the monitored batch
``StaleTables``           Count  source tables older than their maximum age, or missing
``MaxSourceAgeHours``     None   age of the oldest source table snapshot, in hours
``RetrainRecommended``    None   1 when the retrain trigger calls for a retrain, else 0
========================  =====  ===========================================================

``DriftedFeatureShare`` stays a 0–1 ratio (not ``Percent``) and ``MaxSourceAgeHours`` stays in
hours (CloudWatch has no hours unit) so an alarm's threshold is the very number the model-risk
team signed in :class:`~creditrisk.monitoring.trigger.RetrainRules` (``max_drift_share=0.30``)
and in the freshness check (``max_age_hours=48``). The metric name carries the unit.

Publishing is off unless ``CREDITRISK_CLOUDWATCH_ENABLED=true`` (the ``cloudwatch`` section of
:class:`creditrisk.settings.Settings`, which checks names and dimensions against CloudWatch's
limits when it is read); nothing here touches AWS at import time. The client uses boto3's
standard chain for credentials and region, and honours ``AWS_ENDPOINT_URL`` (how the tests reach
a moto server).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from creditrisk.settings import (
    MAX_DIMENSION_NAME_LENGTH,
    MAX_DIMENSION_VALUE_LENGTH,
    MAX_DIMENSIONS,
    MAX_NAMESPACE_LENGTH,
    CloudWatchSettings,
    check_dimensions,
)

__all__ = [
    "MAX_DIMENSIONS",
    "MAX_DIMENSION_NAME_LENGTH",
    "MAX_DIMENSION_VALUE_LENGTH",
    "MAX_NAMESPACE_LENGTH",
    "METRICS",
    "CloudWatchError",
    "CloudWatchSettings",
    "MonitorMetrics",
    "check_dimensions",
    "cloudwatch_client",
    "publish",
]

#: CloudWatch rejects values outside ±2^360, and NaN or infinities.
MAX_ABS_VALUE = 2.0**360

#: Data points per PutMetricData request. The API takes up to 1000 metrics per request, but
#: also at most 1 MB per request, and one datum can carry 30 dimensions of up to 255 + 1024
#: characters (~38 KB); 20 such datums stay under 1 MB whatever the dimensions are. A monitor
#: run publishes at most 8, so this is one request in practice.
MAX_DATUMS_PER_REQUEST = 20

#: The dimension added when a run names the model version it scored.
MODEL_VERSION_DIMENSION = "ModelVersion"


class CloudWatchError(Exception):
    """CloudWatch could not be reached or refused the data; carries AWS's message."""


#: Field of :class:`MonitorMetrics` → (CloudWatch metric name, CloudWatch unit).
METRICS: dict[str, tuple[str, str]] = {
    "score_psi": ("ScorePSI", "None"),
    "drift_share": ("DriftedFeatureShare", "None"),  # 0–1, like RetrainRules.max_drift_share
    "drifted_features": ("DriftedFeatures", "Count"),
    "features_tested": ("FeaturesTested", "Count"),
    "rows_scored": ("RowsScored", "Count"),
    "stale_tables": ("StaleTables", "Count"),
    "max_source_age_hours": ("MaxSourceAgeHours", "None"),  # hours, like max_age_hours
    "retrain_recommended": ("RetrainRecommended", "None"),  # 1 or 0
}


@dataclass(frozen=True)
class MonitorMetrics:
    """What one monitor run publishes; ``None`` means the run did not measure it.

    Numbers CloudWatch refuses (NaN, infinities) are only refused by :meth:`datums`, i.e. when
    publishing: with publishing off, a run with a NaN PSI is not failed by this module.

    Raises:
        ValueError: On a share outside 0–1, a negative count, or more drifted features than
            were tested (a bug in the caller, whether or not anything is published).
    """

    score_psi: float
    drift_share: float  # drifted / tested input features, 0–1
    drifted_features: int
    features_tested: int
    rows_scored: int
    stale_tables: int | None = None
    max_source_age_hours: float | None = None
    retrain_recommended: bool | None = None
    model_version: str | None = None

    def __post_init__(self) -> None:
        # Written so that NaN passes: it is refused when publishing, not when recording.
        if self.drift_share < 0 or self.drift_share > 1:
            raise ValueError(f"drift_share is a 0–1 ratio, got {self.drift_share}")
        counts = {
            "drifted_features": self.drifted_features,
            "features_tested": self.features_tested,
            "rows_scored": self.rows_scored,
            "stale_tables": self.stale_tables,
        }
        for name, count in counts.items():
            if count is not None and count < 0:
                raise ValueError(f"{name} is a count, got {count}")
        if self.drifted_features > self.features_tested:
            raise ValueError(
                f"{self.drifted_features} drifted features out of {self.features_tested} tested"
            )

    def _values(self) -> dict[str, float]:
        values = {
            "score_psi": self.score_psi,
            "drift_share": self.drift_share,
            "drifted_features": self.drifted_features,
            "features_tested": self.features_tested,
            "rows_scored": self.rows_scored,
            "stale_tables": self.stale_tables,
            "max_source_age_hours": self.max_source_age_hours,
            "retrain_recommended": self.retrain_recommended,
        }
        return {name: float(value) for name, value in values.items() if value is not None}

    def metric_values(self) -> dict[str, float]:
        """CloudWatch metric name → value, for the metrics this run measured."""
        return {METRICS[name][0]: value for name, value in self._values().items()}

    def dimensions(self, dimensions: Mapping[str, str]) -> dict[str, str]:
        """``dimensions`` with this run's ``ModelVersion`` (which wins over a configured one)."""
        merged = dict(dimensions)
        if self.model_version is not None:
            merged[MODEL_VERSION_DIMENSION] = self.model_version
        check_dimensions(merged)
        return merged

    def datums(self, dimensions: Mapping[str, str], timestamp: datetime) -> list[dict[str, Any]]:
        """The ``MetricData`` of a ``put_metric_data`` call, one datum per measured metric.

        Args:
            dimensions: Dimensions on every datum; ``ModelVersion`` is added when the run has one.
            timestamp: When the run measured these numbers; must carry a time zone.

        Raises:
            ValueError: A NaN, infinite or out-of-range value, a naive timestamp, or dimensions
                CloudWatch would refuse.
        """
        values = self._values()
        for name, value in values.items():
            if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
                raise ValueError(f"{name} must be a finite number CloudWatch accepts, got {value}")
        if timestamp.tzinfo is None:
            raise ValueError(f"timestamp must carry a time zone, got {timestamp.isoformat()}")
        on_metric = [{"Name": n, "Value": v} for n, v in self.dimensions(dimensions).items()]
        return [
            {
                "MetricName": METRICS[name][0],
                "Dimensions": on_metric,
                "Timestamp": timestamp,
                "Value": value,
                "Unit": METRICS[name][1],
            }
            for name, value in values.items()
        ]


def cloudwatch_client(settings: CloudWatchSettings) -> Any:
    """A boto3 CloudWatch client from the standard chain, bounded by the settings' timeout.

    Raises:
        CloudWatchError: When boto3 cannot build a client (e.g. no region configured).
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    # Bounded, so a dead endpoint costs the monitor stage at most about
    # max_attempts × (connect + read timeout) plus backoff, not botocore's 60 s per attempt.
    config = Config(
        connect_timeout=settings.timeout_seconds,
        read_timeout=settings.timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
    )
    try:
        return boto3.client("cloudwatch", region_name=settings.region, config=config)
    except BotoCoreError as error:
        raise CloudWatchError(f"cannot create a CloudWatch client: {error}") from error


def _batches(datums: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(datums), size):
        yield datums[start : start + size]


def publish(
    metrics: MonitorMetrics,
    settings: CloudWatchSettings,
    *,
    client: Any = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """Put one monitor run's metrics into CloudWatch.

    Failing to publish raises rather than warns: the caller (the monitor stage) decides whether
    a monitoring run whose numbers did not reach CloudWatch has failed, e.g. by catching
    :class:`CloudWatchError` and recording it in the run's report.

    Args:
        metrics: The run's numbers.
        settings: Where to publish (``Settings().cloudwatch``).
        client: A boto3 CloudWatch client to use instead of one built from ``settings``
            (its own timeouts and retries then apply).
        timestamp: When the run measured these numbers (default: now, UTC).

    Returns:
        ``{"published": False, "reason": "disabled"}`` when publishing is off (no client is
        created, AWS is not contacted); otherwise ``published``, ``namespace``, ``dimensions``,
        ``metrics`` (metric name → value) and ``timestamp`` (ISO 8601).

    Raises:
        ValueError: A NaN or infinite metric, a naive ``timestamp``, or dimensions CloudWatch
            would refuse; raised before AWS is contacted, and not a :class:`CloudWatchError`
            (the numbers are wrong, not the publishing).
        CloudWatchError: No client could be created, credentials are missing, the endpoint
            cannot be reached in time, or CloudWatch refused the data. Requests already sent
            stay published (only when a run has more than ``MAX_DATUMS_PER_REQUEST`` metrics).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if not settings.enabled:
        return {"published": False, "reason": "disabled"}
    timestamp = timestamp or datetime.now(UTC)
    datums = metrics.datums(settings.dimensions, timestamp)
    client = client if client is not None else cloudwatch_client(settings)
    for batch in _batches(datums, MAX_DATUMS_PER_REQUEST):
        try:
            client.put_metric_data(Namespace=settings.namespace, MetricData=list(batch))
        except ClientError as error:
            detail = error.response.get("Error", {})
            raise CloudWatchError(
                f"CloudWatch refused metrics for {settings.namespace!r}: "
                f"{detail.get('Code', 'error')}: {detail.get('Message', error)}"
            ) from error
        except BotoCoreError as error:  # no credentials, endpoint unreachable, timeout
            raise CloudWatchError(
                f"cannot publish metrics to CloudWatch namespace {settings.namespace!r}: {error}"
            ) from error
    return {
        "published": True,
        "namespace": settings.namespace,
        "dimensions": metrics.dimensions(settings.dimensions),
        "metrics": metrics.metric_values(),
        "timestamp": timestamp.isoformat(),
    }
