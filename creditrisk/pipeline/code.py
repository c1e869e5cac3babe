"""Code fingerprints: everything a stage's notebook runs, found by reading it, not listed by hand.

A stage may be skipped only if the code it would run is the code that produced its outputs. Its
fingerprint covers

* **modules** — every first-party module in the import closure of its notebook: the notebook's
  own imports, then each module's imports, transitively. Imports are read with ``ast`` from the
  source, *including imports inside functions* (the lazy imports the library uses to keep start
  up cheap are still code the stage runs) and ``importlib.import_module`` with a literal name.
  A package's ``__init__`` counts for every module imported from it. First party is the
  ``creditrisk`` package and any top-level package in the project root (``serving``);
* **data files** — the non-Python files shipped in the packages of the closure: the feature SQL
  (``creditrisk/features/sql/*.sql``), the reference profile CSVs;
* **distributions** — the installed version of every third-party distribution the closure
  imports, and of everything those require (their requirement closure), plus the Python
  version: a new xgboost or duckdb re-runs the stages that use it.

The record (:class:`CodeFingerprint`) lists each file with its hash, paths relative to the
project root, so an auditor can see exactly what a skip relied on.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from creditrisk.provenance import file_sha256, normalise_name

#: Top-level packages that are always first party (found wherever they are installed).
FIRST_PARTY = ("creditrisk",)

_SKIPPED_DATA = {".py", ".pyc", ".pyo", ".pyi"}


class CodeFingerprint(BaseModel):
    """What a stage's code was: its files, its packages, and one digest over both."""

    digest: str
    python: str
    files: dict[str, str]
    distributions: dict[str, str | None]

    def same_as(self, other: CodeFingerprint | None) -> bool:
        return other is not None and other.digest == self.digest

    def changes(self, other: CodeFingerprint | None) -> list[str]:
        """What differs from an earlier fingerprint, in words (for the runner's message)."""
        if other is None:
            return ["no earlier code fingerprint"]
        found = []
        for path in sorted(set(self.files) | set(other.files)):
            if self.files.get(path) != other.files.get(path):
                state = (
                    "added"
                    if path not in other.files
                    else "removed"
                    if path not in self.files
                    else "changed"
                )
                found.append(f"{path} {state}")
        for name in sorted(set(self.distributions) | set(other.distributions)):
            before, now = other.distributions.get(name), self.distributions.get(name)
            if before != now:
                found.append(f"{name} {before} → {now}")
        if self.python != other.python:
            found.append(f"python {other.python} → {self.python}")
        return found


@dataclass
class Closure:
    """The first-party modules a notebook reaches and the third-party names they import."""

    roots: dict[str, Path]
    modules: dict[str, Path] = field(default_factory=dict)
    third_party: set[str] = field(default_factory=set)
    packages: dict[str, Path] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading imports
# ---------------------------------------------------------------------------------------------


def imported_names(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Absolute module names a piece of Python source imports, wherever in it.

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a module or a name; the
    caller keeps what resolves to a module). Relative imports are resolved against ``module``.
    """
    tree = ast.parse(source)
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                keep = len(parts) - (node.level - 1)
                anchor = ".".join(parts[: max(keep, 0)])
                base = f"{anchor}.{base}" if base and anchor else (anchor or base)
            if base:
                names.add(base)
            for alias in node.names:
                if alias.name != "*":
                    names.add(f"{base}.{alias.name}" if base else alias.name)
        elif isinstance(node, ast.Call) and _is_import_module(node.func):
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                names.add(argument.value)
    return names


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id == "import_module"


def notebook_source(path: Path) -> str:
    """The code cells of a notebook as one Python source (IPython magics dropped)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        lines = [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
        cells.append("\n".join(lines))
    return "\n\n".join(cells)


# ---------------------------------------------------------------------------------------------
# Resolving modules to files
# ---------------------------------------------------------------------------------------------


def first_party_roots(project_root: Path) -> dict[str, Path]:
    """Top-level first-party package → its directory.

    ``creditrisk`` wherever it is imported from, and every package directly in the project root
    (a directory with ``__init__.py``), e.g. ``serving``.
    """
    roots: dict[str, Path] = {}
    if project_root.is_dir():
        for child in sorted(project_root.iterdir()):
            if (child / "__init__.py").is_file() and child.name.isidentifier():
                roots[child.name] = child.resolve()
    for name in FIRST_PARTY:
        if name not in roots:
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                roots[name] = Path(next(iter(spec.submodule_search_locations))).resolve()
    return roots


def module_file(name: str, roots: Mapping[str, Path]) -> tuple[Path, bool] | None:
    """(file, is a package) of a first-party module, found on disk without importing it."""
    top, _, rest = name.partition(".")
    root = roots.get(top)
    if root is None:
        return None
    base = root.joinpath(*rest.split(".")) if rest else root
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    candidate = base.with_suffix(".py")
    if rest and candidate.is_file():
        return candidate, False
    return None


def import_closure(notebook: Path, project_root: Path) -> Closure:
    """Every first-party module the notebook's code reaches, and the third-party imports."""
    roots = first_party_roots(project_root)
    closure = Closure(roots)
    pending = list(imported_names(notebook_source(notebook)))
    while pending:
        name = pending.pop()
        if not name or name in closure.modules:
            continue
        top = name.partition(".")[0]
        if top not in roots:
            if top not in sys.stdlib_module_names and top != "__future__":
                closure.third_party.add(top)
            continue
        found = module_file(name, roots)
        if found is None:
            continue  # ``from package import name`` where name is not a module
        path, is_package = found
        closure.modules[name] = path
        if is_package:
            closure.packages[name] = path.parent
        # Importing a.b.c executes a/__init__ and a/b/__init__ first.
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(
            imported_names(path.read_text(encoding="utf-8"), name, is_package=is_package)
        )
    return closure


def package_data_files(directory: Path) -> list[Path]:
    """Non-Python files a package ships (its subpackages' are theirs)."""
    files = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.suffix in _SKIPPED_DATA or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(directory)
        # A file in a subpackage belongs to that subpackage.
        inside_subpackage = any(
            (directory.joinpath(*relative.parts[: i + 1]) / "__init__.py").is_file()
            for i in range(len(relative.parts) - 1)
        )
        if not inside_subpackage:
            files.append(path)
    return files


# ---------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------


def distribution_versions(
    top_level_names: Iterable[str],
    first_party: Iterable[str] = FIRST_PARTY,
    providers: Mapping[str, list[str]] | None = None,
) -> dict[str, str | None]:
    """Installed distributions providing these import names, and their requirement closure.

    Args:
        top_level_names: Third-party import names (``sklearn``, ``yaml``, ``xgboost``, …).
        first_party: Distributions left out (the project's own, fingerprinted by file).
        providers: ``importlib.metadata.packages_distributions()`` when the caller has it
            (reading it scans every installed distribution); default read now.

    Returns:
        Normalised distribution name → installed version (None when a name imported is not
        installed, e.g. an optional integration).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    own = {normalise_name(name) for name in first_party}
    providers = providers or importlib.metadata.packages_distributions()
    pending: list[str] = []
    versions: dict[str, str | None] = {}
    for name in sorted(set(top_level_names)):
        dists = providers.get(name)
        if not dists:
            versions[normalise_name(name)] = None
        pending.extend(dists or [])
    while pending:
        dist = normalise_name(pending.pop())
        if dist in versions or dist in own:
            continue
        try:
            versions[dist] = importlib.metadata.version(dist)
            requires = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
            continue
        for text in requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return dict(sorted(versions.items()))


# ---------------------------------------------------------------------------------------------
# The fingerprint
# ---------------------------------------------------------------------------------------------


def _display_path(path: Path, project_root: Path, roots: Mapping[str, Path]) -> str:
    try:
        return path.resolve().relative_to(project_root.resolve()).as_posix()
    except ValueError:
        for root in roots.values():
            try:
                return path.resolve().relative_to(root.parent).as_posix()
            except ValueError:
                continue
    return path.as_posix()


def code_fingerprint(
    notebook: Path,
    project_root: Path,
    *,
    sha256: Callable[[Path], str] = file_sha256,
    providers: Mapping[str, list[str]] | None = None,
) -> CodeFingerprint:
    """The fingerprint of the code a notebook runs.

    Args:
        notebook: The stage's notebook.
        project_root: The checkout (paths are recorded relative to it).
        sha256: Hashes a file (the runner passes its hash cache's); default a plain read.
        providers: Import name → distributions, read once by the caller for several stages.
    """
    closure = import_closure(notebook, project_root)
    paths = set(closure.modules.values())
    for directory in closure.packages.values():
        paths.update(package_data_files(directory))
    files = {_display_path(path, project_root, closure.roots): sha256(path) for path in paths}
    dists = distribution_versions(closure.third_party, providers=providers)
    python = sys.version.split()[0]
    digest = hashlib.sha256(
        json.dumps(
            {
                "files": sorted(files.items()),
                "distributions": sorted(dists.items()),
                "python": python,
            },
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    return CodeFingerprint(
        digest=digest, python=python, files=dict(sorted(files.items())), distributions=dists
    )
