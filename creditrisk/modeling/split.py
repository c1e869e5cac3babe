"""The applicant-level train/test split: labelled applicants only, stratified, reproducible.

The test split is the out-of-time proxy every later stage evaluates on, so it must be the same
applicants on every machine for the same data and seed, whatever order the feature store rows
arrive in, and no applicant may ever be in both splits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from creditrisk.features.catalog import ID_COLUMN, TARGET_COLUMN
from creditrisk.io import atomic_path
from creditrisk.provenance import file_sha256

#: File name of each split under ``data/splits/``.
SPLIT_FILES: dict[str, str] = {"train": "train.parquet", "test": "test.parquet"}


@dataclass(frozen=True)
class Splits:
    """Labelled feature-store rows divided into disjoint sets of applicants.

    Attributes:
        train: Applicants the model is fitted, early-stopped and calibrated on.
        test: Held-out applicants for evaluation only.
    """

    train: pd.DataFrame
    test: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        """(name, frame) pairs in file order: train, then test."""
        return [("train", self.train), ("test", self.test)]


def labelled_applicants(features: pd.DataFrame) -> pd.DataFrame:
    """Rows with a known outcome, sorted by applicant id, TARGET as 0/1 integers.

    Applicants from application_test have no TARGET yet; they can be scored, not learned from.

    Raises:
        ValueError: When SK_ID_CURR or TARGET is missing, an applicant appears twice, or a
            TARGET is neither 0 nor 1.
    """
    missing = [c for c in (ID_COLUMN, TARGET_COLUMN) if c not in features.columns]
    if missing:
        raise ValueError(f"the feature frame has no {missing} column(s)")
    labelled = features.loc[features[TARGET_COLUMN].notna()]
    duplicated = labelled[ID_COLUMN].duplicated(keep=False)
    if duplicated.any():
        examples = sorted(labelled.loc[duplicated, ID_COLUMN].unique().tolist())[:5]
        raise ValueError(f"{ID_COLUMN} must identify one row per applicant; duplicated: {examples}")
    outcomes = set(labelled[TARGET_COLUMN].unique().tolist())
    if not outcomes <= {0, 1}:
        raise ValueError(f"{TARGET_COLUMN} must be 0 or 1, found {sorted(outcomes)}")
    # Sorting first makes the split a function of the data, not of the row order it came in.
    ordered = labelled.sort_values(ID_COLUMN, kind="stable").reset_index(drop=True)
    return ordered.astype({TARGET_COLUMN: "int64"})


def split_applicants(features: pd.DataFrame, test_share: float = 0.2, seed: int = 42) -> Splits:
    """Split labelled applicants into train and test, stratified by the default flag.

    Args:
        features: Feature-store rows (SK_ID_CURR, TARGET and the features); unlabelled rows
            are dropped.
        test_share: Share of labelled applicants held out for testing, in (0, 1).
        seed: Seed of the shuffle; the same data and seed give the same split.

    Returns:
        Train and test frames, each sorted by SK_ID_CURR with a fresh index.

    Raises:
        ValueError: On a share outside (0, 1), too few applicants or defaults to stratify,
            or an applicant that ends up in both splits.
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be between 0 and 1, got {test_share}")
    labelled = labelled_applicants(features)
    train, test = train_test_split(
        labelled,
        test_size=test_share,
        random_state=seed,
        shuffle=True,
        stratify=labelled[TARGET_COLUMN],  # same default rate in both splits
    )
    splits = Splits(train=_ordered(train), test=_ordered(test))
    check_disjoint(splits)
    return splits


@dataclass(frozen=True)
class TrainingSample:
    """The stratified sample of the training split fitted on when it exceeds ``max_rows``.

    Attributes:
        max_rows: The limit asked for (``train.max_rows``).
        seed: Seed of the sample (the split's).
        rows_before: Applicants in the training split.
        rows: Applicants kept (``max_rows``).
        default_rate_before: Default rate of the training split.
        default_rate: Default rate of the sample (the same, to one applicant: stratified).
    """

    max_rows: int
    seed: int
    rows_before: int
    rows: int
    default_rate_before: float
    default_rate: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_store(
    store: Path, *, test_share: float = 0.2, seed: int = 42, max_rows: int = 0
) -> tuple[Splits, TrainingSample | None]:
    """Split a feature-store file; with ``max_rows``, fit on a stratified sample of the train split.

    The split is decided on the applicants' ids and outcomes alone, exactly as
    :func:`split_applicants` decides it on the whole store, so the test split is the same with or
    without a sample. When the training split holds more than ``max_rows`` applicants, a
    stratified sample of ``max_rows`` of them (seeded by ``seed``) is kept, and only the kept rows
    of the store are read (a store bigger than memory is never loaded whole).

    Args:
        store: The feature store Parquet file.
        test_share: Share of labelled applicants held out for testing.
        seed: Seed of the split and of the sample.
        max_rows: Most training applicants; 0 keeps them all.

    Returns:
        The splits, and the sample taken (None when none was needed).
    """
    if max_rows < 0:
        raise ValueError(f"max_rows must be 0 (all) or positive, got {max_rows}")
    if max_rows == 0:
        return split_applicants(pd.read_parquet(store), test_share, seed), None
    keys = split_applicants(
        pd.read_parquet(store, columns=[ID_COLUMN, TARGET_COLUMN]), test_share, seed
    )
    if len(keys.train) <= max_rows:
        return split_applicants(pd.read_parquet(store), test_share, seed), None
    kept, _ = train_test_split(
        keys.train,
        train_size=max_rows,
        random_state=seed,
        shuffle=True,
        stratify=keys.train[TARGET_COLUMN],
    )
    wanted = pd.concat([kept[ID_COLUMN], keys.test[ID_COLUMN]])
    rows = labelled_applicants(
        pq.read_table(store, filters=[(ID_COLUMN, "in", wanted.tolist())]).to_pandas()
    )
    in_train = rows[ID_COLUMN].isin(kept[ID_COLUMN])
    splits = Splits(train=_ordered(rows.loc[in_train]), test=_ordered(rows.loc[~in_train]))
    check_disjoint(splits)
    sample = TrainingSample(
        max_rows=max_rows,
        seed=seed,
        rows_before=len(keys.train),
        rows=len(splits.train),
        default_rate_before=float(keys.train[TARGET_COLUMN].mean()),
        default_rate=float(splits.train[TARGET_COLUMN].mean()),
    )
    return splits, sample


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ID_COLUMN, kind="stable").reset_index(drop=True)


def check_disjoint(splits: Splits) -> None:
    """Fail when an applicant is in both splits: the test metrics would be leaked.

    Raises:
        ValueError: Naming (up to five of) the applicants found in both.
    """
    shared = set(splits.train[ID_COLUMN]).intersection(splits.test[ID_COLUMN])
    if shared:
        raise ValueError(
            f"{len(shared)} applicant(s) are in both train and test, e.g. {sorted(shared)[:5]}"
        )


def save_splits(
    splits: Splits, directory: Path, *, relative_to: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Write ``train.parquet`` and ``test.parquet`` into ``directory`` atomically.

    Args:
        splits: The splits to write.
        directory: Where the files go (the workspace's ``data/splits``).
        relative_to: Record the paths relative to this folder (the workspace root).

    Returns:
        Per split: ``path``, ``sha256`` of the file, ``rows`` and ``default_rate``; the training
        run records it as lineage.
    """
    check_disjoint(splits)
    written: dict[str, dict[str, Any]] = {}
    for name, frame in splits.items():
        destination = directory / SPLIT_FILES[name]
        with atomic_path(destination, suffix=".parquet") as temporary:
            frame.to_parquet(temporary, index=False)
        shown = destination.relative_to(relative_to) if relative_to is not None else destination
        written[name] = {
            "path": shown.as_posix(),
            "sha256": file_sha256(destination),
            "rows": len(frame),
            "default_rate": float(frame[TARGET_COLUMN].mean()) if len(frame) else None,
        }
    return written


def split_files(directory: Path) -> dict[str, Path]:
    """The split files in ``directory``, by split name."""
    return {name: directory / file_name for name, file_name in SPLIT_FILES.items()}


def load_splits(directory: Path) -> Splits:
    """Read the splits written by :func:`save_splits`.

    Raises:
        FileNotFoundError: Naming the split file that is absent (run the split first).
    """
    frames: dict[str, pd.DataFrame] = {}
    for name, path in split_files(directory).items():
        if not path.exists():
            raise FileNotFoundError(f"{name} split not found at {path}: run the train stage first")
        frames[name] = pd.read_parquet(path)
    return Splits(train=frames["train"], test=frames["test"])
