"""The stage notebooks follow the house rules the pipeline relies on, and each stage's
parameters are declared once: the notebook's parameters cell and pipeline.yaml agree with the
stage's ``Params`` (names, types, defaults and meanings)."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from papermill.inspection import inspect_notebook  # what `papermill --help-notebook` shows

from creditrisk.pipeline.config import load_pipeline_config
from creditrisk.settings import PROJECT_ROOT
from creditrisk.stages.params import check_declaration, parameters_cell

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline_config(PROJECT_ROOT / "pipeline.yaml")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {index} has a count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_structure(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [1], f"{path.name}: one parameters cell, right after the imports"
    assert notebook.metadata.kernelspec.name == "creditrisk"
    for cell in code:
        tree = ast.parse(cell.source)
        defined = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defined, f"{path.name}: logic that deserves a name belongs in creditrisk/"
    assert code[-1].source.lstrip().startswith("record("), f"{path.name}: last cell records"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_typed_and_documented(path: Path) -> None:
    parameters = inspect_notebook(str(path))
    assert parameters, path.name
    for name, p in parameters.items():
        assert p["inferred_type_name"] not in ("None", ""), f"{path.name}: {name} has no type"
        assert p["help"], f"{path.name}: {name} has no '# what it means' comment"


def test_pipeline_declares_every_notebook_parameter(pipeline) -> None:
    assert [PROJECT_ROOT / s.notebook for s in pipeline.stages] == NOTEBOOKS
    for stage in pipeline.stages:
        declared = inspect_notebook(str(PROJECT_ROOT / stage.notebook))
        assert set(stage.parameters) == set(declared), stage.name
        for name, value in stage.parameters.items():
            in_notebook = ast.literal_eval(declared[name]["default"])
            assert value == in_notebook, f"{stage.name}.{name}: pipeline.yaml and notebook differ"


def _stage_params(stage_module: str):
    import importlib

    return importlib.import_module(stage_module).Params


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_is_generated_from_the_stage_params(path: Path, pipeline) -> None:
    """Names, types, defaults and help comments: exactly the stage's Params."""
    stage = next(s for s in pipeline.stages if PROJECT_ROOT / s.notebook == path)
    assert stage.module == f"creditrisk.stages.{stage.name}"
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    expected = parameters_cell(_stage_params(stage.module))
    assert cell.source == expected, (
        f"{path.name}: the parameters cell must be exactly (generated from "
        f"{stage.module}.Params):\n{expected}"
    )


def test_pipeline_yaml_declares_the_stage_params_policy(pipeline) -> None:
    for stage in pipeline.stages:
        assert stage.module, stage.name
        assert check_declaration(stage.name, _stage_params(stage.module), stage.parameters) == []


def test_a_disagreeing_declaration_is_reported() -> None:
    from creditrisk.stages import validate

    problems = check_declaration(
        "validate", validate.Params, {**validate.Params.documented_policy(), "min_auc": 0.6}
    )
    assert problems == [
        "stage 'validate': pipeline.yaml's min_auc = 0.6, but the policy in "
        "creditrisk.stages.validate.Params is 0.7"
    ]
    missing = dict(validate.Params.documented_policy())
    del missing["canary"]
    assert check_declaration("validate", validate.Params, {**missing, "extra": 1}) == [
        "stage 'validate': pipeline.yaml lacks parameter(s) ['canary']",
        "stage 'validate': pipeline.yaml declares ['extra'], which "
        "creditrisk.stages.validate.Params does not",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_cell_after_the_parameters_builds_them_with_begin(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    stage = path.stem.split("_", 1)[1]
    assert code[2].source == f"ctx, params = begin({stage}.Params, globals())", path.name


def test_the_runner_refuses_a_pipeline_whose_policy_disagrees_with_the_stage(
    tmp_path: Path,
) -> None:
    from creditrisk.pipeline.config import PipelineConfigError, load_yaml, parse_pipeline_config
    from creditrisk.pipeline.runner import run_pipeline

    raw = load_yaml((PROJECT_ROOT / "pipeline.yaml").read_text())
    validate = next(stage for stage in raw["stages"] if stage["name"] == "validate")
    validate["parameters"]["min_auc"] = 0.6  # a relaxed "policy" nobody declared in code
    config = parse_pipeline_config(raw, project_root=PROJECT_ROOT)
    workspace = tmp_path / "workspace"

    with pytest.raises(PipelineConfigError, match=r"min_auc = 0\.6, but the policy"):
        run_pipeline(config, workspace, echo=lambda _: None)
    assert not workspace.exists()  # refused before anything ran
