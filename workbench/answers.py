"""What counts as "the same answer": the one place that normalises, extracts and groups answers.

Compare's agreement, the stability report and the self-consistency vote all ask this module, so
"It's positive." and "its positive" are one answer everywhere or nowhere. Normalisation is
SQuAD's (case, punctuation, the articles a/an/the, spacing), the convention answer-matching
metrics use; the exact-match and F1 scorers read it from here too.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import json_text

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


# Every ASCII character _is_punctuation accepts is in string.punctuation, so ASCII text drops
# them in one C-level pass (Compare's grid normalises thousands of answers per redraw).
_DROP_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(
    text: str,
    *,
    case: bool = True,
    punctuation: bool = True,
    articles: bool = True,
    whitespace: bool = True,
) -> str:
    """SQuAD's answer normalisation; each flag turns one step on (all on by default)."""
    if case:
        text = text.lower()
    if punctuation:
        if text.isascii():
            text = text.translate(_DROP_ASCII_PUNCTUATION)
        else:
            text = "".join(ch for ch in text if not _is_punctuation(ch))
    if articles:
        text = _ARTICLES.sub(" ", text)
    if whitespace:
        text = " ".join(text.split())
    return text


def answer_key(answer: str) -> str:
    """The key two answers share exactly when they count as the same answer."""
    return normalise(answer)


def extract_answer(text: str, pattern: str | None = None, field: str | None = None) -> str | None:
    """The answer inside an output: the last match of `pattern` (its first group, else the
    whole match), or `field` of the JSON object in the text, or the whole text stripped.
    None when the pattern or field finds nothing."""
    if pattern:
        matches = list(re.finditer(pattern, text))
        if not matches:
            return None
        last = matches[-1]
        value = last.group(1) if last.groups() else last.group(0)
        return value.strip().rstrip(".").strip() if value is not None else None
    if field:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            return None
        try:
            data = json_text.loads(text[start : end + 1])
        except json.JSONDecodeError:
            return None
        value = data.get(field) if isinstance(data, dict) else None
        return None if value is None else str(value).strip()
    return text.strip()


@dataclass(frozen=True)
class AnswerGroup:
    """Answers that are equal after normalisation; `answer` is their most frequent spelling."""

    answer: str
    key: str
    count: int


def group_answers(answers: Iterable[str | None]) -> list[AnswerGroup]:
    """Groups of equal answers, largest first (ties: the answer seen first wins).

    None (no answer could be extracted) belongs to no group, but still counts as a sample in
    an agreement rate: a version that often gives no usable answer is not stable.
    """
    spellings: dict[str, dict[str, int]] = {}
    for answer in answers:
        if answer is None:
            continue
        forms = spellings.setdefault(answer_key(answer), {})
        forms[answer] = forms.get(answer, 0) + 1
    groups = [
        AnswerGroup(max(forms, key=lambda f: forms[f]), key, sum(forms.values()))
        for key, forms in spellings.items()
    ]
    order = {g.key: i for i, g in enumerate(groups)}
    return sorted(groups, key=lambda g: (-g.count, order[g.key]))


def counts(groups: Sequence[AnswerGroup]) -> dict[str, int]:
    """A vote's counts as stored: each group's spelling and size."""
    return {g.answer: g.count for g in groups}
