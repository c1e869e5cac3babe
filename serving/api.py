"""The REST service: raw applications in, PD, score, decision and reasons out.

``creditrisk serve`` (``make serve``) runs it with uvicorn; ``serving.api:app`` is the ASGI app.
The champion (``models:/CreditRiskPD@champion``, or ``CREDITRISK_MODEL_URI``) is loaded once at
startup; ``POST /admin/reload`` swaps in a newly promoted version while requests in flight finish
on the one they started with. Features come from the training SQL over the request's rows
(:mod:`creditrisk.features.online`: the same SQL files, planned once, in a feature process),
computed and scored by scoring threads that batch concurrent requests (:mod:`serving.worker`).

Endpoints: ``POST /predict``, ``POST /validate``, ``GET /health``, ``GET /ready``,
``GET /metadata``, ``GET /schema``, ``GET /metrics`` (Prometheus), ``POST /admin/reload``; OpenAPI
docs at ``/docs``. Blocking work runs in plain ``def`` handlers (FastAPI's thread pool), never in
the event loop.

Errors: 400 (the body is not JSON), 401 (no or a wrong ``X-API-Key`` when one is configured), 413
(body or application count over the limit), 422 (the contract: field by field, and the linking
rule of :class:`serving.schemas.PredictRequest`), 503 (no model in service, or the feature
process died and could not be restarted; with ``Retry-After``). None carries a stack trace: a
500 says only "internal error" and its request id, the log has the rest.

Settings: the ``serving`` section of :class:`creditrisk.settings.Settings` (environment, prefix
``CREDITRISK_``): ``API_KEY`` (when set, every endpoint but ``/health`` and ``/ready`` needs
``X-API-Key``), ``MAX_APPLICATIONS`` (more → 413), ``MAX_BODY_BYTES`` (larger body → 413),
``MODEL_URI``, ``TRACKING_URI``, ``REASONS``, and for the scoring worker (:mod:`serving.worker`)
``MAX_BATCH`` (most requests per feature execution), ``SCORING_THREADS`` and
``FEATURE_PROCESS`` (run the feature SQL in a child process).
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
from fastapi import Body, FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from creditrisk import tracking
from creditrisk.data.tables import arrow_schema, tables
from creditrisk.features.online import FeatureProcessError
from creditrisk.scoring import Scorer, ScoringError
from creditrisk.settings import ServingSettings, Settings
from serving.schemas import (
    HISTORY_KEYS,
    ErrorMessage,
    Health,
    ModelRef,
    Prediction,
    PredictRequest,
    PredictResponse,
    Readiness,
    ReasonCodeOut,
    Reloaded,
    ValidateResponse,
    ValidationErrors,
)
from serving.worker import ScoringWorker

logger = logging.getLogger("creditrisk.api")

EXAMPLE_FILE = Path(__file__).with_name("example_request.json")
OPEN_PATHS = frozenset({"/health", "/ready"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

#: Seconds a client should wait before retrying when the feature process is being replaced.
RETRY_AFTER_SECONDS = 5

Responses = dict[int | str, dict[str, Any]]


def _answer(status: int, model: type, description: str, **extra: Any) -> Responses:
    """One error answer of the OpenAPI document: ``{status: {model, description, ...}}``."""
    return {status: {"model": model, "description": description, **extra}}


# The error answers of the OpenAPI document, by status.
_NOT_JSON = _answer(400, ValidationErrors, "The body is not JSON")
_INVALID = _answer(
    422,
    ValidationErrors,
    "The request breaks the contract: a field's type or value, or the linking rule of the "
    "request's rows",
)
_TOO_LARGE = _answer(
    413,
    ErrorMessage,
    "The body is larger than MAX_BODY_BYTES, or holds more applications than MAX_APPLICATIONS",
)
_NO_MODEL = _answer(503, ErrorMessage, "No model in service")
_UNAVAILABLE = _answer(
    503,
    ErrorMessage,
    "No model in service, or the feature process died and no new one started; retry after "
    "the Retry-After header's seconds",
    headers={
        "Retry-After": {
            "description": "seconds to wait before retrying (with a feature-process failure)",
            "schema": {"type": "integer"},
        }
    },
)
_UNAUTHORIZED = _answer(401, ErrorMessage, "No or a wrong X-API-Key")


# ---------------------------------------------------------------------------------------------
# State: the model in service and the DuckDB connections
# ---------------------------------------------------------------------------------------------


class Metrics:
    """The Prometheus metrics of one app (its own registry, so apps do not share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "creditrisk_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "creditrisk_request_duration_seconds",
            "Request latency by endpoint",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.pd = Histogram(
            "creditrisk_probability_of_default",
            "Predicted probabilities of default",
            ["model_version"],
            buckets=(0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0),
            registry=self.registry,
        )
        self.decisions = Counter(
            "creditrisk_decisions",
            "Decisions by outcome and model version",
            ["decision", "model_version"],
            registry=self.registry,
        )
        self.batch = Histogram(
            "creditrisk_batch_requests",
            "Requests computed together in one feature execution and model call",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=self.registry,
        )
        self.model = Gauge(
            "creditrisk_model_info",
            "The model in service (value 1)",
            ["name", "version", "alias"],
            registry=self.registry,
        )


class ServingState:
    """The scorer in service (or why there is none), swapped atomically on reload."""

    def __init__(self, settings: ServingSettings, tracking_uri: str, metrics: Metrics) -> None:
        self.settings = settings
        self.tracking_uri = tracking_uri
        self.metrics = metrics
        self.scorer: Scorer | None = None
        self.error: str | None = "the model is not loaded yet"
        self._reload_lock = threading.Lock()
        self.worker = ScoringWorker(
            settings.max_batch,
            settings.scoring_threads,
            feature_process=settings.feature_process,
            on_batch=metrics.batch.observe,
        )

    def load(self) -> Scorer:
        """Resolve the model URI now and put that version in service."""
        with self._reload_lock:
            try:
                scorer = Scorer.load(self.settings.model_uri, tracking_uri=self.tracking_uri)
            except ScoringError as exc:
                if self.scorer is None:
                    self.error = str(exc)
                raise
            previous, self.scorer, self.error = self.scorer, scorer, None
            if previous is not None:
                self.metrics.model.remove(
                    previous.info.name, previous.info.version, previous.info.alias or ""
                )
            self.metrics.model.labels(
                scorer.info.name, scorer.info.version, scorer.info.alias or ""
            ).set(1)
            return scorer

    def require(self) -> Scorer:
        scorer = self.scorer
        if scorer is None:
            raise HTTPException(503, detail=f"no model in service: {self.error}")
        return scorer


# ---------------------------------------------------------------------------------------------
# Request → tables → scores
# ---------------------------------------------------------------------------------------------


_SCHEMAS = {
    "application_test": arrow_schema(tables()["application_test"].columns),
    **{key: arrow_schema(tables()[stem].columns) for key, stem in HISTORY_KEYS.items()},
}


def _unlinked(request: PredictRequest) -> list[dict[str, Any]]:
    """History rows whose key matches no application (or, for balances, no bureau credit)."""
    applicants = {row.SK_ID_CURR for row in request.applications}
    credits = {row.SK_ID_BUREAU for row in request.bureau}
    errors: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, row in enumerate(request.applications):
        if row.SK_ID_CURR in seen:
            errors.append(
                {
                    "loc": ["body", "applications", index, "SK_ID_CURR"],
                    "msg": f"SK_ID_CURR {row.SK_ID_CURR} appears more than once",
                    "type": "duplicate_key",
                }
            )
        seen.add(row.SK_ID_CURR)
    for key in HISTORY_KEYS:
        column, parents = (
            ("SK_ID_BUREAU", credits) if key == "bureau_balance" else ("SK_ID_CURR", applicants)
        )
        for index, row in enumerate(getattr(request, key)):
            value = getattr(row, column)
            if value not in parents:
                parent = "bureau credit" if key == "bureau_balance" else "application"
                errors.append(
                    {
                        "loc": ["body", key, index, column],
                        "msg": f"{column} {value} matches no {parent} in this request",
                        "type": "unlinked_row",
                    }
                )
    return errors


def request_tables(request: PredictRequest) -> dict[str, pa.Table]:
    """The request's rows as Arrow tables with the canonical columns and types."""
    tables_by_name = {
        "application_test": pa.Table.from_pylist(
            [row.model_dump() for row in request.applications], schema=_SCHEMAS["application_test"]
        )
    }
    for key, stem in HISTORY_KEYS.items():
        rows = getattr(request, key)
        if rows:
            tables_by_name[stem] = pa.Table.from_pylist(
                [row.model_dump() for row in rows], schema=_SCHEMAS[key]
            )
    return tables_by_name


def _check(request: PredictRequest, settings: ServingSettings) -> None:
    if len(request.applications) > settings.max_applications:
        raise HTTPException(
            413,
            detail=f"{len(request.applications)} applications in one request; the limit is "
            f"{settings.max_applications}",
        )
    errors = _unlinked(request)
    if errors:
        raise RequestValidationError(errors)


def predict_request(
    request: PredictRequest, scorer: Scorer, worker: ScoringWorker, reasons: int
) -> list[Prediction]:
    """Features (the training SQL) → the scorer → one prediction per application, in order."""
    try:
        scores = worker.score(request_tables(request), scorer, reasons)
    except ValueError as exc:  # the input's fault (the worker wraps the model's own errors)
        raise RequestValidationError(
            [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
        ) from exc
    except FeatureProcessError as exc:
        logger.error(json.dumps({"event": "feature_process_unavailable", "reason": str(exc)}))
        raise HTTPException(
            503,
            detail="features unavailable: the feature process is being restarted, retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc
    return [
        Prediction(
            SK_ID_CURR=int(scores.ids[i]),
            probability_of_default=float(scores.probability_of_default[i]),
            score=float(scores.score[i]),
            score_band=str(scores.score_band.iloc[i]),
            decision=str(scores.decision[i]),
            reason_codes=[ReasonCodeOut(**code.as_dict()) for code in scores.reasons[i]],
        )
        for i in range(len(scores))
    ]


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def _example() -> dict[str, Any]:
    if EXAMPLE_FILE.exists():
        example: dict[str, Any] = json.loads(EXAMPLE_FILE.read_text(encoding="utf-8"))
        return example
    return {"applications": [{"SK_ID_CURR": 100001}]}


class BodyLimit:
    """ASGI middleware: a request body larger than the limit gets 413 before it is parsed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        # No (or a small) declared length, e.g. a chunked body: read it up to the limit first.
        # FastAPI reads the whole body before parsing anyway.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None, *, load_model: bool = True) -> FastAPI:
    """The FastAPI app; ``load_model=False`` starts without a model (``/ready`` says 503).

    Args:
        settings: Everything; the app reads its ``serving`` section and the tracking store
            (``serving.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the workspace's).
    """
    full = settings or Settings()
    service = full.serving
    tracking_uri = service.tracking_uri or tracking.tracking_uri(full)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServingState(service, tracking_uri, metrics)
        app.state.serving = state
        if load_model:
            import anyio.to_thread

            try:
                await anyio.to_thread.run_sync(state.load)
            except ScoringError as exc:
                logger.error(json.dumps({"event": "model_not_loaded", "reason": str(exc)}))
        # The objects of start-up (libraries, the model) live as long as the process: keep them
        # out of the cyclic garbage collector's scans, which otherwise stall requests.
        gc.collect()
        gc.freeze()
        yield
        state.worker.close()
        gc.unfreeze()  # let the interpreter's shutdown collect them as usual

    app = FastAPI(
        title="creditrisk scoring API",
        version="1",
        description="Probability of default, score, decision and reason codes from the "
        "registered champion model, computed from raw Home Credit applications.",
        lifespan=lifespan,
    )

    def serving(request: Request) -> ServingState:
        state: ServingState = request.app.state.serving
        return state

    @app.middleware("http")
    async def audit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else str(uuid.uuid4())
        request.state.request_id = request_id
        request.state.entities = 0
        key = service.api_key
        if key is not None and request.url.path not in OPEN_PATHS:
            offered = request.headers.get("x-api-key", "")
            if not hmac.compare_digest(offered.encode(), key.get_secret_value().encode()):
                response: Response = JSONResponse(
                    {"detail": "missing or invalid X-API-Key"}, status_code=401
                )
                return _finish(request, response, started)
        try:
            response = await call_next(request)
        except Exception:  # never a stack trace to the client
            logger.exception(json.dumps({"event": "error", "request_id": request_id}))
            response = JSONResponse(
                {"detail": "internal error", "request_id": request_id}, status_code=500
            )
        return _finish(request, response, started)

    def _finish(request: Request, response: Response, started: float) -> Response:
        duration = time.perf_counter() - started
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        response.headers["X-Request-ID"] = request.state.request_id
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(duration)
        state = getattr(request.app.state, "serving", None)
        scorer = state.scorer if state is not None else None
        logger.info(
            json.dumps(
                {
                    "event": "request",
                    "request_id": request.state.request_id,
                    "method": request.method,
                    "path": endpoint,
                    "status": response.status_code,
                    "duration_ms": round(duration * 1000, 2),
                    "entities": request.state.entities,
                    "model_version": scorer.info.version if scorer else None,
                }
            )
        )
        return response

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # a body FastAPI cannot decode: the same shape as json_invalid
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}]},
                status_code=400,
            )
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": list(error.get("loc", [])),
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        unparseable = any(error["type"] == "json_invalid" for error in errors)
        return JSONResponse({"detail": errors}, status_code=400 if unparseable else 422)

    example = _example()
    predict_body = Body(openapi_examples={"applicant": {"value": example}})
    guarded = _UNAUTHORIZED if service.api_key is not None else {}
    body_errors = {**_NOT_JSON, **guarded, **_TOO_LARGE, **_INVALID}

    @app.post("/predict", response_model=PredictResponse, responses={**body_errors, **_UNAVAILABLE})
    def predict(
        request: Request,
        body: PredictRequest = predict_body,
    ) -> PredictResponse:
        """Score applications: calibrated PD, score, band, decision and adverse reason codes."""
        state = serving(request)
        scorer = state.require()  # this request finishes on this version, whatever reloads
        _check(body, service)
        request.state.entities = len(body.applications)
        predictions = predict_request(body, scorer, state.worker, service.reasons)
        for prediction in predictions:
            metrics.pd.labels(scorer.info.version).observe(prediction.probability_of_default)
            metrics.decisions.labels(prediction.decision, scorer.info.version).inc()
        return PredictResponse(
            request_id=request.state.request_id,
            model=ModelRef(
                name=scorer.info.name, version=scorer.info.version, alias=scorer.info.alias
            ),
            predictions=predictions,
        )

    @app.post("/validate", response_model=ValidateResponse, responses=body_errors)
    def validate(
        request: Request,
        body: PredictRequest = predict_body,
    ) -> ValidateResponse:
        """Check a request against the contract without scoring it."""
        _check(body, service)
        request.state.entities = len(body.applications)
        return ValidateResponse(
            request_id=request.state.request_id,
            valid=True,
            applications=len(body.applications),
            rows={key: len(getattr(body, key)) for key in HISTORY_KEYS},
        )

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get(
        "/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "No model in service"}},
    )
    def ready(request: Request) -> JSONResponse:
        """Readiness: 200 only when a model is in service."""
        state = serving(request)
        scorer = state.scorer
        if scorer is None:
            return JSONResponse({"ready": False, "reason": state.error}, status_code=503)
        return JSONResponse({"ready": True, "model": scorer.info.uri})

    @app.get("/metadata", responses={**guarded, **_NO_MODEL})
    def metadata(request: Request) -> dict[str, Any]:
        """The model in service: version, run, feature-SQL hash, threshold, scaling, metrics."""
        scorer = serving(request).require()
        return {**scorer.metadata(), "features": len(scorer.features)}

    @app.get("/schema", responses=guarded)
    def schema() -> dict[str, Any]:
        """The JSON schema of a /predict request."""
        return request_schema(service)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            # Spelled out: FastAPI would document a model's answer as this route's text/plain.
            **{
                status: {
                    "description": answer["description"],
                    "content": {"application/json": {"schema": _ref(answer["model"])}},
                }
                for status, answer in guarded.items()
            },
            200: {
                "description": "The service's metrics in the Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },
    )
    def prometheus() -> Response:
        """Prometheus exposition format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        response_model=Reloaded,
        responses={
            **guarded,
            503: {
                "model": ErrorMessage,
                "description": "The reload failed: the model at the "
                "model URI cannot be loaded (the previous version stays in service)",
            },
        },
    )
    def reload(request: Request) -> Reloaded:
        """Resolve the model URI again (e.g. after a promotion) and swap the new version in."""
        state = serving(request)
        before = state.scorer.info.version if state.scorer else None
        try:
            scorer = state.load()
        except ScoringError as exc:
            raise HTTPException(
                503, detail=f"reload failed, still serving {before}: {exc}"
            ) from exc
        return Reloaded(previous_version=before, version=scorer.info.version)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_document(app, service)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _ref(model: type[Any]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def request_schema(settings: ServingSettings) -> dict[str, Any]:
    """The JSON schema of a /predict request with this service's application limit."""
    schema = PredictRequest.model_json_schema()
    schema["properties"]["applications"]["maxItems"] = settings.max_applications
    return schema


def _openapi_document(app: FastAPI, settings: ServingSettings) -> dict[str, Any]:
    """FastAPI's document with what the models cannot say: the application limit (a 413, not a
    422, so it is checked outside the model) and, when a key is configured, the X-API-Key."""
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    request = document["components"]["schemas"]["PredictRequest"]
    request["properties"]["applications"]["maxItems"] = settings.max_applications
    if settings.api_key is not None:
        document["components"]["securitySchemes"] = {
            "APIKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        }
        for path, operations in document["paths"].items():
            if path not in OPEN_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"APIKey": []}]
    return document


def build_asgi(settings: Settings | None = None, *, load_model: bool = True) -> Any:
    """The app wrapped in the body-size limit: what uvicorn serves."""
    settings = settings or Settings()
    return BodyLimit(create_app(settings, load_model=load_model), settings.serving.max_body_bytes)


def __getattr__(name: str) -> Any:
    # `uvicorn serving.api:app` builds the app on first access, not at import (tests import
    # this module without wanting a model loaded).
    if name == "app":
        return build_asgi()
    raise AttributeError(name)
