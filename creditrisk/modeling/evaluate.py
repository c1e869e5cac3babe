"""How good a probability-of-default model is, and where to cut: metrics, tables, thresholds.

Pure functions: labels and predicted probabilities of default in; numbers, frames and small
records out. Nothing is read, written or logged here; the 04_evaluate notebook does that.

Conventions shared by every function:

- ``y_true`` is 1 for a default (a *bad*: the client had payment difficulties) and 0 for a
  repaid loan (a *good*), as in the feature store's ``TARGET``.
- ``pd`` is the predicted probability of default, in [0, 1]. The parameter keeps the credit
  team's name for it; this module therefore imports pandas without the usual alias.
- An application is **approved when its PD is below the threshold** and declined (predicted
  bad) when its PD is at or above it. In the confusion counts a *positive* is a default: a true
  positive is a declined default, a false negative an approved default.
- Profit is measured per unit of exposure: a repaid loan earns ``margin``, a default loses
  ``lgd``, a declined application earns nothing. "Per application" divides by every
  application, approved or not, so policies that approve different volumes compare fairly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal, get_args

import numpy as np
import pandas
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

ThresholdKind = Literal["expected_profit", "approval_rate", "max_bad_rate"]

#: The four-fifths rule: a group approved at under 80% of the best-treated group's rate shows
#: adverse impact (US EEOC Uniform Guidelines, used by fair-lending reviews).
FOUR_FIFTHS = 0.8

#: Label of applications whose group is unknown, so they stay visible in fairness tables.
MISSING_GROUP = "(missing)"

#: Age bands (completed years) for fairness reviews; "25-34" is 25 <= age < 35.
AGE_BANDS: tuple[str, ...] = ("<25", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_EDGES: tuple[float, ...] = (-math.inf, 25, 35, 45, 55, 65, math.inf)

# Log loss clips PDs this far from 0 and 1: one confident mistake costs ~34.5 nats, not infinity.
_LOG_LOSS_EPSILON = 1e-15


# --------------------------------------------------------------------------------------------
# inputs


def labels_and_pd(
    y_true: ArrayLike, pd: ArrayLike, *, both_classes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Check labels and PDs and return them as numpy arrays (int 0/1 and float).

    Args:
        y_true: Observed outcome per application, 1 = default, 0 = repaid.
        pd: Predicted probability of default per application, in [0, 1].
        both_classes: Also require at least one default and one repaid loan (ranking metrics
            such as AUC and KS are undefined otherwise).

    Returns:
        The labels (int64) and the PDs (float64), both one-dimensional and of equal length.

    Raises:
        ValueError: When the inputs are not 1-D, differ in length, are empty, hold labels other
            than 0 and 1, PDs outside [0, 1] or missing values, or lack a class that
            ``both_classes`` requires.
    """
    labels = default_labels(y_true)
    probabilities = np.asarray(pd, dtype=float)
    if probabilities.ndim != 1:
        raise ValueError("pd must be one-dimensional")
    if len(labels) != len(probabilities):
        raise ValueError(f"y_true has {len(labels)} values but pd has {len(probabilities)}")
    in_range = (probabilities >= 0) & (probabilities <= 1)  # False for NaN
    if not in_range.all():
        raise ValueError("pd must hold probabilities in [0, 1], without missing values")
    defaults = int(labels.sum())
    if both_classes and defaults in (0, len(labels)):
        raise ValueError(
            "ranking metrics need both defaults and repaid loans; "
            f"y_true has {defaults} defaults among {len(labels)} applications"
        )
    return labels, probabilities


def default_labels(y_true: ArrayLike) -> np.ndarray:
    """Check observed outcomes and return them as an int64 array of 0 (repaid) and 1 (default).

    Raises:
        ValueError: When ``y_true`` is not 1-D, is empty, or holds anything but 0 and 1.
    """
    labels = np.asarray(y_true, dtype=float)
    if labels.ndim != 1:
        raise ValueError("y_true must be one-dimensional")
    if len(labels) == 0:
        raise ValueError("there are no applications to evaluate")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0 (repaid) and 1 (default), without missing values")
    return labels.astype(np.int64)


# --------------------------------------------------------------------------------------------
# discrimination and calibration


def cumulative_distributions(y_true: ArrayLike, pd: ArrayLike) -> pandas.DataFrame:
    """Cumulative PD distributions of goods and bads, the curves behind the KS statistic.

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.

    Returns:
        One row per distinct PD, ascending: ``pd``, ``goods_cdf`` (share of repaid loans with a
        PD at or below it), ``bads_cdf`` (the same for defaults) and ``gap`` =
        ``goods_cdf - bads_cdf`` (positive where the model ranks goods below bads).
    """
    labels, probabilities = labels_and_pd(y_true, pd, both_classes=True)
    values, inverse = np.unique(probabilities, return_inverse=True)
    bads = np.bincount(inverse, weights=labels, minlength=len(values))
    goods = np.bincount(inverse, minlength=len(values)) - bads
    goods_cdf = np.cumsum(goods) / goods.sum()
    bads_cdf = np.cumsum(bads) / bads.sum()
    return pandas.DataFrame(
        {"pd": values, "goods_cdf": goods_cdf, "bads_cdf": bads_cdf, "gap": goods_cdf - bads_cdf}
    )


def ks_statistic(y_true: ArrayLike, pd: ArrayLike) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic: the largest distance between the goods' and bads' CDFs.

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.

    Returns:
        ``(ks, ks_pd)``: the largest absolute gap between the cumulative PD distributions of
        goods and bads, and the PD at which it occurs (the smallest such PD on a tie). Both
        CDFs count applications with a PD at or below ``ks_pd``.
    """
    curves = cumulative_distributions(y_true, pd)
    distance = curves["gap"].abs().to_numpy()
    at = int(np.argmax(distance))  # first maximum: the smallest PD where the gap peaks
    return float(distance[at]), float(curves["pd"].iloc[at])


def _equal_frequency_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin number (0, 1, ...) per value; bins hold nearly equal counts, in ascending value order.

    Tied values share the bin of the first of them, so the binning does not depend on row order;
    heavy ties can therefore leave fewer than ``n_bins`` bins (they are numbered without gaps).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first_of_tie = np.searchsorted(ordered, ordered, side="left")
    _, dense = np.unique(first_of_tie * n_bins // len(values), return_inverse=True)
    bins = np.empty(len(values), dtype=np.int64)
    bins[order] = dense
    return bins


def _wilson_interval(
    defaults: np.ndarray, n: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a default rate; unlike the normal interval it stays in [0, 1]
    and is honest for bins with few or no defaults."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = defaults / n
    denominator = 1 + z**2 / n
    centre = (rate + z**2 / (2 * n)) / denominator
    half_width = z / denominator * np.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2))
    return np.clip(centre - half_width, 0, 1), np.clip(centre + half_width, 0, 1)


def _bin_summary(
    labels: np.ndarray, probabilities: np.ndarray, bins: np.ndarray
) -> pandas.DataFrame:
    """Count, defaults and PD statistics per bin number, bins numbered from 1."""
    frame = pandas.DataFrame({"bin": bins + 1, "default": labels, "pd": probabilities})
    summary = frame.groupby("bin", sort=True).agg(
        n=("default", "size"),
        defaults=("default", "sum"),
        pd_min=("pd", "min"),
        pd_max=("pd", "max"),
        mean_pd=("pd", "mean"),
    )
    summary["default_rate"] = summary["defaults"] / summary["n"]
    return summary.reset_index()


def calibration_table(
    y_true: ArrayLike, pd: ArrayLike, n_bins: int = 10, *, confidence: float = 0.95
) -> pandas.DataFrame:
    """Predicted against observed default rates in equal-frequency PD bins (reliability table).

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.
        n_bins: Number of bins; each holds about ``n / n_bins`` applications, lowest PDs first.
        confidence: Coverage of the Wilson interval around each observed default rate.

    Returns:
        One row per bin: ``bin`` (1 = lowest PDs), ``n``, ``defaults``, ``pd_min``, ``pd_max``,
        ``mean_pd``, ``default_rate`` (observed) and ``wilson_lower``/``wilson_upper``. A
        well-calibrated model has ``mean_pd`` inside the interval in most bins.
    """
    labels, probabilities = labels_and_pd(y_true, pd)
    table = _bin_summary(labels, probabilities, _equal_frequency_bins(probabilities, n_bins))
    n = table["n"].to_numpy(dtype=float)
    defaults = table["defaults"].to_numpy(dtype=float)
    table["wilson_lower"], table["wilson_upper"] = _wilson_interval(defaults, n, confidence)
    return table


def expected_calibration_error(y_true: ArrayLike, pd: ArrayLike, n_bins: int = 10) -> float:
    """ECE: mean absolute gap between mean PD and observed default rate, weighted by bin size.

    ``ECE = sum_b (n_b / n) * |mean_pd_b - default_rate_b|`` over the equal-frequency bins of
    :func:`calibration_table`.
    """
    table = calibration_table(y_true, pd, n_bins)
    weights = table["n"] / table["n"].sum()
    return float((weights * (table["mean_pd"] - table["default_rate"]).abs()).sum())


def classification_metrics(
    y_true: ArrayLike, pd: ArrayLike, *, n_bins: int = 10
) -> dict[str, float]:
    """Headline discrimination and calibration metrics of a PD model.

    Args:
        y_true: 1 = default, 0 = repaid; both classes must occur.
        pd: Predicted probability of default.
        n_bins: Equal-frequency bins for the expected calibration error.

    Returns:
        ``roc_auc``; ``gini`` = 2 * AUC - 1; ``ks`` and ``ks_pd`` (see :func:`ks_statistic`);
        ``pr_auc`` (average precision with defaults as the positive class); ``brier`` = mean of
        (PD - y)^2; ``log_loss`` = -mean(y ln PD + (1 - y) ln(1 - PD)) with PDs clipped to
        [1e-15, 1 - 1e-15]; ``ece`` (see :func:`expected_calibration_error`); ``base_rate``
        (observed default rate); ``mean_pd``; ``n`` (an int). Plain Python numbers, ready to log.

    Raises:
        ValueError: See :func:`labels_and_pd`; both classes are required.
    """
    labels, probabilities = labels_and_pd(y_true, pd, both_classes=True)
    auc = float(roc_auc_score(labels, probabilities))
    ks, ks_pd = ks_statistic(labels, probabilities)
    clipped = np.clip(probabilities, _LOG_LOSS_EPSILON, 1 - _LOG_LOSS_EPSILON)
    log_loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))
    return {
        "roc_auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks,
        "ks_pd": ks_pd,
        # Average precision sums precision x recall steps; rounding can overshoot 1 by an ulp.
        "pr_auc": min(1.0, float(average_precision_score(labels, probabilities))),
        "brier": float(np.mean((probabilities - labels) ** 2)),
        "log_loss": float(log_loss),
        "ece": expected_calibration_error(labels, probabilities, n_bins),
        "base_rate": float(labels.mean()),
        "mean_pd": float(probabilities.mean()),
        "n": len(labels),
    }


def lift_table(y_true: ArrayLike, pd: ArrayLike, n_bins: int = 10) -> pandas.DataFrame:
    """Gains and lift by PD bin (deciles by default), riskiest bin first.

    Args:
        y_true: 1 = default, 0 = repaid; both classes must occur.
        pd: Predicted probability of default.
        n_bins: Number of equal-frequency bins.

    Returns:
        One row per bin, ``bin`` 1 holding the highest PDs: ``n``, ``pd_min``, ``pd_max``,
        ``mean_pd``, ``defaults``, ``default_rate``, ``lift`` (bin default rate / overall
        default rate), ``cum_share_applications``, ``gains`` (cumulative share of all defaults
        captured by this and the riskier bins), ``cum_default_rate``, ``cum_lift``
        (= ``gains / cum_share_applications``) and ``ks`` (cumulative share of defaults minus
        cumulative share of repaid loans; its maximum approaches the KS statistic).
    """
    labels, probabilities = labels_and_pd(y_true, pd, both_classes=True)
    # Binning the negated PD puts the riskiest applications in bin 1.
    table = _bin_summary(labels, probabilities, _equal_frequency_bins(-probabilities, n_bins))
    total_defaults = labels.sum()
    base_rate = total_defaults / len(labels)
    cum_n = table["n"].cumsum()
    cum_defaults = table["defaults"].cumsum()
    table = table[["bin", "n", "pd_min", "pd_max", "mean_pd", "defaults", "default_rate"]].copy()
    table["lift"] = table["default_rate"] / base_rate
    table["cum_share_applications"] = cum_n / len(labels)
    table["gains"] = cum_defaults / total_defaults
    table["cum_default_rate"] = cum_defaults / cum_n
    table["cum_lift"] = table["cum_default_rate"] / base_rate
    table["ks"] = table["gains"] - (cum_n - cum_defaults) / (len(labels) - total_defaults)
    return table


# --------------------------------------------------------------------------------------------
# decision threshold


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the credit team sets the PD cut-off, in terms it can state and defend.

    ``kind`` selects the rule; ``lgd`` and ``margin`` are used by every kind to report profit.

    - ``expected_profit``: approve when the expected value of the loan is positive,
      ``(1 - PD) * margin - PD * lgd > 0``, i.e. ``PD < PD* = margin / (margin + lgd)``
      (the break-even PD). It trusts the PDs to be calibrated.
    - ``approval_rate``: approve the safest ``approval_rate`` share of applications
      (``floor(approval_rate * n)``, fewer when tied PDs straddle the cut).
    - ``max_bad_rate``: approve as many applications as possible, safest first, while the
      observed default rate among the approved stays at or below ``max_bad_rate``.

    Attributes:
        kind: ``"expected_profit"``, ``"approval_rate"`` or ``"max_bad_rate"``.
        lgd: Loss given default as a share of exposure (0.45: the Basel foundation-IRB value
            for senior unsecured exposures).
        margin: Profit of a repaid loan as a share of exposure: lifetime interest and fees net
            of funding and servicing costs (0.10 is a placeholder the credit team must set).
        approval_rate: Target share approved, for ``approval_rate``.
        max_bad_rate: Highest acceptable default rate among the approved, for ``max_bad_rate``.
    """

    kind: ThresholdKind = "expected_profit"
    lgd: float = 0.45
    margin: float = 0.10
    approval_rate: float = 0.80
    max_bad_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in get_args(ThresholdKind):
            raise ValueError(
                f"unknown threshold policy {self.kind!r}; expected one of {get_args(ThresholdKind)}"
            )
        if not (self.lgd > 0 and self.margin > 0):
            raise ValueError(f"lgd and margin must be positive, got {self.lgd} and {self.margin}")
        for name in ("approval_rate", "max_bad_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a share in [0, 1], got {getattr(self, name)}")

    @property
    def break_even_pd(self) -> float:
        """PD* = margin / (margin + lgd): the PD at which a loan's expected profit is zero."""
        return self.margin / (self.margin + self.lgd)

    def as_dict(self) -> dict[str, Any]:
        """The policy as plain values, for logging."""
        return asdict(self)


@dataclass(frozen=True)
class ThresholdDecision:
    """The chosen PD cut-off and what it does on the evaluated applications.

    Attributes:
        policy: The policy that chose it.
        threshold: Approve when PD < threshold, decline when PD >= threshold.
        n: Applications evaluated.
        approved: Applications approved.
        approval_rate: ``approved / n``.
        bad_rate_approved: Observed default rate among the approved (NaN when none are).
        precision_declined: Share of the declined who defaulted (NaN when none are declined).
        recall_declined: Share of all defaults that were declined (NaN without defaults).
        profit_per_application: Realised profit per application in units of exposure:
            ``(margin * approved goods - lgd * approved bads) / n``.
        expected_profit_per_application: The same from the PDs instead of the outcomes:
            ``sum over approved of ((1 - PD) * margin - PD * lgd) / n``.
        true_positives: Declined and defaulted.
        false_positives: Declined but would have repaid.
        false_negatives: Approved and defaulted.
        true_negatives: Approved and repaid.
        break_even_pd: ``margin / (margin + lgd)``, whichever policy chose the threshold.
        best_threshold: Threshold with the highest realised profit on these applications (the
            lowest one on a tie): the empirical counterpart of ``break_even_pd``.
        best_profit_per_application: Realised profit per application at ``best_threshold``.
    """

    policy: ThresholdPolicy
    threshold: float
    n: int
    approved: int
    approval_rate: float
    bad_rate_approved: float
    precision_declined: float
    recall_declined: float
    profit_per_application: float
    expected_profit_per_application: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    break_even_pd: float
    best_threshold: float
    best_profit_per_application: float

    def confusion_matrix(self) -> np.ndarray:
        """Counts as a 2x2 array: rows actual (repaid, default), columns (approved, declined)."""
        return np.array(
            [
                [self.true_negatives, self.false_positives],
                [self.false_negatives, self.true_positives],
            ]
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values for logging; the policy becomes a nested dict."""
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def profit_curve(
    y_true: ArrayLike, pd: ArrayLike, *, lgd: float = 0.45, margin: float = 0.10
) -> pandas.DataFrame:
    """Approval, bad rate and profit at every threshold that changes a decision.

    The candidate thresholds are the distinct PDs (a threshold equal to a PD declines it) plus
    one above the largest PD that approves everybody.

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.
        lgd: Loss given default as a share of exposure.
        margin: Profit of a repaid loan as a share of exposure.

    Returns:
        One row per candidate threshold, ascending: ``threshold``, ``approved``,
        ``approval_rate``, ``bad_rate_approved`` (NaN when nobody is approved),
        ``profit_per_application`` (realised) and ``expected_profit_per_application`` (from PDs),
        both in units of exposure as in :class:`ThresholdDecision`.
    """
    labels, probabilities = labels_and_pd(y_true, pd)
    values, inverse = np.unique(probabilities, return_inverse=True)
    above_all = 1.0 if values[-1] < 1 else float(np.nextafter(values[-1], np.inf))
    count = np.bincount(inverse, minlength=len(values))
    bads = np.bincount(inverse, weights=labels, minlength=len(values))
    pd_sum = np.bincount(inverse, weights=probabilities, minlength=len(values))
    # At threshold values[j] the approved are exactly the applications with smaller PDs.
    approved = np.concatenate([[0], np.cumsum(count)])
    approved_bads = np.rint(np.concatenate([[0.0], np.cumsum(bads)]))
    approved_pd = np.concatenate([[0.0], np.cumsum(pd_sum)])
    approved_goods = approved - approved_bads
    n = len(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        bad_rate = np.where(approved > 0, approved_bads / approved, np.nan)
    realised = (margin * approved_goods - lgd * approved_bads) / n
    expected = (margin * (approved - approved_pd) - lgd * approved_pd) / n
    return pandas.DataFrame(
        {
            "threshold": np.append(values, above_all),
            "approved": approved,
            "approval_rate": approved / n,
            "bad_rate_approved": bad_rate,
            "profit_per_application": realised,
            "expected_profit_per_application": expected,
        }
    )


def _approval_rate_threshold(curve: pandas.DataFrame, approval_rate: float) -> float:
    """Highest threshold approving at most ``floor(approval_rate * n)`` applications."""
    n = int(curve["approved"].iloc[-1])
    # The tolerance keeps e.g. 0.29 * 100 = 28.999999999999996 from losing an approval.
    target = math.floor(approval_rate * n + 1e-9)
    feasible = curve.index[curve["approved"] <= target]
    return float(curve.loc[feasible[-1], "threshold"])


def _max_bad_rate_threshold(curve: pandas.DataFrame, max_bad_rate: float) -> float:
    """Highest threshold whose approved book meets the bad-rate limit; approve nobody if none."""
    feasible = curve.index[(curve["approved"] > 0) & (curve["bad_rate_approved"] <= max_bad_rate)]
    at = feasible[-1] if len(feasible) else curve.index[0]
    return float(curve.loc[at, "threshold"])


def _decision_at(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    policy: ThresholdPolicy,
    curve: pandas.DataFrame,
) -> ThresholdDecision:
    approved = probabilities < threshold
    defaulted = labels == 1
    true_positives = int((~approved & defaulted).sum())
    false_positives = int((~approved & ~defaulted).sum())
    false_negatives = int((approved & defaulted).sum())
    true_negatives = int((approved & ~defaulted).sum())
    n = len(labels)
    n_approved = true_negatives + false_negatives
    approved_pd = probabilities[approved]
    best = int(curve["profit_per_application"].to_numpy().argmax())  # first = lowest threshold
    return ThresholdDecision(
        policy=policy,
        threshold=float(threshold),
        n=n,
        approved=n_approved,
        approval_rate=n_approved / n,
        bad_rate_approved=_ratio(false_negatives, n_approved),
        precision_declined=_ratio(true_positives, true_positives + false_positives),
        recall_declined=_ratio(true_positives, true_positives + false_negatives),
        profit_per_application=(policy.margin * true_negatives - policy.lgd * false_negatives) / n,
        expected_profit_per_application=float(
            (policy.margin * (1 - approved_pd) - policy.lgd * approved_pd).sum() / n
        ),
        true_positives=true_positives,
        false_positives=false_positives,
        false_negatives=false_negatives,
        true_negatives=true_negatives,
        break_even_pd=policy.break_even_pd,
        best_threshold=float(curve["threshold"].iloc[best]),
        best_profit_per_application=float(curve["profit_per_application"].iloc[best]),
    )


def choose_threshold(
    y_true: ArrayLike, pd: ArrayLike, *, policy: ThresholdPolicy
) -> ThresholdDecision:
    """Choose the PD cut-off by a credit policy and report its consequences.

    Only ``approval_rate`` and ``max_bad_rate`` fit the threshold to these applications; use a
    validation split for them, not the test split whose metrics you report.

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.
        policy: The rule and its economics; see :class:`ThresholdPolicy` for the formulas.

    Returns:
        The threshold with approval rate, bad rate among the approved, precision and recall of
        declines, realised and expected profit per application, confusion counts and the
        empirical profit-maximising threshold.
    """
    labels, probabilities = labels_and_pd(y_true, pd)
    curve = profit_curve(labels, probabilities, lgd=policy.lgd, margin=policy.margin)
    if policy.kind == "expected_profit":
        threshold = policy.break_even_pd
    elif policy.kind == "approval_rate":
        threshold = _approval_rate_threshold(curve, policy.approval_rate)
    else:
        threshold = _max_bad_rate_threshold(curve, policy.max_bad_rate)
    return _decision_at(labels, probabilities, threshold, policy, curve)


def decision_at_threshold(
    y_true: ArrayLike, pd: ArrayLike, threshold: float, *, policy: ThresholdPolicy
) -> ThresholdDecision:
    """The consequences of a threshold fixed beforehand (e.g. chosen on another split).

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.
        threshold: Approve when PD < threshold.
        policy: The economics (LGD, margin) used for the profit figures.
    """
    labels, probabilities = labels_and_pd(y_true, pd)
    curve = profit_curve(labels, probabilities, lgd=policy.lgd, margin=policy.margin)
    return _decision_at(labels, probabilities, float(threshold), policy, curve)


# --------------------------------------------------------------------------------------------
# fairness


def age_band(age_years: ArrayLike) -> pandas.Series:
    """Age bands for fairness reviews: <25, 25-34, 35-44, 45-54, 55-64, 65+ (ordered).

    Args:
        age_years: Age in years, e.g. the feature store's ``AGE_YEARS``; fractions allowed.

    Returns:
        An ordered categorical Series named ``age_band`` (the input's index when it is a
        Series); NaN where the age is missing.
    """
    index = age_years.index if isinstance(age_years, pandas.Series) else None
    years = pandas.Series(np.asarray(age_years, dtype=float), index=index)
    # right=False: a 25th birthday moves the applicant from "<25" to "25-34".
    bands = pandas.cut(years, bins=list(_AGE_EDGES), right=False, labels=list(AGE_BANDS))
    return bands.rename("age_band")


def _group_order(groups: pandas.Series) -> list[Any]:
    """Groups in display order: category order for categoricals, else sorted, missing last."""
    present = groups.dropna()
    if isinstance(groups.dtype, pandas.CategoricalDtype):
        order = [c for c in groups.cat.categories if (present == c).any()]
    else:
        try:
            order = sorted(present.unique())
        except TypeError:  # mixed types cannot be compared; their text can
            order = sorted(present.unique(), key=str)
    return [*order, MISSING_GROUP] if groups.isna().any() else order


def fairness_table(
    y_true: ArrayLike,
    pd: ArrayLike,
    groups: pandas.Series,
    threshold: float,
    *,
    min_air: float = FOUR_FIFTHS,
) -> pandas.DataFrame:
    """Approval, bad rate, AUC and adverse impact per group of a protected attribute.

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.
        groups: Group of each application, in the same order (e.g. ``CODE_GENDER`` or
            :func:`age_band`); missing values form their own group ``"(missing)"``.
        threshold: Approve when PD < threshold.
        min_air: Adverse impact ratio below which a group is flagged (the four-fifths rule).

    Returns:
        One row per group (index named after ``groups``): ``n``, ``share``, ``mean_pd``,
        ``default_rate`` (observed), ``approval_rate``, ``bad_rate_approved`` (NaN when none
        approved), ``auc`` (NaN when the group has a single class),
        ``adverse_impact_ratio`` = group approval rate / highest group approval rate (NaN when
        nobody is approved) and ``adverse_impact`` (True when the ratio is below ``min_air``).
    """
    labels, probabilities = labels_and_pd(y_true, pd)
    groups = groups if isinstance(groups, pandas.Series) else pandas.Series(groups)
    if len(groups) != len(labels):
        raise ValueError(f"groups has {len(groups)} values but y_true has {len(labels)}")
    order = _group_order(groups)
    keys = groups.astype(object).where(groups.notna(), MISSING_GROUP).to_numpy()
    approved = probabilities < threshold
    rows = []
    for group in order:
        member = keys == group
        group_labels = labels[member]
        n_approved = int(approved[member].sum())
        rows.append(
            {
                "n": int(member.sum()),
                "share": float(member.mean()),
                "mean_pd": float(probabilities[member].mean()),
                "default_rate": float(group_labels.mean()),
                "approval_rate": n_approved / member.sum(),
                "bad_rate_approved": _ratio(int(labels[member & approved].sum()), n_approved),
                "auc": float(roc_auc_score(group_labels, probabilities[member]))
                if 0 < group_labels.sum() < len(group_labels)
                else math.nan,
            }
        )
    table = pandas.DataFrame(rows, index=pandas.Index(order, name=groups.name or "group"))
    best_rate = table["approval_rate"].max()
    table["adverse_impact_ratio"] = table["approval_rate"] / best_rate if best_rate else math.nan
    table["adverse_impact"] = table["adverse_impact_ratio"] < min_air
    return table
