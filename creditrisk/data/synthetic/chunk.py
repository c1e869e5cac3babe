"""One chunk of applicants, end to end: every table's rows, rendered as CSV bytes.

``_generate_chunk`` is what runs in the worker processes; it depends only on its task, so the
output never depends on how the chunks are spread over workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from creditrisk.data.synthetic.application import _applications
from creditrisk.data.synthetic.bureau import _bureau_tables
from creditrisk.data.synthetic.credit_card import _credit_cards
from creditrisk.data.synthetic.csv_rendering import _columns, _render_csv
from creditrisk.data.synthetic.installments import _installments
from creditrisk.data.synthetic.pos_cash import _pos_cash
from creditrisk.data.synthetic.previous_application import _previous_applications
from creditrisk.data.synthetic.process import (
    _BB,
    _BUREAU,
    _CC,
    _INST,
    _POS,
    _PREV,
    _ChunkTask,
    _draw_plan,
    _rng,
)
from creditrisk.data.synthetic.sampling import Frame, _Cat, _filter_rows


@dataclass(frozen=True)
class _ChunkResult:
    csv: dict[str, bytes]  # CSV body (no header) per file stem
    rows: dict[str, int]


def _generate_chunk(task: _ChunkTask) -> _ChunkResult:
    """Generate one chunk of applicants with all their history and render it as CSV bytes."""
    plan = _draw_plan(task)
    rng = _rng(task.seed, task.stream, task.index, 1)
    applicants = _applications(plan, rng, task.drift)
    bureau = _bureau_tables(plan, applicants, rng, task.first_id_bureau)
    previous = _previous_applications(plan, applicants, rng, task.first_id_prev)
    cards = _credit_cards(previous.cards, rng)
    frames: dict[str, Frame] = {
        _BUREAU: bureau.bureau,
        _BB: bureau.balance,
        _PREV: previous.frame,
        _INST: _installments(previous.loans, cards, rng),
        _CC: cards.frame,
        _POS: _pos_cash(previous.loans, rng),
    }
    app = applicants.frame
    if task.batch:
        frames["application_test"] = app
        frames["labels"] = {"SK_ID_CURR": plan.sk_id_curr, "TARGET": applicants.target}
    else:
        frames["application_train"] = _subset(app, ~plan.is_test)
        frames["application_test"] = _subset(app, plan.is_test)
    csv = {stem: _render_csv(_columns(stem), frame) for stem, frame in frames.items()}
    rows = {stem: _frame_rows(frame) for stem, frame in frames.items()}
    return _ChunkResult(csv, rows)


def _subset(frame: Frame, mask: np.ndarray) -> Frame:
    subset = dict(frame)
    _filter_rows(subset, mask)
    return subset


def _frame_rows(frame: Frame) -> int:
    first = next(iter(frame.values()))
    return first.codes.size if isinstance(first, _Cat) else first.size
