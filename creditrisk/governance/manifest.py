"""The deploy manifest: everything a release engineer needs about the champion, in one file.

``reports/deploy_manifest.json`` (``creditrisk manifest``, ``make manifest``, and the register
stage after a promotion) names the model the ``champion`` alias points at and the evidence it
was released on:

``model``
    name, ``models:/CreditRiskPD@champion`` and the version it resolves to now (with the pinned
    ``models:/CreditRiskPD/<version>``), MLflow run, tracking URI, the version's artifact source;
``validation``
    the governance gates and the canary against the previous champion, from
    ``reports/validation.json`` when that report is for the champion's MLflow run, otherwise
    the gate results stored on the registry version (no canary there);
``promotion``
    the promotion ledger's newest move of ``champion`` to this version (who, when, why, forced);
``lineage``
    data snapshot id, feature-SQL hash, pipeline run, from ``reports/lineage.json`` when it is
    this version's, otherwise from the version's tags; and whether the feature SQL in this
    checkout is the one the model was trained with (the image serves this checkout's SQL);
``serving`` and ``image``
    the entry points and endpoints of the service, the image to build from
    ``serving/Dockerfile`` with its ``docker build`` and ``docker run`` commands;
``repository``
    the git commit (and whether tracked files differ from it) the image would be built from.

``warnings`` lists what a release engineer should look at before shipping: a champion whose
validation failed or is unknown, a forced promotion, no ledger record, feature SQL that differs
from the model's, every deviation from the documented policy the model was validated and
promoted with (relaxed gates, off-policy training or cut-off parameters) and synthetic training
data. The manifest records them; it does not decide.

The service's endpoints are declared here (:data:`SERVICE_ENDPOINTS`), not read from the app:
the library does not import the serving layer. A test holds the list equal to the routes
``serving.api`` serves.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from creditrisk import registry
from creditrisk.governance import deviations as deviation_records
from creditrisk.governance.gates import VALIDATION_FILE
from creditrisk.governance.lineage import LINEAGE_FILE
from creditrisk.io import read_json, write_text
from creditrisk.provenance import file_sha256, git_info

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

MANIFEST_FILE = "deploy_manifest.json"
MANIFEST_SCHEMA = 1

DEFAULT_IMAGE = "creditrisk-api"
DOCKERFILE = "serving/Dockerfile"
#: The port the image's server listens on (``EXPOSE`` and ``CMD`` in the Dockerfile).
SERVING_PORT = 8000

# Docker's reference grammar: an optional registry host (with port), then lowercase path
# components; a tag is at most 128 word characters, dots and dashes, not starting with either.
_IMAGE_NAME = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


#: The REST service's endpoints (method, path, summary), as ``serving.api`` serves them; a
#: test compares this list with the app's routes, so the manifest cannot list stale endpoints.
SERVICE_ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    (
        "POST",
        "/predict",
        "Score applications: calibrated PD, score, band, decision and adverse reason codes.",
    ),
    ("POST", "/validate", "Check a request against the contract without scoring it."),
    ("GET", "/health", "Liveness: the process answers."),
    ("GET", "/ready", "Readiness: 200 only when a model is in service."),
    (
        "GET",
        "/metadata",
        "The model in service: version, run, feature-SQL hash, threshold, scaling, metrics.",
    ),
    ("GET", "/schema", "The JSON schema of a /predict request."),
    ("GET", "/metrics", "Prometheus exposition format."),
    (
        "POST",
        "/admin/reload",
        "Resolve the model URI again (e.g. after a promotion) and swap the new version in.",
    ),
    ("GET", "/docs", "OpenAPI docs"),
    ("GET", "/openapi.json", "OpenAPI schema"),
)


class NoChampion(registry.RegistryError):
    """The registry has no ``champion``: there is nothing to deploy."""


def write_deploy_manifest(manifest: dict[str, Any], path: Path) -> Path:
    """Write a manifest from :func:`build_deploy_manifest` as strict JSON, atomically."""
    # Strict JSON: a non-finite gate value has already become null (allow_nan=False checks it).
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    return write_text(path, text)


def build_deploy_manifest(
    *,
    reports: Path,
    home: Path,
    tracking_uri: str,
    repository: Path,
    model_name: str = registry.DEFAULT_MODEL_NAME,
    image: str = DEFAULT_IMAGE,
    tag: str | None = None,
) -> dict[str, Any]:
    """The deploy manifest of the current champion as a JSON-ready dict.

    Args:
        reports: The workspace's ``reports/`` (validation, lineage, the promotion ledger).
        home: The workspace root (mounted into the container when the registry is SQLite).
        tracking_uri: The MLflow tracking (and registry) URI.
        repository: The checkout the image is built from (its git commit is recorded).
        model_name: The registered model.
        image: The image repository to build, e.g. ``creditrisk-api`` or
            ``ghcr.io/lender/creditrisk-api``.
        tag: The image tag; default the champion's version number.

    Raises:
        NoChampion: The registry has no champion (or no registry exists yet).
        ValueError: ``image`` or ``tag`` is not a valid Docker image name or tag.
    """
    from mlflow import MlflowClient

    from creditrisk.features import catalog

    if not _IMAGE_NAME.match(image):
        raise ValueError(f"{image!r} is not a Docker image name (e.g. creditrisk-api)")
    uri = tracking_uri
    champion = _champion(home, model_name, uri)
    version, run_id = str(champion.version), str(champion.run_id)
    tag = tag or version
    if not _IMAGE_TAG.match(tag):
        raise ValueError(f"{tag!r} is not a Docker image tag")

    run_tags = dict(MlflowClient(tracking_uri=uri).get_run(run_id).data.tags)
    validation = _validation(reports, champion)
    promotion = _promotion(reports, model_name, version)
    lineage = _lineage(reports, champion)
    code_sql_hash = catalog.sql_hash()
    model_sql_hash = lineage["feature_sql_sha256"]
    lineage["code_feature_sql_sha256"] = code_sql_hash
    lineage["feature_sql_matches_code"] = (
        None if model_sql_hash is None else model_sql_hash == code_sql_hash
    )
    git = git_info(repository)
    created = getattr(champion, "creation_timestamp", None)
    reference = f"{image}:{tag}"

    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_version": _package_version(),
        "model": {
            "name": model_name,
            "registry_uri": registry.champion_uri(model_name),
            "version": version,
            "version_uri": f"models:/{model_name}/{version}",
            "aliases": registry.aliases(model_name, tracking_uri=uri),
            "mlflow_run_id": run_id,
            "tracking_uri": redact_uri(uri),
            "source": champion.source,
            "registered_at": None
            if created is None
            else datetime.fromtimestamp(created / 1000, UTC).isoformat(timespec="seconds"),
            "training_git_commit": run_tags.get("git_commit"),
        },
        "validation": validation,
        "promotion": promotion,
        "lineage": lineage,
        "serving": _serving(model_name, version, uri),
        "image": _image(image, tag, reference, model_name, uri, home, git.commit),
        "repository": {"commit": git.commit, "dirty": git.dirty},
    }
    manifest["warnings"] = _warnings(manifest)
    return _strict(manifest)


# ---------------------------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------------------------


def _champion(home: Path, model_name: str, uri: str) -> ModelVersion:
    database = home / "mlflow.db"
    if uri == f"sqlite:///{database}" and not database.exists():
        # Asking MLflow would create an empty database here: say there is none instead.
        raise NoChampion(
            f"no MLflow registry in {home} (mlflow.db does not exist): run the "
            "pipeline (make pipeline) to train, validate and promote a champion first"
        )
    champion = registry.current_champion(model_name, tracking_uri=uri)
    if champion is None:
        raise NoChampion(
            f"{registry.champion_uri(model_name)} is not set in {redact_uri(uri)}: run the "
            "pipeline (make pipeline) or promote a validated version "
            "(creditrisk promote --version N) before writing a deploy manifest"
        )
    return champion


def _file_ref(path: Path) -> dict[str, Any]:
    return {"path": str(path), "sha256": file_sha256(path)}


def _validation(reports: Path, champion: ModelVersion) -> dict[str, Any]:
    path = reports / VALIDATION_FILE
    report = read_json(path) if path.is_file() else None
    if isinstance(report, dict) and report.get("mlflow_run_id") == champion.run_id:
        return {
            "source": f"reports/{VALIDATION_FILE}",
            "file": _file_ref(path),
            "passed": bool(report.get("passed")),
            "n_gates": report.get("n_gates", len(report.get("gates", []))),
            "failed": list(report.get("failed", [])),
            "validated_at": report.get("created_at"),
            "pipeline_run_id": report.get("pipeline_run_id"),
            "gates": list(report.get("gates", [])),
            "thresholds": report.get("thresholds"),
            "canary": report.get("canary"),
            "decision_policy": report.get("decision_policy"),
            "deviations": list(report.get("deviations") or []),
            "synthetic_data": report.get("synthetic_data"),
        }
    why = (
        f"{path} does not exist"
        if report is None
        else f"{path} is for MLflow run {report.get('mlflow_run_id')}, not the champion's"
    )
    gates = registry.recorded_gates(champion)
    frozen = {
        "decision_policy": registry.decision_policy_of(champion),
        "deviations": deviation_records.as_records(registry.deviations_of(champion) or []),
        "synthetic_data": registry.synthetic_data_of(champion),
    }
    if gates is None:
        return {
            "source": None,
            "file": None,
            "passed": None,
            "n_gates": 0,
            "failed": [],
            "validated_at": None,
            "pipeline_run_id": None,
            "gates": [],
            "thresholds": None,
            "canary": None,
            **frozen,
            "detail": f"{why}, and the registry version records no validation",
        }
    return {
        "source": "registry version tags",
        "file": None,
        "passed": bool(gates) and all(gate.passed for gate in gates),
        "n_gates": len(gates),
        "failed": [gate.name for gate in gates if not gate.passed],
        "validated_at": None,
        "pipeline_run_id": (champion.tags or {}).get(registry.TAG_PIPELINE_RUN_ID),
        "gates": [gate.model_dump(mode="json") for gate in gates],
        "thresholds": None,
        "canary": None,
        **frozen,
        "detail": f"{why}; the gates are those stored on the version (the canary is not)",
    }


def _promotion(reports: Path, model_name: str, version: str) -> dict[str, Any] | None:
    ledger = reports / registry.LEDGER_FILE
    moves = [
        record
        for record in registry.read_ledger(ledger)
        if record.model_name == model_name
        and record.alias == registry.CHAMPION
        and record.version == version
    ]
    if not moves:
        return None
    # The gates are in "validation"; the record keeps who, when, why and on what verdict.
    return {**moves[-1].model_dump(mode="json", exclude={"gates"}), "ledger": str(ledger)}


def _lineage(reports: Path, champion: ModelVersion) -> dict[str, Any]:
    path = reports / LINEAGE_FILE
    trace = read_json(path) if path.is_file() else None
    tags = champion.tags or {}
    if (
        isinstance(trace, dict)
        and str((trace.get("model") or {}).get("version")) == str(champion.version)
        and (trace.get("mlflow") or {}).get("run_id") == champion.run_id
    ):
        data, features = trace.get("data") or {}, trace.get("features") or {}
        pipeline_run = trace.get("pipeline_run") or {}
        return {
            "source": f"reports/{LINEAGE_FILE}",
            "file": _file_ref(path),
            "data_snapshot_id": data.get("snapshot_id"),
            "data_source": data.get("source"),
            "feature_sql_sha256": features.get("sql_sha256"),
            "feature_store_sha256": features.get("sha256"),
            "pipeline_run_id": pipeline_run.get("run_id"),
            "pipeline_run_dir": pipeline_run.get("dir"),
        }
    return {
        "source": "registry version tags",
        "file": None,
        "data_snapshot_id": tags.get("data_snapshot_id"),
        "data_source": None,
        "feature_sql_sha256": tags.get("feature_sql_hash"),
        "feature_store_sha256": None,
        "pipeline_run_id": tags.get(registry.TAG_PIPELINE_RUN_ID),
        "pipeline_run_dir": None,
    }


def _endpoints() -> list[dict[str, str]]:
    return [
        {"method": method, "path": path, "summary": summary}
        for method, path, summary in SERVICE_ENDPOINTS
    ]


def _serving(model_name: str, version: str, uri: str) -> dict[str, Any]:
    port = str(SERVING_PORT)
    pinned = f"models:/{model_name}/{version}"
    return {
        "model_uri": registry.champion_uri(model_name),
        "pinned_model_uri": pinned,
        "environment": {
            "CREDITRISK_MODEL_URI": registry.champion_uri(model_name),
            "MLFLOW_TRACKING_URI": redact_uri(uri),
        },
        "port": SERVING_PORT,
        # For another ASGI server; `creditrisk serve` also sets up the JSON access log, which a
        # bare `uvicorn serving.api:app` would drop (the root logger has no handler there).
        "asgi_app": "serving.api:app",
        "commands": {
            "rest": shlex.join(["creditrisk", "serve", "--host", "0.0.0.0", "--port", port]),
            "batch": "creditrisk score --input <folder|s3://bucket/prefix> "
            f"--output <scores.parquet> --model-uri {pinned}",
            "smoke": f"creditrisk smoke --url http://127.0.0.1:{port}",
            "reload_after_promotion": 'curl -X POST -H "X-API-Key: $CREDITRISK_API_KEY" '
            f"http://127.0.0.1:{port}/admin/reload",
        },
        "endpoints": _endpoints(),
    }


def _image(
    image: str,
    tag: str,
    reference: str,
    model_name: str,
    uri: str,
    home: Path,
    commit: str | None,
) -> dict[str, Any]:
    port = str(SERVING_PORT)
    # The commit goes into the image's org.opencontainers.image.revision label.
    revision = ["--build-arg", f"GIT_COMMIT={commit}"] if commit else []
    run = shlex.join(["docker", "run", "--rm", "-p", f"{port}:{port}"])
    if urlsplit(uri).scheme == "sqlite":
        # A SQLite registry and its file artifacts are read at the paths the host wrote them
        # at: mount the workspace at the same path, as the user who owns it.
        mount = shlex.join(["-v", f"{home}:{home}", "-e", f"CREDITRISK_HOME={home}"])
        run += f' --user "$(id -u):$(id -g)" -e HOME=/tmp {mount}'
    run += " " + shlex.join(
        [
            "-e",
            f"MLFLOW_TRACKING_URI={redact_uri(uri)}",
            "-e",
            f"CREDITRISK_MODEL_URI={registry.champion_uri(model_name)}",
            reference,
        ]
    )
    return {
        "name": image,
        "tag": tag,
        "reference": reference,
        "dockerfile": DOCKERFILE,
        "context": ".",
        "build": shlex.join(["docker", "build", "-f", DOCKERFILE, "-t", reference, *revision, "."]),
        "run": run,
        # Relative paths are relative to the image's workspace, /srv/creditrisk.
        "batch": f'docker run --rm -v "$PWD/scores:/srv/creditrisk/scores" {reference} '
        "creditrisk score --input <folder|s3://bucket/prefix> --output scores/scores.parquet",
        "healthcheck": "GET /ready",
    }


def _warnings(manifest: dict[str, Any]) -> list[str]:
    warnings = []
    model, validation = manifest["model"], manifest["validation"]
    promotion, lineage = manifest["promotion"], manifest["lineage"]
    label = f"{model['name']} version {model['version']}"
    if validation["passed"] is None:
        warnings.append(f"{label} has no recorded validation")
    elif not validation["passed"]:
        warnings.append(f"{label} failed validation: {', '.join(validation['failed'])}")
    if promotion is None:
        warnings.append(
            f"the promotion ledger records no move of champion to {label}: the alias was set "
            "outside creditrisk"
        )
    elif promotion.get("forced"):
        warnings.append(f"{label} was promoted with --force: {promotion.get('reason')}")
    if lineage["feature_sql_matches_code"] is False:
        warnings.append(
            f"the feature SQL in this checkout ({lineage['code_feature_sql_sha256'][:12]}) is not "
            f"the SQL {label} was trained with ({str(lineage['feature_sql_sha256'])[:12]}): "
            "an image built from it would compute different features"
        )
    elif lineage["feature_sql_matches_code"] is None:
        warnings.append(f"the feature SQL {label} was trained with is not recorded")
    if manifest["repository"]["dirty"]:
        warnings.append("tracked files differ from the recorded git commit")
    deviations = deviation_records.from_records(validation.get("deviations"))
    for text in deviation_records.warnings(deviations, validation.get("synthetic_data")):
        warnings.append(f"{label}: {text}")
    return warnings


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def redact_uri(uri: str) -> str:
    """The URI without a password in its user-info (``https://user:***@host``)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("creditrisk")
    except importlib.metadata.PackageNotFoundError:
        return None


def _strict(value: Any) -> Any:
    """JSON-ready values with NaN and infinities as null (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value
