"""What a killed run leaves behind is swept by the next run; what was published stays."""

from __future__ import annotations

from pathlib import Path

from creditrisk.pipeline.recovery import remove_leftovers
from creditrisk.settings import Workspace
from creditrisk.spark.features import staging_dir


def test_staging_folders_and_temporaries_are_removed_and_published_files_kept(
    tmp_path: Path,
) -> None:
    workspace = Workspace(tmp_path)
    store = workspace.feature_store
    store.parent.mkdir(parents=True)
    store.write_bytes(b"published")
    spark_staging = staging_dir(store)  # where Spark writes the store's part files
    spark_staging.mkdir()
    (spark_staging / "part-00000-x.zstd.parquet").write_bytes(b"half")
    ingest_staging = workspace.data / ".ingest-abc123"
    (ingest_staging / "bronze").mkdir(parents=True)
    workspace.reports.mkdir()
    temporary = workspace.reports / ".metrics.json.Ab3_x9Zq.tmp"
    temporary.write_text("{")
    kept = workspace.reports / "metrics.json"
    kept.write_text("{}")

    notes = remove_leftovers(workspace)

    assert not spark_staging.exists() and not ingest_staging.exists() and not temporary.exists()
    assert store.read_bytes() == b"published" and kept.read_text() == "{}"
    assert sorted(notes) == [
        "removed data/.ingest-abc123/ (left by a killed run)",
        f"removed data/features/{spark_staging.name}/ (left by a killed run)",
        "removed reports/.metrics.json.Ab3_x9Zq.tmp (left by a killed run)",
    ]
    assert remove_leftovers(workspace) == []  # nothing left to remove
