"""Stage 06 — register: a registry version of the validated model, promotion, the audit records.

Notebook ``06_register.ipynb``, in named steps that :func:`run` chains:

1. :func:`validated` — the workspace's ``reports/validation.json`` must be for the trained
   model, must have passed, and must propose the decision policy the evaluation did;
2. :func:`register_version` — a new version of the workspace's registered model
   (``CREDITRISK_MODEL_NAME``, default ``CreditRiskPD``; alias ``challenger``), its
   decision policy, headline metrics, policy deviations and synthetic-data flag frozen on it
   as tags. The same MLflow run with the same decision policy reuses its version; a new cut-off
   for the same trees is a new version, because it decides differently;
3. :func:`promote` — with auto-promotion on, ``champion`` moves to it (``previous_champion``
   keeps the version it replaced); every move goes to the promotion ledger with the deviations;
4. :func:`write_records` — ``reports/registry_promotion.json``, ``reports/lineage.json``, the
   model card (``reports/model_card.html`` and the run folder) with a banner naming every
   deviation, and the deploy manifest after a promotion.

Promotion and rollback by hand (``creditrisk promote``, ``creditrisk rollback``) are
:func:`promote_by_hand` and :func:`rollback_by_hand`. An interactive run registers nothing: it
says what the pipeline would do and writes a draft model card into ``scratch/06_register/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creditrisk import registry, tracking
from creditrisk.features import catalog
from creditrisk.governance import VALIDATION_FILE, lineage, manifest, model_card
from creditrisk.governance import deviations as deviation_records
from creditrisk.io import read_json, write_json
from creditrisk.modeling.split import split_files
from creditrisk.provenance import git_info, lock_info
from creditrisk.stages.context import RunContext
from creditrisk.stages.evaluate import EVALUATION_DIR, METRICS_FILE
from creditrisk.stages.params import StageParams, parameter
from creditrisk.stages.validate import Candidate, candidate

DEPLOY_MANIFEST_FILE = manifest.MANIFEST_FILE


class Params(StageParams):
    """Parameters of the register stage."""

    STAGE = "register"

    auto_promote: bool = parameter(True, "move champion to the new version when every gate passed")
    reason: str = parameter(
        "", "why, for the ledger; empty: the pipeline run and its gates", policy="operational"
    )
    actor: str = parameter(
        "", "who, for the ledger; empty: the user running the pipeline", policy="operational"
    )


class RegistrationRefused(registry.RegistryError):
    """The model in the workspace has no passing validation: it is not registered."""


@dataclass(frozen=True)
class Validated:
    """The model the validation report vouches for: validate's candidate and its report."""

    model: Candidate
    validation: dict[str, Any]

    @property
    def training(self) -> dict[str, Any]:
        return self.model.training

    @property
    def evaluation(self) -> dict[str, Any]:
        return self.model.evaluation

    @property
    def ingestion_summary(self) -> dict[str, Any]:
        return self.model.ingestion_summary

    @property
    def mlflow_run_id(self) -> str:
        return self.model.mlflow_run_id

    @property
    def deviations(self) -> list[deviation_records.Deviation]:
        return deviation_records.from_records(self.validation.get("deviations"))

    @property
    def synthetic(self) -> dict[str, Any] | None:
        marker = self.validation.get("synthetic_data")
        return marker if isinstance(marker, dict) else None


@dataclass(frozen=True)
class Registration:
    """The version the model is (or, interactively, would be) registered as."""

    version: str | None
    newly_registered: bool
    dry_run: bool
    note: str


@dataclass(frozen=True)
class Promotion:
    """Whether ``champion`` moved, the ledger record of the version, the champion before."""

    promoted: bool
    record: registry.PromotionRecord | None
    before: str | None


@dataclass(frozen=True)
class Outcome:
    """What the register stage did in the registry and wrote for the auditor."""

    registration: Registration
    model_name: str
    promoted: bool
    champion_version: str | None
    previous_champion: str | None
    record: registry.PromotionRecord | None
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        return self.registration.version

    def summary(self) -> dict[str, Any]:
        """What happened, in a few lines for the notebook."""
        record = self.record
        return {
            "version": self.version,
            "dry_run": self.registration.dry_run,
            "note": self.registration.note,
            "newly_registered": self.registration.newly_registered,
            "promoted": self.promoted,
            "champion_version": self.champion_version,
            "previous_champion": self.previous_champion,
            "champion_uri": registry.champion_uri(self.model_name),
            "last_move": None
            if record is None
            else f"{record.action} {record.alias} → v{record.version}",
            "files": {name: str(path) for name, path in self.paths.items()},
        }

    def results(self) -> dict[str, Any]:
        """The key results the notebook records."""
        record = self.record
        return {
            "mlflow_run_id": None if record is None else record.mlflow_run_id,
            "model_name": self.model_name,
            "version": self.version,
            "dry_run": self.registration.dry_run,
            "newly_registered": self.registration.newly_registered,
            "promoted": self.promoted,
            "champion_version": self.champion_version,
            "previous_champion": self.previous_champion,
            "model_uri": None
            if self.version is None
            else f"models:/{self.model_name}/{self.version}",
            "deploy_manifest": str(self.paths["manifest"]) if "manifest" in self.paths else None,
        }


def validated(ctx: RunContext) -> Validated:
    """The validation report of the workspace's trained model, if it passed.

    Raises:
        RegistrationRefused: No validation report for this model, it failed, or its decision
            policy is not the evaluation's.
    """
    model = candidate(ctx)
    run_id = model.mlflow_run_id
    path = ctx.workspace.reports / VALIDATION_FILE
    if not path.exists():
        raise RegistrationRefused(f"{path} not found: run the validate stage before registering")
    report: dict[str, Any] = read_json(path)
    if report.get("mlflow_run_id") != run_id:
        raise RegistrationRefused(
            f"{path} validates MLflow run {report.get('mlflow_run_id')}, but the trained model "
            f"is run {run_id}: run the validate stage on it first"
        )
    if not report.get("passed"):
        raise RegistrationRefused(
            f"the model of run {run_id} failed validation ({', '.join(report.get('failed', []))})"
            "; it is not registered and the champion is unchanged"
        )
    if report.get("decision_policy") != model.decision_policy:
        raise RegistrationRefused(
            f"{path} validated another decision policy than reports/{METRICS_FILE} proposes: "
            "run the validate stage again (the cut-off changed after validation)"
        )
    return Validated(model, report)


def deviation_lines(model: Validated) -> list[str]:
    """The deviations the model was validated with, one line per kind (the card's banner)."""
    lines = deviation_records.summary_lines(model.deviations, model.synthetic)
    return [text for _, text in lines] or [
        "the model was made and validated at the documented policy"
    ]


def register_version(params: Params, ctx: RunContext, model: Validated) -> Registration:
    """Register the model (or find the version it already is); interactively, only say which."""
    uri = ctx.tracking_uri
    policy = model.validation["decision_policy"]
    name = ctx.settings.model_name
    existing = registry.version_for_run(
        model.mlflow_run_id, name, tracking_uri=uri, decision_policy=policy
    )
    if existing is not None:
        return Registration(existing, False, ctx.interactive_mode, f"version {existing} exists")
    if ctx.interactive_mode:
        return Registration(
            None, False, True, "not registered: an interactive run changes no registry"
        )
    version = registry.register(
        model.training["model_uri"],
        run_id=model.mlflow_run_id,
        model_name=name,
        tags={
            "feature_sql_hash": catalog.sql_hash(),
            "data_snapshot_id": str(model.ingestion_summary.get("snapshot_id")),
            "test_auc": f"{float(model.evaluation['metrics']['test_auc']):.6f}",
        },
        gates=model.validation,
        actor=params.actor or None,
        reason=params.reason or "registered by the pipeline after passing validation",
        ledger_path=ctx.workspace.reports / registry.LEDGER_FILE,
        pipeline_run_id=ctx.run_id,
        tracking_uri=uri,
        decision_policy=policy,
        headline_metrics=model.validation.get("headline_metrics"),
        deviations=model.deviations,
        synthetic_data=model.synthetic,
    )
    return Registration(version, True, False, f"registered as version {version}")


def default_reason(model: Validated, version: str, run_id: str | None) -> str:
    """The ledger's reason for an automatic promotion: the gates, and every deviation."""
    reason = (
        f"auto-promotion of version {version} by pipeline run {run_id}: all "
        f"{model.validation['n_gates']} governance gates passed"
    )
    qualification = deviation_records.verdict_suffix(model.deviations)
    if qualification:
        reason += f", {qualification}"
    else:
        reason += " at the documented policy"
    if model.synthetic:
        reason += "; trained on synthetic data"
    return reason


def promote(
    params: Params, ctx: RunContext, model: Validated, registration: Registration
) -> Promotion:
    """Move ``champion`` to the version when allowed (never in an interactive run)."""
    uri, name = ctx.tracking_uri, ctx.settings.model_name
    champion = registry.current_champion(name, tracking_uri=uri)
    before = None if champion is None else str(champion.version)
    ledger = ctx.workspace.reports / registry.LEDGER_FILE
    version = registration.version
    if version is None or registration.dry_run:
        return Promotion(False, None, before)
    if params.auto_promote and before != version:
        record = registry.promote(
            version,
            model_name=name,
            actor=params.actor or None,
            reason=params.reason or default_reason(model, version, ctx.run_id),
            gates=model.validation,
            ledger_path=ledger,
            pipeline_run_id=ctx.run_id,
            tracking_uri=uri,
        )
        return Promotion(True, record, before)
    return Promotion(False, registry.latest_record(ledger, version, name), before)


def promotion_report(record: registry.PromotionRecord) -> dict[str, Any]:
    """``reports/registry_promotion.json``: the latest alias move and the champion's URI."""
    return {
        **record.model_dump(mode="json"),
        "champion_uri": registry.champion_uri(record.model_name),
    }


def write_records(
    ctx: RunContext,
    model: Validated,
    registration: Registration,
    record: registry.PromotionRecord | None,
) -> dict[str, Path]:
    """The promotion report, the lineage, the model card and (with a champion) the manifest."""
    out = ctx.outputs.reports
    paths: dict[str, Path] = {}
    if record is not None:
        paths["promotion"] = write_json(
            out / registry.PROMOTION_REPORT_FILE, promotion_report(record)
        )
    workspace = ctx.workspace
    lock = lock_info(ctx.project_root)
    trace = lineage.build_lineage(
        ingestion_summary=model.ingestion_summary,
        feature_store=workspace.feature_store,
        feature_sql_hash=catalog.sql_hash(),
        splits=split_files(workspace.splits),
        mlflow_run_id=model.mlflow_run_id,
        model_name=ctx.settings.model_name,
        model_version=registration.version,
        pipeline_run_id=ctx.run_id,
        runs_dir=workspace.runs,
        tracking_uri=ctx.tracking_uri,
        code={
            "git": git_info(ctx.project_root).model_dump(),
            "lock_sha256": lock.sha256,
            "lock_matches": lock.matches,
        },
        parameters={
            "deviations": model.validation.get("deviations") or [],
            "policy_followed": model.validation.get("policy_followed"),
        },
    )
    paths["lineage"] = write_json(out / lineage.LINEAGE_FILE, trace)
    context = model_card.card_context(
        model_name=ctx.settings.model_name,
        version=registration.version,
        training=model.training,
        evaluation=model.evaluation,
        validation=model.validation,
        ingestion_summary=model.ingestion_summary,
        pipeline_run_id=ctx.run_id,
        figures_dir=workspace.reports / EVALUATION_DIR,
        draft=None
        if not registration.dry_run
        else f"an interactive preview of what the register stage would record; {registration.note}",
    )
    targets = [out / model_card.MODEL_CARD_FILE]
    if ctx.run_dir is not None:
        targets.append(ctx.run_dir / model_card.MODEL_CARD_FILE)
    paths["model_card"] = model_card.write_model_card(
        model_card.render_model_card(context), targets
    )[0]
    if ctx.mode == "pipeline":
        paths["manifest"] = write_manifest(ctx)
        tracking.log_to_run(
            model.mlflow_run_id,
            ctx.tracking_uri,
            tags={"registered_version": str(registration.version)},
            files=[paths["lineage"], paths["model_card"]],
        )
    return paths


def write_manifest(
    ctx: RunContext, *, image: str = manifest.DEFAULT_IMAGE, tag: str | None = None
) -> Path:
    """``reports/deploy_manifest.json`` for the current champion.

    Raises:
        NoChampion: There is no champion.
    """
    ctx.require_pipeline("writing the deploy manifest")
    built = manifest.build_deploy_manifest(
        reports=ctx.workspace.reports,
        home=ctx.workspace.home,
        tracking_uri=ctx.tracking_uri,
        repository=ctx.project_root,
        model_name=ctx.settings.model_name,
        image=image,
        tag=tag,
    )
    return manifest.write_deploy_manifest(built, ctx.workspace.reports / DEPLOY_MANIFEST_FILE)


def finish(
    ctx: RunContext, registration: Registration, promotion: Promotion, paths: dict[str, Path]
) -> Outcome:
    """The stage's outcome, with the champion as the registry has it now."""
    after = registry.current_champion(ctx.settings.model_name, tracking_uri=ctx.tracking_uri)
    record = promotion.record
    return Outcome(
        registration=registration,
        model_name=ctx.settings.model_name,
        promoted=promotion.promoted,
        champion_version=None if after is None else str(after.version),
        previous_champion=promotion.before
        if promotion.promoted
        else (record.previous_champion if record else None),
        record=record,
        paths=paths,
    )


def run(params: Params, ctx: RunContext) -> Outcome:
    """Validated → registered → promoted → recorded: the notebook's steps in one call.

    Raises:
        RegistrationRefused: No passing validation for this model.
    """
    model = validated(ctx)
    registration = register_version(params, ctx, model)
    promotion = promote(params, ctx, model, registration)
    paths = write_records(ctx, model, registration, promotion.record)
    return finish(ctx, registration, promotion, paths)


# ---------------------------------------------------------------------------------------------
# By hand: creditrisk promote / rollback (governed commands holding the workspace lock)
# ---------------------------------------------------------------------------------------------


def promote_by_hand(
    ctx: RunContext, version: str | int, reason: str, force: bool = False, actor: str | None = None
) -> registry.PromotionRecord:
    """``creditrisk promote``: make a registered version the champion; refused unless it passed
    validation (or ``force``, recorded as forced). Writes ``reports/registry_promotion.json``."""
    ctx.require_pipeline("promoting a version")
    record = registry.promote(
        version,
        model_name=ctx.settings.model_name,
        actor=actor,
        reason=reason,
        ledger_path=ctx.workspace.reports / registry.LEDGER_FILE,
        force=force,
        tracking_uri=ctx.tracking_uri,
    )
    write_json(ctx.workspace.reports / registry.PROMOTION_REPORT_FILE, promotion_report(record))
    return record


def rollback_by_hand(
    ctx: RunContext, reason: str, actor: str | None = None
) -> registry.PromotionRecord:
    """``creditrisk rollback``: the champion before the current one, as the ledger tells it."""
    ctx.require_pipeline("rolling back the champion")
    record = registry.rollback(
        model_name=ctx.settings.model_name,
        actor=actor,
        reason=reason,
        ledger_path=ctx.workspace.reports / registry.LEDGER_FILE,
        tracking_uri=ctx.tracking_uri,
    )
    write_json(ctx.workspace.reports / registry.PROMOTION_REPORT_FILE, promotion_report(record))
    return record
