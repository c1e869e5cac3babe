"""credit_card_balance: the monthly balance of each approved revolving loan (card)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from creditrisk.data.synthetic.previous_application import _Accounts
from creditrisk.data.synthetic.process import (
    _CAL,
    _CC,
    _MAX_MONTHS,
    _episodes,
    _months,
    _ranks,
    _round_to,
    _sigmoid,
)
from creditrisk.data.synthetic.sampling import Frame, _Cat, _vocab


@dataclass(frozen=True)
class _CardMonths:
    frame: Frame
    card_index: np.ndarray  # card of each row
    late: np.ndarray  # the month's payment was late (for installments_payments)


def _credit_cards(cards: _Accounts, rng: np.random.Generator) -> _CardMonths:
    """Monthly balance of each approved card from its decision month to closure or month -1."""
    n = cards.sk_id_prev.size
    start = np.maximum(_months(cards.decision), -_MAX_MONTHS)
    closed = cards.end <= -1
    close_month = np.where(closed, _months(np.where(closed, cards.end, -1)), 0)
    # A closed card keeps reporting "Completed" months for a while.
    end_month = np.where(closed, np.minimum(close_month + rng.geometric(0.18, n), -1), -1)
    lengths = np.maximum(end_month - start + 1, 1)
    card = np.repeat(np.arange(n), lengths)
    rank = _ranks(lengths)
    k = card.size
    behaviour = cards.behaviour[card]
    completed = closed[card] & (start[card] + rank > close_month[card])
    limit = cards.amount[card]
    raised = (rng.random(n) < 0.2)[card] & (rank >= (rng.random(n) * lengths)[card])
    limit = np.where(raised, _round_to(limit * 1.5, 22500), limit)
    dormant_card = rng.random(n) < 0.3
    dormant = dormant_card[card] | completed
    not_activated = (rank == 0) & (rng.random(k) < 0.5)
    limit = np.where(not_activated | (dormant & (rng.random(n) < 0.15)[card]), 0.0, limit)
    # Poorer payers run their cards closer to the limit.
    level = _sigmoid(0.5 - 0.9 * cards.behaviour + 0.8 * rng.standard_normal(n))[card]
    utilisation = np.clip(level + 0.08 * rng.standard_normal(k), 0, 1.06)
    # Idle months: the last statement was paid off and nothing new was drawn.
    idle = ~dormant & (rng.random(k) < 0.35)
    balance = np.where(dormant | idle, 0.0, np.round(utilisation * limit, 2))
    troubled = rng.random(n) < _sigmoid(
        _CAL.card_trouble_logit - _CAL.card_trouble_slope * cards.behaviour
    )
    run_start, run_length = _episodes(rng, lengths, troubled & ~dormant_card, 3.0)
    into_run = rank - run_start[card]
    in_run = (into_run >= 0) & (into_run < run_length[card]) & (balance > 0)
    dpd = np.where(in_run, 30 * into_run + rng.integers(1, 31, k), 0)
    minimum = np.round(np.where(balance > 0, np.maximum(0.05 * balance, 0), 0.0), 2)
    # Most months pay the minimum or a bit more; some clear the whole balance.
    payment = np.minimum(minimum * (1 + 2 * rng.random(k)), balance)
    payment = np.round(np.where(rng.random(k) < 0.12, balance, payment), 2)
    clearing = np.round(utilisation * limit * rng.uniform(0.05, 0.3, k), 2)
    payment = np.where(idle, clearing, payment)
    # In a delinquent month the minimum goes unpaid.
    payment = np.where(in_run, np.round(minimum * rng.uniform(0, 0.6, k), 2), payment)
    frame = _card_columns(
        cards, card, rank, lengths, limit, balance, minimum, payment, dormant, rng
    )
    vocab = _vocab(_CC, "NAME_CONTRACT_STATUS")
    last = rank == lengths[card] - 1
    u = rng.random(k)
    status = np.select(
        [completed, (rank == 0) & (u < 0.03), (rank == 0) & (u > 0.9995),
         last & in_run & (u < 0.01)],
        [vocab.code("Completed"), vocab.code("Signed"), vocab.code("Sent proposal"),
         vocab.code("Demand")],
        vocab.code("Active"),
    )  # fmt: skip
    frame["NAME_CONTRACT_STATUS"] = _Cat(status.astype(np.int16), vocab)
    frame["SK_DPD"] = dpd.astype(np.int64)
    frame["SK_DPD_DEF"] = np.where(in_run & (u > 0.93), dpd, 0).astype(np.int64)
    late_payer = _sigmoid(_CAL.late_logit - _CAL.late_slope * behaviour)
    return _CardMonths(frame, card, rng.random(k) < late_payer)


def _card_columns(
    cards: _Accounts,
    card: np.ndarray,
    rank: np.ndarray,
    lengths: np.ndarray,
    limit: np.ndarray,
    balance: np.ndarray,
    minimum: np.ndarray,
    payment: np.ndarray,
    dormant: np.ndarray,
    rng: np.random.Generator,
) -> Frame:
    k = card.size
    # Drawing details are unknown (NULL) in about a fifth of the months; nothing drawn then.
    details_known = rng.random(k) >= 0.2159
    draws = details_known & ~dormant & (limit > 0) & (rng.random(k) < 0.33)
    atm = draws & (rng.random(k) < 0.45)
    pos = draws & ~atm
    other = draws & (rng.random(k) < 0.003)
    atm_amount = np.where(atm, _round_to(limit * rng.uniform(0.03, 0.35, k), 4500), 0.0)
    pos_amount = np.where(pos, np.round(limit * rng.uniform(0.01, 0.25, k), 2), 0.0)
    other_amount = np.where(other, _round_to(limit * rng.uniform(0.05, 0.3, k), 4500), 0.0)
    atm_count = np.where(atm, rng.integers(1, 4, k), 0).astype(float)
    pos_count = np.where(pos, rng.integers(1, 8, k), 0).astype(float)
    other_count = other.astype(float)
    minimum_known = rng.random(k) >= 0.0659
    # Instalments paid so far: a running count of months with the minimum paid, per card.
    paid_minimum = (payment >= minimum).astype(np.int64)
    running = np.cumsum(paid_minimum)
    mature = running - np.repeat((running - paid_minimum)[rank == 0], lengths)

    def known(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.where(mask, values, np.nan)

    receivable = balance
    return {
        "SK_ID_PREV": cards.sk_id_prev[card],
        "SK_ID_CURR": cards.sk_id_curr[card],
        "MONTHS_BALANCE": np.maximum(_months(cards.decision), -_MAX_MONTHS)[card] + rank,
        "AMT_BALANCE": balance,
        "AMT_CREDIT_LIMIT_ACTUAL": limit.astype(np.int64),
        "AMT_DRAWINGS_ATM_CURRENT": known(atm_amount, details_known),
        "AMT_DRAWINGS_CURRENT": atm_amount + pos_amount + other_amount,
        "AMT_DRAWINGS_OTHER_CURRENT": known(other_amount, details_known),
        "AMT_DRAWINGS_POS_CURRENT": known(pos_amount, details_known),
        "AMT_INST_MIN_REGULARITY": known(minimum, minimum_known),
        "AMT_PAYMENT_CURRENT": known(payment, details_known & (rng.random(k) >= 0.006)),
        "AMT_PAYMENT_TOTAL_CURRENT": payment,
        "AMT_RECEIVABLE_PRINCIPAL": np.round(balance * rng.uniform(0.93, 1.0, k), 2),
        "AMT_RECIVABLE": receivable,
        "AMT_TOTAL_RECEIVABLE": receivable,
        "CNT_DRAWINGS_ATM_CURRENT": known(atm_count, details_known),
        "CNT_DRAWINGS_CURRENT": (atm_count + pos_count + other_count).astype(np.int64),
        "CNT_DRAWINGS_OTHER_CURRENT": known(other_count, details_known),
        "CNT_DRAWINGS_POS_CURRENT": known(pos_count, details_known),
        "CNT_INSTALMENT_MATURE_CUM": known(mature.astype(float), minimum_known),
    }
