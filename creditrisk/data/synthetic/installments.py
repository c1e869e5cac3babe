"""installments_payments: instalments due on the loans and the card repayments."""

from __future__ import annotations

import numpy as np

from creditrisk.data.synthetic.credit_card import _CardMonths
from creditrisk.data.synthetic.previous_application import _Accounts
from creditrisk.data.synthetic.process import _CAL, _DAYS_PER_MONTH, _ranks, _sigmoid
from creditrisk.data.synthetic.sampling import Frame


def _installments(loans: _Accounts, cards: _CardMonths, rng: np.random.Generator) -> Frame:
    """Instalments due before the application: the loans' schedules plus card payments."""
    loan_rows = _loan_instalments(loans, rng)
    card_rows = _card_instalments(cards, rng)
    return {name: np.concatenate([loan_rows[name], card_rows[name]]) for name in loan_rows}


def _loan_instalments(loans: _Accounts, rng: np.random.Generator) -> Frame:
    n = loans.sk_id_prev.size
    # Instalments fall due monthly from DAYS_FIRST_DUE until the loan ends or the application.
    last_day = np.minimum(np.where(np.isfinite(loans.end), loans.end, -1), -1)
    n_due = np.floor((last_day - loans.first_due) / _DAYS_PER_MONTH).astype(np.int64) + 1
    planned_end = loans.first_due + np.round(_DAYS_PER_MONTH * (loans.months - 1))
    early = np.isfinite(loans.end) & (loans.end < planned_end)
    n_due = np.clip(n_due, 0, loans.months.astype(np.int64))
    loan = np.repeat(np.arange(n), n_due)
    number = _ranks(n_due)
    k = loan.size
    due = loans.first_due[loan] + np.round(_DAYS_PER_MONTH * number)
    amount = loans.annuity[loan]
    # An early repayment settles the rest of the principal with the last instalment.
    settles = early[loan] & (number == n_due[loan] - 1)
    remaining = loans.months[loan] - number
    amount = np.where(settles, np.round(amount * remaining * 0.92, 2), amount)
    version = np.array([1.0, 2.0, 3.0, 4.0])[np.searchsorted([0.86, 0.96, 0.99], rng.random(n))][
        loan
    ]
    behaviour = loans.behaviour[loan]
    loan_noise = 0.6 * rng.standard_normal(n)[loan]
    late = rng.random(k) < _sigmoid(_CAL.late_logit - _CAL.late_slope * behaviour + loan_noise)
    short = rng.random(k) < _sigmoid(_CAL.short_logit - _CAL.short_slope * behaviour + loan_noise)
    return _payments(
        loans.sk_id_prev[loan],
        loans.sk_id_curr[loan],
        version,
        number + 1.0,
        due,
        amount,
        late,
        short,
        behaviour,
        rng,
    )


def _card_instalments(cards: _CardMonths, rng: np.random.Generator) -> Frame:
    """Card repayments (NUM_INSTALMENT_VERSION 0): a paying month's total in one to four parts."""
    frame = cards.frame
    paying_months = np.flatnonzero(frame["AMT_PAYMENT_TOTAL_CURRENT"] > 0)
    parts = 1 + np.minimum(rng.poisson(0.45, paying_months.size), 3)
    index = np.repeat(paying_months, parts)
    k = index.size
    weights = rng.exponential(1.0, k)
    starts = np.cumsum(parts) - parts
    share = weights / np.repeat(np.add.reduceat(weights, starts), parts) if k else weights
    amount = np.round(frame["AMT_PAYMENT_TOTAL_CURRENT"][index] * share, 2)
    month_start = frame["MONTHS_BALANCE"][index] * _DAYS_PER_MONTH
    due = np.minimum(np.round(month_start + rng.integers(0, 30, k)), -1).astype(float)
    # Card instalments are numbered per card in time order.
    card = cards.card_index[index]
    counts = np.bincount(card, minlength=int(card.max(initial=-1)) + 1)
    number = _ranks(counts[counts > 0]) + 1.0
    return _payments(
        frame["SK_ID_PREV"][index],
        frame["SK_ID_CURR"][index],
        np.zeros(k),
        number,
        due,
        amount,
        cards.late[index],
        np.zeros(k, dtype=bool),
        np.zeros(k),
        rng,
    )


def _payments(
    sk_id_prev: np.ndarray,
    sk_id_curr: np.ndarray,
    version: np.ndarray,
    number: np.ndarray,
    due: np.ndarray,
    amount: np.ndarray,
    late: np.ndarray,
    short: np.ndarray,
    behaviour: np.ndarray,
    rng: np.random.Generator,
    paid: np.ndarray | None = None,
) -> Frame:
    """Payment rows: on time (a few days early) or late, in full or short (rest paid later)."""
    k = due.size
    early_days = np.floor(rng.random(k) ** 2.5 * 30)
    late_days = 1 + np.floor(rng.exponential(np.where(behaviour < -1.2, 22.0, 7.0), k))
    entry = np.minimum(due + np.where(late, late_days, -early_days), -1)
    paid = amount if paid is None else paid
    part = np.round(paid * rng.uniform(0.05, 0.95, k), 2)
    # Some instalments are simply paid in two parts; half of the shortfalls are made good later.
    split = ~short & (rng.random(k) < 0.06)
    payment = np.where(short | split, part, paid)
    extra = np.flatnonzero(split | (short & (rng.random(k) < 0.5)))
    extra_entry = np.minimum(entry[extra] + np.floor(rng.exponential(8, extra.size)), -1)
    # A few recent instalments of poor payers are still unpaid: no entry date, no payment.
    unpaid = (behaviour < -1.5) & (due > -60) & (rng.random(k) < 0.08)
    rows: Frame = {
        "SK_ID_PREV": np.concatenate([sk_id_prev, sk_id_prev[extra]]),
        "SK_ID_CURR": np.concatenate([sk_id_curr, sk_id_curr[extra]]),
        "NUM_INSTALMENT_VERSION": np.concatenate([version, version[extra]]),
        "NUM_INSTALMENT_NUMBER": np.concatenate([number, number[extra]]).astype(np.int64),
        "DAYS_INSTALMENT": np.concatenate([due, due[extra]]),
        "DAYS_ENTRY_PAYMENT": np.concatenate([np.where(unpaid, np.nan, entry), extra_entry]),
        "AMT_INSTALMENT": np.concatenate([amount, amount[extra]]),
        "AMT_PAYMENT": np.concatenate(
            [np.where(unpaid, np.nan, payment), np.round(paid[extra] - part[extra], 2)]
        ),
    }
    return rows
