"""The pipeline definition: ``pipeline.yaml``, typed.

Schema (every key except ``stages`` and a stage's ``name`` and ``notebook`` is optional)::

    kernel: creditrisk                 # Jupyter kernel papermill starts (default: creditrisk)
    stages:                            # run in this order; the order numbers the outputs
      - name: ingest                   # letters, digits, '_' and '-'; unique
        description: raw files → typed Parquet        # shown by tooling, not used by the runner
        notebook: notebooks/01_ingest.ipynb           # relative to the project root
        module: creditrisk.stages.ingest              # its Params must declare the parameters
        parameters: {source: "", size: small, seed: 42}  # the overridable parameters, defaults
        inputs: ["{source|data/raw}"]  # the data the stage reads; fingerprints decide re-runs
        outputs: [data/bronze, reports/ingestion_summary.json]  # what the stage must write
        skip_unchanged: true           # false: always run (effects outside declared files)

``parameters`` lists every parameter the pipeline may set; papermill injects them into the
notebook's ``parameters`` cell. An override that names no declared parameter is an error. Their
defaults are the documented policy: with ``module``, the runner checks them against the stage's
``Params`` (names and defaults) before anything runs, and a value that differs from them is
recorded as a deviation.

Code is not an input: the runner fingerprints every module the notebook imports (found by
reading the imports, :mod:`creditrisk.pipeline.code`), the SQL those packages ship and the
versions of the installed packages they use.

``inputs`` and ``outputs`` are paths relative to the workspace (``CREDITRISK_HOME``), or
absolute paths; an input may also be a URI such as ``s3://bucket/prefix``. A file is
fingerprinted by its content, a directory by its files' relative paths and contents. Entries
are templates:

- ``{name}`` is the stage's parameter ``name`` as executed (after overrides);
- ``{name|fallback}`` is the same, or ``fallback`` when the parameter is empty or null;
- ``{home}`` is the workspace root and ``{project}`` the project root.

An entry that renders to an empty string is dropped (an optional input). Outputs must be local
paths: the runner checks after every run that each declared output exists.

YAML is read with the safe loader, without YAML's implicit dates (``2024-01-01`` stays a
string, as papermill can only inject JSON-like values).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: Template fields every stage may use besides its own parameters.
RESERVED_FIELDS = ("home", "project")

_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}]*))?\}")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

StageName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]


class PipelineConfigError(ValueError):
    """``pipeline.yaml``, or the stage selection or overrides given to the runner, is invalid."""


class StageConfig(BaseModel):
    """One stage: a notebook, its parameters, and the files it reads and writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StageName
    notebook: str = Field(description="notebook path, relative to the project root")
    module: str | None = Field(
        default=None,
        description="the stage module whose Params declares the parameters, e.g. "
        "creditrisk.stages.ingest; the runner refuses parameters that disagree with it",
    )
    description: str = ""
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    skip_unchanged: bool = True

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, parameters: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for name in parameters:
            # papermill injects `name = value` into Python code.
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"{name!r} is not a valid Python variable name")
            if name in RESERVED_FIELDS:
                raise ValueError(f"{name!r} is reserved for path templates ({{{name}}})")
        return parameters

    @field_validator("inputs", "outputs")
    @classmethod
    def _template_fields(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        known = set(info.data.get("parameters", {})) | set(RESERVED_FIELDS)
        for position, entry in enumerate(entries):
            for match in _TEMPLATE_FIELD.finditer(entry):
                if match.group(1) not in known:
                    raise ValueError(
                        f"[{position}] {entry!r}: {{{match.group(1)}}} is not a parameter of "
                        f"this stage (known: {', '.join(sorted(known))})"
                    )
            if info.field_name == "outputs" and _URI.match(entry):
                raise ValueError(f"[{position}] {entry!r}: outputs must be local paths")
        return entries


class PipelineConfig(BaseModel):
    """The whole pipeline: the kernel and the stages in execution order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_root: Path = Field(description="set by the loader: the directory of pipeline.yaml")
    kernel: str = "creditrisk"
    stages: list[StageConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineConfig:
        names = [stage.name for stage in self.stages]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def stage(self, name: str) -> StageConfig:
        """The stage called ``name``.

        Raises:
            PipelineConfigError: No stage has that name.
        """
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise PipelineConfigError(
            f"unknown stage {name!r}; stages are: {', '.join(self.stage_names)}"
        )

    def position(self, name: str) -> int:
        """1-based position of a stage in the pipeline (numbers its outputs, ``01_ingest``)."""
        return self.stage_names.index(self.stage(name).name) + 1

    def notebook_path(self, stage: StageConfig) -> Path:
        """Absolute path of a stage's source notebook."""
        return (self.project_root / stage.notebook).resolve()


def load_pipeline_config(path: Path | str | None = None) -> PipelineConfig:
    """Read and validate ``pipeline.yaml``.

    Args:
        path: The YAML file; default ``pipeline.yaml`` in the project root. Its directory
            becomes the project root that notebook paths are relative to.

    Returns:
        The validated pipeline.

    Raises:
        PipelineConfigError: The file is missing, is not YAML, or does not match the schema;
            the message names the stage and field at fault.
    """
    if path is None:
        from creditrisk.settings import PROJECT_ROOT

        path = PROJECT_ROOT / "pipeline.yaml"
    path = Path(path).expanduser().resolve()
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineConfigError(f"pipeline file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise PipelineConfigError(f"{path}: expected a mapping with 'stages', got {raw!r:.60}")
    return parse_pipeline_config(raw, project_root=path.parent, source=str(path))


def parse_pipeline_config(
    raw: Mapping[str, Any], *, project_root: Path, source: str = "pipeline.yaml"
) -> PipelineConfig:
    """Validate an already-parsed pipeline mapping.

    Args:
        raw: The mapping as read from YAML.
        project_root: Directory that notebook paths are relative to.
        source: Name of the origin, for error messages.

    Returns:
        The validated pipeline.

    Raises:
        PipelineConfigError: The mapping does not match the schema.
    """
    try:
        return PipelineConfig.model_validate({**raw, "project_root": project_root})
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(error, raw)}" for error in exc.errors())
        raise PipelineConfigError(f"{source} is invalid:\n{problems}") from None


def _describe(error: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    """One validation error as 'stage X, field Y: message'."""
    location = list(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if len(location) >= 2 and location[0] == "stages" and isinstance(location[1], int):
        index = location[1]
        stages = raw.get("stages")
        entry = stages[index] if isinstance(stages, list) and index < len(stages) else None
        name = entry.get("name") if isinstance(entry, Mapping) else None
        where = f"stage {name!r}" if name else f"stages[{index}]"
        field = ".".join(str(part) for part in location[2:])
        return f"{where}, field {field!r}: {message}" if field else f"{where}: {message}"
    field = ".".join(str(part) for part in location)
    return f"field {field!r}: {message}" if field else message


def render_template(
    template: str, parameters: Mapping[str, object], *, home: Path, project: Path
) -> str:
    """Fill an input/output template with a stage's parameters.

    Args:
        template: E.g. ``"{source|data/raw}"`` or ``"data/bronze"``.
        parameters: The stage's parameters as executed.
        home: Workspace root, for ``{home}``.
        project: Project root, for ``{project}``.

    Returns:
        The rendered path or URI; empty when an optional input is not set.
    """
    fields = {**parameters, "home": home.as_posix(), "project": project.as_posix()}

    def fill(match: re.Match[str]) -> str:
        value = fields[match.group(1)]
        if value is None or value == "":
            return match.group(2) or ""
        return str(value)

    return _TEMPLATE_FIELD.sub(fill, template).strip()


def is_uri(location: str) -> bool:
    """Whether an input is a URI (``s3://…``) rather than a local path."""
    return bool(_URI.match(location))


class _PlainLoader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: dates stay strings, as parameters must be JSON."""


_PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """Parse YAML text with the safe loader, keeping dates as strings."""
    return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader subclass: no arbitrary objects
