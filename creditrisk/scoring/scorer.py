"""Scoring with the registered champion: feature-store rows in, PD, score and decision out.

The one place that turns features into what a lender acts on, shared by the batch scorer
(``serving/batch.py``) and the REST service (``serving/api.py``):

    probability_of_default   the champion's calibrated PD
    score, score_band        scorecard points and band (the scaling logged with the model)
    decision                 ``approve`` when PD < threshold, else ``decline`` (the cut-off
                             logged with the model, ``decision_policy.json`` in its run)
    reason codes             the top adverse factors (TreeSHAP), in the feature catalog's words

:class:`Scorer` loads a registry URI (``models:/CreditRiskPD@champion`` by default), pins the
version it resolved, and reads the decision policy from the version's training run, so every
score names the exact model version that produced it.

The decision policy (cut-off and score scaling) is the one frozen on the registry version when
it was registered (its ``decision_policy`` tag), so nothing that later writes to the version's
MLflow run can change what production decides. Versions registered before policies were frozen
fall back to ``decision_policy.json`` in their run, and :attr:`ModelInfo.policy_source` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from creditrisk import registry, tracking
from creditrisk.features.catalog import ID_COLUMN
from creditrisk.modeling import explain, scorecard

if TYPE_CHECKING:
    from creditrisk.modeling.model import TrainedModel

APPROVE, DECLINE = "approve", "decline"

#: Reason codes returned per applicant (adverse-action notices usually give up to four).
DEFAULT_REASONS = 4

#: Output columns of :meth:`Scorer.score_frame`, in order (reason columns follow).
SCORE_COLUMNS = (
    ID_COLUMN,
    "probability_of_default",
    "score",
    "score_band",
    "decision",
)


#: The largest feature magnitude the model takes: XGBoost reads features as 32-bit floats and
#: refuses anything beyond (or infinite) for the whole matrix, with its native stack trace.
FEATURE_LIMIT = float(np.finfo(np.float32).max)


class UnscorableInput(ValueError):
    """Feature rows the model cannot score: a feature beyond :data:`FEATURE_LIMIT` (a huge
    amount, or a ratio of a huge amount to a tiny one)."""


class ScoringError(Exception):
    """The model or its decision policy cannot be loaded or used; the message says why."""


@dataclass(frozen=True)
class ModelInfo:
    """The model version behind a :class:`Scorer`, as reported with every score."""

    name: str
    version: str
    alias: str | None
    run_id: str
    source: str
    threshold: float
    scaling: scorecard.ScoreScaling
    registered_at: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    policy_source: str = "registry version"

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "uri": self.uri,
            "mlflow_run_id": self.run_id,
            "registered_at": self.registered_at,
            "feature_sql_hash": self.tags.get("feature_sql_hash"),
            "threshold": self.threshold,
            "score_scaling": self.scaling.as_dict(),
            "decision_policy_source": self.policy_source,
            "metrics": self.metrics,
        }


def _parse_registry_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/Name@alias`` or ``models:/Name/3`` → (name, alias, version)."""
    if not model_uri.startswith("models:/"):
        raise ScoringError(
            f"{model_uri!r} is not a registry URI: use models:/<name>@<alias> or "
            "models:/<name>/<version> (scores must name a registered version)"
        )
    reference = model_uri.removeprefix("models:/")
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return name, alias, None
    name, _, version = reference.partition("/")
    if not version.isdigit():
        raise ScoringError(f"{model_uri!r}: expected models:/<name>/<version number>")
    return name, None, version


#: Headline metrics reported by ``/metadata`` (frozen on the version at registration).
HEADLINE_METRICS = registry.HEADLINE_METRICS

#: The run artifact older versions read their decision policy from.
DECISION_POLICY_FILE = "decision_policy.json"


def served_policy(model_version: Any, tracking_uri: str | None) -> tuple[dict[str, Any], str]:
    """The decision policy a registry version serves with, and where it was read.

    Frozen on the version at registration; versions registered before policies were frozen
    read their run's ``decision_policy.json``.

    Raises:
        Exception: The version has neither (whatever reading the run artifact raised).
    """
    policy = registry.decision_policy_of(model_version)
    if policy is not None:
        return policy, "registry version"
    run_id = str(model_version.run_id)
    return (
        tracking.load_run_dict(run_id, DECISION_POLICY_FILE, tracking_uri),
        f"runs:/{run_id}/{DECISION_POLICY_FILE}",
    )


def resolve_model(model_uri: str, tracking_uri: str | None = None) -> ModelInfo:
    """The registered version a URI points at now, with its decision policy.

    Raises:
        ScoringError: No such model, alias or version, or its run has no decision policy.
    """
    from mlflow.exceptions import MlflowException

    tracking.quiet_artifact_downloads()
    name, alias, version = _parse_registry_uri(model_uri)
    client = registry.registry_client(tracking_uri)
    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, str(version))
        )
    except MlflowException as exc:
        raise ScoringError(f"{model_uri} does not resolve to a registered version: {exc}") from exc
    run_id = str(found.run_id)
    try:
        policy, policy_source = served_policy(found, tracking_uri)
        threshold = float(policy["decision"]["threshold"])
        scaling = scorecard.ScoreScaling.from_dict(policy["score_scaling"])
    except Exception as exc:
        raise ScoringError(
            f"{name} version {found.version}: no usable decision policy on the version or in "
            f"MLflow run {run_id} ({exc}); run the pipeline (evaluate → validate → register)"
        ) from exc
    metrics = registry.headline_metrics_of(found)
    if metrics is None:
        run_metrics = client.get_run(run_id).data.metrics
        metrics = {k: float(run_metrics[k]) for k in HEADLINE_METRICS if k in run_metrics}
    created = getattr(found, "creation_timestamp", None)
    return ModelInfo(
        name=name,
        version=str(found.version),
        alias=alias,
        run_id=run_id,
        source=str(found.source),
        threshold=threshold,
        scaling=scaling,
        registered_at=None
        if created is None
        else datetime.fromtimestamp(created / 1000, UTC).isoformat(timespec="seconds"),
        tags=dict(found.tags or {}),
        metrics={k: v for k, v in metrics.items() if k in HEADLINE_METRICS},
        policy_source=policy_source,
    )


@dataclass(frozen=True)
class Scores:
    """Scores of a batch of applicants, in input order."""

    ids: np.ndarray
    probability_of_default: np.ndarray
    score: np.ndarray
    score_band: pd.Series
    decision: np.ndarray
    reasons: list[list[explain.ReasonCode]]

    def __len__(self) -> int:
        return len(self.ids)

    def slice(self, start: int, stop: int) -> Scores:
        """Applicants ``start`` to ``stop`` (exclusive), e.g. one request of a micro-batch."""
        return Scores(
            ids=self.ids[start:stop],
            probability_of_default=self.probability_of_default[start:stop],
            score=self.score[start:stop],
            score_band=self.score_band.iloc[start:stop],
            decision=self.decision[start:stop],
            reasons=self.reasons[start:stop],
        )

    def frame(self, reason_columns: int) -> pd.DataFrame:
        """One row per applicant; reason codes flattened into ``reason_<k>`` (feature) and
        ``reason_<k>_description`` columns, so the table fits CSV as well as Parquet."""
        frame = pd.DataFrame(
            {
                ID_COLUMN: self.ids,
                "probability_of_default": self.probability_of_default,
                "score": self.score,
                "score_band": self.score_band.astype(str).to_numpy(),
                "decision": self.decision,
            }
        )
        for k in range(reason_columns):
            frame[f"reason_{k + 1}"] = [
                codes[k].feature if len(codes) > k else None for codes in self.reasons
            ]
            frame[f"reason_{k + 1}_description"] = [
                codes[k].description if len(codes) > k else None for codes in self.reasons
            ]
        return frame


class Scorer:
    """A loaded model version with its decision policy: the scoring function of the product."""

    def __init__(self, trained: TrainedModel, info: ModelInfo) -> None:
        self.trained = trained
        self.info = info

    @classmethod
    def load(cls, model_uri: str | None = None, *, tracking_uri: str | None = None) -> Scorer:
        """Load a registered version (default: the champion) and its decision policy.

        The alias is resolved once, and the version it named is loaded, so a promotion while
        loading cannot mix two versions.
        """
        info = resolve_model(model_uri or registry.champion_uri(), tracking_uri)
        try:
            trained = tracking.load_trained(info.uri, tracking_uri)
        except Exception as exc:
            raise ScoringError(f"cannot load {info.uri}: {exc}") from exc
        return cls(trained, info)

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.trained.features)

    def score(self, features: pd.DataFrame, *, reasons: int = DEFAULT_REASONS) -> Scores:
        """Score feature-store rows (SK_ID_CURR plus every model feature; extras ignored).

        Args:
            features: One row per applicant.
            reasons: Reason codes per applicant (0 for none: skips the SHAP computation).

        Raises:
            UnscorableInput: A feature is beyond :data:`FEATURE_LIMIT` or infinite.
        """
        matrix = self.trained.encoded_matrix(features)  # once, for the PD and the reasons
        if (np.abs(matrix) > FEATURE_LIMIT).any():  # NaN (missing) compares False
            _refuse_out_of_range(features, self.trained.features)
        pd_ = self.trained.predict_pd(features, matrix=matrix)
        points = scorecard.pd_to_score(pd_, self.info.scaling)
        bands = scorecard.score_bands(points, self.info.scaling)
        decision = np.where(pd_ < self.info.threshold, APPROVE, DECLINE)
        codes: list[list[explain.ReasonCode]] = [[] for _ in range(len(features))]
        if reasons and len(features):
            contributions = self.trained.contributions(features, matrix=matrix)
            codes = explain.reason_codes(
                contributions, features[list(self.trained.features)], top_n=reasons
            )
        return Scores(
            ids=features[ID_COLUMN].to_numpy(),
            probability_of_default=pd_,
            score=points,
            score_band=bands,
            decision=decision,
            reasons=codes,
        )

    def score_frame(
        self, features: pd.DataFrame, *, reasons: int = DEFAULT_REASONS
    ) -> pd.DataFrame:
        """:meth:`score` as a table with the model's name and version on every row."""
        frame = self.score(features, reasons=reasons).frame(reasons)
        frame["model_name"] = self.info.name
        frame["model_version"] = self.info.version
        return frame

    def metadata(self) -> Mapping[str, Any]:
        return self.info.as_dict()


def _refuse_out_of_range(features: pd.DataFrame, names: Any) -> None:
    """Refuse features beyond :data:`FEATURE_LIMIT` (NaN is a missing value: the model's own).

    Raises:
        UnscorableInput: Naming the applicants and features (no values: they are applicant data).
    """
    numbers = features.reindex(columns=list(names)).select_dtypes("number")
    beyond = np.abs(numbers.to_numpy(dtype=np.float64, na_value=np.nan)) > FEATURE_LIMIT
    rows, columns = np.nonzero(beyond)
    applicants = sorted({int(features[ID_COLUMN].iloc[row]) for row in rows})
    raise UnscorableInput(
        f"feature(s) {sorted({str(numbers.columns[c]) for c in columns})} of SK_ID_CURR "
        f"{applicants} beyond ±{FEATURE_LIMIT:.3g}, what the model can score: an input value "
        "is out of range"
    )
