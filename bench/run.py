"""Benchmarks at scale: generation, ingest and feature build vs the pandas reference.

Each step runs in its own process (bench/steps.py); wall time is measured here and peak memory
is the child's maximum resident set size (``wait4`` rusage), so steps do not share a peak.
Results go to bench/RESULTS.md. Usage::

    python bench/run.py [--size full] [--workdir bench/output] [--reuse-data]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3


@dataclass
class Measurement:
    step: str
    seconds: float
    peak_bytes: int
    details: dict

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB


def measure(step: str, *args: str) -> Measurement:
    """Run one step in a child process; wall time and the child's peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "steps.py"), step, *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    output = process.stdout.read() if process.stdout else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"benchmark step {step} failed with exit code {process.returncode}")
    details = json.loads(output.strip().splitlines()[-1])
    # ru_maxrss is in KiB on Linux.
    return Measurement(step, seconds, usage.ru_maxrss * 1024, details)


def verdict(ok: bool) -> str:
    return "✅ met" if ok else "❌ missed"


def machine() -> str:
    import duckdb
    import pandas
    import pyarrow

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB RAM, {cpu}, "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
        f"pandas {pandas.__version__}, pyarrow {pyarrow.__version__}"
    )


def report(size: str, results: dict[str, Measurement], csv_bytes: int) -> str:
    gen, ing, feat, ref = (results.get(k) for k in ("generate", "ingest", "features", "reference"))
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC).isoformat(timespec='seconds')} with `make bench` "
        f"(`python bench/run.py --size {size}`) on {machine()}.",
        "",
        f"Input: SIZE={size}: {ing.details['rows']:,} rows in eight CSV files, "
        f"{csv_bytes / 1e9:.2f} GB."
        if ing
        else "",
        "",
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
    if ing and feat:
        total = ing.seconds + feat.seconds
        lines.append(f"| ingest + features | {total:.1f} s | — | < 90 s | {verdict(total < 90)} |")
    lines += [
        "",
        "Notes:",
        "",
        "- The reference runs the same SQL files as the feature stage; only the data movement",
        "  differs (pandas `read_csv` of every file, DuckDB over registered pandas frames, results",
        "  merged in pandas). Its time depends mostly on `read_csv` of these files.",
        "- Ingest includes SHA-256 + MD5 of every file (in threads, beside the DuckDB conversion),",
        "  the Pandera contracts on streamed 2M-row batches, key uniqueness and referential",
        "  integrity in DuckDB, and the atomic swap of `data/bronze`.",
        "- Generation forks worker processes; its peak is that of the largest single process.",
        "- The feature time includes interpreter start and imports (about 1 s).",
    ]
    lines += ["", "Row counts generated:", ""]
    if gen:
        lines += [f"- {name}: {rows:,}" for name, rows in gen.details["rows"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="full")
    parser.add_argument("--workdir", type=Path, default=HERE / "output")
    parser.add_argument("--reuse-data", action="store_true", help="keep generated CSVs")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()

    raw, workspace = args.workdir / "raw", args.workdir / "workspace"
    results: dict[str, Measurement] = {}
    if not (args.reuse_data and (raw / "_SYNTHETIC.json").exists()):
        shutil.rmtree(raw, ignore_errors=True)
        results["generate"] = measure("generate", str(raw), args.size)
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    results["ingest"] = measure("ingest", str(raw), str(workspace))
    results["features"] = measure("features", str(workspace))
    results["reference"] = measure(
        "reference", str(raw), str(args.workdir / "reference_feature_store.parquet")
    )
    csv_bytes = sum(p.stat().st_size for p in raw.glob("*.csv"))
    for m in results.values():
        print(f"{m.step:<10} {m.seconds:8.1f} s  {m.peak_gib:6.2f} GiB  {m.details}")
    args.results.write_text(report(args.size, results, csv_bytes), encoding="utf-8")
    print(f"→ {args.results}")


if __name__ == "__main__":
    main()
