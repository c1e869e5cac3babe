"""The ``creditrisk`` command line (Typer): every Makefile target is a one-liner into it.

Commands that change the workspace outside the runner (``ingest``, ``features``, ``monitor``,
``freshness``, ``manifest``, ``promote``, ``rollback``) hold the workspace lock while they run,
like a pipeline run, and run their stage in pipeline mode; ``creditrisk run`` is the runner.
This module is the only one of ``creditrisk`` that imports the serving layer (``score``,
``serve``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from creditrisk.settings import PROJECT_ROOT, EngineName, get_settings

if TYPE_CHECKING:
    from creditrisk.stages.context import RunContext

app = typer.Typer(
    name="creditrisk",
    help="Jupyter-first credit-risk PD platform on the Home Credit data model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SizeOption = Annotated[
    str, typer.Option("--size", help="synthetic size: tiny (2k), small (30k), full (307,511) or N")
]
SeedOption = Annotated[int, typer.Option("--seed", help="synthetic data seed")]


class Engine(StrEnum):
    """The feature engines (``--engine``); the default is the settings' (``CREDITRISK_ENGINE``)."""

    duckdb = "duckdb"
    spark = "spark"


EngineOption = Annotated[
    Engine | None,
    typer.Option(
        "--engine",
        help="feature engine: duckdb or spark (default CREDITRISK_ENGINE, else duckdb)",
        case_sensitive=False,
    ),
]


def _engine(option: Engine | None) -> EngineName:
    """The engine asked for: the option, else the settings'."""
    return cast(EngineName, option.value) if option is not None else get_settings().engine


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def _governed(stage: str, command: str) -> Iterator[RunContext]:
    """Hold the workspace lock for a command and give its stage a pipeline-mode context.

    Exits 3 (as ``creditrisk run`` does) when another run holds the workspace.
    """
    from creditrisk import locking
    from creditrisk.pipeline.records import new_run_id
    from creditrisk.stages.context import governed

    try:
        with governed(get_settings(), f"cli-{command}-{new_run_id()}") as context:
            yield context(stage)
    except locking.WorkspaceLocked as exc:
        raise _fail(str(exc), 3) from exc


@app.command()
def generate(
    size: SizeOption = "small",
    seed: SeedOption = 42,
    out: Annotated[
        Path | None, typer.Option(help="output directory (default: data/raw of the workspace)")
    ] = None,
    drift: Annotated[
        bool, typer.Option("--drift", help="a production batch of new applicants, shifted")
    ] = False,
    income_shift: Annotated[
        float | None, typer.Option(help="with --drift: relative income shift, e.g. 0.3")
    ] = None,
    ext_source_shift: Annotated[
        float | None, typer.Option(help="with --drift: shift of EXT_SOURCE_* scores, e.g. -0.08")
    ] = None,
    history_shift: Annotated[
        float | None, typer.Option(help="with --drift: worsening of payment behaviour, e.g. 0.5")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite non-synthetic files")] = False,
) -> None:
    """Generate synthetic Home Credit CSVs (Kaggle file names, columns and types)."""
    from dataclasses import replace

    from creditrisk.data import synthetic

    workspace = get_settings().workspace
    target = out or (workspace.data / "production" if drift else workspace.raw)
    holds_real_files = (
        target.is_dir() and any(target.iterdir()) and synthetic.read_marker(target) is None
    )
    if holds_real_files and not force:
        raise _fail(f"{target} holds files that are not synthetic; use --force to replace them")
    spec = None
    if drift:
        spec = synthetic.DriftSpec.default()
        shifts = {
            "income_shift": income_shift,
            "ext_source_shift": ext_source_shift,
            "history_shift": history_shift,
        }
        spec = replace(spec, **{k: v for k, v in shifts.items() if v is not None})
    result = synthetic.generate(target, size=size, seed=seed, drift=spec, progress=True)
    typer.echo(
        f"{result.n_applicants:,} applicants, {sum(result.rows.values()):,} rows "
        f"in {result.seconds:.1f} s → {result.out_dir}"
    )


@app.command()
def ingest(
    source: Annotated[
        str, typer.Option(help="directory or s3://bucket/prefix; empty = data/raw (synthetic)")
    ] = "",
    size: SizeOption = "small",
    seed: SeedOption = 42,
    threads: Annotated[int, typer.Option(help="DuckDB threads, 0 = all cores")] = 0,
) -> None:
    """Ingest a snapshot into data/bronze without the notebook (the pipeline runs 01_ingest)."""
    from creditrisk.data.ingest import IngestError
    from creditrisk.stages import ingest as stage

    params = stage.Params(source=source, size=size, seed=seed, threads=threads)
    with _governed("ingest", "ingest") as ctx:
        try:
            summary = stage.run(params, ctx, echo=typer.echo).summary
        except IngestError as exc:
            raise _fail(f"ingest failed: {exc}") from exc
    typer.echo(f"snapshot {summary['snapshot_id'][:16]}: {summary['status']}")
    for warning in summary["warnings"]:
        typer.echo(f"  warning: {warning}")


@app.command()
def features(
    threads: Annotated[int, typer.Option(help="DuckDB threads, 0 = all cores")] = 0,
    engine: EngineOption = None,
) -> None:
    """Build data/features/feature_store.parquet without the notebook."""
    from creditrisk.spark.session import SparkUnavailable
    from creditrisk.stages import features as stage

    params = stage.Params(threads=threads, engine=_engine(engine))
    with _governed("features", "features") as ctx:
        try:
            outcome = stage.run(params, ctx)
        except (FileNotFoundError, SparkUnavailable) as exc:
            raise _fail(str(exc)) from exc
    built = outcome.summary
    typer.echo(
        f"{built.rows:,} applicants x {built.n_features} features "
        f"in {built.seconds:.1f} s on {outcome.engine.engine} → {outcome.path}"
    )


@app.command()
def run(
    size: Annotated[
        str | None, typer.Option("--size", help="synthetic size for the ingest stage")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="real input: a directory or s3://bucket/prefix"),
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="id of this run")] = None,
    force: Annotated[bool, typer.Option("--force", help="re-run stages even if unchanged")] = False,
    from_stage: Annotated[str | None, typer.Option("--from", help="first stage to run")] = None,
    to_stage: Annotated[str | None, typer.Option("--to", help="last stage to run")] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="run only these stages (repeatable)")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="parameter override name=value or stage.name=value"),
    ] = None,
    config: Annotated[Path, typer.Option(help="pipeline definition")] = PROJECT_ROOT
    / "pipeline.yaml",
    wait: Annotated[
        float,
        typer.Option("--wait", help="seconds to wait for a workspace in use by another run"),
    ] = 0.0,
    engine: EngineOption = None,
) -> None:
    """Run the notebook pipeline with papermill into runs/<run_id>/."""
    from creditrisk.pipeline.config import load_pipeline_config
    from creditrisk.pipeline.runner import (
        PipelineLocked,
        RunInterrupted,
        StageFailed,
        parse_overrides,
        run_pipeline,
    )

    settings = get_settings()
    try:
        overrides = parse_overrides(param or [])
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    if size is not None:
        overrides.setdefault("size", size)
    if data is not None:
        overrides.setdefault("source", data)
    chosen = _engine(engine)
    if engine is not None or chosen != "duckdb":
        # Every stage declaring `engine` gets it; `-p features.engine=…` still wins for its stage.
        overrides.setdefault("engine", chosen)
    try:
        pipeline = load_pipeline_config(config)
        record = run_pipeline(
            pipeline,
            settings.workspace,
            run_id=run_id,
            force=force,
            from_stage=from_stage,
            to_stage=to_stage,
            only=only or None,
            overrides=overrides,
            echo=typer.echo,
            wait_seconds=wait,
        )
    except StageFailed as exc:
        raise _fail(f"pipeline failed: {exc}") from exc
    except PipelineLocked as exc:
        raise _fail(str(exc), 3) from exc
    except RunInterrupted as exc:
        where = settings.workspace.runs / (exc.run_id or "")
        raise _fail(
            f"run interrupted: {exc}; recorded as interrupted in {where}", 128 + exc.signum
        ) from None
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    typer.echo(f"run {record.run_id} done → {settings.workspace.runs / record.run_id}")


@app.command()
def score(
    input: Annotated[
        str,
        typer.Option("--input", help="folder or s3://bucket/prefix of Kaggle-named raw tables"),
    ],
    output: Annotated[
        Path, typer.Option("--output", help="scores file: .parquet, .csv or .csv.gz")
    ],
    model_uri: Annotated[
        str | None,
        typer.Option(
            "--model-uri", help="registry URI; default models:/<CREDITRISK_MODEL_NAME>@champion"
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="unscorable rows; default <output>.rejects.<ext> beside the output"),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(help="applicants scored per chunk")] = 50_000,
    reasons: Annotated[int, typer.Option(help="adverse reason codes per applicant")] = 4,
    memory_limit: Annotated[
        str, typer.Option(help="DuckDB memory limit for staging and features")
    ] = "2GB",
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    engine: EngineOption = None,
) -> None:
    """Score every applicant of a raw-table input with the champion (batch).

    Relative paths are relative to the workspace (CREDITRISK_HOME), as everywhere in the
    pipeline: `--input data/raw` is the workspace's raw data.
    """
    from creditrisk.scoring import ScoringError
    from creditrisk.spark.session import SparkUnavailable
    from serving.batch import BatchError, score_files

    try:
        result = score_files(
            get_settings(),
            input,
            output,
            model_uri=model_uri,
            rejects=rejects,
            chunk_rows=chunk_rows,
            reasons=reasons,
            memory_limit=memory_limit or None,
            progress=progress,
            engine=_engine(engine),
        )
    except (BatchError, ScoringError, SparkUnavailable) as exc:
        raise _fail(f"scoring failed: {exc}") from exc
    typer.echo(
        f"{result.entities:,} applicants scored by {result.model_name} version "
        f"{result.model_version} on {result.engine['engine']} → {result.output}; "
        f"{result.rejected} row(s) rejected → "
        f"{result.rejects} ({result.duration_s:.1f} s)"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the REST API (POST /predict …) on the champion with uvicorn."""
    import logging
    import sys

    import uvicorn

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    # The service writes its own JSON access log (request id, status, duration, model version).
    uvicorn.run(
        "serving.api:app", host=host, port=port, workers=workers, access_log=False, log_config=None
    )


@app.command()
def promote(
    version: Annotated[str, typer.Option("--version", help="registry version to make champion")],
    reason: Annotated[str, typer.Option(help="why, for the promotion ledger")] = "manual promotion",
    force: Annotated[
        bool, typer.Option("--force", help="promote although validation failed (recorded)")
    ] = False,
) -> None:
    """Move the alias champion to a registered version of the workspace's model."""
    from creditrisk.registry import RegistryError
    from creditrisk.stages.register import promote_by_hand

    with _governed("register", "promote") as ctx:
        try:
            record = promote_by_hand(ctx, version, reason, force)
        except RegistryError as exc:
            raise _fail(f"promotion refused: {exc}") from exc
    typer.echo(
        f"{record.model_name}@champion → version {record.version} "
        f"(previous: {record.previous_champion or 'none'})"
    )


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="why, for the promotion ledger")] = "manual rollback",
) -> None:
    """Move the alias champion back to the previous champion, per the promotion ledger."""
    from creditrisk.registry import RegistryError
    from creditrisk.stages.register import rollback_by_hand

    with _governed("register", "rollback") as ctx:
        try:
            record = rollback_by_hand(ctx, reason)
        except RegistryError as exc:
            raise _fail(f"rollback refused: {exc}") from exc
    typer.echo(
        f"{record.model_name}@champion → version {record.version} "
        f"(was: {record.previous_champion or 'none'})"
    )


@app.command()
def info() -> None:
    """Show the workspace, where each artefact lives and the current champion."""
    from creditrisk import registry, tracking

    settings = get_settings()
    ws = settings.workspace
    uri = tracking.tracking_uri(settings)
    for label, path in [
        ("workspace", ws.home),
        ("raw data", ws.raw),
        ("bronze", ws.bronze),
        ("feature store", ws.feature_store),
        ("runs", ws.runs),
        ("reports", ws.reports),
        ("scratch", ws.scratch),
        ("mlflow", uri),
    ]:
        typer.echo(f"{label:<14} {path}")
    if uri != ws.mlflow_uri or ws.mlflow_db.exists():
        champion = registry.current_champion(settings.model_name, tracking_uri=uri)
        described = (
            "none yet"
            if champion is None
            else f"{registry.champion_uri(settings.model_name)} → version {champion.version} "
            f"(run {champion.run_id})"
        )
        typer.echo(f"{'champion':<14} {described}")


@app.command()
def freshness(
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="folder or s3:// prefix of the raw tables (default: data/raw)"
        ),
    ] = None,
    max_age_hours: Annotated[
        float, typer.Option("--max-age-hours", help="maximum age of a table's file")
    ] = 48.0,
    fail_on_stale: Annotated[
        bool, typer.Option("--fail-on-stale", help="exit 1 when a table is stale or missing")
    ] = False,
) -> None:
    """Age of each source table's snapshot against a maximum → reports/data_freshness.json."""
    from creditrisk.data.sources import SourceError
    from creditrisk.io import write_json
    from creditrisk.monitoring.freshness import check_freshness
    from creditrisk.stages.monitor import FRESHNESS_FILE

    with _governed("monitor", "freshness") as ctx:
        try:
            report = check_freshness(source or ctx.workspace.raw, max_age_hours=max_age_hours)
        except (SourceError, ValueError) as exc:
            raise _fail(str(exc)) from exc
        path = write_json(ctx.workspace.reports / FRESHNESS_FILE, report)
    for row in report["tables"]:
        state = "STALE" if row["stale"] else "ok"
        typer.echo(f"{row['table']:<24} {row['age_hours']:>10} h  {state}")
    for reason in report["reasons"]:
        typer.secho(reason, fg=typer.colors.RED, err=True)
    typer.echo(f"{'stale' if report['stale'] else 'fresh'} → {path}")
    if fail_on_stale and report["stale"]:
        raise typer.Exit(1)


@app.command()
def monitor(
    current: Annotated[
        str,
        typer.Option(
            "--current", help="raw tables of a batch (folder or s3://…); empty: the test split"
        ),
    ] = "",
    labels: Annotated[
        str, typer.Option(help="SK_ID_CURR,TARGET outcomes; default <current>/labels.csv")
    ] = "",
    model_uri: Annotated[
        str, typer.Option("--model-uri", help="registry URI; default the champion")
    ] = "",
    auto_retrain: Annotated[
        bool, typer.Option("--auto-retrain", help="launch the retrain when the trigger fires")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", help="monitor parameter name=value, e.g. consecutive=3"),
    ] = None,
    fail_on_retrain: Annotated[
        bool, typer.Option("--fail-on-retrain", help="exit 4 when a retrain is called for")
    ] = False,
    engine: EngineOption = None,
) -> None:
    """Drift, stability, back-test and the retrain decision for a batch → reports/.

    The same as the pipeline's 07_monitor stage, without the notebook: for production batches
    between pipeline runs (`make monitor CURRENT=…`).
    """
    import logging
    import sys

    from pydantic import ValidationError

    from creditrisk.data.sources import SourceError
    from creditrisk.monitoring.cloudwatch import CloudWatchError
    from creditrisk.pipeline.runner import parse_overrides
    from creditrisk.scoring import ScoringError
    from creditrisk.scoring.batch import BatchError
    from creditrisk.spark.session import SparkUnavailable
    from creditrisk.stages import monitor as stage

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    try:
        extra = parse_overrides(param or [])
        params = stage.Params(
            **{
                "current": current,
                "labels": labels,
                "model_uri": model_uri,
                "auto_retrain": auto_retrain,
                "engine": _engine(engine),
                **extra,
            }
        )
    except (ValueError, ValidationError) as exc:
        raise _fail(f"bad monitor parameters: {exc}", 2) from exc
    with _governed("monitor", "monitor") as ctx:
        try:
            outcome = stage.run(params, ctx, echo=typer.echo)
        except (FileNotFoundError, BatchError, ScoringError, SourceError, SparkUnavailable) as exc:
            raise _fail(f"monitoring failed: {exc}") from exc
        except CloudWatchError as exc:
            raise _fail(f"reports written, but publishing to CloudWatch failed: {exc}") from exc
    typer.echo(outcome.headline())
    for reason in outcome.decision.reasons:
        typer.echo(f"  {reason}")
    for name in ("drift_html", "stability", "trigger"):
        typer.echo(f"{name:<12} {outcome.paths[name]}")
    if fail_on_retrain and outcome.decision.retrain:
        raise typer.Exit(4)


# ---------------------------------------------------------------------------------------------
# Release: the deploy manifest and the post-deployment smoke test
# ---------------------------------------------------------------------------------------------


@app.command()
def manifest(
    image: Annotated[
        str, typer.Option("--image", help="image to build, e.g. ghcr.io/lender/creditrisk-api")
    ] = "creditrisk-api",
    tag: Annotated[
        str | None, typer.Option("--tag", help="image tag; default the champion's version")
    ] = None,
) -> None:
    """Deploy manifest of the current champion → reports/deploy_manifest.json."""
    from creditrisk.io import read_json
    from creditrisk.registry import RegistryError
    from creditrisk.stages.register import write_manifest

    with _governed("register", "manifest") as ctx:
        try:
            path = write_manifest(ctx, image=image, tag=tag)
        except RegistryError as exc:  # no champion, or an unreadable promotion ledger
            raise _fail(f"no deploy manifest: {exc}") from exc
        except ValueError as exc:
            raise _fail(str(exc), 2) from exc
    written = read_json(path)
    model, validation = written["model"], written["validation"]
    verdict = {True: "passed", False: "FAILED", None: "unknown"}[validation["passed"]]
    typer.echo(
        f"{model['registry_uri']} → version {model['version']} (MLflow run "
        f"{model['mlflow_run_id']}); validation {verdict} ({validation['n_gates']} gates); "
        f"image {written['image']['reference']}"
    )
    for warning in written["warnings"]:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"→ {path}")


@app.command()
def smoke(
    url: Annotated[
        str, typer.Option("--url", help="base URL of the running API, e.g. http://127.0.0.1:8000")
    ],
    timeout: Annotated[
        float, typer.Option("--timeout", help="seconds to wait for /ready (and for /predict)")
    ] = 120.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="CREDITRISK_API_KEY",
            help="X-API-Key, if the service requires one",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Smoke-test a deployed API: wait for GET /ready, then score the example applicant."""
    from creditrisk.smoke import SmokeFailed, smoke_test

    try:
        result = smoke_test(url, timeout=timeout, api_key=api_key)
    except SmokeFailed as exc:
        raise _fail(f"smoke test failed: {exc}") from exc
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    typer.echo(result.describe())
    typer.echo("smoke test passed")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="creditrisk")


if __name__ == "__main__":  # pragma: no cover
    main()
