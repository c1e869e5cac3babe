"""Stability indices and the PD back-test on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from creditrisk import governance
from creditrisk.monitoring import (
    MISSING,
    PSI_EPSILON,
    UNSEEN,
    StabilityBands,
    backtest,
    categorical_table,
    characteristic_stability,
    jeffreys_interval,
    numeric_table,
)


def term(actual: float, expected: float) -> float:
    return (actual - expected) * math.log(actual / expected)


def test_numeric_psi_by_hand() -> None:
    # Reference median 2.5 splits [1, 2, 3, 4] in two halves; the current has 3 of 4 below it.
    table = numeric_table([1, 2, 3, 4], [1, 1, 1, 4], bins=2)
    assert table["expected_count"].tolist() == [2, 2]
    assert table["actual_count"].tolist() == [3, 1]
    assert table["upper"].iloc[0] == 2.5 and math.isinf(table["upper"].iloc[1])
    assert table["psi"].sum() == pytest.approx(term(0.75, 0.5) + term(0.25, 0.5), abs=1e-12)
    assert table["psi"].sum() == pytest.approx(0.274653, abs=1e-6)
    # the governance canary reads the same numbers
    assert governance.psi([1, 2, 3, 4], [1, 1, 1, 4], bins=2) == pytest.approx(
        table["psi"].sum(), abs=1e-15
    )


def test_missing_values_are_a_bin_of_their_own() -> None:
    # Present reference [1, 2, 3]: median 2, so bins (-inf, 2], (2, inf), then missing.
    nan = float("nan")
    table = numeric_table([1, 2, 3, nan], [nan, nan, 1, 3], bins=2, missing=True)
    assert table["expected_count"].tolist() == [2, 1, 1]
    assert table["actual_count"].tolist() == [1, 1, 2]
    assert math.isnan(table["lower"].iloc[-1])
    expected = term(0.25, 0.5) + 0.0 + term(0.5, 0.25)
    assert table["psi"].sum() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="NaN or infinite"):
        numeric_table([1, 2], [1, nan])
    with pytest.raises(ValueError, match="empty"):
        numeric_table([], [1.0])


def test_categorical_psi_counts_unseen_and_missing_levels() -> None:
    table = categorical_table(pd.Series(["a", "a", "b", None]), pd.Series(["a", "c", None, None]))
    assert table["level"].tolist() == ["a", "b", UNSEEN, MISSING]
    assert table["expected_count"].tolist() == [2, 1, 0, 1]
    assert table["actual_count"].tolist() == [1, 0, 1, 2]
    e = PSI_EPSILON
    expected = term(0.25, 0.5) + term(e, 0.25) + term(0.25, e) + term(0.5, 0.25)
    assert table["psi"].sum() == pytest.approx(expected, abs=1e-12)


def test_bands_read_the_index() -> None:
    bands = StabilityBands()
    assert [bands.band(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "watch",
        "watch",
        "act",
        "act",
    ]
    assert StabilityBands(watch=0.05, act=0.5).band(0.3) == "watch"
    with pytest.raises(ValueError):
        StabilityBands(watch=0.3, act=0.2)


def test_characteristic_stability_flags_the_shifted_feature() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    reference = pd.DataFrame(
        {
            "EXT_SOURCE_2": rng.uniform(0, 1, n),
            "AMT_INCOME_TOTAL": rng.lognormal(11, 0.5, n),
            "CODE_GENDER": rng.choice(["F", "M"], n, p=[0.65, 0.35]),
        }
    )
    current = pd.DataFrame(
        {
            "EXT_SOURCE_2": np.clip(rng.uniform(0, 1, n) - 0.3, 0, None),  # worse scores
            "AMT_INCOME_TOTAL": rng.lognormal(11, 0.5, n),  # unchanged
            "CODE_GENDER": rng.choice(["F", "M"], n, p=[0.65, 0.35]),
        }
    )
    current.loc[: n // 2, "AMT_INCOME_TOTAL"] = np.nan  # half of the incomes go missing
    summary, tables = characteristic_stability(
        reference, current, ["EXT_SOURCE_2", "AMT_INCOME_TOTAL", "CODE_GENDER"], ["CODE_GENDER"]
    )
    by_feature = summary.set_index("feature")
    assert by_feature.loc["EXT_SOURCE_2", "band"] == "act"
    assert by_feature.loc["AMT_INCOME_TOTAL", "band"] == "act"  # missing values count
    assert by_feature.loc["AMT_INCOME_TOTAL", "current_missing_share"] == pytest.approx(
        0.5, abs=1e-3
    )
    assert by_feature.loc["CODE_GENDER", "band"] == "stable"
    assert summary["csi"].is_monotonic_decreasing
    assert by_feature.loc["CODE_GENDER", "kind"] == "categorical"
    assert tables["EXT_SOURCE_2"]["psi"].sum() == pytest.approx(
        by_feature.loc["EXT_SOURCE_2", "csi"]
    )
    with pytest.raises(ValueError, match="absent"):
        characteristic_stability(reference, current, ["NOT_A_FEATURE"])


def test_jeffreys_interval_by_hand() -> None:
    lower, upper = jeffreys_interval(2, 100)
    assert lower == pytest.approx(beta.ppf(0.025, 2.5, 98.5))
    assert upper == pytest.approx(beta.ppf(0.975, 2.5, 98.5))
    assert jeffreys_interval(0, 50)[0] == 0.0 and jeffreys_interval(50, 50)[1] == 1.0


def test_backtest_compares_realised_rates_with_the_mean_pd_per_band() -> None:
    # Band A: 100 applicants, PD 2 %, 2 defaults (on target).
    # Band E: 50 applicants, PD 10 %, 20 defaults (the model under-predicts by far).
    pd_ = [0.02] * 100 + [0.10] * 50
    defaulted = [1, 1] + [0] * 98 + [1] * 20 + [0] * 30
    bands = ["A"] * 100 + ["E"] * 50
    table = backtest(pd_, defaulted, bands).set_index("group")
    assert table.loc["A", "applicants"] == 100 and table.loc["A", "defaults"] == 2
    assert table.loc["A", "realised_default_rate"] == pytest.approx(0.02)
    assert bool(table.loc["A", "calibrated"])
    assert table.loc["E", "realised_default_rate"] == pytest.approx(0.4)
    assert not bool(table.loc["E", "calibrated"])
    assert table.loc["all", "applicants"] == 150 and table.loc["all", "defaults"] == 22
    assert table.loc["all", "mean_pd"] == pytest.approx((2 + 5) / 150)
    with pytest.raises(ValueError, match="0 or 1"):
        backtest([0.1], [2], ["A"])
