"""Provenance on the ground floor: content hashes, the git commit, the environment, JSON values.

Everything an audit record says about *where a result came from* is computed here, once, so the
run record, the MLflow tags, the lineage and the deploy manifest cannot disagree on how a file
was hashed or which commit or lock file was in use. Nothing here imports the rest of the
package; every layer may import it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import getpass
import hashlib
import importlib.metadata
import math
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel

JsonValue = None | bool | int | float | str | list[Any] | dict[str, Any]

_CHUNK = 1024 * 1024

#: The lock files the environment is installed from (``make install``, ``make lock``).
LOCK_FILES = ("requirements.lock", "requirements-dev.lock")

#: Distributions whose versions every run record lists (those installed).
RECORDED_PACKAGES = (
    "creditrisk",
    "papermill",
    "nbconvert",
    "nbformat",
    "nbclient",
    "ipykernel",
    "scrapbook",
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "scikit-learn",
    "xgboost",
    "mlflow",
    "evidently",
)


def file_sha256(path: Path | str) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """SHA-256 hex digest of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------------------------------------
# Git
# ---------------------------------------------------------------------------------------------


class GitInfo(BaseModel):
    """The project's git commit; ``commit`` is None outside git or before the first commit."""

    commit: str | None = None
    dirty: bool | None = None  # tracked files modified since the commit


def git_info(root: Path) -> GitInfo:
    """The commit checked out in ``root`` and whether tracked files differ from it."""
    commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    if commit is None:
        return GitInfo()
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return GitInfo(commit=commit, dirty=None if status is None else bool(status))


def _git(root: Path, *args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git on this machine
    return completed.stdout.strip() if completed.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------------


def current_user() -> str:
    """The login name; containers without a passwd entry fall back to the uid."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones are left out)."""
    versions = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def environment_info() -> dict[str, Any]:
    """User, host, Python, platform and the versions of the recorded packages of this process."""
    return {
        "user": current_user(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
    }


class LockInfo(BaseModel):
    """The lock files of a checkout and whether this interpreter's packages match them.

    Attributes:
        files: Lock file name → SHA-256 of its bytes (files that exist).
        pins: Distributions the dev lock pins (the environment ``make install`` builds).
        mismatches: ``name: installed X, locked Y`` for every pinned distribution whose installed
            version differs (or that is not installed); empty when the environment is the lock.
    """

    files: dict[str, str] = {}
    pins: int = 0
    mismatches: list[str] = []

    @property
    def sha256(self) -> str | None:
        """The hash that names the environment: the dev lock's (what ``make`` installs)."""
        return self.files.get(LOCK_FILES[-1]) or self.files.get(LOCK_FILES[0])

    @property
    def matches(self) -> bool | None:
        """Whether the installed packages are the locked ones (None without a lock file)."""
        return None if not self.files else not self.mismatches


def lock_info(root: Path) -> LockInfo:
    """Hashes of the checkout's lock files and the installed packages checked against them.

    Args:
        root: The project root holding ``requirements.lock`` / ``requirements-dev.lock``.
    """
    files = {name: file_sha256(root / name) for name in LOCK_FILES if (root / name).is_file()}
    if not files:
        return LockInfo()
    lock = root / (LOCK_FILES[-1] if LOCK_FILES[-1] in files else LOCK_FILES[0])
    pins = read_lock_pins(lock)
    mismatches = []
    for name, locked in sorted(pins.items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            mismatches.append(f"{name}: not installed, locked {locked}")
            continue
        if _normalise_version(installed) != _normalise_version(locked):
            mismatches.append(f"{name}: installed {installed}, locked {locked}")
    return LockInfo(files=files, pins=len(pins), mismatches=mismatches)


def read_lock_pins(path: Path) -> dict[str, str]:
    """``name==version`` pins of a pip/uv requirements lock that apply to this interpreter.

    Hashes and comments are ignored; a pin whose environment marker does not hold here
    (``; sys_platform == 'win32'``) is left out. Names are normalised (PEP 503).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip().removesuffix("\\").strip()
        if not line or line.startswith("-") or "==" not in line:
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if versions:
            pins[normalise_name(requirement.name)] = versions[0]
    return pins


def normalise_name(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``Scikit_Learn`` → ``scikit-learn``."""
    out = []
    previous_separator = False
    for char in name.lower():
        if char in "-_.":
            if not previous_separator:
                out.append("-")
            previous_separator = True
        else:
            out.append(char)
            previous_separator = False
    return "".join(out)


def _normalise_version(version: str) -> str:
    # Local version labels (+cpu) and a trailing .0 are written either way by different tools.
    return version.split("+", 1)[0].strip()


# ---------------------------------------------------------------------------------------------
# JSON values
# ---------------------------------------------------------------------------------------------


def to_json_value(value: object) -> JsonValue:
    """Convert a value to plain JSON types (None, bool, int, float, str, list, dict).

    Args:
        value: A scalar, container, numpy/pandas object, path, date, enum, dataclass or
            pydantic model.

    Returns:
        The same information as plain JSON; non-finite floats become ``None``.

    Raises:
        TypeError: The value has no JSON representation.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or bool-like subclass becomes a plain int
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_json_value(value.value)
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((to_json_value(item) for item in value), key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_value(dataclasses.asdict(value))
    return _convert_library_value(value)


def _convert_library_value(value: object) -> JsonValue:
    """Convert numpy, pandas and pydantic values; TypeError for anything else."""
    # Only libraries the caller already imported can have produced the value, so checking
    # sys.modules keeps this module free of heavy imports.
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if value is pandas.NA or value is pandas.NaT:
            return None
        if isinstance(value, pandas.Timestamp | pandas.Timedelta):
            return value.isoformat()
        if isinstance(value, pandas.DataFrame):
            return to_json_value(value.to_dict(orient="records"))
        if isinstance(value, pandas.Series):
            return to_json_value(value.to_dict())
        if isinstance(value, pandas.Index):
            return to_json_value(value.to_list())
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.datetime64 | numpy.timedelta64):
            return str(value)
        if isinstance(value, numpy.generic | numpy.ndarray):
            return to_json_value(value.tolist())
    if isinstance(value, BaseModel):
        return to_json_value(value.model_dump(mode="json"))
    raise TypeError(f"cannot record a value of type {type(value).__name__} as JSON: {value!r:.80}")
