"""How numbers are worded: cached and batched latencies, means, revisions, plurals, clipping."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from workbench import wording
from workbench.backends.base import REMOTE_PREFIX


@dataclass(frozen=True)
class Out:
    latency_s: float | None = 8.35
    completion_tokens: int | None = 10
    cached: bool = False
    batch_size: int | None = 1
    backend: str = "transformers"


def test_a_generated_answer_shows_its_own_time_and_rate() -> None:
    assert wording.latency_text(Out(latency_s=2.0)) == "2.00 s"
    assert wording.tokens_per_s_text(Out(latency_s=2.0)) == "5.0"


def test_a_cached_answer_names_its_time_as_the_originals() -> None:
    out = Out(cached=True)
    assert wording.latency_text(out) == "cached (original 8.35 s)"
    assert wording.tokens_per_s_text(out) == "cached"


def test_a_batched_row_names_its_batch() -> None:
    out = Out(latency_s=2.1, batch_size=8)
    assert wording.latency_text(out) == "batch of 8, 2.10 s"
    assert wording.tokens_per_s_text(out) == "4.8 (batch of 8)"


def test_a_server_row_names_the_requests_it_ran_beside() -> None:
    out = Out(latency_s=2.1, batch_size=4, backend=REMOTE_PREFIX)
    assert wording.latency_text(out) == "4 requests at once, 2.10 s"
    assert wording.REMOTE_BACKEND == REMOTE_PREFIX


def test_no_latency_is_a_dash() -> None:
    assert wording.latency_text(Out(latency_s=None)) == "–"
    assert wording.tokens_per_s_text(Out(latency_s=None)) == "–"


def test_means_leave_cached_answers_out() -> None:
    outs = [Out(latency_s=1.0), Out(latency_s=3.0), Out(latency_s=8.35, cached=True)]
    assert wording.mean_latency(outs) == 2.0
    assert wording.mean_latency([Out(cached=True)]) is None


@pytest.mark.parametrize(
    ("revision", "shown"),
    [
        ("gguf-sha256-" + "0123456789abcdef" * 4, "gguf-sha256-0123456789ab"),
        ("a" * 40, "a" * 12),  # a git commit
        ("unknown", "unknown"),
        ("main", "main"),
        ("v1.2-tag", "v1.2-tag"),
    ],
)
def test_revisions_keep_their_distinguishing_digits(revision: str, shown: str) -> None:
    assert wording.short_revision(revision) == shown


def test_plurals() -> None:
    assert wording.plural(1, "row") == "1 row"
    assert wording.plural(0, "row") == "0 rows"
    assert wording.plural(2_000, "row") == "2,000 rows"
    assert wording.plural(1, "output is", "outputs are") == "1 output is"
    assert wording.plural(3, "output is", "outputs are") == "3 outputs are"


def test_clip_cuts_at_a_word_with_an_ellipsis() -> None:
    assert wording.clip("short enough", 20) == "short enough"
    assert (
        wording.clip("front matter nests more than thirty levels", 25) == "front matter nests more…"
    )
    assert wording.clip("x" * 30, 10) == "x" * 9 + "…"  # one long word: cut where it must be
