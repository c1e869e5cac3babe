"""Run the pipeline: the stage notebooks, in order, headless, with an audit record.

Each selected stage is executed by papermill into ``runs/<run_id>/NN_<stage>.ipynb`` and
rendered once to a self-contained ``NN_<stage>.html`` next to it; ``run.json`` records the
run (see :mod:`creditrisk.pipeline.records`) and ``runs/latest`` points at the newest run.

Where notebooks run:
    The kernel's working directory is the workspace root (``CREDITRISK_HOME``), so a relative
    path means the same thing in a notebook parameter, in ``pipeline.yaml``'s inputs/outputs
    and on the command line. The kernel inherits ``CREDITRISK_HOME`` (the workspace) and
    ``CREDITRISK_RUN_ID`` (for lineage) from the runner's environment, restored afterwards.

Incremental runs:
    A stage is skipped, and its outputs reused, when its notebook cells, its parameters, its
    code (every module in its notebook's import closure, the SQL they ship, the versions of the
    packages they use: :mod:`creditrisk.pipeline.code`) and its input fingerprints equal those
    of its last successful run and its outputs still have the fingerprints recorded then
    (``runs/.state.json``). An earlier stage that re-runs and changes its outputs therefore
    makes the stages reading them re-run. ``force=True`` runs every selected stage. An input
    that did not exist before its stage ran (data the stage generates on demand, e.g. synthetic
    raw files) is remembered as the stage left it. A skipped stage still has a complete record
    in the new run folder: its HTML is copied from the run that produced its outputs, with a
    banner naming that run, and so are the files it left in its run folder (the model card, the
    drift report).

Parameters:
    ``pipeline.yaml`` defaults, then ``overrides``: ``name`` sets parameter ``name`` of every
    selected stage that declares it, ``stage.name`` that stage's only (and wins). An override
    no stage declares is an error. :func:`parse_overrides` reads ``name=value`` strings from
    the command line with YAML rules (``seed=7`` is an int).

Parameters and policy:
    A stage with a ``module`` in ``pipeline.yaml`` has its declared parameters checked against
    that module's ``Params`` before anything runs; every value that differs from the default is
    recorded in ``run.json`` as a deviation from the documented policy.

Concurrency:
    One run per workspace: a non-blocking file lock (:mod:`creditrisk.locking`), with the
    holder's pid and run id in a sidecar file so a second run can say who holds it, and so a
    stage kernel can prove it belongs to the run (only then does it write production). A stage
    kernel dies with the runner and holds the writer lock while it lives, so no write of a
    killed run can happen after the next run has started.

Interruptions:
    SIGTERM or Ctrl-C (SIGINT): the runner kills the stage's kernel, renders what the notebook
    had done, records the stage and the run as ``interrupted`` (with the signal), releases the
    lock and raises :class:`RunInterrupted` (``creditrisk run`` exits 128 + the signal number).
    SIGKILL leaves ``running`` records behind; the next run marks them ``interrupted`` and
    removes what they left half-written before it starts (:mod:`creditrisk.pipeline.recovery`).
"""

from __future__ import annotations

import contextlib
import html as html_text
import importlib
import importlib.metadata
import os
import re
import shutil
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import JsonValue

from creditrisk import locking, registry, tracking
from creditrisk.governance.deviations import Deviation, FieldPolicy, parameter_deviations
from creditrisk.io import write_text
from creditrisk.pipeline import recovery
from creditrisk.pipeline.code import code_fingerprint
from creditrisk.pipeline.config import (
    PipelineConfig,
    PipelineConfigError,
    StageConfig,
    is_uri,
    load_pipeline_config,
    load_yaml,
    render_template,
)
from creditrisk.pipeline.fingerprints import Fingerprint, HashCache, fingerprint, notebook_sha256
from creditrisk.pipeline.records import (
    HASH_CACHE_FILE,
    STATE_FILE,
    ErrorInfo,
    Interruption,
    PipelineState,
    RunRecord,
    SparkRecord,
    StageRecord,
    StageState,
    new_run_id,
    point_latest,
    utc_now,
)
from creditrisk.provenance import environment_info, git_info, lock_info, to_json_value
from creditrisk.settings import (
    HOME_VARIABLE,
    RUN_ID_VARIABLE,
    Settings,
    Workspace,
    scoped_environment,
)
from creditrisk.stages.results import read_results

Echo = Callable[[str], object]

_NO_OVERRIDES: Mapping[str, object] = MappingProxyType({})
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Tries to start a stage's kernel; a kernel that dies before answering has run nothing.
KERNEL_START_ATTEMPTS = 2

#: A stage result of this name links the stage to an MLflow run: its HTML is attached there.
MLFLOW_RUN_RESULT = "mlflow_run_id"

#: How long an interrupted stage gets to write out its notebook once its kernel is killed.
STOP_SECONDS = 30.0


class PipelineError(Exception):
    """A pipeline run could not start or did not finish."""


class StageFailed(PipelineError):
    """A stage raised; its rendered notebook shows where and why.

    Attributes:
        stage: Name of the failed stage.
        html_path: The rendered failed notebook, or None if execution never started.
        message: The error, e.g. ``"ValueError: AMT_CREDIT has negative values"``.
        run_id: The run the failure is recorded in.
    """

    def __init__(
        self, stage: str, html_path: Path | None, message: str, *, run_id: str | None = None
    ) -> None:
        self.stage = stage
        self.html_path = html_path
        self.message = message
        self.run_id = run_id
        where = f"see {html_path}" if html_path else "no notebook was rendered"
        super().__init__(f"stage {stage!r} failed: {message}\n  {where}")


class PipelineLocked(PipelineError, locking.WorkspaceLocked):
    """Another run holds the workspace lock.

    Attributes:
        holder: The holder's pid, run id, user, host and start time, if it could be read.
    """


class RunExists(PipelineError):
    """The requested run id is taken: run records are immutable."""


class OutputsMissing(PipelineError):
    """A stage finished without writing an output it declares."""


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT stopped the run; it is recorded as ``interrupted``.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` on the way may swallow it.

    Attributes:
        signum: The signal received.
        run_id: The run it stopped.
    """

    def __init__(self, signum: int, run_id: str | None = None) -> None:
        self.signum = signum
        self.run_id = run_id
        super().__init__(f"{signal.Signals(signum).name} received")


def run_pipeline(
    config: PipelineConfig | Path | str,
    workspace: Workspace | Path | str,
    *,
    run_id: str | None = None,
    force: bool = False,
    from_stage: str | None = None,
    to_stage: str | None = None,
    only: Sequence[str] | None = None,
    overrides: Mapping[str, object] = _NO_OVERRIDES,
    kernel_name: str | None = None,
    echo: Echo = print,
    wait_seconds: float = 0.0,
) -> RunRecord:
    """Run the selected stages of the pipeline in a workspace.

    Args:
        config: The pipeline, or the path of its ``pipeline.yaml``.
        workspace: Where every output goes (``CREDITRISK_HOME``).
        run_id: Id of the new run; default a fresh ``20261122T061500Z-3f9a1c``-style id.
        force: Run every selected stage even when nothing changed.
        from_stage: First stage to run (default: the first).
        to_stage: Last stage to run (default: the last).
        only: Run exactly these stages (in pipeline order); excludes from/to.
        overrides: Parameter overrides, ``{"seed": 7, "ingest.size": "tiny"}``.
        kernel_name: Jupyter kernel; default ``pipeline.yaml``'s ``kernel``.
        echo: Receives one progress line per stage event.
        wait_seconds: How long to wait for a workspace in use by another run (0: fail at
            once), e.g. a retrain launched by the monitor stage of a run still in progress.

    Returns:
        The run record, as written to ``runs/<run_id>/run.json``.

    Raises:
        PipelineConfigError: Unknown stage or override, bad run id, missing notebook or
            kernel.
        PipelineLocked: Another run is using the workspace.
        RunExists: ``run_id`` is already taken.
        StageFailed: A stage failed; later stages were not run.
    """
    if not isinstance(config, PipelineConfig):
        config = load_pipeline_config(config)
    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    selected = select_stages(config, from_stage=from_stage, to_stage=to_stage, only=only)
    parameters = resolve_parameters(config, selected, overrides)
    policies = check_declarations(config)
    _check_notebooks(config, selected)
    _check_kernel(kernel_name or config.kernel)
    if run_id is not None:
        _check_run_id(run_id)
    run_id = run_id or new_run_id()

    workspace.runs.mkdir(parents=True, exist_ok=True)
    uri = tracking.tracking_uri(Settings(), workspace)
    with _workspace_lock(workspace, run_id, wait_seconds), _interruptible(run_id):
        recovered = _recover(workspace, run_id, uri, echo)
        record = _start_record(
            config, workspace, run_id, selected, parameters, force, overrides, kernel_name
        )
        if recovered:
            record.recovered = recovered
            record.write(workspace.runs)
        context = _Context(
            config=config,
            workspace=workspace,
            record=record,
            state=PipelineState.load(workspace.runs / STATE_FILE),
            cache=HashCache(workspace.runs / HASH_CACHE_FILE),
            echo=echo,
            force=force,
            policies=policies,
            providers=importlib.metadata.packages_distributions(),
            tracking_uri=uri,
        )
        try:
            with scoped_environment({HOME_VARIABLE: str(workspace.home), RUN_ID_VARIABLE: run_id}):
                _run_stages(context, selected)
        finally:
            _finish(context)
    return record


def parse_overrides(items: Iterable[str]) -> dict[str, JsonValue]:
    """Parse ``name=value`` / ``stage.name=value`` strings, values with YAML rules.

    ``seed=7`` gives an int, ``flag=true`` a bool, ``ids=[1, 2]`` a list, ``source=`` an empty
    string; dates stay strings.

    Args:
        items: Strings as given on the command line (``-p size=tiny``).

    Returns:
        Override keys and parsed values, later items winning.

    Raises:
        PipelineConfigError: An item has no ``=`` or a malformed key or value.
    """
    overrides: dict[str, JsonValue] = {}
    for item in items:
        key, separator, text = item.partition("=")
        key = key.strip()
        if not separator or not re.fullmatch(r"([A-Za-z][A-Za-z0-9_-]*\.)?[A-Za-z_]\w*", key):
            raise PipelineConfigError(
                f"bad parameter override {item!r}: expected name=value or stage.name=value"
            )
        try:
            overrides[key] = "" if not text.strip() else to_json_value(load_yaml(text))
        except Exception as exc:
            raise PipelineConfigError(f"bad value in parameter override {item!r}: {exc}") from None
    return overrides


def select_stages(
    config: PipelineConfig,
    *,
    from_stage: str | None = None,
    to_stage: str | None = None,
    only: Sequence[str] | None = None,
) -> list[StageConfig]:
    """The stages a run executes, in pipeline order.

    Args:
        config: The pipeline.
        from_stage: First stage of a contiguous range.
        to_stage: Last stage of a contiguous range.
        only: Exactly these stages; cannot be combined with a range.

    Returns:
        The selected stages.

    Raises:
        PipelineConfigError: Unknown stage names, an empty or reversed selection.
    """
    if isinstance(only, str):
        only = [only]
    for name in [from_stage, to_stage, *(only or [])]:
        if name is not None:
            config.stage(name)  # raises, listing the stages, for an unknown name
    if only is not None:
        if from_stage or to_stage:
            raise PipelineConfigError("select stages with either only or from/to, not both")
        if not only:
            raise PipelineConfigError("only selects no stage")
        return [stage for stage in config.stages if stage.name in set(only)]
    names = config.stage_names
    first = names.index(from_stage) if from_stage else 0
    last = names.index(to_stage) if to_stage else len(names) - 1
    if first > last:
        raise PipelineConfigError(f"stage {from_stage!r} comes after {to_stage!r}")
    return config.stages[first : last + 1]


def resolve_parameters(
    config: PipelineConfig, selected: Sequence[StageConfig], overrides: Mapping[str, object]
) -> dict[str, dict[str, JsonValue]]:
    """Each selected stage's parameters: its defaults, then the overrides that apply to it.

    Args:
        config: The pipeline (every stage's declared parameters).
        selected: The stages to run.
        overrides: ``name`` → value for every stage declaring ``name``; ``stage.name`` → value
            for one stage, taking precedence.

    Returns:
        Stage name → parameters, as plain JSON values.

    Raises:
        PipelineConfigError: An override names no declared parameter or an unknown stage.
    """
    declared = {stage.name: stage.parameters for stage in config.stages}
    resolved = {stage.name: dict(stage.parameters) for stage in selected}
    # Plain names first so that stage-qualified overrides win.
    for key in sorted(overrides, key=lambda key: "." in key):
        value = _json_override(key, overrides[key])
        stage_name, _, name = key.rpartition(".")
        if stage_name:
            if name not in config.stage(stage_name).parameters:
                raise PipelineConfigError(
                    f"unknown parameter override {key!r}: stage {stage_name!r} declares "
                    f"{_names(declared[stage_name])}"
                )
            targets = [stage_name] if stage_name in resolved else []
        else:
            if not any(name in parameters for parameters in declared.values()):
                listing = "; ".join(f"{stage}: {_names(p)}" for stage, p in declared.items())
                raise PipelineConfigError(
                    f"unknown parameter override {key!r}: no stage declares it ({listing})"
                )
            targets = [stage for stage in resolved if name in declared[stage]]
        for stage in targets:
            resolved[stage][name] = value
    return resolved


@dataclass(frozen=True)
class StagePolicy:
    """A stage's documented policy: its parameters' defaults and what kind of policy each is."""

    defaults: Mapping[str, JsonValue]
    kinds: Mapping[str, FieldPolicy]
    meanings: Mapping[str, str]


def check_declarations(config: PipelineConfig) -> dict[str, StagePolicy]:
    """Each stage's policy; stages naming a ``module`` are checked against its ``Params``.

    Raises:
        PipelineConfigError: A module cannot be imported or has no ``Params``, or
            ``pipeline.yaml``'s parameters of a stage disagree with it (names or defaults).
    """
    from creditrisk.stages.params import StageParams, check_declaration

    policies: dict[str, StagePolicy] = {}
    problems: list[str] = []
    for stage in config.stages:
        if stage.module is None:
            policies[stage.name] = StagePolicy(dict(stage.parameters), {}, {})
            continue
        try:
            # The module is named in pipeline.yaml; importing it is what checking it means.
            params = getattr(importlib.import_module(stage.module), "Params", None)
        except ImportError as exc:
            raise PipelineConfigError(
                f"stage {stage.name!r}: cannot import {stage.module}: {exc}"
            ) from None
        if not (isinstance(params, type) and issubclass(params, StageParams)):
            raise PipelineConfigError(
                f"stage {stage.name!r}: {stage.module} has no Params(StageParams) class"
            )
        problems.extend(check_declaration(stage.name, params, stage.parameters))
        meanings = {n: f.description or "" for n, f in params.model_fields.items()}
        policies[stage.name] = StagePolicy(
            params.documented_policy(), params.field_policies(), meanings
        )
    if problems:
        raise PipelineConfigError(
            "pipeline.yaml disagrees with the stages' declared parameters:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )
    return policies


def render_html(ipynb: Path, html: Path, title: str) -> None:
    """Render an executed notebook to one self-contained HTML file, written atomically.

    Args:
        ipynb: The executed notebook.
        html: Destination.
        title: The page title.
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(ipynb, as_version=4)
    # embed_images inlines images referenced by markdown cells; plot outputs are inline already.
    exporter = HTMLExporter(embed_images=True)
    with warnings.catch_warnings():
        # Recorded results are stored in a MIME type meant to render as nothing.
        warnings.filterwarnings("ignore", "Your element with mimetype.*scrapbook", UserWarning)
        body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    write_text(html, body)


def _kernel_manager_config() -> Any:
    """Kernel manager settings: encrypt kernel traffic where the kernel supports it.

    ipykernel warns on stderr, at every start, that unencrypted TCP is in use; jupyter_client
    provisions CurveZMQ keys instead when the kernelspec declares support ("auto").
    """
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


@dataclass
class _Context:
    """Everything the stages of one run share."""

    config: PipelineConfig
    workspace: Workspace
    record: RunRecord
    state: PipelineState
    cache: HashCache
    echo: Echo
    force: bool
    policies: Mapping[str, StagePolicy]
    #: Import name → installed distributions, read once per run (the code fingerprints).
    providers: Mapping[str, list[str]]
    #: The MLflow store the stages' HTML is attached to.
    tracking_uri: str

    @property
    def run_dir(self) -> Path:
        return self.workspace.runs / self.record.run_id

    def save_record(self) -> None:
        self.record.write(self.workspace.runs)

    def relative(self, path: Path) -> str:
        """A path relative to the workspace when inside it (portable in run.json)."""
        try:
            return path.relative_to(self.workspace.home).as_posix()
        except ValueError:
            return str(path)


def _run_stages(context: _Context, selected: Sequence[StageConfig]) -> None:
    width = max(len(stage.name) for stage in selected)
    for index, stage in enumerate(selected, start=1):
        label = f"[{index}/{len(selected)}] {stage.name:<{width}}"
        stage_record = context.record.stage(stage.name)
        try:
            _run_stage(context, stage, stage_record, label)
        except RunInterrupted as exc:
            _record_interruption(context, stage_record, exc, label)
            raise
        except BaseException as exc:
            error = _record_failure(context, stage_record, exc, label)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends stay what they are
            html = context.workspace.home / stage_record.html if stage_record.html else None
            message = f"{error.type}: {error.message}"
            raise StageFailed(stage.name, html, message, run_id=context.record.run_id) from exc
    context.record.status = "succeeded"


def _run_stage(
    context: _Context, stage: StageConfig, stage_record: StageRecord, label: str
) -> None:
    stage_record.started = utc_now()
    notebook = context.config.notebook_path(stage)
    stage_record.notebook_sha256 = notebook_sha256(notebook)
    stage_record.code = code_fingerprint(
        notebook,
        context.config.project_root,
        sha256=context.cache.sha256,
        providers=context.providers,
    )
    stage_record.deviations = _deviations(context, stage, stage_record)
    inputs = _locations(context, stage, stage.inputs)
    stage_record.inputs = {key: fingerprint(path, context.cache) for key, path in inputs.items()}

    previous = _reusable(context, stage, stage_record)
    if previous is not None:
        _reuse(context, stage_record, previous)
        _note_engine(context.record, stage_record)
        stage_record.status = "skipped"
        stage_record.duration_s = _elapsed(stage_record)
        context.save_record()
        context.echo(f"{label} skipped (unchanged since run {previous.run_id})")
        return

    context.echo(f"{label} running …")
    stage_record.status = "running"
    context.save_record()
    _execute(context, stage, stage_record)

    outputs = _locations(context, stage, stage.outputs)
    stage_record.outputs = {key: fingerprint(path, context.cache) for key, path in outputs.items()}
    missing = [key for key, found in stage_record.outputs.items() if found.kind == "missing"]
    if missing:
        raise OutputsMissing(f"the stage did not write its declared outputs: {', '.join(missing)}")
    _note_engine(context.record, stage_record)
    stage_record.status = "succeeded"
    stage_record.duration_s = _elapsed(stage_record)
    _remember_success(context, stage, stage_record, inputs)
    context.save_record()
    context.echo(f"{label} ok in {stage_record.duration_s:.1f} s → {stage_record.html}")


def _note_engine(record: RunRecord, stage_record: StageRecord) -> None:
    """Keep, at the run's level, the Spark a stage reports having computed on."""
    results = stage_record.results or {}
    if results.get("engine") == "spark":
        record.spark = SparkRecord(
            version=str(results.get("spark_version")), master=str(results.get("spark_master"))
        )


def _run_engine(
    parameters: Mapping[str, dict[str, JsonValue]], overrides: Mapping[str, object]
) -> str:
    """The feature engine a run gives its stages: the ``engine`` parameter of the stages that
    declare one (the override, or their default), ``duckdb`` when none is selected."""
    engines = {str(p["engine"]) for p in parameters.values() if "engine" in p}
    if len(engines) == 1:
        return engines.pop()
    return str(overrides.get("engine", "duckdb"))


def _deviations(
    context: _Context, stage: StageConfig, stage_record: StageRecord
) -> list[Deviation]:
    """The stage's parameters that differ from the documented policy (pipeline.yaml)."""
    policy = context.policies[stage.name]
    return parameter_deviations(
        stage.name, stage_record.parameters, policy.defaults, policy.kinds, policy.meanings
    )


#: Shown on top of a reused stage's HTML in the new run folder.
_REUSED_BANNER = (
    '<div id="creditrisk-reused" style="margin:1rem;padding:0.8rem 1rem;border:2px solid '
    '#bf8700;background:#fff8c5;font-family:system-ui,sans-serif;border-radius:6px">'
    "<strong>Reused from run {run_id}</strong> (finished {finished}). This stage was skipped "
    "in run {this_run}: its notebook, parameters, code (modules, SQL, package versions) and "
    "inputs are unchanged and its outputs are intact, so the record below is that run's.</div>"
)


def _reuse(context: _Context, stage_record: StageRecord, previous: StageState) -> None:
    """Record the reuse; copy the producing run's HTML (with a banner) and its run files."""
    stage_record.reused_from = previous.run_id
    stage_record.results = previous.results
    stage_record.ipynb = previous.ipynb
    if previous.html is not None:
        source_html = context.workspace.home / previous.html
        target = context.run_dir / source_html.name
        banner = _REUSED_BANNER.format(
            run_id=html_text.escape(previous.run_id),
            finished=html_text.escape(previous.finished.isoformat(timespec="seconds")),
            this_run=html_text.escape(context.record.run_id),
        )
        page = source_html.read_text(encoding="utf-8")
        body = re.search(r"<body[^>]*>", page)
        at = body.end() if body else 0
        write_text(target, page[:at] + banner + page[at:])
        stage_record.html = context.relative(target)
    source_dir = context.workspace.runs / previous.run_id
    for name in previous.run_files:
        if (source_dir / name).is_file():
            shutil.copy2(source_dir / name, context.run_dir / name)
            stage_record.run_files.append(name)


def _execute(context: _Context, stage: StageConfig, stage_record: StageRecord) -> None:
    """Run the notebook with papermill, then render it and read its results, even on error."""
    stem = f"{context.config.position(stage.name):02d}_{stage.name}"
    ipynb = context.run_dir / f"{stem}.ipynb"
    html = context.run_dir / f"{stem}.html"
    before = {path.name for path in context.run_dir.iterdir()}
    error: BaseException | None = None
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            _papermill(context, stage, stage_record, ipynb)
            error = None
        except BaseException as exc:
            error = exc
        # A kernel that dies while starting (e.g. a port taken by a kernel another process
        # started at the same moment) has run no cell: starting it again is safe.
        if error is None or not _kernel_failed_to_start(error) or attempt == KERNEL_START_ATTEMPTS:
            break
        context.echo(f"  kernel failed to start ({error}); starting it again")
    if ipynb.exists():  # papermill writes it before executing, so failures are rendered too
        stage_record.ipynb = context.relative(ipynb)
        try:
            render_html(ipynb, html, title=f"{stage.name} · run {context.record.run_id}")
            stage_record.html = context.relative(html)
            stage_record.results = read_results(ipynb)
        except Exception as exc:
            error = error or exc
        else:
            if not isinstance(error, RunInterrupted):
                _attach_to_mlflow_run(context, stage_record, html)
    stage_record.run_files = sorted(
        path.name
        for path in context.run_dir.iterdir()
        if path.is_file() and path.name not in before | {ipynb.name, html.name, "run.json"}
    )
    if error is not None:
        raise error


def _papermill(
    context: _Context, stage: StageConfig, stage_record: StageRecord, ipynb: Path
) -> None:
    """Execute the notebook with papermill in a worker thread; the main thread takes signals.

    nbclient, run in the main thread, replaces SIGINT/SIGTERM handling with its own (it shuts
    the kernel down, and the stage then looks as if its kernel had died). In a worker thread it
    leaves signals alone: :func:`_interruptible` raises :class:`RunInterrupted` here, the
    kernel is killed, and the worker writes out the notebook as far as it got.
    """
    import papermill
    from jupyter_client.manager import AsyncKernelManager

    started: list[AsyncKernelManager] = []

    class TrackedKernelManager(AsyncKernelManager):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            started.append(self)

    outcome: list[BaseException | None] = []

    def execute() -> None:
        try:
            papermill.execute_notebook(
                str(context.config.notebook_path(stage)),
                str(ipynb),
                parameters=stage_record.parameters,
                kernel_name=context.record.kernel,
                cwd=str(context.workspace.home),
                progress_bar=False,
                log_output=False,
                config=_kernel_manager_config(),
                kernel_manager_class=TrackedKernelManager,
            )
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=execute, name=f"stage {stage.name}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.25)
    except RunInterrupted:
        for manager in started:
            _kill_kernel(manager)
        worker.join(STOP_SECONDS)
        raise
    if outcome and outcome[0] is not None:
        raise outcome[0]


def _kill_kernel(manager: Any) -> None:
    """SIGKILL a kernel and everything it started (its own session and process group)."""
    pid = getattr(manager.provisioner, "pid", None)
    if not isinstance(pid, int):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def _interruptible(run_id: str) -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`RunInterrupted` (once) while the run lasts."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not received:  # a second signal while stopping must not abort the clean-up
            received.append(signum)
            raise RunInterrupted(signum, run_id)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _recover(workspace: Workspace, run_id: str, uri: str, echo: Echo) -> list[str]:
    """Close the records of killed runs and remove their leftovers (we hold the lock)."""

    def end_mlflow_runs(stale_run_id: str) -> list[str]:
        try:
            return tracking.end_orphaned_runs(uri, stale_run_id)
        except Exception as exc:  # the store may be unreachable; the records still get fixed
            echo(f"  could not close the MLflow runs of {stale_run_id}: {exc}")
            return []

    notes = recovery.recover(workspace, run_id, end_mlflow_runs=end_mlflow_runs)
    ledger = workspace.reports / registry.LEDGER_FILE
    if ledger.exists():
        try:
            unrecorded = registry.unrecorded_champion(
                ledger, model_name=Settings().model_name, tracking_uri=uri
            )
        except Exception as exc:  # an unreachable store is the stages' to report
            unrecorded = f"could not compare the champion with the ledger: {exc}"
        if unrecorded:
            notes.append(f"WARNING {unrecorded}")
    for note in notes:
        echo(f"recovered: {note}")
    return notes


def _attach_to_mlflow_run(context: _Context, stage_record: StageRecord, html: Path) -> None:
    """A stage that names an MLflow run in its results gets its HTML and results attached."""
    mlflow_run_id = (stage_record.results or {}).get(MLFLOW_RUN_RESULT)
    if not isinstance(mlflow_run_id, str) or not mlflow_run_id:
        return
    try:
        tracking.attach_audit_record(
            mlflow_run_id,
            [html],
            context.tracking_uri,
            context.record.run_id,
            results=dict(stage_record.results or {}),
            results_name=f"{html.stem}.results.json",
        )
    except Exception as exc:  # the HTML stays in runs/; the MLflow copy is a convenience
        context.echo(f"  could not attach {html.name} to MLflow run {mlflow_run_id}: {exc}")


def _kernel_failed_to_start(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "before replying to kernel_info" in str(error)


def _reusable(
    context: _Context, stage: StageConfig, stage_record: StageRecord
) -> StageState | None:
    """The last successful run of the stage if nothing it depends on changed since."""
    previous = context.state.stages.get(stage.name)
    if context.force or not stage.skip_unchanged or previous is None:
        return None
    if (
        previous.notebook_sha256 != stage_record.notebook_sha256
        or previous.parameters != stage_record.parameters
        or stage_record.code is None
        or not stage_record.code.same_as(previous.code)
        or not _unchanged(stage_record.inputs, previous.inputs)
    ):
        return None
    if previous.html is None or not (context.workspace.home / previous.html).is_file():
        return None  # its record is gone: re-run rather than leave this run without one
    outputs = _locations(context, stage, stage.outputs)
    current = {key: fingerprint(path, context.cache) for key, path in outputs.items()}
    if not _unchanged(current, previous.outputs):
        return None
    stage_record.outputs = current
    return previous


def _unchanged(current: Mapping[str, Fingerprint], previous: Mapping[str, Fingerprint]) -> bool:
    return current.keys() == previous.keys() and all(
        found.same_as(previous[key]) for key, found in current.items()
    )


def _remember_success(
    context: _Context, stage: StageConfig, stage_record: StageRecord, inputs: Mapping[str, Any]
) -> None:
    """Store the stage's successful run in the state the next run compares against."""
    remembered = dict(stage_record.inputs)
    for key, found in stage_record.inputs.items():
        if found.kind == "missing":
            # Generated by the stage itself (e.g. synthetic raw data): compare against what it
            # left, or the next run would re-run the stage for having created its own input.
            remembered[key] = fingerprint(inputs[key], context.cache)
    context.state.stages[stage.name] = StageState(
        run_id=context.record.run_id,
        finished=utc_now(),
        notebook_sha256=stage_record.notebook_sha256 or "",
        parameters=stage_record.parameters,
        inputs=remembered,
        outputs=stage_record.outputs,
        results=stage_record.results,
        ipynb=stage_record.ipynb,
        html=stage_record.html,
        code=stage_record.code,
        run_files=stage_record.run_files,
    )
    context.state.save(context.workspace.runs / STATE_FILE)


def _record_failure(
    context: _Context, stage_record: StageRecord, exc: BaseException, label: str
) -> ErrorInfo:
    error = _error_info(exc)
    _close_stage(context, stage_record, "failed", error)
    where = stage_record.html or "no notebook rendered"
    context.echo(f"{label} FAILED after {stage_record.duration_s:.1f} s → {where}")
    return error


def _record_interruption(
    context: _Context, stage_record: StageRecord, exc: RunInterrupted, label: str
) -> None:
    cause = str(exc)
    context.record.interruption = Interruption(
        cause=cause, noticed=utc_now(), noticed_by=context.record.run_id
    )
    error = ErrorInfo(type="Interrupted", message=f"{cause}; the kernel was stopped")
    _close_stage(context, stage_record, "interrupted", error)
    where = stage_record.html or "no notebook rendered"
    context.echo(f"{label} INTERRUPTED ({cause}) after {stage_record.duration_s:.1f} s → {where}")


def _close_stage(
    context: _Context,
    stage_record: StageRecord,
    status: Literal["failed", "interrupted"],
    error: ErrorInfo,
) -> None:
    """A stage that did not succeed ends the run with its status, and the record is saved."""
    stage_record.status = status
    stage_record.duration_s = _elapsed(stage_record)
    stage_record.error = error
    context.record.status = status
    context.save_record()


def _error_info(exc: BaseException) -> ErrorInfo:
    # papermill re-raises the notebook's exception as PapermillExecutionError(ename, evalue).
    name = getattr(exc, "ename", None) or type(exc).__name__
    message = getattr(exc, "evalue", None)
    return ErrorInfo(type=str(name), message=str(message if message is not None else exc))


def _elapsed(stage_record: StageRecord) -> float:
    started = stage_record.started or utc_now()
    return round((utc_now() - started).total_seconds(), 3)


def _locations(
    context: _Context, stage: StageConfig, templates: Sequence[str]
) -> dict[str, str | Path]:
    """Rendered input/output entries → absolute local paths or URIs."""
    stage_record = context.record.stage(stage.name)
    locations: dict[str, str | Path] = {}
    for template in templates:
        rendered = render_template(
            template,
            stage_record.parameters,
            home=context.workspace.home,
            project=context.config.project_root,
        )
        if not rendered:
            continue
        if is_uri(rendered):
            locations[rendered] = rendered
        else:
            path = Path(rendered).expanduser()
            locations[rendered] = path if path.is_absolute() else context.workspace.home / path
    return locations


def _start_record(
    config: PipelineConfig,
    workspace: Workspace,
    run_id: str,
    selected: Sequence[StageConfig],
    parameters: Mapping[str, dict[str, JsonValue]],
    force: bool,
    overrides: Mapping[str, object],
    kernel_name: str | None,
) -> RunRecord:
    """Create ``runs/<run_id>/`` and its first ``run.json`` (every stage not run yet)."""
    run_dir = workspace.runs / run_id
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise RunExists(
            f"run {run_id!r} already exists in {workspace.runs}: run records are immutable; "
            "choose another run id"
        ) from None
    record = RunRecord(
        run_id=run_id,
        started=utc_now(),
        workspace=str(workspace.home),
        project_root=str(config.project_root),
        git=git_info(config.project_root),
        kernel=kernel_name or config.kernel,
        force=force,
        overrides={key: _json_override(key, value) for key, value in overrides.items()},
        engine=_run_engine(parameters, overrides),
        lock=lock_info(config.project_root),
        stages=[
            StageRecord(
                name=stage.name,
                position=config.position(stage.name),
                notebook=stage.notebook,
                parameters=parameters[stage.name],
            )
            for stage in selected
        ],
        **environment_info(),
    )
    record.write(workspace.runs)
    return record


def _finish(context: _Context) -> None:
    """Close the record, point runs/latest at it, keep the hash cache; even after a failure."""
    record = context.record
    if record.status == "running":
        record.status = "failed"  # interrupted between stages
    record.finished = utc_now()
    context.save_record()
    point_latest(context.workspace.runs, record.run_id)
    context.cache.save()


def _check_notebooks(config: PipelineConfig, selected: Sequence[StageConfig]) -> None:
    for stage in selected:
        if not config.notebook_path(stage).is_file():
            raise PipelineConfigError(
                f"stage {stage.name!r}: notebook {config.notebook_path(stage)} not found"
            )


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise PipelineConfigError(
            f"Jupyter kernel {kernel_name!r} is not installed; install it with: python -m "
            f'ipykernel install --sys-prefix --name {kernel_name} --display-name "{kernel_name}"'
        ) from None


def _check_run_id(run_id: str) -> None:
    if not _RUN_ID.match(run_id) or run_id.lower() == "latest":
        raise PipelineConfigError(
            f"bad run id {run_id!r}: use letters, digits, '.', '_' and '-', not 'latest'"
        )


def _json_override(key: str, value: object) -> JsonValue:
    try:
        return to_json_value(value)
    except TypeError as exc:
        raise PipelineConfigError(f"parameter override {key!r}: {exc}") from None


def _names(parameters: Mapping[str, object]) -> str:
    return ", ".join(sorted(parameters)) or "no parameters"


@contextlib.contextmanager
def _workspace_lock(workspace: Workspace, run_id: str, wait_seconds: float = 0.0) -> Iterator[Any]:
    """Hold the workspace lock for one run, or raise PipelineLocked naming the holder."""
    with contextlib.ExitStack() as stack:
        try:
            owner = stack.enter_context(
                locking.workspace_lock(workspace, run_id, wait_seconds, writer=False)
            )
        except locking.WorkspaceLocked as exc:
            raise PipelineLocked(str(exc), exc.holder) from None
        yield owner
