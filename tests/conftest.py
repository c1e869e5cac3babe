"""Shared fixtures: a tiny synthetic snapshot generated once per test process, and workspaces."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from creditrisk.settings import Workspace

# Property tests: no wall-clock deadline (CI machines are shared), and in CI the same examples
# every run, so a red build is reproducible; locally, fresh examples keep searching.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

TINY_SEED = 7


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic snapshot (all eight Kaggle files); never modify it, copy it."""
    from creditrisk.data import synthetic

    out = tmp_path_factory.mktemp("tiny_raw")
    synthetic.generate(out, size="tiny", seed=TINY_SEED)
    return out


@pytest.fixture
def raw_copy(tiny_raw: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny snapshot that a test may damage."""
    target = tmp_path / "raw"
    shutil.copytree(tiny_raw, target)
    return target


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """An empty workspace, also exported as CREDITRISK_HOME."""
    home = tmp_path / "workspace"
    home.mkdir()
    monkeypatch.setenv("CREDITRISK_HOME", str(home))
    return Workspace(home)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real moto S3 server on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3's standard credential chain and endpoint at the moto server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server


KERNEL = "creditrisk"


@pytest.fixture(scope="session")
def kernel() -> str:
    """The Jupyter kernel papermill runs; the Makefile installs it before pytest (a missing
    kernel fails the tests that need it: `make test` must have registered it)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(
            f"Jupyter kernel {KERNEL!r} is not installed: run `make kernel` or `python -m "
            f"ipykernel install --sys-prefix --name {KERNEL} --display-name {KERNEL}`"
        )
    return KERNEL


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Spark session for every test marked ``spark`` (it takes 20–30 s to start).

    Two cores, few shuffle partitions (the test data are small), no web UI.
    """
    from creditrisk.settings import SparkSettings
    from creditrisk.spark.session import get_session

    settings = SparkSettings(
        master="local[2]",
        options={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"},
    )
    session = get_session(settings)
    yield session
    session.stop()
