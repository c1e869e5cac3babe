"""previous_application: earlier applications, and the approved loans and cards among them.

Besides the table, the writer returns the approved loans and cards (``_Accounts``) whose monthly
history goes into POS_CASH_balance, credit_card_balance and installments_payments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from creditrisk.data.synthetic.application import _Applicants
from creditrisk.data.synthetic.process import (
    _CAL,
    _CC,
    _DAYS_PER_MONTH,
    _PREV,
    SENTINEL_DAYS,
    _annuity,
    _phi,
    _Plan,
    _round_to,
    _sigmoid,
)
from creditrisk.data.synthetic.sampling import (
    Frame,
    _Cat,
    _cat,
    _choose,
    _const_cat,
    _draw_cat,
    _draw_terms,
    _filter_rows,
    _generic_columns,
    _ppf,
    _vocab,
)


@dataclass(frozen=True)
class _Accounts:
    """Approved previous loans (kind = loan) or cards, as needed by the monthly tables."""

    sk_id_prev: np.ndarray
    sk_id_curr: np.ndarray
    behaviour: np.ndarray
    decision: np.ndarray  # DAYS_DECISION
    amount: np.ndarray  # AMT_CREDIT (card: the limit)
    annuity: np.ndarray
    months: np.ndarray  # CNT_PAYMENT (0 for cards)
    first_due: np.ndarray  # DAYS_FIRST_DUE
    end: np.ndarray  # day the account ended; +inf while running


@dataclass(frozen=True)
class _Previous:
    frame: Frame
    loans: _Accounts
    cards: _Accounts


def _previous_applications(
    plan: _Plan, applicants: _Applicants, rng: np.random.Generator, first_id: int
) -> _Previous:
    m = int(plan.n_prev.sum())
    owner = np.repeat(np.arange(plan.n), plan.n_prev)
    behaviour = plan.behaviour[owner]
    structural = {
        "SK_ID_PREV", "SK_ID_CURR", "AMT_ANNUITY", "AMT_APPLICATION", "AMT_CREDIT",
        "AMT_DOWN_PAYMENT", "AMT_GOODS_PRICE", "RATE_DOWN_PAYMENT", "NAME_CASH_LOAN_PURPOSE",
        "NAME_CONTRACT_STATUS", "DAYS_DECISION", "NAME_PAYMENT_TYPE", "CODE_REJECT_REASON",
        "NAME_GOODS_CATEGORY", "NAME_PORTFOLIO", "NAME_PRODUCT_TYPE", "CHANNEL_TYPE",
        "NAME_SELLER_INDUSTRY", "CNT_PAYMENT", "NAME_YIELD_GROUP", "PRODUCT_COMBINATION",
        "DAYS_FIRST_DRAWING", "DAYS_FIRST_DUE", "DAYS_LAST_DUE_1ST_VERSION", "DAYS_LAST_DUE",
        "DAYS_TERMINATION", "NFLAG_INSURED_ON_APPROVAL",
    }  # fmt: skip
    frame = _generic_columns(_PREV, m, rng, skip=structural)
    sk_id_prev = first_id + rng.permutation(m).astype(np.int64)
    frame["SK_ID_PREV"] = sk_id_prev
    frame["SK_ID_CURR"] = plan.sk_id_curr[owner]
    contract: _Cat = frame["NAME_CONTRACT_TYPE"]
    consumer, cash = contract.isin("Consumer loans"), contract.isin("Cash loans")
    revolving, unknown_type = contract.isin("Revolving loans"), contract.isin("XNA")
    status = _prev_status(behaviour, consumer, cash, revolving, unknown_type, rng)
    frame["NAME_CONTRACT_STATUS"] = status
    approved, refused = status.isin("Approved"), status.isin("Refused")
    # Canceled applications (and a few refused ones) never got an offer: zero amounts.
    empty = status.isin("Canceled") | (refused & (rng.random(m) < 0.22))
    # Approved loans are the older applications (the rest are recent attempts).
    decision_u = rng.random(m) ** np.where(approved, 1.3, 0.8)
    decision = np.round(_ppf(_PREV, "DAYS_DECISION", decision_u))
    decision = np.maximum(decision, applicants.days_birth[owner] + 18 * 365)
    frame["DAYS_DECISION"] = decision.astype(np.int64)
    months = _prev_amounts(frame, consumer, cash, revolving, empty, applicants.income_z[owner], rng)
    _prev_products(frame, consumer, cash, revolving, empty, status, behaviour, rng)
    schedule = _prev_schedule(frame, decision, months, approved, revolving, rng)
    # Orphans: a few approved applications with monthly rows are missing from this table.
    orphan = approved & (rng.random(m) < _CAL.prev_orphan_share)
    loans, cards = _accounts(frame, owner, plan, schedule, months, approved, revolving)
    _filter_rows(frame, ~orphan)
    return _Previous(frame, loans, cards)


def _prev_status(
    behaviour: np.ndarray,
    consumer: np.ndarray,
    cash: np.ndarray,
    revolving: np.ndarray,
    unknown_type: np.ndarray,
    rng: np.random.Generator,
) -> _Cat:
    m = behaviour.size
    vocab = _vocab(_PREV, "NAME_CONTRACT_STATUS")
    type_effect = np.select([cash, consumer], [0.45, -0.55], 0.3)
    refused = rng.random(m) < _sigmoid(
        _CAL.refused_logit + type_effect - _CAL.refused_slope * behaviour
    )
    cancel_share = np.select([cash, revolving, unknown_type], [0.37, 0.22, 1.0], 0.05)
    canceled = ~refused & (rng.random(m) < cancel_share)
    unused = ~refused & ~canceled & consumer & (rng.random(m) < 0.045)
    codes = np.select(
        [refused, canceled, unused],
        [vocab.code("Refused"), vocab.code("Canceled"), vocab.code("Unused offer")],
        vocab.code("Approved"),
    )
    return _Cat(codes.astype(np.int16), vocab)


#: Terms of earlier cash loans, which run shorter than the applied-for ones
#: (``_APP_TERMS`` in :mod:`creditrisk.data.synthetic.application`).
_CASH_TERMS = {6: 0.08, 10: 0.05, 12: 0.32, 18: 0.1, 24: 0.22, 30: 0.04, 36: 0.12, 48: 0.04,
               60: 0.03}  # fmt: skip
_CONSUMER_TERMS = {6: 0.3, 8: 0.04, 10: 0.16, 12: 0.28, 18: 0.08, 24: 0.14}
_YIELD_RATES = {"low_action": 0.008, "low_normal": 0.018, "middle": 0.028, "high": 0.04}


def _prev_amounts(
    frame: Frame,
    consumer: np.ndarray,
    cash: np.ndarray,
    revolving: np.ndarray,
    empty: np.ndarray,
    income_z: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Application, credit, goods price, down payment and term; returns CNT_PAYMENT."""
    m = consumer.size
    size_u = _phi(0.35 * income_z + 0.94 * rng.standard_normal(m))
    # Consumer loans finance goods (the lower amounts), cash loans the higher ones.
    goods = np.round(_ppf(_PREV, "AMT_GOODS_PRICE", 0.01 + 0.69 * size_u), 2)
    cash_amount = _round_to(_ppf(_PREV, "AMT_GOODS_PRICE", 0.3 + 0.7 * size_u), 4500)
    cash_amount = np.maximum(cash_amount, 18000.0)
    limit = np.maximum(_round_to(_ppf(_CC, "AMT_CREDIT_LIMIT_ACTUAL", size_u), 22500), 22500.0)
    has_down = rng.random(m) < 0.6
    down_rate = np.where(has_down, rng.beta(1.1, 6.5, m), 0.0)
    down = np.where(consumer, np.round(goods * down_rate, 2), np.nan)
    down = np.where(cash & (rng.random(m) < 0.08), 0.0, down)
    insured = rng.random(m) < np.where(cash, 0.6, 0.25)
    markup = np.where(insured, rng.uniform(0.03, 0.25, m), 0.0)
    application = np.select([consumer, cash, revolving], [goods, cash_amount, limit], 0.0)
    credit = np.select(
        [consumer, cash, revolving],
        [np.round((goods - np.nan_to_num(down)) * (1 + markup), 2),
         np.round(cash_amount * (1 + markup), 2), limit],
        0.0,
    )  # fmt: skip
    months = np.select(
        [consumer, cash],
        [_draw_terms(rng, m, _CONSUMER_TERMS), _draw_terms(rng, m, _CASH_TERMS)],
        0.0,
    )
    goods_price = np.where(cash, cash_amount, np.where(revolving, limit, goods))
    goods_price = np.where(revolving & (rng.random(m) < 0.35), np.nan, goods_price)
    frame["AMT_APPLICATION"] = np.where(empty, 0.0, application)
    frame["AMT_CREDIT"] = np.where(empty, 0.0, credit)
    frame["AMT_GOODS_PRICE"] = np.where(empty, np.nan, goods_price)
    frame["AMT_DOWN_PAYMENT"] = np.where(empty, np.nan, down)
    frame["RATE_DOWN_PAYMENT"] = np.where(
        empty | np.isnan(down), np.nan, np.nan_to_num(down) / np.maximum(goods, 1.0)
    )
    frame["CNT_PAYMENT"] = np.where(empty, np.nan, months)
    return np.where(empty, 0.0, months)


def _prev_products(
    frame: Frame,
    consumer: np.ndarray,
    cash: np.ndarray,
    revolving: np.ndarray,
    empty: np.ndarray,
    status: _Cat,
    behaviour: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Product descriptors consistent with contract type, status and the price of the loan."""
    m = consumer.size
    t = _PREV
    loan = (consumer | cash) & ~empty

    def levels(column: str, prefix: str) -> list[str]:
        return [k for k in _vocab(t, column).levels if k.startswith(prefix)]

    def pick(column: str, **kwargs: Any) -> _Cat:
        return _draw_cat(t, column, rng, m, **kwargs)

    xna_columns = (
        "NAME_PRODUCT_TYPE", "NAME_GOODS_CATEGORY", "NAME_SELLER_INDUSTRY", "NAME_YIELD_GROUP",
        "NAME_PAYMENT_TYPE", "NAME_CASH_LOAN_PURPOSE",
    )  # fmt: skip
    xna = {c: _const_cat(t, c, "XNA", m) for c in xna_columns}
    portfolio = np.select(
        [empty, consumer, cash, revolving],
        [_vocab(t, "NAME_PORTFOLIO").code(k) for k in ("XNA", "POS", "Cash", "Cards")],
        _vocab(t, "NAME_PORTFOLIO").code("XNA"),
    )
    frame["NAME_PORTFOLIO"] = _cat(t, "NAME_PORTFOLIO", portfolio)
    frame["NAME_PRODUCT_TYPE"] = _choose(
        cash,
        pick("NAME_PRODUCT_TYPE", weights={"x-sell": 0.62, "walk-in": 0.22, "XNA": 0.16}),
        xna["NAME_PRODUCT_TYPE"],
    )
    pos_channels = {
        "Country-wide": 0.62,
        "Stone": 0.27,
        "Regional / Local": 0.1,
        "Channel of corporate sales": 0.008,
        "Car dealer": 0.002,
    }
    office_channels = {"Credit and cash offices": 0.8, "AP+ (Cash loan)": 0.08,
                       "Contact center": 0.04, "Country-wide": 0.05, "Stone": 0.03}  # fmt: skip
    frame["CHANNEL_TYPE"] = _choose(
        consumer,
        pick("CHANNEL_TYPE", weights=pos_channels),
        pick("CHANNEL_TYPE", weights=office_channels),
    )
    goods_levels = [k for k in _vocab(t, "NAME_GOODS_CATEGORY").levels if k != "XNA"]
    frame["NAME_GOODS_CATEGORY"] = _choose(
        consumer, pick("NAME_GOODS_CATEGORY", allowed=goods_levels), xna["NAME_GOODS_CATEGORY"]
    )
    sellers = [k for k in _vocab(t, "NAME_SELLER_INDUSTRY").levels if k != "XNA"]
    frame["NAME_SELLER_INDUSTRY"] = _choose(
        consumer | (cash & (rng.random(m) < 0.12)),
        pick("NAME_SELLER_INDUSTRY", allowed=sellers),
        xna["NAME_SELLER_INDUSTRY"],
    )
    purposes = [k for k in _vocab(t, "NAME_CASH_LOAN_PURPOSE").levels if k not in ("XAP", "XNA")]
    cash_purpose = _choose(
        rng.random(m) < 0.9,
        xna["NAME_CASH_LOAN_PURPOSE"],
        pick("NAME_CASH_LOAN_PURPOSE", allowed=purposes),
    )
    frame["NAME_CASH_LOAN_PURPOSE"] = _choose(
        consumer | revolving, _const_cat(t, "NAME_CASH_LOAN_PURPOSE", "XAP", m), cash_purpose
    )
    payment_types = {"Cash through the bank": 0.985, "Non-cash from your account": 0.012,
                     "Cashless from the account of the employer": 0.003}  # fmt: skip
    no_payment_type = empty | revolving | (consumer & (rng.random(m) < 0.12))
    frame["NAME_PAYMENT_TYPE"] = _choose(
        no_payment_type, xna["NAME_PAYMENT_TYPE"], pick("NAME_PAYMENT_TYPE", weights=payment_types)
    )
    reasons = {"HC": 0.55, "LIMIT": 0.19, "SCO": 0.13, "SCOFR": 0.04, "XNA": 0.02, "VERIF": 0.01}
    reason = _choose(status.isin("Refused"), pick("CODE_REJECT_REASON", weights=reasons),
                     _const_cat(t, "CODE_REJECT_REASON", "XAP", m))  # fmt: skip
    frame["CODE_REJECT_REASON"] = _choose(
        status.isin("Unused offer"), _const_cat(t, "CODE_REJECT_REASON", "CLIENT", m), reason
    )
    # Risk-based pricing: poorer payers are offered the higher yield groups.
    yield_vocab = _vocab(t, "NAME_YIELD_GROUP")
    yields = ["low_action", "low_normal", "middle", "high"]
    yield_u = _phi(-0.5 * behaviour + 0.87 * rng.standard_normal(m))
    priced = _Cat(yield_vocab.draw(rng, m, allowed=yields, u=yield_u), yield_vocab)
    frame["NAME_YIELD_GROUP"] = _choose(loan, priced, xna["NAME_YIELD_GROUP"])
    combination = np.select(
        [consumer, cash & ~empty, revolving & ~empty],
        [pick("PRODUCT_COMBINATION", allowed=levels("PRODUCT_COMBINATION", "POS")).codes,
         pick("PRODUCT_COMBINATION", allowed=levels("PRODUCT_COMBINATION", "Cash ")).codes,
         pick("PRODUCT_COMBINATION", allowed=levels("PRODUCT_COMBINATION", "Card")).codes],
        _vocab(t, "PRODUCT_COMBINATION").code("Cash"),
    )  # fmt: skip
    combination = np.where(rng.random(m) < 0.0002, -1, combination)
    frame["PRODUCT_COMBINATION"] = _cat(t, "PRODUCT_COMBINATION", combination)
    # Annuity at the yield group's monthly rate; cards pay a 5% minimum of the limit.
    rate = frame["NAME_YIELD_GROUP"].effect(_YIELD_RATES)
    annuity = _annuity(frame["AMT_CREDIT"], frame["CNT_PAYMENT"], np.maximum(rate, 0.004))
    annuity = np.where(revolving, 0.05 * frame["AMT_CREDIT"], annuity)
    frame["AMT_ANNUITY"] = np.where(empty, np.nan, np.round(annuity, 3))


@dataclass(frozen=True)
class _Schedule:
    first_due: np.ndarray
    end: np.ndarray  # day the account ended (+inf while running)


def _prev_schedule(
    frame: Frame,
    decision: np.ndarray,
    months: np.ndarray,
    approved: np.ndarray,
    revolving: np.ndarray,
    rng: np.random.Generator,
) -> _Schedule:
    """DAYS_FIRST_DRAWING ... DAYS_TERMINATION; NULL unless approved, 365243 = not (yet)."""
    m = decision.size
    never_drawn = rng.random(m) < 0.025
    first_due = decision + rng.integers(8, 46, m)
    planned_end = first_due + np.round(_DAYS_PER_MONTH * np.maximum(months - 1, 0))
    # Two in five loans are repaid early.
    early = (rng.random(m) < 0.4) & (months > 1)
    actual_end = np.where(
        early,
        first_due + np.round(_DAYS_PER_MONTH * np.floor(rng.random(m) * (months - 1))),
        planned_end,
    )
    card_closed = rng.random(m) < 0.3
    card_end = np.where(card_closed, np.round(decision + rng.random(m) * -decision), np.inf)
    end = np.where(revolving, card_end, actual_end)
    end = np.where(never_drawn, np.inf, end)
    finished = end <= -1
    sentinel = float(SENTINEL_DAYS)
    drawing = np.where(
        revolving & (rng.random(m) < 0.7),
        np.minimum(decision + rng.integers(1, 200, m), -1),
        sentinel,
    )
    first_due_col = np.where(never_drawn, sentinel, first_due)
    last_due_1st = np.where(revolving | never_drawn, sentinel, planned_end)
    last_due = np.where(finished, end, sentinel)
    termination = np.where(finished, end + rng.integers(0, 15, m), sentinel)
    # Some approved applications carry no schedule at all (NULL), as in the data.
    known = approved & (rng.random(m) > 0.03)
    for name, values in (
        ("DAYS_FIRST_DRAWING", drawing), ("DAYS_FIRST_DUE", first_due_col),
        ("DAYS_LAST_DUE_1ST_VERSION", last_due_1st), ("DAYS_LAST_DUE", last_due),
        ("DAYS_TERMINATION", termination),
    ):  # fmt: skip
        frame[name] = np.where(known, values, np.nan)
    insured = (rng.random(m) < 0.3236).astype(float)
    frame["NFLAG_INSURED_ON_APPROVAL"] = np.where(known, insured, np.nan)
    return _Schedule(np.where(never_drawn, np.inf, first_due), end)


def _accounts(
    frame: Frame,
    owner: np.ndarray,
    plan: _Plan,
    schedule: _Schedule,
    months: np.ndarray,
    approved: np.ndarray,
    revolving: np.ndarray,
) -> tuple[_Accounts, _Accounts]:
    """The approved loans and cards whose monthly history goes into the other tables."""
    drawn = np.isfinite(schedule.first_due) & (frame["DAYS_DECISION"] <= -1)

    def select(mask: np.ndarray) -> _Accounts:
        index = np.flatnonzero(mask)
        return _Accounts(
            sk_id_prev=frame["SK_ID_PREV"][index],
            sk_id_curr=frame["SK_ID_CURR"][index],
            behaviour=plan.behaviour[owner[index]],
            decision=frame["DAYS_DECISION"][index].astype(float),
            amount=frame["AMT_CREDIT"][index],
            annuity=frame["AMT_ANNUITY"][index],
            months=months[index],
            first_due=schedule.first_due[index],
            end=schedule.end[index],
        )

    loans = select(approved & ~revolving & drawn & (schedule.first_due <= -1) & (months > 0))
    cards = select(approved & revolving & drawn)
    return loans, cards
