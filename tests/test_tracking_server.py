"""A shared MLflow tracking server with a SQL backend and S3 artefacts (moto), end to end.

The topology a team runs: ``mlflow server --backend-store-uri <SQL database>
--artifacts-destination s3://<bucket>/mlartifacts``. Artefacts are *proxied*: the server alone
holds S3 credentials, and every client (pipeline kernels, the REST service, the batch scorer,
``creditrisk promote``) has nothing but ``MLFLOW_TRACKING_URI``; the clients here run without any
AWS credentials, so a write that bypassed the proxy would fail.

Two workspaces share the server, each with its own registered model (``CREDITRISK_MODEL_NAME``):
their pipelines run at the same time, and neither's registration moves the other's aliases.
Workspace A uses a name of its own (so every place that addresses the registry is exercised with a
non-default name), B the default ``CreditRiskPD``. Then A is served, batch-scored, promoted and
rolled back by CLI, and two promotions started together leave the alias and the ledger agreeing.

The pipelines stop after ``register`` (as test_killed_runs does): the monitor stage is the
slowest and adds nothing about the tracking server that serving and batch scoring do not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pandas as pd
import pytest
from conftest import free_port
from mlflow import MlflowClient
from test_e2e import TINY_POLICY

from creditrisk import registry
from creditrisk.settings import DEFAULT_MODEL_NAME, PROJECT_ROOT, ServingSettings, Settings

BUCKET = "creditrisk-mlflow"
MODEL_A = "CreditRiskPD_team_a"
MODEL_B = DEFAULT_MODEL_NAME
LOCKED_EXIT = 3  # creditrisk's exit code when another run holds the workspace lock

#: Variables of this process a client must not inherit: AWS credentials and endpoints (clients
#: reach S3 only through the server's proxy), and another workspace's or store's settings.
_NOT_FOR_CLIENTS = (
    "AWS_",
    "MLFLOW_",
    "CREDITRISK_HOME",
    "CREDITRISK_RUN_ID",
    "CREDITRISK_MODEL_NAME",
    "CREDITRISK_MODEL_URI",
    "CREDITRISK_TRACKING_URI",
    "CREDITRISK_API_KEY",
)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def start(command: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[str]:
    """A process in a session of its own (so stopping it stops its children), logging to
    ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[str], grace: float = 15) -> None:
    """SIGTERM to the process's group, SIGKILL if it is still there after ``grace`` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def finish(process: subprocess.Popen[str], log: Path, timeout: float) -> int:
    """Wait for ``process``; its exit code (the test fails with its log on a timeout)."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        pytest.fail(f"{process.args} did not finish in {timeout} s:\n{log.read_text()}")


def wait_for(url: str, process: subprocess.Popen[str], log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the process serving it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} not up after {timeout} s:\n{log.read_text()}")


def creditrisk(*args: str) -> list[str]:
    return [sys.executable, "-m", "creditrisk.cli", *args]


def client_environment(home: Path, tracking_uri: str, model_name: str | None) -> dict[str, str]:
    """What a team member's shell has: the workspace, the server, the model name, no AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_FOR_CLIENTS)}
    nowhere = str(home / "no-aws-config")
    env.update(
        CREDITRISK_HOME=str(home),
        MLFLOW_TRACKING_URI=tracking_uri,
        AWS_CONFIG_FILE=nowhere,
        AWS_SHARED_CREDENTIALS_FILE=nowhere,
        PYTHONUNBUFFERED="1",
    )
    if model_name is not None:
        env["CREDITRISK_MODEL_NAME"] = model_name
    return env


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingServer:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def wait_until_healthy(self) -> None:
        wait_for(f"{self.url}/health", self.process, self.log, timeout=120)


@pytest.fixture
def tracking_server(s3_env: str, tmp_path: Path) -> Iterator[TrackingServer]:
    """``mlflow server`` on a SQLite backend, proxying artefacts to the moto bucket; booting.

    The server takes some 20 s to start. The pipelines need it only from their train stage on,
    so the test starts them meanwhile and waits for ``/health`` afterwards (MLflow's client
    retries a refused connection in any case).
    """
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    server = start(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            f"s3://{BUCKET}/mlartifacts",
        ],
        # Only the server holds credentials (s3_env's) and knows the S3 endpoint. MLflow's job
        # runner (GenAI jobs) is one process more to boot on a busy CI machine, unused here.
        {
            **os.environ,
            "MLFLOW_S3_ENDPOINT_URL": s3_env,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
        log,
    )
    try:
        yield TrackingServer(f"http://127.0.0.1:{port}", server, log)
    finally:
        stop(server, grace=3)  # a throw-away server: no need to wait for a graceful exit


# ---------------------------------------------------------------------------------------------
# Reading what the workspaces and the registry say
# ---------------------------------------------------------------------------------------------


def ledger(home: Path) -> list[registry.PromotionRecord]:
    return registry.read_ledger(home / "reports" / registry.LEDGER_FILE)


def stage_results(home: Path, stage: str) -> dict[str, Any]:
    record = json.loads((home / "runs" / "latest" / "run.json").read_text())
    assert record["status"] == "succeeded", record
    results: dict[str, Any] = next(s for s in record["stages"] if s["name"] == stage)["results"]
    return results


def aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    found = client.get_registered_model(model_name).aliases
    return {alias: str(version) for alias, version in found.items()}


def bucket_keys() -> set[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def model_files_in_bucket(client: MlflowClient, model_name: str, version: str) -> set[str]:
    """The bucket's keys under the logged model a registered version was made from."""
    source = client.get_model_version(model_name, version).source  # models:/m-<id>
    logged = client.get_logged_model(source.removeprefix("models:/"))
    # mlflow-artifacts:/<experiment>/models/<id>/artifacts, under the server's destination.
    prefix = "mlartifacts/" + logged.artifact_location.removeprefix("mlflow-artifacts:/")
    return {key.removeprefix(prefix + "/") for key in bucket_keys() if key.startswith(prefix)}


def predict(url: str) -> dict[str, Any]:
    body = json.loads((PROJECT_ROOT / "serving" / "example_request.json").read_text())
    response = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def assert_own_registry(client: MlflowClient, home: Path, model_name: str, run_id: str) -> None:
    """The workspace's ledger, champion and versions are its own model's and MLflow run's."""
    records = ledger(home)
    assert records, f"{home}: empty ledger"
    assert {r.model_name for r in records} == {model_name}
    assert {r.mlflow_run_id for r in records} == {run_id}
    champion = client.get_model_version_by_alias(model_name, registry.CHAMPION)
    assert champion.run_id == run_id
    assert str(champion.version) == registry.champion_history(records, model_name)[-1]
    versions = client.search_model_versions(f"name = '{model_name}'")
    assert {v.run_id for v in versions} == {run_id}


# ---------------------------------------------------------------------------------------------
# The model-name setting (unit)
# ---------------------------------------------------------------------------------------------


def register_again(home: Path, run_id: str, server: str, model_name: str | None) -> None:
    """Register the workspace's trained model once more, as a retrain would (its own gates)."""
    validation = json.loads((home / "reports" / "validation.json").read_text())
    registry.register(
        stage_results(home, "train")["model_uri"],
        run_id=run_id,
        **({} if model_name is None else {"model_name": model_name}),
        gates=validation,
        reason="a retrain, for the promotion test",
        ledger_path=home / "reports" / registry.LEDGER_FILE,
        tracking_uri=server,
        decision_policy=validation["decision_policy"],
    )


def test_the_model_name_setting_names_the_champion_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDITRISK_MODEL_NAME", raising=False)
    monkeypatch.delenv("CREDITRISK_MODEL_URI", raising=False)
    assert Settings().model_name == "CreditRiskPD"
    assert Settings().serving.model_uri == "models:/CreditRiskPD@champion"
    monkeypatch.setenv("CREDITRISK_MODEL_NAME", "TeamB_PD")
    assert Settings().model_name == "TeamB_PD"
    assert Settings().serving.model_uri == "models:/TeamB_PD@champion"
    # An explicit URI still wins (a pinned version, another team's model on purpose).
    monkeypatch.setenv("CREDITRISK_MODEL_URI", "models:/TeamB_PD/3")
    assert Settings().serving.model_uri == "models:/TeamB_PD/3"
    pinned = ServingSettings(model_uri="models:/Other/1")
    assert Settings(serving=pinned).serving.model_uri == "models:/Other/1"


@pytest.mark.parametrize("name", ["", " ", "team/a", "team:a", "team@a", " team_a"])
def test_a_model_name_that_breaks_a_registry_uri_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="model name"):
        Settings(model_name=name)


# ---------------------------------------------------------------------------------------------
# The end-to-end test
# ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
def test_two_workspaces_share_a_tracking_server_with_s3_artefacts(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    server = tracking_server.url
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    home_a, home_b = tmp_path / "team_a", tmp_path / "team_b"
    home_a.mkdir()
    home_b.mkdir()
    env_a = client_environment(home_a, server, MODEL_A)
    env_b = client_environment(home_b, server, None)  # the default model name
    flags = [arg for param in TINY_POLICY.split() for arg in ("-p", param)]
    pipeline = creditrisk("run", "--size", "tiny", "--to", "register", *flags)

    # 1. Two pipelines at once against the same server and registry.
    log_a, log_b = tmp_path / "pipeline_a.log", tmp_path / "pipeline_b.log"
    run_a, run_b = start(pipeline, env_a, log_a), start(pipeline, env_b, log_b)
    try:
        tracking_server.wait_until_healthy()
        assert finish(run_a, log_a, 600) == 0, log_a.read_text()
        assert finish(run_b, log_b, 600) == 0, log_b.read_text()
    finally:
        stop(run_a)
        stop(run_b)

    run_id_a = stage_results(home_a, "train")["mlflow_run_id"]
    run_id_b = stage_results(home_b, "train")["mlflow_run_id"]
    assert run_id_a != run_id_b
    for home, model_name, run_id in [(home_a, MODEL_A, run_id_a), (home_b, MODEL_B, run_id_b)]:
        assert_own_registry(client, home, model_name, run_id)
        assert [(r.action, r.version) for r in ledger(home)] == [
            ("register", "1"),
            ("promote", "1"),
        ]
        registered = stage_results(home, "register")
        assert registered["model_name"] == model_name
        assert registered["model_uri"] == f"models:/{model_name}/1"
        manifest = json.loads((home / "reports" / "deploy_manifest.json").read_text())
        assert manifest["model"]["registry_uri"] == f"models:/{model_name}@champion"
        assert manifest["serving"]["environment"]["MLFLOW_TRACKING_URI"] == server
        # Neither saw the other's champion as its own: each validated against no champion.
        validation = json.loads((home / "reports" / "validation.json").read_text())
        assert validation["canary"]["champion_version"] is None, validation["canary"]
        # Nothing went to a local store: runs in the server's database, artefacts in S3.
        assert not (home / "mlflow.db").exists() and not (home / "mlartifacts").exists()
        assert {"MLmodel", "artifacts/xgboost_model.json"} <= model_files_in_bucket(
            client, model_name, "1"
        )
    run = client.get_run(run_id_a)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied, not s3:// direct
    audit = {a.path for a in client.list_artifacts(run_id_a, "pipeline_runs")}
    assert audit, "the stages' HTML was not attached to the MLflow run"

    # 2. A second and third version of A (as retrains would register them), and one of B:
    # registering in B moves none of A's aliases.
    for _ in range(2):
        register_again(home_a, run_id_a, server, MODEL_A)
    before_b = aliases(client, MODEL_A)
    assert before_b == {"champion": "1", "challenger": "3"}
    register_again(home_b, run_id_b, server, None)
    assert aliases(client, MODEL_A) == before_b
    assert aliases(client, MODEL_B) == {"champion": "1", "challenger": "2"}

    # 3. A's champion served (a real uvicorn) and batch-scored from the server, at once.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_log, score_log = tmp_path / "serve_a.log", tmp_path / "score_a.log"
    scores = tmp_path / "scores_a.parquet"
    serve = start(creditrisk("serve", "--port", str(port)), env_a, serve_log)
    try:
        score = start(
            creditrisk("score", "--input", "data/raw", "--output", str(scores), "--no-progress"),
            env_a,
            score_log,
        )
        assert finish(score, score_log, 300) == 0, score_log.read_text()
        scored = pd.read_parquet(scores)
        assert len(scored) == 2317 and scored["probability_of_default"].between(0, 1).all()
        assert set(scored["model_name"]) == {MODEL_A}
        assert set(scored["model_version"].astype(str)) == {"1"}

        wait_for(f"{url}/ready", serve, serve_log, timeout=180)
        served = predict(url)
        assert served["model"] == {"name": MODEL_A, "version": "1", "alias": "champion"}
        metadata = httpx.get(f"{url}/metadata", timeout=10).json()
        assert metadata["mlflow_run_id"] == run_id_a

        # 4. Promotion and rollback by CLI, the aliases checked on the server after each.
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                creditrisk(*args),
                env=env_a,
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )

        promoted = cli("promote", "--version", "2", "--reason", "retrain 2 is better")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert f"{MODEL_A}@champion → version 2" in promoted.stdout
        expected = {"champion": "2", "previous_champion": "1", "challenger": "3"}
        assert aliases(client, MODEL_A) == expected
        assert ledger(home_a)[-1].action == "promote" and ledger(home_a)[-1].version == "2"
        rolled_back = cli("rollback", "--reason", "retrain 2 misbehaves")
        assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
        assert aliases(client, MODEL_A) == {"champion": "1", "challenger": "3"}
        assert ledger(home_a)[-1].action == "rollback" and ledger(home_a)[-1].version == "1"
        assert aliases(client, MODEL_B) == {"champion": "1", "challenger": "2"}

        # 5. Two promotions started together: one wins and the other is refused by the
        # workspace lock, or they serialise; the champion is the ledger's last record.
        records_before = len(ledger(home_a))
        racers = [
            start(
                creditrisk("promote", "--version", version, "--reason", f"race to {version}"),
                env_a,
                tmp_path / f"promote_{version}.log",
            )
            for version in ("2", "3")
        ]
        codes = [
            finish(racer, tmp_path / f"promote_{version}.log", 180)
            for racer, version in zip(racers, ("2", "3"), strict=True)
        ]
        outputs = [(tmp_path / f"promote_{v}.log").read_text() for v in ("2", "3")]
        assert sorted(codes) in ([0, 0], [0, LOCKED_EXIT]), outputs
        for code, output in zip(codes, outputs, strict=True):
            if code == LOCKED_EXIT:
                assert "is in use by run cli-promote-" in output, output
        records = ledger(home_a)
        assert len(records) == records_before + codes.count(0)
        last = records[-1]
        assert last.action == "promote"
        now = aliases(client, MODEL_A)
        assert now["champion"] == last.version
        assert now.get("previous_champion") == last.previous_champion
        assert_own_registry(client, home_a, MODEL_A, run_id_a)
        assert_own_registry(client, home_b, MODEL_B, run_id_b)
        assert aliases(client, MODEL_B) == {"champion": "1", "challenger": "2"}

        # Serving in A still serves A's model (loaded once; promotions reach it on reload).
        assert predict(url)["model"]["name"] == MODEL_A
    finally:
        stop(serve)
