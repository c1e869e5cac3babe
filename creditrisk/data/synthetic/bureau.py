"""bureau and bureau_balance: credits at other lenders and their monthly STATUS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from creditrisk.data.synthetic.application import _Applicants
from creditrisk.data.synthetic.process import (
    _BB,
    _BUREAU,
    _CAL,
    _DAYS_PER_MONTH,
    _MAX_MONTHS,
    _months,
    _phi,
    _Plan,
    _ranks,
    _sigmoid,
)
from creditrisk.data.synthetic.sampling import (
    Frame,
    _Cat,
    _filter_rows,
    _generic_columns,
    _ppf,
    _vocab,
)


@dataclass(frozen=True)
class _Bureau:
    bureau: Frame
    balance: Frame


def _bureau_tables(
    plan: _Plan, applicants: _Applicants, rng: np.random.Generator, first_id: int
) -> _Bureau:
    m = int(plan.n_bureau.sum())
    owner = np.repeat(np.arange(plan.n), plan.n_bureau)
    behaviour = plan.behaviour[owner]
    structural = {
        "SK_ID_CURR", "SK_ID_BUREAU", "CREDIT_ACTIVE", "DAYS_CREDIT", "CREDIT_DAY_OVERDUE",
        "DAYS_CREDIT_ENDDATE", "DAYS_ENDDATE_FACT", "AMT_CREDIT_MAX_OVERDUE",
        "AMT_CREDIT_SUM", "AMT_CREDIT_SUM_DEBT", "AMT_CREDIT_SUM_LIMIT", "AMT_CREDIT_SUM_OVERDUE",
        "DAYS_CREDIT_UPDATE", "AMT_ANNUITY",
    }  # fmt: skip
    frame = _generic_columns(_BUREAU, m, rng, skip=structural)
    frame["SK_ID_CURR"] = plan.sk_id_curr[owner]
    sk_id_bureau = first_id + rng.permutation(m).astype(np.int64)
    frame["SK_ID_BUREAU"] = sk_id_bureau
    credit_type: _Cat = frame["CREDIT_TYPE"]
    card = credit_type.isin("Credit card")
    days_credit = np.round(_ppf(_BUREAU, "DAYS_CREDIT", rng.random(m)))
    days_credit = np.maximum(days_credit, applicants.days_birth[owner] + 18 * 365)
    frame["DAYS_CREDIT"] = days_credit.astype(np.int64)
    troubled = rng.random(m) < _sigmoid(
        _CAL.bureau_trouble_logit - _CAL.bureau_trouble_slope * behaviour
    )
    term = _bureau_terms(credit_type, card, rng)
    end_planned = days_credit + term
    # A credit is running while its planned end lies ahead; troubled ones linger past it.
    p_active = np.where(end_planned > 0, 0.83, np.where(troubled, 0.3, 0.04))
    p_active = np.where(np.isnan(term), 0.45, p_active)
    active = rng.random(m) < p_active
    frame["CREDIT_ACTIVE"] = _credit_active(active, troubled, rng)
    frame["DAYS_CREDIT_ENDDATE"] = end_planned
    closed = ~active
    # Closed credits ended between opening and today, often before the planned end date.
    elapsed = np.nan_to_num(term, nan=900.0) * rng.uniform(0.35, 1.05, m)
    end_fact = np.clip(np.round(days_credit + elapsed), days_credit, -1)
    end_fact = np.where(days_credit >= -1, days_credit, end_fact)
    frame["DAYS_ENDDATE_FACT"] = np.where(closed, end_fact, np.nan)
    update_active = np.maximum(-np.floor(rng.exponential(40, m)), days_credit)
    update_closed = np.minimum(end_fact + np.floor(rng.exponential(20, m)), 0)
    frame["DAYS_CREDIT_UPDATE"] = np.where(active, update_active, update_closed).astype(np.int64)
    amount_u = _phi(0.35 * applicants.income_z[owner] + 0.94 * rng.standard_normal(m))
    amount = np.round(_ppf(_BUREAU, "AMT_CREDIT_SUM", np.where(card, 0.8 * amount_u, amount_u)), 2)
    frame["AMT_CREDIT_SUM"] = amount
    _bureau_amounts(frame, amount, active, card, troubled, days_credit, term, behaviour, rng)
    balance = _bureau_balance(frame, sk_id_bureau, active, troubled, days_credit, end_fact, rng)
    return _Bureau(frame, balance)


def _credit_active(active: np.ndarray, troubled: np.ndarray, rng: np.random.Generator) -> _Cat:
    vocab = _vocab(_BUREAU, "CREDIT_ACTIVE")
    u = rng.random(active.size)
    # Troubled credits are the ones sold to collectors or written off as bad debt.
    sold = troubled & ~active & (u < 0.045)
    bad_debt = troubled & active & (u < 0.0003)
    codes = np.where(active, vocab.code("Active"), vocab.code("Closed"))
    codes = np.where(sold, vocab.code("Sold"), np.where(bad_debt, vocab.code("Bad debt"), codes))
    return _Cat(codes.astype(np.int16), vocab)


def _bureau_terms(credit_type: _Cat, card: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Planned duration in days; NULL for some cards, decades for a few open-ended ones."""
    m = card.size
    median = credit_type.effect({"Mortgage": 4000.0, "Car loan": 1400.0, "Microloan": 60.0,
                                 "Credit card": 1100.0})  # fmt: skip
    median = np.where(median == 0, 540.0, median)
    term = np.round(median * np.exp(0.7 * rng.standard_normal(m)))
    u = rng.random(m)
    open_ended = card & (u < 0.12)
    term = np.where(open_ended, rng.integers(29_000, 31_000, m), np.maximum(term, 7))
    return np.where((card & (u > 0.78)) | (~card & (u < 0.02)), np.nan, term)


def _bureau_amounts(
    frame: Frame,
    amount: np.ndarray,
    active: np.ndarray,
    card: np.ndarray,
    troubled: np.ndarray,
    days_credit: np.ndarray,
    term: np.ndarray,
    behaviour: np.ndarray,
    rng: np.random.Generator,
) -> None:
    m = amount.size
    remaining = np.clip(1 + days_credit / np.nan_to_num(term, nan=1800.0), 0.05, 1)
    utilisation = np.clip(rng.beta(1.3, 2.2, m) + 0.12 * troubled - 0.05 * behaviour, 0, 1)
    debt = np.where(card, utilisation * amount, remaining * rng.uniform(0.8, 1.0, m) * amount)
    debt = np.round(np.where(active, debt, 0.0), 2)
    frame["AMT_CREDIT_SUM_DEBT"] = np.where(rng.random(m) < 0.146, np.nan, debt)
    # Only some bureaus report the unused card limit.
    limit = np.where(card & active & (rng.random(m) < 0.5), np.round(amount - debt, 2), 0.0)
    frame["AMT_CREDIT_SUM_LIMIT"] = np.where(rng.random(m) < 0.3615, np.nan, limit)
    # Overdue today only on running troubled credits; the worst overdue ever on any troubled one.
    overdue_now = troubled & active & (rng.random(m) < 0.3)
    overdue_share = rng.uniform(0.02, 0.3, m)
    overdue = np.where(overdue_now, np.round(np.maximum(debt, 0.05 * amount) * overdue_share, 2), 0)
    frame["AMT_CREDIT_SUM_OVERDUE"] = overdue
    days_overdue = np.minimum(1 + np.floor(rng.exponential(90, m)), 2900)
    frame["CREDIT_DAY_OVERDUE"] = np.where(overdue_now, days_overdue, 0).astype(np.int64)
    worst = np.where(troubled, np.round(amount * rng.uniform(0.005, 0.15, m), 2), 0.0)
    worst = np.maximum(worst, overdue)
    frame["AMT_CREDIT_MAX_OVERDUE"] = np.where(rng.random(m) < 0.662, np.nan, worst)
    months = np.maximum(np.nan_to_num(term, nan=1800.0) / _DAYS_PER_MONTH, 1)
    annuity = np.where(rng.random(m) < 0.55, 0.0, np.round(amount / months * 1.3, 2))
    frame["AMT_ANNUITY"] = np.where(rng.random(m) < 0.6603, np.nan, annuity)


_BUCKET_SHARES = {"1": 0.8, "2": 0.08, "3": 0.045, "4": 0.015, "5": 0.06}


def _bureau_balance(
    bureau: Frame,
    sk_id_bureau: np.ndarray,
    active: np.ndarray,
    troubled: np.ndarray,
    days_credit: np.ndarray,
    end_fact: np.ndarray,
    rng: np.random.Generator,
) -> Frame:
    """Monthly STATUS of about 40% of the credits, from the opening month to month 0."""
    m = sk_id_bureau.size
    has_history = rng.random(m) < _CAL.balance_share
    first_month = np.maximum(_months(days_credit), -_MAX_MONTHS)
    lengths = np.where(has_history, 1 - first_month, 0)
    credit = np.repeat(np.arange(m), lengths)
    month = -_ranks(lengths)  # 0, -1, -2, ... back to the opening month
    k = credit.size
    vocab = _vocab(_BB, "STATUS")
    close_month = np.where(active, 1, _months(end_fact))
    unknown = rng.random(m) < 0.48  # the bureau has no status for these credits: all X
    delinquent = troubled[credit] & (rng.random(k) < 0.09) | (rng.random(k) < 0.0006)
    buckets = vocab.draw(rng, k, weights=_BUCKET_SHARES)
    codes = np.where(unknown[credit], vocab.code("X"), vocab.code("0"))
    codes = np.where(delinquent, buckets, codes)
    codes = np.where(month > close_month[credit], vocab.code("C"), codes)
    balance: Frame = {
        "SK_ID_BUREAU": sk_id_bureau[credit],
        "MONTHS_BALANCE": month,
        "STATUS": _Cat(codes.astype(np.int16), vocab),
    }
    # Orphans: a few credits with a monthly history are missing from bureau, as in Kaggle.
    orphan = has_history & (rng.random(m) < _CAL.bureau_orphan_share)
    _filter_rows(bureau, ~orphan)
    return balance
