"""Probability of default to scorecard points, and points to risk bands.

The industry-usual log-odds scaling: a score is linear in the log of the good:bad odds,

    score = offset + factor * ln(odds_good),   odds_good = (1 - PD) / PD
    factor = pdo / ln(2)
    offset = base_score - factor * ln(base_odds)

so that ``base_score`` points mean odds of ``base_odds``:1 and every ``pdo`` more points double
the odds. With the defaults (600 points at 50:1, 20 points to double) 620 points are 100:1, 580
are 25:1; scores are clipped to [300, 850].

Default bands (score ranges, lower bound inclusive) and the PDs they correspond to:

    A  620 and above   PD below 0.99%   (odds 100:1 and better)
    B  590 to < 620    0.99% to 2.75%
    C  560 to < 590    2.75% to 7.41%
    D  530 to < 560    7.41% to 18.4%
    E  below 530       18.4% and above

They are placed around the Home Credit default rate (about 8%) so that every band is
populated; bands at 700 and 500 would put almost every applicant in B to D, since 700 points
is a PD of 0.06% under this scaling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from typing import Any

import numpy as np
import pandas
from numpy.typing import ArrayLike

from creditrisk.modeling.evaluate import labels_and_pd

# PDs are kept this far from 0 and 1 before taking logs; the score clip binds long before.
_PD_EPSILON = 1e-12


@dataclass(frozen=True)
class ScoreScaling:
    """Parameters of the PD-to-points scaling and of the score bands.

    Attributes:
        base_score: Points at the base odds.
        base_odds: Good:bad odds at ``base_score`` (50 means 50:1, a PD of 1/51).
        pdo: Points to double the odds.
        min_score: Lowest score reported (the riskiest applicants).
        max_score: Highest score reported.
        band_labels: Band names, best first; one more than ``band_floors``.
        band_floors: Lowest score (inclusive) of each band but the last, strictly decreasing;
            the last band takes every score below the last floor.
    """

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    min_score: float = 300.0
    max_score: float = 850.0
    band_labels: tuple[str, ...] = ("A", "B", "C", "D", "E")
    band_floors: tuple[float, ...] = (620.0, 590.0, 560.0, 530.0)

    def __post_init__(self) -> None:
        # Tuples, even when built from a logged dict whose lists came back from JSON.
        object.__setattr__(self, "band_labels", tuple(self.band_labels))
        object.__setattr__(self, "band_floors", tuple(float(f) for f in self.band_floors))
        if not (self.pdo > 0 and self.base_odds > 0):
            raise ValueError(
                f"pdo and base_odds must be positive, got {self.pdo}, {self.base_odds}"
            )
        if not self.min_score < self.max_score:
            raise ValueError(f"min_score {self.min_score} must be below max_score {self.max_score}")
        if len(self.band_labels) != len(self.band_floors) + 1:
            raise ValueError("there must be exactly one more band label than band floors")
        if len(set(self.band_labels)) != len(self.band_labels):
            raise ValueError(f"band labels must be unique, got {self.band_labels}")
        if any(high <= low for high, low in pairwise(self.band_floors)):
            raise ValueError(f"band floors must strictly decrease, got {self.band_floors}")

    @property
    def factor(self) -> float:
        """Points per unit of log-odds: ``pdo / ln 2``."""
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        """Score at even odds (1:1): ``base_score - factor * ln(base_odds)``."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def as_dict(self) -> dict[str, Any]:
        """Parameters as plain values (lists, not tuples) plus the derived factor and offset."""
        values = asdict(self)
        values["band_labels"] = list(self.band_labels)
        values["band_floors"] = list(self.band_floors)
        return {**values, "factor": self.factor, "offset": self.offset}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ScoreScaling:
        """Rebuild the scaling from :meth:`as_dict` output (derived values are recomputed).

        Raises:
            ValueError: On a key that is neither a parameter nor a derived value.
        """
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names - {"factor", "offset"}
        if unknown:
            raise ValueError(f"unknown score scaling keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in names})


def _scaling(scaling: ScoreScaling | None) -> ScoreScaling:
    return ScoreScaling() if scaling is None else scaling


def pd_to_score(pd: ArrayLike, scaling: ScoreScaling | None = None) -> np.ndarray:
    """Scorecard points for probabilities of default (higher score = lower risk).

    Args:
        pd: Probability of default, in [0, 1].
        scaling: The scaling; the defaults when omitted.

    Returns:
        Float scores (unrounded) clipped to ``[min_score, max_score]``, in the input's shape.

    Raises:
        ValueError: When a PD is missing or outside [0, 1].
    """
    scaling = _scaling(scaling)
    probabilities = np.asarray(pd, dtype=float)
    if not (
        np.isfinite(probabilities).all() and ((probabilities >= 0) & (probabilities <= 1)).all()
    ):
        raise ValueError("pd must hold probabilities in [0, 1], without missing values")
    clipped = np.clip(probabilities, _PD_EPSILON, 1 - _PD_EPSILON)
    log_odds_good = np.log1p(-clipped) - np.log(clipped)
    scores = scaling.offset + scaling.factor * log_odds_good
    return np.asarray(np.clip(scores, scaling.min_score, scaling.max_score))


def score_to_pd(scores: ArrayLike, scaling: ScoreScaling | None = None) -> np.ndarray:
    """Probability of default implied by a score: the inverse of :func:`pd_to_score`.

    ``PD = 1 / (1 + exp((score - offset) / factor))``. Scores are not clipped, so the round
    trip is exact for every PD whose score lies inside ``[min_score, max_score]``.

    Args:
        scores: Scorecard points.
        scaling: The scaling; the defaults when omitted.

    Returns:
        PDs in [0, 1], in the input's shape.
    """
    scaling = _scaling(scaling)
    log_odds_good = (np.asarray(scores, dtype=float) - scaling.offset) / scaling.factor
    # 1 / (1 + e^x) written as exp(-log(1 + e^x)) never overflows.
    return np.asarray(np.exp(-np.logaddexp(0.0, log_odds_good)))


def score_bands(scores: ArrayLike, scaling: ScoreScaling | None = None) -> pandas.Series:
    """Risk band of each score: the first band whose floor the score reaches.

    Args:
        scores: Scorecard points (one-dimensional).
        scaling: Band labels and floors; the defaults (A >= 620 ... E < 530) when omitted.

    Returns:
        An ordered categorical Series named ``score_band``, categories best band first; the
        input's index when it is a Series.

    Raises:
        ValueError: When a score is missing or not finite.
    """
    scaling = _scaling(scaling)
    index = scores.index if isinstance(scores, pandas.Series) else None
    points = np.asarray(scores, dtype=float)
    if points.ndim != 1 or not np.isfinite(points).all():
        raise ValueError("scores must be one-dimensional and finite")
    floors = np.asarray(scaling.band_floors)
    # The band number is how many floors the score falls short of.
    codes = (points[:, None] < floors[None, :]).sum(axis=1)
    bands = pandas.Categorical.from_codes(codes, categories=list(scaling.band_labels), ordered=True)
    return pandas.Series(bands, index=index, name="score_band")


def band_definitions(scaling: ScoreScaling | None = None) -> pandas.DataFrame:
    """The band ladder: score range and the PD range it implies, best band first.

    Returns:
        One row per band: ``band``, ``min_score`` (inclusive), ``max_score`` (exclusive, the
        scaling's ``max_score`` for the best band), ``pd_min`` and ``pd_max``.
    """
    scaling = _scaling(scaling)
    max_scores = [scaling.max_score, *scaling.band_floors]
    min_scores = [*scaling.band_floors, scaling.min_score]
    return pandas.DataFrame(
        {
            "band": list(scaling.band_labels),
            "min_score": min_scores,
            "max_score": max_scores,
            "pd_min": score_to_pd(max_scores, scaling),
            "pd_max": score_to_pd(min_scores, scaling),
        }
    )


def band_table(
    y_true: ArrayLike,
    pd: ArrayLike,
    scores: ArrayLike | None = None,
    *,
    scaling: ScoreScaling | None = None,
) -> pandas.DataFrame:
    """Applications, PD range and observed default rate per score band, best band first.

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.
        scores: Scores of the same applications; computed from ``pd`` when omitted.
        scaling: Scaling and bands; the defaults when omitted.

    Returns:
        Every band of the scaling, empty ones included: ``band``, ``min_score``, ``max_score``
        (the band's definition), ``n``, ``share``, ``pd_min``, ``pd_max``, ``mean_pd`` (of the
        applications in the band; NaN when empty), ``defaults`` and ``default_rate``.
    """
    scaling = _scaling(scaling)
    labels, probabilities = labels_and_pd(y_true, pd)
    points = pd_to_score(probabilities, scaling) if scores is None else np.asarray(scores, float)
    if len(points) != len(labels):
        raise ValueError(f"scores has {len(points)} values but y_true has {len(labels)}")
    frame = pandas.DataFrame(
        {"band": score_bands(points, scaling), "default": labels, "pd": probabilities}
    )
    per_band = frame.groupby("band", observed=False).agg(
        n=("default", "size"),
        pd_min=("pd", "min"),
        pd_max=("pd", "max"),
        mean_pd=("pd", "mean"),
        defaults=("default", "sum"),
    )
    per_band["share"] = per_band["n"] / len(labels)
    per_band["default_rate"] = per_band["defaults"] / per_band["n"].where(per_band["n"] > 0)
    definitions = band_definitions(scaling)[["band", "min_score", "max_score"]]
    table = definitions.merge(per_band.reset_index().astype({"band": str}), on="band")
    columns = ["n", "share", "pd_min", "pd_max", "mean_pd", "defaults", "default_rate"]
    return table[["band", "min_score", "max_score", *columns]]
