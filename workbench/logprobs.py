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
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T", int, float)
DEFAULT_TOP_K = 5
MAGIC = b"WLP1"


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
    # listed in `processors` (an empty list: the model's raw logits, log-softmaxed).
    after: str = "processors"
    processors: tuple[str, ...] = field(default=())

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
        )

    def to_bytes(self) -> bytes:
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

    @classmethod
    def from_bytes(cls, blob: bytes) -> TokenLogprobs:
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


def _padded(values: Sequence[T], k: int, fill: T) -> list[T]:
    """A step's alternatives as exactly k values (a vocabulary smaller than k is padded)."""
    return list(values[:k]) + [fill] * (k - len(values))
