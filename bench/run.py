"""Benchmarks at scale: generation, ingest and feature build vs the pandas reference, the model
stages 03–06, monitoring a production batch, and the whole pipeline at the default size and at
``--size``.

Each step runs in its own process (bench/steps.py, or the ``creditrisk`` CLI for the pipeline
and monitoring steps); wall time is measured here and peak memory is the child's maximum
resident set size (``wait4`` rusage), so steps do not share a peak. Results go to
bench/RESULTS.md. Usage::

    python bench/run.py [--size full] [--workdir bench/output] [--reuse-data]
                        [--output bench/RESULTS.md] [--skip-reference] [--skip-model]
                        [--skip-monitor] [--skip-pipeline] [--skip-full-pipeline]
                        [--only-pipeline] [--only-monitor] [--only-full-pipeline]
                        [--pipeline-param NAME=VALUE …]

The model step runs ``creditrisk run --from train --to register`` in the workspace that the
ingest and features steps built. The monitoring step runs ``creditrisk monitor`` on a drifted
48,744-applicant production batch (generated beforehand, not timed) against that workspace's
champion and training split: twice with the defaults (the second run meets the retrain
trigger's second consecutive breach), then once with the whole training split in the drift
tests. The pipeline step runs ``creditrisk run --size small`` (the default of ``make pipeline``)
in a fresh, empty workspace, whatever ``--size`` is; the full-pipeline step runs
``creditrisk run --size SIZE`` in a fresh workspace whose ``data/raw`` already holds the
generated data (hard links to ``WORKDIR/raw``), so data generation is not timed. A run or
monitoring command that does not succeed fails the benchmark (exit code 1, after writing the
results).

With ``--only-…`` only those steps run, in the existing workspace for monitoring, and their rows
and sections replace their earlier ones in the results; everything else there is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3
# The console script of the venv running this file (not resolved: a venv's python is a link).
CREDITRISK = Path(sys.executable).parent / "creditrisk"
MODEL_STAGES = ("train", "evaluate", "validate", "register")
PIPELINE_STAGES = ("ingest", "features", *MODEL_STAGES, "monitor")
PIPELINE_SIZE = "small"  # what `make pipeline` runs by default
TARGET_SECONDS = {"model": 180, "pipeline": 180, "full": 360, "monitor": 60}
# The production batch: as many new applicants as Home Credit's application_test.
BATCH_APPLICANTS, BATCH_SEED = 48_744, 2026
# run_monitor's own laps (reports/stability.json → summary.timings_seconds), in order.
MONITOR_PARTS = {
    "load_model": "load the champion (`load_model`)",
    "score_reference": "read and score the training split (`score_reference`)",
    "score_current": "score the batch from its raw tables (`score_current`)",
    "stability": "score PSI, CSI of every feature (`stability`)",
    "drift": "Evidently drift tests (`drift`)",
    "drift_report": "drift report, HTML + JSON (`drift_report`)",
}
# How the summary-table rows of the steps that ``--only-…`` re-measures begin.
ROW_PREFIXES = {
    "pipeline": "whole pipeline, SIZE=",
    "full": "whole pipeline at scale",
    "monitor": "monitoring a production batch",
}
SUMMARY_HEADER = "| step | wall time | peak memory | target | result |"
LATER_NOTE = "Rows measured later, by another command, say when and how in their section below."


@dataclass
class Measurement:
    step: str
    seconds: float
    peak_bytes: int
    details: dict

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB


def run_child(
    argv: Sequence[str], env: dict[str, str] | None = None, capture: bool = False
) -> tuple[float, int, int, str]:
    """Run a child to its end: wall seconds, peak RSS in bytes, exit code, captured stdout.

    The peak is ``wait4``'s ``ru_maxrss``: the largest single process among the child and the
    descendants it waited for, not their sum.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE if capture else None, text=True
    )
    output = process.stdout.read() if process.stdout else ""  # until the child closes it
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux.
    return seconds, usage.ru_maxrss * 1024, process.returncode, output


def measure(step: str, *args: str) -> Measurement:
    """Run one step of bench/steps.py in a child process; wall time and the child's peak RSS."""
    argv = [sys.executable, str(HERE / "steps.py"), step, *args]
    seconds, peak, code, output = run_child(argv, capture=True)
    if code:
        raise SystemExit(f"benchmark step {step} failed with exit code {code}")
    return Measurement(step, seconds, peak, json.loads(output.strip().splitlines()[-1]))


def measure_pipeline(
    step: str, workspace: Path, expected: Sequence[str], *cli_args: str
) -> Measurement:
    """``creditrisk run`` in a child process with ``CREDITRISK_HOME=workspace``.

    The details are the run's record (``runs/<run_id>/run.json``): status, exit code and each
    stage's status and duration. Selecting other stages than ``expected`` is an error.
    """
    run_id = f"bench-{step}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    argv = [str(CREDITRISK), "run", "--run-id", run_id, "--force", *cli_args]
    print(f"$ CREDITRISK_HOME={workspace} {' '.join(argv)}", flush=True)
    seconds, peak, code, _ = run_child(argv, workspace_env(workspace))
    details = run_details(workspace / "runs" / run_id / "run.json")
    details["exit_code"] = code
    details["command"] = " ".join(["creditrisk", *argv[1:]])
    details["measured_at"] = now()
    selected = tuple(stage["name"] for stage in details["stages"])
    if selected and selected != tuple(expected):
        raise SystemExit(f"{step}: the run selected stages {selected}, expected {tuple(expected)}")
    details["succeeded"] = (
        code == 0
        and details["status"] == "succeeded"
        and selected == tuple(expected)
        and all(stage["status"] == "succeeded" for stage in details["stages"])
    )
    return Measurement(step, seconds, peak, details)


def workspace_env(workspace: Path) -> dict[str, str]:
    """The environment of a CLI child working in ``workspace`` with its own ``mlflow.db``.

    No run id of a calling pipeline, no tracking server and no CloudWatch: a benchmark measures
    the workspace, not the caller's deployment.
    """
    env = {**os.environ, "CREDITRISK_HOME": str(workspace.resolve())}
    for name in ("CREDITRISK_RUN_ID", "MLFLOW_TRACKING_URI", "CREDITRISK_CLOUDWATCH_ENABLED"):
        env.pop(name, None)
    return env


def shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def run_details(run_json: Path) -> dict:
    """Status, stage names, statuses, durations and results from a run's ``run.json``."""
    if not run_json.exists():  # refused before starting: locked workspace, bad parameter …
        return {"run_id": run_json.parent.name, "status": "not started", "stages": []}
    record = json.loads(run_json.read_text(encoding="utf-8"))
    stages = []
    for stage in record["stages"]:
        error = stage.get("error") or {}
        stages.append(
            {
                "name": stage["name"],
                "status": stage["status"],
                "duration_s": stage.get("duration_s"),  # None: not run
                "results": stage.get("results") or {},
                "error": f"{error['type']}: {error['message']}" if error else "",
            }
        )
    return {"run_id": record["run_id"], "status": record["status"], "stages": stages}


def split_rows(workspace: Path) -> dict[str, int]:
    """Rows of each split the train stage wrote (``data/splits/*.parquet``)."""
    import pyarrow.parquet as pq

    paths = sorted((workspace / "data" / "splits").glob("*.parquet"))
    return {path.stem: pq.ParquetFile(path).metadata.num_rows for path in paths}


def invocation(size: str) -> str:
    """How the benchmark was started, for the report."""
    arguments = " ".join(shlex.quote(argument) for argument in sys.argv[1:])
    if not arguments:
        return f"`make bench` (`python bench/run.py --size {size}`)"
    return f"`python bench/run.py {arguments}`"


def verdict(ok: bool) -> str:
    return "✅ met" if ok else "❌ missed"


def machine() -> str:
    import duckdb
    import pandas
    import pyarrow
    import xgboost

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB RAM, {cpu}, "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
        f"pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, "
        f"XGBoost {xgboost.__version__}"
    )


def pipeline_row(label: str, m: Measurement, target: float) -> str:
    """A results row for a ``creditrisk run`` measurement; a failed run misses its target."""
    if m.details["succeeded"]:
        result = verdict(m.seconds < target)
    else:
        failed = [s for s in m.details["stages"] if s["status"] == "failed"]
        why = f"{failed[0]['name']} failed" if failed else f"run {m.details['status']}"
        result = f"❌ run failed ({why}, exit code {m.details['exit_code']})"
    return f"| {label} | {m.seconds:.1f} s | {m.peak_gib:.2f} GiB | < {target:.0f} s | {result} |"


def stage_note(stage: dict) -> str:
    """A few of the stage's recorded results, or its error."""
    if stage["error"]:
        failed = stage["results"].get("failed")
        gates = f" (failed gates: {', '.join(map(str, failed))})" if failed else ""
        return " ".join(stage["error"].replace("|", "\\|").split())[:300] + gates
    results = stage["results"]
    formats = {
        "n_features": "{:,} features",
        "best_iteration": "best iteration {}",
        "test_auc": "test AUC {:.3f}",
        "test_ks": "KS {:.3f}",
        "n_gates": "{} gates passed",
        "version": "registered version {}",
        "score_psi": "score PSI {:.3f}",
        "drifted_features": "{} features drifted",
    }
    notes = [fmt.format(results[key]) for key, fmt in formats.items() if key in results]
    if "retrain" in results:  # the monitor stage's decision
        notes.append(
            f"status {results.get('status')}, retrain "
            + ("called for" if results["retrain"] else "not called for")
        )
    return ", ".join(notes)


def failure(m: Measurement) -> list[str]:
    """A loud line when the run did not succeed: which stage failed and why."""
    if m.details["succeeded"]:
        return []
    failed = [s for s in m.details["stages"] if s["status"] == "failed"]
    why = f"stage {failed[0]['name']}: {stage_note(failed[0])}" if failed else "see its output"
    return [
        f"**❌ The run failed** (status {m.details['status']}, exit code "
        f"{m.details['exit_code']}) — {why}",
        "",
    ]


def stage_table(m: Measurement) -> list[str]:
    """Each stage's duration (from run.json) and share of the measured wall time."""
    lines = [
        "| stage | status | duration | share | notes |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for stage in m.details["stages"]:
        seconds = stage["duration_s"]
        duration, share = ("—", "—")
        if seconds is not None:
            duration, share = f"{seconds:.1f} s", f"{seconds / m.seconds:.0%}"
        lines.append(
            f"| {stage['name']} | {stage['status']} | {duration} | {share} | {stage_note(stage)} |"
        )
    outside = m.seconds - sum(stage["duration_s"] or 0.0 for stage in m.details["stages"])
    lines.append(
        f"| outside the stages (CLI start-up, checks, run record) | — | {outside:.1f} s "
        f"| {outside / m.seconds:.0%} | |"
    )
    lines.append(f"| **total (wall time)** | {m.details['status']} | {m.seconds:.1f} s | 100% | |")
    return lines


def overrides_warning(params: Sequence[str]) -> list[str]:
    """A warning that the pipeline ran with ``--pipeline-param`` overrides (smoke runs)."""
    if not params:
        return []
    overrides = ", ".join(f"`{param}`" for param in params)
    return [f"⚠️ Not the default pipeline: parameter overrides {overrides}.", ""]


def model_section(size: str, model: Measurement) -> list[str]:
    """The per-stage table of the model stages 03–06."""
    rows = model.details.get("split_rows") or {}
    split = ", ".join(f"{name} {n:,} rows" for name, n in rows.items())
    return [
        "",
        f"## Model stages 03–06 at SIZE={size}",
        "",
        f"`{model.details['command']}` in the benchmark workspace (bronze, ingestion "
        f"summary and feature store from the steps above); run `{model.details['run_id']}`"
        + (f"; splits: {split}." if split else "."),
        "",
        *failure(model),
        *stage_table(model),
    ]


def marked(key: str, lines: Sequence[str]) -> list[str]:
    """A section between the markers that a later ``--only-…`` run replaces it by."""
    return ["", f"<!-- bench:{key}:start -->", *lines, "", f"<!-- bench:{key}:end -->"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def measured_by(size: str, m: Measurement) -> list[str]:
    """When and how a section merged into earlier results was measured (its own provenance)."""
    return [f"Measured {m.details['measured_at']} with {invocation(size)} on {machine()}.", ""]


def small_pipeline_section(pipeline: Measurement, size: str, merged: bool) -> list[str]:
    return marked(
        "pipeline",
        [
            "",
            f"## Whole pipeline at SIZE={PIPELINE_SIZE} (`make pipeline`)",
            "",
            *(measured_by(size, pipeline) if merged else []),
            f"`{pipeline.details['command']}` in a fresh, empty workspace (synthetic data "
            f"generated by the ingest stage); run `{pipeline.details['run_id']}`.",
            "",
            *failure(pipeline),
            *stage_table(pipeline),
        ],
    )


def full_pipeline_section(size: str, full: Measurement, merged: bool) -> list[str]:
    """The whole pipeline at ``size``, stage by stage, with how and when it was measured."""
    raw, rows = full.details["raw"], full.details.get("split_rows") or {}
    split = ", ".join(f"{name} {n:,} rows" for name, n in rows.items())
    return marked(
        "full",
        [
            "",
            f"## Whole pipeline at SIZE={size} (`make pipeline SIZE={size}`), data generation "
            "excluded",
            "",
            *(measured_by(size, full) if merged else []),
            f"`{full.details['command']}` in a fresh workspace (`{full.details['workspace']}`) "
            f"whose `data/raw` already holds the synthetic data, generated beforehand and not "
            f"timed: {raw['rows']:,} rows in eight CSV files, {raw['bytes'] / 1e9:.2f} GB, hard "
            f"links to `{raw['path']}`; the ingest stage finds it and generates nothing. Run "
            f"`{full.details['run_id']}`"
            + (f"; splits: {split}." if split else ".")
            + f" Peak memory {full.peak_gib:.2f} GiB (the largest single process of the tree).",
            "",
            *failure(full),
            *stage_table(full),
            "",
            "- The workspace has a fresh `mlflow.db`: the validate stage's canary finds no",
            "  champion to compare with, and the register stage promotes version 1.",
            "- Ingest includes the runner's SHA-256 fingerprint of `data/raw` (a fresh hash",
            "  cache) besides the stage's own checksums of every file.",
            "- The monitor stage compares the test split with the training split (no",
            "  production batch inside the pipeline).",
        ],
    )


def seconds_and_share(seconds: float | None, wall: float) -> str:
    return "—" if seconds is None else f"{seconds:.1f} s ({seconds / wall:.0%})"


def monitor_section(monitor: Measurement, size: str, merged: bool) -> list[str]:
    """Each monitoring run: run_monitor's own laps, wall time, peak, outcome and decision."""
    details, runs = monitor.details, monitor.details["runs"]
    batch, first = details["batch"], runs[0]["summary"]
    reference = details["split_rows"].get("train")
    generated = batch["generated_seconds"]
    made = f", {generated:.0f} s" if generated is not None else ", reused from an earlier run"
    drift = {key: f"{value:g}" for key, value in (batch["drift"] or {}).items()}
    champion = first.get("model", {})
    head = "| part | " + " | ".join(run["label"] for run in runs) + " |"
    lines = [
        "",
        "## Monitoring a production batch (`creditrisk monitor`)",
        "",
        *(measured_by(size, monitor) if merged else []),
        f"`{runs[0]['command']}` in a child process, three times one after the other, in the "
        f"benchmark workspace (`{details['workspace']}`): champion `{champion.get('name')}` "
        f"version {champion.get('version')}; reference: the training split "
        + (f"({reference:,} applicants)" if reference else "")
        + ", scored by the champion in every run. The batch — "
        f"{batch['rows']['application_test']:,} new applicants with the generator's default "
        f"drift ({', '.join(f'{k} {v}' for k, v in drift.items())}), "
        f"{sum(batch['rows'].values()):,} rows in {len(batch['rows'])} CSV files, "
        f"{batch['csv_bytes'] / 1e6:.0f} MB — was generated beforehand and not timed "
        f"(`{batch['command']}`{made}); the monitor scores it from its raw tables with the batch "
        "scorer, and its `labels.csv` gives the back-test. The workspace's monitor history "
        "was emptied before run 1. Run 3 adds `-p reference_sample=0`: the whole training split "
        "in the drift tests instead of a 50,000-row sample.",
        "",
        *failure_runs(monitor),
        head,
        "| --- |" + " ---: |" * len(runs),
    ]

    target = TARGET_SECONDS["monitor"]
    targets = [target, target, None]  # run 3 is an extra: the whole reference
    columns = [monitor_column(run, t) for run, t in zip(runs, targets, strict=True)]
    for number, name in enumerate(MONITOR_ROWS):
        lines.append(f"| {name} | " + " | ".join(column[number] for column in columns) + " |")
    lines += [
        "",
        "| run | started | rows | score PSI | drifted / tested (reference rows) | features in "
        "the act band | status | back-test calibrated | breaches in a row | retrain |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for run in runs:
        s = run["summary"]
        if not s:
            lines.append(
                f"| {run['label']} | {run['started']} | failed, exit code "
                f"{run['exit_code']} | | | | | | | |"
            )
            continue
        backtest = s.get("backtest") or {}
        calibrated = {True: "yes", False: "no", None: "no labels"}[backtest.get("calibrated")]
        if backtest.get("bands_miscalibrated"):
            calibrated += f" ({len(backtest['bands_miscalibrated'])} bands miscalibrated)"
        decision = s["decision"]
        lines.append(
            f"| {run['label']} | {run['started']} | {s['current']['rows']:,} "
            f"| {s['score_psi']:.3f} ({s['score_band']}) "
            f"| {s['drift']['drifted']} / {s['drift']['tested']} "
            f"({s['drift']['reference_sample_rows']:,}) | {s['features_act']} | {s['status']} "
            f"| {calibrated} | {decision['breaches_in_a_row']} "
            f"| {'**called for**' if decision['retrain'] else 'not called for'} |"
        )
    breaches = {
        run["label"]: "; ".join(run["summary"]["breaches"] or ["none"])
        for run in runs
        if run["summary"]
    }
    if len(set(breaches.values())) == 1:
        found = next(iter(breaches.values()))
        lines += ["", f"Breaches of the retrain rules, the same in every run: {found}."]
    else:
        lines += ["", *(f"- breaches in {label}: {found}." for label, found in breaches.items())]
    lines += [
        "",
        "- The wall time is the whole `creditrisk monitor` process: interpreter start, imports,",
        "  `run_monitor`, exit. The parts are `run_monitor`'s own laps",
        "  (`reports/stability.json` → `summary.timings_seconds`); shares are of the wall time.",
        "- The reference is scored by the champion in every run (nothing is cached between runs);",
        "  the stability indices always use the whole reference, the drift tests a seeded",
        "  sample of it unless `reference_sample=0`.",
        "- Peak memory is the monitor process's maximum RSS (it starts no other process).",
    ]
    return marked("monitor", lines)


MONITOR_ROWS = (
    *MONITOR_PARTS.values(),
    "the rest: back-test, reference check, history, decision, stability.json",
    "**run_monitor** (`total`)",
    "outside run_monitor: interpreter start, imports, CLI, exit",
    "**wall time**",
    "peak memory (max RSS)",
    "target",
    "result",
)


def monitor_column(run: dict, target: float | None) -> list[str]:
    """One run's cells of the monitoring table, in the order of ``MONITOR_ROWS``."""
    wall, laps = run["seconds"], run["summary"].get("timings_seconds")
    if laps:
        parts = [laps.get(key) for key in MONITOR_PARTS]
        rest = laps["total"] - sum(part or 0.0 for part in parts)
        timed = [*parts, rest, laps["total"], wall - laps["total"]]
    else:  # failed: no laps recorded
        timed = [None] * (len(MONITOR_PARTS) + 3)
    return [
        *(seconds_and_share(seconds, wall) for seconds in timed),
        f"**{wall:.1f} s**",
        f"{run['peak_bytes'] / GIB:.2f} GiB",
        f"< {target:.0f} s" if target else "— (extra)",
        monitor_verdict(run, target),
    ]


def monitor_verdict(run: dict, target: float | None) -> str:
    if run["exit_code"]:
        return f"❌ failed (exit code {run['exit_code']})"
    return "—" if target is None else verdict(run["seconds"] < target)


def failure_runs(m: Measurement) -> list[str]:
    """A loud line when a monitoring run did not succeed."""
    failed = [run for run in m.details["runs"] if run["exit_code"]]
    if not failed:
        return []
    which = ", ".join(f"{run['label']} (exit code {run['exit_code']})" for run in failed)
    return [f"**❌ Monitoring failed:** {which}; its error is in the benchmark's output.", ""]


def failure_summary(m: Measurement) -> str:
    if "runs" in m.details:
        return "; ".join(
            f"{run['label']} exit code {run['exit_code']}"
            for run in m.details["runs"]
            if run["exit_code"]
        )
    return f"run {m.details['run_id']}, {m.details['status']}"


def full_row(size: str, m: Measurement) -> str:
    stages = len(PIPELINE_STAGES)
    label = (
        f"{ROW_PREFIXES['full']}: `make pipeline SIZE={size}`, {stages} stages, fresh "
        "workspace, data generation excluded"
    )
    return pipeline_row(label, m, TARGET_SECONDS["full"])


def monitor_row(m: Measurement) -> str:
    runs = m.details["runs"][:2]
    batch = m.details["batch"]["rows"]["application_test"]
    reference = m.details["split_rows"].get("train", 0)
    label = (
        f"{ROW_PREFIXES['monitor']}: {batch:,} applicants against the {reference:,}-applicant "
        "training split (`creditrisk monitor`, runs 1 / 2)"
    )
    target = TARGET_SECONDS["monitor"]
    if m.details["succeeded"]:
        result = verdict(all(run["seconds"] < target for run in runs))
    else:
        result = f"❌ failed ({failure_summary(m)})"
    walls = " / ".join(f"{run['seconds']:.1f} s" for run in runs)
    peaks = " / ".join(f"{run['peak_bytes'] / GIB:.2f}" for run in runs)
    return f"| {label} | {walls} | {peaks} GiB | < {target} s | {result} |"


def summary_rows(size: str, results: dict[str, Measurement]) -> dict[str, str]:
    """The summary-table rows of the steps that ``--only-…`` can re-measure."""
    rows = {}
    if "pipeline" in results:
        label = f"whole pipeline, SIZE={PIPELINE_SIZE}, fresh workspace (`make pipeline`)"
        rows["pipeline"] = pipeline_row(label, results["pipeline"], TARGET_SECONDS["pipeline"])
    if "full" in results:
        rows["full"] = full_row(size, results["full"])
    if "monitor" in results:
        rows["monitor"] = monitor_row(results["monitor"])
    return rows


def sections(size: str, results: dict[str, Measurement], merged: bool) -> dict[str, list[str]]:
    """The sections of the steps that ``--only-…`` can re-measure, between their markers."""
    found = {}
    if "pipeline" in results:
        found["pipeline"] = small_pipeline_section(results["pipeline"], size, merged)
    if "full" in results:
        found["full"] = full_pipeline_section(size, results["full"], merged)
    if "monitor" in results:
        found["monitor"] = monitor_section(results["monitor"], size, merged)
    return found


def merge_report(previous: str, size: str, results: dict[str, Measurement]) -> str:
    """``previous`` with the rows and sections of this run's steps replaced or added."""
    lines = previous.rstrip("\n").split("\n")
    table = lines.index(SUMMARY_HEADER)
    end = table
    while end + 1 < len(lines) and lines[end + 1].startswith("|"):
        end += 1
    for key, row in summary_rows(size, results).items():
        at = next(
            (i for i in range(table, end + 1) if lines[i].startswith(f"| {ROW_PREFIXES[key]}")),
            None,
        )
        if at is None:
            end += 1
            lines.insert(end, row)
        else:
            lines[at] = row
    if LATER_NOTE not in lines:
        lines[table:table] = [LATER_NOTE, ""]
    text = "\n".join(lines) + "\n"
    for key, section in sections(size, results, merged=True).items():
        start, stop = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
        body = "\n".join(section[1:])  # without the leading blank line
        if start in text and stop in text:
            text = text[: text.index(start)] + body + text[text.index(stop) + len(stop) :]
            continue
        anchor = next(
            (a for a in ("\nRow counts generated:", "\n<!-- serving:start -->") if a in text),
            None,
        )
        if anchor is None:
            text = text.rstrip("\n") + "\n\n" + body + "\n"
        else:
            at = text.index(anchor)
            text = text[:at].rstrip("\n") + "\n\n" + body + "\n" + text[at:]
    return text


def notes(results: dict[str, Measurement]) -> list[str]:
    """The notes on the steps that were measured."""
    lines = []
    if "reference" in results:
        lines += [
            "- The reference runs the same SQL files as the feature stage; only the data movement",
            "  differs (pandas `read_csv` of every file, DuckDB over registered pandas frames,",
            "  results merged in pandas). Its time depends mostly on `read_csv` of these files.",
        ]
    if "ingest" in results:
        lines += [
            "- Ingest includes SHA-256 + MD5 of every file (in threads, beside the DuckDB",
            "  conversion), the Pandera contracts on streamed 2M-row batches, key uniqueness and",
            "  referential integrity in DuckDB, and the atomic swap of `data/bronze`.",
        ]
    if "generate" in results:
        lines.append(
            "- Generation forks worker processes; its peak is that of the largest single process."
        )
    if "features" in results:
        lines.append("- The feature time includes interpreter start and imports (about 1 s).")
    if {"model", "pipeline", "full"} & results.keys():
        lines += [
            "- The `creditrisk run` rows are the real CLI in a child process (warm venv). Each",
            "  stage is a papermill kernel, a grandchild that the runner waits for, so the peak",
            "  memory is that of the largest single process of the tree (the runner or one",
            "  kernel), not the sum of the runner and the kernel running beside it (the runner",
            "  holds no data: about 0.3 GiB).",
            "- A stage's duration (`duration_s` in `run.json`) includes its kernel start, the",
            "  notebook, the HTML rendering and the fingerprints of its inputs and outputs.",
        ]
    if "model" in results:
        lines += [
            "- The model row runs with `--from train --to register`: the pipeline's ingest and",
            "  features stages do not run (the run record lists only train … register).",
            "  `--force` makes sure no stage is skipped as unchanged.",
        ]
    if "pipeline" in results:
        lines += [
            "- The whole-pipeline row includes generating the synthetic data (30,000",
            "  applicants), as a newcomer's first `make pipeline` does.",
        ]
    return lines


def report(
    size: str, results: dict[str, Measurement], csv_bytes: int, params: Sequence[str] = ()
) -> str:
    gen, ing, feat, ref = (results.get(k) for k in ("generate", "ingest", "features", "reference"))
    model, pipeline = results.get("model"), results.get("pipeline")
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC).isoformat(timespec='seconds')} with {invocation(size)} "
        f"on {machine()}.",
        "",
        *(
            [
                f"Input: SIZE={size}: {ing.details['rows']:,} rows in eight CSV files, "
                f"{csv_bytes / 1e9:.2f} GB.",
                "",
            ]
            if ing
            else []
        ),
        *overrides_warning(params if model or pipeline or "full" in results else ()),
        "Each step runs in its own process; peak memory is that process's maximum RSS.",
        "",
        SUMMARY_HEADER,
        "| --- | ---: | ---: | --- | --- |",
    ]
    if gen:
        lines.append(
            f"| generate synthetic data | {gen.seconds:.1f} s | {gen.peak_gib:.2f} GiB "
            f"| < 120 s | {verdict(gen.seconds < 120)} |"
        )
    if ing:
        lines.append(
            f"| ingest (checksums, contracts, CSV → Parquet, integrity) | {ing.seconds:.1f} s "
            f"| {ing.peak_gib:.2f} GiB | — | — |"
        )
    if feat and ref:
        speedup = ref.seconds / feat.seconds
        memory_ratio = feat.peak_bytes / ref.peak_bytes
        lines += [
            f"| features (DuckDB over bronze Parquet) | {feat.seconds:.1f} s "
            f"| {feat.peak_gib:.2f} GiB | ≥ 10x faster, ≤ 1/3 memory of the reference "
            f"| {verdict(speedup >= 10 and memory_ratio <= 1 / 3)} ({speedup:.1f}x faster, "
            f"{memory_ratio:.2f} of the memory) |",
            f"| reference: pandas read_csv → DuckDB → pandas merge | {ref.seconds:.1f} s "
            f"| {ref.peak_gib:.2f} GiB | — "
            f"| ({ref.details['read_csv_seconds']:.1f} s in read_csv) |",
        ]
    elif feat:
        lines.append(
            f"| features (DuckDB over bronze Parquet) | {feat.seconds:.1f} s "
            f"| {feat.peak_gib:.2f} GiB | — | (reference skipped) |"
        )
    if ing and feat:
        total = ing.seconds + feat.seconds
        lines.append(f"| ingest + features | {total:.1f} s | — | < 90 s | {verdict(total < 90)} |")
    if model:
        label = "model stages 03–06: train, evaluate, validate, register (`creditrisk run`)"
        lines.append(pipeline_row(label, model, TARGET_SECONDS["model"]))
    lines += summary_rows(size, results).values()
    noted = notes(results)
    lines += ["", "Notes:", "", *noted] if noted else []
    lines += model_section(size, model) if model else []
    for section in sections(size, results, merged=False).values():
        lines += section
    if gen:
        lines += ["", "Row counts generated:", ""]
        lines += [f"- {name}: {rows:,}" for name, rows in gen.details["rows"].items()]
    return "\n".join(lines) + "\n"


def pipeline_params(params: Sequence[str]) -> list[str]:
    """``--pipeline-param`` values as ``creditrisk run -p`` options."""
    return [option for param in params for option in ("-p", param)]


def measure_data_steps(args: argparse.Namespace, raw: Path, workspace: Path) -> dict:
    """Generation, ingest, the feature build, the model stages and the pandas reference."""
    results: dict[str, Measurement] = {}
    if not (args.reuse_data and (raw / "_SYNTHETIC.json").exists()):
        shutil.rmtree(raw, ignore_errors=True)
        results["generate"] = measure("generate", str(raw), args.size)
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    results["ingest"] = measure("ingest", str(raw), str(workspace))
    results["features"] = measure("features", str(workspace))
    if not args.skip_model:
        model_args = ["--from", "train", "--to", "register", *pipeline_params(args.pipeline_param)]
        model = measure_pipeline("model", workspace, MODEL_STAGES, *model_args)
        model.details["split_rows"] = split_rows(workspace)
        results["model"] = model
    if not args.skip_reference:
        results["reference"] = measure(
            "reference", str(raw), str(args.workdir / "reference_feature_store.parquet")
        )
    return results


def measure_whole_pipeline(args: argparse.Namespace) -> Measurement:
    """``make pipeline`` at its default size in a fresh, empty workspace."""
    workspace = args.workdir / "pipeline_workspace"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    cli_args = ["--size", PIPELINE_SIZE, *pipeline_params(args.pipeline_param)]
    return measure_pipeline("pipeline", workspace, PIPELINE_STAGES, *cli_args)


def production_batch(args: argparse.Namespace, workspace: Path) -> dict:
    """The drifted production batch the monitoring step scores; generated unless already there.

    Not timed: a production batch arrives, it is not made by the monitor.
    """
    from creditrisk.data import synthetic

    batch = args.workdir / f"production_{BATCH_APPLICANTS}"
    marker = synthetic.read_marker(batch) if batch.is_dir() else None
    wanted = {"kind": "production_batch", "n_applicants": BATCH_APPLICANTS, "seed": BATCH_SEED}
    argv = [str(CREDITRISK), "generate", "--drift", "--size", str(BATCH_APPLICANTS)]
    argv += ["--seed", str(BATCH_SEED), "--out", str(batch.resolve())]
    seconds = None
    if not marker or any(marker.get(key) != value for key, value in wanted.items()):
        shutil.rmtree(batch, ignore_errors=True)
        print(f"$ {' '.join(argv)}", flush=True)
        seconds, _, code, _ = run_child(argv, workspace_env(workspace))
        if code:
            raise SystemExit(f"generating the production batch failed with exit code {code}")
        marker = synthetic.read_marker(batch)
    if marker is None:
        raise SystemExit(f"{batch} has no generator marker after generating it")
    return {
        "path": batch,
        "command": " ".join(["creditrisk", *argv[1:-1], shown(batch)]),
        "generated_seconds": seconds,  # None: reused from an earlier run
        "rows": marker["rows"],
        "drift": marker["drift"],
        "csv_bytes": sum(path.stat().st_size for path in batch.glob("*.csv")),
    }


def monitor_run(label: str, workspace: Path, batch: Path, *options: str) -> dict:
    """One ``creditrisk monitor`` in a child process: wall time, peak RSS and its reports."""
    argv = [str(CREDITRISK), "monitor", "--current", str(batch.resolve()), *options]
    print(f"$ CREDITRISK_HOME={workspace} {' '.join(argv)}", flush=True)
    started = now()
    seconds, peak, code, output = run_child(argv, workspace_env(workspace), capture=True)
    print(output, end="", flush=True)
    run = {
        "label": label,
        "command": " ".join(["creditrisk", "monitor", "--current", shown(batch), *options]),
        "started": started,
        "seconds": seconds,
        "peak_bytes": peak,
        "exit_code": code,
        "summary": {},
    }
    if code == 0:  # otherwise stability.json is an earlier run's
        stability = json.loads((workspace / "reports" / "stability.json").read_text())
        run["summary"] = stability["summary"]
    return run


def measure_monitor(args: argparse.Namespace, workspace: Path) -> Measurement:
    """``creditrisk monitor`` on the production batch against the workspace's champion.

    Three runs one after the other, with the workspace's monitor history emptied first: two with
    the defaults (the second is the trigger's second breach in a row), then one with the whole
    training split as the drift tests' reference (``reference_sample=0``). The measurement's
    time and peak are the worst of the two default runs.
    """
    batch = production_batch(args, workspace)
    for name in ("monitor_history.jsonl", "retrain_trigger.json"):
        (workspace / "reports" / name).unlink(missing_ok=True)
    runs = [
        monitor_run("run 1", workspace, batch["path"]),
        monitor_run("run 2", workspace, batch["path"]),
        monitor_run("run 3: whole reference", workspace, batch["path"], "-p", "reference_sample=0"),
    ]
    default = runs[:2]
    details = {
        "workspace": shown(workspace),
        "batch": {**batch, "path": shown(batch["path"])},
        "runs": runs,
        "split_rows": split_rows(workspace),
        "succeeded": all(run["exit_code"] == 0 for run in runs),
        "measured_at": now(),
    }
    return Measurement(
        "monitor",
        max(run["seconds"] for run in default),
        max(run["peak_bytes"] for run in default),
        details,
    )


def link_raw(raw: Path, destination: Path) -> None:
    """``raw``'s files in ``destination`` as hard links (a copy across file systems)."""
    destination.mkdir(parents=True)
    for path in raw.iterdir():
        try:
            os.link(path, destination / path.name)
        except OSError:
            shutil.copy2(path, destination / path.name)


def measure_full_pipeline(args: argparse.Namespace, raw: Path) -> Measurement:
    """``make pipeline SIZE=<size>`` in a fresh workspace whose data/raw is already generated.

    The raw data is ``WORKDIR/raw`` (generated first, untimed, when it is not of this size), so
    the ingest stage finds it and the measurement excludes data generation.
    """
    from creditrisk.data import synthetic

    marker = synthetic.read_marker(raw) if raw.is_dir() else None
    wanted = {"n_applicants": synthetic.resolve_size(args.size), "seed": 42, "kind": "base"}
    if not marker or any(marker.get(key) != value for key, value in wanted.items()):
        shutil.rmtree(raw, ignore_errors=True)
        measure("generate", str(raw), args.size)  # not timed here: generation is excluded
    workspace = args.workdir / "full_pipeline_workspace"
    shutil.rmtree(workspace, ignore_errors=True)
    link_raw(raw, workspace / "data" / "raw")
    cli_args = ["--size", args.size, *pipeline_params(args.pipeline_param)]
    full = measure_pipeline("full", workspace, PIPELINE_STAGES, *cli_args)
    full.details["split_rows"] = split_rows(workspace)
    full.details["workspace"] = shown(workspace)
    generated = synthetic.read_marker(raw) or {"rows": {}}
    full.details["raw"] = {
        "path": shown(raw),
        "rows": sum(generated["rows"].values()),
        "bytes": sum(path.stat().st_size for path in raw.glob("*.csv")),
    }
    return full


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="full")
    parser.add_argument("--workdir", type=Path, default=HERE / "output")
    parser.add_argument("--reuse-data", action="store_true", help="keep generated CSVs")
    parser.add_argument(
        "--output", "--results", dest="output", type=Path, default=HERE / "RESULTS.md"
    )
    parser.add_argument("--skip-reference", action="store_true", help="no pandas reference")
    parser.add_argument("--skip-model", action="store_true", help="no model stages 03–06")
    parser.add_argument("--skip-monitor", action="store_true", help="no monitoring step")
    parser.add_argument("--skip-pipeline", action="store_true", help="no whole-pipeline run")
    parser.add_argument(
        "--skip-full-pipeline", action="store_true", help="no whole-pipeline run at --size"
    )
    parser.add_argument(
        "--only-pipeline",
        action="store_true",
        help=f"only the whole pipeline at SIZE={PIPELINE_SIZE} (ignores --size)",
    )
    parser.add_argument(
        "--only-monitor",
        action="store_true",
        help="only the monitoring step, in the existing workspace (WORKDIR/workspace)",
    )
    parser.add_argument(
        "--only-full-pipeline",
        action="store_true",
        help="only the whole pipeline at --size, data generation excluded",
    )
    parser.add_argument(
        "--pipeline-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="forwarded to the `creditrisk run`s as -p (smoke runs only; repeatable)",
    )
    args = parser.parse_args()
    args.only = [
        step
        for step, chosen in (
            ("pipeline", args.only_pipeline),
            ("monitor", args.only_monitor),
            ("full", args.only_full_pipeline),
        )
        if chosen
    ]
    skipped = {"pipeline": args.skip_pipeline, "monitor": args.skip_monitor}
    skipped["full"] = args.skip_full_pipeline
    if any(skipped[step] for step in args.only):
        parser.error("a step cannot be both --only-… and --skip-…")
    return args


def measure_selected(args: argparse.Namespace, raw: Path, workspace: Path) -> dict:
    """The default flow, or the ``--only-…`` steps."""
    results: dict[str, Measurement] = {}
    if not args.only:
        results.update(measure_data_steps(args, raw, workspace))
        if args.skip_monitor or args.skip_model:  # --skip-model leaves no champion to monitor
            print("monitoring skipped", "(no model step)" if not args.skip_monitor else "")
        else:
            results["monitor"] = measure_monitor(args, workspace)
    elif "monitor" in args.only:
        results["monitor"] = measure_monitor(args, workspace)
    if "pipeline" in args.only or not (args.only or args.skip_pipeline):
        results["pipeline"] = measure_whole_pipeline(args)
    if "full" in args.only or not (args.only or args.skip_full_pipeline):
        results["full"] = measure_full_pipeline(args, raw)
    return results


def print_results(results: dict[str, Measurement]) -> None:
    for m in results.values():
        details = {k: v for k, v in m.details.items() if k not in ("stages", "runs")}
        print(f"{m.step:<10} {m.seconds:8.1f} s  {m.peak_gib:6.2f} GiB  {details}")
        for stage in m.details.get("stages", []):
            seconds = stage["duration_s"] or 0.0
            print(f"{'':<12}{stage['name']:<10} {stage['status']:<10} {seconds:.1f} s")
        for run in m.details.get("runs", []):
            timings = run["summary"].get("timings_seconds", {})
            print(
                f"{'':<12}{run['label']:<24} {run['seconds']:.1f} s  "
                f"{run['peak_bytes'] / GIB:.2f} GiB  exit {run['exit_code']}  {timings}"
            )


def main() -> None:
    args = parse_args()
    raw, workspace = args.workdir / "raw", args.workdir / "workspace"
    results = measure_selected(args, raw, workspace)
    print_results(results)
    # Every measurement as measured, beside the report (which rounds and picks).
    record = {step: asdict(m) for step, m in results.items()}
    (args.workdir / "run_results.json").write_text(json.dumps(record, indent=1, default=str))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    previous = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if args.only and SUMMARY_HEADER in previous:
        text = merge_report(previous, args.size, results)
    else:
        csv_bytes = sum(p.stat().st_size for p in raw.glob("*.csv"))
        text = report(args.size, results, csv_bytes, args.pipeline_param)
        # The serving benchmarks (bench/serving_bench.py) keep their own section of the file,
        # and the notes written by hand after it.
        start, end = "<!-- serving:start -->", "<!-- serving:end -->"
        if start in previous and end in previous:
            text = text.rstrip("\n") + "\n\n" + previous[previous.index(start) :]
    args.output.write_text(text, encoding="utf-8")
    print(f"→ {args.output}")
    failed = [m for m in results.values() if m.details.get("succeeded") is False]
    if failed:
        raise SystemExit(
            "benchmark run(s) failed: "
            + "; ".join(f"{m.step} ({failure_summary(m)})" for m in failed)
            + f"; see {args.output} and the runs' HTML under {args.workdir}"
        )


if __name__ == "__main__":
    main()
