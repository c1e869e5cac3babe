"""SIGKILL of a real pipeline run, in ingest's conversion, in train and in register.

An operator's worst case: ``kill -9`` of the run's process group at an unlucky moment. After
each kill nothing under ``reports/``, ``data/`` or in the registry changes any more (the stage
kernel died with its runner), the workspace lock is free, the champion loads, and the
promotion ledger is valid JSON lines that agree with the registry's aliases. The next run
succeeds and records the killed one as interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from real_runs import TINY_POLICY, assert_locks_free, start_run

from creditrisk import registry, tracking
from creditrisk.pipeline.records import RunRecord
from creditrisk.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def creditrisk_run(home: Path, run_id: str, *args: str) -> subprocess.Popen[str]:
    """``creditrisk run`` of the tiny pipeline to register, in its own process group."""
    flags = [arg for param in TINY_POLICY for arg in ("-p", param)]
    return start_run(
        home,
        "--size",
        "tiny",
        "--run-id",
        run_id,
        "--to",
        "register",
        *flags,
        *args,
        cwd=PROJECT_ROOT,
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return output


def kill_when(process: subprocess.Popen[str], moment: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 600
    while not moment():
        if process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def production(home: Path) -> dict[str, Any]:
    """Every file under reports/ and data/ (hash), and the registry's versions and aliases."""
    files = {
        str(path.relative_to(home)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in ("reports", "data")
        for path in sorted((home / folder).rglob("*"))
        if path.is_file()
    }
    client = registry.registry_client(tracking.sqlite_uri(home / "mlflow.db"))
    name = registry.DEFAULT_MODEL_NAME
    versions = {
        v.version: (v.run_id, dict(sorted(v.tags.items())))
        for v in client.search_model_versions(f"name = '{name}'")
    }
    return {
        "files": files,
        "versions": versions,
        "aliases": registry.aliases(tracking_uri=tracking.sqlite_uri(home / "mlflow.db")),
    }


def assert_settled(home: Path) -> dict[str, Any]:
    """After a kill: nothing moves, the locks are free, champion and ledger agree."""
    first = production(home)
    time.sleep(1.5)
    assert production(home) == first, "something still writes after the kill"
    assert_locks_free(home)
    uri = tracking.sqlite_uri(home / "mlflow.db")
    ledger_file = home / "reports" / registry.LEDGER_FILE
    lines = ledger_file.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line whole
    ledger = registry.read_ledger(ledger_file)
    champions = registry.champion_history(ledger)
    assert champions and first["aliases"]["champion"] == champions[-1]
    champion = registry.current_champion(tracking_uri=uri)
    assert champion is not None
    model = tracking.load_trained(f"models:/{registry.DEFAULT_MODEL_NAME}@champion", uri)
    assert model is not None
    return first


def record(home: Path, run_id: str) -> RunRecord:
    return RunRecord.read(home / "runs" / run_id / "run.json")


def stage_running(home: Path, run_id: str, stage: str) -> Callable[[], bool]:
    path = home / "runs" / run_id / "run.json"

    def moment() -> bool:
        try:
            return RunRecord.read(path).stage(stage).status == "running"
        except (OSError, ValueError):
            return False

    return moment


def test_sigkill_in_ingest_train_and_register_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    finish(creditrisk_run(home, "base"))
    before = production(home)
    assert before["aliases"]["champion"] == "1"

    # 1. In ingest's conversion: the new bronze is being written in its staging folder.
    run = creditrisk_run(home, "killed-in-ingest", "--force")
    kill_when(
        run,
        lambda: any((home / "data").glob(".ingest-*/bronze/*.parquet")),
        "ingest to write its staging bronze",
    )
    settled = assert_settled(home)
    published = {
        name: digest for name, digest in settled["files"].items() if "/.ingest-" not in name
    }
    assert published == before["files"]  # bronze and every report as before; staging aside
    assert len(published) < len(settled["files"])  # it was killed while staging
    assert settled["versions"] == before["versions"]

    # 2. In train (the next run first recovers the killed one).
    run = creditrisk_run(home, "killed-in-train", "--force", "--from", "train")
    running = stage_running(home, "killed-in-train", "train")
    kill_when(run, lambda: running() and time.sleep(4) is None, "train to be under way")
    settled = assert_settled(home)
    assert settled["aliases"] == before["aliases"]
    assert not list((home / "data").glob(".ingest-*")), "the killed ingest's staging remains"

    # 3. In register, the moment after the ledger line of a new champion (a new cut-off).
    ledger = home / "reports" / registry.LEDGER_FILE
    lines = len(ledger.read_text().splitlines())
    run = creditrisk_run(
        home, "killed-in-register", "--from", "evaluate", "-p", "evaluate.margin=0.11"
    )
    kill_when(
        run,
        lambda: len(ledger.read_text().splitlines()) > lines + 1,  # registered, then promoted
        "register to append the promotion to the ledger",
    )
    settled = assert_settled(home)
    assert settled["aliases"]["champion"] == "2"

    # The next run succeeds and says what it found.
    output = finish(
        creditrisk_run(home, "after", "--from", "evaluate", "-p", "evaluate.margin=0.11")
    )
    for killed, stage in (
        ("killed-in-ingest", "ingest"),
        ("killed-in-train", "train"),
        ("killed-in-register", "register"),
    ):
        stale = record(home, killed)
        assert stale.status == "interrupted", killed
        assert stale.stage(stage).status == "interrupted", killed
        assert stale.interruption is not None
    assert record(home, "killed-in-train").interruption.noticed_by == "killed-in-register"
    assert record(home, "killed-in-register").interruption.noticed_by == "after"
    recovered = record(home, "killed-in-train").recovered
    assert any(note.startswith("removed data/.ingest-") for note in recovered), recovered
    assert "run killed-in-ingest: marked interrupted (stage ingest was running)" in recovered
    after = record(home, "after")
    assert after.status == "succeeded"
    assert "run killed-in-register: marked interrupted (stage register was running)" in (
        after.recovered
    )
    assert "recovered: run killed-in-register" in output
    assert registry.current_champion(tracking_uri=tracking.sqlite_uri(home / "mlflow.db"))
