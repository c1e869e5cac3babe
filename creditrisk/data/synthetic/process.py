"""The generating process: sizes, ids, the latent model, drift and the plan of each chunk.

Shared by every per-table writer: the table names, the calibrated constants of the latent model
(``_CAL``), the :class:`DriftSpec` of a production batch, the split of the applicants into
chunks with their own random streams (``_chunk_tasks``), each chunk's latent variables and
history sizes (``_draw_plan``), and small numeric helpers. The process itself is documented in
the package docstring of :mod:`creditrisk.data.synthetic`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# Sizes, ids and table names
# --------------------------------------------------------------------------------------------

#: Named sizes: number of application_train applicants.
SIZES: dict[str, int] = {"tiny": 2_000, "small": 30_000, "full": 307_511}
#: Largest accepted size; keeps base-data ids below the production-batch id ranges.
MAX_APPLICANTS = 5_000_000
#: Applicants per chunk. Fixed, so the output never depends on how the work is split.
CHUNK_APPLICANTS = 10_000

#: "Not employed / not yet / never" sentinel of DAYS_EMPLOYED and the previous_application DAYS_*.
SENTINEL_DAYS = 365_243

_FULL_TRAIN, _FULL_TEST = 307_511, 48_744
_FIRST_ID_CURR, _FIRST_ID_BUREAU, _FIRST_ID_PREV = 100_002, 5_000_000, 1_000_001
_BATCH_ID_CURR, _BATCH_ID_BUREAU, _BATCH_ID_PREV = 10_000_002, 50_000_000, 30_000_001
_BASE_STREAM, _BATCH_STREAM = 0, 1
_DAYS_PER_MONTH = 30.4375
_MAX_MONTHS = 96  # history tables reach at most 96 months before the application

_APP, _BUREAU, _BB, _PREV = (
    "application_train",
    "bureau",
    "bureau_balance",
    "previous_application",
)
_INST, _CC, _POS = "installments_payments", "credit_card_balance", "POS_CASH_balance"


# --------------------------------------------------------------------------------------------
# Calibration of the latent model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calibration:
    """Constants of the latent model, tuned so the ``small`` size behaves like the real data."""

    intercept: float = -3.51  # TARGET log-odds at average risk: gives a default rate near 8%
    ext_loading: float = 0.45  # weight of ``quality`` in each EXT_SOURCE latent
    ext_betas: tuple[float, float, float] = (0.58, 0.56, 0.62)  # log-odds per SD of z_1, z_2, z_3
    habit_beta: float = 0.84  # log-odds per SD of ``habit``
    behaviour_weights: tuple[float, float] = (0.86, 0.51)  # habit, quality -> history behaviour
    pensioner_centre: float = 0.818  # age quantile where half of the applicants are pensioners
    bureau_share: float = 0.862  # applicants with any bureau credit
    bureau_mean: float = 4.68  # mean credits beyond the first, for applicants with credits
    balance_share: float = 0.40  # bureau credits with a monthly bureau_balance history
    prev_share: float = 0.952  # applicants with any previous application
    prev_mean: float = 3.95  # mean applications beyond the first
    refused_logit: float = -1.95  # refusal log-odds at average behaviour (cash loans +0.45)
    refused_slope: float = 1.15
    bureau_trouble_logit: float = -2.45
    bureau_trouble_slope: float = 1.15
    late_logit: float = -3.1  # per-instalment late log-odds at average behaviour
    late_slope: float = 1.2
    short_logit: float = -3.6  # per-instalment shortfall log-odds
    short_slope: float = 1.1
    pos_trouble_logit: float = -2.7
    pos_trouble_slope: float = 1.15
    card_trouble_logit: float = -1.7
    card_trouble_slope: float = 1.15
    bureau_orphan_share: float = 0.015  # credits with bureau_balance rows dropped from bureau
    prev_orphan_share: float = 0.01  # approved applications with child rows dropped from prev


_CAL = _Calibration()


# --------------------------------------------------------------------------------------------
# Drift and sizes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftSpec:
    """How a production batch differs from the base population.

    Attributes:
        income_shift: Relative change of AMT_INCOME_TOTAL (0.15 = incomes 15% higher, e.g. wage
            inflation). Loan amounts are unchanged, so income ratios move too. Outcomes follow
            the new ratios (covariate shift).
        ext_source_shift: Downward shift of the three EXT_SOURCE scores, in standard deviations
            of their latent scale (0.3 moves a median score of about 0.53 to about 0.45). The
            applicants' true risk is unchanged: the scores read lower for the same people, as
            after a bureau recalibration. A model trained on the base data then over-predicts the
            PD, which a back-test with ``labels.csv`` shows.
        history_shift: Deterioration of repayment habit, in standard deviations: more late and
            short instalments, DPD months, bureau overdue amounts and refused applications, and
            more defaults to match (a real downturn).
        default_shift: Added to the default log-odds with inputs unchanged (pure concept drift).
    """

    income_shift: float = 0.0
    ext_source_shift: float = 0.0
    history_shift: float = 0.0
    default_shift: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not math.isfinite(value):
                raise ValueError(f"DriftSpec.{name} must be finite, got {value!r}")
        if self.income_shift <= -1.0:
            raise ValueError("DriftSpec.income_shift must be > -1 (incomes stay positive)")

    @classmethod
    def default(cls) -> DriftSpec:
        """The drift of ``creditrisk generate --drift``: clearly detectable on every axis."""
        return cls(income_shift=0.15, ext_source_shift=0.3, history_shift=0.5, default_shift=0.0)

    @property
    def is_null(self) -> bool:
        """True when every shift is zero (same distribution as the base data)."""
        return not any(asdict(self).values())


def resolve_size(size: str | int) -> int:
    """The number of application_train applicants of a size.

    Args:
        size: ``"tiny"``, ``"small"``, ``"full"``, or a positive count as int or string.

    Returns:
        The number of applicants.

    Raises:
        ValueError: For an unknown name, a non-positive count or one above ``MAX_APPLICANTS``.
    """
    if isinstance(size, bool) or not isinstance(size, str | int | np.integer):
        raise ValueError(f"size must be one of {sorted(SIZES)} or a count, got {size!r}")
    if isinstance(size, str):
        key = size.strip().lower()
        if key in SIZES:
            return SIZES[key]
        try:
            count = int(key)
        except ValueError:
            raise ValueError(
                f"unknown size {size!r}: expected one of {', '.join(SIZES)} or a number of "
                "applicants"
            ) from None
    else:
        count = int(size)
    if not 1 <= count <= MAX_APPLICANTS:
        raise ValueError(f"size must be between 1 and {MAX_APPLICANTS:,} applicants, got {count}")
    return count


# --------------------------------------------------------------------------------------------
# Chunk planning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChunkTask:
    """Everything one worker needs to generate one chunk of applicants."""

    seed: int
    stream: int
    index: int
    n: int
    n_test: int
    first_id_curr: int
    first_id_bureau: int
    first_id_prev: int
    drift: DriftSpec
    batch: bool  # production batch: everyone goes to application_test, outcomes to labels.csv


@dataclass(frozen=True)
class _Plan:
    """Per-applicant latent variables and history sizes of one chunk."""

    n: int
    sk_id_curr: np.ndarray
    is_test: np.ndarray
    z_age: np.ndarray
    quality: np.ndarray
    habit: np.ndarray
    behaviour: np.ndarray  # drives the history tables; higher = better payer
    n_bureau: np.ndarray
    n_prev: np.ndarray


def _rng(seed: int, stream: int, chunk: int, part: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, chunk, part]))


def _chunk_tasks(n_applicants: int, seed: int, drift: DriftSpec | None) -> list[_ChunkTask]:
    batch = drift is not None
    spec = drift or DriftSpec()
    if batch:
        n_total, n_test = n_applicants, n_applicants
        ids = (_BATCH_ID_CURR, _BATCH_ID_BUREAU, _BATCH_ID_PREV)
    else:
        n_test = round(n_applicants * _FULL_TEST / _FULL_TRAIN)
        n_total = n_applicants + n_test
        ids = (_FIRST_ID_CURR, _FIRST_ID_BUREAU, _FIRST_ID_PREV)
    stream = _BATCH_STREAM if batch else _BASE_STREAM
    id_curr, id_bureau, id_prev = ids
    tasks = []
    for index, start in enumerate(range(0, n_total, CHUNK_APPLICANTS)):
        stop = min(start + CHUNK_APPLICANTS, n_total)
        # Spread test applicants evenly over chunks; which ones is random within the chunk.
        chunk_test = stop * n_test // n_total - start * n_test // n_total
        task = _ChunkTask(
            seed,
            stream,
            index,
            stop - start,
            chunk_test,
            id_curr + start,
            id_bureau,
            id_prev,
            spec,
            batch,
        )
        plan = _draw_plan(task)
        id_bureau += int(plan.n_bureau.sum())
        id_prev += int(plan.n_prev.sum())
        tasks.append(task)
    return tasks


def _draw_plan(task: _ChunkTask) -> _Plan:
    """The latent variables and history sizes of a chunk (cheap: also used to assign ids)."""
    rng = _rng(task.seed, task.stream, task.index, 0)
    n = task.n
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.choice(n, size=task.n_test, replace=False)] = True
    z_age = rng.standard_normal(n)
    quality = rng.standard_normal(n)
    habit = rng.standard_normal(n) - task.drift.history_shift
    w_habit, w_quality = _CAL.behaviour_weights
    behaviour = w_habit * habit + w_quality * quality
    age_u = _phi(z_age)
    # Older applicants have had time for more credits; young ones more often none at all.
    has_bureau = rng.random(n) < np.clip(_CAL.bureau_share + 0.16 * (age_u - 0.5), 0.0, 1.0)
    n_bureau = np.where(
        has_bureau, 1 + _neg_binomial(rng, _CAL.bureau_mean * (0.6 + 0.8 * age_u)), 0
    )
    # Poor payers apply more often (refusals lead to new applications).
    has_prev = rng.random(n) < _CAL.prev_share
    prev_rate = _CAL.prev_mean * np.exp(-0.2 * behaviour - 0.02)
    n_prev = np.where(has_prev, 1 + _neg_binomial(rng, prev_rate), 0)
    return _Plan(
        n=n,
        sk_id_curr=task.first_id_curr + np.arange(n, dtype=np.int64),
        is_test=is_test,
        z_age=z_age,
        quality=quality,
        habit=habit,
        behaviour=behaviour,
        n_bureau=np.minimum(n_bureau, 80).astype(np.int64),
        n_prev=np.minimum(n_prev, 80).astype(np.int64),
    )


def _neg_binomial(rng: np.random.Generator, mean: np.ndarray, shape: float = 1.6) -> np.ndarray:
    """Overdispersed counts (gamma-Poisson) with the given per-applicant mean."""
    return rng.poisson(rng.gamma(shape, mean / shape))


# --------------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------------


def _phi(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (tanh approximation, error below 2e-4: ample for a copula)."""
    return 0.5 * (1.0 + np.tanh(0.7978845608 * (z + 0.044715 * z**3)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., k-1 for each group of ``counts`` rows, concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def _round_to(values: np.ndarray, step: float) -> np.ndarray:
    return np.round(values / step) * step


def _annuity(principal: np.ndarray, months: np.ndarray, monthly_rate: np.ndarray) -> np.ndarray:
    """Level monthly payment of a loan (the annuity formula)."""
    factor = np.where(
        months > 0, monthly_rate / (1 - (1 + monthly_rate) ** -np.maximum(months, 1)), 0.0
    )
    return principal * factor


def _months(days: np.ndarray) -> np.ndarray:
    """Calendar month (negative, 0 = the application month) of a day offset."""
    return np.floor(days / _DAYS_PER_MONTH).astype(np.int64)


def _episodes(
    rng: np.random.Generator, lengths: np.ndarray, troubled: np.ndarray, mean_length: float
) -> tuple[np.ndarray, np.ndarray]:
    """One delinquency run per troubled account: (first row, rows) within each account."""
    start = np.floor(rng.random(lengths.size) * lengths).astype(np.int64)
    run = rng.geometric(1 / mean_length, lengths.size)
    return start, np.where(troubled, run, 0)
