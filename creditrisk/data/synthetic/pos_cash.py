"""POS_CASH_balance: the monthly status of each approved instalment loan."""

from __future__ import annotations

import numpy as np

from creditrisk.data.synthetic.previous_application import _Accounts
from creditrisk.data.synthetic.process import (
    _CAL,
    _MAX_MONTHS,
    _POS,
    _episodes,
    _months,
    _ranks,
    _sigmoid,
)
from creditrisk.data.synthetic.sampling import Frame, _Cat, _vocab


def _pos_cash(loans: _Accounts, rng: np.random.Generator) -> Frame:
    """Monthly status of each approved loan from the decision month to its end (or month -1)."""
    n = loans.sk_id_prev.size
    start = np.maximum(_months(loans.decision), -_MAX_MONTHS)
    finished = loans.end <= -1
    end_month = np.where(
        finished, np.minimum(_months(np.where(finished, loans.end, -1)) + 1, -1), -1
    )
    lengths = np.maximum(end_month - start + 1, 1)
    loan = np.repeat(np.arange(n), lengths)
    rank = _ranks(lengths)
    month = start[loan] + rank
    k = loan.size
    first_due_month = _months(loans.first_due)
    paid = np.clip(month - first_due_month[loan] + 1, 0, None)
    term = loans.months[loan]
    future = np.clip(term - paid, 0, term)
    last = rank == lengths[loan] - 1
    completed = last & finished[loan]
    future = np.where(completed, 0.0, future)
    troubled = rng.random(n) < _sigmoid(
        _CAL.pos_trouble_logit - _CAL.pos_trouble_slope * loans.behaviour
    )
    run_start, run_length = _episodes(rng, lengths, troubled, 2.2)
    into_run = rank - run_start[loan]
    in_run = (into_run >= 0) & (into_run < run_length[loan])
    dpd = np.where(in_run, 30 * into_run + rng.integers(1, 31, k), 0)
    # Small slips of a few days also happen to good payers.
    dpd = np.where(~in_run & (rng.random(k) < 0.004), rng.integers(1, 8, k), dpd)
    vocab = _vocab(_POS, "NAME_CONTRACT_STATUS")
    u = rng.random(k)
    status = np.select(
        [completed, (rank == 0) & (u < 0.09), last & in_run & (u < 0.08),
         (u > 0.9993)],
        [vocab.code("Completed"), vocab.code("Signed"), vocab.code("Demand"),
         vocab.code("Returned to the store")],
        vocab.code("Active"),
    )  # fmt: skip
    instalments = np.where(rng.random(k) < 0.0027, np.nan, term)
    return {
        "SK_ID_PREV": loans.sk_id_prev[loan],
        "SK_ID_CURR": loans.sk_id_curr[loan],
        "MONTHS_BALANCE": month,
        "CNT_INSTALMENT": instalments,
        "CNT_INSTALMENT_FUTURE": np.where(np.isnan(instalments), np.nan, future),
        "NAME_CONTRACT_STATUS": _Cat(status.astype(np.int16), vocab),
        "SK_DPD": dpd.astype(np.int64),
        # DPD "with tolerance" ignores small debts: usually 0 even when SK_DPD is not.
        "SK_DPD_DEF": np.where(in_run & (rng.random(k) < 0.12), dpd, 0).astype(np.int64),
    }
