"""Deviations from the documented policy: what an auditor must see before trusting a model.

The documented policy is ``pipeline.yaml``: every stage parameter's default there (and, equal by
construction, in the stage's ``Params``). A parameter given another value is a *deviation*. Each
one is recorded where the model it shaped is judged — ``reports/validation.json``, the promotion
ledger, the registry version's tags, the deploy manifest's warnings and a banner on top of the
model card — so a champion promoted through relaxed gates can never look like one that met
the policy. Synthetic input data are flagged the same way.

Kinds, from the parameter's declaration (``json_schema_extra={"policy": …}`` on its field):

``relaxed`` / ``tightened``
    a governance gate made easier / harder to pass (a ``min_`` limit lowered / raised, a
    ``max_`` limit raised / lowered, a check switched off / on);
``changed``
    any other policy parameter: training hyper-parameters, the credit policy's cut-off economics,
    score scaling, auto-promotion;
``operational``
    settings that do not change what is decided (threads, memory, where the data come from,
    how many examples a notebook shows); listed, never warned about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

DeviationKind = Literal["relaxed", "tightened", "changed", "operational"]

#: How a parameter's field declares what kind of policy it is (``json_schema_extra``).
POLICY_KEY = "policy"

#: Declared policy kinds of a field: a lower bound gate, an upper bound gate, a gate switch,
#: a plain policy parameter (the default) or an operational setting.
FieldPolicy = Literal["gate_min", "gate_max", "gate_switch", "policy", "operational"]


class Deviation(BaseModel):
    """One stage parameter that differs from ``pipeline.yaml``'s policy."""

    model_config = ConfigDict(frozen=True)

    stage: str
    parameter: str
    value: Any
    policy: Any
    kind: DeviationKind
    meaning: str = ""

    def describe(self, *, qualified: bool = True) -> str:
        """``validate.min_auc 0.6 (policy 0.7)``."""
        name = f"{self.stage}.{self.parameter}" if qualified else self.parameter
        return f"{name} {_show(self.value)} (policy {_show(self.policy)})"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value or repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def classify(field_policy: FieldPolicy, value: Any, policy: Any) -> DeviationKind:
    """The kind of a deviation, from how its parameter is declared."""
    if field_policy == "operational":
        return "operational"
    if field_policy in ("gate_min", "gate_max") and _comparable(value, policy):
        lower = float(value) < float(policy)
        if field_policy == "gate_min":
            return "relaxed" if lower else "tightened"
        return "tightened" if lower else "relaxed"
    if field_policy == "gate_switch":
        return "relaxed" if not value else "tightened"
    return "changed"


def _comparable(value: Any, policy: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(value, numbers)
        and isinstance(policy, numbers)
        and not isinstance(value, bool)
        and not isinstance(policy, bool)
    )


def parameter_deviations(
    stage: str,
    values: Mapping[str, Any],
    policy: Mapping[str, Any],
    kinds: Mapping[str, FieldPolicy],
    meanings: Mapping[str, str] | None = None,
) -> list[Deviation]:
    """Every parameter whose value differs from its policy value, in declaration order.

    Args:
        stage: The stage the parameters belong to.
        values: Parameter → value as executed.
        policy: Parameter → the policy's value (``pipeline.yaml``).
        kinds: Parameter → its declared policy kind (missing: ``policy``).
        meanings: Parameter → what it means, for the record.
    """
    found = []
    for name, value in values.items():
        if name not in policy or same_value(value, policy[name]):
            continue
        found.append(
            Deviation(
                stage=stage,
                parameter=name,
                value=value,
                policy=policy[name],
                kind=classify(kinds.get(name, "policy"), value, policy[name]),
                meaning=(meanings or {}).get(name, ""),
            )
        )
    return found


def same_value(value: Any, policy: Any) -> bool:
    """Equal as the policy means it: ``40`` (YAML, a notebook) is the float default ``40.0``."""
    if _comparable(value, policy):
        return float(value) == float(policy)
    return bool(value == policy)


def from_records(records: Iterable[Mapping[str, Any]] | None) -> list[Deviation]:
    """Deviations read back from a report (``training_run.json``, ``metrics.json``, …)."""
    return [Deviation.model_validate(record) for record in records or []]


def as_records(deviations: Iterable[Deviation]) -> list[dict[str, Any]]:
    """Deviations as JSON-ready records (for reports, tags and the ledger)."""
    return [deviation.model_dump(mode="json") for deviation in deviations]


def synthetic_data(ingestion_summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The generator's marker when the ingested snapshot is synthetic, else None."""
    source = (ingestion_summary or {}).get("source") or {}
    marker = source.get("synthetic") if isinstance(source, Mapping) else None
    return dict(marker) if isinstance(marker, Mapping) else None


def describe_synthetic(marker: Mapping[str, Any]) -> str:
    """``Synthetic data: 2,000 generated applicants (seed 42), not a lender's records``."""
    applicants = marker.get("n_applicants")
    count = f"{applicants:,} generated applicants" if isinstance(applicants, int) else "generated"
    seed = marker.get("seed")
    return (
        f"Synthetic data: {count}"
        + (f" (seed {seed})" if seed is not None else "")
        + ", not a lender's records: the performance figures say nothing about real applicants"
    )


_HEADINGS: dict[DeviationKind, str] = {
    "relaxed": "Gates relaxed",
    "tightened": "Gates tightened",
    "changed": "Off-policy parameters",
    "operational": "Operational settings (not policy)",
}


def summary_lines(
    deviations: Sequence[Deviation], synthetic: Mapping[str, Any] | None = None
) -> list[tuple[DeviationKind | Literal["synthetic"], str]]:
    """One line per kind present, most serious first, e.g.
    ``("relaxed", "Gates relaxed: min_auc 0.6 (policy 0.7), …")``; then the synthetic flag."""
    lines: list[tuple[DeviationKind | Literal["synthetic"], str]] = []
    for kind in ("relaxed", "changed", "tightened", "operational"):
        chosen = [d for d in deviations if d.kind == kind]
        if chosen:
            qualified = kind != "relaxed"  # gates are all validate's
            listed = ", ".join(d.describe(qualified=qualified) for d in chosen)
            lines.append((kind, f"{_HEADINGS[kind]}: {listed}"))
    if synthetic:
        lines.append(("synthetic", describe_synthetic(synthetic)))
    return lines


def warnings(
    deviations: Sequence[Deviation], synthetic: Mapping[str, Any] | None = None
) -> list[str]:
    """What a release engineer must look at: every non-operational line, and synthetic data."""
    return [text for kind, text in summary_lines(deviations, synthetic) if kind != "operational"]


def verdict_suffix(deviations: Sequence[Deviation]) -> str:
    """How a "gates passed" verdict must be qualified: ``""`` when the policy was followed."""
    relaxed = [d for d in deviations if d.kind == "relaxed"]
    changed = [d for d in deviations if d.kind == "changed"]
    parts = []
    if relaxed:
        parts.append(
            f"{len(relaxed)} at relaxed limits ("
            + "; ".join(d.describe(qualified=False) for d in relaxed)
            + ")"
        )
    if changed:
        parts.append(
            f"{len(changed)} off-policy parameter(s) ("
            + "; ".join(d.describe() for d in changed)
            + ")"
        )
    return ", ".join(parts)
