"""Damaged files are refused before bronze changes: gzip and ZIP integrity, non-UTF-8 text.

DuckDB's CSV reader does not check a gzip trailer, so each case below used to ingest (or fail
on a symptom such as "200 bad rows … Expected 17 Found 18"). Each test first builds a real
bronze from the tiny snapshot, damages one file, and checks that the ingest fails naming the
file and the cause while bronze stays byte for byte what it was, with no staging folder left.
"""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from creditrisk.cli import app
from creditrisk.data.ingest import IngestError
from creditrisk.data.ingest import ingest as ingest_snapshot
from creditrisk.data.sources import GzipVerifier, SourceError, verify_gzip
from creditrisk.settings import Workspace

QUIET = {"echo": lambda _line: None}


def ingest(source: Path, workspace: Workspace) -> dict:
    return ingest_snapshot(str(source), workspace.bronze, work_dir=workspace.data, **QUIET)


def bronze_state(workspace: Workspace) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(workspace.bronze.iterdir())
    }


def two_members(text: bytes) -> bytes:
    """A gzip file of two members, split at a line (as ``cat a.gz b.gz`` or pigz make)."""
    cut = text.index(b"\n", len(text) // 2) + 1
    return gzip.compress(text[:cut], mtime=0) + gzip.compress(text[cut:], mtime=0)


@pytest.fixture
def gzipped(raw_copy: Path, workspace: Workspace) -> dict:
    """bureau as a two-member .csv.gz and application_train as a ZIP, ingested once into a
    real bronze: the state a failed ingest must leave untouched."""
    bureau = raw_copy / "bureau.csv"
    text = bureau.read_bytes()
    (raw_copy / "bureau.csv.gz").write_bytes(two_members(text))
    bureau.unlink()
    train = raw_copy / "application_train.csv"
    with zipfile.ZipFile(raw_copy / "application_train.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(train, "application_train.csv")
    train.unlink()
    summary = ingest(raw_copy, workspace)
    assert summary["tables"]["bureau"]["rows"] == text.count(b"\n") - 1  # both members read
    return {"raw": raw_copy, "text": text, "bronze": bronze_state(workspace)}


def assert_refused(
    gzipped: dict, workspace: Workspace, table: str, match: str, rule: str = "integrity"
) -> IngestError:
    with pytest.raises(IngestError, match=match) as err:
        ingest(gzipped["raw"], workspace)
    assert (err.value.table, err.value.rule) == (table, rule)
    assert bronze_state(workspace) == gzipped["bronze"]
    assert [p.name for p in workspace.data.iterdir() if p.name.startswith(".")] == []
    return err.value


def damage(path: Path, edit: Callable[[bytearray], None]) -> None:
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))


def flip(offset: int) -> Callable[[bytearray], None]:
    def edit(data: bytearray) -> None:
        data[offset] ^= 0xFF

    return edit


# ---------------------------------------------------------------------------------------------
# gzip
# ---------------------------------------------------------------------------------------------


def test_a_changed_digit_under_the_old_trailer_is_refused(
    gzipped: dict, workspace: Workspace
) -> None:
    # The case of issue 12: one digit of one amount changed, the member's CRC-32 no longer
    # matches (gzip -t fails), and bronze used to store the changed amount.
    text: bytes = gzipped["text"]
    header, first, rest = text.split(b"\n", 2)
    column = header.split(b",").index(b"AMT_CREDIT_SUM")
    values = first.split(b",")
    values[column] = b"9" + values[column][1:]
    changed = b"\n".join([header, b",".join(values), rest])
    original = gzip.compress(text, mtime=0)
    (gzipped["raw"] / "bureau.csv.gz").write_bytes(
        gzip.compress(changed, mtime=0)[:-8] + original[-8:]
    )
    assert_refused(
        gzipped, workspace, "bureau", r"^bureau: bureau\.csv\.gz is corrupt: CRC check failed"
    )
    amounts = pq.read_table(workspace.bronze / "bureau.parquet", columns=["AMT_CREDIT_SUM"])
    assert amounts.column(0)[0].as_py() == float(first.split(b",")[column])


def test_a_flipped_byte_inside_the_deflate_stream_is_refused(
    gzipped: dict, workspace: Workspace
) -> None:
    path = gzipped["raw"] / "bureau.csv.gz"
    damage(path, flip(path.stat().st_size // 4))  # inside the first member's deflate data
    error = assert_refused(gzipped, workspace, "bureau", r"^bureau: bureau\.csv\.gz is corrupt: ")
    # zlib finds either an impossible code or, past it, output that fails the CRC.
    assert "invalid compressed data" in str(error) or "CRC check failed" in str(error)


@pytest.mark.parametrize(
    ("offset_from_end", "cause"),
    [
        (8, r"CRC check failed \(the data do not match the CRC-32 in the trailer\) "),
        (4, r"bad trailer: length mismatch \(ISIZE is not the inflated size\) "),
    ],
    ids=["crc32", "isize"],
)
def test_a_damaged_trailer_is_refused(
    gzipped: dict, workspace: Workspace, offset_from_end: int, cause: str
) -> None:
    path = gzipped["raw"] / "bureau.csv.gz"
    damage(path, flip(path.stat().st_size - offset_from_end))  # the last member's trailer
    assert_refused(
        gzipped,
        workspace,
        "bureau",
        rf"^bureau: bureau\.csv\.gz is corrupt: {cause}\(gzip member 2\) \[rule: integrity\]$",
    )


def test_a_truncated_stream_is_refused(gzipped: dict, workspace: Workspace) -> None:
    path = gzipped["raw"] / "bureau.csv.gz"
    path.write_bytes(path.read_bytes()[:-1000])
    assert_refused(
        gzipped,
        workspace,
        "bureau",
        r"^bureau: bureau\.csv\.gz is corrupt: truncated \(the compressed stream ends early\)",
    )


def test_the_verifier_reads_every_member_and_refuses_trailing_garbage(tmp_path: Path) -> None:
    text = b"SK_ID_CURR,TARGET\n" + b"".join(b"%d,0\n" % i for i in range(5000))

    def verify(data: bytes, chunk: int) -> int:
        verifier = GzipVerifier("labels.csv.gz", "labels")
        for start in range(0, len(data), chunk):
            verifier.update(data[start : start + chunk])
        verifier.finish()
        return verifier.members

    members = two_members(text)
    for chunk in (1, 97, len(members) + 1):  # member boundaries anywhere within a read
        assert verify(members, chunk) == 2
        assert verify(members + b"\0" * 512, chunk) == 2  # zero padding, as gzip allows
    with pytest.raises(SourceError, match=r"unexpected bytes after gzip member 2$"):
        verify(members + b"not gzip", 4096)
    bad_crc = bytearray(members)
    bad_crc[-8] ^= 1
    with pytest.raises(SourceError, match=r"CRC check failed .* \(gzip member 2\)$"):
        verify(bytes(bad_crc), 4096)
    with pytest.raises(SourceError, match=r"empty file \(no gzip member\)"):
        verify(b"", 4096)
    on_disk = tmp_path / "labels.csv.gz"
    on_disk.write_bytes(members[:-1])
    with pytest.raises(SourceError, match=r"^labels\.csv\.gz is corrupt: truncated "):
        verify_gzip(on_disk)


# ---------------------------------------------------------------------------------------------
# ZIP
# ---------------------------------------------------------------------------------------------


def _member_data_offset(path: Path) -> tuple[int, int]:
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[0]
    with open(path, "rb") as fh:  # the local header: 30 bytes, then the name and extra field
        fh.seek(info.header_offset + 26)
        name_length, extra_length = (int.from_bytes(fh.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def test_a_corrupt_zip_member_is_refused(gzipped: dict, workspace: Workspace) -> None:
    path = gzipped["raw"] / "application_train.zip"
    start, size = _member_data_offset(path)
    damage(path, flip(start + size // 2))
    error = assert_refused(
        gzipped,
        workspace,
        "application_train",
        r"^application_train: application_train\.zip is corrupt: member application_train\.csv ",
    )
    assert "fails its CRC check" in str(error) or "invalid compressed data" in str(error)


def test_a_zip_member_whose_crc_does_not_match_is_refused(
    gzipped: dict, workspace: Workspace
) -> None:
    path = gzipped["raw"] / "application_train.zip"
    central = path.read_bytes().rfind(b"PK\x01\x02")  # the member's central directory entry
    damage(path, flip(central + 16))  # its CRC-32
    assert_refused(
        gzipped,
        workspace,
        "application_train",
        r"^application_train: application_train\.zip is corrupt: member application_train\.csv "
        r"fails its CRC check \[rule: integrity\]$",
    )


# ---------------------------------------------------------------------------------------------
# Encoding, and what the command line says
# ---------------------------------------------------------------------------------------------


def _latin1_in_line(path: Path, line: int, column: str) -> None:
    lines = path.read_bytes().split(b"\n")
    index = lines[0].split(b",").index(column.encode())
    values = lines[line - 1].split(b",")
    values[index] = "Crédit".encode("latin-1")
    lines[line - 1] = b",".join(values)
    path.write_bytes(b"\n".join(lines))


def test_a_latin1_byte_is_reported_with_its_line(gzipped: dict, workspace: Workspace) -> None:
    # Line 5 lies in the header's read buffer: it used to fail as "can't decode byte 0xe9 in
    # position 633", an offset into the file, and as a traceback rather than an ingest error.
    _latin1_in_line(gzipped["raw"] / "previous_application.csv", 5, "NAME_CONTRACT_TYPE")
    assert_refused(
        gzipped,
        workspace,
        "previous_application",
        r"^previous_application: previous_application\.csv is not UTF-8 .*: line 5 "
        r"\[rule: encoding\]$",
        rule="encoding",
    )


def test_a_latin1_byte_in_the_header_names_line_one(gzipped: dict, workspace: Workspace) -> None:
    path = gzipped["raw"] / "previous_application.csv"
    path.write_bytes(path.read_bytes().replace(b"NAME_CONTRACT_TYPE", b"NAME_CONTRACT_TYP\xc9", 1))
    assert_refused(
        gzipped,
        workspace,
        "previous_application",
        r"^previous_application: previous_application\.csv is not UTF-8: line 1 \(the header\)",
        rule="encoding",
    )


def test_the_command_line_names_the_file_and_the_cause(gzipped: dict, workspace: Workspace) -> None:
    path = gzipped["raw"] / "bureau.csv.gz"
    path.write_bytes(path.read_bytes()[:-1000])
    result = CliRunner().invoke(app, ["ingest", "--source", str(gzipped["raw"])])
    assert result.exit_code == 1
    assert (
        "ingest failed: bureau: bureau.csv.gz is corrupt: truncated (the compressed stream "
        "ends early) (gzip member 2) [rule: integrity]"
    ) in " ".join(result.output.split())
    assert bronze_state(workspace) == gzipped["bronze"]
