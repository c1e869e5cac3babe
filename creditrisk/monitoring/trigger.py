"""The retrain trigger: rules a model-risk team signs, applied to the history of monitor runs.

One monitor run is a breach when its score PSI exceeds ``max_score_psi`` or the share of drifted
input features exceeds ``max_drift_share``. A retrain is called for after ``consecutive`` breaches
in a row — one noisy batch does not retrain a model. Each run's observation is appended to a small
JSON-lines history (``reports/monitor_history.jsonl``) so the count survives between runs; the
decision and why go to ``reports/retrain_trigger.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from creditrisk.io import append_line, write_json


@dataclass(frozen=True)
class RetrainRules:
    """When a monitor run is a breach, and how many in a row call for a retrain."""

    max_score_psi: float = 0.25
    max_drift_share: float = 0.30
    consecutive: int = 2

    def __post_init__(self) -> None:
        if self.consecutive < 1:
            raise ValueError(f"consecutive must be at least 1, got {self.consecutive}")

    def breaches(self, observation: Mapping[str, Any]) -> list[str]:
        """Why one monitor run breaches the rules (empty when it does not)."""
        reasons = []
        psi = observation.get("score_psi")
        if psi is not None and psi > self.max_score_psi:
            reasons.append(f"score PSI {psi:.3f} > {self.max_score_psi:g}")
        share = observation.get("drift_share")
        if share is not None and share > self.max_drift_share:
            reasons.append(f"drifted feature share {share:.2f} > {self.max_drift_share:g}")
        return reasons


@dataclass(frozen=True)
class TriggerDecision:
    """Whether to retrain, after how many breaches in a row, and why."""

    retrain: bool
    breaches_in_a_row: int
    reasons: list[str] = field(default_factory=list)
    rules: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(history: Sequence[Mapping[str, Any]], rules: RetrainRules) -> TriggerDecision:
    """The decision after the runs in ``history`` (oldest first; the last one is the newest)."""
    in_a_row = 0
    for observation in reversed(history):
        if not rules.breaches(observation):
            break
        in_a_row += 1
    latest = rules.breaches(history[-1]) if history else []
    retrain = in_a_row >= rules.consecutive
    if retrain:
        reasons = [f"{in_a_row} monitor runs in a row breach the rules", *latest]
    elif latest:
        reasons = [f"breach {in_a_row} of {rules.consecutive} needed", *latest]
    else:
        reasons = ["the latest monitor run is within the rules"]
    return TriggerDecision(retrain, in_a_row, reasons, asdict(rules))


def read_history(path: Path) -> list[dict[str, Any]]:
    """The monitor history (oldest first); empty when there is none yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_and_decide(
    observation: Mapping[str, Any],
    rules: RetrainRules,
    history_path: Path,
    decision_path: Path,
) -> TriggerDecision:
    """Append this run to the history, decide on the whole history and write the decision."""
    append_line(history_path, json.dumps(dict(observation), default=str))
    decision = decide(read_history(history_path), rules)
    write_json(decision_path, {**decision.as_dict(), "observation": dict(observation)})
    return decision
