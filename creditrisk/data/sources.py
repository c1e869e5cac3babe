"""Where raw tables come from: a local directory or an S3 prefix, as CSV, CSV.GZ or ZIP.

A *source* is a URI: a directory path or ``s3://bucket/prefix``. S3 is reached with boto3 and
the standard AWS credential chain (``AWS_PROFILE``, environment, instance role…);
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` point it at an S3-compatible store. DuckDB's
own S3 support is not used: it needs an extension downloaded at run time.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from creditrisk.data.tables import tables

SUFFIXES = (".csv", ".csv.gz", ".zip")

#: What the batch scorer also reads: Parquet files with the Kaggle stems.
SCORING_SUFFIXES = (*SUFFIXES, ".parquet")
CHUNK_BYTES = 8 * 1024 * 1024


class SourceError(ValueError):
    """A source that cannot be read: names the table and file."""


@dataclass(frozen=True)
class SourceFile:
    """One table's file in a source, as delivered (before any decompression)."""

    table: str  # Kaggle stem
    uri: str  # full location: a local path or s3://bucket/key
    name: str  # file name as delivered
    size: int
    modified: datetime | None = None  # last modification (file mtime or S3 LastModified), UTC

    @property
    def compression(self) -> str:
        return "zip" if self.name.endswith(".zip") else "gzip" if self.name.endswith(".gz") else ""


@dataclass(frozen=True)
class Checksums:
    sha256: str
    md5: str
    bytes: int


def is_s3(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → (``bucket``, ``a/b``)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise SourceError(f"not an S3 URI: {uri!r}")
    return bucket, prefix.strip("/")


def s3_client() -> Any:
    """A boto3 S3 client from the standard credential chain (and AWS_ENDPOINT_URL*)."""
    import boto3

    return boto3.client("s3")


def _table_of(file_name: str, suffixes: tuple[str, ...] = SUFFIXES) -> str | None:
    known = {name.lower(): name for name in tables()}
    for suffix in suffixes:
        if file_name.lower().endswith(suffix):
            return known.get(file_name[: -len(suffix)].lower())
    return None


def _local_entries(directory: Path) -> Iterator[tuple[str, str, int, datetime]]:
    if not directory.is_dir():
        raise SourceError(f"source directory {directory} does not exist")
    for path in sorted(directory.iterdir()):
        if path.is_file():
            stat = path.stat()
            yield path.name, str(path), stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)


def _s3_entries(uri: str) -> Iterator[tuple[str, str, int, datetime]]:
    bucket, prefix = split_s3(uri)
    client = s3_client()
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(prefix) + 1 if prefix else 0 :]
            if "/" not in rest:  # only the prefix's own files, not sub-folders
                modified = obj["LastModified"].astimezone(UTC)
                yield rest, f"s3://{bucket}/{obj['Key']}", int(obj["Size"]), modified


def discover(
    source: str | Path, suffixes: tuple[str, ...] = SUFFIXES
) -> tuple[dict[str, SourceFile], list[str]]:
    """The table files of a source, and the names of files that are not Home Credit tables.

    Args:
        source: A directory or ``s3://bucket/prefix``.
        suffixes: File endings recognised after the Kaggle stem (default: CSV, CSV.GZ, ZIP).

    Raises:
        SourceError: the source does not exist, or one table is delivered twice.
    """
    entries = _s3_entries(str(source)) if is_s3(source) else _local_entries(Path(source))
    found: dict[str, SourceFile] = {}
    other: list[str] = []
    for name, uri, size, modified in entries:
        table_name = _table_of(name, suffixes)
        if table_name is None:
            if not name.startswith((".", "_")):
                other.append(name)
            continue
        if table_name in found:
            raise SourceError(
                f"{table_name}: delivered twice in {source} "
                f"({found[table_name].name} and {name}); keep one"
            )
        found[table_name] = SourceFile(table_name, uri, name, size, modified)
    return found, other


def fingerprint(uri: str) -> str:
    """A cheap identity of a source's current content (keys, sizes, ETags or mtimes).

    Used by the pipeline runner to decide whether the ingest stage must run again.
    """
    digest = hashlib.sha256()
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        client = s3_client()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for obj in page.get("Contents", []):
                digest.update(f"{obj['Key']}\0{obj['Size']}\0{obj['ETag']}\n".encode())
    else:
        for name, path, size, _ in _local_entries(Path(uri)):
            digest.update(f"{name}\0{size}\0{os.stat(path).st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _hashers() -> tuple[Any, Any]:
    return hashlib.sha256(), hashlib.md5(usedforsecurity=False)


def _open_stream(source_file: SourceFile) -> io.BufferedIOBase:
    if is_s3(source_file.uri):
        bucket, key = split_s3(source_file.uri)
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        return body  # type: ignore[no-any-return]
    return open(source_file.uri, "rb")


def stage(source_file: SourceFile, staging_dir: Path) -> tuple[Path, Checksums]:
    """Bring one file to local disk (when remote) and checksum it in the same pass.

    Local files are read in place. The checksums are of the file as delivered, so they can be
    compared with checksums published by the data provider.

    Returns:
        The local path of the file as delivered, and its checksums.
    """
    sha, md5 = _hashers()
    size = 0
    if is_s3(source_file.uri):
        staging_dir.mkdir(parents=True, exist_ok=True)
        local = staging_dir / source_file.name
        with _open_stream(source_file) as stream, open(local, "wb") as out:
            while chunk := stream.read(CHUNK_BYTES):
                sha.update(chunk)
                md5.update(chunk)
                out.write(chunk)
                size += len(chunk)
    else:
        local = Path(source_file.uri)
        with open(local, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    return local, Checksums(sha.hexdigest(), md5.hexdigest(), size)


def fetch(source_file: SourceFile, staging_dir: Path) -> Path:
    """A local path for the file: remote objects are downloaded, local files used in place."""
    if not is_s3(source_file.uri):
        return Path(source_file.uri)
    staging_dir.mkdir(parents=True, exist_ok=True)
    local = staging_dir / source_file.name
    with _open_stream(source_file) as stream, open(local, "wb") as out:
        shutil.copyfileobj(stream, out, CHUNK_BYTES)
    return local


def csv_path(source_file: SourceFile, local: Path, staging_dir: Path) -> Path:
    """A path DuckDB can read as CSV: ZIP archives are unpacked (DuckDB reads .gz itself).

    Raises:
        SourceError: the archive is damaged or does not hold exactly one CSV.
    """
    if source_file.compression != "zip":
        return local
    try:
        with zipfile.ZipFile(local) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise SourceError(
                    f"{source_file.table}: {source_file.name} must hold exactly one CSV, "
                    f"found {members or 'none'}"
                )
            staging_dir.mkdir(parents=True, exist_ok=True)
            target = staging_dir / f"{source_file.table}.csv"
            with archive.open(members[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
    except zipfile.BadZipFile as exc:
        raise SourceError(
            f"{source_file.table}: {source_file.name} is not a valid ZIP: {exc}"
        ) from exc
    return target


def read_header(path: Path, table_name: str) -> list[str]:
    """Column names from a CSV's first line (plain or gzip).

    Raises:
        SourceError: the file is empty or its header repeats a column.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            first = fh.readline()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SourceError(f"{table_name}: cannot read {path.name}: {exc}") from exc
    if not first.strip():
        raise SourceError(f"{table_name}: {path.name} is empty (no header line)")
    header = next(csv.reader([first]))
    header = [h.strip() for h in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise SourceError(f"{table_name}: header of {path.name} repeats columns {duplicated}")
    return header
