"""Benchmarks at scale: generation, ingest and feature build vs the pandas reference, the model
stages 03–06, and the whole pipeline at the default size.

Each step runs in its own process (bench/steps.py, or ``creditrisk run`` for the pipeline
steps); wall time is measured here and peak memory is the child's maximum resident set size
(``wait4`` rusage), so steps do not share a peak. Results go to bench/RESULTS.md. Usage::

    python bench/run.py [--size full] [--workdir bench/output] [--reuse-data]
                        [--output bench/RESULTS.md] [--skip-reference] [--skip-model]
                        [--skip-pipeline | --only-pipeline] [--pipeline-param NAME=VALUE …]

The model step runs ``creditrisk run --from train --to register`` in the workspace that the
ingest and features steps built; the pipeline step runs ``creditrisk run --size small`` (the
default of ``make pipeline``) in a fresh, empty workspace, whatever ``--size`` is. Either
fails the benchmark (exit code 1, after writing the results) unless every stage succeeded.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3
# The console script of the venv running this file (not resolved: a venv's python is a link).
CREDITRISK = Path(sys.executable).parent / "creditrisk"
MODEL_STAGES = ("train", "evaluate", "validate", "register")
PIPELINE_STAGES = ("ingest", "features", *MODEL_STAGES)
PIPELINE_SIZE = "small"  # what `make pipeline` runs by default
TARGET_SECONDS = {"model": 180, "pipeline": 180}


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
    env = {**os.environ, "CREDITRISK_HOME": str(workspace.resolve())}
    env.pop("CREDITRISK_RUN_ID", None)
    argv = [str(CREDITRISK), "run", "--run-id", run_id, "--force", *cli_args]
    print(f"$ CREDITRISK_HOME={workspace} {' '.join(argv)}", flush=True)
    seconds, peak, code, _ = run_child(argv, env)
    details = run_details(workspace / "runs" / run_id / "run.json")
    details["exit_code"] = code
    details["command"] = " ".join(["creditrisk", *argv[1:]])
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
    shown = {
        "n_features": "{:,} features",
        "best_iteration": "best iteration {}",
        "test_auc": "test AUC {:.3f}",
        "test_ks": "KS {:.3f}",
        "n_gates": "{} gates passed",
        "version": "registered version {}",
    }
    return ", ".join(fmt.format(results[key]) for key, fmt in shown.items() if key in results)


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


def pipeline_sections(
    size: str, model: Measurement | None, pipeline: Measurement | None
) -> list[str]:
    """The per-stage tables of the two ``creditrisk run`` measurements."""
    lines: list[str] = []
    if model:
        rows = model.details.get("split_rows") or {}
        split = ", ".join(f"{name} {n:,} rows" for name, n in rows.items())
        lines += [
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
    if pipeline:
        lines += [
            "",
            f"## Whole pipeline at SIZE={PIPELINE_SIZE} (`make pipeline`)",
            "",
            f"`{pipeline.details['command']}` in a fresh, empty workspace (synthetic data "
            f"generated by the ingest stage); run `{pipeline.details['run_id']}`.",
            "",
            *failure(pipeline),
            *stage_table(pipeline),
        ]
    return lines


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
    if "model" in results or "pipeline" in results:
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
        *overrides_warning(params if model or pipeline else ()),
        "Each step runs in its own process; peak memory is that process's maximum RSS.",
        "",
        "| step | wall time | peak memory | target | result |",
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
    if pipeline:
        label = f"whole pipeline, SIZE={PIPELINE_SIZE}, fresh workspace (`make pipeline`)"
        lines.append(pipeline_row(label, pipeline, TARGET_SECONDS["pipeline"]))
    lines += [
        "",
        "Notes:",
        "",
        *notes(results),
    ]
    lines += pipeline_sections(size, model, pipeline)
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
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--skip-pipeline", action="store_true", help="no whole-pipeline run")
    only.add_argument(
        "--only-pipeline",
        action="store_true",
        help=f"only the whole pipeline at SIZE={PIPELINE_SIZE} (ignores --size)",
    )
    parser.add_argument(
        "--pipeline-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="forwarded to both `creditrisk run`s as -p (smoke runs only; repeatable)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    raw, workspace = args.workdir / "raw", args.workdir / "workspace"
    results: dict[str, Measurement] = {}
    if not args.only_pipeline:
        results.update(measure_data_steps(args, raw, workspace))
    if not args.skip_pipeline:
        results["pipeline"] = measure_whole_pipeline(args)
    csv_bytes = sum(p.stat().st_size for p in raw.glob("*.csv"))
    for m in results.values():
        details = {k: v for k, v in m.details.items() if k != "stages"}
        print(f"{m.step:<10} {m.seconds:8.1f} s  {m.peak_gib:6.2f} GiB  {details}")
        for stage in m.details.get("stages", []):
            seconds = stage["duration_s"] or 0.0
            print(f"{'':<12}{stage['name']:<10} {stage['status']:<10} {seconds:.1f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = report(args.size, results, csv_bytes, args.pipeline_param)
    # The serving benchmarks (bench/serving_bench.py) keep their own section of the file.
    previous = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    start, end = "<!-- serving:start -->", "<!-- serving:end -->"
    if start in previous and end in previous:
        section = previous[previous.index(start) : previous.index(end) + len(end)]
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    args.output.write_text(text, encoding="utf-8")
    print(f"→ {args.output}")
    failed = [m for m in results.values() if m.details.get("succeeded") is False]
    if failed:
        raise SystemExit(
            "pipeline run(s) failed: "
            + "; ".join(
                f"{m.step} (run {m.details['run_id']}, {m.details['status']})" for m in failed
            )
            + f"; see {args.output} and the runs' HTML under {args.workdir}"
        )


if __name__ == "__main__":
    main()
