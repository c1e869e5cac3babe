"""Fixtures for the scoring tests: a champion in a real SQLite registry, and raw inputs.

The champion is trained, evaluated, validated and registered by the pipeline's own stage
functions on the `small` snapshot (see modeling_fixtures.py). The raw input is a slice of that
snapshot's Kaggle files: a few hundred applicants with every history row they own, so the
features the scorer computes from it equal their rows in the feature store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from modeling_fixtures import ModelingData, settings_for

from creditrisk.data.tables import tables
from creditrisk.modeling.model import TrainParams
from creditrisk.modeling.train import train_model
from creditrisk.settings import Workspace
from creditrisk.stages import evaluate, register, train, validate
from creditrisk.stages.context import governed

#: Applicants per application file in the slice.
SLICE_APPLICANTS = 300


@dataclass(frozen=True)
class Champion:
    """A workspace whose registry has a champion, and the raw snapshot it was trained from."""

    workspace: Workspace
    raw: Path
    tracking_uri: str


@pytest.fixture(scope="module")
def champion(
    modeling_snapshot: Workspace, modeling_data: ModelingData, params: TrainParams
) -> Iterator[Champion]:
    """Stages 03–06 on the module's workspace: version 1 of CreditRiskPD is the champion."""
    import mlflow

    workspace = modeling_data.workspace
    run_stages(workspace, "20261122T000000Z-servingtest", params)
    try:
        yield Champion(workspace, modeling_snapshot.raw, workspace.mlflow_uri)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def run_stages(
    workspace: Workspace,
    run_id: str,
    model: TrainParams | None = None,
    *,
    train_params: train.Params | None = None,
    evaluate_params: evaluate.Params | None = None,
    validate_params: validate.Params | None = None,
    register_params: register.Params | None = None,
) -> register.Outcome:
    """Train, evaluate, validate and register in pipeline mode, holding the workspace lock.

    ``model`` replaces the hyper-parameters the train stage would use (e.g. one XGBoost thread
    per test worker); the stages' own defaults otherwise.
    """
    with governed(settings_for(workspace), run_id) as context:
        train_params = train_params or train.Params()
        ctx = context("train")
        splits = train.split(train_params, ctx)
        trained = train_model(splits.splits.train, model or train_params.model_params())
        train.log(train_params, ctx, trained, splits)
        evaluate.run(evaluate_params or evaluate.Params(reason_examples=0), context("evaluate"))
        validate.run(validate_params or validate.Params(), context("validate"))
        return register.run(register_params or register.Params(), context("register"))


def slice_raw(raw: Path, target: Path, applicants: int = SLICE_APPLICANTS) -> Path:
    """The first ``applicants`` of each application file with all their history rows."""
    target.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()

    def csv(name: str) -> str:
        return str(raw / f"{name}.csv")

    def copy(query: str, name: str, parameters: list[str]) -> None:
        con.execute(
            f"copy ({query}) to '{target / f'{name}.csv'}' (header, delimiter ',')", parameters
        )

    # all_varchar keeps every value exactly as written in the source file.
    reader = "read_csv(?, all_varchar = true, header = true)"
    for name in ("application_train", "application_test"):
        copy(f"select * from {reader} limit {applicants}", name, [csv(name)])
    ids = (
        f"((select SK_ID_CURR from {reader} limit {applicants}) "
        f"union all (select SK_ID_CURR from {reader} limit {applicants}))"
    )
    id_files = [csv("application_train"), csv("application_test")]
    for name in tables():
        if name.startswith("application") or name == "bureau_balance":
            continue
        copy(
            f"select * from {reader} where SK_ID_CURR in {ids}",
            name,
            [csv(name), *id_files],
        )
    copy(
        f"select * from {reader} where SK_ID_BUREAU in (select SK_ID_BUREAU from {reader})",
        "bureau_balance",
        [csv("bureau_balance"), str(target / "bureau.csv")],
    )
    con.close()
    return target


@pytest.fixture(scope="module")
def raw_slice(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kaggle-format CSVs of a few hundred applicants and their full histories (read-only)."""
    return slice_raw(champion.raw, tmp_path_factory.mktemp("raw_slice"))
