"""The REST service on a real champion: TestClient for the contract, a real uvicorn for the rest."""

# The fixtures are imported and injected by name (see test_modeling.py).
# ruff: noqa: F811

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import free_port
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modeling_fixtures import modeling_data, modeling_snapshot, params  # noqa: F401
from serving_fixtures import Champion, champion, raw_slice  # noqa: F401

from creditrisk import registry
from creditrisk.data.tables import tables
from creditrisk.features.catalog import COLUMNS, ID_COLUMN
from creditrisk.features.engine import compute_features
from creditrisk.governance import metric_gates
from creditrisk.scoring import Scorer
from creditrisk.scoring.batch import score_batch
from creditrisk.settings import ServingSettings, Settings, Workspace
from serving.api import EXAMPLE_FILE, build_asgi, request_tables
from serving.schemas import HISTORY_KEYS, PredictRequest
from serving.worker import ScoringWorker

pytestmark = pytest.mark.xdist_group("serving")

#: What no error body may show: a stack trace, a source path, a memory address.
LEAKS = re.compile(
    r"Traceback|File \"|/site-packages/|\.py\", line|0x[0-9a-f]{6,}|lib\w+\.so", re.IGNORECASE
)

EXAMPLE = json.loads(EXAMPLE_FILE.read_text())
GOOD_GATES = {"test_auc": 0.8, "test_ks": 0.4, "test_ece": 0.01, "train_auc": 0.82}


@pytest.fixture(autouse=True)
def error_bodies_hold_no_stack_trace(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every 4xx/5xx body a test of this module receives (TestClient or a real server, through
    httpx) is checked after the test: no traceback, file path or memory address."""
    bodies: list[str] = []
    send = httpx.Client.send

    def recording_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> Any:
        response = send(self, request, **kwargs)
        if response.status_code >= 400 and not kwargs.get("stream"):
            bodies.append(
                f"{request.method} {request.url.path} {response.status_code} "
                f"{response.read().decode(errors='replace')}"
            )
        return response

    monkeypatch.setattr(httpx.Client, "send", recording_send)
    yield bodies
    leaking = [body for body in bodies if LEAKS.search(body)]
    assert not leaking, (
        f"{len(leaking)} of {len(bodies)} error bodies leak internals: {leaking[:3]}"
    )


def api_settings(champion: Champion, **overrides: Any) -> Settings:
    """Settings of the champion's workspace; ``overrides`` go to the ``serving`` section."""
    values = {"tracking_uri": champion.tracking_uri, "api_key": None, "max_applications": 5}
    return Settings(
        home=champion.workspace.home,
        mlflow={"tracking_uri": None},
        serving=ServingSettings(**{**values, **overrides}),
    )


@pytest.fixture(scope="module")
def client(champion: Champion) -> Iterator[TestClient]:
    with TestClient(build_asgi(api_settings(champion))) as test_client:
        yield test_client


def _json_rows(frame: pd.DataFrame, stem: str) -> list[dict[str, Any]]:
    kinds = {c.name: c.duckdb_type for c in tables()[stem].columns}
    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for name, value in record.items():
            if name not in kinds:
                continue
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row[name] = None
            elif kinds[name] == "BIGINT":
                row[name] = int(value)
            elif kinds[name] == "DOUBLE":
                row[name] = float(value)
            else:
                row[name] = str(value)
        rows.append(row)
    return rows


def request_for(raw: Path, ids: list[int]) -> dict[str, Any]:
    """A /predict body for applicants of the raw files, with all their history rows."""
    applications = pd.read_csv(raw / "application_train.csv")
    body: dict[str, Any] = {
        "applications": _json_rows(
            applications[applications[ID_COLUMN].isin(ids)], "application_test"
        )
    }
    bureau = pd.read_csv(raw / "bureau.csv")
    bureau = bureau[bureau[ID_COLUMN].isin(ids)]
    for key, stem in HISTORY_KEYS.items():
        frame = bureau if key == "bureau" else pd.read_csv(raw / f"{stem}.csv")
        if key == "bureau_balance":
            frame = frame[frame["SK_ID_BUREAU"].isin(bureau["SK_ID_BUREAU"])]
        elif key != "bureau":
            frame = frame[frame[ID_COLUMN].isin(ids)]
        body[key] = _json_rows(frame, stem)
    return body


# ---------------------------------------------------------------------------------------------
# The contract, through TestClient
# ---------------------------------------------------------------------------------------------


def test_predict_returns_pd_score_decision_and_reasons(client: TestClient) -> None:
    response = client.post("/predict", json=EXAMPLE, headers={"X-Request-ID": "loan-77"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Request-ID"] == "loan-77" == body["request_id"]
    assert body["model"] == {"name": "CreditRiskPD", "version": "1", "alias": "champion"}
    (prediction,) = body["predictions"]
    assert prediction["SK_ID_CURR"] == EXAMPLE["applications"][0]["SK_ID_CURR"]
    assert 0 < prediction["probability_of_default"] < 1
    assert prediction["score_band"] in {"A", "B", "C", "D", "E"}
    assert prediction["decision"] in {"approve", "decline"}
    reasons = prediction["reason_codes"]
    assert 1 <= len(reasons) <= 4
    assert all(r["impact"] > 0 and r["description"] for r in reasons)
    assert [r["impact"] for r in reasons] == sorted((r["impact"] for r in reasons), reverse=True)
    generated = client.post("/predict", json=EXAMPLE).headers["X-Request-ID"]
    assert len(generated) == 36  # a UUID when the client sends none


def test_online_batch_and_evaluation_agree(
    champion: Champion, raw_slice: Path, client: TestClient, tmp_path: Path
) -> None:
    """Same applicants: /predict, the batch scorer and the evaluation's PDs agree to 1e-9,
    and the online feature vector is the feature-store row."""
    test_split = pd.read_parquet(champion.workspace.splits / "test.parquet")
    in_slice = pd.read_csv(raw_slice / "application_train.csv", usecols=[ID_COLUMN])[ID_COLUMN]
    ids = sorted(set(test_split[ID_COLUMN]) & set(in_slice))[:5]
    assert len(ids) == 5
    body = request_for(raw_slice, ids)

    online = client.post("/predict", json=body).json()["predictions"]

    rows = test_split.set_index(ID_COLUMN).loc[[p["SK_ID_CURR"] for p in online]].reset_index()
    scorer_pd = client.app.app.state.serving.scorer.trained.predict_pd(rows)  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        [p["probability_of_default"] for p in online], scorer_pd, rtol=0, atol=1e-9
    )
    score_batch(
        raw_slice, tmp_path / "batch.parquet", tracking_uri=champion.tracking_uri, threads=1
    )
    batch = pd.read_parquet(tmp_path / "batch.parquet").set_index(ID_COLUMN)
    np.testing.assert_allclose(
        [p["probability_of_default"] for p in online],
        batch.loc[[p["SK_ID_CURR"] for p in online], "probability_of_default"],
        rtol=0,
        atol=1e-9,
    )
    features = compute_features(request_tables(PredictRequest.model_validate(body))).to_pandas()
    store = pd.read_parquet(champion.workspace.feature_store).set_index(ID_COLUMN)
    expected = store.loc[features[ID_COLUMN]].reset_index()
    for column in (c.name for c in COLUMNS if c.name != "TARGET"):
        left, right = features[column], expected[column]
        if left.dtype == object:
            assert left.fillna("∅").tolist() == right.fillna("∅").tolist(), column
        else:
            np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-12, err_msg=column)


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        (lambda b: b["applications"][0].update(NOT_A_COLUMN=1), 422, "NOT_A_COLUMN"),
        (lambda b: b["applications"][0].update(AMT_CREDIT="lots"), 422, "AMT_CREDIT"),
        (lambda b: b["applications"][0].update(SK_ID_CURR=1.5), 422, "SK_ID_CURR"),
        (lambda b: b["applications"][0].pop("SK_ID_CURR"), 422, "SK_ID_CURR"),
        (lambda b: b["bureau"][0].update(SK_ID_CURR=1), 422, "matches no application"),
        (lambda b: b["bureau_balance"][0].update(SK_ID_BUREAU=7), 422, "matches no bureau"),
        (lambda b: b["applications"].append(dict(b["applications"][0])), 422, "more than once"),
        (lambda b: b.update(applications=[]), 422, "applications"),
        (lambda b: b.update(unknown_table=[]), 422, "unknown_table"),
        (
            lambda b: b.update(
                applications=[{**b["applications"][0], "SK_ID_CURR": i} for i in range(6)],
                bureau=[],
                bureau_balance=[],
                previous_application=[],
                installments_payments=[],
                credit_card_balance=[],
                pos_cash_balance=[],
            ),
            413,
            "limit is 5",
        ),
    ],
    ids=[
        "unknown-field",
        "wrong-type",
        "fractional-id",
        "missing-id",
        "orphan-bureau",
        "orphan-balance",
        "duplicate-applicant",
        "no-applications",
        "unknown-table",
        "too-many",
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    client: TestClient, change: Any, status: int, needle: str
) -> None:
    body = json.loads(json.dumps(EXAMPLE))
    change(body)
    for endpoint in ("/predict", "/validate"):
        response = client.post(endpoint, json=body)
        assert response.status_code == status, response.text
        assert needle in response.text
        assert "Traceback" not in response.text


def _with_amount(raw_value: str, column: str = "AMT_CREDIT") -> str:
    """The example as JSON text with one application field written verbatim (``Infinity``…)."""
    body = json.loads(json.dumps(EXAMPLE))
    body["applications"][0][column] = "__VALUE__"
    return json.dumps(body).replace('"__VALUE__"', raw_value)


@pytest.mark.parametrize(
    ("column", "raw_value", "error_type"),
    [
        ("AMT_CREDIT", "Infinity", "finite_number"),
        ("AMT_CREDIT", "-Infinity", "finite_number"),
        ("AMT_CREDIT", "1e309", "finite_number"),
        ("AMT_CREDIT", "NaN", "finite_number"),
        ("AMT_CREDIT", '"495000"', "float_type"),
        ("AMT_CREDIT", "true", "float_type"),
        ("FLAG_DOCUMENT_3", "true", "int_type"),
        ("FLAG_DOCUMENT_3", "2", "less_than_equal"),
        ("FLAG_DOCUMENT_3", "1.0", "int_type"),
        ("CNT_CHILDREN", '"2"', "int_type"),
    ],
)
def test_non_finite_quoted_and_boolean_values_are_refused_naming_the_field(
    client: TestClient, column: str, raw_value: str, error_type: str
) -> None:
    for endpoint in ("/validate", "/predict"):
        response = client.post(
            endpoint,
            content=_with_amount(raw_value, column),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "applications", 0, column]
        assert error["type"] == error_type


def test_integer_valued_numbers_are_numbers(client: TestClient) -> None:
    """495000, 495000.0 and 4.95e5 are the same amount: one PD, whatever the JSON spelling."""
    answers = []
    for raw_value in ("495000", "495000.0", "4.95e5"):
        response = client.post(
            "/predict",
            content=_with_amount(raw_value),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        answers.append(response.json()["predictions"])
    assert answers[0] == answers[1] == answers[2]


@pytest.mark.parametrize(
    ("amounts", "feature"),
    [
        # A ratio that overflows a double: credit / income = 1e308 / 1e-308.
        ({"AMT_CREDIT": 1e308, "AMT_INCOME_TOTAL": 1e-308}, "CREDIT_TO_INCOME"),
        # A finite double beyond float32, which XGBoost reads (found by schemathesis).
        ({"AMT_INCOME_TOTAL": 1.0587453203497606e86}, "AMT_INCOME_TOTAL"),
    ],
    ids=["ratio-overflows", "beyond-float32"],
)
def test_out_of_range_amounts_are_a_422_not_a_model_error(
    client: TestClient, amounts: dict[str, float], feature: str
) -> None:
    """Valid JSON numbers the model cannot take: a 422 naming the feature, not XGBoost's trace."""
    body = json.loads(json.dumps(EXAMPLE))
    body["applications"][0].update(amounts)
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert feature in response.text and "out of range" in response.text
    assert client.post("/predict", json=EXAMPLE).status_code == 200


def test_a_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    for endpoint in ("/validate", "/predict"):
        response = client.post(
            endpoint, content=b'{"applications": [', headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["detail"][0]["type"] == "json_invalid"


def test_validate_checks_without_scoring(client: TestClient) -> None:
    response = client.post("/validate", json=EXAMPLE)
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True and body["applications"] == 1
    assert body["rows"]["bureau"] == len(EXAMPLE["bureau"])
    assert "probability_of_default" not in response.text


def test_body_larger_than_the_limit_is_413(champion: Champion) -> None:
    with TestClient(build_asgi(api_settings(champion, max_body_bytes=2_000))) as small:
        response = small.post("/predict", json=EXAMPLE)
        assert response.status_code == 413 and "larger than 2000 bytes" in response.text
        chunked = small.post(
            "/predict",
            content=iter([json.dumps(EXAMPLE).encode()]),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413
        assert small.get("/health").status_code == 200


def test_api_key_guards_everything_but_health_and_ready(champion: Champion) -> None:
    settings_with_key = api_settings(champion, api_key="s3cret")
    with TestClient(build_asgi(settings_with_key)) as guarded:
        for method, path in (("post", "/predict"), ("get", "/metadata"), ("get", "/metrics")):
            assert getattr(guarded, method)(path).status_code == 401
            wrong = getattr(guarded, method)(path, headers={"X-API-Key": "guess"})
            assert wrong.status_code == 401
        assert guarded.get("/docs").status_code == 401
        assert guarded.get("/health").status_code == 200
        assert guarded.get("/ready").status_code == 200
        ok = guarded.post("/predict", json=EXAMPLE, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200


def test_not_ready_without_a_model(champion: Champion) -> None:
    absent = api_settings(champion, model_uri="models:/CreditRiskPD@nobody")
    with TestClient(build_asgi(absent)) as no_model:
        ready = no_model.get("/ready")
        assert ready.status_code == 503 and "nobody" in ready.json()["reason"]
        assert no_model.get("/health").status_code == 200
        predicted = no_model.post("/predict", json=EXAMPLE)
        assert predicted.status_code == 503 and "no model in service" in predicted.text


def test_metadata_schema_docs_and_metrics(client: TestClient) -> None:
    client.post("/predict", json=EXAMPLE)
    metadata = client.get("/metadata").json()
    assert metadata["version"] == "1" and metadata["alias"] == "champion"
    assert metadata["mlflow_run_id"] and metadata["features"] == 130
    assert metadata["threshold"] == pytest.approx(0.1 / 0.55)
    assert metadata["score_scaling"]["pdo"] == 20 and "test_auc" in metadata["metrics"]
    assert len(metadata["feature_sql_hash"]) == 64
    schema = client.get("/schema").json()
    assert "applications" in schema["required"]
    assert {"bureau", "pos_cash_balance"} <= set(schema["properties"])
    openapi = client.get("/openapi.json").json()
    examples = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    shown = examples["examples"]["applicant"]["value"]
    assert set(shown) == set(EXAMPLE)
    assert shown["applications"][0]["SK_ID_CURR"] == EXAMPLE["applications"][0]["SK_ID_CURR"]
    assert len(shown["installments_payments"]) == len(EXAMPLE["installments_payments"])
    assert client.get("/docs").status_code == 200
    text = client.get("/metrics").text
    assert 'creditrisk_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'creditrisk_probability_of_default_bucket{le="0.01",model_version="1"}' in text
    assert 'creditrisk_model_info{alias="champion",name="CreditRiskPD",version="1"} 1.0' in text


def test_openapi_describes_the_errors_metrics_and_linking_rule(champion: Champion) -> None:
    with TestClient(build_asgi(api_settings(champion))) as open_client:
        document = open_client.get("/openapi.json").json()
    paths = document["paths"]
    predict = paths["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "422", "503"} <= set(predict) and "401" not in predict
    assert "Retry-After" in predict["503"]["headers"]
    assert {"200", "400", "413", "422"} <= set(paths["/validate"]["post"]["responses"])
    assert (
        "503" in paths["/ready"]["get"]["responses"]
        and "503" in paths["/metadata"]["get"]["responses"]
    )
    assert "503" in paths["/admin/reload"]["post"]["responses"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    schemas = document["components"]["schemas"]
    assert schemas["ValidationErrors"]["properties"]["detail"]["type"] == "array"
    request = schemas["PredictRequest"]
    assert "``SK_ID_BUREAU`` of one of this request's" in request["description"]
    assert "unlinked_row" in request["description"]
    assert request["properties"]["applications"]["maxItems"] == 5  # max_applications
    row = schemas["ApplicationRow"]["properties"]
    assert {"type": "integer", "minimum": 0, "maximum": 1} in row["FLAG_DOCUMENT_3"]["anyOf"]
    assert {"type": "number"} in row["AMT_CREDIT"]["anyOf"]
    assert "securitySchemes" not in document.get("components", {})

    with TestClient(build_asgi(api_settings(champion, api_key="s3cret"))) as guarded:
        key = {"X-API-Key": "s3cret"}
        document = guarded.get("/openapi.json", headers=key).json()
    assert document["components"]["securitySchemes"]["APIKey"]["name"] == "X-API-Key"
    for path in ("/predict", "/validate", "/metadata", "/metrics", "/schema", "/admin/reload"):
        (operation,) = document["paths"][path].values()
        assert "401" in operation["responses"] and operation["security"] == [{"APIKey": []}]
    for path in ("/health", "/ready"):
        (operation,) = document["paths"][path].values()
        assert "401" not in operation["responses"] and "security" not in operation


def test_access_log_is_json_without_applicant_data(client: TestClient, caplog) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="creditrisk.api"):
        client.post("/predict", json=EXAMPLE, headers={"X-Request-ID": "audit-1"})
    (line,) = [r.getMessage() for r in caplog.records if "audit-1" in r.getMessage()]
    entry = json.loads(line)
    assert entry["status"] == 200 and entry["entities"] == 1 and entry["model_version"] == "1"
    assert entry["path"] == "/predict" and entry["duration_ms"] > 0
    assert str(EXAMPLE["applications"][0]["SK_ID_CURR"]) not in line


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 10**30])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = [
    (table, column.name)
    for table, stem in (("applications", "application_test"), *HISTORY_KEYS.items())
    for column in tables()[stem].columns
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(FIELDS),
    value=JSON,
    body=JSON,
)
def test_no_input_produces_a_server_error(
    client: TestClient, field: tuple[str, str], value: Any, body: Any
) -> None:
    """Arbitrary JSON bodies, and the example with any one field set to any JSON value."""
    assert client.post("/validate", json=body).status_code < 500
    mutated = json.loads(json.dumps(EXAMPLE))
    table, column = field
    if mutated.get(table):
        mutated[table][0][column] = value
    response = client.post("/predict", json=mutated)
    assert response.status_code in (200, 413, 422), response.text


# ---------------------------------------------------------------------------------------------
# Concurrent requests: micro-batches in the scoring worker
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer(champion: Champion) -> Scorer:
    return Scorer.load(tracking_uri=champion.tracking_uri)


@pytest.fixture(scope="module")
def one_applicant_requests(raw_slice: Path) -> list[dict[str, pa.Table]]:
    """Twelve single-applicant requests (tables as the API builds them), each with its history."""
    ids = pd.read_csv(raw_slice / "application_train.csv", usecols=[ID_COLUMN])[ID_COLUMN]
    bodies = [request_for(raw_slice, [int(i)]) for i in ids[:12]]
    return [request_tables(PredictRequest.model_validate(body)) for body in bodies]


def alone(scorer: Scorer, request: dict[str, pa.Table]) -> Any:
    return scorer.score(compute_features(request).to_pandas(), reasons=4)


def same_scores(left: Any, right: Any) -> None:
    assert left.ids.tolist() == right.ids.tolist()
    np.testing.assert_allclose(
        left.probability_of_default, right.probability_of_default, atol=1e-12
    )
    assert left.decision.tolist() == right.decision.tolist()
    assert [[c.feature for c in codes] for codes in left.reasons] == [
        [c.feature for c in codes] for codes in right.reasons
    ]


class HeldWorker:
    """A worker whose first batch waits until the test has queued what it wants batched."""

    def __init__(self, **kwargs: Any) -> None:
        self.sizes: list[int] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.worker = ScoringWorker(
            threads=1, feature_process=False, on_batch=self._on_batch, **kwargs
        )

    def _on_batch(self, size: int) -> None:
        self.sizes.append(size)
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.release.wait(60)

    def hold(self, request: dict[str, pa.Table], scorer: Scorer) -> Any:
        future = self.worker.submit(request, scorer, 4)
        assert self.entered.wait(60)
        return future


def test_waiting_requests_are_batched_and_each_gets_its_own_scores(
    scorer: Scorer, one_applicant_requests: list[dict[str, pa.Table]]
) -> None:
    held = HeldWorker(max_batch=4)
    first, *rest = one_applicant_requests[:10]
    futures = [held.hold(first, scorer)] + [held.worker.submit(r, scorer, 4) for r in rest]
    held.release.set()
    results = [f.result(timeout=60) for f in futures]
    held.worker.close()
    assert held.sizes == [1, 4, 4, 1]
    assert held.worker.batches == 4 and held.worker.requests == 10
    for request, result in zip(one_applicant_requests[:10], results, strict=True):
        same_scores(result, alone(scorer, request))


def test_clashing_requests_other_models_and_bad_input_never_spoil_a_batch(
    champion: Champion, scorer: Scorer, one_applicant_requests: list[dict[str, pa.Table]]
) -> None:
    a, b, c, d = one_applicant_requests[:4]
    other_scorer = Scorer.load(tracking_uri=champion.tracking_uri)  # e.g. after a reload
    bad = {"application_test": pa.table({ID_COLUMN: [7], "AMT_CREDIT": ["lots"]})}
    held = HeldWorker(max_batch=8)
    futures = [
        held.hold(d, scorer),
        held.worker.submit(a, scorer, 4),
        held.worker.submit(a, scorer, 4),  # the same applicant again: a later batch
        held.worker.submit(b, other_scorer, 4),  # another model: a later batch
        held.worker.submit(bad, scorer, 4),  # fails alone
        held.worker.submit(c, scorer, 4),
    ]
    held.release.set()
    with pytest.raises(ValueError, match="does not fit"):
        futures[4].result(timeout=60)
    results = {i: futures[i].result(timeout=60) for i in (0, 1, 2, 3, 5)}
    held.worker.close()
    # [d] held; then [a, bad, c]; then the second a; then b, alone with its model
    assert held.sizes == [1, 3, 1, 1]
    for index, request in ((0, d), (1, a), (2, a), (3, b), (5, c)):
        same_scores(results[index], alone(scorer, request))
    with pytest.raises(RuntimeError, match="closed"):
        held.worker.submit(a, scorer, 4)


def test_concurrent_http_requests_get_their_own_answers(
    client: TestClient, raw_slice: Path
) -> None:
    ids = pd.read_csv(raw_slice / "application_train.csv", usecols=[ID_COLUMN])[ID_COLUMN]
    bodies = [request_for(raw_slice, [int(i)]) for i in ids[20:36]]
    sequential = [client.post("/predict", json=body).json() for body in bodies]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda body: client.post("/predict", json=body).json(), bodies))
    for one, other in zip(sequential, concurrent, strict=True):
        assert one["predictions"] == other["predictions"]
    assert "creditrisk_batch_requests_count" in client.get("/metrics").text


# ---------------------------------------------------------------------------------------------
# A real uvicorn process
# ---------------------------------------------------------------------------------------------


class Served(NamedTuple):
    url: str
    workspace: Workspace
    process: subprocess.Popen[bytes]


@pytest.fixture
def served(champion: Champion, tmp_path: Path) -> Iterator[Served]:
    """`creditrisk serve` on 127.0.0.1 over a private copy of the champion's workspace."""
    home = tmp_path / "ws"
    shutil.copytree(champion.workspace.home, home)
    port = free_port()
    env = {
        **os.environ,
        "CREDITRISK_HOME": str(home),
        "CREDITRISK_API_KEY": "s3cret",
        "CREDITRISK_MAX_APPLICATIONS": "2",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [str(Path(sys.executable).parent / "creditrisk"), "serve", "--port", str(port)]
    log = tmp_path / "server.log"
    # Not the checkout: a working directory of its own, so nothing the server (or MLflow's
    # defaults) might write lands in the repository.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        answer = "no answer"
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{url}/ready", timeout=2)
                if ready.status_code == 200:
                    break
                answer = f"HTTP {ready.status_code} {ready.text}"
            except httpx.TransportError as exc:
                answer = repr(exc)
            assert process.poll() is None, log.read_text()
            time.sleep(0.5)
        else:
            pytest.fail(f"the server did not become ready in 120 s: {answer}\n{log.read_text()}")
        yield Served(url, Workspace(home), process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_real_server_scores_guards_and_reloads_after_a_promotion(served: Served) -> None:
    url, workspace, _ = served
    key = {"X-API-Key": "s3cret"}
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    assert httpx.post(f"{url}/predict", json=EXAMPLE).status_code == 401
    first = httpx.post(f"{url}/predict", json=EXAMPLE, headers=key, timeout=30)
    assert first.status_code == 200 and first.json()["model"]["version"] == "1"
    three = json.loads(json.dumps(EXAMPLE))
    three["applications"] = [{**three["applications"][0], "SK_ID_CURR": i} for i in (1, 2, 3)]
    assert httpx.post(f"{url}/predict", json=three, headers=key).status_code == 413
    bad = {"applications": [{"SK_ID_CURR": "x"}]}
    refused = httpx.post(f"{url}/predict", json=bad, headers=key)
    assert refused.status_code == 422 and "SK_ID_CURR" in refused.text

    # A new version is promoted in the registry the server reads; reload picks it up.
    uri = workspace.mlflow_uri
    ledger = workspace.reports / registry.LEDGER_FILE
    champion_version = registry.current_champion(tracking_uri=uri)
    assert champion_version is not None
    version = registry.register(
        str(champion_version.source),
        run_id=str(champion_version.run_id),
        gates=metric_gates(GOOD_GATES),
        ledger_path=ledger,
        tracking_uri=uri,
    )
    registry.promote(version, reason="test", ledger_path=ledger, tracking_uri=uri)
    reloaded = httpx.post(f"{url}/admin/reload", headers=key, timeout=60)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json() == {"previous_version": "1", "version": version}
    after = httpx.post(f"{url}/predict", json=EXAMPLE, headers=key, timeout=30).json()
    assert after["model"]["version"] == version == "2"
    assert after["predictions"][0]["probability_of_default"] == pytest.approx(
        first.json()["predictions"][0]["probability_of_default"], abs=1e-12
    )
    metrics = httpx.get(f"{url}/metrics", headers=key).text
    assert 'creditrisk_model_info{alias="champion",name="CreditRiskPD",version="2"} 1.0' in metrics
    assert 'creditrisk_model_info{alias="champion",name="CreditRiskPD",version="1"}' not in metrics


# ---------------------------------------------------------------------------------------------
# The feature process: killed, replaced, the request in flight retried
# ---------------------------------------------------------------------------------------------


def feature_processes(parent: int) -> list[int]:
    """Live feature processes of a server: its spawned children (not the resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        state, ppid = fields[0], int(fields[1])
        spawned = b"spawn_main" in command and b"resource_tracker" not in command
        if ppid == parent and state != "Z" and spawned:
            found.append(int(stat.parent.name))
    return found


def kill_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.01)
    pytest.fail(f"process {pid} still alive after SIGKILL")


def test_a_killed_feature_process_is_replaced_and_the_request_retried(served: Served) -> None:
    url, _, server = served
    key = {"X-API-Key": "s3cret"}
    before = httpx.post(f"{url}/predict", json=EXAMPLE, headers=key, timeout=30)
    assert before.status_code == 200, before.text
    (feature_process,) = feature_processes(server.pid)

    kill_and_wait(feature_process)  # e.g. the OOM killer, between two requests
    after = httpx.post(f"{url}/predict", json=EXAMPLE, headers=key, timeout=60)

    assert after.status_code == 200, after.text
    assert after.json()["predictions"] == before.json()["predictions"]
    (replacement,) = feature_processes(server.pid)
    assert replacement != feature_process
    again = httpx.post(f"{url}/predict", json=EXAMPLE, headers=key, timeout=30)
    assert again.json()["predictions"] == before.json()["predictions"]


def test_a_feature_process_that_cannot_restart_is_a_503_with_retry_after(
    champion: Champion,
) -> None:
    with TestClient(build_asgi(api_settings(champion, feature_process=True))) as own:
        worker = own.app.app.state.serving.worker  # type: ignore[attr-defined]
        normal = own.post("/predict", json=EXAMPLE)
        assert normal.status_code == 200
        with pytest.MonkeyPatch.context() as env:
            # Every new Python fails to start: the replacement process cannot come up.
            env.setenv("PYTHONHOME", "/nonexistent")
            kill_and_wait(worker.feature_process_id)
            refused = own.post("/predict", json=EXAMPLE)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert "retry later" in refused.json()["detail"]
        recovered = own.post("/predict", json=EXAMPLE)  # the next request starts a new one
        assert recovered.status_code == 200, recovered.text
        assert recovered.json()["predictions"] == normal.json()["predictions"]


# ---------------------------------------------------------------------------------------------
# The OpenAPI document against the real server: schemathesis
# ---------------------------------------------------------------------------------------------

#: Bounded and reproducible: a fixed seed, derandomized generation, at most 125 cases per
#: operation (a few hundred in all: the GET operations have few distinct ones), well under a
#: minute. Every check runs, in the examples, fuzzing and stateful phases; the coverage phase is
#: off: it derives every boundary case of the ~400 row fields, 4,000-8,000 requests (15-45 s).
#: /predict and /validate may refuse schema-valid bodies with a 422 (the linking rule of their
#: rows is a cross-row rule JSON Schema cannot express: it is in the request schema's
#: description), and a body with more applications than maxItems is a 413.
SCHEMATHESIS_CONFIG = """
seed = 20261122
base-url = "{url}"
headers = {{ X-API-Key = "s3cret" }}
request-timeout = 30
max-failures = 20

[cache]
enabled = false  # no .schemathesis/ in the working directory

[generation]
max-examples = 125
deterministic = true

[phases.coverage]
enabled = false

[[operations]]
include-path-regex = "^/(predict|validate)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "406",
    "409", "413", "415", "422", "428", "429"]
"""


@pytest.mark.slow
def test_the_api_conforms_to_its_openapi_document(served: Served) -> None:
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import events, from_schema

    url, _, _ = served
    config = SchemathesisConfig.from_str(SCHEMATHESIS_CONFIG.format(url=url))
    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", config=config, headers={"X-API-Key": "s3cret"}, timeout=30
    )
    started = time.monotonic()
    failures: list[str] = []
    leaks: list[str] = []
    requests = 0
    by_phase: dict[str, int] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for checks in recorder.checks.values():
                failures += [
                    f"{recorder.label}: {check.name}: {check.failure_info}"
                    for check in checks
                    if check.status == "failure"
                ]
            for interaction in recorder.interactions.values():
                requests += 1
                by_phase[str(event.phase)] = by_phase.get(str(event.phase), 0) + 1
                response = interaction.response
                if response is not None and response.status_code >= 400:
                    text = response.content.decode(errors="replace")
                    if LEAKS.search(text):
                        leaks.append(f"{recorder.label} {response.status_code} {text[:300]}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"error: {getattr(event, 'label', '')} {event!r}"[:2000])
        elif isinstance(event, events.EngineFinished):
            failures += [str(failure) for failure in event.failures]
            stop_reason = event.stop_reason
    elapsed = time.monotonic() - started
    print(f"schemathesis: {requests} requests {by_phase} in {elapsed:.1f} s, stop: {stop_reason}")
    assert not failures, "\n".join(failures[:20])
    assert not leaks, leaks[:5]
    assert stop_reason == "completed" and requests >= 200
    assert elapsed < 60
