"""The shipped sentiment pool (examples/sentiment-{train,dev,test}.csv): loads as `workbench eval`
loads it, balanced per split, and no review in two places.

The splits exist so few-shot optimisation can pick examples on train, choose on dev and report a
held-out test score; a review in two splits (or in sentiment-20.csv, which the README's figures
use) would make those scores look better than they are, so overlap is checked after the same
normalisation a person would apply when reading (case and surrounding spaces).
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import BUILTIN_PROMPTS_DIR, REPO_ROOT

from workbench.datasets import Dataset, read_dataset
from workbench.templates import parse_prompt_bytes

EXAMPLES = REPO_ROOT / "examples"
LABELS = ("Positive", "Negative", "Neutral")
SPLITS = {"train": 75, "dev": 45, "test": 45}


def load(split: str) -> Dataset:
    return read_dataset(EXAMPLES / f"sentiment-{split}.csv")


def key(text: str) -> str:
    return " ".join(text.split()).casefold()


@pytest.mark.parametrize(("split", "rows"), SPLITS.items())
def test_each_split_has_its_rows_and_only_text_and_expected(split: str, rows: int) -> None:
    data = load(split)
    assert data.columns == ("text", "expected")
    assert len(data.rows) == rows
    assert all(row["text"].strip() for row in data.rows)


@pytest.mark.parametrize("split", SPLITS)
def test_each_split_is_balanced_over_the_three_labels(split: str) -> None:
    counts = Counter(row["expected"] for row in load(split).rows)
    assert set(counts) == set(LABELS), f"labels outside {LABELS}: {set(counts) - set(LABELS)}"
    assert len(set(counts.values())) == 1, counts


def test_the_pool_holds_at_least_150_reviews_balanced_overall() -> None:
    counts = Counter(row["expected"] for split in SPLITS for row in load(split).rows)
    assert sum(counts.values()) >= 150
    assert len(set(counts.values())) == 1, counts


def test_no_review_appears_twice_within_or_across_splits_or_in_sentiment_20() -> None:
    seen: dict[str, str] = {}
    for name in (*SPLITS, "20"):
        for row in load(name).rows:
            text = key(row["text"])
            assert text not in seen, f"{row['text']!r} is in sentiment-{seen[text]} and {name}"
            seen[text] = name


@pytest.mark.parametrize("prompt", ["few-shot-sentiment", "few-shot-sentiment-chat"])
def test_no_review_is_one_of_a_builtin_prompts_own_examples(prompt: str) -> None:
    """A row equal to an example the prompt already shows would be answered by copying it."""
    path = BUILTIN_PROMPTS_DIR / f"{prompt}.prompty"
    examples = parse_prompt_bytes(path.read_bytes(), path.name).inputs["examples"].default
    shipped = {key(example["input"]) for example in examples}
    assert len(shipped) == 3
    assert not shipped & {key(row["text"]) for split in SPLITS for row in load(split).rows}
