"""The pipeline as an Airflow DAG: one task per ``pipeline.yaml`` stage, each a CLI call.

Tasks, in order:

``freshness``
    ``creditrisk freshness --fail-on-stale``: a stale or missing snapshot stops the run before
    anything trains on it;
one task per stage of ``pipeline.yaml``
    ``creditrisk run --only <stage>``, in the file's order, so a stage added there (e.g.
    ``monitor`` after ``register``) becomes a task here. Each call is the runner's own: it
    renders ``runs/<run_id>/`` and skips a stage whose notebook, parameters and inputs are
    unchanged, so a retried or re-triggered DAG run redoes only what changed;
``promote`` (with ``require_approval=True`` only)
    the stage that declares ``auto_promote`` (register) runs with it off, so the new version
    waits as ``challenger``; a reviewer re-triggers the DAG with ``promote_version`` set and
    this task runs ``creditrisk promote --version N`` (skipped, exit code 99, when it is empty).

Every task retries (``retries``, ``retry_delay``) and has an ``execution_timeout``; one DAG run
at a time, since a workspace runs one pipeline at a time. Stage parameters come through the
run's ``overrides`` (``stage.name=value``, as ``creditrisk run -p``), the real data through
``data`` (a folder or ``s3://bucket/prefix``; AWS credentials from the worker's environment) to
the stage declaring ``source``, and the newest production batch through ``current`` to the
stage declaring ``current`` (monitor).

Airflow is not a dependency of creditrisk: this module imports it only inside
:func:`build_dag`, and builds the module-level ``dag`` only where Airflow is installed. To
deploy, put a file in the DAGs folder with ``from creditrisk.orchestration.airflow_dag import
dag`` (or call :func:`build_dag` with your own arguments); the workers need the ``creditrisk``
command and the repository checkout (``pipeline.yaml`` and the notebooks).
"""

from __future__ import annotations

import importlib.util
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from creditrisk.settings import get_settings

FRESHNESS_TASK = "freshness"
PROMOTE_TASK = "promote"
#: Airflow's BashOperator marks a task skipped, not failed, on this exit code.
SKIP_EXIT_CODE = 99

# Jinja templates rendered by Airflow; ``shquote`` is the DAG's filter for shell quoting.
_DATA = "{{ params.data | shquote }}"
_OVERRIDES = "{% for override in params.overrides %} -p {{ override | shquote }}{% endfor %}"
_FORCE = "{% if params.force %} --force{% endif %}"


def default_pipeline_yaml() -> Path:
    """``pipeline.yaml`` of the repository checkout this package runs from."""
    from creditrisk.settings import PROJECT_ROOT

    return PROJECT_ROOT / "pipeline.yaml"


def stage_commands(
    pipeline_yaml: Path | str,
    *,
    executable: str = "creditrisk",
    require_approval: bool = False,
) -> list[tuple[str, str]]:
    """The DAG's tasks in order: ``(task_id, bash_command)``, the commands Airflow templates.

    Args:
        pipeline_yaml: The pipeline definition whose stages become tasks.
        executable: The ``creditrisk`` command on the workers.
        require_approval: Register without promoting; add the manual ``promote`` task.

    Returns:
        ``freshness``, then one task per stage (named after it), with ``promote`` right after
        the stage declaring ``auto_promote`` when approval is required.

    Raises:
        PipelineConfigError: The file is missing or invalid.
        ValueError: A stage's name clashes with a task of the DAG's own, or approval is
            required but no stage declares ``auto_promote``.
    """
    from creditrisk.pipeline.config import load_pipeline_config

    config = load_pipeline_config(pipeline_yaml)
    cli = shlex.quote(executable)
    clashing = {FRESHNESS_TASK, PROMOTE_TASK} & set(config.stage_names)
    if clashing:
        raise ValueError(f"stage names {sorted(clashing)} clash with the DAG's own tasks")
    freshness = (
        f"{cli} freshness --fail-on-stale"
        " --source {{ (params.freshness_source or params.data) | shquote }}"
        " --max-age-hours {{ params.max_age_hours | float }}"
    )
    commands = [(FRESHNESS_TASK, freshness)]
    approval_added = False
    run = f"{cli} run --config {shlex.quote(str(Path(pipeline_yaml).resolve()))}"
    for stage in config.stages:
        command = f"{run} --only {shlex.quote(stage.name)}"
        if "source" in stage.parameters:
            command += f" --data {_DATA}"
        if "current" in stage.parameters:
            command += _current(stage.name)
        approval_here = require_approval and "auto_promote" in stage.parameters
        if approval_here:
            command += f" -p {shlex.quote(f'{stage.name}.auto_promote=false')}"
        commands.append((stage.name, command + _OVERRIDES + _FORCE))
        if approval_here:
            commands.append((PROMOTE_TASK, _promote_command(cli)))
            approval_added = True
    if require_approval and not approval_added:
        raise ValueError(f"no stage of {pipeline_yaml} declares auto_promote: nothing to approve")
    return commands


def _current(stage: str) -> str:
    # Only when given: an empty value keeps the stage's own default (e.g. the test split).
    assignment = "{{ ('" + stage + ".current=' ~ params.current) | shquote }}"
    return "{% if params.current %} -p " + assignment + "{% endif %}"


def _promote_command(cli: str) -> str:
    version = "{{ params.promote_version | shquote }}"
    reason = "{{ (params.promote_reason or 'approved in Airflow') | shquote }}"
    return (
        f"test -n {version} || exit {SKIP_EXIT_CODE}; "
        f"{cli} promote --version {version} --reason {reason}"
    )


def _shell_quote(value: object) -> str:
    return shlex.quote(str(value))


def build_dag(
    pipeline_yaml: Path | str | None = None,
    *,
    dag_id: str = "creditrisk_pipeline",
    schedule: str | None = "0 3 * * *",
    workspace: str | None = None,
    executable: str = "creditrisk",
    data: str = "",
    current: str = "",
    max_age_hours: float = 48.0,
    require_approval: bool = False,
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=10),
    execution_timeout: timedelta = timedelta(hours=4),
) -> Any:
    """The Airflow DAG of the pipeline (imports Airflow; see the module docstring).

    Args:
        pipeline_yaml: The pipeline definition; default the checkout's ``pipeline.yaml``.
        dag_id: The DAG's id.
        schedule: A cron expression or preset; None: triggered only.
        workspace: ``CREDITRISK_HOME`` of the tasks; default ``$CREDITRISK_HOME`` where the DAG
            is parsed, else the workers' own default.
        executable: The ``creditrisk`` command on the workers.
        data: Default of the ``data`` parameter (empty: the workspace's ``data/raw``).
        current: Default of the ``current`` parameter, the production batch to monitor.
        max_age_hours: Default maximum age of the snapshot for the freshness gate.
        require_approval: Promotion waits for a person (the ``promote`` task).
        retries: Retries of every task.
        retry_delay: Wait before a retry.
        execution_timeout: Longest run of one task.
    """
    try:  # Airflow 3
        from airflow.sdk import DAG, Param
    except ImportError:  # Airflow 2
        from airflow import DAG
        from airflow.models.param import Param
    try:
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError:  # Airflow 2 without the standard provider
        from airflow.operators.bash import BashOperator

    path = Path(pipeline_yaml) if pipeline_yaml is not None else default_pipeline_yaml()
    tasks = stage_commands(path, executable=executable, require_approval=require_approval)
    settings = get_settings()
    home = workspace or (str(settings.home) if settings.home_is_explicit else None)
    env = {"DO_NOT_TRACK": "1", **({"CREDITRISK_HOME": home} if home else {})}
    params = {
        "data": Param(data, type="string", description="folder or s3://bucket/prefix"),
        "current": Param(
            current, type="string", description="production batch to monitor; empty: test split"
        ),
        "freshness_source": Param(
            "", type="string", description="what the freshness gate checks; empty: data"
        ),
        "max_age_hours": Param(max_age_hours, type="number", minimum=0),
        "overrides": Param(
            [],
            type="array",
            items={"type": "string"},
            description="stage parameters, stage.name=value (creditrisk run -p)",
        ),
        "force": Param(False, type="boolean", description="re-run unchanged stages"),
    }
    if require_approval:
        params["promote_version"] = Param(
            "", type="string", description="registry version to make champion; empty: none"
        )
        params["promote_reason"] = Param("", type="string", description="why, for the ledger")

    with DAG(
        dag_id=dag_id,
        description="creditrisk PD pipeline: freshness gate, the stage notebooks, monitoring",
        schedule=schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        default_args={
            "owner": "creditrisk",
            "retries": retries,
            "retry_delay": retry_delay,
            "execution_timeout": execution_timeout,
        },
        params=params,
        user_defined_filters={"shquote": _shell_quote},
        tags=["creditrisk"],
        doc_md=__doc__,
    ) as dag:
        previous = None
        after_optional = False
        for task_id, command in tasks:
            task = BashOperator(
                task_id=task_id,
                bash_command=command,
                env=env,
                append_env=True,
                skip_on_exit_code=SKIP_EXIT_CODE if task_id == PROMOTE_TASK else None,
                # After the optional promotion, a skipped promote must not skip the rest.
                trigger_rule="none_failed" if after_optional else "all_success",
            )
            if previous is not None:
                previous >> task
            previous = task
            after_optional = after_optional or task_id == PROMOTE_TASK
    return dag


# Airflow collects module-level DAG objects; without Airflow this module only defines functions.
if importlib.util.find_spec("airflow") is not None:
    dag = build_dag()
