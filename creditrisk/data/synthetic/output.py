"""The files: the ``_SYNTHETIC.json`` marker, staged writing, and running the chunks in order.

Files are written into a temporary directory next to the destination and moved into place only
when complete; the marker is written last. Chunks run in worker processes (more than one chunk)
and their CSV bytes are appended in chunk order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from creditrisk.data.synthetic.chunk import _ChunkResult
from creditrisk.data.synthetic.process import (
    _BB,
    _BUREAU,
    _CC,
    _INST,
    _POS,
    _PREV,
    SIZES,
    DriftSpec,
    _ChunkTask,
)

#: Version of the generator, recorded in the marker.
GENERATOR_VERSION = "1.0.0"
MARKER_FILE = "_SYNTHETIC.json"
LABELS_FILE = "labels.csv"


# --------------------------------------------------------------------------------------------
# Result and marker
# --------------------------------------------------------------------------------------------


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


def read_marker(directory: Path | str) -> dict[str, Any] | None:
    """The parsed ``_SYNTHETIC.json`` of a directory, or None when absent or unreadable."""
    path = Path(directory) / MARKER_FILE
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


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


# --------------------------------------------------------------------------------------------
# Staged files
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Running the chunks
# --------------------------------------------------------------------------------------------


def _run_chunks(
    tasks: list[_ChunkTask],
    generate_chunk: Callable[[_ChunkTask], _ChunkResult],
    workers: int | None,
    progress: bool,
) -> Iterator[_ChunkResult]:
    """Chunk results in chunk order; in worker processes when there is more than one chunk.

    ``generate_chunk`` is passed in rather than imported here so that replacing the package's
    ``_generate_chunk`` (as the tests do) reaches it; in worker processes it must be a
    module-level function, which is pickled by name.
    """
    bar = _progress_bar(len(tasks)) if progress else None
    n_workers = min(workers or min(os.cpu_count() or 1, 4), len(tasks))
    if multiprocessing.current_process().daemon:
        n_workers = 1  # daemonic processes (e.g. pool workers) may not start children
    try:
        if n_workers <= 1:
            for task in tasks:
                yield generate_chunk(task)
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
                pending.append(pool.submit(generate_chunk, task))
                if len(pending) > n_workers:
                    break
            while pending:
                result = pending.popleft().result()
                next_task = next(queue, None)
                if next_task is not None:
                    pending.append(pool.submit(generate_chunk, next_task))
                yield result
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", desc="synthetic data")
