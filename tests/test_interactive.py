"""Interactive notebook runs change nothing in production (finding 2 of the audit-trail issue).

Found on the old main: running ``04_evaluate.ipynb`` in JupyterLab with ``margin = 0.30``
rewrote ``decision_policy.json`` in the champion's MLflow run; after ``POST /admin/reload`` the
API served a threshold of 0.40 without a ledger entry or a re-validation, and even a run with
the defaults rewrote ``reports/metrics.json``, the plots and the run's MLflow metrics.

Here the real stage notebooks run with papermill *by hand* (no runner, no run id) in a
workspace whose registry holds a champion: they must write only under ``scratch/`` and leave
``reports/``, ``data/``, the registry, every MLflow run and what ``/metadata`` serves exactly
as they were. A kernel that merely claims a run id (``CREDITRISK_RUN_ID``) is refused.

Every other notebook runs interactively in the nbmake tier (``make test-notebooks``) on a
workspace a pipeline run built, which then checks the workspace's reports/, data/, MLflow store
and registry byte for byte.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from modeling_fixtures import modeling_data, modeling_snapshot, params  # noqa: F401
from serving_fixtures import Champion, champion  # noqa: F401

from creditrisk.io import read_json
from creditrisk.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("interactive")]


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` → SHA-256 of its bytes."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _registry_state(uri: str) -> dict[str, Any]:
    """Everything the registry and the tracking store hold that production depends on."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()])
    state: dict[str, Any] = {
        "aliases": client.get_registered_model("CreditRiskPD").aliases,
        "versions": sorted(
            (v.version, v.run_id, sorted(v.tags.items()))
            for v in client.search_model_versions("name = 'CreditRiskPD'")
        ),
        "runs": {},
    }
    for run in runs:
        artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        history = {
            key: [(m.value, m.step) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics
        }
        policy = None
        if "decision_policy.json" in artifacts:  # what the old main rewrote
            policy = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/decision_policy.json")
        state["runs"][run.info.run_id] = (
            sorted(run.data.tags.items()),
            history,
            artifacts,
            policy,
        )
    return state


def _metadata(champion: Champion) -> dict[str, Any]:  # noqa: F811
    from serving.api import create_app

    settings = Settings(
        home=champion.workspace.home,
        mlflow={"tracking_uri": champion.tracking_uri},
        serving={"feature_process": False, "tracking_uri": champion.tracking_uri},
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/metadata")
        assert response.status_code == 200, response.text
        return dict(response.json())


def _run_notebook(
    stem: str, workspace: Path, parameters: dict[str, Any], environment: dict[str, str]
) -> Path:
    import papermill

    output = workspace.parent / f"{stem}.interactive.ipynb"
    # Started elsewhere, as JupyterLab starts kernels in notebooks/: nothing may depend on, or
    # be written to, the working directory (MLflow's default store is ./mlflow.db).
    elsewhere = workspace.parent / f"{stem}.cwd"
    elsewhere.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        for key in ("CREDITRISK_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            patch.delenv(key, raising=False)
        patch.setenv("CREDITRISK_HOME", str(workspace))
        for key, value in environment.items():
            patch.setenv(key, value)
        papermill.execute_notebook(
            str(PROJECT_ROOT / "notebooks" / f"{stem}.ipynb"),
            str(output),
            parameters=parameters,
            kernel_name="creditrisk",
            cwd=str(elsewhere),
            progress_bar=False,
        )
    assert list(elsewhere.iterdir()) == [], f"{stem} wrote into its working directory"
    return output


@pytest.fixture(scope="module")
def production(champion: Champion) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The champion workspace's production state before any interactive run."""
    workspace = champion.workspace.home
    yield {
        "reports": _tree(workspace / "reports"),
        "data": _tree(workspace / "data"),
        "registry": _registry_state(champion.tracking_uri),
        "metadata": _metadata(champion),
    }


def assert_production_unchanged(champion: Champion, production: dict[str, Any]) -> None:  # noqa: F811
    """reports/, data/, every MLflow run, the registry and what the API serves are as before."""
    workspace = champion.workspace.home
    assert _tree(workspace / "reports") == production["reports"]
    assert _tree(workspace / "data") == production["data"]
    assert _registry_state(champion.tracking_uri) == production["registry"]
    assert _metadata(champion) == production["metadata"]


def _first_output(notebook: Path) -> str:
    import nbformat

    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            if text:
                return str(text).splitlines()[0]
    return ""


def test_a_what_if_cut_off_in_04_evaluate_leaves_production_unchanged(
    champion: Champion,  # noqa: F811
    production: dict[str, Any],
    kernel: str,
) -> None:
    workspace = champion.workspace.home
    served = production["metadata"]["threshold"]

    notebook = _run_notebook("04_evaluate", workspace, {"margin": 0.3}, {})

    assert _first_output(notebook).startswith("INTERACTIVE run: reads the workspace")
    scratch = read_json(workspace / "scratch/04_evaluate/reports/metrics.json")
    assert scratch["mode"] == "interactive"
    what_if = scratch["decision_policy"]["decision"]["threshold"]
    assert what_if == pytest.approx(0.3 / (0.3 + 0.45)) and what_if != pytest.approx(served)
    assert (workspace / "scratch/04_evaluate/reports/evaluation/calibration.png").is_file()
    assert_production_unchanged(champion, production)


def test_a_notebook_claiming_a_run_id_it_does_not_hold_is_refused(
    champion: Champion,  # noqa: F811
    production: dict[str, Any],
    kernel: str,
) -> None:
    from papermill.exceptions import PapermillExecutionError

    workspace = champion.workspace.home
    with pytest.raises(PapermillExecutionError) as failure:
        _run_notebook(
            "04_evaluate", workspace, {}, {"CREDITRISK_RUN_ID": "20990101T000000Z-forged"}
        )

    assert failure.value.ename == "NotInPipeline"
    assert "not held by that run" in failure.value.evalue
    assert not os.environ.get("CREDITRISK_RUN_ID")
    assert_production_unchanged(champion, production)


def test_loading_the_champion_writes_nothing_into_its_artefacts(
    champion: Champion,  # noqa: F811
) -> None:
    """MLflow hands back a local store's own folder for a registered model and writes
    ``registered_model_meta`` into it: loading must work on a copy (found by the nbmake tier's
    byte-for-byte check)."""
    from creditrisk import tracking
    from creditrisk.scoring import Scorer

    artefacts = champion.workspace.home / "mlartifacts"
    before = _tree(artefacts)

    # By the version (models:/CreditRiskPD/1) and by the logged model (models:/m-…): MLflow's
    # metadata file would say "CreditRiskPD 1" after the one and "null" after the other.
    scorer = Scorer.load(tracking_uri=champion.tracking_uri)
    assert _tree(artefacts) == before
    tracking.load_trained(scorer.info.source, champion.tracking_uri)
    assert _tree(artefacts) == before
    tracking.model_metadata(scorer.info.uri, champion.tracking_uri)
    assert _tree(artefacts) == before
