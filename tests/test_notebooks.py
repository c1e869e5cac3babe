"""The stage notebooks follow the house rules the pipeline relies on."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from papermill.inspection import inspect_notebook  # what `papermill --help-notebook` shows

from creditrisk.pipeline.config import load_pipeline_config
from creditrisk.settings import PROJECT_ROOT

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
