"""Serving benchmarks: the REST service against `mlflow models serve`, and the batch scorer.

    python bench/serving_bench.py [--workspace bench/output/workspace] [--raw bench/output/raw]
                            [--requests 1000] [--load 20000] [--skip-batch] [--million]

REST (both servers on 127.0.0.1, one uvicorn worker each, measured one after the other in the
same run so they never share the two cores):

* ours: ``creditrisk serve`` — raw application + history in, features (the training SQL),
  PD, score, decision and reason codes out;
* reference: ``mlflow models serve`` of the same registered champion, given the *precomputed*
  feature vector of the same applicant.

For each: p50/p95/p99 over ``--requests`` sequential requests (keep-alive), then throughput and
p99 with 8 concurrent clients. Then a load test of ``--load`` requests with 8 clients against
ours: errors and p99. Each request scores one applicant; the requests cycle through
``--applicants`` application_test applicants with a "typical history" picked from the full data
(about 5 bureau credits with monthly balances, 5 previous applications, 40 instalments, a card
and a POS loan), so concurrent requests are for different applicants, as in real traffic.

Batch: ``creditrisk score`` on the full ``application_test`` (48,744 applicants) against the
full history tables, in a child process (wall time, peak RSS); with ``--million``, a
1,000,000-applicant synthetic input generated for the purpose.

The results replace the serving section of bench/RESULTS.md (between its markers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
START, END = "<!-- serving:start -->", "<!-- serving:end -->"
CLIENTS = 8


# ---------------------------------------------------------------------------------------------
# Typical applicants
# ---------------------------------------------------------------------------------------------


def typical_applicants(raw: Path, count: int) -> list[int]:
    """Up to ``count`` application_test applicants with a typical history (module docstring),
    the most typical first."""
    import duckdb

    con = duckdb.connect()

    def csv(name: str) -> str:
        return str(raw / f"{name}.csv")

    query = """
        with b as (select SK_ID_CURR, count(*) n from read_csv_auto($bureau) group by 1),
             bb as (select b.SK_ID_CURR, count(*) n from read_csv_auto($bureau) b
                    join read_csv_auto($bb) x using (SK_ID_BUREAU) group by 1),
             p as (select SK_ID_CURR, count(*) n from read_csv_auto($prev) group by 1),
             i as (select SK_ID_CURR, count(*) n from read_csv_auto($inst) group by 1),
             c as (select SK_ID_CURR, count(distinct SK_ID_PREV) n
                   from read_csv_auto($cc) group by 1),
             s as (select SK_ID_CURR, count(distinct SK_ID_PREV) n
                   from read_csv_auto($pos) group by 1)
        select a.SK_ID_CURR
        from read_csv_auto($app) a
        join b using (SK_ID_CURR) join bb using (SK_ID_CURR) join p using (SK_ID_CURR)
        join i using (SK_ID_CURR) join c using (SK_ID_CURR) join s using (SK_ID_CURR)
        where b.n between 4 and 6 and p.n between 4 and 6 and i.n between 30 and 50
          and c.n = 1 and s.n = 1
        order by abs(b.n - 5) + abs(p.n - 5) + abs(i.n - 40) / 10, a.SK_ID_CURR
        limit $count
    """
    found = con.execute(
        query,
        {
            "app": csv("application_test"),
            "bureau": csv("bureau"),
            "bb": csv("bureau_balance"),
            "prev": csv("previous_application"),
            "inst": csv("installments_payments"),
            "cc": csv("credit_card_balance"),
            "pos": csv("POS_CASH_balance"),
            "count": count,
        },
    ).fetchall()
    if not found:
        raise SystemExit(f"no applicant with a typical history in {raw}")
    return [int(row[0]) for row in found]


def _json_rows(frame: Any, stem: str) -> list[dict[str, Any]]:
    from creditrisk.data.tables import tables

    kinds = {c.name: c.duckdb_type for c in tables()[stem].columns}
    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for name, kind in kinds.items():
            value = record.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row[name] = None
            else:
                row[name] = (
                    int(value)
                    if kind == "BIGINT"
                    else float(value)
                    if kind == "DOUBLE"
                    else str(value)
                )
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Payload:
    """One applicant's /predict body, the MLflow /invocations body of its feature vector, and
    the row counts of its history."""

    applicant: int
    body: dict[str, Any]
    invocation: dict[str, Any]
    counts: dict[str, int]


def payloads(raw: Path, applicants: list[int]) -> list[Payload]:
    """A :class:`Payload` per applicant, from one scan of each raw table."""
    import duckdb

    from creditrisk.features.engine import compute_features
    from serving.api import request_tables
    from serving.schemas import HISTORY_KEYS, PredictRequest

    con = duckdb.connect()

    def rows(stem: str, key: str, ids: list[int]) -> Any:
        frame = con.execute(
            f"select * from read_csv(?, header = true, all_varchar = true) "
            f"where {key}::BIGINT in (select unnest(?))",
            [str(raw / f"{stem}.csv"), ids],
        ).df()
        return frame, frame[key].astype("int64")

    tables = {"applications": rows("application_test", "SK_ID_CURR", applicants)}
    for key, stem in HISTORY_KEYS.items():
        if key != "bureau_balance":
            tables[key] = rows(stem, "SK_ID_CURR", applicants)
    bureau, bureau_owner = tables["bureau"]
    credits = [int(x) for x in bureau["SK_ID_BUREAU"]] or [-1]
    tables["bureau_balance"] = rows("bureau_balance", "SK_ID_BUREAU", credits)
    owner_of_credit = dict(zip(bureau["SK_ID_BUREAU"].astype("int64"), bureau_owner, strict=True))

    out = []
    for applicant in applicants:
        body: dict[str, Any] = {}
        for key, stem in (("applications", "application_test"), *HISTORY_KEYS.items()):
            frame, keys = tables[key]
            if key == "bureau_balance":
                mine = keys.map(owner_of_credit) == applicant
            else:
                mine = keys == applicant
            body[key] = _json_rows(frame[mine.to_numpy()], stem)
        counts = {key: len(value) for key, value in body.items()}
        request = PredictRequest.model_validate(body)
        features = compute_features(request_tables(request)).to_pandas()
        vector = features.drop(columns=["SK_ID_CURR", "TARGET"])
        invocation = {
            "dataframe_split": {
                "columns": list(vector.columns),
                "data": json.loads(vector.to_json(orient="values")),
            }
        }
        out.append(Payload(applicant, body, invocation, counts))
    return out


# ---------------------------------------------------------------------------------------------
# Servers and load
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process on 127.0.0.1, stopped on exit."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], ready: str) -> None:
        self.name, self.command, self.env, self.ready = name, command, env, ready
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        import httpx

        log = open(HERE / "output" / f"{self.name}.log", "wb")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited; see bench/output/{self.name}.log")
            try:
                if httpx.get(self.ready, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"{self.name} did not become ready in 180 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Load:
    latencies_ms: list[float]
    seconds: float
    errors: int

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": len(self.latencies_ms),
            "errors": self.errors,
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "p99_ms": self.percentile(99),
            "mean_ms": statistics.fmean(self.latencies_ms),
            "req_per_s": self.throughput,
        }


def hammer(url: str, bodies: list[dict[str, Any]], requests: int, clients: int) -> Load:
    """``requests`` POSTs spread over ``clients`` keep-alive connections.

    Request k of client i sends ``bodies[(i + k * clients) % len(bodies)]``: with at least as
    many bodies as clients, requests in flight at the same time are for different applicants,
    as in real traffic.
    """
    import httpx

    contents = [json.dumps(body).encode() for body in bodies]
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    per_client = [
        requests // clients + (1 if i < requests % clients else 0) for i in range(clients)
    ]

    def client(i: int) -> None:
        nonlocal errors
        local, failed = [], 0
        with httpx.Client(timeout=60) as session:
            for k in range(per_client[i]):
                content = contents[(i + k * clients) % len(contents)]
                started = time.perf_counter()
                response = session.post(url, content=content, headers=headers)
                local.append((time.perf_counter() - started) * 1000)
                failed += response.status_code != 200
        with lock:
            latencies.extend(local)
            errors += failed

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return Load(latencies, time.perf_counter() - started, errors)


def measure_server(url: str, bodies: list[dict[str, Any]], requests: int) -> dict[str, Any]:
    hammer(url, bodies, 50, 1)  # warm-up: first requests load lazily initialised parts
    sequential = hammer(url, bodies, requests, 1)
    concurrent = hammer(url, bodies, max(requests, 2000), CLIENTS)
    return {"sequential": sequential.as_dict(), "concurrent": concurrent.as_dict()}


def serving_env(workspace: Path) -> dict[str, str]:
    env = {**os.environ, "CREDITRISK_HOME": str(workspace.resolve())}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workspace.resolve() / 'mlflow.db'}"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs uvicorn from PATH
    env.pop("CREDITRISK_API_KEY", None)
    return env


def rest_benchmark(
    workspace: Path, raw: Path, requests: int, load: int, applicants: int
) -> dict[str, Any]:
    chosen = payloads(raw, typical_applicants(raw, applicants))
    bodies = [p.body for p in chosen]
    invocations = [p.invocation for p in chosen]
    env = serving_env(workspace)
    results: dict[str, Any] = {
        "applicants": [p.applicant for p in chosen],
        "history_rows": {
            key: statistics.median(p.counts[key] for p in chosen) for key in chosen[0].counts
        },
    }
    port = free_port()
    ours = [str(BIN / "creditrisk"), "serve", "--port", str(port), "--workers", "1"]
    with Server("creditrisk_serve", ours, env, f"http://127.0.0.1:{port}/ready"):
        url = f"http://127.0.0.1:{port}/predict"
        results["ours"] = measure_server(url, bodies, requests)
        results["load"] = hammer(url, bodies, load, CLIENTS).as_dict()
    port = free_port()
    reference = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/CreditRiskPD@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with Server("mlflow_models_serve", reference, env, f"http://127.0.0.1:{port}/ping"):
        results["mlflow"] = measure_server(
            f"http://127.0.0.1:{port}/invocations", invocations, requests
        )
    return results


# ---------------------------------------------------------------------------------------------
# Batch
# ---------------------------------------------------------------------------------------------


def run_child(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """A child to its end: seconds, peak RSS (bytes, largest process of its tree), stderr."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{command[:3]} failed: {err.decode()[-2000:]}")
    return seconds, usage.ru_maxrss * 1024, err.decode()


def batch_benchmark(workspace: Path, raw: Path, label: str) -> dict[str, Any]:
    """Score ``application_test`` of ``raw`` (or ``application_train`` when there is no test
    file) against all history tables of ``raw``."""
    folder = HERE / "output" / f"batch_input_{label}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    applications = (
        "application_test"
        if (raw / "application_test.csv").exists() and label == "full"
        else "application_train"
    )
    for path in raw.glob("*.csv"):
        if path.stem.startswith("application") and path.stem != applications:
            continue
        (folder / path.name).symlink_to(path.resolve())
    output = HERE / "output" / f"scores_{label}.parquet"
    command = [
        str(BIN / "creditrisk"),
        "score",
        "--input",
        str(folder),
        "--output",
        str(output.resolve()),
        "--no-progress",
    ]
    seconds, peak, err = run_child(command, serving_env(workspace))
    log = next(json.loads(line) for line in err.splitlines() if '"batch_scored"' in line)
    return {
        "input": applications,
        "seconds": seconds,
        "peak_gib": peak / 1024**3,
        "entities": log["entities"],
        "per_second": log["entities"] / seconds,
        "rejected": log["rejected"],
    }


def million_input(out: Path) -> Path:
    if not (out / "application_train.csv").exists():
        from creditrisk.data import synthetic

        synthetic.generate(out, size=1_000_000, seed=7)
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "✅ met" if ok else "❌ missed"


def report(results: dict[str, Any]) -> str:
    lines = [START, "", "## Serving", ""]
    lines.append(
        "Measured with `python bench/serving_bench.py --million` (each part says when); a run "
        "that skips a part keeps its last figures."
    )
    rest = results.get("rest")
    if not rest:
        lines += ["", "REST: not measured yet (`--skip-rest`)."]
    if rest:
        ours, ref = rest["ours"], rest["mlflow"]
        lines += [
            "",
            f"`POST /predict`, one applicant per request, cycling through "
            f"{len(rest['applicants'])} application_test applicants with a typical history "
            "(median rows: "
            + ", ".join(f"{k} {v:g}" for k, v in rest["history_rows"].items())
            + "); with 8 clients the requests in flight are for different applicants. "
            "mlflow serve gets the same applicants' precomputed feature vectors. One uvicorn "
            "worker each, 127.0.0.1, keep-alive clients; the two servers ran one after the "
            f"other in one run ({rest['measured_at']}).",
            "",
            "| service | p50 | p95 | p99 | sequential req/s | 8 clients req/s | 8 clients p99 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, label in (
            (ours, "creditrisk serve: raw → features → PD, decision, reasons"),
            (ref, "mlflow models serve: precomputed features → PD"),
        ):
            s, c = name["sequential"], name["concurrent"]
            lines.append(
                f"| {label} | {s['p50_ms']:.1f} ms | {s['p95_ms']:.1f} ms | {s['p99_ms']:.1f} ms "
                f"| {s['req_per_s']:.1f} | {c['req_per_s']:.1f} | {c['p99_ms']:.1f} ms |"
            )
        p99_ratio = ours["sequential"]["p99_ms"] / ref["sequential"]["p99_ms"]
        throughput_ratio = ours["concurrent"]["req_per_s"] / ref["concurrent"]["req_per_s"]
        load = rest["load"]
        lines += [
            "",
            "| target | measured | result |",
            "| --- | --- | --- |",
            f"| p99 ≤ ½ of mlflow serve's | {p99_ratio:.2f}× | {verdict(p99_ratio <= 0.5)} |",
            f"| 8-client throughput ≥ 2× mlflow serve's | {throughput_ratio:.2f}× "
            f"| {verdict(throughput_ratio >= 2)} |",
            f"| load test: {load['requests']:,} requests, 8 clients, zero errors "
            f"| {load['errors']} errors, p99 {load['p99_ms']:.1f} ms, "
            f"{load['req_per_s']:.1f} req/s | {verdict(load['errors'] == 0)} |",
        ]
    for key, title in (
        ("batch_full", "full application_test against the full history"),
        ("batch_million", "1,000,000 applicants"),
    ):
        batch = results.get(key)
        if batch:
            target = " (target: peak < 4 GiB)" if key == "batch_million" else ""
            ok = f" {verdict(batch['peak_gib'] < 4)}" if key == "batch_million" else ""
            lines += [
                "",
                f"Batch, {title}{target}: {batch['entities']:,} applicants ({batch['input']}) "
                f"in {batch['seconds']:.1f} s — {batch['per_second']:,.0f} applicants/s, "
                f"peak {batch['peak_gib']:.2f} GiB{ok}; {batch['rejected']} rows rejected "
                f"({batch['measured_at']}).",
            ]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        text = before + section.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", type=Path, default=HERE / "output" / "workspace")
    parser.add_argument("--raw", type=Path, default=HERE / "output" / "raw")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--load", type=int, default=20_000)
    parser.add_argument(
        "--applicants", type=int, default=64, help="distinct typical applicants to cycle through"
    )
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    results: dict[str, Any] = {}
    if not args.skip_rest:
        results["rest"] = rest_benchmark(
            args.workspace, args.raw, args.requests, args.load, args.applicants
        )
        print(json.dumps(results["rest"], indent=1))
    if not args.skip_batch:
        results["batch_full"] = batch_benchmark(args.workspace, args.raw, "full")
        print(results["batch_full"])
    if args.million:
        raw = million_input(HERE / "output" / "raw_1m")
        results["batch_million"] = batch_benchmark(args.workspace, raw, "million")
        print(results["batch_million"])
    write_section(
        args.output, report(merge_results(HERE / "output" / "serving_results.json", results))
    )
    print(f"→ {args.output}")


def merge_results(path: Path, measured: dict[str, Any]) -> dict[str, Any]:
    """This run's results over the earlier ones kept in ``path`` (each with when it was measured),
    so a run with ``--skip-rest`` or without ``--million`` keeps the other figures."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    merged.update({key: {**value, "measured_at": stamp} for key, value in measured.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1))
    return merged


if __name__ == "__main__":
    main()
