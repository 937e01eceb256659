"""Token log-probabilities of a generated answer, and how they are stored with the output.

For each generated token: its log-probability and the k most likely tokens at that step with
theirs, all taken from the distribution the token was actually drawn from — the logits after
the processors that chose it (penalties, temperature, top-k, top-p), named in `processors`.
A token cut by top-k or top-p has log-probability -inf there, which is what the sampler saw.

Stored as one compact blob per output (`to_bytes`): the magic b"WLP1", a uint32 header length,
a JSON header (k, what the values are after, the processors), then little-endian arrays: n int32
token ids, n float32 log-probabilities, n×k int32 alternative ids, n×k float32 alternative
log-probabilities. That is 8 + 8k bytes per token (48 at k = 5) plus a header of about 100
bytes. float32, not float16: float16 rounds a log-probability near -10 by up to 0.004, more
than the 1e-4 the stored values are checked to.

A server (OpenAI-compatible) names its tokens by their text, not their ids, so its records carry
`texts` and `top_texts` and ids of -1 ("unknown"); `after` is "server": the distribution is
whatever the server reports (llama.cpp's is the model's raw one, vLLM's by default too), and no
processors are named because the server does not say. Such a record is stored as WLP2: the
magic b"WLP2", a uint32 header length, a JSON header (k, after, processors, n, whether ids are
stored, the number of distinct texts, the width of an index), then little-endian arrays: [n int32
ids], n float32 log-probabilities, [n×k int32 alternative ids], n×k float32 alternative
log-probabilities, n text indexes, n×k alternative text indexes, one length per distinct text
and the texts' UTF-8 bytes. The ids are left out when all are unknown, and each distinct text is
stored once (the alternatives repeat the same few tokens), with 16-bit indexes and lengths while
they fit: 36 bytes a token at k = 5 plus the distinct texts (about 46 a token on a real answer).
A record without texts is still written as WLP1, and WLP1 blobs read as before (texts None).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", int, float, str)
DEFAULT_TOP_K = 5
MAGIC = b"WLP1"
MAGIC_TEXTS = b"WLP2"
UNKNOWN_ID = -1  # a token a server named by its text only


class LogprobsFormatError(ValueError):
    """A stored blob that is not token log-probabilities in a format this version reads."""


@dataclass(frozen=True)
class TokenLogprobs:
    """The log-probabilities of one answer's tokens, step by step."""

    tokens: tuple[int, ...]  # the generated token ids, EOS included when the answer ended on it
    logprobs: tuple[float, ...]  # natural log-probability of each generated token
    top_ids: tuple[tuple[int, ...], ...]  # per step, the k most likely token ids, best first
    top_logprobs: tuple[tuple[float, ...], ...]  # and their log-probabilities
    k: int = DEFAULT_TOP_K
    # The distribution the values come from: "processors" = the logits after the processors
    # listed in `processors` (an empty list: the model's raw logits, log-softmaxed); "server":
    # what an OpenAI-compatible server reported (it does not say after which processors).
    after: str = "processors"
    processors: tuple[str, ...] = field(default=())
    # Each token's text and its alternatives' (a server's records; None for a local one, whose
    # texts come from its tokenizer). A token that is part of a character made of several
    # tokens has the replacement character "\ufffd" for what it cannot show on its own.
    texts: tuple[str, ...] | None = None
    top_texts: tuple[tuple[str, ...], ...] | None = None

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        logprobs: Sequence[float],
        alternatives: Sequence[Sequence[tuple[str, float]]],
        k: int = DEFAULT_TOP_K,
    ) -> TokenLogprobs:
        """A server's record: tokens named by their text (ids unknown), each step's
        alternatives as (text, log-probability), best first, kept to k and padded to it."""
        tops = [list(step)[:k] for step in alternatives]
        return cls(
            (UNKNOWN_ID,) * len(texts),
            tuple(float(v) for v in logprobs),
            tuple((UNKNOWN_ID,) * k for _ in tops),
            tuple(tuple(_padded([float(v) for _, v in s], k, float("-inf"))) for s in tops),
            k,
            "server",
            (),
            tuple(texts),
            tuple(tuple(_padded([t for t, _ in s], k, "")) for s in tops),
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def head(self, n: int) -> TokenLogprobs:
        """The first n steps (an answer cut at its end keeps the steps it counts)."""
        return TokenLogprobs(
            self.tokens[:n],
            self.logprobs[:n],
            self.top_ids[:n],
            self.top_logprobs[:n],
            self.k,
            self.after,
            self.processors,
            self.texts[:n] if self.texts is not None else None,
            self.top_texts[:n] if self.top_texts is not None else None,
        )

    def to_bytes(self) -> bytes:
        if self.texts is not None:
            return self._to_bytes_with_texts(self.texts)
        header = json.dumps(
            {"k": self.k, "after": self.after, "processors": list(self.processors)},
            separators=(",", ":"),
        ).encode()
        parts: list[array[int] | array[float]] = [
            array("i", self.tokens),
            array("f", self.logprobs),
            array("i", [t for step in self.top_ids for t in _padded(step, self.k, -1)]),
            array(
                "f",
                [v for step in self.top_logprobs for v in _padded(step, self.k, float("-inf"))],
            ),
        ]
        if sys.byteorder != "little":
            for part in parts:
                part.byteswap()
        return (
            MAGIC + struct.pack("<I", len(header)) + header + b"".join(p.tobytes() for p in parts)
        )

    def _to_bytes_with_texts(self, texts: Sequence[str]) -> bytes:
        """WLP2 (see the module's docstring)."""
        k, n = self.k, len(self.tokens)
        top_texts = self.top_texts if self.top_texts is not None else ((),) * n
        if len(texts) != n or len(top_texts) != n:
            raise ValueError("token texts and tokens differ in number")
        table: dict[str, int] = {}
        index = [table.setdefault(t, len(table)) for t in texts]
        top_index = [
            table.setdefault(t, len(table)) for step in top_texts for t in _padded(step, k, "")
        ]
        encoded = [t.encode("utf-8", "surrogatepass") for t in table]
        wide = len(table) >= 0xFFFF or any(len(e) >= 0xFFFF for e in encoded)
        code = "I" if wide else "H"
        ids = any(t != UNKNOWN_ID for t in self.tokens) or any(
            t != UNKNOWN_ID for step in self.top_ids for t in step
        )
        header = json.dumps(
            {
                "k": k,
                "after": self.after,
                "processors": list(self.processors),
                "n": n,
                "ids": ids,
                "texts": len(table),
                "width": 4 if wide else 2,
            },
            separators=(",", ":"),
        ).encode()
        parts: list[array[int] | array[float]] = []
        if ids:
            parts.append(array("i", self.tokens))
        parts.append(array("f", self.logprobs))
        if ids:
            parts.append(array("i", [t for step in self.top_ids for t in _padded(step, k, -1)]))
        parts += [
            array("f", [v for step in self.top_logprobs for v in _padded(step, k, float("-inf"))]),
            array(code, index),
            array(code, top_index),
            array(code, [len(e) for e in encoded]),
        ]
        if sys.byteorder != "little":
            for part in parts:
                part.byteswap()
        return (
            MAGIC_TEXTS
            + struct.pack("<I", len(header))
            + header
            + b"".join(p.tobytes() for p in parts)
            + b"".join(encoded)
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> TokenLogprobs:
        if blob[:4] == MAGIC_TEXTS and len(blob) >= 8:
            return cls._from_bytes_with_texts(blob)
        if blob[:4] != MAGIC or len(blob) < 8:
            raise LogprobsFormatError("not token log-probabilities (unknown format)")
        (size,) = struct.unpack("<I", blob[4:8])
        try:
            header = json.loads(blob[8 : 8 + size])
            k = int(header["k"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LogprobsFormatError(f"token log-probabilities with a bad header: {exc}") from None
        body = blob[8 + size :]
        per_token = 8 + 8 * k
        if k < 0 or len(body) % per_token:
            raise LogprobsFormatError("token log-probabilities of a wrong length")
        n = len(body) // per_token
        arrays = []
        offset = 0
        for code, count in (("i", n), ("f", n), ("i", n * k), ("f", n * k)):
            part = array(code)
            part.frombytes(body[offset : offset + 4 * count])
            if sys.byteorder != "little":
                part.byteswap()
            arrays.append(part)
            offset += 4 * count
        tokens, logprobs, top_ids, top_lps = arrays
        return cls(
            tuple(int(t) for t in tokens),
            tuple(float(v) for v in logprobs),
            tuple(tuple(int(t) for t in top_ids[i * k : (i + 1) * k]) for i in range(n)),
            tuple(tuple(float(v) for v in top_lps[i * k : (i + 1) * k]) for i in range(n)),
            k,
            str(header.get("after", "processors")),
            tuple(str(p) for p in header.get("processors", [])),
        )

    @classmethod
    def _from_bytes_with_texts(cls, blob: bytes) -> TokenLogprobs:
        """WLP2 (see the module's docstring)."""
        header, body = _header(blob)
        try:
            k, n, count = int(header["k"]), int(header["n"]), int(header["texts"])
            ids, width = bool(header["ids"]), int(header["width"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LogprobsFormatError(f"token log-probabilities with a bad header: {exc}") from None
        if k < 0 or n < 0 or count < 0 or width not in (2, 4):
            raise LogprobsFormatError("token log-probabilities with a bad header")
        code = "H" if width == 2 else "I"
        reader = _Reader(body)
        tokens = reader.take("i", n) if ids else array("i", [UNKNOWN_ID] * n)
        logprobs = reader.take("f", n)
        top_ids = reader.take("i", n * k) if ids else array("i", [UNKNOWN_ID] * (n * k))
        top_lps = reader.take("f", n * k)
        index, top_index = reader.take(code, n), reader.take(code, n * k)
        lengths = reader.take(code, count)
        data = reader.rest(sum(lengths))
        table, start = [], 0
        for length in lengths:
            try:
                table.append(data[start : start + length].decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError:
                raise LogprobsFormatError("token log-probabilities with a bad text") from None
            start += length
        if any(i >= count for i in index) or any(i >= count for i in top_index):
            raise LogprobsFormatError("token log-probabilities with a text out of range")
        return cls(
            tuple(int(t) for t in tokens),
            tuple(float(v) for v in logprobs),
            tuple(tuple(int(t) for t in top_ids[i * k : (i + 1) * k]) for i in range(n)),
            tuple(tuple(float(v) for v in top_lps[i * k : (i + 1) * k]) for i in range(n)),
            k,
            str(header.get("after", "server")),
            tuple(str(p) for p in header.get("processors", [])),
            tuple(table[i] for i in index),
            tuple(tuple(table[j] for j in top_index[i * k : (i + 1) * k]) for i in range(n)),
        )


def _header(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """A blob's JSON header and what follows it."""
    (size,) = struct.unpack("<I", blob[4:8])
    try:
        header = json.loads(blob[8 : 8 + size])
    except ValueError as exc:
        raise LogprobsFormatError(f"token log-probabilities with a bad header: {exc}") from None
    if not isinstance(header, dict):
        raise LogprobsFormatError("token log-probabilities with a bad header")
    return header, blob[8 + size :]


class _Reader:
    """Reads consecutive little-endian arrays off a body, refusing to read past its end."""

    def __init__(self, body: bytes):
        self.body, self.offset = body, 0

    def take(self, code: str, count: int) -> array[Any]:
        part = array(code)
        size = part.itemsize * count
        if count < 0 or self.offset + size > len(self.body):
            raise LogprobsFormatError("token log-probabilities of a wrong length")
        part.frombytes(self.body[self.offset : self.offset + size])
        if sys.byteorder != "little":
            part.byteswap()
        self.offset += size
        return part

    def rest(self, size: int) -> bytes:
        if self.offset + size != len(self.body):
            raise LogprobsFormatError("token log-probabilities of a wrong length")
        return self.body[self.offset :]


def _padded(values: Sequence[T], k: int, fill: T) -> list[T]:
    """A step's alternatives as exactly k values (a vocabulary smaller than k is padded)."""
    return list(values[:k]) + [fill] * (k - len(values))
