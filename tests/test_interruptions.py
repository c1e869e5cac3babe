"""Killed and interrupted runs, with a real runner process and a real kernel.

The one-stage test pipeline joins its run as a stage of the real pipeline does
(``RunContext.resolve``), writes its kernel's pid, then keeps writing a heartbeat file into
``reports/`` — a kernel busy writing production when its runner is stopped. The runner is a
``creditrisk run`` process in its own process group, stopped as an operator would: SIGKILL of
the group, SIGTERM, Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
import real_runs
from filelock import FileLock, Timeout
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from real_runs import assert_locks_free

from creditrisk import locking
from creditrisk.pipeline.records import RunRecord
from creditrisk.settings import Workspace

KERNEL = "creditrisk"

PIPELINE_YAML = """\
kernel: creditrisk
stages:
  - name: beat
    notebook: notebooks/01_beat.ipynb
    parameters: {beats: 1200}
    inputs: []
    outputs: [reports/heartbeat.txt]
"""

CELLS = [
    "import os, time\nfrom pathlib import Path\nfrom creditrisk.stages.context import RunContext",
    "beats: int = 1200  # heartbeats to write, 50 ms apart",
    "ctx = RunContext.resolve('ingest')\nassert ctx.mode == 'pipeline'\n"
    "reports = Path('reports')\nreports.mkdir(exist_ok=True)\n"
    "(reports / 'kernel.pid').write_text(str(os.getpid()))",
    "for beat in range(beats + 1):\n"
    "    (reports / 'heartbeat.txt').write_text(f'{beat}\\n')\n"
    "    time.sleep(0.05)",
]


@pytest.fixture
def project(tmp_path: Path, kernel: str) -> Path:
    root = tmp_path / "project"
    notebook = new_notebook(
        cells=[new_markdown_cell("# beat")]
        + [
            new_code_cell(source, metadata={"tags": ["parameters"]} if i == 1 else {})
            for i, source in enumerate(CELLS)
        ],
        metadata={"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}},
    )
    (root / "notebooks").mkdir(parents=True)
    nbformat.write(notebook, root / "notebooks/01_beat.ipynb")
    (root / "pipeline.yaml").write_text(PIPELINE_YAML)
    return root


def start_run(project: Path, home: Path, run_id: str, *params: str) -> subprocess.Popen[str]:
    """``creditrisk run`` of the test pipeline in its own process group."""
    flags = [arg for param in params for arg in ("-p", param)]
    config = str(project / "pipeline.yaml")
    return real_runs.start_run(home, "--config", config, "--run-id", run_id, "--force", *flags)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent, the killed runner, cannot reap it).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def beating(home: Path) -> int:
    """The kernel's pid, once it has started writing heartbeats."""
    wait_for(lambda: (home / "reports/heartbeat.txt").exists(), 120, "the kernel's first heartbeat")
    return int((home / "reports/kernel.pid").read_text())


def record(home: Path, run_id: str) -> RunRecord:
    return RunRecord.read(home / "runs" / run_id / "run.json")


def test_sigkill_of_the_runner_takes_the_kernel_with_it_and_the_next_run_recovers(
    project: Path, tmp_path: Path
) -> None:
    home = tmp_path / "workspace"
    runner = start_run(project, home, "killed")
    kernel_pid = beating(home)

    os.killpg(runner.pid, signal.SIGKILL)  # the kernel runs in a session of its own
    runner.wait(10)
    wait_for(lambda: not alive(kernel_pid), 5, f"kernel {kernel_pid} to die with its runner")
    heartbeat = (home / "reports/heartbeat.txt").read_text()
    time.sleep(0.5)
    assert (home / "reports/heartbeat.txt").read_text() == heartbeat, "a kernel still writes"
    assert_locks_free(home)
    assert record(home, "killed").status == "running"  # nobody could say otherwise yet

    # What a killed ingest and a killed directory swap leave behind.
    (home / "data/.ingest-x1y2z3/bronze").mkdir(parents=True)
    (home / "data/.bronze.previous").mkdir()
    (home / "data/.bronze.previous/application_train.parquet").write_text("old bronze")
    (home / "reports/.metrics.json.ab12cd_3.tmp").write_text("{")

    follow = start_run(project, home, "next", "beats=0")
    output, _ = follow.communicate(timeout=180)
    assert follow.returncode == 0, output

    killed = record(home, "killed")
    assert killed.status == "interrupted"
    assert killed.stage("beat").status == "interrupted"
    assert killed.interruption is not None and killed.interruption.noticed_by == "next"
    assert "killed" in killed.interruption.cause
    assert killed.stage("beat").error is not None
    nxt = record(home, "next")
    assert nxt.status == "succeeded"
    assert "run killed: marked interrupted (stage beat was running)" in nxt.recovered
    assert not (home / "data/.ingest-x1y2z3").exists()
    assert not (home / "reports/.metrics.json.ab12cd_3.tmp").exists()
    assert (home / "data/bronze/application_train.parquet").read_text() == "old bronze"
    assert "recovered: run killed: marked interrupted (stage beat was running)" in output


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_stops_the_kernel_records_interrupted_and_frees_the_lock(
    project: Path, tmp_path: Path, signum: int, code: int
) -> None:
    home = tmp_path / "workspace"
    runner = start_run(project, home, "stopped")
    kernel_pid = beating(home)

    runner.send_signal(signum)
    output, _ = runner.communicate(timeout=60)

    assert runner.returncode == code, output
    assert not alive(kernel_pid)
    assert_locks_free(home)
    stopped = record(home, "stopped")
    name = signal.Signals(signum).name
    assert stopped.status == "interrupted" and stopped.finished is not None
    assert stopped.interruption is not None
    assert stopped.interruption.cause == f"{name} received"
    assert stopped.interruption.noticed_by == "stopped"
    beat = stopped.stage("beat")
    assert beat.status == "interrupted"
    # What the notebook had done is rendered: the heartbeat cell, cut short.
    assert beat.html == "runs/stopped/01_beat.html"
    html = (home / beat.html).read_text()
    assert "heartbeat.txt" in html
    assert f"run interrupted: {name} received" in output
    assert "INTERRUPTED" in output


def test_a_kernel_of_another_run_blocks_the_writer_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a stage process writes, a new governed run waits for it, then refuses."""
    workspace = Workspace(tmp_path / "workspace")
    workspace.home.mkdir()
    writer = FileLock(locking.writer_lock_file(workspace))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; "
            f"lock = FileLock({str(locking.writer_lock_file(workspace))!r}); lock.acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(locking, "WRITER_GRACE_SECONDS", 0.5)
        with (
            pytest.raises(locking.WorkspaceLocked, match="still holds"),
            locking.workspace_lock(workspace, "second"),
        ):
            pass
        assert locking.read_owner(workspace) is None  # the main lock was let go as well
        with pytest.raises(Timeout):
            writer.acquire(blocking=False)
    finally:
        holder.kill()
        holder.wait()
    with locking.workspace_lock(workspace, "third") as owner:
        assert owner["run_id"] == "third"
    assert json.dumps(owner)
