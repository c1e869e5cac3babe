"""The REST service's scoring threads: features and scores for queued requests, in micro-batches.

Request threads put their rows on one queue and wait on a future. A free scoring thread takes
the oldest waiting request and every other waiting one it can add (up to ``max_batch``),
computes all their features in one DuckDB execution and scores them with one model call. A lone
request runs at once: nothing waits for a batch to fill, so batching costs no latency at low
load and raises throughput under load (one execution for eight applicants costs about 1.5 times
one; ``bench/studies/online_features.md``).

The feature SQL runs in a feature process by default (:class:`OnlineFeatures` with
``separate_process``): DuckDB takes this process's GIL back dozens of times per execution, and
behind the HTTP threads each take would wait. Features and scores are two stages, each with a
thread: while the model scores one batch, the next batch's features are computed, and a batch
is formed when the feature process is free, so it holds everything that arrived meanwhile.

Every request gets exactly what it would get alone:

* requests that share an SK_ID_CURR or an SK_ID_BUREAU never share a batch (the SQL groups by
  those keys), and requests for different model versions (a reload in between) or reason
  counts neither; such a request waits for a later batch, in arrival order;
* when a batch fails on one request's input, each request of it is retried alone, so only the
  faulty one gets the error;
* when the feature process dies under a batch (killed, out of memory), the batch runs once more
  on the process started in its place; only when that fails too, or no new process starts, do
  its requests get the :class:`~creditrisk.features.online.FeatureProcessError`.

A request's error is a ``ValueError`` when its input is at fault (the service answers 422), a
``FeatureProcessError`` when the feature process is unavailable (503), and anything else when
the service is (500).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from creditrisk.features.online import (
    FeatureProcessRestarted,
    OnlineFeatures,
    RequestKeys,
    request_keys,
)
from creditrisk.scoring import Scorer, Scores, UnscorableInput
from creditrisk.settings import ServingSettings

#: Default most requests per DuckDB execution (the gain above 8–16 is small): the setting's.
DEFAULT_MAX_BATCH: int = ServingSettings.model_fields["max_batch"].default

#: Default feature threads (one is enough with a feature process: it runs one batch at a time).
DEFAULT_THREADS: int = ServingSettings.model_fields["scoring_threads"].default


@dataclass
class _Job:
    tables: Mapping[str, pa.Table]
    keys: RequestKeys
    scorer: Scorer
    reasons: int
    future: Future[Scores] = field(default_factory=Future)


@dataclass(frozen=True)
class _Computed:
    """A batch whose features are ready for the scoring stage."""

    jobs: list[_Job]
    features: list[pa.Table]


_STOP = object()


class ScoringWorker:
    """Threads that compute features and scores for submitted requests, in batches.

    Args:
        max_batch: Most requests per DuckDB execution and model call.
        threads: Feature threads that form batches (each with a DuckDB connection of its own
            when there is no feature process); one scoring thread scores what they computed.
        feature_process: Run the feature SQL in a child process (shared by the feature threads,
            one execution at a time), so DuckDB never waits for this process's GIL.
        on_batch: Called with the number of requests of every batch run (e.g. a metric).
    """

    def __init__(
        self,
        max_batch: int = DEFAULT_MAX_BATCH,
        threads: int = DEFAULT_THREADS,
        *,
        feature_process: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.max_batch = max(1, max_batch)
        self._shared = OnlineFeatures(separate_process=True) if feature_process else None
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._stopping = False
        self._count_lock = threading.Lock()
        self.batches = 0  # executions run, for tests and metrics
        self.requests = 0
        self._scoring: queue.SimpleQueue[_Computed | object] = queue.SimpleQueue()
        self._scorer_thread = threading.Thread(
            target=self._score_batches, name="creditrisk-scoring", daemon=True
        )
        self._scorer_thread.start()
        self._lanes = [_Lane(self, n) for n in range(max(1, threads))]

    @property
    def feature_process_id(self) -> int | None:
        """The feature process's id (None without one): what an operator would kill or watch."""
        return self._shared.process_id if self._shared is not None else None

    def submit(
        self, tables: Mapping[str, pa.Table], scorer: Scorer, reasons: int
    ) -> Future[Scores]:
        """Queue one request; the future holds its scores, or the ValueError of a bad input.

        Raises:
            ValueError: At once, when the request's applicant keys are unusable.
            RuntimeError: When the worker is closed.
        """
        if self._stopping:
            raise RuntimeError("the scoring worker is closed")
        job = _Job(tables, request_keys(tables), scorer, reasons)
        self._queue.put(job)
        return job.future

    def score(self, tables: Mapping[str, pa.Table], scorer: Scorer, reasons: int) -> Scores:
        """:meth:`submit` and wait for the result."""
        return self.submit(tables, scorer, reasons).result()

    def close(self, timeout: float = 30) -> None:
        """Finish the queued requests, stop the threads and close their connections."""
        if self._stopping:
            return
        self._stopping = True
        for _ in self._lanes:
            self._queue.put(_STOP)
        for lane in self._lanes:
            lane.join(timeout)
        if any(lane.alive for lane in self._lanes):
            return
        self._scoring.put(_STOP)
        self._scorer_thread.join(timeout)
        if self._shared is not None:
            self._shared.close()
        while True:  # a request submitted while closing: refuse it rather than leave it waiting
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Job):
                _fail([item], RuntimeError("the scoring worker is closed"))

    def _score_batches(self) -> None:
        """The scoring stage: one model call per batch whose features are ready."""
        while True:
            item = self._scoring.get()
            if not isinstance(item, _Computed):  # _STOP
                return
            try:
                self._score(item.jobs, item.features)
            except UnscorableInput:
                for job, table in zip(item.jobs, item.features, strict=True):  # only its own
                    try:
                        self._score([job], [table])
                    except Exception as exc:
                        _fail([job], _scoring_error(exc))
            except Exception as exc:  # never kill the thread: the requests get the error
                _fail(item.jobs, _scoring_error(exc))

    @staticmethod
    def _score(jobs: list[_Job], features: list[pa.Table]) -> None:
        frame: pd.DataFrame = pa.concat_tables(features).to_pandas()
        scores = jobs[0].scorer.score(frame, reasons=jobs[0].reasons)
        start = 0
        for job, table in zip(jobs, features, strict=True):
            job.future.set_result(scores.slice(start, start + table.num_rows))
            start += table.num_rows

    def _ran(self, size: int) -> None:
        with self._count_lock:
            self.batches += 1
            self.requests += size
        if self._on_batch is not None:
            self._on_batch(size)


class _Lane:
    """One scoring thread, its DuckDB connection and the requests it holds for later."""

    def __init__(self, worker: ScoringWorker, number: int) -> None:
        self._worker = worker
        self._queue = worker._queue
        self._own = worker._shared is None
        # Its own connection (used only by the thread below), or the worker's feature process.
        self._features = OnlineFeatures() if worker._shared is None else worker._shared
        self._held: list[_Job] = []
        self._thread = threading.Thread(
            target=self._run, name=f"creditrisk-scoring-{number}", daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._own and not self._thread.is_alive():
            self._features.close()

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                self._process(batch)
            if stop:
                while self._held:
                    self._process(self._form(self._held))
                return

    def _take(self) -> tuple[list[_Job], bool]:
        """The next batch (oldest first), leaving clashing requests for later batches."""
        candidates, stop = list(self._held), False
        self._held = []
        if not candidates:
            first = self._queue.get()
            if first is _STOP:
                return [], True
            candidates.append(first)  # type: ignore[arg-type]
        for _ in range(self._worker.max_batch):  # what is waiting now; never wait for more
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            candidates.append(item)  # type: ignore[arg-type]
        return self._form(candidates), stop

    def _form(self, candidates: list[_Job]) -> list[_Job]:
        """A batch from the candidates, in order; the others are held for the next one."""
        batch: list[_Job] = []
        held: list[_Job] = []
        keys = RequestKeys(frozenset(), frozenset())
        for job in candidates:
            if len(batch) < self._worker.max_batch and _fits(job, batch, keys):
                batch.append(job)
                keys |= job.keys
            else:
                held.append(job)
        self._held = held
        return batch

    def _process(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        self._worker._ran(len(live))
        try:
            features = self._compute([job.tables for job in live])
        except ValueError as exc:
            if len(live) == 1:
                _fail(live, exc)
                return
            live, features = self._one_by_one(live)
        except Exception as exc:
            _fail(live, exc)
            return
        if live:
            self._worker._scoring.put(_Computed(live, features))

    def _compute(self, requests: list[Mapping[str, pa.Table]]) -> list[pa.Table]:
        try:
            return self._features.compute_many(requests)
        except FeatureProcessRestarted:  # it died under this batch: once more on the new one
            return self._features.compute_many(requests)

    def _one_by_one(self, jobs: list[_Job]) -> tuple[list[_Job], list[pa.Table]]:
        """Each request alone, after its batch failed: only the faulty ones get the error."""
        survivors, features = [], []
        for job in jobs:
            try:
                features.extend(self._compute([job.tables]))
                survivors.append(job)
            except Exception as exc:
                job.future.set_exception(exc)
        return survivors, features


def _fits(job: _Job, batch: list[_Job], keys: RequestKeys) -> bool:
    """Whether a request may join a batch: same model and reasons, no shared key."""
    if not batch:
        return True
    same_model = job.scorer is batch[0].scorer and job.reasons == batch[0].reasons
    return same_model and not job.keys.clashes(keys)


def _scoring_error(exc: Exception) -> Exception:
    """The error a request gets from the scoring stage: a ValueError only if its input is at
    fault. The model's own errors (XGBoost's are ValueErrors, with its native stack trace) are
    the service's, not the client's."""
    if isinstance(exc, ValueError) and not isinstance(exc, UnscorableInput):
        error = RuntimeError(f"the model failed to score: {type(exc).__name__}")
        error.__cause__ = exc
        return error
    return exc


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
