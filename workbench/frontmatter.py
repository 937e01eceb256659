"""A prompt file's YAML front matter, read within fixed bounds.

PyYAML's safe loader makes an alias (`*name`) the same object as its anchor, so nine levels of
nine aliases each, 511 bytes, stand for 387 million values. Loading them is instant; every walk
over the result (lint, the check for reserved characters, rendering a default) then visits each
one, and took minutes. A 20,000-deep `[[[…]]]` exhausts Python's recursion in PyYAML's composer,
and an alias inside its own anchor (`&a [*a]`) makes a list that contains itself.

So this loader counts while it composes: nesting at most MAX_DEPTH levels, and at most
MAX_VALUES values and MAX_CHARS characters of text, with every alias counted as the values it
stands for — no more than a file could hold written out, so every later walk stays proportional
to a file we accept. Aliases stay allowed within that budget: other YAML tools write them, and
PyYAML's dumper (our export) writes one when an object appears twice in the front matter.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from .errors import PromptFileError, TemplateLimitError

MAX_DEPTH = 50
MAX_VALUES = 10_000
MAX_CHARS = 1_000_000
MAX_DIGITS = 4_300  # Python's own limit for reading a decimal number


class _LimitReached(yaml.MarkedYAMLError):
    pass


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _Events(CParser):
        """libyaml scans and parses: five times faster than PyYAML's Python scanner, the most
        of the time an import of 4,000 versions spent. It is iterative, so depth costs it no
        recursion; composing (where the counting happens) stays in Python below."""

else:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Events(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _BoundedLoader(Composer, _Events, SafeConstructor, Resolver):
    """A safe loader, counting depth, values and text (aliases included) as it composes."""

    def __init__(self, stream: str) -> None:
        _Events.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._values = 0
        self._chars = 0
        # What each finished anchored node stands for: (values, characters). An alias to an
        # anchor that is not finished yet is an alias inside its own value.
        self._weights: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()
        mark: Any = event.start_mark  # typed as either PyYAML's or libyaml's mark; used alike
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            weight = self._weights.get(id(node))
            if weight is None:
                raise _LimitReached(
                    problem=f"has the alias *{event.anchor} inside its own anchor's value; "
                    "a value cannot contain itself",
                    problem_mark=mark,
                )
            self._count(*weight, mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitReached(
                problem=f"nests more than {MAX_DEPTH} levels deep (the limit for front matter)",
                problem_mark=mark,
            )
        values, chars = self._values, self._chars
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0, mark)
        if getattr(event, "anchor", None) is not None:
            self._weights[id(node)] = (self._values - values, self._chars - chars)
        return node

    def _count(self, values: int, chars: int, mark: Any) -> None:
        self._values += values
        self._chars += chars
        alias = "counting each alias (*name) as the values it stands for"
        if self._values > MAX_VALUES:
            raise _LimitReached(
                problem=f"holds more than {MAX_VALUES:,} values, {alias} "
                "(the limit for front matter)",
                problem_mark=mark,
            )
        if self._chars > MAX_CHARS:
            raise _LimitReached(
                problem=f"holds more than {MAX_CHARS:,} characters of text, {alias} "
                "(the limit for front matter)",
                problem_mark=mark,
            )


def _construct_int(loader: _BoundedLoader, node: yaml.ScalarNode) -> Any:
    """Refuse a number too long for Python to read (or, in hexadecimal, to print) as text."""
    if len(node.value) > MAX_DIGITS:
        raise ConstructorError(
            None,
            None,
            f"a number of more than {MAX_DIGITS:,} digits; quote it to keep it as text",
            node.start_mark,
        )
    return loader.construct_yaml_int(node)


# The stubs accept only PyYAML's own loader classes here; ours is one in all but name.
_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)  # type: ignore[type-var]


def load(front_text: str, source: str) -> Any:
    """The front matter's data; every problem is a PromptFileError with its file line."""
    loader = _BoundedLoader(front_text)
    try:
        return loader.get_single_data()
    except _LimitReached as exc:
        mark = exc.problem_mark
        raise TemplateLimitError(
            f"front matter {exc.problem}",
            source=source,
            line=_file_line(mark),
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem:  # libyaml stops at 1,000 levels, before we count
            raise TemplateLimitError(
                f"front matter nests more than {MAX_DEPTH} levels deep "
                "(the limit for front matter)",
                source=source,
                line=_file_line(mark),
            ) from None
        raise PromptFileError(
            f"malformed front matter: {problem}",
            source=source,
            line=_file_line(mark),
        ) from None
    except ValueError as exc:  # a date that does not exist: `2024-13-45`
        raise PromptFileError(f"malformed front matter: {exc}", source=source) from None
    finally:
        loader.dispose()


def _file_line(mark: Any) -> int | None:
    """The file line of a mark in the front matter, which starts on the file's second line."""
    return None if mark is None else mark.line + 2  # marks count lines from 0


def compose(front_text: str) -> yaml.Node | None:
    """The front matter's node tree (for file lines of keys), or None if it does not load."""
    loader = _BoundedLoader(front_text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
