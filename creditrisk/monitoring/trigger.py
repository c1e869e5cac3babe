"""The retrain trigger: rules a model-risk team signs, applied to the history of monitor runs.

One monitor run is a breach when its score PSI exceeds ``max_score_psi``, the share of drifted
input features exceeds ``max_drift_share``, or — when outcomes are known — the back-test finds the
mean PD outside the Jeffreys interval of the realised default rate (``calibration``). A retrain
is called for after ``consecutive`` breaches in a row — one noisy batch does not retrain a model.
Each run's observation is appended to a small JSON-lines history
(``reports/monitor_history.jsonl``) so the count survives between runs; the decision and why go
to ``reports/retrain_trigger.json``.

Breaches count only among comparable runs: the same *stream* (the pipeline's own test split is
not a production batch) and the same model version (a new champion starts with a clean slate).
With ``auto_retrain`` the monitor stage launches the retrain command (:func:`retrain_command`)
as a detached process that waits for the workspace lock, so a monitor stage inside a pipeline
run can call for a retrain without deadlocking on its own run.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from creditrisk.io import append_line, write_json


@dataclass(frozen=True)
class RetrainRules:
    """When a monitor run is a breach, and how many in a row call for a retrain."""

    max_score_psi: float = 0.25
    max_drift_share: float = 0.10
    consecutive: int = 2
    calibration: bool = True

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
        if self.calibration and observation.get("calibrated") is False:
            realised, mean_pd = observation.get("realised_default_rate"), observation.get("mean_pd")
            detail = (
                f": realised default rate {realised:.4f}, mean PD {mean_pd:.4f}"
                if realised is not None and mean_pd is not None
                else ""
            )
            reasons.append(f"back-test: mean PD outside the realised rate's interval{detail}")
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


#: Observation fields that must match for two monitor runs to count in the same series.
SERIES_KEYS = ("stream", "model_version")


def record_and_decide(
    observation: Mapping[str, Any],
    rules: RetrainRules,
    history_path: Path,
    decision_path: Path,
    *,
    series_keys: Sequence[str] = SERIES_KEYS,
) -> TriggerDecision:
    """Append this run to the history, decide on its series and write the decision.

    The series is every run in the history whose ``series_keys`` fields equal this one's (a
    field absent from both counts as equal).
    """
    append_line(history_path, json.dumps(dict(observation), default=str))
    series = [
        past
        for past in read_history(history_path)
        if all(past.get(key) == observation.get(key) for key in series_keys)
    ]
    decision = decide(series, rules)
    write_json(
        decision_path,
        {
            **decision.as_dict(),
            "series": {key: observation.get(key) for key in series_keys},
            "runs_in_series": len(series),
            "observation": dict(observation),
        },
    )
    return decision


def default_retrain_command(python: str = sys.executable) -> list[str]:
    """The whole pipeline, forced, once the workspace is free (waits up to six hours)."""
    return [python, "-m", "creditrisk.cli", "run", "--force", "--wait", "21600"]


def retrain_command(command: Sequence[str] | str | None = None) -> list[str]:
    """The retrain command as an argument list.

    Args:
        command: An argument list or a shell-style string, e.g. a team's
            ``airflow dags trigger creditrisk``; default :func:`default_retrain_command`.

    Raises:
        ValueError: The command is empty.
    """
    if isinstance(command, str):
        command = shlex.split(command)
    argv = list(command or default_retrain_command())
    if not argv:
        raise ValueError("the retrain command is empty")
    return argv
