"""One typed settings object, the workspace layout, and the only reads of the environment.

Every path the product writes lives under one workspace, ``CREDITRISK_HOME`` (default: the
repository root), so tests and several users can run isolated workspaces side by side.
Settings come from environment variables; nothing is read at import time, and no other module
of ``creditrisk`` reads ``os.environ``: they receive a :class:`Settings` (or a run context built
from one). The sections:

==================  =========================  ============================================
section             environment                what
==================  =========================  ============================================
(top level)         ``CREDITRISK_*``           workspace, synthetic size and seed, kernel,
                                               the pipeline run id (set by the runner), the
                                               registered model's name (``MODEL_NAME``),
                                               the feature engine (``ENGINE``)
``mlflow``          ``MLFLOW_TRACKING_URI``    a tracking server instead of the workspace's
                                               ``mlflow.db`` (the registry lives in it)
``serving``         ``CREDITRISK_*``           the REST service (``API_KEY``, ``MODEL_URI``,
                                               ``MAX_APPLICATIONS``, ``MAX_BATCH``, …)
``cloudwatch``      ``CREDITRISK_CLOUDWATCH_*``  publishing the monitor's metrics
``spark``           ``CREDITRISK_SPARK_*``,    the Spark engine's session (``ENGINE=spark``):
                    ``SPARK_REMOTE``           master, Spark Connect server, options
==================  =========================  ============================================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The source tree of this package's repository (notebooks, pipeline.yaml, SQL, lock files).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

SizeName = Literal["tiny", "small", "full"]

#: The registered model a workspace trains, registers and serves (``CREDITRISK_MODEL_NAME``).
DEFAULT_MODEL_NAME = "CreditRiskPD"

#: The registry URI serving loads by default (``creditrisk.registry.champion_uri()``).
DEFAULT_MODEL_URI = f"models:/{DEFAULT_MODEL_NAME}@champion"

#: Environment variables through which the runner tells a stage kernel which run it belongs to.
RUN_ID_VARIABLE = "CREDITRISK_RUN_ID"
HOME_VARIABLE = "CREDITRISK_HOME"


def _default_home() -> Path:
    # An installed (non-editable) package has no pipeline.yaml beside it: use the working directory.
    return PROJECT_ROOT if (PROJECT_ROOT / "pipeline.yaml").exists() else Path.cwd()


# ---------------------------------------------------------------------------------------------
# CloudWatch's limits, checked when the settings are read (PutMetricData, Dimension)
# ---------------------------------------------------------------------------------------------

MAX_DIMENSIONS = 30
MAX_NAMESPACE_LENGTH = 255
MAX_DIMENSION_NAME_LENGTH = 255
MAX_DIMENSION_VALUE_LENGTH = 1024


def check_cloudwatch_text(
    text: str, what: str, max_length: int, *, leading_colon: bool = True
) -> None:
    """Raise ``ValueError`` unless CloudWatch accepts ``text`` as a name or value."""
    # CloudWatch takes printable ASCII only, at least one non-blank character.
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, got {text!r}")
    if not text.strip():
        raise ValueError(f"{what} must contain a non-whitespace character, got {text!r}")
    if len(text) > max_length:
        raise ValueError(f"{what} must be at most {max_length} characters, got {len(text)}")
    if not text.isascii() or not text.isprintable():
        raise ValueError(f"{what} must be printable ASCII, got {text!r}")
    if not leading_colon and text.startswith(":"):
        raise ValueError(f"{what} must not start with ':', got {text!r}")


def check_dimensions(dimensions: Mapping[str, str]) -> None:
    """Raise ``ValueError`` unless CloudWatch would accept ``dimensions`` on a metric."""
    if len(dimensions) > MAX_DIMENSIONS:
        raise ValueError(f"at most {MAX_DIMENSIONS} dimensions per metric, got {len(dimensions)}")
    for name, value in dimensions.items():
        check_cloudwatch_text(
            name, "dimension name", MAX_DIMENSION_NAME_LENGTH, leading_colon=False
        )
        check_cloudwatch_text(value, f"dimension {name!r} value", MAX_DIMENSION_VALUE_LENGTH)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


class MlflowSettings(BaseSettings):
    """Where MLflow tracks and registers (the registry is the tracking store's): the
    deployment's choice, never set by the product."""

    model_config = SettingsConfigDict(extra="ignore")

    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "tracking_uri"),
        description="a tracking server; default the workspace's sqlite mlflow.db",
    )


class ServingSettings(BaseSettings):
    """The REST service (``creditrisk serve``), from ``CREDITRISK_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="CREDITRISK_", extra="ignore")

    api_key: SecretStr | None = Field(
        default=None, description="when set, every endpoint but /health and /ready needs X-API-Key"
    )
    max_applications: int = Field(default=100, ge=1, description="more per request → 413")
    max_body_bytes: int = Field(default=5_000_000, ge=1, description="larger body → 413")
    model_uri: str = Field(
        default=DEFAULT_MODEL_URI,
        description="the registry URI served; default the champion of CREDITRISK_MODEL_NAME",
    )
    tracking_uri: str | None = Field(
        default=None, description="the registry to load from; default the workspace's store"
    )
    max_batch: int = Field(default=8, ge=1, description="most requests per feature execution")
    scoring_threads: int = Field(default=1, ge=1, description="threads that score batches")
    feature_process: bool = Field(
        default=True, description="run the feature SQL in a child process of its own"
    )
    reasons: int = Field(default=4, ge=0, description="adverse reason codes per applicant")


EngineName = Literal["duckdb", "spark"]


class SparkSettings(BaseSettings):
    """The Spark session of the Spark engine (``CREDITRISK_ENGINE=spark``), from
    ``CREDITRISK_SPARK_*`` and Spark's own ``SPARK_REMOTE``.

    ``CREDITRISK_SPARK_OPTIONS`` is JSON, e.g. ``{"spark.driver.memory": "8g"}``.
    """

    model_config = SettingsConfigDict(env_prefix="CREDITRISK_SPARK_", extra="ignore")

    master: str = Field(
        default="local[*]",
        description="master URL: local[N], spark://host:7077, yarn, k8s://…; unused with remote",
    )
    remote: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SPARK_REMOTE", "remote"),
        description="a Spark Connect server, sc://host:15002; wins over master",
    )
    app_name: str = Field(default="creditrisk", description="the Spark application's name")
    java_home: str | None = Field(
        default=None,
        validation_alias=AliasChoices("JAVA_HOME", "java_home"),
        description="the Java 17 a local session starts; default the java on PATH",
    )
    options: dict[str, str] = Field(
        default_factory=dict, description="extra spark.* options for the session (name → value)"
    )

    @field_validator("options")
    @classmethod
    def _options_are_spark_options(cls, options: dict[str, str]) -> dict[str, str]:
        wrong = sorted(name for name in options if not name.startswith("spark."))
        if wrong:
            raise ValueError(f"Spark options must be named spark.*: {wrong}")
        return options

    @property
    def target(self) -> str:
        """Where the session runs: the Connect server when set, else the master."""
        return self.remote or self.master


class CloudWatchSettings(BaseSettings):
    """Where and how to publish the monitor's metrics, from ``CREDITRISK_CLOUDWATCH_*``.

    ``CREDITRISK_CLOUDWATCH_DIMENSIONS`` is JSON, e.g.
    ``{"Model": "CreditRiskPD", "Environment": "prod"}``.
    """

    model_config = SettingsConfigDict(env_prefix="CREDITRISK_CLOUDWATCH_", extra="ignore")

    enabled: bool = Field(default=False, description="publish monitor metrics to CloudWatch")
    namespace: str = Field(default="CreditRisk/PD", description="CloudWatch namespace")
    dimensions: dict[str, str] = Field(
        default_factory=lambda: {"Model": "CreditRiskPD"},
        description="dimensions on every metric (name → value)",
    )
    region: str | None = Field(
        default=None, description="AWS region (default: boto3's chain, e.g. AWS_DEFAULT_REGION)"
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="connect and read timeout of each request, in seconds"
    )
    max_attempts: int = Field(
        default=3, ge=1, description="attempts per request, the first included"
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_is_ours(cls, namespace: str) -> str:
        check_cloudwatch_text(namespace, "namespace", MAX_NAMESPACE_LENGTH, leading_colon=False)
        if namespace.startswith("AWS/"):
            raise ValueError(f"namespace {namespace!r}: 'AWS/' is reserved for AWS services")
        return namespace

    @field_validator("dimensions")
    @classmethod
    def _dimensions_are_valid(cls, dimensions: dict[str, str]) -> dict[str, str]:
        check_dimensions(dimensions)
        return dimensions


class Settings(BaseSettings):
    """Every setting of the product, read from the environment when constructed."""

    model_config = SettingsConfigDict(env_prefix="CREDITRISK_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="workspace root")
    seed: int = Field(default=42, description="seed of the synthetic generator and splits")
    size: str = Field(default="small", description="synthetic size: tiny, small, full or a count")
    kernel_name: str = Field(default="creditrisk", description="Jupyter kernel used by papermill")
    run_id: str | None = Field(
        default=None,
        description="the pipeline run a stage kernel belongs to; set by the runner only "
        "(without it a stage notebook runs in interactive mode)",
    )
    model_name: str = Field(
        default=DEFAULT_MODEL_NAME,
        description="the registered model this workspace registers, promotes and serves; one "
        "per workspace when several share a tracking server (their aliases would collide)",
    )
    engine: EngineName = Field(
        default="duckdb",
        description="feature engine: duckdb (embedded, one machine) or spark (see spark)",
    )
    spark: SparkSettings = Field(default_factory=SparkSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    cloudwatch: CloudWatchSettings = Field(default_factory=CloudWatchSettings)

    @field_validator("model_name")
    @classmethod
    def _model_name_fits_a_registry_uri(cls, name: str) -> str:
        # MLflow refuses '/' and ':' in a name; '@' would end the name in models:/<name>@alias.
        if not name.strip() or name != name.strip() or any(c in name for c in "/:@"):
            raise ValueError(
                f"model name {name!r}: non-blank, no surrounding spaces, no '/', ':' or '@'"
            )
        return name

    @model_validator(mode="after")
    def _serve_this_workspace_champion(self) -> Settings:
        # Serving follows the workspace's model unless CREDITRISK_MODEL_URI says otherwise.
        if "model_uri" not in self.serving.model_fields_set:
            champion = f"models:/{self.model_name}@champion"
            self.serving = self.serving.model_copy(update={"model_uri": champion})
        return self

    @cached_property
    def workspace(self) -> Workspace:
        return Workspace(self.home)

    @property
    def home_is_explicit(self) -> bool:
        """Whether ``CREDITRISK_HOME`` (or ``home=``) chose the workspace, not the default."""
        return "home" in self.model_fields_set


class Workspace:
    """Paths inside one workspace; creating a Workspace touches nothing on disk."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser().resolve()

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def raw(self) -> Path:
        """Default input: Kaggle-format CSVs (synthetic ones are generated here on demand)."""
        return self.data / "raw"

    @property
    def bronze(self) -> Path:
        """Typed Parquet copies of the raw tables, one file per table."""
        return self.data / "bronze"

    @property
    def features(self) -> Path:
        return self.data / "features"

    @property
    def feature_store(self) -> Path:
        return self.features / "feature_store.parquet"

    @property
    def splits(self) -> Path:
        return self.data / "splits"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def scratch(self) -> Path:
        """Where interactive notebook runs write (never read by the pipeline)."""
        return self.home / "scratch"

    @property
    def ingestion_summary(self) -> Path:
        return self.reports / "ingestion_summary.json"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def lock_file(self) -> Path:
        return self.home / ".creditrisk.lock"

    def __repr__(self) -> str:
        return f"Workspace({str(self.home)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.home == self.home

    def __hash__(self) -> int:
        return hash(self.home)


def get_settings(**overrides: object) -> Settings:
    """Fresh settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The environment of this process and of the processes it starts
# ---------------------------------------------------------------------------------------------


@contextmanager
def scoped_environment(
    variables: Mapping[str, str] | None = None, *, keep: Iterable[str] = ()
) -> Iterator[None]:
    """Set ``variables`` for the block; afterwards they, and those named in ``keep`` (which the
    block may change, e.g. libraries that mirror their settings into the environment), are put
    back as they were: set to the old value, or absent.
    """
    names = {*(variables or {}), *keep}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(variables or {})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def default_environment(name: str, value: str) -> None:
    """Set a variable a library reads (e.g. Evidently's ``DO_NOT_TRACK``) unless the user did."""
    os.environ.setdefault(name, value)


def child_environment(
    set_variables: Mapping[str, str] | None = None, *, remove: Iterable[str] = ()
) -> dict[str, str]:
    """The environment for a process this one starts: this one's, changed as asked."""
    environment = {**os.environ, **(set_variables or {})}
    for name in remove:
        environment.pop(name, None)
    return environment
