"""Hostile zips are refused in bounded time and memory, with one line naming the member.

Each case writes its zip into the test's folder and imports it in a child process under a
memory and time cap (tests/limits.py), through `workbench import` as a person would, into the
test's own database (WORKBENCH_DATABASE_URL from conftest's isolated_env).
"""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest
from limits import run_bounded
from zips import BZIP2, DEFLATED, Member, deflated_zeros, raw_zip

from workbench.exchange import MAX_ZIP_ENTRIES

IMPORT = """
import sys
from workbench.cli import main
code = main(["import", {path!r}])
print("EXIT", code)
"""


def import_bounded(path: Path) -> str:
    """`workbench import PATH` in a capped child, refused within bounds: its one stderr line."""
    result = run_bounded(IMPORT.format(path=str(path)))
    assert result.returncode == 0, result
    assert "EXIT 1" in result.stdout, result
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: import rejected, nothing was written: "), line
    assert result.within_bounds, result
    return line


@pytest.mark.parametrize(
    ("gib", "zip_mb"),
    [(1, 1), (16, 16)],  # 16 GiB from 16.7 MB: under the app's 20 MB upload limit
    ids=["1GiB-from-1MB", "16GiB-from-17MB"],
)
def test_zip_bomb_whose_header_understates_its_size(gib: int, zip_mb: int, tmp_path: Path) -> None:
    data = raw_zip(Member("big/v1.prompty", deflated_zeros(gib * 1024), 500, DEFLATED, crc=0))
    assert zip_mb <= len(data) / 1024 / 1024 < zip_mb + 1
    path = tmp_path / "bomb.zip"
    path.write_bytes(data)
    line = import_bounded(path)
    assert "bomb.zip:big/v1.prompty: does not match its header" in line
    assert "reading stopped at the 500 bytes it declares" in line


def test_zip_bomb_that_declares_its_size_is_refused_unread(tmp_path: Path) -> None:
    data = raw_zip(Member("big/v1.prompty", deflated_zeros(1024), 1 << 30, DEFLATED, crc=0))
    path = tmp_path / "honest-bomb.zip"
    path.write_bytes(data)
    line = import_bounded(path)
    assert "honest-bomb.zip: unpacks to 1024 MB; the limit is 64 MB" in line


def test_zip_bomb_of_many_members_each_under_the_limit(tmp_path: Path) -> None:
    """200 members that each claim 1,000 bytes and each inflate to 64 MiB (12.8 GB in all)."""
    block = deflated_zeros(64)
    data = raw_zip(*(Member(f"p{i}/v1.prompty", block, 1000, DEFLATED, crc=0) for i in range(200)))
    path = tmp_path / "many.zip"
    path.write_bytes(data)
    line = import_bounded(path)
    assert "many.zip:p0/v1.prompty: does not match its header" in line
    assert "many.zip:p199/v1.prompty: does not match its header" in line


def test_bzip2_member_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    """zipfile inflates bzip2 without a bound (242 bytes became 300 MB): never opened at all."""
    compressor = bz2.BZ2Compressor(9)
    stream = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(64)) + compressor.flush()
    data = raw_zip(Member("big/v1.prompty", stream, 500, BZIP2, crc=0))
    path = tmp_path / "bz.zip"
    path.write_bytes(data)
    line = import_bounded(path)
    assert "bz.zip:big/v1.prompty: compressed with method 12" in line


def test_zip_of_too_many_entries_is_refused_before_it_is_listed(tmp_path: Path) -> None:
    """A 20 MB upload can hold 250,000 empty entries; they are counted, not parsed."""
    data = raw_zip(*(Member(f"{i}.prompty", b"") for i in range(250_000)))
    path = tmp_path / "crowd.zip"
    path.write_bytes(data)
    line = import_bounded(path)
    assert f"crowd.zip: holds more than {MAX_ZIP_ENTRIES} entries" in line
