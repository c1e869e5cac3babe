"""The layers hold: what may import what, no cycles, one place that reads the environment.

The import graph is read with ``ast`` from the source of every module of ``creditrisk`` and
``serving`` — every import, including those inside functions and under ``TYPE_CHECKING`` (a
lazy import is still a dependency), resolved to the modules it names:

    notebooks, cli.py            → anything
    creditrisk/pipeline/         → stages, domain, ground floor (the runner)
    creditrisk/stages/           → domain, ground floor
    domain packages              → each other (no cycles), ground floor
    ground floor                 → ground floor only (settings, provenance, io, locking)
    serving/                     → creditrisk (not stages, not the runner)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from creditrisk.pipeline.code import first_party_roots, imported_names, module_file
from creditrisk.settings import PROJECT_ROOT

GROUND = {"creditrisk.settings", "creditrisk.provenance", "creditrisk.io", "creditrisk.locking"}
DOMAIN_PACKAGES = (
    "creditrisk.data",
    "creditrisk.features",
    "creditrisk.spark",
    "creditrisk.modeling",
    "creditrisk.scoring",
    "creditrisk.monitoring",
    "creditrisk.governance",
)
DOMAIN_MODULES = {
    "creditrisk.registry",
    "creditrisk.tracking",
    "creditrisk.reporting",
    "creditrisk.smoke",
}


def _module_name(path: Path) -> str:
    relative = path.relative_to(PROJECT_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = [
        *(PROJECT_ROOT / "creditrisk").rglob("*.py"),
        *(PROJECT_ROOT / "serving").rglob("*.py"),
    ]
    return {_module_name(path): path for path in sorted(files) if "__pycache__" not in path.parts}


def _graph() -> dict[str, set[str]]:
    """Module → the first-party modules it imports (anywhere in its source)."""
    roots = first_party_roots(PROJECT_ROOT)
    graph: dict[str, set[str]] = {}
    for name, path in _modules().items():
        names = imported_names(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        graph[name] = {
            imported
            for imported in names
            if imported.partition(".")[0] in roots and module_file(imported, roots) is not None
        } - {name}
    return graph


GRAPH = _graph()


def _layer(module: str) -> str:
    if module in GROUND:
        return "ground"
    if module == "creditrisk.cli":
        return "cli"
    if module.startswith("serving"):
        return "serving"
    if module.startswith("creditrisk.pipeline"):
        return "pipeline"
    if module.startswith("creditrisk.stages"):
        return "stages"
    if module.startswith("creditrisk.orchestration"):
        return "orchestration"
    if module in DOMAIN_MODULES or module.startswith(DOMAIN_PACKAGES) or module == "creditrisk":
        return "domain"
    raise AssertionError(f"{module} belongs to no layer: add it to one in this test")


ALLOWED = {
    "ground": {"ground"},
    "domain": {"ground", "domain"},
    "stages": {"ground", "domain", "stages"},
    "pipeline": {"ground", "domain", "stages", "pipeline"},
    "orchestration": {"ground", "domain", "pipeline", "orchestration"},
    "serving": {"ground", "domain", "serving"},
    "cli": {"ground", "domain", "stages", "pipeline", "orchestration", "serving", "cli"},
}


def test_every_module_is_in_a_layer_that_may_import_what_it_imports() -> None:
    wrong = [
        f"{module} ({_layer(module)}) imports {imported} ({_layer(imported)})"
        for module, imports in GRAPH.items()
        for imported in sorted(imports)
        if _layer(imported) not in ALLOWED[_layer(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_command_line_imports_the_serving_layer() -> None:
    importers = sorted(
        module
        for module, imports in GRAPH.items()
        if module.startswith("creditrisk") and any(i.startswith("serving") for i in imports)
    )
    assert importers == ["creditrisk.cli"]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by a depth-first search (one per strongly connected part)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "\n".join(" → ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_a_cycle() -> None:
    # The check itself must be able to fail.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert not _cycles({"a": {"b"}, "b": set()})


def test_training_and_the_model_format_do_not_import_each_other() -> None:
    assert "creditrisk.modeling.train" not in GRAPH["creditrisk.modeling.pd_model"]
    assert "creditrisk.modeling.pd_model" not in GRAPH["creditrisk.modeling.train"]
    for user in (
        "creditrisk.modeling.train",
        "creditrisk.modeling.pd_model",
        "creditrisk.scoring.scorer",
    ):
        assert "creditrisk.modeling.model" in GRAPH[user], user


_ENVIRONMENT = re.compile(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(|\bputenv\(")


@pytest.mark.parametrize("module", sorted(_modules()))
def test_only_settings_reads_the_environment(module: str) -> None:
    if module == "creditrisk.settings":
        return
    source = _modules()[module].read_text(encoding="utf-8")
    code_lines = [line for line in source.splitlines() if not line.lstrip().startswith("#")]
    hits = [line.strip() for line in code_lines if _ENVIRONMENT.search(line)]
    assert not hits, f"{module} reads the environment: {hits}"


def test_no_dynamic_imports_that_a_code_fingerprint_could_not_follow() -> None:
    """The runner imports the stage modules pipeline.yaml names; nothing else imports by a
    computed name (the fingerprint of a stage follows literal imports only)."""
    offenders = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                literal = node.args and isinstance(node.args[0], ast.Constant)
                if not literal and module != "creditrisk.pipeline.runner":
                    offenders.append(f"{module}:{node.lineno}")
    assert not offenders


def test_provenance_helpers_are_defined_once_on_the_ground_floor() -> None:
    for helper in ("file_sha256", "git_info", "to_json_value"):
        defined = [
            module
            for module, path in _modules().items()
            if re.search(rf"^def {helper}\(", path.read_text(encoding="utf-8"), re.MULTILINE)
        ]
        assert defined == ["creditrisk.provenance"], (helper, defined)


def test_one_settings_class_reads_the_creditrisk_prefix() -> None:
    """One Settings object (with sections); no other module declares settings of its own."""
    declaring = [
        module
        for module, path in _modules().items()
        if "SettingsConfigDict(" in path.read_text(encoding="utf-8")
    ]
    assert declaring == ["creditrisk.settings"]


def test_stage_entry_points_live_in_the_stage_layer() -> None:
    """Each notebook imports its stage from creditrisk.stages, and only from there."""
    import json

    for notebook in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        stage = notebook.stem.split("_", 1)[1]
        assert f"from creditrisk.stages import {stage}" in source, notebook.name
        assert not re.search(
            r"run_stage|run_train|run_evaluate|run_validate|run_register|run_monitor", source
        )
