"""Parsing JSON that someone else wrote: a model's answer, a server's reply, an uploaded row.

Python's decoder recurses once per nesting level, so `[[[[…` a hundred thousand levels deep
(a few hundred kilobytes) raises RecursionError, which no `except json.JSONDecodeError`
handler expects and which would surface as "unexpected RecursionError". `loads` turns it into
a JSONDecodeError that says how deep is too deep, so every caller's existing handling of bad
JSON covers it too.
"""

from __future__ import annotations

import json
from typing import Any


class TooDeepError(json.JSONDecodeError):
    """JSON nested past the decoder's recursion limit; a JSONDecodeError for every caller that
    only needs "bad JSON", and its own type for those that name the depth (template inputs)."""


def loads(text: str | bytes) -> Any:
    """`json.loads`, with nesting too deep for the decoder reported as a JSONDecodeError."""
    try:
        return json.loads(text)
    except RecursionError:
        document = text.decode(errors="replace") if isinstance(text, bytes) else text
        raise TooDeepError(
            "nested too deeply to read (arrays and objects within each other)", document, 0
        ) from None
