"""Population and characteristic stability, and the PD back-test: what a model monitor reports.

* **PSI** of the score (or PD) distribution: quantile bins of the reference population, each
  bin's contribution ``(a − e) · ln(a / e)`` with ``e``/``a`` the reference/current shares (an
  empty share is replaced by a small epsilon so the logarithm stays finite).
* **CSI** per model input: the same index per characteristic. Numbers are binned on the
  reference's quantiles with a separate *missing* bin; categories get a bin per reference level
  plus *unseen* (levels the reference never had) and *missing*. Shares are over all rows, so a
  rise in missing values counts as a shift.
* **Bands:** < 0.10 stable, 0.10–0.25 watch, ≥ 0.25 act (the usual industry reading; the
  thresholds are parameters).
* **Back-test:** per score band, the realised default rate against the mean predicted PD, with
  the Jeffreys interval of the realised rate (the test the ECB/EBA guides use for PD models): a
  band whose mean PD lies outside the interval is miscalibrated for that population.

The governance canary (:func:`creditrisk.governance.psi_table`) uses the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import beta

#: Share used in place of an empty bin's share, so ln(a/e) stays finite (common industry choice).
PSI_EPSILON = 1e-4

MISSING, UNSEEN = "(missing)", "(unseen)"


@dataclass(frozen=True)
class StabilityBands:
    """How a stability index reads: below ``watch`` stable, from ``act`` on, act."""

    watch: float = 0.10
    act: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.watch <= self.act:
            raise ValueError(f"need 0 <= watch <= act, got {self.watch} and {self.act}")

    def band(self, index: float) -> str:
        if index >= self.act:
            return "act"
        return "watch" if index >= self.watch else "stable"


def psi_contributions(
    expected_count: npt.ArrayLike, actual_count: npt.ArrayLike, epsilon: float = PSI_EPSILON
) -> pd.DataFrame:
    """Shares and PSI contribution of each bin from the two populations' counts per bin."""
    expected = np.asarray(expected_count, dtype=np.int64)
    actual = np.asarray(actual_count, dtype=np.int64)
    if expected.sum() == 0 or actual.sum() == 0:
        raise ValueError("both populations need at least one value")
    expected_share = np.maximum(expected / expected.sum(), epsilon)
    actual_share = np.maximum(actual / actual.sum(), epsilon)
    return pd.DataFrame(
        {
            "expected_count": expected,
            "actual_count": actual,
            "expected_share": expected_share,
            "actual_share": actual_share,
            "psi": (actual_share - expected_share) * np.log(actual_share / expected_share),
        }
    )


def quantile_edges(reference: npt.ArrayLike, bins: int) -> npt.NDArray[np.float64]:
    """Inner bin edges: the reference's quantiles, ties merged (so maybe fewer bins)."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    values = np.asarray(reference, dtype=float)
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))[1:-1]


def _bin(values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    # Closed on the right, like pd.cut; the outer bins are open.
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)


def numeric_table(
    expected: npt.ArrayLike,
    actual: npt.ArrayLike,
    bins: int = 10,
    epsilon: float = PSI_EPSILON,
    *,
    missing: bool = False,
) -> pd.DataFrame:
    """PSI bin by bin for numbers: ``lower``, ``upper``, counts, shares and ``psi`` per bin.

    Args:
        expected: Reference values.
        actual: Values compared with the reference.
        bins: Quantile bins requested (fewer when quantiles tie).
        epsilon: Share used in place of zero.
        missing: Count NaN as a bin of its own (last row, bounds NaN); otherwise a NaN or an
            infinite value is an error.
    """
    reference = np.asarray(expected, dtype=float).ravel()
    compared = np.asarray(actual, dtype=float).ravel()
    for name, vector in (("expected", reference), ("actual", compared)):
        if vector.size == 0:
            raise ValueError(f"{name} is empty")
        if np.isinf(vector).any() or (not missing and np.isnan(vector).any()):
            raise ValueError(f"{name} holds NaN or infinite values")
    present_ref, present_cur = reference[~np.isnan(reference)], compared[~np.isnan(compared)]
    edges = quantile_edges(present_ref, bins) if present_ref.size else np.empty(0)
    expected_count = _bin(present_ref, edges)
    actual_count = _bin(present_cur, edges)
    lower = np.concatenate([[-np.inf], edges])
    upper = np.concatenate([edges, [np.inf]])
    if missing:
        expected_count = np.append(expected_count, reference.size - present_ref.size)
        actual_count = np.append(actual_count, compared.size - present_cur.size)
        lower, upper = np.append(lower, np.nan), np.append(upper, np.nan)
    table = psi_contributions(expected_count, actual_count, epsilon)
    table.insert(0, "upper", upper)
    table.insert(0, "lower", lower)
    return table


def categorical_table(
    expected: pd.Series, actual: pd.Series, epsilon: float = PSI_EPSILON
) -> pd.DataFrame:
    """PSI bin by bin for categories: a bin per reference level, then unseen and missing."""
    reference = expected.astype("object")
    compared = actual.astype("object")
    levels = sorted({str(v) for v in reference[reference.notna()]})
    known = set(levels)

    def counts(values: pd.Series) -> list[int]:
        present = values[values.notna()].map(str)
        tally = present.value_counts()
        unseen = int(present[~present.isin(known)].size)
        return [int(tally.get(level, 0)) for level in levels] + [unseen, int(values.isna().sum())]

    table = psi_contributions(counts(reference), counts(compared), epsilon)
    table.insert(0, "level", [*levels, UNSEEN, MISSING])
    return table


def characteristic_stability(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    *,
    bins: int = 10,
    bands: StabilityBands | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """CSI of every feature.

    Returns:
        A summary (``feature``, ``kind``, ``csi``, ``band``, ``reference_missing_share``,
        ``current_missing_share``), largest CSI first, and each feature's bin table.

    Raises:
        ValueError: When a feature is absent from either frame, or a frame is empty.
    """
    bands = bands or StabilityBands()
    missing = [f for f in features if f not in reference.columns or f not in current.columns]
    if missing:
        raise ValueError(f"features absent from the reference or current data: {missing}")
    categorical_set = set(categorical)
    tables: dict[str, pd.DataFrame] = {}
    rows = []
    for feature in features:
        kind = "categorical" if feature in categorical_set else "numeric"
        if kind == "categorical":
            table = categorical_table(reference[feature], current[feature])
        else:
            table = numeric_table(
                pd.to_numeric(reference[feature], errors="coerce").to_numpy(dtype=float),
                pd.to_numeric(current[feature], errors="coerce").to_numpy(dtype=float),
                bins,
                missing=True,
            )
        tables[feature] = table
        value = float(table["psi"].sum())
        rows.append(
            {
                "feature": feature,
                "kind": kind,
                "csi": value,
                "band": bands.band(value),
                "reference_missing_share": float(reference[feature].isna().mean()),
                "current_missing_share": float(current[feature].isna().mean()),
            }
        )
    summary = pd.DataFrame(rows, columns=list(rows[0]) if rows else None)
    if rows:
        summary = summary.sort_values(["csi", "feature"], ascending=[False, True])
    return summary.reset_index(drop=True), tables


def jeffreys_interval(
    defaults: int, applicants: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Two-sided Jeffreys interval of a default rate (Beta(d + ½, n − d + ½) quantiles)."""
    if applicants < 1:
        return (float("nan"), float("nan"))
    tail = (1 - confidence) / 2
    a, b = defaults + 0.5, applicants - defaults + 0.5
    lower = 0.0 if defaults == 0 else float(beta.ppf(tail, a, b))
    upper = 1.0 if defaults == applicants else float(beta.ppf(1 - tail, a, b))
    return lower, upper


def backtest(
    probability_of_default: npt.ArrayLike,
    defaulted: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Realised default rate against the mean PD, per group (e.g. score band) and overall.

    Returns:
        One row per group (labels sorted), then ``all``: ``group``, ``applicants``,
        ``defaults``, ``realised_default_rate``, ``mean_pd``, ``jeffreys_lower``,
        ``jeffreys_upper`` and ``calibrated`` (the mean PD lies in the interval).
    """
    frame = pd.DataFrame(
        {
            "pd": np.asarray(probability_of_default, dtype=float),
            "default": np.asarray(defaulted, dtype=float),
            "group": np.asarray(groups, dtype=object),
        }
    )
    if frame["default"].isna().any() or not frame["default"].isin([0, 1]).all():
        raise ValueError("defaulted must hold 0 or 1 for every applicant")
    rows = []
    labels = sorted(frame["group"].unique(), key=str)
    for label, part in [*((g, frame[frame["group"] == g]) for g in labels), ("all", frame)]:
        n, d = len(part), int(part["default"].sum())
        lower, upper = jeffreys_interval(d, n, confidence)
        mean_pd = float(part["pd"].mean())
        rows.append(
            {
                "group": str(label),
                "applicants": n,
                "defaults": d,
                "realised_default_rate": d / n if n else float("nan"),
                "mean_pd": mean_pd,
                "jeffreys_lower": lower,
                "jeffreys_upper": upper,
                "calibrated": bool(lower <= mean_pd <= upper),
            }
        )
    return pd.DataFrame(rows)
