"""Publishing monitor metrics to CloudWatch, read back from a real moto server."""

from __future__ import annotations

import json
import math
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from conftest import free_port
from pydantic import ValidationError

from creditrisk.monitoring import cloudwatch
from creditrisk.monitoring.cloudwatch import (
    CloudWatchError,
    CloudWatchSettings,
    MonitorMetrics,
    publish,
)
from creditrisk.settings import Settings

RUN = MonitorMetrics(
    score_psi=0.31,
    drift_share=0.25,
    drifted_features=3,
    features_tested=12,
    rows_scored=48744,
    stale_tables=1,
    max_source_age_hours=50.5,
    retrain_recommended=True,
    model_version="7",
)

#: What RUN publishes: metric name → (value, unit).
PUBLISHED = {
    "ScorePSI": (0.31, "None"),
    "DriftedFeatureShare": (0.25, "None"),
    "DriftedFeatures": (3.0, "Count"),
    "FeaturesTested": (12.0, "Count"),
    "RowsScored": (48744.0, "Count"),
    "StaleTables": (1.0, "Count"),
    "MaxSourceAgeHours": (50.5, "None"),
    "RetrainRecommended": (1.0, "None"),
}

AT = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: the moto server lives for the whole session."""
    return f"CreditRisk/Test/{uuid.uuid4().hex[:12]}"


def _client(region: str = "us-east-1") -> Any:
    return boto3.client("cloudwatch", region_name=region)


def _listed(namespace: str, region: str = "us-east-1") -> dict[str, dict[str, str]]:
    """Metric name → its dimensions, as ``list_metrics`` shows them."""
    metrics = _client(region).list_metrics(Namespace=namespace)["Metrics"]
    return {m["MetricName"]: {d["Name"]: d["Value"] for d in m["Dimensions"]} for m in metrics}


def _read_back(namespace: str, dimensions: dict[str, str], names: list[str]) -> dict[str, Any]:
    """Metric name → (values, unit) of the data points around ``AT``."""
    on_metric = [{"Name": n, "Value": v} for n, v in dimensions.items()]
    client = _client()
    found = {}
    for name in names:
        response = client.get_metric_statistics(
            Namespace=namespace,
            MetricName=name,
            Dimensions=on_metric,
            StartTime=AT - timedelta(minutes=5),
            EndTime=AT + timedelta(minutes=5),
            Period=60,
            Statistics=["Maximum", "SampleCount"],
        )
        points = response["Datapoints"]
        found[name] = ([p["Maximum"] for p in points], {p["Unit"] for p in points})
    return found


def _forget_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, keep_region: bool) -> None:
    """No credentials anywhere boto3 looks (and no region unless kept)."""
    names = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ]
    if not keep_region:
        names += ["AWS_DEFAULT_REGION", "AWS_REGION"]
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it found for earlier tests.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


# ---------------------------------------------------------------------------------------------
# Publishing to a real moto server
# ---------------------------------------------------------------------------------------------


def test_every_metric_arrives_with_its_value_unit_and_dimensions(
    s3_env: str, namespace: str
) -> None:
    settings = CloudWatchSettings(
        enabled=True, namespace=namespace, dimensions={"Model": "CreditRiskPD", "Env": "test"}
    )

    result = publish(RUN, settings, timestamp=AT)

    expected_dimensions = {"Model": "CreditRiskPD", "Env": "test", "ModelVersion": "7"}
    assert result == {
        "published": True,
        "namespace": namespace,
        "dimensions": expected_dimensions,
        "metrics": {name: value for name, (value, _) in PUBLISHED.items()},
        "timestamp": "2026-11-20T06:30:00+00:00",
    }
    assert _listed(namespace) == {name: expected_dimensions for name in PUBLISHED}
    read = _read_back(namespace, expected_dimensions, list(PUBLISHED))
    assert read == {name: ([value], {unit}) for name, (value, unit) in PUBLISHED.items()}


def test_metrics_a_run_did_not_measure_are_not_published(s3_env: str, namespace: str) -> None:
    scoring_only = MonitorMetrics(
        score_psi=0.02, drift_share=0.0, drifted_features=0, features_tested=12, rows_scored=500
    )

    result = publish(scoring_only, CloudWatchSettings(enabled=True, namespace=namespace))

    assert set(result["metrics"]) == {
        "ScorePSI",
        "DriftedFeatureShare",
        "DriftedFeatures",
        "FeaturesTested",
        "RowsScored",
    }
    # Without a model version there is no ModelVersion dimension.
    assert _listed(namespace) == {name: {"Model": "CreditRiskPD"} for name in result["metrics"]}


def test_a_run_with_more_metrics_than_one_request_holds_is_sent_in_several(
    s3_env: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloudwatch, "MAX_DATUMS_PER_REQUEST", 3)
    client = _client()
    requests: list[int] = []
    client.meta.events.register(
        "before-parameter-build.cloudwatch.PutMetricData",
        lambda params, **_: requests.append(len(params["MetricData"])),
    )

    publish(RUN, CloudWatchSettings(enabled=True, namespace=namespace), client=client)

    assert requests == [3, 3, 2]
    assert set(_listed(namespace)) == set(PUBLISHED)


def test_disabled_publishing_sends_nothing(s3_env: str, namespace: str) -> None:
    result = publish(RUN, CloudWatchSettings(enabled=False, namespace=namespace))

    assert result == {"published": False, "reason": "disabled"}
    assert _listed(namespace) == {}


def test_publishing_is_off_by_default_and_then_needs_no_aws_setup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CREDITRISK_CLOUDWATCH_ENABLED", raising=False)
    _forget_aws(monkeypatch, tmp_path, keep_region=False)  # creating a client would now fail

    # The settings of a default environment: the cloudwatch section is read from it.
    assert publish(RUN, Settings().cloudwatch) == {"published": False, "reason": "disabled"}


def test_settings_come_from_the_environment(
    s3_env: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_ENABLED", "true")
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_NAMESPACE", namespace)
    monkeypatch.setenv(
        "CREDITRISK_CLOUDWATCH_DIMENSIONS", json.dumps({"Model": "CreditRiskPD", "Env": "prod"})
    )
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_REGION", "eu-west-1")  # not AWS_DEFAULT_REGION

    result = publish(replace(RUN, model_version=None), Settings().cloudwatch, timestamp=AT)

    assert result["published"] is True
    prod = {"Model": "CreditRiskPD", "Env": "prod"}
    assert _listed(namespace, "eu-west-1") == {name: prod for name in PUBLISHED}
    assert _listed(namespace, "us-east-1") == {}


# ---------------------------------------------------------------------------------------------
# What CloudWatch would refuse is refused here, before AWS is contacted
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"namespace": "AWS/Foo"}, "reserved"),
        ({"namespace": ""}, "non-whitespace"),
        ({"namespace": "   "}, "non-whitespace"),
        ({"namespace": ":CreditRisk"}, "start with ':'"),
        ({"namespace": "Crédit/PD"}, "ASCII"),
        ({"namespace": "C" * 256}, "at most 255"),
        ({"dimensions": {f"D{i}": "x" for i in range(31)}}, "at most 30 dimensions"),
        ({"dimensions": {"Model": ""}}, "non-whitespace"),
        ({"dimensions": {"": "CreditRiskPD"}}, "non-whitespace"),
        ({"dimensions": {":Model": "x"}}, "start with ':'"),
        ({"dimensions": {"Model": "x" * 1025}}, "at most 1024"),
        ({"dimensions": {"M" * 256: "x"}}, "at most 255"),
        ({"dimensions": {"Model": "a\tb"}}, "printable ASCII"),
        ({"timeout_seconds": 0}, "greater than 0"),
        ({"max_attempts": 0}, "greater than or equal to 1"),
    ],
)
def test_settings_cloudwatch_would_refuse_raise(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CloudWatchSettings(**fields)


def test_settings_from_the_environment_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_NAMESPACE", "AWS/EC2")
    with pytest.raises(ValidationError, match="reserved"):
        CloudWatchSettings()
    monkeypatch.delenv("CREDITRISK_CLOUDWATCH_NAMESPACE")
    monkeypatch.setenv("CREDITRISK_CLOUDWATCH_DIMENSIONS", '{"Model": CreditRiskPD}')  # not JSON
    with pytest.raises(ValueError, match="dimensions"):
        CloudWatchSettings()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"drift_share": 1.5}, "0–1 ratio"),
        ({"drift_share": -0.1}, "0–1 ratio"),
        ({"rows_scored": -1}, "rows_scored is a count"),
        ({"stale_tables": -2}, "stale_tables is a count"),
        ({"drifted_features": 13}, "13 drifted features out of 12"),
    ],
)
def test_impossible_monitor_numbers_raise(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(RUN, **fields)


REFUSED = [
    ({"score_psi": math.nan}, "score_psi must be a finite number"),
    ({"score_psi": math.inf}, "score_psi must be a finite number"),
    ({"score_psi": 2.0**361}, "score_psi must be a finite number"),
    ({"drift_share": math.nan}, "drift_share must be a finite number"),
    ({"max_source_age_hours": -math.inf}, "max_source_age_hours must be a finite number"),
    ({"model_version": " "}, "'ModelVersion' value must contain a non-whitespace"),
    ({"model_version": "v7\n"}, "'ModelVersion' value must be printable ASCII"),
]


@pytest.mark.parametrize(("fields", "message"), REFUSED)
def test_numbers_cloudwatch_would_refuse_raise_before_publishing(
    s3_env: str, namespace: str, fields: dict[str, Any], message: str
) -> None:
    settings = CloudWatchSettings(enabled=True, namespace=namespace)
    with pytest.raises(ValueError, match=message):
        publish(replace(RUN, **fields), settings)
    assert _listed(namespace) == {}


@pytest.mark.parametrize("fields", [fields for fields, _ in REFUSED])
def test_with_publishing_off_refused_numbers_do_not_fail_the_run(fields: dict[str, Any]) -> None:
    run = replace(RUN, **fields)
    assert publish(run, CloudWatchSettings(enabled=False)) == {
        "published": False,
        "reason": "disabled",
    }


def test_a_model_version_beyond_thirty_dimensions_raises_before_publishing(
    s3_env: str, namespace: str
) -> None:
    settings = CloudWatchSettings(
        enabled=True, namespace=namespace, dimensions={f"D{i}": "x" for i in range(30)}
    )
    with pytest.raises(ValueError, match="at most 30 dimensions per metric, got 31"):
        publish(RUN, settings)
    assert _listed(namespace) == {}


def test_a_timestamp_without_a_time_zone_raises(s3_env: str, namespace: str) -> None:
    settings = CloudWatchSettings(enabled=True, namespace=namespace)
    with pytest.raises(ValueError, match="time zone"):
        publish(RUN, settings, timestamp=datetime(2026, 11, 20, 6, 30))


# ---------------------------------------------------------------------------------------------
# AWS failures become CloudWatchError, quickly
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel completes handshakes; nobody reads or replies
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("endpoint", ["closed", "silent"])
def test_a_dead_endpoint_raises_cloudwatch_error_within_the_timeout(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, silent_endpoint: str, endpoint: str
) -> None:
    url = silent_endpoint if endpoint == "silent" else f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    settings = CloudWatchSettings(enabled=True, timeout_seconds=0.5, max_attempts=1)

    started = time.monotonic()
    with pytest.raises(CloudWatchError, match=r"CreditRisk/PD.*127\.0\.0\.1"):
        publish(RUN, settings)
    assert time.monotonic() - started < 5


def test_missing_credentials_raise_cloudwatch_error(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _forget_aws(monkeypatch, tmp_path, keep_region=True)
    with pytest.raises(CloudWatchError, match="credentials"):
        publish(RUN, CloudWatchSettings(enabled=True, max_attempts=1))


def test_no_region_raises_cloudwatch_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _forget_aws(monkeypatch, tmp_path, keep_region=False)
    with pytest.raises(CloudWatchError, match="region"):
        publish(RUN, CloudWatchSettings(enabled=True))


def test_a_refusal_carries_aws_code_and_message(s3_env: str) -> None:
    client = _client()
    refusal = "The parameter MetricData.member.1.Timestamp must be within two weeks."
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "put_metric_data", service_error_code="InvalidParameterValue", service_message=refusal
        )
        with pytest.raises(CloudWatchError, match=re.escape(f"InvalidParameterValue: {refusal}")):
            publish(RUN, CloudWatchSettings(enabled=True), client=client)
