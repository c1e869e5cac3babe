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
from modeling_fixtures import ModelingData

from creditrisk.data.tables import tables
from creditrisk.modeling.release import (
    RegisterStageParams,
    ValidateStageParams,
    run_register,
    run_validate,
)
from creditrisk.modeling.stages import (
    EvaluateStageParams,
    TrainStageParams,
    run_evaluate,
    run_train,
)
from creditrisk.modeling.train import TrainParams
from creditrisk.settings import Workspace

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
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        patch.setenv("CREDITRISK_RUN_ID", "20261122T000000Z-servingtest")
        run_train(TrainStageParams(model=params), workspace)
        run_evaluate(EvaluateStageParams(reason_examples=0), workspace)
        run_validate(ValidateStageParams(), workspace)
        run_register(RegisterStageParams(), workspace)
        try:
            yield Champion(workspace, modeling_snapshot.raw, workspace.mlflow_uri)
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]


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
