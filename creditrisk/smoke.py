"""Post-deployment smoke test of a running scoring API (``creditrisk smoke``, ``make smoke``).

Waits until ``GET /ready`` answers 200 (a model is in service), then scores the bundled example
applicant (``serving/example_request.json``, the README's curl example) with ``POST /predict``
and checks the answer a caller relies on: one prediction per application, in order, each with a
probability of default in [0, 1]. Any other outcome is a :class:`SmokeFailed` naming the step,
the HTTP status and the service's own explanation.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx

EXAMPLE_REQUEST = "example_request.json"


class SmokeFailed(Exception):
    """The service is not ready in time or does not score the example correctly."""


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test saw: when the service was ready, which model scored, the PDs."""

    url: str
    ready_after_s: float
    model: dict[str, Any]
    probability_of_default: dict[int, float]
    decisions: dict[int, str]
    predict_ms: float

    def describe(self) -> str:
        model = self.model
        scored = ", ".join(
            f"SK_ID_CURR {applicant} PD {pd_:.4f} {self.decisions.get(applicant, '')}".rstrip()
            for applicant, pd_ in self.probability_of_default.items()
        )
        return (
            f"{self.url} ready after {self.ready_after_s:.1f} s; POST /predict scored by "
            f"{model.get('name')} version {model.get('version')}"
            f"{' (' + str(model['alias']) + ')' if model.get('alias') else ''}: {scored} "
            f"in {self.predict_ms:.0f} ms"
        )


def example_request() -> dict[str, Any]:
    """The bundled example applicant, a valid ``/predict`` body."""
    text = resources.files("serving").joinpath(EXAMPLE_REQUEST).read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text)
    return body


def smoke_test(
    url: str,
    *,
    timeout: float = 120.0,
    api_key: str | None = None,
    request: dict[str, Any] | None = None,
    poll_interval: float = 1.0,
) -> SmokeResult:
    """Wait for ``/ready``, then check that ``/predict`` scores the example applicant.

    Args:
        url: The service's base URL, e.g. ``http://127.0.0.1:8000``.
        timeout: Seconds to wait for ``/ready``; also the limit for the ``/predict`` call.
        api_key: Sent as ``X-API-Key`` (services started with ``CREDITRISK_API_KEY``).
        request: The ``/predict`` body; default :func:`example_request`.
        poll_interval: Seconds between two ``/ready`` polls.

    Returns:
        What the service answered.

    Raises:
        SmokeFailed: Not ready within ``timeout``, or ``/predict`` failed or answered wrongly.
        ValueError: ``url`` is not an http(s) URL.
    """
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL")
    body = request if request is not None else example_request()
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=base, headers=headers, timeout=min(timeout, 10.0)) as client:
        ready_after = _wait_until_ready(client, base, timeout, poll_interval)
        started = time.perf_counter()
        try:
            response = client.post("/predict", json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise SmokeFailed(f"POST {base}/predict failed: {_describe_error(exc)}") from exc
        predict_ms = (time.perf_counter() - started) * 1000
    answer = _predict_answer(response, base)
    ids = [application.get("SK_ID_CURR") for application in body.get("applications", [])]
    probabilities, decisions = _check_predictions(answer, ids, base)
    return SmokeResult(
        url=base,
        ready_after_s=ready_after,
        model=dict(answer.get("model") or {}),
        probability_of_default=probabilities,
        decisions=decisions,
        predict_ms=predict_ms,
    )


def _wait_until_ready(
    client: httpx.Client, base: str, timeout: float, poll_interval: float
) -> float:
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer yet"
    while True:
        try:
            response = client.get("/ready")
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = _describe_error(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SmokeFailed(
                f"GET {base}/ready did not answer 200 within {timeout:g} s; last: {last}"
            )
        time.sleep(min(poll_interval, remaining))


def _describe_error(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _predict_answer(response: httpx.Response, base: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise SmokeFailed(
            f"POST {base}/predict answered HTTP {response.status_code}: {response.text[:500]}"
        )
    try:
        answer = response.json()
    except ValueError as exc:
        raise SmokeFailed(f"POST {base}/predict answered non-JSON: {response.text[:200]}") from exc
    if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
        raise SmokeFailed(f"POST {base}/predict answered without predictions: {answer!r:.300}")
    return answer


def _check_predictions(
    answer: dict[str, Any], ids: list[Any], base: str
) -> tuple[dict[int, float], dict[int, str]]:
    predictions = answer["predictions"]
    answered = [prediction.get("SK_ID_CURR") for prediction in predictions]
    if answered != ids:
        raise SmokeFailed(
            f"POST {base}/predict answered for applicants {answered}, expected {ids} in order"
        )
    probabilities: dict[int, float] = {}
    decisions: dict[int, str] = {}
    for applicant, prediction in zip(ids, predictions, strict=True):
        value = prediction.get("probability_of_default")
        # bool is an int in Python: a `true` PD is as wrong as a missing one.
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not 0.0 <= value <= 1.0
        ):
            raise SmokeFailed(
                f"POST {base}/predict: SK_ID_CURR {applicant} got probability_of_default "
                f"{value!r}, expected a number in [0, 1]"
            )
        probabilities[applicant] = float(value)
        decisions[applicant] = str(prediction.get("decision", ""))
    return probabilities, decisions
