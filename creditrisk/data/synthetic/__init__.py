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

Modules
-------
``process`` (sizes, ids, calibration, :class:`DriftSpec`, chunk plans, numeric helpers),
``sampling`` (profile marginals, categorical codes, the generic column sampler), one writer per
table group (``application``, ``bureau``, ``previous_application``, ``pos_cash``,
``credit_card``, ``installments``), ``chunk`` (one chunk end to end), ``csv_rendering`` (the
CSV bytes) and ``output`` (marker, staged files, running the chunks). This package holds the
public API; the modules and their underscored names are internal.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from creditrisk.data.synthetic.chunk import _generate_chunk
from creditrisk.data.synthetic.csv_rendering import _header
from creditrisk.data.synthetic.output import (
    GENERATOR_VERSION,
    LABELS_FILE,
    MARKER_FILE,
    GenerationResult,
    _marker,
    _output_stems,
    _run_chunks,
    _StagedDirectory,
    _stale_files,
    read_marker,
)
from creditrisk.data.synthetic.process import (
    CHUNK_APPLICANTS,
    MAX_APPLICANTS,
    SENTINEL_DAYS,
    SIZES,
    DriftSpec,
    _chunk_tasks,
    resolve_size,
)

__all__ = [
    "CHUNK_APPLICANTS",
    "GENERATOR_VERSION",
    "LABELS_FILE",
    "MARKER_FILE",
    "MAX_APPLICANTS",
    "SENTINEL_DAYS",
    "SIZES",
    "DriftSpec",
    "GenerationResult",
    "generate",
    "read_marker",
    "resolve_size",
]


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
        # The package's ``_generate_chunk``, looked up at call time, so patching it takes effect.
        for result in _run_chunks(tasks, _generate_chunk, workers, progress):
            for stem, payload in result.csv.items():
                sinks[stem].write(payload)
                rows[stem] += result.rows[stem]
        marker = _marker(size, n_applicants, int(seed), drift, rows)
        staged.commit(marker, stale=_stale_files(drift))
    return GenerationResult(out_dir, n_applicants, rows, time.perf_counter() - started)
