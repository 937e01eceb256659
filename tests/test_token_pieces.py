"""Token texts for token views: a local backend decodes its own ids; a server cannot."""

from __future__ import annotations

from typing import Any

import pytest
from openai_stub import StubBehaviour, stub_server

from workbench.backends.base import CapabilityError
from workbench.backends.remote import RemoteBackend, ServerSpec
from workbench.config import OpenAISettings

TEXT = "Plain words, then 日本語 and café — with ✓ marks."


def test_pieces_in_sequence_join_to_the_text_and_split_no_character(tiny_backend: Any) -> None:
    ids = tiny_backend.tokenizer.encode(TEXT, add_special_tokens=False)
    pieces = tiny_backend.token_pieces(ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == tiny_backend.tokenizer.decode(ids) == TEXT
    assert not any("\ufffd" in piece for piece in pieces)


def test_an_answer_cut_inside_a_character_keeps_every_byte_it_has(tiny_backend: Any) -> None:
    ids = tiny_backend.tokenizer.encode("日本", add_special_tokens=False)
    cut = ids[:-1]
    assert "".join(tiny_backend.token_pieces(cut)) == tiny_backend.tokenizer.decode(cut)


def test_pieces_alone_decode_each_id_on_its_own(tiny_backend: Any) -> None:
    ids = tiny_backend.tokenizer.encode("one two", add_special_tokens=False)
    alone = tiny_backend.token_pieces(ids, in_sequence=False)
    assert alone == [tiny_backend.tokenizer.decode([i]) for i in ids]


def test_a_server_says_it_cannot_decode_ids() -> None:
    with stub_server(StubBehaviour()) as url:
        backend = RemoteBackend(ServerSpec(url, ""), OpenAISettings(base_url=url))
        with pytest.raises(CapabilityError, match="server"):
            backend.token_pieces([1, 2])


def test_windowed_pieces_equal_pieces_from_whole_prefixes(tiny_backend: Any) -> None:
    """The linear way (short windows) and the plain way (every prefix) agree on random ids."""
    import random

    from workbench.backends.local import _pieces_from_prefixes, _pieces_in_windows

    decode = tiny_backend.tokenizer.decode
    rng = random.Random(7)
    vocab = len(tiny_backend.tokenizer)
    for _ in range(30):
        ids = [rng.randrange(vocab) for _ in range(rng.randint(1, 40))]
        assert _pieces_in_windows(decode, ids) == _pieces_from_prefixes(decode, ids)
