"""Evaluation library tests: metrics, tables, thresholds, fairness, score scaling, reason codes
and figures, on tiny hand-built arrays whose expected numbers are worked out in the comments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from creditrisk.features.catalog import feature
from creditrisk.modeling.evaluate import (
    MISSING_GROUP,
    ThresholdPolicy,
    age_band,
    calibration_table,
    choose_threshold,
    classification_metrics,
    expected_calibration_error,
    fairness_table,
    ks_statistic,
    labels_and_pd,
    lift_table,
    profit_curve,
)
from creditrisk.modeling.explain import ReasonCode, global_importance, reason_codes
from creditrisk.modeling.plots import (
    calibration_figure,
    confusion_matrix_figure,
    evaluation_figures,
    importance_figure,
    ks_figure,
    precision_recall_figure,
    roc_curve_figure,
    save_figures,
    score_distribution_figure,
)
from creditrisk.modeling.scorecard import (
    ScoreScaling,
    band_definitions,
    band_table,
    pd_to_score,
    score_bands,
    score_to_pd,
)

# Four applications: two repaid (PD 0.1, 0.4), two defaulted (PD 0.35, 0.8).
Y4 = [0, 0, 1, 1]
PD4 = [0.1, 0.4, 0.35, 0.8]

# Ten applications sorted by PD, used for thresholds: defaults at PD 0.08, 0.15, 0.3 and 0.5.
PD10 = [0.02, 0.04, 0.06, 0.08, 0.09, 0.12, 0.15, 0.2, 0.3, 0.5]
Y10 = [0, 0, 0, 1, 0, 0, 1, 0, 1, 1]
# With margin 0.05 and LGD 0.45 the break-even PD is 0.05 / 0.5 = 0.1.
PROFIT = ThresholdPolicy("expected_profit", lgd=0.45, margin=0.05)


# --------------------------------------------------------------------------------------------
# inputs


@pytest.mark.parametrize(
    ("y_true", "pd_", "message"),
    [
        ([0, 2], [0.1, 0.2], "only 0"),
        ([0, np.nan], [0.1, 0.2], "only 0"),
        ([0, 1], [0.1, np.nan], r"\[0, 1\]"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [0.1], "2 values but pd has 1"),
        ([], [], "no applications"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(y_true: list, pd_: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        labels_and_pd(y_true, pd_)


def test_ranking_metrics_need_both_classes() -> None:
    with pytest.raises(ValueError, match="0 defaults among 3"):
        classification_metrics([0, 0, 0], [0.1, 0.2, 0.3])


# --------------------------------------------------------------------------------------------
# classification metrics


def test_classification_metrics_on_four_applications() -> None:
    metrics = classification_metrics(Y4, PD4, n_bins=2)
    # Bad-good pairs: (0.35 > 0.1) yes, (0.35 > 0.4) no, (0.8 > 0.1) yes, (0.8 > 0.4) yes -> 3/4.
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["gini"] == pytest.approx(0.5)
    # Brier: (0.1^2 + 0.4^2 + 0.65^2 + 0.2^2) / 4 = (0.01 + 0.16 + 0.4225 + 0.04) / 4.
    assert metrics["brier"] == pytest.approx(0.158125)
    # Log loss: -(ln 0.9 + ln 0.6 + ln 0.35 + ln 0.8) / 4.
    expected_log_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)
    # Ranked by PD: 0.8 bad (precision 1, recall 1/2), 0.4 good, 0.35 bad (precision 2/3,
    # recall 1): average precision = 1/2 * 1 + 1/2 * 2/3.
    assert metrics["pr_auc"] == pytest.approx(5 / 6)
    # CDFs at 0.1, 0.35, 0.4, 0.8: goods 1/2, 1/2, 1, 1; bads 0, 1/2, 1/2, 1. The gap 1/2 is
    # reached at 0.1 and at 0.4; the smaller PD is reported.
    assert (metrics["ks"], metrics["ks_pd"]) == pytest.approx((0.5, 0.1))
    # Bins {0.1, 0.35}: mean PD 0.225, observed 1/2; {0.4, 0.8}: 0.6 vs 1/2.
    # ECE = 1/2 * 0.275 + 1/2 * 0.1.
    assert metrics["ece"] == pytest.approx(0.1875)
    assert metrics["base_rate"] == 0.5
    assert metrics["mean_pd"] == pytest.approx(1.65 / 4)
    assert metrics["n"] == 4
    json.dumps(metrics)  # logged as-is


def test_ks_value_and_location() -> None:
    # Goods at 0.1, 0.2, 0.3, 0.6; bads at 0.4, 0.8.
    # goods CDF at 0.1 ... 0.8: 1/4, 2/4, 3/4, 3/4, 1, 1; bads CDF: 0, 0, 0, 1/2, 1/2, 1.
    # Gap: 0.25, 0.5, 0.75, 0.25, 0.5, 0 -> KS 0.75 at PD 0.3.
    ks, ks_pd = ks_statistic([0, 0, 0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.6, 0.8])
    assert ks == pytest.approx(0.75)
    assert ks_pd == 0.3


def test_calibration_table_and_ece_with_two_unequal_bins() -> None:
    # Five PDs in two equal-frequency bins: positions 0-2 -> bin 1 (floor(2 * i / 5) = 0), 3-4
    # -> bin 2. Bin 1: PDs 0.1, 0.2, 0.3, mean 0.2, defaults 1/3; bin 2: 0.7, 0.9, mean 0.8, 2/2.
    # ECE = 3/5 * |0.2 - 1/3| + 2/5 * |0.8 - 1| = 0.08 + 0.08 = 0.16.
    y_true, pd_ = [0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9]
    table = calibration_table(y_true, pd_, n_bins=2)
    assert table["n"].tolist() == [3, 2]
    assert table["mean_pd"].tolist() == pytest.approx([0.2, 0.8])
    assert table["default_rate"].tolist() == pytest.approx([1 / 3, 1.0])
    assert expected_calibration_error(y_true, pd_, n_bins=2) == pytest.approx(0.16)
    # Wilson for 2 defaults out of 2: lower = n / (n + z^2), upper = 1.
    z = NormalDist().inv_cdf(0.975)
    assert table["wilson_lower"].iloc[1] == pytest.approx(2 / (2 + z**2))
    assert table["wilson_upper"].iloc[1] == pytest.approx(1.0)
    assert table["wilson_lower"].iloc[0] < 1 / 3 < table["wilson_upper"].iloc[0]


def test_tied_pds_share_a_bin_whatever_the_row_order() -> None:
    # Three PDs of 0.2 cannot be split; the two bins hold 3 and 1 applications.
    y_true, pd_ = [1, 0, 0, 1], [0.2, 0.2, 0.8, 0.2]
    table = calibration_table(y_true, pd_, n_bins=2)
    assert table["n"].tolist() == [3, 1]
    assert table["default_rate"].tolist() == pytest.approx([2 / 3, 0.0])
    pd.testing.assert_frame_equal(calibration_table(y_true[::-1], pd_[::-1], n_bins=2), table)


def test_lift_table_riskiest_first_with_cumulative_capture() -> None:
    # Five bins of two, riskiest first: {0.9 D, 0.8 D}, {0.7, 0.6 D}, {0.5, 0.4}, {0.3 D, 0.2},
    # {0.1, 0.05}. Defaults per bin 2, 1, 0, 1, 0 of 4; base rate 0.4.
    pd_ = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    y_true = [1, 1, 0, 1, 0, 0, 1, 0, 0, 0]
    order = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]  # shuffled input must give the same table
    table = lift_table([y_true[i] for i in order], [pd_[i] for i in order], n_bins=5)
    assert table["pd_max"].tolist() == [0.9, 0.7, 0.5, 0.3, 0.1]
    assert table["defaults"].tolist() == [2, 1, 0, 1, 0]
    # Gains: 2/4, 3/4, 3/4, 4/4, 4/4.
    assert table["gains"].tolist() == pytest.approx([0.5, 0.75, 0.75, 1.0, 1.0])
    # Cumulative lift = gains / share of applications: 0.5/0.2, 0.75/0.4, 0.75/0.6, 1/0.8, 1.
    assert table["cum_lift"].tolist() == pytest.approx([2.5, 1.875, 1.25, 1.25, 1.0])
    assert table["lift"].tolist() == pytest.approx([2.5, 1.25, 0.0, 1.25, 0.0])
    # KS = gains - cumulative share of the 6 goods (0, 1, 3, 4, 6 goods so far).
    assert table["ks"].tolist() == pytest.approx([0.5, 0.75 - 1 / 6, 0.25, 1 - 4 / 6, 0.0])


# --------------------------------------------------------------------------------------------
# thresholds


def test_profit_threshold_is_the_break_even_pd() -> None:
    assert PROFIT.break_even_pd == 0.05 / (0.05 + 0.45)
    decision = choose_threshold(Y10, PD10, policy=PROFIT)
    assert decision.threshold == pytest.approx(0.1)
    # Approved (PD < 0.1): 0.02, 0.04, 0.06, 0.08 D, 0.09 -> 5 of 10, one default.
    assert decision.approved == 5
    assert decision.approval_rate == 0.5
    assert decision.bad_rate_approved == pytest.approx(0.2)
    # Declined: 0.12, 0.15 D, 0.2, 0.3 D, 0.5 D -> 3 of the 4 defaults among 5 declines.
    assert (decision.true_positives, decision.false_positives) == (3, 2)
    assert (decision.false_negatives, decision.true_negatives) == (1, 4)
    assert decision.precision_declined == pytest.approx(0.6)
    assert decision.recall_declined == pytest.approx(0.75)
    # Realised: (0.05 * 4 goods - 0.45 * 1 bad) / 10 = -0.025.
    assert decision.profit_per_application == pytest.approx(-0.025)
    # Expected: sum of (0.05 - 0.5 PD) over the approved = 0.25 - 0.5 * 0.29 = 0.105; / 10.
    assert decision.expected_profit_per_application == pytest.approx(0.0105)
    # Realised profit approving the k safest: 0.05, 0.1, 0.15, then -0.3 after the default at
    # 0.08 -> best is approving three, i.e. declining from PD 0.08, 0.15 / 10 per application.
    assert decision.best_threshold == 0.08
    assert decision.best_profit_per_application == pytest.approx(0.015)
    assert decision.confusion_matrix().tolist() == [[4, 2], [1, 3]]
    json.dumps(decision.as_dict())


def test_profit_curve_covers_approving_nobody_to_everybody() -> None:
    curve = profit_curve(Y10, PD10, lgd=0.45, margin=0.05)
    assert curve["approved"].tolist() == list(range(11))
    assert curve["threshold"].iloc[0] == 0.02 and curve["threshold"].iloc[-1] == 1.0
    assert math.isnan(curve["bad_rate_approved"].iloc[0])
    # Approving all: (0.05 * 6 - 0.45 * 4) / 10 = -0.15.
    assert curve["profit_per_application"].iloc[-1] == pytest.approx(-0.15)


@pytest.mark.parametrize(
    ("approval_rate", "approved", "threshold"),
    [(0.3, 3, 0.08), (0.35, 3, 0.08), (0.7, 7, 0.2), (0.0, 0, 0.02), (1.0, 10, 1.0)],
)
def test_target_approval_rate_approves_the_safest_count(
    approval_rate: float, approved: int, threshold: float
) -> None:
    policy = ThresholdPolicy("approval_rate", approval_rate=approval_rate)
    decision = choose_threshold(Y10, PD10, policy=policy)
    # floor(rate * 10) applications, the safest ones: threshold = PD of the first declined.
    assert decision.approved == approved
    assert decision.threshold == threshold


def test_target_approval_rate_never_splits_tied_pds() -> None:
    # Half of 4 is 2, but the 2nd and 3rd PDs tie: only 1 can be approved without exceeding it.
    policy = ThresholdPolicy("approval_rate", approval_rate=0.5)
    decision = choose_threshold([0, 0, 1, 0], [0.1, 0.2, 0.2, 0.3], policy=policy)
    assert decision.approved == 1


@pytest.mark.parametrize(
    ("max_bad_rate", "approved", "threshold"),
    # Bad rate approving the k safest, k = 1..10: 0, 0, 0, 1/4, 1/5, 1/6, 2/7, 2/8, 3/9, 4/10.
    # The largest k within the limit wins, even past a k that breaks it; the limit is inclusive.
    [(0.2, 6, 0.15), (0.25, 8, 0.3), (0.0, 3, 0.08), (0.4, 10, 1.0)],
)
def test_max_bad_rate_approves_the_largest_book_within_the_limit(
    max_bad_rate: float, approved: int, threshold: float
) -> None:
    policy = ThresholdPolicy("max_bad_rate", max_bad_rate=max_bad_rate)
    decision = choose_threshold(Y10, PD10, policy=policy)
    assert decision.approved == approved
    assert decision.threshold == threshold
    assert decision.bad_rate_approved <= max_bad_rate


def test_max_bad_rate_out_of_reach_approves_nobody() -> None:
    policy = ThresholdPolicy("max_bad_rate", max_bad_rate=0.0)
    decision = choose_threshold([1, 0, 1], [0.1, 0.2, 0.3], policy=policy)
    assert decision.approved == 0
    assert math.isnan(decision.bad_rate_approved)
    assert decision.recall_declined == 1.0


@pytest.mark.parametrize(
    "arguments",
    [{"kind": "profit"}, {"lgd": 0.0}, {"margin": -0.1}, {"approval_rate": 1.5}],
)
def test_threshold_policy_rejects_nonsense(arguments: dict) -> None:
    with pytest.raises(ValueError):
        ThresholdPolicy(**arguments)


# --------------------------------------------------------------------------------------------
# fairness


def test_fairness_table_adverse_impact_and_four_fifths_flag() -> None:
    # Threshold 0.5. F: PDs 0.1, 0.2, 0.3 D, 0.6 D -> 3 of 4 approved, 1 bad among them, AUC 1.
    # M: 0.1, 0.6, 0.7, 0.8, no default -> 1 of 4 approved, AUC undefined.
    # X: 0.1, 0.2, 0.3 D, 0.4, 0.9 D -> 4 of 5 approved = 0.8.
    # Unknown gender: one applicant at 0.2, approved -> 1.0, the highest rate; the AIR of every
    # group is therefore its approval rate.
    pd_ = [0.1, 0.2, 0.3, 0.6, 0.1, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3, 0.4, 0.9, 0.2]
    y_true = [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0]
    groups = pd.Series(["F"] * 4 + ["M"] * 4 + ["X"] * 5 + [None], name="CODE_GENDER")
    table = fairness_table(y_true, pd_, groups, threshold=0.5)
    assert table.index.name == "CODE_GENDER"
    assert table.index.tolist() == ["F", "M", "X", MISSING_GROUP]
    assert table["n"].tolist() == [4, 4, 5, 1]
    assert table["approval_rate"].tolist() == pytest.approx([0.75, 0.25, 0.8, 1.0])
    assert table["adverse_impact_ratio"].tolist() == pytest.approx([0.75, 0.25, 0.8, 1.0])
    # 0.8 exactly is not adverse impact: the rule flags ratios *below* four fifths.
    assert table["adverse_impact"].tolist() == [True, True, False, False]
    assert table.loc["F", "bad_rate_approved"] == pytest.approx(1 / 3)
    assert table.loc["F", "default_rate"] == 0.5
    assert table.loc["F", "auc"] == 1.0
    assert math.isnan(table.loc["M", "auc"])


def test_age_bands_at_their_boundaries() -> None:
    ages = pd.Series([24.99, 25.0, 34.99, 35.0, 64.99, 65.0, 90.0, np.nan], index=range(10, 18))
    bands = age_band(ages)
    assert bands.name == "age_band"
    assert bands.index.tolist() == list(range(10, 18))
    expected = ["<25", "25-34", "25-34", "35-44", "55-64", "65+", "65+"]
    assert bands.iloc[:7].tolist() == expected
    assert pd.isna(bands.iloc[7])
    assert bands.cat.ordered


def test_fairness_by_age_band_keeps_band_order() -> None:
    bands = age_band([70, 30, 22, 30])
    table = fairness_table([0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], bands, threshold=0.35)
    assert table.index.tolist() == ["<25", "25-34", "65+"]


# --------------------------------------------------------------------------------------------
# score scaling


def test_score_scaling_anchors() -> None:
    # 50:1 good:bad odds is a PD of 1/51 -> the base score; doubling the odds adds pdo = 20.
    scores = pd_to_score([1 / 51, 1 / 101, 1 / 26])
    assert scores.tolist() == pytest.approx([600.0, 620.0, 580.0])
    scaling = ScoreScaling()
    assert scaling.factor == pytest.approx(20 / math.log(2))
    assert scaling.offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))


def test_scores_are_clipped_and_pd_extremes_stay_finite() -> None:
    assert pd_to_score([0.0, 1.0]).tolist() == [850.0, 300.0]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pd_to_score([0.5, np.nan])


def test_score_to_pd_inverts_pd_to_score() -> None:
    probabilities = np.array([0.001, 0.0196, 0.08, 0.3, 0.9])
    assert score_to_pd(pd_to_score(probabilities)) == pytest.approx(probabilities, rel=1e-12)
    assert score_to_pd([600.0]) == pytest.approx([1 / 51])


def test_band_assignment_at_the_boundaries() -> None:
    # Floors are inclusive: A >= 620, B >= 590, C >= 560, D >= 530, E below.
    scores = pd.Series(
        [850, 620, 619.999, 590, 589.999, 560, 530, 529.999, 300], index=list("abcdefghi")
    )
    bands = score_bands(scores)
    assert bands.tolist() == ["A", "A", "B", "B", "C", "C", "D", "E", "E"]
    assert bands.index.tolist() == list("abcdefghi")
    assert bands.cat.categories.tolist() == ["A", "B", "C", "D", "E"]


def test_band_definitions_match_the_scaling() -> None:
    table = band_definitions()
    assert table["min_score"].tolist() == [620, 590, 560, 530, 300]
    # A's upper PD is the PD at 620 points, 1/101.
    assert table["pd_max"].iloc[0] == pytest.approx(1 / 101)


def test_band_table_counts_every_band() -> None:
    # Scores 650 (A), 600, 595 (B), 540 (D), 400 (E); C empty but listed.
    table = band_table([0, 0, 1, 1, 1], [0.01, 0.02, 0.025, 0.1, 0.5], [650, 600, 595, 540, 400])
    assert table["band"].tolist() == ["A", "B", "C", "D", "E"]
    assert table["n"].tolist() == [1, 2, 0, 1, 1]
    assert table["share"].tolist() == pytest.approx([0.2, 0.4, 0.0, 0.2, 0.2])
    assert table.loc[1, ["pd_min", "pd_max"]].tolist() == [0.02, 0.025]
    assert table["default_rate"].iloc[1] == 0.5
    assert math.isnan(table["default_rate"].iloc[2])


def test_score_scaling_round_trips_through_a_logged_dict() -> None:
    scaling = ScoreScaling(base_score=500, base_odds=20, pdo=40, band_floors=(550, 500, 450, 400))
    logged = json.loads(json.dumps(scaling.as_dict()))
    assert logged["factor"] == pytest.approx(40 / math.log(2))
    assert ScoreScaling.from_dict(logged) == scaling
    with pytest.raises(ValueError, match="unknown"):
        ScoreScaling.from_dict({**logged, "pdo_typo": 1})


@pytest.mark.parametrize(
    "arguments",
    [{"band_floors": (600, 620, 560, 530)}, {"band_labels": ("A", "B")}, {"pdo": 0}],
)
def test_score_scaling_rejects_inconsistent_bands(arguments: dict) -> None:
    with pytest.raises(ValueError):
        ScoreScaling(**arguments)


# --------------------------------------------------------------------------------------------
# explanations

CONTRIBUTIONS = pd.DataFrame(
    {
        "EXT_SOURCE_3": [0.5, 0.1, -0.1],
        "AMT_CREDIT": [-0.2, 0.1, -0.2],
        "CODE_GENDER": [0.3, 0.1234567, np.nan],
        "AGE_YEARS": [0.0, 0.05, -0.3],
        "bias": [3.0, 3.0, 3.0],  # the largest positive value, but not a feature
    }
)
VALUES = pd.DataFrame(
    {
        "EXT_SOURCE_3": [0.2, np.nan, 0.9],
        "AMT_CREDIT": pd.array([500_000, 250_000, None], dtype="Int64"),
        "CODE_GENDER": ["M", "F", None],
        "AGE_YEARS": np.array([30.5, 41.0, 60.0]),
    }
)


def test_reason_codes_are_the_adverse_factors_in_order() -> None:
    codes = reason_codes(CONTRIBUTIONS, VALUES)
    # Row 0: only 0.5 and 0.3 are positive (0 and -0.2 are not reasons; bias ignored).
    assert [c.feature for c in codes[0]] == ["EXT_SOURCE_3", "CODE_GENDER"]
    # Row 1: 0.1234567 first; AMT_CREDIT and EXT_SOURCE_3 tie at 0.1, by name; 0.05 last.
    assert [c.feature for c in codes[1]] == [
        "CODE_GENDER",
        "AMT_CREDIT",
        "EXT_SOURCE_3",
        "AGE_YEARS",
    ]
    # Row 2: nothing raised the risk (a NaN contribution is no reason either).
    assert codes[2] == []


def test_reason_code_content_is_readable_and_json_friendly() -> None:
    first, second = reason_codes(CONTRIBUTIONS, VALUES)[1][:2]
    assert first == ReasonCode(
        feature="CODE_GENDER",
        description=feature("CODE_GENDER").description,
        value="F",
        impact=0.1235,  # rounded to 4 places
    )
    assert second.value == 250_000 and type(second.value) is int
    missing = reason_codes(CONTRIBUTIONS, VALUES)[1][2]
    assert missing.feature == "EXT_SOURCE_3" and missing.value is None  # NaN -> None
    json.dumps([[c.as_dict() for c in row] for row in reason_codes(CONTRIBUTIONS, VALUES)])


def test_reason_codes_top_n_and_description_overrides() -> None:
    contributions = CONTRIBUTIONS.assign(ENCODED_X=[0.01, 0.0, 0.0])
    values = VALUES.assign(ENCODED_X=[1, 2, 3])
    codes = reason_codes(
        contributions, values, top_n=3, descriptions={"EXT_SOURCE_3": "Bureau score 3"}
    )
    assert [len(row) for row in codes] == [3, 3, 0]
    assert codes[0][0].description == "Bureau score 3"
    assert codes[0][2].description == "ENCODED_X"  # not in the catalog: the name itself
    with pytest.raises(ValueError, match="AGE_YEARS"):
        reason_codes(CONTRIBUTIONS, VALUES.drop(columns="AGE_YEARS"))


def test_global_importance_ranks_by_mean_absolute_shap() -> None:
    contributions = pd.DataFrame(
        {"A": [1.0, -1.0], "B": [0.5, 0.5], "C": [0.5, -0.5], "bias": [9.0, 9.0]}
    )
    # Mean |SHAP|: A 1, B 0.5, C 0.5; the B/C tie goes to the larger gain; C never split (gain 0).
    for gain in ({"A": 30.0, "B": 10.0}, pd.Series({"A": 30.0, "B": 10.0})):
        table = global_importance(gain, contributions)
        assert table["feature"].tolist() == ["A", "B", "C"]
        assert table["rank"].tolist() == [1, 2, 3]
        assert table["gain_share"].tolist() == pytest.approx([0.75, 0.25, 0.0])
        assert table["mean_abs_shap"].tolist() == pytest.approx([1.0, 0.5, 0.5])
        assert table["shap_share"].tolist() == pytest.approx([0.5, 0.25, 0.25])


# --------------------------------------------------------------------------------------------
# figures

RNG_Y = np.array([0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0])
RNG_PD = np.array([0.05, 0.1, 0.12, 0.3, 0.2, 0.6, 0.15, 0.45, 0.08, 0.25, 0.7, 0.02])


def test_curve_figures_have_their_lines() -> None:
    for build, n_lines in ((roc_curve_figure, 2), (precision_recall_figure, 2), (ks_figure, 3)):
        figure = build(RNG_Y, RNG_PD)
        assert isinstance(figure, Figure)
        (ax,) = figure.axes
        assert len(ax.lines) == n_lines, build.__name__


def test_calibration_figure_has_curve_diagonal_and_counts() -> None:
    figure = calibration_figure(RNG_Y, RNG_PD, n_bins=4)
    curve_ax, count_ax = figure.axes
    assert len(curve_ax.lines) >= 2  # diagonal and observed rates (error bars add none)
    assert [bar.get_height() for bar in count_ax.patches] == [3, 3, 3, 3]


def test_distribution_confusion_and_importance_figures() -> None:
    (ax,) = score_distribution_figure(RNG_Y, pd_to_score(RNG_PD)).axes
    assert len(ax.containers) == 2  # one histogram per outcome
    decision = choose_threshold(RNG_Y, RNG_PD, policy=ThresholdPolicy())
    (ax,) = confusion_matrix_figure(decision).axes
    assert len(ax.texts) == 4
    importance = pd.DataFrame({"feature": list("ABCDE"), "mean_abs_shap": [5, 4, 3, 2, 1]})
    (ax,) = importance_figure(importance, top_n=3).axes
    assert len(ax.patches) == 3


def test_save_figures_writes_png_files_atomically(tmp_path: Path) -> None:
    figures = {"roc_curve": roc_curve_figure(RNG_Y, RNG_PD), "ks": ks_figure(RNG_Y, RNG_PD)}
    written = save_figures(figures, tmp_path / "evaluation")
    assert written == {name: tmp_path / "evaluation" / f"{name}.png" for name in figures}
    for path in written.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "evaluation").iterdir()) == [
        "ks.png",
        "roc_curve.png",
    ]
    with pytest.raises(ValueError, match="plain file names"):
        save_figures({"../escape": figures["ks"]}, tmp_path)


def test_evaluation_figures_names() -> None:
    decision = choose_threshold(RNG_Y, RNG_PD, policy=ThresholdPolicy())
    figures = evaluation_figures(RNG_Y, RNG_PD, decision=decision)
    assert list(figures) == [
        "roc_curve",
        "precision_recall",
        "calibration",
        "ks",
        "score_distribution",
        "confusion_matrix",
    ]


# --------------------------------------------------------------------------------------------
# properties


@st.composite
def labelled_pds(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Labels with both classes, and PDs on a 1/1000 grid (so transforms keep them distinct)."""
    n = draw(st.integers(min_value=2, max_value=40))
    labels = draw(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n)
    )
    grid = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    return np.array(labels), np.array(grid) / 1000


@settings(max_examples=60, deadline=None)
@given(labelled_pds())
def test_ranking_metrics_ignore_monotone_transforms(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, probabilities = data
    metrics = classification_metrics(labels, probabilities)
    for transform in (np.sqrt, lambda p: 0.2 + 0.5 * p):
        transformed = classification_metrics(labels, transform(probabilities))
        assert transformed["roc_auc"] == pytest.approx(metrics["roc_auc"])
        assert transformed["ks"] == pytest.approx(metrics["ks"])
        # The KS is found at the same applicant, so its location moves with the transform.
        assert transformed["ks_pd"] == pytest.approx(transform(metrics["ks_pd"]))


@settings(max_examples=60, deadline=None)
@given(labelled_pds())
def test_metrics_and_tables_stay_in_their_ranges(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, probabilities = data
    metrics = classification_metrics(labels, probabilities)
    for name in ("roc_auc", "ks", "pr_auc", "brier", "ece", "base_rate", "mean_pd"):
        assert 0 <= metrics[name] <= 1, name
    assert -1 <= metrics["gini"] <= 1
    assert metrics["log_loss"] >= 0
    gains = lift_table(labels, probabilities)["gains"]
    assert gains.is_monotonic_increasing and gains.iloc[-1] == pytest.approx(1.0)
    assert calibration_table(labels, probabilities)["n"].sum() == len(labels)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=1e-5, max_value=0.99))
def test_score_round_trip_property(probability: float) -> None:
    assert score_to_pd(pd_to_score(probability)) == pytest.approx(probability, rel=1e-9)


def test_pr_auc_never_exceeds_one_by_rounding() -> None:
    # Found by hypothesis: sklearn's average precision gave 1.0000000000000002 here.
    y = np.array([1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1])
    pd_ = np.array([0.002, 0.001, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.0, 0.009, 0.01])
    assert 0 <= classification_metrics(y, pd_)["pr_auc"] <= 1
