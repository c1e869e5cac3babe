"""Why the model says what it says: global feature importance and per-applicant reason codes.

Contributions are SHAP values in log-odds of default, one row per applicant and one column per
feature, plus an optional ``bias`` column (the expected log-odds), as XGBoost's
``predict(..., pred_contribs=True)`` returns them. They explain the booster's raw score; a
calibration step fitted after the booster keeps the ranking but not the exact scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas

from creditrisk.features.catalog import feature as catalog_feature

#: Name of the contributions column holding the expected log-odds, not a feature.
BIAS_COLUMN = "bias"

#: Decimal places of a reason code's impact: enough to rank, short enough to read.
IMPACT_DECIMALS = 4

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True)
class ReasonCode:
    """One adverse factor behind an applicant's PD.

    Attributes:
        feature: Feature name, as in the feature store.
        description: What the feature means, in words a loan officer can quote.
        value: The applicant's value of the feature (None when missing).
        impact: How much the feature raised the log-odds of default (always positive).
    """

    feature: str
    description: str
    value: JsonScalar
    impact: float

    def as_dict(self) -> dict[str, Any]:
        """Plain values, ready for JSON."""
        return asdict(self)


def global_importance(
    gain: Mapping[str, float] | pandas.Series,
    contributions: pandas.DataFrame,
    *,
    bias_column: str = BIAS_COLUMN,
) -> pandas.DataFrame:
    """Feature importance by split gain and by mean absolute SHAP value, most important first.

    Args:
        gain: Gain per feature from the booster, as a mapping or a Series indexed by feature
            (e.g. ``get_score(importance_type="total_gain")`` or the ``gain`` column of
            ``TrainedModel.importance()``); features never split on may be absent and count 0.
        contributions: SHAP contributions, applicants x features (``bias_column`` is ignored).
        bias_column: Name of the expected-log-odds column.

    Returns:
        One row per feature in either input: ``rank``, ``feature``, ``gain``, ``gain_share``
        (of the total gain), ``mean_abs_shap`` (mean |contribution| over applicants, NaN for a
        feature without contributions) and ``shap_share``. Sorted by ``mean_abs_shap``, then
        ``gain``, both descending, then by name: SHAP is consistent across features, whereas
        gain favours features with many split candidates.
    """
    if isinstance(gain, pandas.Series):
        gain = gain.to_dict()  # iterating a Series yields its values, not the feature names
    shap = contributions.drop(columns=[bias_column], errors="ignore")
    mean_abs_shap = shap.abs().mean()
    names = sorted({*map(str, gain), *map(str, mean_abs_shap.index)})
    mean_abs_shap.index = mean_abs_shap.index.map(str)
    table = pandas.DataFrame({"feature": names})
    table["gain"] = [float(gain.get(name, 0.0)) for name in names]
    total_gain = table["gain"].sum()
    table["gain_share"] = table["gain"] / total_gain if total_gain > 0 else math.nan
    table["mean_abs_shap"] = mean_abs_shap.reindex(names).to_numpy(dtype=float)
    table["shap_share"] = table["mean_abs_shap"] / table["mean_abs_shap"].sum()
    table = table.sort_values(
        ["mean_abs_shap", "gain", "feature"], ascending=[False, False, True], na_position="last"
    ).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def _json_scalar(value: Any) -> JsonScalar:
    """A raw feature value as a JSON scalar: numpy scalars unwrapped, every kind of NA None."""
    if value is None or (np.ndim(value) == 0 and bool(pandas.isna(value))):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _descriptions(names: list[str], descriptions: Mapping[str, str] | None) -> dict[str, str]:
    """Description per feature: the given mapping, else the feature catalog, else the name."""
    resolved = {}
    for name in names:
        if descriptions is not None and name in descriptions:
            resolved[name] = descriptions[name]
            continue
        try:
            resolved[name] = catalog_feature(name).description
        except KeyError:  # e.g. an encoded column the catalog does not know
            resolved[name] = name
    return resolved


def reason_codes(
    contributions: pandas.DataFrame,
    values: pandas.DataFrame,
    *,
    top_n: int = 4,
    descriptions: Mapping[str, str] | None = None,
    bias_column: str = BIAS_COLUMN,
) -> list[list[ReasonCode]]:
    """The adverse factors behind each applicant's PD, largest first.

    Only features that *raised* the log-odds of default are reasons (adverse-action notices
    explain a decline, so factors in the applicant's favour are left out). Ties in impact are
    broken by feature name, so the same inputs always give the same codes.

    Args:
        contributions: SHAP contributions in log-odds, applicants x features, optionally with a
            ``bias_column`` (ignored).
        values: The applicants' raw feature values, row for row the same applicants; it must
            have a column for every feature in ``contributions``.
        top_n: Most reasons per applicant; fewer when fewer features contributed positively.
        descriptions: Feature descriptions to quote; features not in it fall back to the
            feature catalog's description, then to the feature name.
        bias_column: Name of the expected-log-odds column.

    Returns:
        Per applicant, in row order, up to ``top_n`` :class:`ReasonCode` with the impact rounded
        to :data:`IMPACT_DECIMALS` places (ranking uses the unrounded contributions).

    Raises:
        ValueError: When ``top_n`` < 1, the frames differ in length or ``values`` lacks a
            feature.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    if len(contributions) != len(values):
        raise ValueError(
            f"contributions has {len(contributions)} rows but values has {len(values)}"
        )
    shap = contributions.drop(columns=[bias_column], errors="ignore")
    # Columns in name order: the stable sort below then breaks ties by name.
    names = sorted(shap.columns, key=str)
    missing = [name for name in names if name not in values.columns]
    if missing:
        raise ValueError(f"values has no column for features {missing}")
    impact = shap[names].to_numpy(dtype=float)
    adverse = np.where(impact > 0, impact, -np.inf)  # NaN > 0 is False: no contribution, no reason
    ranked = np.argsort(-adverse, axis=1, kind="stable")[:, :top_n]
    raw = values[names].to_numpy(dtype=object)
    text = _descriptions([str(name) for name in names], descriptions)
    codes: list[list[ReasonCode]] = []
    for row, columns in enumerate(ranked):
        codes.append(
            [
                ReasonCode(
                    feature=str(names[column]),
                    description=text[str(names[column])],
                    value=_json_scalar(raw[row, column]),
                    impact=round(float(impact[row, column]), IMPACT_DECIMALS),
                )
                for column in columns
                if adverse[row, column] > -np.inf
            ]
        )
    return codes
