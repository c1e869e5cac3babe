"""application_train / application_test: the applicant's own columns and TARGET.

The structural columns (age, employment, family, income, the applied-for loan, car and region,
the EXT_SOURCE readings of ``quality``, building information, social circle and bureau
enquiries) override the generic sampler, and TARGET follows from the latent variables plus the
application effects of ``_application_risk``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from creditrisk.data.synthetic.process import (
    _APP,
    _CAL,
    SENTINEL_DAYS,
    DriftSpec,
    _annuity,
    _phi,
    _Plan,
    _round_to,
    _sigmoid,
)
from creditrisk.data.synthetic.sampling import (
    Frame,
    _Cat,
    _choose,
    _const_cat,
    _draw_cat,
    _draw_numeric_levels,
    _draw_terms,
    _employed_days_marginal,
    _generic_columns,
    _ppf,
    _share_above_zero,
    _vocab,
    _with_nulls,
)
from creditrisk.data.tables import tables


@dataclass(frozen=True)
class _Applicants:
    frame: Frame
    target: np.ndarray
    days_birth: np.ndarray
    income_z: np.ndarray  # standardised log income, to scale loan amounts in the history


_BUILDING_SUFFIXES = ("_AVG", "_MODE", "_MEDI")
_EMPLOYED_TYPES = {
    "Working": 0.5212,
    "Commercial associate": 0.2282,
    "State servant": 0.0662,
    "Businessman": 0.0001,
}


def _applications(plan: _Plan, rng: np.random.Generator, drift: DriftSpec) -> _Applicants:
    n = plan.n
    structural = {
        "SK_ID_CURR", "TARGET", "CODE_GENDER", "DAYS_BIRTH", "NAME_INCOME_TYPE", "DAYS_EMPLOYED",
        "ORGANIZATION_TYPE", "OCCUPATION_TYPE", "FLAG_EMP_PHONE", "CNT_CHILDREN",
        "CNT_FAM_MEMBERS", "AMT_INCOME_TOTAL", "AMT_GOODS_PRICE", "AMT_CREDIT", "AMT_ANNUITY",
        "FLAG_OWN_CAR", "OWN_CAR_AGE", "REGION_POPULATION_RELATIVE", "REGION_RATING_CLIENT",
        "REGION_RATING_CLIENT_W_CITY", "EXT_SOURCE_1", "EXT_SOURCE_2", "EXT_SOURCE_3",
    }  # fmt: skip
    structural |= {col.name for col in tables()[_APP].columns if _is_building_column(col.name)}
    frame = _generic_columns(_APP, n, rng, skip=structural)
    frame["SK_ID_CURR"] = plan.sk_id_curr
    age_u = _phi(plan.z_age)
    days_birth = np.round(_ppf(_APP, "DAYS_BIRTH", 1 - age_u))
    frame["DAYS_BIRTH"] = days_birth.astype(np.int64)
    frame["CODE_GENDER"] = _draw_cat(_APP, "CODE_GENDER", rng, n)
    _employment(frame, plan.z_age, days_birth, rng)
    _family(frame, plan.z_age, rng)
    income_z = _income(frame, rng, plan, drift)
    term_months = _loan(frame, income_z, rng)
    _car_and_region(frame, rng)
    ext_latents = _ext_sources(frame, plan, rng, drift)
    _building_info(frame, rng)
    _social_and_enquiries(frame, plan, days_birth, rng)
    log_odds = (
        _CAL.intercept
        + drift.default_shift
        - sum(beta * z for beta, z in zip(_CAL.ext_betas, ext_latents, strict=True))
        - _CAL.habit_beta * plan.habit
        + _application_risk(frame, days_birth, term_months)
    )
    target = (rng.random(n) < _sigmoid(log_odds)).astype(np.int64)
    frame["TARGET"] = target
    return _Applicants(frame, target, days_birth, income_z)


def _employment(
    frame: Frame, z_age: np.ndarray, days_birth: np.ndarray, rng: np.random.Generator
) -> None:
    """Income type, employment length and the columns that follow from being employed."""
    n = z_age.size
    age_u = _phi(z_age)
    # Pensioners are the oldest applicants (plus a few disability pensioners of any age).
    pensioner = rng.random(n) < 0.012 + 0.95 * _sigmoid((age_u - _CAL.pensioner_centre) / 0.03)
    others = {**_EMPLOYED_TYPES, "Unemployed": 0.0001}
    income_type = _choose(
        pensioner,
        _const_cat(_APP, "NAME_INCOME_TYPE", "Pensioner", n),
        _draw_cat(_APP, "NAME_INCOME_TYPE", rng, n, weights=others),
    )
    frame["NAME_INCOME_TYPE"] = income_type
    # 365243 is the "not employed" sentinel: exactly the pensioners and the unemployed.
    not_employed = income_type.isin("Pensioner", "Unemployed")
    tenure_u = _phi(0.55 * z_age + 0.835 * rng.standard_normal(n))
    employed_days = np.round(_employed_days_marginal().ppf(1 - tenure_u))
    employed_days = np.maximum(employed_days, days_birth + 18 * 365)  # working since 18 at most
    frame["DAYS_EMPLOYED"] = np.where(not_employed, SENTINEL_DAYS, employed_days).astype(np.int64)
    organisations = [k for k in _vocab(_APP, "ORGANIZATION_TYPE").levels if k != "XNA"]
    frame["ORGANIZATION_TYPE"] = _choose(
        not_employed,
        _const_cat(_APP, "ORGANIZATION_TYPE", "XNA", n),
        _draw_cat(_APP, "ORGANIZATION_TYPE", rng, n, allowed=organisations),
    )
    occupation = _draw_cat(_APP, "OCCUPATION_TYPE", rng, n)
    # OCCUPATION_TYPE is NULL for the non-employed and for ~16% of the employed (31.7% overall).
    missing = not_employed | (rng.random(n) < 0.163)
    frame["OCCUPATION_TYPE"] = _with_nulls(occupation, missing)
    frame["FLAG_EMP_PHONE"] = (~not_employed).astype(np.int64)
    work_phone = rng.random(n) < 0.2467
    frame["FLAG_WORK_PHONE"] = (work_phone & ~not_employed).astype(np.int64)


def _family(frame: Frame, z_age: np.ndarray, rng: np.random.Generator) -> None:
    n = z_age.size
    # Older applicants have fewer children at home: a rank correlation that keeps the marginal.
    u = _phi(-0.45 * z_age + 0.89 * rng.standard_normal(n))
    children = _draw_numeric_levels(_APP, "CNT_CHILDREN", rng, n, u=u)
    frame["CNT_CHILDREN"] = children.astype(np.int64)
    status: _Cat = frame["NAME_FAMILY_STATUS"]
    partner = status.isin("Married", "Civil marriage").astype(float)
    relatives = (rng.random(n) < 0.015).astype(float)
    frame["CNT_FAM_MEMBERS"] = children + 1 + partner + relatives


def _income(frame: Frame, rng: np.random.Generator, plan: _Plan, drift: DriftSpec) -> np.ndarray:
    """AMT_INCOME_TOTAL, rank-correlated with education, gender and employment."""
    n = plan.n
    education: _Cat = frame["NAME_EDUCATION_TYPE"]
    gender: _Cat = frame["CODE_GENDER"]
    income_type: _Cat = frame["NAME_INCOME_TYPE"]
    signal = (
        0.9 * education.effect({"Higher education": 1.0, "Academic degree": 1.5,
                                "Incomplete higher": 0.4, "Lower secondary": -0.6})
        + 0.6 * gender.isin("M")
        - 0.6 * income_type.isin("Pensioner", "Unemployed")
        + 0.5 * income_type.isin("Commercial associate")
        + 0.15 * plan.quality
    )  # fmt: skip
    income_z = (signal - 0.4) / 0.6 * 0.55 + 0.835 * rng.standard_normal(n)
    income = _ppf(_APP, "AMT_INCOME_TOTAL", _phi(income_z))
    # Incomes are declared in round amounts: mostly multiples of 4,500.
    rounded = np.where(rng.random(n) < 0.9, _round_to(income, 4500), _round_to(income, 450))
    income = np.maximum(rounded, 25650.0) * (1 + drift.income_shift)
    frame["AMT_INCOME_TOTAL"] = np.round(income, 2)
    return income_z


#: Terms (months) of applied-for cash loans, by share; bigger loans get the longer terms.
_APP_TERMS = {6: 0.03, 10: 0.05, 12: 0.17, 18: 0.13, 24: 0.25, 30: 0.07, 36: 0.17, 48: 0.07,
              60: 0.06}  # fmt: skip


def _loan(frame: Frame, income_z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AMT_GOODS_PRICE, AMT_CREDIT and AMT_ANNUITY of the applied-for loan; returns the term."""
    n = income_z.size
    contract: _Cat = frame["NAME_CONTRACT_TYPE"]
    revolving = contract.isin("Revolving loans")
    size_z = 0.45 * income_z + 0.89 * rng.standard_normal(n)
    size_u = _phi(size_z)
    # Cash loans add insurance and fees on top of the goods price (a round amount).
    markup = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.03, 0.25, n))
    goods = _round_to(_ppf(_APP, "AMT_CREDIT", size_u) / (1 + markup), 4500)
    goods = np.maximum(goods, 40500.0)
    credit = _round_to(goods * (1 + markup), 0.5)
    months = _draw_terms(rng, n, _APP_TERMS, u=_phi(0.6 * size_z + 0.8 * rng.standard_normal(n)))
    monthly_rate = rng.uniform(0.006, 0.016, n)
    annuity = _round_to(_annuity(credit, months, monthly_rate), 0.5)
    # Revolving loans are card limits in multiples of 22,500 with a 5% (sometimes 10%) minimum.
    limit = np.maximum(_round_to(_ppf(_APP, "AMT_CREDIT", 0.1 + 0.5 * size_u), 22500), 45000.0)
    card_rate = np.where(rng.random(n) < 0.85, 0.05, 0.1)
    frame["AMT_CREDIT"] = np.where(revolving, limit, credit)
    frame["AMT_ANNUITY"] = np.where(revolving, limit * card_rate, annuity)
    goods_null = revolving & (rng.random(n) < 0.01)
    frame["AMT_GOODS_PRICE"] = np.where(goods_null, np.nan, np.where(revolving, limit, goods))
    return np.where(revolving, 0, months)


def _car_and_region(frame: Frame, rng: np.random.Generator) -> None:
    n = len(frame["SK_ID_CURR"])
    gender: _Cat = frame["CODE_GENDER"]
    owns_car = rng.random(n) < np.where(gender.isin("M"), 0.48, 0.265)
    frame["FLAG_OWN_CAR"] = _choose(
        owns_car, _const_cat(_APP, "FLAG_OWN_CAR", "Y", n), _const_cat(_APP, "FLAG_OWN_CAR", "N", n)
    )
    car_age = np.round(_ppf(_APP, "OWN_CAR_AGE", rng.random(n)))
    frame["OWN_CAR_AGE"] = np.where(owns_car, car_age, np.nan)  # only car owners have a car age
    # 81 regions; the most populous ones (big cities) get rating 1, the emptiest rating 3.
    region_u = (np.floor(rng.random(n) * 81) + 0.5) / 81
    frame["REGION_POPULATION_RELATIVE"] = np.round(
        _ppf(_APP, "REGION_POPULATION_RELATIVE", region_u), 6
    )
    rating = np.where(region_u > 0.8968, 1, np.where(region_u < 0.1529, 3, 2))
    redraw = rng.random(n) < 0.08
    rating = np.where(redraw, _draw_numeric_levels(_APP, "REGION_RATING_CLIENT", rng, n), rating)
    frame["REGION_RATING_CLIENT"] = rating.astype(np.int64)
    city_rating = _draw_numeric_levels(_APP, "REGION_RATING_CLIENT_W_CITY", rng, n)
    same = rng.random(n) < 0.9
    frame["REGION_RATING_CLIENT_W_CITY"] = np.where(same, rating, city_rating).astype(np.int64)


def _ext_sources(
    frame: Frame, plan: _Plan, rng: np.random.Generator, drift: DriftSpec
) -> list[np.ndarray]:
    """EXT_SOURCE_1..3 as noisy readings of ``quality``; returns their latents (true risk)."""
    n = plan.n
    loading = _CAL.ext_loading
    latents = []
    for k in (1, 2, 3):
        age_loading = 0.25 if k == 1 else 0.0  # EXT_SOURCE_1 correlates with age in the data
        noise = math.sqrt(1 - loading**2 - age_loading**2)
        z = loading * plan.quality + age_loading * plan.z_age + noise * rng.standard_normal(n)
        latents.append(z)
        # A production-batch shift lowers the reading, not the person's risk.
        score = _ppf(_APP, f"EXT_SOURCE_{k}", _phi(z - drift.ext_source_shift))
        null = rng.random(n) < tables()[_APP].column(f"EXT_SOURCE_{k}").null_share
        frame[f"EXT_SOURCE_{k}"] = np.where(null, np.nan, score)
    return latents


def _is_building_column(name: str) -> bool:
    return name.endswith(_BUILDING_SUFFIXES) or name == "TOTALAREA_MODE"


def _building_info(frame: Frame, rng: np.random.Generator) -> None:
    """Building columns: one nested missingness pattern and one size factor per applicant."""
    n = len(frame["SK_ID_CURR"])
    # A column is known when the applicant's "information level" beats its null share, so
    # columns with fewer NULLs are known whenever rarer ones are (as in the real data).
    info_level = rng.random(n)
    size = rng.standard_normal(n)
    attribute_u: dict[str, np.ndarray] = {}
    for col in tables()[_APP].columns:
        if not _is_building_column(col.name):
            continue
        unknown = info_level < col.null_share
        if col.dtype == "string":
            frame[col.name] = _with_nulls(_draw_cat(_APP, col.name, rng, n), unknown)
            continue
        # AVG, MODE and MEDI of one attribute describe the same building: one draw for all.
        attribute = col.name.rsplit("_", 1)[0]
        if attribute not in attribute_u:
            attribute_u[attribute] = _phi(0.6 * size + 0.8 * rng.standard_normal(n))
        values = np.round(_ppf(_APP, col.name, attribute_u[attribute]), 4)
        frame[col.name] = np.where(unknown, np.nan, values)


def _social_and_enquiries(
    frame: Frame, plan: _Plan, days_birth: np.ndarray, rng: np.random.Generator
) -> None:
    n = plan.n
    # Defaults in the social circle go with the applicant's own repayment habit.
    # Only an observed circle can default; the share with defaults then matches the profile.
    observed_30 = np.nan_to_num(frame["OBS_30_CNT_SOCIAL_CIRCLE"], nan=0.0)
    with_circle = _share_above_zero(_APP, "OBS_30_CNT_SOCIAL_CIRCLE")
    u = _phi(-0.3 * plan.behaviour + 0.95 * rng.standard_normal(n))
    u = 1 - (1 - u) * with_circle  # only the top of the distribution has defaults
    defaults_30 = _draw_numeric_levels(_APP, "DEF_30_CNT_SOCIAL_CIRCLE", rng, n, u=u)
    defaults_30 = np.where(observed_30 > 0, np.minimum(defaults_30, observed_30), 0.0)
    social_null = np.isnan(frame["OBS_30_CNT_SOCIAL_CIRCLE"])
    frame["OBS_30_CNT_SOCIAL_CIRCLE"] = np.where(social_null, np.nan, observed_30)
    observed_60 = np.where(rng.random(n) < 0.95, observed_30, np.maximum(observed_30 - 1, 0))
    frame["OBS_60_CNT_SOCIAL_CIRCLE"] = np.where(social_null, np.nan, observed_60)
    frame["DEF_30_CNT_SOCIAL_CIRCLE"] = np.where(social_null, np.nan, defaults_30)
    defaults_60 = defaults_30 - rng.binomial(defaults_30.astype(np.int64), 0.3)
    frame["DEF_60_CNT_SOCIAL_CIRCLE"] = np.where(social_null, np.nan, defaults_60)
    # Enquiries to the bureau are unknown for applicants the bureau has no credits for.
    no_bureau = plan.n_bureau == 0
    for period in ("HOUR", "DAY", "WEEK", "MON", "QRT", "YEAR"):
        name = f"AMT_REQ_CREDIT_BUREAU_{period}"
        frame[name] = np.where(no_bureau, np.nan, np.nan_to_num(frame[name], nan=0.0))
    # Nothing is registered, published or changed before birth (IDs from age 14).
    for name, min_age in (("DAYS_REGISTRATION", 0), ("DAYS_ID_PUBLISH", 14),
                          ("DAYS_LAST_PHONE_CHANGE", 14)):  # fmt: skip
        floor = days_birth + min_age * 365
        values = np.maximum(frame[name], floor)
        frame[name] = values.astype(np.int64) if frame[name].dtype.kind == "i" else values


def _application_risk(frame: Frame, days_birth: np.ndarray, term_months: np.ndarray) -> np.ndarray:
    """Log-odds contributions of the application columns (directions as in the real data)."""
    age_years = -days_birth / 365.25
    employed = frame["DAYS_EMPLOYED"] != SENTINEL_DAYS
    tenure_years = np.where(employed, -frame["DAYS_EMPLOYED"] / 365.25, 0.0)
    income = frame["AMT_INCOME_TOTAL"]
    annuity_to_income = frame["AMT_ANNUITY"] / income
    goods = frame["AMT_GOODS_PRICE"]
    credit_to_goods = np.where(np.isnan(goods), 1.0, frame["AMT_CREDIT"] / goods)
    cats: dict[str, _Cat] = {k: v for k, v in frame.items() if isinstance(v, _Cat)}
    risk = (
        -0.016 * (age_years - 43)  # the young default more
        + np.where(employed, 0.8 * np.exp(-tenure_years / 3) - 0.15, -0.1)  # short tenure
        + 1.6 * np.clip(annuity_to_income - 0.17, -0.12, 0.35)  # repayment burden
        + np.select([term_months >= 48, term_months == 12], [0.25, -0.2], 0.0)  # long terms
        + np.where(credit_to_goods > 1.2, 0.25, 0.0)  # heavy insurance/fee mark-up
        + 0.3 * cats["CODE_GENDER"].isin("M")
        + cats["NAME_EDUCATION_TYPE"].effect(
            {"Lower secondary": 0.3, "Higher education": -0.35, "Academic degree": -0.9,
             "Incomplete higher": 0.05}
        )
        + cats["NAME_INCOME_TYPE"].effect(
            {"Unemployed": 1.5, "State servant": -0.25, "Commercial associate": -0.05,
             "Businessman": -1.0}
        )
        + cats["OCCUPATION_TYPE"].effect(
            {"Low-skill Laborers": 0.6, "Drivers": 0.25, "Laborers": 0.15, "Waiters/barmen staff":
             0.2, "Accountants": -0.3, "Managers": -0.15, "High skill tech staff": -0.15,
             "Core staff": -0.15}
        )
        + cats["NAME_HOUSING_TYPE"].effect({"With parents": 0.2, "Rented apartment": 0.3})
        + cats["NAME_FAMILY_STATUS"].effect({"Civil marriage": 0.12, "Single / not married": 0.12,
                                             "Widow": -0.1})
        + cats["FLAG_OWN_CAR"].effect({"Y": -0.15})
        + np.select([frame["REGION_RATING_CLIENT"] == 1, frame["REGION_RATING_CLIENT"] == 3],
                    [-0.35, 0.3], 0.0)
        + 0.25 * frame["REG_CITY_NOT_LIVE_CITY"]
        + 0.12 * frame["REG_CITY_NOT_WORK_CITY"]
        + np.where(frame["DAYS_ID_PUBLISH"] > -1000, 0.15, 0.0)  # recently re-issued ID
        + np.where(frame["DAYS_LAST_PHONE_CHANGE"] > -300, 0.12, 0.0)  # recent phone change
    )  # fmt: skip
    return risk
