"""Deterministic synthetic Home Credit data: the embedded default input and the test data.

``generate`` writes the eight Kaggle "Home Credit Default Risk" files (exact file names, columns,
column order and value types from :mod:`creditrisk.data.tables`) plus a ``_SYNTHETIC.json``
marker. Same seed and size give byte-identical files.

Generating process
------------------
Every applicant gets three latent variables (standard normal, independent):

* ``quality`` (q): creditworthiness as external bureaus see it. Each ``EXT_SOURCE_k`` is a noisy
  reading of it, ``z_k = 0.45 q + 0.89 e_k`` (``EXT_SOURCE_1`` also loads on age), mapped through
  the score's real marginal so the published quantiles hold. Higher score = safer.
* ``habit`` (h): repayment habit, seen only through the history tables.
* ``age`` (z_age): drives DAYS_BIRTH and, through it, pensioner status, employment length,
  children and the number of past credits.

TARGET is Bernoulli with log-odds ``intercept - sum_k beta_k z_k - beta_h h + application
effects``, where the application effects follow the real data's directions: youth, short
employment, male gender, lower education, region rating 3, high annuity-to-income, long terms,
low-skill occupations and unstable housing raise the risk. The intercept gives a TARGET rate of
about 8%. Because the scores are noisy and often missing (EXT_SOURCE_1 57%), an application-only
model cannot see the full risk, and the history tables add the part carried by ``habit``.

The history tables are driven by ``behaviour = 0.86 h + 0.51 q`` (habit plus some of the
creditworthiness the scores measure):

* ``bureau``: poor behaviour makes a credit *troubled*: current overdue amounts and days on active
  credits, a positive ``AMT_CREDIT_MAX_OVERDUE``, more "Sold"/"Bad debt" credits.
  ``bureau_balance`` gives about 40% of the credits a monthly STATUS history from the opening
  month (at most 96 months back) to month 0: ``C`` after closure, ``X`` for credits the bureau has
  no status for, ``0`` when current, and ``1``-``5`` DPD buckets in the months a troubled credit
  is late.
* ``previous_application``: poor behaviour means more applications, more refusals and higher yield
  groups. Status, contract type and product fields are consistent: canceled applications have
  zero amounts and NULL annuity, term and goods price; the DAYS_* schedule columns are NULL unless
  approved and use the ``365243`` sentinel for "not drawn / not ended yet".
* ``installments_payments``: one row per instalment due before the application for each approved
  loan (plus card payments, ``NUM_INSTALMENT_VERSION`` 0). Poor behaviour raises the chance of
  paying late (``DAYS_ENTRY_PAYMENT > DAYS_INSTALMENT``) and short (``AMT_PAYMENT <
  AMT_INSTALMENT``, sometimes paid off in a second row).
* ``POS_CASH_balance``: monthly rows from the decision month to completion or month -1 with
  CNT_INSTALMENT(_FUTURE); troubled loans have a run of months with growing ``SK_DPD``.
* ``credit_card_balance``: monthly rows for approved revolving loans. Balance is at most about the
  limit, and poor behaviour raises utilisation and brings missed minimum payments with ``SK_DPD``.

Other columns come from a generic sampler driven by the profile in ``tables.py``: inverse-CDF
interpolation through min/p01 ... p99/max (power-law tails fitted to the column mean), level
sampling for ``levels``, and NULLs at ``null_share``. Structural rules then override it:
``DAYS_EMPLOYED = 365243`` exactly for pensioners and the unemployed (about 18%, older
applicants), with ``ORGANIZATION_TYPE = XNA``, no occupation and ``FLAG_EMP_PHONE = 0``;
``CNT_FAM_MEMBERS >= CNT_CHILDREN + 1``; AMT_CREDIT, AMT_ANNUITY and AMT_GOODS_PRICE follow from
one another (insurance mark-up, term and rate); OWN_CAR_AGE is present only for car owners; the
building-information columns share one nested missingness pattern; ``AMT_REQ_CREDIT_BUREAU_*`` is
NULL for applicants without bureau credits. ``CODE_GENDER = XNA`` appears at its real rate
(about 1 in 77,000).

Quirks kept on purpose: about 1.5% of the credits in ``bureau_balance`` are missing from
``bureau``, and about 1% of the approved previous applications with instalment, POS or card rows
are missing from ``previous_application`` (the orphans of the real data). About 14% of applicants
have no bureau credit, 5% no previous application, and a few have no history at all.

Calibration: on ``small`` (25% test split), xgboost with modest tuning (400 trees, depth 4,
learning rate 0.03) reaches ROC-AUC of about 0.76-0.78 from the application columns alone and
about 0.80 when per-applicant history aggregates are added (share of late instalments,
refusals, max DPD, bureau overdue, ...), which is where models on the real data land.

CSV format
----------
As Kaggle's files: a plain header, ints as integers, floats always with a decimal point
(``202500.0``), NULL as an empty field, and quotes only around values that need them
(``"Spouse, partner"``).

Sizes, ids and chunks
---------------------
``size`` is the number of application_train applicants; application_test gets
``round(n * 48744 / 307511)`` more. Train and test applicants are interleaved with consecutive
``SK_ID_CURR`` from 100002. SK_ID_BUREAU starts at 5000000 and SK_ID_PREV at 1000001. Child-table
counts scale with the applicants, so ``full`` lands near the Kaggle row counts.
Applicants are generated in fixed chunks of 10,000, each from its own random stream derived from
``(seed, stream, chunk)``. Chunks are independent (and run in parallel worker processes). The main
process appends their CSV bytes, rendered by ``pyarrow.csv.CSVWriter``, in chunk order. Files are
written into a temporary directory next to the destination and moved into place only when
complete. The marker is written last.

Drift
-----
``generate(..., drift=DriftSpec(...))`` writes a *production batch*: new applicants (SK_ID_CURR
from 10,000,002, disjoint from any base dataset, with their own random stream) in
``application_test.csv`` (no TARGET), the six history tables, and ``labels.csv`` with the
realised TARGET for back-testing. See :class:`DriftSpec` for what each shift does. With all
shifts zero the batch has the same distribution as the base data.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from creditrisk.data.tables import tables

GENERATOR_VERSION = "1.0.0"
MARKER_FILE = "_SYNTHETIC.json"
LABELS_FILE = "labels.csv"

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

#: Rare real levels the profile sample missed (CODE_GENDER = XNA: 4 of 307,511 applicants).
_EXTRA_LEVELS: dict[tuple[str, str], dict[str, float]] = {
    (_APP, "CODE_GENDER"): {"XNA": 1.3e-5},
}


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
# Public API
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


@dataclass(frozen=True)
class GenerationResult:
    """What ``generate`` wrote.

    Attributes:
        out_dir: The directory holding the files.
        n_applicants: Applicants generated: application_train applicants for base data, batch
            applicants for a production batch.
        rows: Data rows per written file stem (Kaggle stems, plus ``labels`` for a batch).
        seconds: Wall-clock time of the generation.
    """

    out_dir: Path
    n_applicants: int
    rows: dict[str, int]
    seconds: float


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


def read_marker(directory: Path | str) -> dict[str, Any] | None:
    """The parsed ``_SYNTHETIC.json`` of a directory, or None when absent or unreadable."""
    path = Path(directory) / MARKER_FILE
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def generate(
    out_dir: Path | str,
    size: str | int = "small",
    seed: int = 42,
    *,
    drift: DriftSpec | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> GenerationResult:
    """Write synthetic Home Credit CSVs (and the marker) into ``out_dir``.

    Args:
        out_dir: Destination directory; created if needed. Existing generator files are
            replaced, other files are left alone.
        size: ``tiny``, ``small``, ``full`` or a number of application_train applicants (for a
            production batch: the number of batch applicants).
        seed: Non-negative seed; same seed and size give byte-identical files.
        drift: When given, write a production batch with these shifts instead of base data.
        progress: Show a tqdm progress bar over chunks.
        workers: Worker processes (default: up to 4, bounded by the CPU count). The output
            does not depend on it.

    Returns:
        Where the files went, the applicant count, rows per file and the elapsed time.
    """
    started = time.perf_counter()
    n_applicants = resolve_size(size)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    tasks = _chunk_tasks(n_applicants, int(seed), drift)
    stems = _output_stems(drift)
    out_dir = Path(out_dir)
    rows = dict.fromkeys(stems, 0)
    with _StagedDirectory(out_dir) as staged:
        sinks = {stem: staged.open_csv(f"{stem}.csv", _header(stem)) for stem in stems}
        for result in _run_chunks(tasks, workers, progress):
            for stem, payload in result.csv.items():
                sinks[stem].write(payload)
                rows[stem] += result.rows[stem]
        marker = _marker(size, n_applicants, int(seed), drift, rows)
        staged.commit(marker, stale=_stale_files(drift))
    return GenerationResult(out_dir, n_applicants, rows, time.perf_counter() - started)


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
# Marginal sampling from the profile
# --------------------------------------------------------------------------------------------

_PROFILE_PROBS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_PROFILE_KEYS = ("min", "p01", "p05", "p25", "p50", "p75", "p95", "p99", "max")


@dataclass(frozen=True)
class _Marginal:
    """Inverse CDF through profile quantiles: linear inside, power-law tails outside p01/p99."""

    probs: np.ndarray
    values: np.ndarray
    tail: float

    def ppf(self, u: np.ndarray) -> np.ndarray:
        p, v = self.probs, self.values
        out = np.interp(u, p[1:-1], v[1:-1])
        low, high = u < p[1], u > p[-2]
        out[low] = v[1] - (v[1] - v[0]) * ((p[1] - u[low]) / p[1]) ** self.tail
        out[high] = v[-2] + (v[-1] - v[-2]) * ((u[high] - p[-2]) / (1 - p[-2])) ** self.tail
        return out


def _fit_marginal(probs: Sequence[float], values: Sequence[float], mean: float | None) -> _Marginal:
    p, v = np.asarray(probs, dtype=float), np.asarray(values, dtype=float)
    tail = 4.0
    if mean is not None:
        # Choose one tail exponent so the distribution's mean matches the profile mean; a
        # segment v0 + (v1 - v0) * t**k has mean v0 + (v1 - v0) / (k + 1).
        inner = float(np.sum(np.diff(p[1:-1]) * (v[1:-2] + v[2:-1]) / 2))
        excess = mean - inner - p[1] * v[1] - (1 - p[-2]) * v[-2]
        spread = (1 - p[-2]) * (v[-1] - v[-2]) - p[1] * (v[1] - v[0])
        if excess != 0 and spread / excess > 1:
            tail = float(np.clip(spread / excess - 1, 1.0, 40.0))
    return _Marginal(p, v, tail)


@cache
def _marginal(table: str, column: str) -> _Marginal:
    col = tables()[table].column(column)
    values = [col.quantiles[k] for k in _PROFILE_KEYS]
    return _fit_marginal(_PROFILE_PROBS, values, col.mean)


@cache
def _employed_days_marginal() -> _Marginal:
    """DAYS_EMPLOYED of the employed: the profile quantiles below the 365243 sentinel."""
    col = tables()[_APP].column("DAYS_EMPLOYED")
    # Everyone employed has an employer phone flag, so its 0-share is the sentinel share.
    employed_share = 1 - tables()[_APP].column("FLAG_EMP_PHONE").levels.get("0", 0.1844)
    pairs = [
        (p / employed_share, col.quantiles[k])
        for p, k in zip(_PROFILE_PROBS, _PROFILE_KEYS, strict=True)
        if col.quantiles[k] < SENTINEL_DAYS and p / employed_share < 1
    ]
    probs, values = zip(*pairs, (1.0, 0.0), strict=False)
    return _fit_marginal(probs, values, None)


@cache
def _share_above_zero(table: str, column: str) -> float:
    """Share of a count column's marginal that rounds to a positive count."""
    grid = (np.arange(100_000) + 0.5) / 100_000
    return float(np.mean(np.round(_ppf(table, column, grid)) > 0))


def _ppf(table: str, column: str, u: np.ndarray) -> np.ndarray:
    return _marginal(table, column).ppf(u)


@dataclass(frozen=True)
class _Vocab:
    """The levels of a categorical column and their real shares."""

    levels: tuple[str, ...]
    shares: np.ndarray

    def code(self, level: str) -> int:
        return self.levels.index(level)

    def draw(
        self,
        rng: np.random.Generator,
        n: int,
        allowed: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        u: np.ndarray | None = None,
    ) -> np.ndarray:
        """Level codes drawn by share, optionally restricted to some levels or reweighted."""
        if weights is not None:
            codes = np.array([self.code(k) for k in weights])
            shares = np.array(list(weights.values()), dtype=float)
        elif allowed is not None:
            codes = np.array([self.code(k) for k in allowed])
            shares = self.shares[codes]
        else:
            codes, shares = np.arange(len(self.levels)), self.shares
        cumulative = np.cumsum(shares / shares.sum())
        u = rng.random(n) if u is None else u
        picked = np.minimum(np.searchsorted(cumulative, u, side="right"), len(codes) - 1)
        return codes[picked].astype(np.int16)


@cache
def _vocab(table: str, column: str) -> _Vocab:
    col = tables()[table].column(column)
    levels = {**col.levels, **_EXTRA_LEVELS.get((table, column), {})}
    # Profile shares are rounded to 4 decimals; a "0.0" level is rare, not impossible.
    shares = np.array([max(share, 1e-5) for share in levels.values()])
    return _Vocab(tuple(levels), shares / shares.sum())


@dataclass(frozen=True)
class _Cat:
    """A categorical column: level codes (-1 = NULL) into a vocabulary."""

    codes: np.ndarray
    vocab: _Vocab

    def isin(self, *levels: str) -> np.ndarray:
        return np.isin(self.codes, [self.vocab.code(level) for level in levels])

    def effect(self, effects: Mapping[str, float]) -> np.ndarray:
        """Per-row value of a level -> number mapping (0 for other levels and NULL)."""
        table = np.array([effects.get(level, 0.0) for level in self.vocab.levels] + [0.0])
        return table[self.codes]

    def take(self, index: np.ndarray) -> _Cat:
        return _Cat(self.codes[index], self.vocab)


Column = np.ndarray | _Cat
#: Column name -> values: float64/int64 arrays for numbers (NaN = NULL), ``_Cat`` for strings.
Frame = dict[str, Any]


def _cat(table: str, column: str, codes: np.ndarray) -> _Cat:
    return _Cat(np.asarray(codes, dtype=np.int16), _vocab(table, column))


def _draw_cat(table: str, column: str, rng: np.random.Generator, n: int, **kwargs: Any) -> _Cat:
    vocab = _vocab(table, column)
    return _Cat(vocab.draw(rng, n, **kwargs), vocab)


def _const_cat(table: str, column: str, level: str, n: int) -> _Cat:
    vocab = _vocab(table, column)
    return _Cat(np.full(n, vocab.code(level), dtype=np.int16), vocab)


def _choose(condition: np.ndarray, when_true: _Cat, when_false: _Cat) -> _Cat:
    return _Cat(np.where(condition, when_true.codes, when_false.codes), when_true.vocab)


def _decimals(column: str) -> int | None:
    """Decimals a float column is written with (None = full precision, like Kaggle's scores)."""
    if column.startswith(("EXT_SOURCE", "RATE_")):
        return None
    if column.startswith(
        ("DAYS_", "CNT_", "OBS_", "DEF_", "AMT_REQ_", "NUM_", "NFLAG_", "OWN_CAR_AGE")
    ):
        return 0  # counts and day offsets are whole numbers stored as floats
    if column.startswith("AMT_"):
        return 2
    return 6 if column == "REGION_POPULATION_RELATIVE" else 4


def _generic_columns(table: str, n: int, rng: np.random.Generator, skip: set[str]) -> Frame:
    """Every column not in ``skip`` sampled independently from its profile marginal."""
    frame: Frame = {}
    for col in tables()[table].columns:
        if col.name in skip:
            continue
        if col.dtype == "string":
            values: Column = _draw_cat(table, col.name, rng, n)
        elif col.levels:
            values = _finish_numeric(
                _draw_numeric_levels(table, col.name, rng, n), col.dtype, col.name
            )
        else:
            values = _finish_numeric(_ppf(table, col.name, rng.random(n)), col.dtype, col.name)
        if col.null_share > 0:
            values = _with_nulls(values, rng.random(n) < col.null_share)
        frame[col.name] = values
    return frame


def _draw_numeric_levels(
    table: str, column: str, rng: np.random.Generator, n: int, u: np.ndarray | None = None
) -> np.ndarray:
    """Values of a few-valued numeric column; with ``u``, larger u gives larger values."""
    vocab = _vocab(table, column)
    order = np.argsort([float(level) for level in vocab.levels])
    ordered = _Vocab(tuple(vocab.levels[i] for i in order), vocab.shares[order])
    numbers = np.array([float(level) for level in ordered.levels])
    return numbers[ordered.draw(rng, n, u=u)]


def _finish_numeric(values: np.ndarray, dtype: str, column: str) -> np.ndarray:
    if dtype == "int":
        return np.round(values).astype(np.int64)
    decimals = _decimals(column)
    return values if decimals is None else np.round(values, decimals)


def _with_nulls(values: Column, mask: np.ndarray) -> Column:
    if isinstance(values, _Cat):
        return _Cat(np.where(mask, -1, values.codes).astype(np.int16), values.vocab)
    if values.dtype.kind != "f":
        return values  # int columns are never NULL
    return np.where(mask, np.nan, values)


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


# --------------------------------------------------------------------------------------------
# application_train / application_test
# --------------------------------------------------------------------------------------------


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
#: Terms of earlier cash loans (previous_application), which run shorter.
_CASH_TERMS = {6: 0.08, 10: 0.05, 12: 0.32, 18: 0.1, 24: 0.22, 30: 0.04, 36: 0.12, 48: 0.04,
               60: 0.03}  # fmt: skip


def _draw_terms(
    rng: np.random.Generator, n: int, terms: Mapping[int, float], u: np.ndarray | None = None
) -> np.ndarray:
    """Loan terms in months by share; with ``u``, larger u gives longer terms."""
    values = np.array(list(terms), dtype=float)
    cumulative = np.cumsum(list(terms.values()))
    u = rng.random(n) if u is None else u
    return values[np.minimum(np.searchsorted(cumulative, u), values.size - 1)]


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


# --------------------------------------------------------------------------------------------
# bureau and bureau_balance
# --------------------------------------------------------------------------------------------


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


def _filter_rows(frame: Frame, keep: np.ndarray) -> None:
    for name, values in list(frame.items()):
        frame[name] = (
            values.take(np.flatnonzero(keep)) if isinstance(values, _Cat) else values[keep]
        )


# --------------------------------------------------------------------------------------------
# previous_application
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# POS_CASH_balance, credit_card_balance, installments_payments
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# One chunk, end to end
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# CSV rendering (pyarrow) and files
# --------------------------------------------------------------------------------------------

# Level strings that need quoting are pre-quoted with placeholder bytes, because Arrow either
# quotes every string or none; the placeholders become '"' and ',' in the rendered bytes.
_QUOTE, _COMMA = "\x02", "\x01"
_UNESCAPE = bytes.maketrans(_QUOTE.encode() + _COMMA.encode(), b'",')
_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="none")


def _columns(stem: str) -> list[tuple[str, str]]:
    """(name, dtype) of each column of an output file, in file order."""
    if stem == "labels":
        return [("SK_ID_CURR", "int"), ("TARGET", "int")]
    return [(col.name, col.dtype) for col in tables()[stem].columns]


def _header(stem: str) -> bytes:
    return (",".join(name for name, _ in _columns(stem)) + "\n").encode()


def _render_csv(columns: list[tuple[str, str]], frame: Frame) -> bytes:
    arrays = []
    for name, dtype in columns:
        values = frame[name]
        if isinstance(values, _Cat):
            arrays.append(_string_array(values))
        elif dtype == "int":
            arrays.append(pa.array(np.asarray(values, dtype=np.int64)))
        else:
            arrays.append(_float_array(np.asarray(values, dtype=np.float64), _decimals(name)))
    table = pa.Table.from_arrays(arrays, names=[name for name, _ in columns])
    if table.num_rows == 0:
        return b""
    sink = pa.BufferOutputStream()
    with pacsv.CSVWriter(sink, table.schema, write_options=_WRITE_OPTIONS) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    return body.translate(_UNESCAPE) if _QUOTE.encode() in body else body


def _float_array(values: np.ndarray, decimals: int | None) -> pa.Array:
    """Floats as text that always reads back as float: whole numbers get a '.0' like Kaggle's."""
    null = np.isnan(values)
    values = np.where(null, 0.0, values) + 0.0  # + 0.0 turns -0.0 into 0.0
    if decimals is not None and decimals <= 4 and np.abs(values).max(initial=0) < 1e12:
        return _fixed_point_text(values, decimals, null)
    whole = (np.trunc(values) == values) & (np.abs(values) < 1e15)
    dot_zero = pa.scalar(".0")
    if whole.all():
        text = pc.binary_join_element_wise(
            pc.cast(pa.array(values.astype(np.int64)), pa.string()), dot_zero, ""
        )
    elif not whole.any():
        text = pc.cast(pa.array(values), pa.string())
    else:
        as_int = pc.cast(pa.array(np.where(whole, values, 0.0).astype(np.int64)), pa.string())
        text = pc.if_else(
            pa.array(whole),
            pc.binary_join_element_wise(as_int, dot_zero, ""),
            pc.cast(pa.array(values), pa.string()),
        )
    if null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    return text


def _fixed_point_text(values: np.ndarray, decimals: int, null: np.ndarray) -> pa.Array:
    """Shortest text of numbers with at most ``decimals`` decimals, via integer formatting.

    Three to four times faster than Arrow's float-to-string cast, which dominates the run time.
    """
    scale = 10**decimals
    scaled = np.round(np.abs(values) * scale).astype(np.int64)
    whole, fraction = np.divmod(scaled, scale)
    sign = pc.take(pa.array(["", "-"]), pa.array(((values < 0) & (scaled > 0)).astype(np.int8)))
    fraction_text = pc.take(_fraction_texts(decimals), pa.array(fraction))
    text = pc.binary_join_element_wise(
        sign, pc.cast(pa.array(whole), pa.string()), fraction_text, ""
    )
    if null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    return text


@cache
def _fraction_texts(decimals: int) -> pa.Array:
    """ ".0", ".01", ..., ".99" (trailing zeros trimmed) for every fraction at ``decimals``."""
    texts = ["." + (f"{k:0{decimals}d}".rstrip("0") or "0") for k in range(10**decimals)]
    return pa.array(texts or [".0"], pa.string())


def _string_array(values: _Cat) -> pa.Array:
    dictionary = pa.array([_escape(level) for level in values.vocab.levels], pa.string())
    indices = pa.array(values.codes.astype(np.int32), mask=values.codes < 0)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _escape(level: str) -> str:
    if any(ch in level for ch in ',"\n\r'):
        return _QUOTE + level.replace('"', _QUOTE * 2).replace(",", _COMMA) + _QUOTE
    return level


def _output_stems(drift: DriftSpec | None) -> list[str]:
    history = [_BUREAU, _BB, _PREV, _INST, _CC, _POS]
    if drift is not None:
        return ["application_test", *history, "labels"]
    return ["application_train", "application_test", *history]


def _stale_files(drift: DriftSpec | None) -> list[str]:
    """Files of the other kind of output that must not survive a regeneration."""
    return ["application_train.csv"] if drift is not None else [LABELS_FILE]


def _marker(
    size: str | int, n_applicants: int, seed: int, drift: DriftSpec | None, rows: dict[str, int]
) -> dict[str, Any]:
    size_name = size.strip().lower() if isinstance(size, str) else str(int(size))
    return {
        "generator": "creditrisk.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size_name if size_name in SIZES else str(n_applicants),
        "n_applicants": n_applicants,
        "kind": "production_batch" if drift is not None else "base",
        "drift": asdict(drift) if drift is not None else None,
        "rows": rows,
        "files": {f"{stem}.csv": count for stem, count in rows.items()},
    }


class _StagedDirectory:
    """Writes files into a hidden temporary directory next to ``out_dir``, then publishes them.

    A crash leaves the temporary directory (removed on the next error-free exit path) and never
    a half-written file under a final name; the marker appears only after every data file.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.staging: Path | None = None
        self._handles: list[Any] = []

    def __enter__(self) -> _StagedDirectory:
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(
            tempfile.mkdtemp(prefix=f".{self.out_dir.name}.partial-", dir=self.out_dir.parent)
        )
        self.staging.chmod(0o755)  # mkdtemp's 0700 would make the published directory private
        return self

    def open_csv(self, name: str, header: bytes) -> Any:
        assert self.staging is not None
        handle = open(self.staging / name, "wb", buffering=1 << 20)  # noqa: SIM115
        handle.write(header)
        self._handles.append(handle)
        return handle

    def commit(self, marker: dict[str, Any], stale: Sequence[str]) -> None:
        assert self.staging is not None
        for handle in self._handles:
            handle.close()
        (self.staging / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        if not self.out_dir.exists():
            os.rename(self.staging, self.out_dir)  # atomic: the directory appears complete
            self.staging = None
            return
        previous = self.out_dir / MARKER_FILE
        was_synthetic = previous.exists()
        previous.unlink(missing_ok=True)  # no marker while files are being swapped
        for path in sorted(self.staging.iterdir()):
            if path.name != MARKER_FILE:
                os.replace(path, self.out_dir / path.name)
        if was_synthetic:
            for name in stale:
                (self.out_dir / name).unlink(missing_ok=True)
        os.replace(self.staging / MARKER_FILE, previous)

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.close()
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def _run_chunks(
    tasks: list[_ChunkTask], workers: int | None, progress: bool
) -> Iterator[_ChunkResult]:
    """Chunk results in chunk order; in worker processes when there is more than one chunk."""
    bar = _progress_bar(len(tasks)) if progress else None
    n_workers = min(workers or min(os.cpu_count() or 1, 4), len(tasks))
    if multiprocessing.current_process().daemon:
        n_workers = 1  # daemonic processes (e.g. pool workers) may not start children
    try:
        if n_workers <= 1:
            for task in tasks:
                yield _generate_chunk(task)
                if bar is not None:
                    bar.update()
            return
        # fork starts fast and needs no importable __main__; spawn elsewhere.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
            pending: deque[Future[_ChunkResult]] = deque()
            queue = iter(tasks)
            # A bounded window of chunks in flight keeps memory flat whatever the size.
            for task in queue:
                pending.append(pool.submit(_generate_chunk, task))
                if len(pending) > n_workers:
                    break
            while pending:
                result = pending.popleft().result()
                next_task = next(queue, None)
                if next_task is not None:
                    pending.append(pool.submit(_generate_chunk, next_task))
                yield result
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", desc="synthetic data")
