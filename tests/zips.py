"""Zips that `zipfile` will not write: headers that lie about sizes, flags and names.

The hostile zips of the import tests are built here, byte by byte, so that each test writes its
own file and nothing large is kept in the repository.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

STORED, DEFLATED, BZIP2 = 0, 8, 12
ENCRYPTED, UTF8_NAME = 0x1, 0x800


@dataclass(frozen=True)
class Member:
    name: bytes | str
    data: bytes  # as stored: already compressed when method is not STORED
    size: int | None = None  # the uncompressed size the headers declare (None: len(data))
    method: int = STORED
    flags: int = 0
    crc: int | None = None  # None: the CRC of data (right for STORED)


def raw_zip(*members: Member) -> bytes:
    """A zip of `members`, with exactly the sizes, flags and names given (no data descriptors)."""
    body: list[bytes] = []
    directory: list[bytes] = []
    offset = 0
    for m in members:
        name = m.name.encode("utf-8") if isinstance(m.name, str) else m.name
        size = len(m.data) if m.size is None else m.size
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        common = struct.pack("<3H", m.flags, m.method, 0) + struct.pack(
            "<H3L2H", 0x21, crc, len(m.data), size, len(name), 0
        )
        directory.append(
            struct.pack("<4s2H", b"PK\x01\x02", 20, 20)
            + common
            + struct.pack("<3H2L", 0, 0, 0, 0o644 << 16, offset)
            + name
        )
        body.append(struct.pack("<4sH", b"PK\x03\x04", 20) + common + name + m.data)
        offset += len(body[-1])
    count = min(len(members), 0xFFFF)  # more is ZIP64; zipfile then counts the directory itself
    size = sum(map(len, directory))
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, size, offset, 0)
    return b"".join(body) + b"".join(directory) + end


def deflated(data: bytes) -> bytes:
    """Raw deflate, as a zip member holds it."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflated_zeros(mib: int) -> bytes:
    """Raw deflate of `mib` MiB of zero bytes, about 1 KB per MiB, built without inflating it.

    Each MiB is compressed after a full flush, which resets the window, so every block after the
    first is the same bytes: the stream for 16 GiB is one block repeated (16 MB, in milliseconds).
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    first = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    repeated = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    return first + repeated * (mib - 1) + c.flush(zlib.Z_FINISH)
