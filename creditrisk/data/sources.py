"""Where raw tables come from: a local directory or an S3 prefix, as CSV, CSV.GZ or ZIP.

A *source* is a URI: a directory path or ``s3://bucket/prefix``. S3 is reached with boto3 and
the standard AWS credential chain (``AWS_PROFILE``, environment, instance role…);
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` point it at an S3-compatible store. DuckDB's
own S3 support is not used: it needs an extension downloaded at run time.

Compressed files are verified completely before anything reads them as CSV: DuckDB's CSV
reader does not check a gzip trailer, so a damaged ``.csv.gz`` would otherwise load its damaged
values. :func:`stage` inflates every gzip member while it checksums the file (one read), and
zlib checks each member's CRC-32 and length (ISIZE) against its trailer; a ZIP member is
checked against its CRC-32 as :func:`csv_path` unpacks it.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import os
import shutil
import zipfile
import zlib
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
    """A source that cannot be read: names the table and file.

    Attributes:
        table: The table the file holds, when known (then the message starts with it).
        detail: The message without the table.
        rule: What the file breaks (``integrity``, ``encoding``, …), when one rule applies.
    """

    def __init__(self, message: str, *, table: str | None = None, rule: str | None = None):
        self.table, self.detail, self.rule = table, message, rule
        super().__init__(f"{table}: {message}" if table else message)


#: zlib's words for a damaged gzip stream, as a user reads them.
_ZLIB_CAUSES = {
    "incorrect data check": "CRC check failed (the data do not match the CRC-32 in the trailer)",
    "incorrect length check": "bad trailer: length mismatch (ISIZE is not the inflated size)",
    "incorrect header check": "bad gzip header",
    "header crc mismatch": "bad gzip header (header CRC mismatch)",
    "unknown compression method": "bad gzip header (unknown compression method)",
}


class GzipVerifier:
    """Inflates a gzip file as its bytes arrive, member by member, and throws the output away.

    zlib checks each member's trailer (the CRC-32 and the length mod 2³² of what it inflated),
    so a flipped bit, a damaged trailer or a cut stream is found. Files made of several members
    (``cat a.gz b.gz``, pigz, bgzip) are gzip files too; zero bytes after the last member are
    padding (Python's :mod:`gzip` and GNU gzip accept them), anything else is corruption.
    """

    def __init__(self, name: str, table: str | None = None) -> None:
        self.name, self.table = name, table
        self.members = 0
        self._inflater: Any = None  # the member being inflated; None between members

    def _corrupt(self, cause: str, member: int | None = None) -> SourceError:
        member = self.members if member is None else member
        where = f" (gzip member {member})" if member > 1 else ""
        return SourceError(
            f"{self.name} is corrupt: {cause}{where}", table=self.table, rule="integrity"
        )

    def _inflate(self, data: bytes, max_length: int = CHUNK_BYTES) -> bytes:
        """Inflate what the member's output limit allows; the input left over."""
        try:
            # Bounded output per call: memory stays at one chunk whatever the ratio.
            if max_length:
                self._inflater.decompress(data, max_length)
            else:
                self._inflater.flush()
        except zlib.error as exc:
            text = str(exc).rsplit(": ", 1)[-1]
            if self.members > 1 and text == "incorrect header check":
                raise self._corrupt(
                    f"unexpected bytes after gzip member {self.members - 1}", member=1
                ) from exc
            raise self._corrupt(
                _ZLIB_CAUSES.get(text, f"invalid compressed data ({text})")
            ) from exc
        if self._inflater.eof:
            rest: bytes = self._inflater.unused_data
            self._inflater = None
            return rest
        return self._inflater.unconsumed_tail  # type: ignore[no-any-return]

    def update(self, data: bytes) -> None:
        """Inflate the next bytes of the file.

        Raises:
            SourceError: The bytes so far cannot be a valid gzip file.
        """
        while data:
            if self._inflater is None:
                if self.members:
                    data = data.lstrip(b"\0")  # padding after a member
                    if not data:
                        return
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper
                self.members += 1
            data = self._inflate(data)

    def finish(self) -> None:
        """The file has ended: every member must be complete.

        Raises:
            SourceError: The file is empty or its last member is cut short.
        """
        if not self.members:
            raise self._corrupt("empty file (no gzip member)")
        while self._inflater is not None:
            # zlib may hold output it had no room for: let it finish the member, if it can.
            rest = self._inflate(b"", max_length=0)
            if self._inflater is not None:
                raise self._corrupt("truncated (the compressed stream ends early)")
            self.update(rest)


def verify_gzip(path: Path, table: str | None = None) -> None:
    """Read a gzip file to its end, checking every member's CRC-32 and length.

    Raises:
        SourceError: The file is damaged; the message names the file and the cause.
    """
    verifier = GzipVerifier(path.name, table)
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            verifier.update(chunk)
    verifier.finish()


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
    """Bring one file to local disk (when remote), checksum it and verify it, in one pass.

    Local files are read in place. The checksums are of the file as delivered, so they can be
    compared with checksums published by the data provider. A gzip file is inflated as it is
    read, so a damaged one is refused here, before DuckDB reads it.

    Returns:
        The local path of the file as delivered, and its checksums.

    Raises:
        SourceError: A gzip file is damaged (rule ``integrity``); the message names the file
            and the cause.
    """
    sha, md5 = _hashers()
    size = 0
    verifier = (
        GzipVerifier(source_file.name, source_file.table)
        if source_file.compression == "gzip"
        else None
    )
    remote = is_s3(source_file.uri)
    if remote:
        staging_dir.mkdir(parents=True, exist_ok=True)
        local = staging_dir / source_file.name
    else:
        local = Path(source_file.uri)
    with contextlib.ExitStack() as files:
        stream = files.enter_context(_open_stream(source_file))
        out = files.enter_context(open(local, "wb")) if remote else None
        while chunk := stream.read(CHUNK_BYTES):
            sha.update(chunk)
            md5.update(chunk)
            if verifier is not None:
                verifier.update(chunk)
            if out is not None:
                out.write(chunk)
            size += len(chunk)
    if verifier is not None:
        verifier.finish()
    return local, Checksums(sha.hexdigest(), md5.hexdigest(), size)


def fetch(source_file: SourceFile, staging_dir: Path) -> Path:
    """A local path for the file: remote objects are downloaded, local files used in place.

    A gzip file is verified to its end (every member's CRC-32 and length) before it is
    handed out: DuckDB's reader does not check the trailer, so a damaged file would be read.

    Raises:
        SourceError: A gzip file is damaged; the message names the file and the cause.
    """
    if not is_s3(source_file.uri):
        local = Path(source_file.uri)
    else:
        staging_dir.mkdir(parents=True, exist_ok=True)
        local = staging_dir / source_file.name
        with _open_stream(source_file) as stream, open(local, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK_BYTES)
    if source_file.compression == "gzip":
        verify_gzip(local, source_file.table)
    return local


def csv_path(source_file: SourceFile, local: Path, staging_dir: Path) -> Path:
    """A path DuckDB can read as CSV: ZIP archives are unpacked (DuckDB reads .gz itself).

    Raises:
        SourceError: the archive is damaged (rule ``integrity``: unpacking the CSV to its end
            checks it against the CRC-32 the archive records) or does not hold exactly one CSV.
    """
    if source_file.compression != "zip":
        return local
    table, name = source_file.table, source_file.name
    try:
        archive = zipfile.ZipFile(local)
    except zipfile.BadZipFile as exc:
        raise SourceError(
            f"{name} is not a valid ZIP: {exc}", table=table, rule="integrity"
        ) from exc
    with archive:
        members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
        if len(members) != 1:
            raise SourceError(
                f"{name} must hold exactly one CSV, found {members or 'none'}",
                table=table,
                rule="zip_members",
            )
        staging_dir.mkdir(parents=True, exist_ok=True)
        target = staging_dir / f"{table}.csv"
        try:
            with archive.open(members[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            target.unlink(missing_ok=True)
            raise SourceError(
                f"{name} is corrupt: member {members[0]} {_zip_cause(exc)}",
                table=table,
                rule="integrity",
            ) from exc
    return target


def _zip_cause(exc: Exception) -> str:
    text = str(exc)
    if text.startswith("Bad CRC-32"):
        return "fails its CRC check"
    if isinstance(exc, EOFError):
        return "is truncated (the compressed stream ends early)"
    if isinstance(exc, zlib.error):
        return f"holds invalid compressed data ({text.rsplit(': ', 1)[-1]})"
    return f"cannot be read ({text})"


def read_header(path: Path, table_name: str) -> list[str]:
    """Column names from a CSV's first line (plain or gzip).

    Only the first line is read and decoded (text mode would decode a whole buffer, and blame
    a bad byte of a later line on the header, by byte offset); the rows' encoding is checked,
    line by line, as DuckDB reads them.

    Raises:
        SourceError: the file is empty, its header is not UTF-8 or repeats a column.
    """
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.readline()
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"cannot read {path.name}: {exc}", table=table_name) from exc
    try:
        first = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path.name} is not UTF-8: line 1 (the header), byte 0x{raw[exc.start]:02x} at "
            f"position {exc.start + 1} of the line",
            table=table_name,
            rule="encoding",
        ) from exc
    if not first.strip():
        raise SourceError(f"{path.name} is empty (no header line)", table=table_name, rule="csv")
    header = next(csv.reader([first]))
    header = [h.strip() for h in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise SourceError(
            f"header of {path.name} repeats columns {duplicated}", table=table_name, rule="csv"
        )
    return header
