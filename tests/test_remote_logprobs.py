"""Token log-probabilities from OpenAI-compatible servers: the WLP2 format that stores token
texts, the backend asking for them and reading both answer shapes (chat and completion,
streamed and whole), a server that refuses them and one that omits them (said once).

The same against a real server (llama-cpp-python) is in test_remote_llama.py.
"""

from __future__ import annotations

import struct

import pytest

from workbench.logprobs import UNKNOWN_ID, LogprobsFormatError, TokenLogprobs

# --- the stored format ----------------------------------------------------------------------------

SERVER_RECORD = TokenLogprobs.from_texts(
    ["Pos", "itive", "!", " é", "\ufffd"],
    [-0.25, -0.5, -1.5, -2.0, -3.0],
    [
        [("Pos", -0.25), ("Neg", -1.75), ("Neutral", -3.0)],
        [("itive", -0.5), ("ative", -1.0)],
        [("!", -1.5), (".", -1.625), ("", -2.0), (" ", -4.0), ("\n", -5.0), ("x", -9.0)],
        [(" é", -2.0)],
        [],
    ],
)


def test_a_server_record_has_texts_and_unknown_ids_padded_to_k() -> None:
    record = SERVER_RECORD
    assert record.k == 5 and record.after == "server" and record.processors == ()
    assert record.tokens == (UNKNOWN_ID,) * 5
    assert record.top_texts is not None and record.top_texts[1] == ("itive", "ative", "", "", "")
    assert record.top_logprobs[1][2:] == (float("-inf"),) * 3
    assert record.top_texts[2] == ("!", ".", "", " ", "\n")  # kept to k
    assert all(len(step) == 5 for step in record.top_ids)


@pytest.mark.parametrize(
    "record",
    [
        SERVER_RECORD,
        SERVER_RECORD.head(2),
        TokenLogprobs.from_texts([], [], []),
        # texts with ids (a backend that knows both), and odd texts: a lone surrogate from JSON
        TokenLogprobs(
            (5, 9),
            (-0.5, -1.25),
            ((5, 1), (9, 2)),
            ((-0.5, -1.0), (-1.25, -2.5)),
            2,
            "processors",
            ("temperature",),
            ("a", "\ud83d"),
            (("a", "b"), ("\ud83d", "")),
        ),
    ],
    ids=["server", "head", "empty", "with-ids"],
)
def test_wlp2_round_trips(record: TokenLogprobs) -> None:
    blob = record.to_bytes()
    assert blob[:4] == b"WLP2"
    assert TokenLogprobs.from_bytes(blob) == record


def test_wlp1_is_still_written_without_texts_and_read_as_before() -> None:
    record = TokenLogprobs(
        (5, 9),
        (-0.5, -1.25),
        ((5, 1, 2, 3, 4), (7, 9, 1, 2, 3)),
        ((-0.5, -1.0, -2.0, -3.0, float("-inf")), (-0.125, -1.25, -2.5, -3.5, -4.5)),
    )
    blob = record.to_bytes()
    assert blob[:4] == b"WLP1" and len(blob) == len(record.to_bytes())
    back = TokenLogprobs.from_bytes(blob)
    assert back == record and back.texts is None and back.top_texts is None


def test_a_wlp1_blob_written_by_hand_reads() -> None:
    """The bytes the previous version wrote, built here by hand from its documented layout."""
    header = b'{"k":2,"after":"processors","processors":["top_p"]}'
    blob = (
        b"WLP1"
        + struct.pack("<I", len(header))
        + header
        + struct.pack("<i", 42)
        + struct.pack("<f", -0.5)
        + struct.pack("<ii", 42, 7)
        + struct.pack("<ff", -0.5, float("-inf"))
    )
    assert TokenLogprobs.from_bytes(blob) == TokenLogprobs(
        (42,), (-0.5,), ((42, 7),), ((-0.5, float("-inf")),), 2, "processors", ("top_p",)
    )


def test_wlp2_is_compact_each_text_stored_once() -> None:
    """36 bytes a token at k = 5 without ids, plus each distinct text once."""
    words = ["Pos", "itive", "Neg", "ative", "!", ".", " the"]

    def record(steps: int) -> TokenLogprobs:
        return TokenLogprobs.from_texts(
            [words[i % 7] for i in range(steps)],
            [-0.5] * steps,
            [[(words[(i + j) % 7], -1.0 - j) for j in range(5)] for i in range(steps)],
        )

    assert len(record(201).to_bytes()) - len(record(200).to_bytes()) == 36
    assert len(record(200).to_bytes()) < 200 * 36 + 200  # header and 7 texts


@pytest.mark.parametrize(
    "bad",
    [
        b"WLP2",
        b"WLP2\x02\x00\x00\x00{}",
        b"WLP2\x05\x00\x00\x00[1,2]",
        SERVER_RECORD.to_bytes()[:-1],
        SERVER_RECORD.to_bytes() + b"x",
    ],
    ids=["short", "no-fields", "not-an-object", "cut", "trailing"],
)
def test_a_damaged_wlp2_blob_is_refused(bad: bytes) -> None:
    with pytest.raises(LogprobsFormatError):
        TokenLogprobs.from_bytes(bad)


def test_a_text_index_out_of_range_is_refused() -> None:
    blob = bytearray(TokenLogprobs.from_texts(["a"], [-1.0], [[("a", -1.0)]], k=1).to_bytes())
    blob[-4] = 7  # the high byte of the alternative's text index: 1792, of 1 text
    with pytest.raises(LogprobsFormatError):
        TokenLogprobs.from_bytes(bytes(blob))
