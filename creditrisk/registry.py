"""The MLflow model registry as the interface between training and serving.

Serving loads ``models:/CreditRiskPD@champion`` (architecture principle 3). MLflow 3 deprecates
stages, so the lifecycle is expressed with aliases on versions of one registered model:

``challenger``
    the newest registered version (set by :func:`register`);
``champion``
    the version serving scores (moved by :func:`promote` and :func:`rollback`);
``previous_champion``
    the version :func:`rollback` would restore, kept reachable for a quick manual check.

The registered model's name is a workspace setting (``CREDITRISK_MODEL_NAME``, default
``CreditRiskPD``): the registry, and so every alias, belongs to the tracking server, and the
ledger to the workspace. Workspaces sharing a server therefore need a name each, or one's
registration would move the other's ``champion`` behind its ledger's back.

The registry keeps no history of alias moves, so every move is also appended to a **promotion
ledger**: a JSON Lines file (default ``reports/promotion_ledger.jsonl``), one
:class:`PromotionRecord` per line, appended and fsynced, never rewritten. The ledger is the
record of who moved which alias, when, why and on what evidence; :func:`rollback` replays it to
find the champion before the current one. Moves are serialised by a lock file beside the ledger.

A version whose validation failed is never promoted unless forced, and a forced promotion says
so in the ledger (principle 6: a failed run never moves the champion alias).

What production serves is frozen on the version when it is registered: the decision policy
(cut-off and score scaling), the headline metrics, the policy deviations it was validated with
and whether its data were synthetic, as version tags. Serving reads them from the version, so
nothing written to the version's MLflow run afterwards can change a registered model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from creditrisk import tracking
from creditrisk.governance.deviations import Deviation
from creditrisk.governance.gates import Gate, gates_from_report
from creditrisk.io import IncompleteLineError, append_line
from creditrisk.provenance import current_user

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

DEFAULT_MODEL_NAME = tracking.MODEL_NAME  # "CreditRiskPD"
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"

LEDGER_FILE = "promotion_ledger.jsonl"
PROMOTION_REPORT_FILE = "registry_promotion.json"

MODEL_DESCRIPTION = (
    "Calibrated probability of default (PD) for retail credit applications on the Home Credit "
    "data model, trained by the creditrisk pipeline. Alias 'champion' is the version serving "
    "scores, 'challenger' the newest candidate, 'previous_champion' the rollback target; "
    "every alias move is recorded in the creditrisk promotion ledger."
)

#: Version tags written by :func:`register`.
TAG_VALIDATION_PASSED = "validation_passed"
TAG_VALIDATION_FAILED = "validation_failed_gates"
TAG_VALIDATION_GATES = "validation_gates"
TAG_PIPELINE_RUN_ID = "pipeline_run_id"
TAG_DECISION_POLICY = "decision_policy"
TAG_HEADLINE_METRICS = "headline_metrics"
TAG_DEVIATIONS = "policy_deviations"
TAG_SYNTHETIC = "synthetic_data"

#: Metrics frozen on a version at registration (what ``/metadata`` reports).
HEADLINE_METRICS = ("test_auc", "test_gini", "test_ks", "test_brier", "test_ece")

#: Registry servers limit tag values (Databricks to 5000 characters); beyond this the gates tag
#: drops the free-text details.
_MAX_GATES_TAG = 5000

Action = Literal["register", "promote", "rollback"]


class RegistryError(Exception):
    """A registry operation cannot be done; the message says why and what to do."""


class PromotionRefused(RegistryError):
    """Promotion of a version whose validation failed (or is unknown) without ``force``."""


class LedgerError(RegistryError):
    """The promotion ledger cannot be read or appended to safely."""


class PromotionRecord(BaseModel):
    """One alias move, as one line of the promotion ledger."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    timestamp: str = Field(description="UTC time of the move, ISO 8601")
    action: Action
    model_name: str
    alias: str = Field(description="the alias that moved: challenger or champion")
    version: str = Field(description="the version the alias points at after the move")
    previous_champion: str | None = Field(
        description="the champion version just before the move (None: there was none)"
    )
    actor: str = Field(description="who made the move (OS user unless given)")
    reason: str
    forced: bool = Field(False, description="promoted although validation failed or is unknown")
    validation_passed: bool | None = Field(None, description="None: no gate results known")
    gates: list[Gate] = Field(default_factory=list)
    pipeline_run_id: str | None = None
    mlflow_run_id: str | None = Field(None, description="MLflow run that produced the version")
    model_source: str | None = Field(None, description="the version's source model URI")
    decision_policy: dict[str, Any] | None = Field(
        None, description="the cut-off and score scaling the version serves with"
    )
    deviations: list[Deviation] = Field(
        default_factory=list,
        description="parameters that differed from pipeline.yaml's policy when it was validated",
    )
    synthetic_data: dict[str, Any] | None = Field(
        None, description="the generator's marker when the training data were synthetic"
    )


# ---------------------------------------------------------------------------------------------
# URIs and clients
# ---------------------------------------------------------------------------------------------


def champion_uri(model_name: str = DEFAULT_MODEL_NAME) -> str:
    """The URI serving loads: ``models:/CreditRiskPD@champion``."""
    return f"models:/{model_name}@{CHAMPION}"


def registry_client(tracking_uri: str | None) -> MlflowClient:
    """An MLflow client whose registry is the tracking store's."""
    from mlflow import MlflowClient

    # The registry lives in the tracking store (SQLite locally, the tracking server's database
    # at scale), so an explicit tracking URI names the registry too.
    if tracking_uri is None:
        return MlflowClient()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _error_code(exc: Exception) -> str | None:
    return getattr(exc, "error_code", None)


def _default_actor() -> str:
    return current_user()


def _now() -> str:
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------------------------------------
# Registry reads
# ---------------------------------------------------------------------------------------------


def _aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(model_name)
    except MlflowException as exc:
        if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: str(version) for alias, version in (registered.aliases or {}).items()}


def _model_version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, version)
    except MlflowException as exc:
        if _error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            raise RegistryError(
                f"registered model {model_name!r} has no version {version}"
            ) from exc
        raise


def current_champion(
    model_name: str = DEFAULT_MODEL_NAME, *, tracking_uri: str | None = None
) -> ModelVersion | None:
    """The version the ``champion`` alias points at, or None if there is none yet."""
    client = registry_client(tracking_uri)
    version = _aliases(client, model_name).get(CHAMPION)
    return None if version is None else _model_version(client, model_name, version)


def aliases(
    model_name: str = DEFAULT_MODEL_NAME, *, tracking_uri: str | None = None
) -> dict[str, str]:
    """Every alias of the registered model and the version it points at ({} if no model)."""
    return _aliases(registry_client(tracking_uri), model_name)


def run_metrics(run_id: str, *, tracking_uri: str | None = None) -> dict[str, float]:
    """The metrics logged to an MLflow run (latest value per key), for the consistency gate."""
    return dict(registry_client(tracking_uri).get_run(run_id).data.metrics)


def version_for_run(
    run_id: str,
    model_name: str = DEFAULT_MODEL_NAME,
    *,
    tracking_uri: str | None = None,
    decision_policy: Mapping[str, Any] | None = None,
) -> str | None:
    """The version already registered from this MLflow run (the newest if several), or None.

    Lets the register stage be re-run without creating a duplicate version of the same model.
    With ``decision_policy``, only a version frozen with that same policy counts: the same trees
    with another cut-off are another version (they decide differently).
    """
    from mlflow.exceptions import MlflowException

    client = registry_client(tracking_uri)
    try:
        found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException as exc:
        if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    matching = list(found)
    if decision_policy is not None:
        wanted = json.loads(json.dumps(decision_policy))  # the form a tag round-trips to
        matching = [v for v in matching if decision_policy_of(v) == wanted]
    versions = sorted(int(found_version.version) for found_version in matching)
    return str(versions[-1]) if versions else None


# ---------------------------------------------------------------------------------------------
# What a version serves with, frozen at registration
# ---------------------------------------------------------------------------------------------


def _json_tag(model_version: ModelVersion, tag: str) -> Any:
    text = (model_version.tags or {}).get(tag)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def decision_policy_of(model_version: ModelVersion) -> dict[str, Any] | None:
    """The decision policy (cut-off, score scaling) frozen on a version, or None (older ones)."""
    policy = _json_tag(model_version, TAG_DECISION_POLICY)
    return policy if isinstance(policy, dict) else None


def headline_metrics_of(model_version: ModelVersion) -> dict[str, float] | None:
    """The headline test metrics frozen on a version, or None (older ones)."""
    metrics = _json_tag(model_version, TAG_HEADLINE_METRICS)
    if not isinstance(metrics, dict):
        return None
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def deviations_of(model_version: ModelVersion) -> list[Deviation] | None:
    """The policy deviations a version was validated with, or None when not recorded."""
    records = _json_tag(model_version, TAG_DEVIATIONS)
    if not isinstance(records, list):
        return None
    try:
        return [Deviation.model_validate(record) for record in records]
    except ValidationError:
        return None


def synthetic_data_of(model_version: ModelVersion) -> dict[str, Any] | None:
    """The synthetic generator's marker when the version was trained on synthetic data."""
    marker = _json_tag(model_version, TAG_SYNTHETIC)
    return marker if isinstance(marker, dict) else None


def _frozen_tags(
    decision_policy: Mapping[str, Any] | None,
    headline_metrics: Mapping[str, float] | None,
    deviations: Sequence[Deviation] | None,
    synthetic_data: Mapping[str, Any] | None,
) -> dict[str, str]:
    tags = {}
    if decision_policy is not None:
        tags[TAG_DECISION_POLICY] = json.dumps(decision_policy, separators=(",", ":"))
    if headline_metrics is not None:
        tags[TAG_HEADLINE_METRICS] = json.dumps(dict(headline_metrics), separators=(",", ":"))
    if deviations is not None:
        payload = [deviation.model_dump(mode="json") for deviation in deviations]
        tags[TAG_DEVIATIONS] = json.dumps(payload, separators=(",", ":"))[:_MAX_GATES_TAG]
    tags[TAG_SYNTHETIC] = json.dumps(dict(synthetic_data)) if synthetic_data else "null"
    return tags


# ---------------------------------------------------------------------------------------------
# Gates on versions
# ---------------------------------------------------------------------------------------------


def _gate_list(gates: Sequence[Gate] | Mapping[str, Any] | None) -> list[Gate] | None:
    if gates is None:
        return None
    if isinstance(gates, Mapping):
        return gates_from_report(gates)
    return list(gates)


def _passed(gates: list[Gate] | None) -> bool | None:
    # No gates at all is "not validated", never "passed".
    if gates is None:
        return None
    return bool(gates) and all(gate.passed for gate in gates)


def _validation_tags(gates: list[Gate] | None) -> dict[str, str]:
    if gates is None:
        return {}
    payload = [gate.model_dump(mode="json") for gate in gates]
    encoded = json.dumps(payload, separators=(",", ":"))
    if len(encoded) > _MAX_GATES_TAG:
        encoded = json.dumps([{**gate, "detail": ""} for gate in payload], separators=(",", ":"))[
            :_MAX_GATES_TAG
        ]
    return {
        TAG_VALIDATION_PASSED: "true" if _passed(gates) else "false",
        TAG_VALIDATION_FAILED: ",".join(gate.name for gate in gates if not gate.passed),
        TAG_VALIDATION_GATES: encoded,
    }


def _gates_from_tags(tags: Mapping[str, str]) -> list[Gate] | None:
    """The gate results :func:`register` stored on a version, or None if there are none."""
    if TAG_VALIDATION_PASSED not in tags:
        return None
    try:
        return [Gate.model_validate(gate) for gate in json.loads(tags[TAG_VALIDATION_GATES])]
    except (KeyError, ValueError, TypeError, ValidationError):
        # The gate list is unreadable (e.g. cut to fit a server's limit): keep the verdict.
        verdict = tags[TAG_VALIDATION_PASSED] == "true"
        failed = tags.get(TAG_VALIDATION_FAILED, "")
        return [
            Gate(
                name="validation",
                value=verdict,
                threshold=True,
                comparison="==",
                passed=verdict,
                detail=f"from version tags; failed gates: {failed}" if failed else "from tags",
            )
        ]


def recorded_gates(model_version: ModelVersion) -> list[Gate] | None:
    """The gate results :func:`register` stored on a version, or None if it has none."""
    return _gates_from_tags(model_version.tags or {})


# ---------------------------------------------------------------------------------------------
# The ledger
# ---------------------------------------------------------------------------------------------


def read_ledger(path: Path | str) -> list[PromotionRecord]:
    """Every record of the promotion ledger, oldest first ([] if the file does not exist).

    Raises:
        LedgerError: A line is not a ledger record; the message names the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                records.append(PromotionRecord.model_validate_json(line))
            except ValidationError as exc:
                raise LedgerError(f"{path}:{number}: not a promotion record: {exc}") from exc
    return records


def append_ledger(path: Path | str, record: PromotionRecord) -> None:
    """Append one record as one line and fsync it; earlier lines are never touched.

    Raises:
        LedgerError: The file ends in an incomplete line (an interrupted write); appending
            would merge two records, so it is left for a person to inspect.
    """
    try:
        append_line(path, record.model_dump_json())
    except IncompleteLineError as exc:
        raise LedgerError(str(exc)) from exc


def latest_record(
    path: Path | str, version: str | int, model_name: str = DEFAULT_MODEL_NAME
) -> PromotionRecord:
    """The newest ledger record that moved an alias of ``model_name`` to ``version``.

    Raises:
        LedgerError: The ledger records no move to that version.
    """
    matching = [
        record
        for record in read_ledger(path)
        if record.model_name == model_name and record.version == str(version)
    ]
    if not matching:
        raise LedgerError(f"{path} records no alias move to {model_name} version {version}")
    return matching[-1]


@contextmanager
def _ledger_lock(ledger_path: Path) -> Iterator[None]:
    from filelock import FileLock

    # Two promotions racing would each read the same history; one at a time per ledger.
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(ledger_path.with_name(f".{ledger_path.name}.lock")):
        yield


def champion_history(
    records: Sequence[PromotionRecord], model_name: str = DEFAULT_MODEL_NAME
) -> list[str]:
    """The champions of ``model_name`` as the ledger tells it: oldest first, current last.

    A promotion pushes its version (after the champion it replaced, if the ledger had not seen
    that one); a rollback removes the current champion. So the element before the last is the
    version :func:`rollback` restores.
    """
    history: list[str] = []
    for record in records:
        if record.model_name != model_name or record.alias != CHAMPION:
            continue
        if record.action == "promote":
            previous = record.previous_champion
            if previous is not None and (not history or history[-1] != previous):
                history.append(previous)  # a champion set outside creditrisk, still a champion
            history.append(record.version)
        elif record.action == "rollback":
            if history and history[-1] == record.previous_champion:
                history.pop()
            if not history or history[-1] != record.version:
                history.append(record.version)
    return history


def unrecorded_champion(
    ledger_path: Path | str, *, model_name: str = DEFAULT_MODEL_NAME, tracking_uri: str | None
) -> str | None:
    """Why the registry's champion is not the one the ledger ends with, or None if it is.

    A promotion moves the alias, then appends its ledger line; a process killed between the
    two (or someone moving the alias in the MLflow UI) leaves a champion no record explains.
    Nothing is moved back here: that would be a change of production of its own. The message
    says how to put it under the ledger again.
    """
    history = champion_history(read_ledger(ledger_path), model_name)
    current = _aliases(registry_client(tracking_uri), model_name).get(CHAMPION)
    if not history or history[-1] == current:
        return None
    return (
        f"{model_name}: the registry's champion is version {current or 'none'} but the ledger "
        f"{ledger_path} ends with version {history[-1]}: a promotion was stopped between the "
        "alias move and its ledger line, or the alias was moved outside creditrisk; promote the "
        f"intended version with `creditrisk promote --version N --reason …` to record it"
    )


# ---------------------------------------------------------------------------------------------
# Alias moves
# ---------------------------------------------------------------------------------------------


def _ensure_registered_model(client: MlflowClient, model_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name, description=MODEL_DESCRIPTION)
    except MlflowException as exc:
        if _error_code(exc) not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            raise


def _logged_model_id(model_uri: str) -> str | None:
    # MLflow 3's log_model returns models:/m-<id>; linking the version to that logged model
    # keeps the UI's model → version link (models:/<name>/<version> URIs are not logged models).
    reference = model_uri.removeprefix("models:/")
    if model_uri.startswith("models:/") and reference.startswith("m-") and "/" not in reference:
        return reference
    return None


def _set_aliases(client: MlflowClient, model_name: str, aliases: Mapping[str, str | None]) -> None:
    for alias, version in aliases.items():
        if version is None:
            if alias in _aliases(client, model_name):
                client.delete_registered_model_alias(model_name, alias)
        else:
            client.set_registered_model_alias(model_name, alias, version)


@contextmanager
def _restoring_aliases_on_error(
    client: MlflowClient, model_name: str, aliases: Sequence[str]
) -> Iterator[None]:
    # An alias move the ledger does not record would be an unaudited change: if the ledger
    # append fails, put the aliases back before re-raising.
    before = _aliases(client, model_name)
    try:
        yield
    except BaseException:
        _set_aliases(client, model_name, {alias: before.get(alias) for alias in aliases})
        raise


def register(
    model_uri: str,
    *,
    run_id: str,
    model_name: str = DEFAULT_MODEL_NAME,
    tags: Mapping[str, str] | None = None,
    gates: Sequence[Gate] | Mapping[str, Any] | None = None,
    actor: str | None = None,
    reason: str = "registered by the training pipeline",
    ledger_path: Path | str | None = None,
    pipeline_run_id: str | None = None,
    tracking_uri: str | None = None,
    decision_policy: Mapping[str, Any] | None = None,
    headline_metrics: Mapping[str, float] | None = None,
    deviations: Sequence[Deviation] | None = None,
    synthetic_data: Mapping[str, Any] | None = None,
) -> str:
    """Register a logged model as a new version and point ``challenger`` at it.

    Args:
        model_uri: The logged model, e.g. ``ModelInfo.model_uri`` (``models:/m-…``).
        run_id: The MLflow run that trained it.
        model_name: The registered model; created with a description if it does not exist.
        tags: Extra version tags.
        gates: The validation gates (list, or the report from ``validation_report``); stored as
            version tags so a later promotion knows whether the version passed.
        actor: Who registers; default the OS user.
        reason: Why, for the ledger.
        ledger_path: The promotion ledger; None records nothing (an exploratory registration).
        pipeline_run_id: The pipeline run that registers (None outside the pipeline).
        tracking_uri: The MLflow tracking (and registry) URI; default MLflow's current one.
        decision_policy: The cut-off and score scaling the version serves with; frozen on it.
        headline_metrics: Test metrics reported with the version (``/metadata``).
        deviations: The policy deviations it was validated with (the ledger records them too).
        synthetic_data: The generator's marker when the training data were synthetic.

    Returns:
        The new version number, as a string.
    """
    client = registry_client(tracking_uri)
    gate_list = _gate_list(gates)
    run_tag = pipeline_run_id
    version_tags = {str(key): str(value) for key, value in (tags or {}).items()}
    version_tags.update(_validation_tags(gate_list))
    version_tags.update(_frozen_tags(decision_policy, headline_metrics, deviations, synthetic_data))
    if run_tag:
        version_tags[TAG_PIPELINE_RUN_ID] = run_tag

    _ensure_registered_model(client, model_name)
    # MLflow looks the logged model up through its global store, not this client's.
    with tracking.using_store(tracking_uri):
        created = client.create_model_version(
            model_name,
            source=model_uri,
            run_id=run_id,
            tags=version_tags,
            model_id=_logged_model_id(model_uri),
        )
    version = str(created.version)
    if ledger_path is None:
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        return version
    ledger = Path(ledger_path)
    with _ledger_lock(ledger), _restoring_aliases_on_error(client, model_name, [CHALLENGER]):
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        append_ledger(
            ledger,
            PromotionRecord(
                timestamp=_now(),
                action="register",
                model_name=model_name,
                alias=CHALLENGER,
                version=version,
                previous_champion=_aliases(client, model_name).get(CHAMPION),
                actor=actor or _default_actor(),
                reason=reason,
                validation_passed=_passed(gate_list),
                gates=gate_list or [],
                pipeline_run_id=run_tag,
                mlflow_run_id=run_id,
                model_source=model_uri,
                decision_policy=dict(decision_policy) if decision_policy is not None else None,
                deviations=list(deviations or []),
                synthetic_data=dict(synthetic_data) if synthetic_data else None,
            ),
        )
    return version


def promote(
    version: str | int,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    actor: str | None = None,
    reason: str,
    gates: Sequence[Gate] | Mapping[str, Any] | None = None,
    ledger_path: Path | str,
    force: bool = False,
    pipeline_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> PromotionRecord:
    """Point ``champion`` at ``version``; the replaced champion becomes ``previous_champion``.

    Args:
        version: The version to promote.
        model_name: The registered model.
        actor: Who promotes; default the OS user.
        reason: Why (required: the ledger is read by auditors).
        gates: The validation gates for this version (list or validation report); default the
            gate results :func:`register` stored in the version's tags.
        ledger_path: The promotion ledger to append to.
        force: Promote even if validation failed or is unknown; recorded as ``forced``.
        pipeline_run_id: The pipeline run that moves the alias (None outside the pipeline).
        tracking_uri: The MLflow tracking (and registry) URI; default MLflow's current one.

    Returns:
        The ledger record of the move.

    Raises:
        PromotionRefused: Validation failed or is unknown and ``force`` is False; nothing moved.
        RegistryError: The version does not exist or already is the champion.
    """
    if not reason.strip():
        raise ValueError("a promotion needs a reason")
    version = str(version)
    client = registry_client(tracking_uri)
    ledger = Path(ledger_path)
    with _ledger_lock(ledger):
        target = _model_version(client, model_name, version)
        gate_list = _gate_list(gates) if gates is not None else _gates_from_tags(target.tags or {})
        passed = _passed(gate_list)
        if not passed and not force:
            raise PromotionRefused(_refusal(model_name, version, gate_list))
        current = _aliases(client, model_name).get(CHAMPION)
        if current == version:
            raise RegistryError(f"{model_name} version {version} already is the champion")
        record = PromotionRecord(
            timestamp=_now(),
            action="promote",
            model_name=model_name,
            alias=CHAMPION,
            version=version,
            previous_champion=current,
            actor=actor or _default_actor(),
            reason=reason,
            forced=not passed,
            validation_passed=passed,
            gates=gate_list or [],
            pipeline_run_id=pipeline_run_id,
            mlflow_run_id=target.run_id,
            model_source=target.source,
            **_frozen_record_fields(target),
        )
        with _restoring_aliases_on_error(client, model_name, [CHAMPION, PREVIOUS_CHAMPION]):
            _set_aliases(client, model_name, {CHAMPION: version, PREVIOUS_CHAMPION: current})
            append_ledger(ledger, record)
    return record


def _frozen_record_fields(target: ModelVersion) -> dict[str, Any]:
    """What the ledger repeats of the version an alias moves to (it serves with these)."""
    return {
        "decision_policy": decision_policy_of(target),
        "deviations": deviations_of(target) or [],
        "synthetic_data": synthetic_data_of(target),
    }


def _refusal(model_name: str, version: str, gates: list[Gate] | None) -> str:
    if gates is None:
        why = "it has no recorded validation (no gates given and no validation tags)"
    elif not gates:
        why = "its validation evaluated no gates"
    else:
        failed = "; ".join(gate.describe() for gate in gates if not gate.passed)
        why = f"its validation failed: {failed}"
    return (
        f"refusing to promote {model_name} version {version}: {why}. The champion is unchanged; "
        "use force=True (recorded in the ledger) to override."
    )


def rollback(
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    actor: str | None = None,
    reason: str,
    ledger_path: Path | str,
    pipeline_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> PromotionRecord:
    """Point ``champion`` back at the version that was champion before the current one.

    The ledger decides which version that is (see :func:`champion_history`); repeated
    rollbacks walk further back. ``previous_champion`` moves to the next rollback target, or
    is removed if there is none.

    Args:
        model_name: The registered model.
        actor: Who rolls back; default the OS user.
        reason: Why (required).
        ledger_path: The promotion ledger to read and append to.
        pipeline_run_id: The pipeline run that moves the alias (None outside the pipeline).
        tracking_uri: The MLflow tracking (and registry) URI; default MLflow's current one.

    Returns:
        The ledger record of the move.

    Raises:
        RegistryError: There is no earlier champion in the ledger, or the registry's champion
            is not the one the ledger ends with (the alias was moved outside creditrisk).
    """
    if not reason.strip():
        raise ValueError("a rollback needs a reason")
    client = registry_client(tracking_uri)
    ledger = Path(ledger_path)
    with _ledger_lock(ledger):
        history = champion_history(read_ledger(ledger), model_name)
        current = _aliases(client, model_name).get(CHAMPION)
        if len(history) < 2:
            raise RegistryError(
                f"cannot roll back {model_name}: the ledger {ledger} records no champion before "
                f"the current one ({current or 'none'}); promote a version explicitly instead"
            )
        if history[-1] != current:
            raise RegistryError(
                f"cannot roll back {model_name}: the registry's champion is version "
                f"{current or 'none'} but the ledger {ledger} ends with version {history[-1]}; "
                "the alias was moved outside creditrisk, promote a version explicitly instead"
            )
        target_version, next_target = history[-2], history[-3] if len(history) > 2 else None
        target = _model_version(client, model_name, target_version)
        gate_list = _gates_from_tags(target.tags or {})
        record = PromotionRecord(
            timestamp=_now(),
            action="rollback",
            model_name=model_name,
            alias=CHAMPION,
            version=target_version,
            previous_champion=current,
            actor=actor or _default_actor(),
            reason=reason,
            validation_passed=_passed(gate_list),
            gates=gate_list or [],
            pipeline_run_id=pipeline_run_id,
            mlflow_run_id=target.run_id,
            model_source=target.source,
            **_frozen_record_fields(target),
        )
        with _restoring_aliases_on_error(client, model_name, [CHAMPION, PREVIOUS_CHAMPION]):
            _set_aliases(
                client, model_name, {CHAMPION: target_version, PREVIOUS_CHAMPION: next_target}
            )
            append_ledger(ledger, record)
    return record
