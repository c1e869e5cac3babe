"""Typed settings and workspace layout.

Every path the product writes lives under one workspace, ``CREDITRISK_HOME`` (default: the
repository root), so tests and several users can run isolated workspaces side by side.
Settings come from ``CREDITRISK_*`` environment variables; nothing is read at import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The source tree of this package's repository (notebooks, pipeline.yaml, SQL).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

SizeName = Literal["tiny", "small", "full"]


def _default_home() -> Path:
    # An installed (non-editable) package has no pipeline.yaml beside it: use the working directory.
    return PROJECT_ROOT if (PROJECT_ROOT / "pipeline.yaml").exists() else Path.cwd()


class Settings(BaseSettings):
    """Process-wide settings, read from ``CREDITRISK_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CREDITRISK_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="workspace root")
    seed: int = Field(default=42, description="seed of the synthetic generator and splits")
    size: str = Field(default="small", description="synthetic size: tiny, small, full or a count")
    kernel_name: str = Field(default="creditrisk", description="Jupyter kernel used by papermill")

    @cached_property
    def workspace(self) -> Workspace:
        return Workspace(self.home)


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
    def ingestion_summary(self) -> Path:
        return self.reports / "ingestion_summary.json"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def lock_file(self) -> Path:
        return self.home / ".creditrisk.lock"

    def __repr__(self) -> str:
        return f"Workspace({str(self.home)!r})"


def get_settings(**overrides: object) -> Settings:
    """Fresh settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]


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
