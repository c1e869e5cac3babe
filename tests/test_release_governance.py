"""Release governance: the deploy manifest, the API image, the smoke test, CI/CD and the DAG.

The manifest and the image's command run against a real champion (stages 03–06 on the `small`
snapshot, see serving_fixtures.py) in a real SQLite MLflow registry; the image's command is
started as the Dockerfile states it, over HTTP. No Docker engine runs here: the Dockerfile is
parsed, its build context rebuilt from .dockerignore and its package built as a wheel.
"""

# The fixtures are imported and injected by name (see test_modeling.py).
# ruff: noqa: F811

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jinja2
import pytest
import yaml
from conftest import free_port
from modeling_fixtures import modeling_data, modeling_snapshot, params, settings_for  # noqa: F401
from serving_fixtures import Champion, champion  # noqa: F401
from typer.testing import CliRunner

from creditrisk import registry
from creditrisk.cli import app
from creditrisk.features import catalog
from creditrisk.governance.manifest import MANIFEST_FILE, SERVICE_ENDPOINTS, NoChampion
from creditrisk.io import read_json, write_json
from creditrisk.orchestration.airflow_dag import (
    FRESHNESS_TASK,
    PROMOTE_TASK,
    build_dag,
    stage_commands,
)
from creditrisk.pipeline.records import new_run_id
from creditrisk.settings import PROJECT_ROOT, MlflowSettings, ServingSettings, Settings, Workspace
from creditrisk.stages import register
from creditrisk.stages.context import governed
from serving.api import create_app

pytestmark = pytest.mark.xdist_group("release")

runner = CliRunner()
DOCKERFILE = PROJECT_ROOT / "serving" / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
PIPELINE_YAML = PROJECT_ROOT / "pipeline.yaml"
BIN = Path(sys.executable).parent
#: The variable naming the MLflow store (``Settings.mlflow.tracking_uri``).
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def strict_json(path: Path) -> Any:
    """The file's JSON, refusing NaN and infinities (not JSON, though Python writes them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def write_deploy_manifest(workspace: Workspace, **options: Any) -> Path:
    """``reports/deploy_manifest.json`` as the register stage writes it, holding the lock."""
    with governed(settings_for(workspace), f"{new_run_id()}-releasetest") as context:
        return register.write_manifest(context("register"), **options)


def manifest_path(workspace: Workspace) -> Path:
    return workspace.reports / MANIFEST_FILE


def copy_workspace(champion: Champion, target: Path) -> Workspace:
    """A private copy of the champion's workspace (its registry included) a test may change."""
    shutil.copytree(champion.workspace.home, target)
    return Workspace(target)


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


# ---------------------------------------------------------------------------------------------
# The deploy manifest
# ---------------------------------------------------------------------------------------------


def test_manifest_names_the_champion_with_its_gates_promotion_and_lineage(
    champion: Champion, isolated_env: None
) -> None:
    workspace = champion.workspace
    path = write_deploy_manifest(workspace)

    assert path == workspace.reports / "deploy_manifest.json"
    assert not [p.name for p in workspace.reports.iterdir() if p.name.startswith(".deploy")]
    manifest = strict_json(path)
    version = registry.current_champion(tracking_uri=champion.tracking_uri)
    assert version is not None
    training = read_json(workspace.reports / "training_run.json")
    model = manifest["model"]
    assert model["registry_uri"] == "models:/CreditRiskPD@champion"
    assert model["version"] == str(version.version) == "1"
    assert model["version_uri"] == "models:/CreditRiskPD/1"
    assert model["mlflow_run_id"] == version.run_id == training["mlflow_run_id"]
    assert model["tracking_uri"] == champion.tracking_uri
    assert model["source"] == version.source
    assert model["aliases"]["champion"] == "1"

    validation_report = read_json(workspace.reports / "validation.json")
    validation = manifest["validation"]
    assert validation["source"] == "reports/validation.json"
    assert validation["passed"] is True and validation["failed"] == []
    assert [g["name"] for g in validation["gates"]] == [
        g["name"] for g in validation_report["gates"]
    ]
    assert validation["n_gates"] == len(validation["gates"]) > 10
    assert {"auc", "ks", "ece"} <= {g["name"] for g in validation["gates"]}
    assert validation["canary"] == validation_report["canary"]  # skipped: the first champion
    assert validation["file"]["sha256"] and validation["thresholds"]["min_auc"] == 0.70

    promotion = manifest["promotion"]
    assert promotion["action"] == "promote" and promotion["version"] == "1"
    assert promotion["validation_passed"] is True and promotion["forced"] is False
    assert promotion["mlflow_run_id"] == version.run_id and promotion["reason"]
    assert promotion["ledger"] == str(workspace.reports / registry.LEDGER_FILE)

    lineage = manifest["lineage"]
    summary = read_json(workspace.ingestion_summary)
    assert lineage["source"] == "reports/lineage.json"
    assert lineage["data_snapshot_id"] == summary["snapshot_id"]
    assert lineage["feature_sql_sha256"] == catalog.sql_hash()
    assert lineage["feature_sql_matches_code"] is True

    routes = {(e["method"], e["path"]) for e in manifest["serving"]["endpoints"]}
    assert {
        ("POST", "/predict"),
        ("GET", "/ready"),
        ("GET", "/health"),
        ("GET", "/metrics"),
    } <= routes
    # The declared endpoints, which test_the_declared_endpoints_are_the_apis_routes holds equal
    # to the routes serving.api serves.
    endpoints = manifest["serving"]["endpoints"]
    assert [(e["method"], e["path"], e["summary"]) for e in endpoints] == list(SERVICE_ENDPOINTS)
    assert manifest["serving"]["commands"]["rest"] == (
        "creditrisk serve --host 0.0.0.0 --port 8000"
    )
    image = manifest["image"]
    assert image["reference"] == "creditrisk-api:1"
    assert (PROJECT_ROOT / image["dockerfile"]).is_file()
    build = "docker build -f serving/Dockerfile -t creditrisk-api:1"
    head = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode == 0:
        commit = head.stdout.strip()
        assert manifest["repository"]["commit"] == commit
        assert image["build"] == f"{build} --build-arg GIT_COMMIT={commit} ."
    else:
        assert manifest["repository"]["commit"] is None and image["build"] == f"{build} ."
    # Besides a working tree with edits, the release engineer is warned that the champion was
    # trained on synthetic data (the fixture's `small` snapshot, seed 11). Its only deviation
    # from the policy is operational (no reason-code examples), which is recorded, not warned.
    deviations = manifest["validation"]["deviations"]
    assert [(d["stage"], d["parameter"], d["kind"]) for d in deviations] == [
        ("evaluate", "reason_examples", "operational")
    ]
    assert manifest["validation"]["synthetic_data"]["n_applicants"] == 30_000
    assert [w for w in manifest["warnings"] if "git commit" not in w] == [
        "CreditRiskPD version 1: Synthetic data: 30,000 generated applicants (seed 11), not a "
        "lender's records: the performance figures say nothing about real applicants"
    ]


def test_manifest_command_writes_the_file_and_checks_the_tag(
    champion: Champion, isolated_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITRISK_HOME", str(champion.workspace.home))

    result = runner.invoke(app, ["manifest", "--image", "ghcr.io/lender/creditrisk-api"])
    assert result.exit_code == 0, result.output
    assert "models:/CreditRiskPD@champion → version 1" in result.output
    assert "validation passed" in result.output
    written = strict_json(manifest_path(champion.workspace))
    assert written["image"]["reference"] == "ghcr.io/lender/creditrisk-api:1"

    result = runner.invoke(app, ["manifest", "--tag", "2026.11 rc"])
    assert result.exit_code == 2 and "not a Docker image tag" in result.output


def test_manifest_refuses_without_a_champion(
    champion: Champion,
    workspace: Workspace,
    isolated_env: None,
    tmp_path: Path,
) -> None:
    # No registry at all: refused, and asking did not create an empty mlflow.db.
    result = runner.invoke(app, ["manifest"])
    assert result.exit_code == 1
    assert "no deploy manifest" in result.output and "make pipeline" in result.output
    assert not (workspace.home / "mlflow.db").exists()
    assert not manifest_path(workspace).exists()

    # A registry whose champion alias was removed: refused, naming the alias.
    copy = copy_workspace(champion, tmp_path / "no_champion")
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=copy.mlflow_uri).delete_registered_model_alias(
        "CreditRiskPD", "champion"
    )
    with pytest.raises(NoChampion, match=r"models:/CreditRiskPD@champion is not set"):
        write_deploy_manifest(copy)


def test_manifest_takes_the_registry_record_when_the_reports_are_not_the_champions(
    champion: Champion, isolated_env: None, tmp_path: Path
) -> None:
    """After a rollback, reports/ describes the newest model, not the champion: the gates and
    the lineage then come from the version's tags, and a feature-SQL change is flagged."""
    copy = copy_workspace(champion, tmp_path / "rolled_back")
    validation = read_json(copy.reports / "validation.json")
    write_json(copy.reports / "validation.json", {**validation, "mlflow_run_id": "another-run"})
    (copy.reports / "lineage.json").unlink()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=copy.mlflow_uri)
    tags = client.get_model_version("CreditRiskPD", "1").tags
    client.set_model_version_tag("CreditRiskPD", "1", "feature_sql_hash", "0" * 64)

    manifest = strict_json(write_deploy_manifest(copy))

    assert manifest["validation"]["source"] == "registry version tags"
    assert manifest["validation"]["passed"] is True
    assert manifest["validation"]["canary"] is None
    assert [g["name"] for g in manifest["validation"]["gates"]] == [
        g["name"] for g in validation["gates"]
    ]
    assert manifest["lineage"]["source"] == "registry version tags"
    assert manifest["lineage"]["data_snapshot_id"] == tags["data_snapshot_id"]
    assert manifest["lineage"]["feature_sql_matches_code"] is False
    assert any("would compute different features" in w for w in manifest["warnings"])


def api_routes(app: Any) -> list[tuple[str, str, str]]:
    """(method, path, summary) of every route of a FastAPI app, as the manifest lists them: the
    summary is the first line of the route's description (its docstring), then the docs."""
    from fastapi.routing import APIRoute

    routes = [
        (method, route.path, (route.description or route.name).strip().splitlines()[0])
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]
    for path, summary in ((app.docs_url, "OpenAPI docs"), (app.openapi_url, "OpenAPI schema")):
        if path:
            routes.append(("GET", path, summary))
    return routes


def test_the_declared_endpoints_are_the_apis_routes(tmp_path: Path) -> None:
    """The manifest's endpoint list is declared in the library (which does not import
    serving): it must stay the list of routes the service really serves."""
    settings = Settings(
        home=tmp_path,
        mlflow={"tracking_uri": None},
        serving=ServingSettings(api_key=None),
    )
    served = api_routes(create_app(settings, load_model=False))

    declared = list(SERVICE_ENDPOINTS)
    assert len(set(declared)) == len(declared), "an endpoint is declared twice"
    missing = sorted(set(served) - set(declared))
    stale = sorted(set(declared) - set(served))
    assert (missing, stale) == ([], []), "SERVICE_ENDPOINTS: routes missing, stale entries"
    assert sorted(declared) == sorted(served)
    assert len(served) >= 10


# ---------------------------------------------------------------------------------------------
# The Dockerfile and its build context
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def json_form(self) -> list[str] | None:
        text = self.arguments.strip()
        return json.loads(text) if text.startswith("[") else None


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped, as Docker does."""
    instructions: list[Instruction] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def dockerfile_environment(instructions: list[Instruction]) -> dict[str, str]:
    """ENV as the image sets it, ARG defaults substituted."""
    arguments: dict[str, str] = {}
    environment: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword not in {"ARG", "ENV"}:
            continue
        for pair in shlex.split(instruction.arguments):
            name, _, value = pair.partition("=")
            value = re.sub(
                r"\$\{(\w+)\}", lambda m: {**arguments, **environment}[m.group(1)], value
            )
            (arguments if instruction.keyword == "ARG" else environment)[name] = value
    return environment


def dockerignore_matcher(path: Path) -> Any:
    """``ignored(relative_path)`` with Docker's rules: the last matching pattern wins, ``!``
    re-includes, and a pattern matching a parent folder matches everything below it."""
    rules = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negated, re.compile(regex)))

    def ignored(relative: str) -> bool:
        parts = relative.strip("/").split("/")
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        verdict = False
        for negated, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                verdict = not negated
        return verdict

    return ignored


def copy_sources(instructions: list[Instruction]) -> list[str]:
    sources = []
    for instruction in instructions:
        if instruction.keyword != "COPY" or "--from" in instruction.arguments:
            continue
        words = instruction.json_form() or shlex.split(instruction.arguments)
        sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def repository_files(source: str) -> list[str]:
    """The repository's files under ``source`` (git's list, or the folder without caches)."""
    # The working tree as git sees it: tracked files that still exist and files not yet added
    # (but not ignored), so a checkout with uncommitted moves builds what it holds.
    working_tree = ["ls-files", "--cached", "--others", "--exclude-standard", "--", source]
    listed = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *working_tree], capture_output=True, text=True
    )
    if listed.returncode == 0 and listed.stdout.strip():
        return sorted({f for f in listed.stdout.split() if (PROJECT_ROOT / f).is_file()})
    root = PROJECT_ROOT / source
    if root.is_file():
        return [source]
    return [
        str(p.relative_to(PROJECT_ROOT))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]


def test_dockerignore_sends_every_copied_file_and_nothing_private() -> None:
    ignored = dockerignore_matcher(DOCKERIGNORE)
    sources = copy_sources(parse_dockerfile(DOCKERFILE))

    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
        for file in repository_files(source):
            if file != "serving/Dockerfile":
                assert not ignored(file), f"{file} is copied but excluded by .dockerignore"
    for private in (
        ".venv/bin/python",
        ".git/HEAD",
        "data/raw/application_train.csv",
        "mlflow.db",
        "mlartifacts/1/model.json",
        "reports/validation.json",
        "runs/latest/run.json",
        "notebooks/01_ingest.ipynb",
        "creditrisk/__pycache__/cli.cpython-311.pyc",
        "serving/Dockerfile",
    ):
        assert ignored(private), f"{private} would be sent to the Docker daemon"


def build_context(target: Path) -> Path:
    """The Docker build context: the COPY sources as .dockerignore lets them through."""
    ignored = dockerignore_matcher(DOCKERIGNORE)
    for source in copy_sources(parse_dockerfile(DOCKERFILE)):
        for file in repository_files(source):
            if not ignored(file):
                (target / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(PROJECT_ROOT / file, target / file)
    return target


def test_the_image_installs_the_package_with_its_data_from_the_build_context(
    tmp_path: Path,
) -> None:
    context = build_context(tmp_path / "context")
    run_lines = [i.arguments for i in parse_dockerfile(DOCKERFILE) if i.keyword == "RUN"]

    # The dependency layer: the Dockerfile's own command, run in the context.
    requirements_step = next(line for line in run_lines if "requirements.txt" in line)
    subprocess.run(
        requirements_step.split(" && ")[0],
        shell=True,
        check=True,
        cwd=context,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    requirements = (context / "requirements.txt").read_text().split()
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert requirements == project["dependencies"]
    assert any(r.startswith("httpx") for r in requirements)  # creditrisk smoke imports it
    assert not any(r.startswith(("pytest", "ruff", "moto")) for r in requirements)

    # The package: built from the context alone, as `pip install .` builds it in the image.
    assert any(re.search(r"pip install (--no-deps )?\.", line) for line in run_lines)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("creditrisk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    required = {f"creditrisk/features/sql/{p.name}" for p in catalog.SQL_DIR.glob("*.sql")} | {
        "creditrisk/data/reference/columns_description.csv",
        "creditrisk/data/reference/profile.csv",
        "creditrisk/cli.py",
        "serving/api.py",
        "serving/worker.py",
        "serving/example_request.json",
    }
    assert len(required) > 10 and required <= names, sorted(required - names)
    assert not any("__pycache__" in name or name.startswith("tests/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "creditrisk = creditrisk.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_dockerfile_runs_as_a_user_with_the_settings_the_service_reads() -> None:
    instructions = parse_dockerfile(DOCKERFILE)
    keywords = [i.keyword for i in instructions]
    assert instructions[0].keyword == "FROM" and instructions[0].arguments == "python:3.11-slim"
    user = [i.arguments for i in instructions if i.keyword == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("CMD")

    environment = dockerfile_environment(instructions)
    assert environment["DO_NOT_TRACK"] == "1"
    assert environment["CREDITRISK_MODEL_URI"] == registry.champion_uri()
    assert environment[TRACKING_URI_ENV].startswith(("sqlite:///", "http"))
    alias = MlflowSettings.model_fields["tracking_uri"].validation_alias
    assert TRACKING_URI_ENV in getattr(alias, "choices", [alias])
    prefix = ServingSettings.model_config.get("env_prefix", "")
    assert prefix == "CREDITRISK_" and "model_uri" in ServingSettings.model_fields

    (expose,) = [i.arguments for i in instructions if i.keyword == "EXPOSE"]
    command = next(i for i in instructions if i.keyword == "CMD").json_form()
    assert command is not None and command[command.index("--port") + 1] == expose
    assert command[command.index("--host") + 1] == "0.0.0.0"
    healthcheck = next(i for i in instructions if i.keyword == "HEALTHCHECK").arguments
    assert f"127.0.0.1:{expose}/ready" in healthcheck and "curl" not in healthcheck


@dataclass(frozen=True)
class ImageServer:
    url: str
    log: Path
    api_key: str


@pytest.fixture(scope="module")
def image_server(
    champion: Champion, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageServer]:
    """The Dockerfile's CMD, with its ENV, on 127.0.0.1 and a free port, serving the champion.

    Only what a deployment sets at `docker run` differs from the image: the workspace and the
    tracking URI (the test registry), and an API key.
    """
    instructions = parse_dockerfile(DOCKERFILE)
    command = next(i for i in instructions if i.keyword == "CMD").json_form()
    assert command is not None
    port = free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CREDITRISK_", "MLFLOW_"))
    }
    environment.update(dockerfile_environment(instructions))
    environment.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "CREDITRISK_HOME": str(champion.workspace.home),
            TRACKING_URI_ENV: champion.tracking_uri,
            "CREDITRISK_API_KEY": "release-s3cret",
        }
    )
    workdir = tmp_path_factory.mktemp("image_workdir")
    log = workdir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=environment, cwd=workdir, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready in 120 s:\n{log.read_text()}"
            time.sleep(0.5)
        yield ImageServer(url, log, "release-s3cret")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_image_command_serves_the_champion_and_its_healthcheck_passes(
    image_server: ImageServer,
) -> None:
    ready = httpx.get(f"{image_server.url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "model": "models:/CreditRiskPD/1"}
    metadata = httpx.get(
        f"{image_server.url}/metadata", headers={"X-API-Key": image_server.api_key}
    ).json()
    assert (metadata["alias"], metadata["version"]) == ("champion", "1")  # the image's URI
    # The JSON access log reaches the container's output (a bare uvicorn would drop it).
    assert '"path": "/ready"' in image_server.log.read_text()

    healthcheck = next(
        i for i in parse_dockerfile(DOCKERFILE) if i.keyword == "HEALTHCHECK"
    ).arguments
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    port = image_server.url.rsplit(":", 1)[1]
    probe = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in probe]
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    closed = [part.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}") for part in probe]
    assert subprocess.run(closed, capture_output=True, timeout=30).returncode != 0


# ---------------------------------------------------------------------------------------------
# creditrisk smoke
# ---------------------------------------------------------------------------------------------


def test_smoke_passes_against_the_running_api(image_server: ImageServer) -> None:
    result = runner.invoke(
        app,
        ["smoke", "--url", image_server.url + "/", "--timeout", "60"],
        env={"CREDITRISK_API_KEY": image_server.api_key},
    )
    assert result.exit_code == 0, result.output
    assert "smoke test passed" in result.output
    assert "CreditRiskPD version 1 (champion)" in result.output
    assert re.search(r"SK_ID_CURR 100067 PD 0\.\d{4} (approve|decline)", result.output)


def test_smoke_fails_clearly_when_predict_is_refused_or_nothing_listens(
    image_server: ImageServer,
) -> None:
    refused = runner.invoke(
        app, ["smoke", "--url", image_server.url, "--timeout", "30"], env={"CREDITRISK_API_KEY": ""}
    )
    assert refused.exit_code == 1
    assert "smoke test failed" in refused.output and "HTTP 401" in refused.output

    started = time.monotonic()
    closed = runner.invoke(
        app, ["smoke", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2"]
    )
    assert closed.exit_code == 1
    assert "/ready did not answer 200 within 2 s" in closed.output
    assert "ConnectError" in closed.output
    assert time.monotonic() - started < 15

    assert runner.invoke(app, ["smoke", "--url", "127.0.0.1:8000"]).exit_code == 2


# ---------------------------------------------------------------------------------------------
# GitHub workflows and the Makefile
# ---------------------------------------------------------------------------------------------


def cli_commands() -> set[str]:
    return {
        command.name or command.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        for command in app.registered_commands
    }


def make_targets() -> set[str]:
    text = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*:(?!=)", text, flags=re.MULTILINE))


def run_scripts(workflow: dict[str, Any]) -> list[str]:
    return [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if "run" in step
    ]


def invoked(script: str, program: str) -> list[str]:
    """The first non-option, non-assignment word after each call of ``program``."""
    found = []
    for line in script.splitlines():
        words = line.split()
        for position, word in enumerate(words):
            if word != program and not word.endswith(f"/{program}"):
                continue
            before = words[position - 1] if position else ";"
            # A command starts a line, follows a separator, or follows variable assignments.
            starts = before.endswith((";", "&", "|")) or before in {"then", "do"}
            if not starts and not re.match(r"^\w+=", before):
                continue
            rest = [w for w in words[position + 1 :] if not w.startswith("-") and "=" not in w]
            if rest:
                found.append(rest[0])
    return found


def unclosed_expressions(text: str) -> list[str]:
    """Every ``${{`` without its ``}}``, with unbalanced quotes or brackets, or empty."""
    problems = []
    for match in re.finditer(r"\$\{\{", text):
        end = text.find("}}", match.end())
        nested = text.find("${{", match.end())
        if end == -1 or (nested != -1 and nested < end):
            problems.append(text[match.start() : match.start() + 40])
            continue
        inner = text[match.end() : end]
        balanced = inner.count("(") == inner.count(")") and inner.count("[") == inner.count("]")
        if not inner.strip() or inner.count("'") % 2 or not balanced:
            problems.append(text[match.start() : end + 2])
    return problems


def test_the_expression_checker_sees_an_unclosed_expression() -> None:
    assert unclosed_expressions("a: ${{ inputs.data }}\nb: ${{ vars.X || 'y' }}") == []
    assert unclosed_expressions("a: ${{ inputs.data }\nb: ${{ vars.X }}")
    assert unclosed_expressions("a: ${{ inputs.data || 'x }}")
    assert unclosed_expressions("a: ${{ }}")
    assert invoked("make pipeline DATA=x && make -s monitor", "make") == ["pipeline", "monitor"]
    assert invoked('X=1 creditrisk smoke --url u; echo "make it"', "creditrisk") == ["smoke"]
    assert invoked("cd x; make image TAG=1 || make -s rollback", "make") == ["image", "rollback"]


def test_workflows_call_only_existing_make_targets_and_cli_commands() -> None:
    targets, commands = make_targets(), cli_commands()
    assert {"pipeline", "manifest", "image", "smoke", "promote", "rollback"} <= targets
    assert {"manifest", "smoke", "promote", "rollback", "serve", "score"} <= commands
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "nightly.yml", "cd.yml"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert unclosed_expressions(text) == [], path.name
        workflow = yaml.safe_load(text)
        assert workflow["jobs"], path.name
        for script in run_scripts(workflow):
            for target in invoked(script, "make"):
                assert target in targets, f"{path.name}: make {target}: no such target"
            for command in invoked(script, "creditrisk"):
                assert command in commands, f"{path.name}: creditrisk {command}: no such command"
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                assert "@" in step.get("uses", "x@v"), f"{path.name}: unpinned {step['uses']}"


def test_ci_runs_make_test_and_cd_rolls_back_only_after_a_failed_smoke_test() -> None:
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert any("make test" in script for script in run_scripts(ci))

    nightly = yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())
    assert {"schedule", "workflow_dispatch"} <= set(nightly[True])  # YAML 1.1 reads `on` as True
    called = [t for s in run_scripts(nightly) for t in invoked(s, "make")]
    assert called.index("freshness") < called.index("pipeline") < called.index("monitor")
    (upload,) = [
        s
        for s in nightly["jobs"]["nightly"]["steps"]
        if s.get("uses", "").startswith("actions/upload-artifact@v4")
    ]
    assert upload["if"] == "always()" and {"runs/", "reports/"} <= set(
        upload["with"]["path"].split()
    )

    cd = yaml.safe_load((WORKFLOWS / "cd.yml").read_text())
    steps = cd["jobs"]["release"]["steps"]
    order = [t for s in steps if "run" in s for t in invoked(s["run"], "make")]
    assert order[:5] == ["install", "pipeline", "manifest", "image", "smoke"]
    (smoke,) = [s for s in steps if "make smoke" in s.get("run", "")]
    (rollback,) = [s for s in steps if "make rollback" in s.get("run", "")]
    assert f"steps.{smoke['id']}.outcome == 'failure'" in rollback["if"]
    assert "REASON=" in rollback["run"]
    assert any(s.get("with", {}).get("path") == "reports/deploy_manifest.json" for s in steps)


# ---------------------------------------------------------------------------------------------
# The Airflow DAG
# ---------------------------------------------------------------------------------------------


def render_text(command: str, **params: Any) -> str:
    """The command as Airflow renders it: Jinja with the DAG's params and shquote filter."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters["shquote"] = lambda value: shlex.quote(str(value))
    defaults = {
        "data": "",
        "current": "",
        "freshness_source": "",
        "max_age_hours": 48,
        "overrides": [],
        "force": False,
        "promote_version": "",
        "promote_reason": "",
    }
    return environment.from_string(command).render(params={**defaults, **params})


def render(command: str, **params: Any) -> list[str]:
    """The rendered command as argv words."""
    return shlex.split(render_text(command, **params))


def yaml_parameters(stage: str) -> dict[str, Any]:
    stages = yaml.safe_load(PIPELINE_YAML.read_text())["stages"]
    return next((s.get("parameters") or {} for s in stages if s["name"] == stage), {})


def test_dag_tasks_are_the_pipeline_stages_through_the_cli() -> None:
    stages = [s["name"] for s in yaml.safe_load(PIPELINE_YAML.read_text())["stages"]]
    tasks = stage_commands(PIPELINE_YAML)

    assert [task for task, _ in tasks] == [FRESHNESS_TASK, *stages]
    commands = cli_commands()
    for task, command in tasks:
        for subcommand in re.findall(r"\bcreditrisk\s+([a-z][a-z-]*)", command):
            assert subcommand in commands, f"{task}: creditrisk {subcommand}: no such command"
        if task != FRESHNESS_TASK:
            words = render(command)
            assert words[:2] == ["creditrisk", "run"]
            assert words[words.index("--only") + 1] == task
            assert words[words.index("--config") + 1] == str(PIPELINE_YAML.resolve())

    by_task = dict(tasks)
    data = "s3://lender/home credit/2026-11 'final'"
    ingest = render(by_task["ingest"], data=data, overrides=["train.seed=7", "x=a b"], force=True)
    assert ingest[ingest.index("--data") + 1] == data
    assert ingest[-5:] == ["-p", "train.seed=7", "-p", "x=a b", "--force"]
    assert "--data" not in render(by_task["features"])
    current = "s3://lender/daily/2026-11-22"
    monitor = [t for t in by_task if "current" in yaml_parameters(t)]
    for task in by_task:
        words = render(by_task[task], current=current)
        assert (f"{task}.current={current}" in words) == (task in monitor), task
        assert not any(w.endswith(".current=") for w in render(by_task[task])), task
    freshness = render(by_task[FRESHNESS_TASK], data=data, max_age_hours=24)
    assert freshness[:3] == ["creditrisk", "freshness", "--fail-on-stale"]
    assert freshness[freshness.index("--source") + 1] == data
    assert freshness[freshness.index("--max-age-hours") + 1] == "24.0"


def test_dag_with_approval_registers_without_promoting_and_promotes_on_request(
    tmp_path: Path,
) -> None:
    tasks = dict(stage_commands(PIPELINE_YAML, require_approval=True))
    order = list(tasks)
    register = next(t for t in order if "auto_promote" in tasks[t])
    assert order[order.index(register) + 1] == PROMOTE_TASK
    assert "-p register.auto_promote=false" in tasks[register]

    # The rendered command, run by bash as the BashOperator would, with a stand-in CLI.
    cli = tmp_path / "creditrisk"
    cli.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n', encoding="utf-8")
    cli.chmod(0o755)
    promote = dict(stage_commands(PIPELINE_YAML, executable=str(cli), require_approval=True))[
        PROMOTE_TASK
    ]
    skipped = subprocess.run(["bash", "-c", render_text(promote)], capture_output=True, text=True)
    assert skipped.returncode == 99 and skipped.stdout == ""  # no version: skipped, not failed
    reason = "model risk: approved (ticket MR-12)"
    promoted = subprocess.run(
        ["bash", "-c", render_text(promote, promote_version="3", promote_reason=reason)],
        capture_output=True,
        text=True,
    )
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.splitlines() == ["promote", "--version", "3", "--reason", reason]

    no_register = tmp_path / "pipeline.yaml"
    no_register.write_text(
        "stages:\n  - name: only\n    notebook: notebooks/01_ingest.ipynb\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="declares auto_promote"):
        stage_commands(no_register, require_approval=True)


def fake_airflow(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Just enough of Airflow 3's API for build_dag: DAG, Param and BashOperator, recorded."""
    created: list[dict[str, Any]] = []

    class DAG:
        current: DAG | None = None

        def __init__(self, **kwargs: Any) -> None:
            self.kwargs, self.tasks = kwargs, []

        def __enter__(self) -> DAG:
            DAG.current = self
            return self

        def __exit__(self, *exc: object) -> None:
            DAG.current = None

    class BashOperator:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs, self.upstream = kwargs, []
            assert DAG.current is not None, "a task outside its DAG"
            DAG.current.tasks.append(self)
            created.append(kwargs)

        def __rshift__(self, other: BashOperator) -> BashOperator:
            other.upstream.append(self)
            return other

    def Param(default: Any, **schema: Any) -> dict[str, Any]:
        return {"default": default, **schema}

    modules = {
        "airflow": {},
        "airflow.sdk": {"DAG": DAG, "Param": Param},
        "airflow.providers": {},
        "airflow.providers.standard": {},
        "airflow.providers.standard.operators": {},
        "airflow.providers.standard.operators.bash": {"BashOperator": BashOperator},
    }
    for name, attributes in modules.items():
        module = ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    return created


def test_build_dag_chains_the_tasks_with_retries_and_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    fake_airflow(monkeypatch)
    dag = build_dag(PIPELINE_YAML, workspace="/srv/creditrisk", require_approval=True, retries=3)

    assert dag.kwargs["max_active_runs"] == 1 and dag.kwargs["catchup"] is False
    assert dag.kwargs["default_args"]["retries"] == 3
    assert dag.kwargs["default_args"]["execution_timeout"] == timedelta(hours=4)
    assert {"data", "current", "overrides", "promote_version"} <= set(dag.kwargs["params"])
    assert dag.kwargs["user_defined_filters"]["shquote"]("a b") == "'a b'"
    tasks = dag.tasks
    assert [t.kwargs["task_id"] for t in tasks] == [
        task for task, _ in stage_commands(PIPELINE_YAML, require_approval=True)
    ]
    for before, after in itertools.pairwise(tasks):
        assert after.upstream == [before]
    assert tasks[0].upstream == []
    position = [t.kwargs["task_id"] for t in tasks].index(PROMOTE_TASK)
    for index, task in enumerate(tasks):
        assert task.kwargs["env"] == {"DO_NOT_TRACK": "1", "CREDITRISK_HOME": "/srv/creditrisk"}
        assert task.kwargs["append_env"] is True
        expected_rule = "none_failed" if index > position else "all_success"
        assert task.kwargs["trigger_rule"] == expected_rule
        assert task.kwargs["skip_on_exit_code"] == (99 if index == position else None)


def test_the_dag_module_imports_without_airflow_and_nothing_imports_it() -> None:
    if importlib.util.find_spec("airflow") is not None:
        pytest.skip("Airflow is installed here: the module builds its DAG")
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, creditrisk.orchestration.airflow_dag as m; "
            "assert not hasattr(m, 'dag'); "
            "assert not [n for n in sys.modules if n.split('.')[0] == 'airflow']",
        ],
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr

    importers = []
    for root in (PROJECT_ROOT / "creditrisk", PROJECT_ROOT / "serving"):
        for path in root.rglob("*.py"):
            if "orchestration" in path.relative_to(PROJECT_ROOT).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                if any(n.startswith("creditrisk.orchestration") for n in names):
                    importers.append(str(path))
    assert importers == []
