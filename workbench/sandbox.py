"""The Jinja sandbox prompt templates render in: Jinja's own sandbox, with every render bounded.

Jinja's `ImmutableSandboxedEnvironment` keeps a template away from Python's internals, but lets
it do unbounded work: `'a' * 10**9`, `'x'|center(10**9)`, `7 ** 10**7`, two nested loops over
`range(99999)`, a macro that calls itself twice per level. The app renders saved prompts in its
previews, so one such file would stall every visitor. Here every render runs under a budget, and
crossing it raises TemplateLimitError naming the limit. The limits sit far above any real prompt
(README, "Prompt files"):

- MAX_TEXT characters: the output, the text of any block or macro, and any one value the template
  makes. A value's size is what it prints as (a list: its items and punctuation), so `[x, x]`
  nested forty deep cannot hold a value that prints as a terabyte.
- MAX_DIGITS digits in a number.
- MAX_STEPS steps: loop iterations, calls and filters. Each step also checks the clock against
  MAX_SECONDS, the backstop for work no count sees.
- MAX_MADE characters of new values along the way, so a loop cannot pile up fresh strings (a
  `map('upper')` feeding `join`) faster than the steps are counted.
- MAX_TOKENS pieces of Jinja syntax, so that parsing and compiling a template stay quick.

Operations that expand (`*`, `**`, `+`, `%`, `center`, `indent`, `join`, `replace`, `format`,
`lipsum`, `tojson(indent)`, …) are sized *before* they run, so nothing oversized is allocated; all
other results are checked right after (they are at most a small multiple of their inputs). The
two filters whose time grows faster than their text (`wordwrap` breaking a long word, `pprint` of
a deep value) are priced before they run too, since no step is counted inside one call.

Where the checks sit: operators go through the sandbox's `call_binop` (all are intercepted),
calls through `call`, filters through wrappers. Three constructs Jinja compiles to plain Python,
so the syntax tree is rewritten before compiling: a loop's iterable becomes `loop_items(…)`
(counts iterations), `a ~ b` becomes `join_values(a, b)`, and a list, tuple or dict written in the
template becomes `held(…)` (sized). `finalize` sees every `{{ … }}`, and `concat` (Jinja's hook
for joining output) joins the output and the text of every macro, `{% set %}` and `{% filter %}`
block, which Jinja collects in a list first.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import itertools
import json
import math
import pprint
import re
import time
import types
from collections import OrderedDict
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Set,
    ValuesView,
)
from typing import Any

from jinja2 import StrictUndefined, Template, nodes, pass_environment
from jinja2.exceptions import TemplateSyntaxError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Namespace, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape

from .errors import TemplateLimitError

MAX_TEXT = 1_000_000
MAX_DIGITS = 4_300  # Python's own limit for turning a number into text
MAX_STEPS = 100_000
MAX_SECONDS = 2.0
MAX_MADE = 10 * MAX_TEXT
MAX_TOKENS = 20_000
_MAX_BITS = int(MAX_DIGITS * math.log2(10))


class TemplateTooLarge(TemplateSyntaxError):
    """A template refused before it renders: too much syntax, or nested too deeply to compile.
    Its line is 0 when no one line is to blame.

    A TemplateSyntaxError, so code that already handles a template that does not compile (the
    Compose page's variable list) handles this too; the parser turns it into TemplateLimitError.
    """


# --- the budget of one render ----------------------------------------------------------------


class _Budget:
    __slots__ = ("deadline", "made", "sizes", "steps")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_SECONDS
        self.steps = 0
        self.made = 0
        # Sizes of containers already measured, so a loop that reads one big value many times
        # measures it once. Holding the container keeps its id from being reused; a few hundred
        # entries bound the memo itself.
        self.sizes: OrderedDict[int, tuple[object, int]] = OrderedDict()


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


@contextlib.contextmanager
def budget() -> Iterator[None]:
    """A fresh budget for the work inside: one render, or one compile.

    A context variable, so the threads of the app's sessions each have their own.
    """
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _step() -> None:
    b = _BUDGET.get()
    b.steps += 1
    if b.steps > MAX_STEPS:
        raise TemplateLimitError(
            f"template takes more than {MAX_STEPS:,} steps (loop iterations, calls and filters; "
            "the limit for one render)"
        )
    if time.monotonic() > b.deadline:
        raise TemplateLimitError(
            f"template takes more than {MAX_SECONDS:g} seconds to render (the limit for one render)"
        )


def _made(value: Any) -> None:
    """Count a new value: its characters if it is text, its slots if it is a container."""
    size = len(value) if isinstance(value, str | bytes | list | tuple | dict) else 1
    b = _BUDGET.get()
    b.made += size
    if b.made > MAX_MADE:
        raise TemplateLimitError(
            f"template makes more than {MAX_MADE:,} characters of values along the way "
            "(the limit for one render)"
        )


def too_long(where: str) -> TemplateLimitError:
    return TemplateLimitError(
        f"template makes more than {MAX_TEXT:,} characters of text (the limit for one prompt) "
        f"in {where}"
    )


def _too_big_number(where: str) -> TemplateLimitError:
    return TemplateLimitError(
        f"template computes a number of more than {MAX_DIGITS:,} digits (the limit for a number) "
        f"in {where}"
    )


def _need(size: int, where: str) -> None:
    if size > MAX_TEXT:
        raise too_long(where)


def _too_slow(copies: int, per_second: float, where: str) -> None:
    """Refuse, before it starts, a filter that would copy text for longer than a render may take
    (at `per_second` characters, a cautious rate): it runs inside one call, where no step is
    counted and the clock is not read."""
    if copies > MAX_SECONDS * per_second:
        raise TemplateLimitError(
            f"template takes more than {MAX_SECONDS:g} seconds to render (the limit for one "
            f"render) in {where}"
        )


# --- sizes -----------------------------------------------------------------------------------


def measure(value: Any) -> int:
    """About how many characters `value` prints as, counted no further than just past MAX_TEXT.

    Text counts its characters; a number its digits; a list, tuple, set or mapping its items plus
    four characters each for quotes and punctuation. Other objects (macros, loop variables) print
    as a short name. Raises TemplateLimitError for a number longer than MAX_DIGITS.
    """
    b = _BUDGET.get(None)
    return _measure(value, b.sizes if b is not None else OrderedDict())


def _measure(value: Any, memo: OrderedDict[int, tuple[object, int]]) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        bits = value.bit_length()
        if bits > _MAX_BITS:
            raise _too_big_number("a value")
        return bits * 30103 // 100000 + 2
    items: Iterable[Any]
    if isinstance(value, Namespace):  # mutable ({% set ns.x = … %}): never memoised
        attrs: dict[str, Any] = object.__getattribute__(value, "_Namespace__attrs")
        return _measure_items(attrs.items(), memo)
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple | Set | KeysView | ValuesView | ItemsView):
        items = value
    else:
        return 16
    hit = memo.get(id(value))
    if hit is not None and hit[0] is value:
        memo.move_to_end(id(value))
        return hit[1]
    total = _measure_items(items, memo)
    if total > 256:
        memo[id(value)] = (value, total)
        if len(memo) > 512:
            memo.popitem(last=False)
    return total


def _measure_items(items: Iterable[Any], memo: OrderedDict[int, tuple[object, int]]) -> int:
    total = 2
    for item in items:
        total += 4 + _measure(item, memo)  # quotes, comma and space
        if total > MAX_TEXT:
            return MAX_TEXT + 1
    return total


def _check(value: Any, where: str) -> Any:
    """A value the template just made: refuse it if it is too big, count it, and pass it on."""
    if isinstance(value, str | bytes):
        _need(len(value), where)
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > _MAX_BITS:
            raise _too_big_number(where)
    elif measure(value) > MAX_TEXT:
        raise too_long(where)
    _made(value)
    return value


def _describe(value: Any) -> str:
    """A value as the error message shows it: short values as written, others by their size."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() <= 64:
            return str(value)
        return f"<a number of about {value.bit_length() * 30103 // 100000:,} digits>"
    if isinstance(value, str):
        return repr(value) if len(value) <= 20 else f"<text of {len(value):,} characters>"
    return f"<{type(value).__name__}>"


def _depth(value: Any) -> int:
    """How deep lists, tuples, sets and mappings nest in `value` (0 for anything else).

    Visits each item once per path to it: within the text limit that is a bounded number.
    """
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    if isinstance(value, Mapping):
        children: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple | Set | KeysView | ValuesView | ItemsView):
        children = value
    else:
        return 0
    return 1 + max((_depth(child) for child in children), default=0)


def _int(value: Any) -> int:
    """An argument used as a size; anything else is left for the operation itself to refuse."""
    return value if isinstance(value, int) else 0


# --- estimates of operations that expand -----------------------------------------------------

_PRINTF_SPEC = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?"
    r"(?P<kind>.)?",
    re.S,
)


def _printf_size(template: str | bytes, values: Any) -> int:
    """Longest text `template % values` can make: its own text, every value, every width."""
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    mapping = values if isinstance(values, Mapping) else None
    args: tuple[Any, ...] = ()
    if mapping is None:
        args = values if isinstance(values, tuple) else (values,)
    star = max((abs(a) for a in args if isinstance(a, int)), default=0)
    total = len(text) + sum(measure(a) for a in args)
    for spec in _PRINTF_SPEC.finditer(text):
        if spec["kind"] == "%":
            continue
        for part in (spec["width"], spec["precision"]):
            if part == "*":
                total += star
            elif part:
                total += int(part) if len(part) <= 9 else MAX_TEXT + 1
        if mapping is not None and spec["key"] is not None:
            total += measure(mapping.get(spec["key"]))
    return total


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    kind = str if isinstance(text, str) else bytes if isinstance(text, bytes) else None
    if kind is None or not isinstance(old, kind) or not isinstance(new, kind):
        return 0  # the call refuses these itself
    hits: int = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


_EXPANDING_METHODS = {
    "center",
    "ljust",
    "rjust",
    "zfill",
    "expandtabs",
    "replace",
    "join",
    "translate",
    "to_bytes",
}


def _before_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Size a method of text or a number that can expand, before it runs.

    Returns the arguments to call with: `join`'s iterable is read into a list first, so that it
    can be measured without being used up.
    """
    name = getattr(obj, "__name__", None)
    owner = getattr(obj, "__self__", None)
    if name not in _EXPANDING_METHODS or not isinstance(owner, str | bytes | int):
        return args
    try:
        bound = inspect.signature(obj).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return args  # the call itself says what is wrong
    bound.apply_defaults()
    a = bound.arguments
    where = f"{name}()"
    if isinstance(owner, int):
        if name == "to_bytes":
            _need(_int(a.get("length")), where)
        return args
    if name == "join" and not kwargs and len(args) == 1:
        items = list(args[0])
        _need(
            sum(len(i) if isinstance(i, str | bytes) else 0 for i in items)
            + max(len(items) - 1, 0) * len(owner),
            where,
        )
        return (items,)
    size = _text_method_size(owner, name, a)
    if size is not None:
        _need(size, where)
    return args


def _text_method_size(owner: str | bytes, name: str, a: Mapping[str, Any]) -> int | None:
    """The longest result `owner.<name>(…)` can make with arguments `a`, for the methods of
    text that expand other than `join`; None for any other."""
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(owner), _int(a.get("width")))
    if name == "expandtabs":
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        return len(owner) + tabs * max(_int(a.get("tabsize")), 0)
    if name == "replace":
        return _replaced_size(owner, a.get("old"), a.get("new"), a.get("count"))
    if name == "translate" and isinstance(owner, str):
        table = a.get("table")
        longest = 1
        if isinstance(table, Mapping):
            longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        return len(owner) * max(longest, 1)
    return None


_SEQUENCES = (str, bytes, list, tuple)


def _repeated_size(sequence: Any, times: int) -> int:
    if isinstance(sequence, str | bytes):
        return len(sequence) * max(times, 0)
    return 2 + (measure(sequence) - 2) * max(times, 0)  # one pair of brackets in all


def _before_binop(operator: str, left: Any, right: Any, where: str) -> None:
    """Size `**`, `*`, `+` and `%`, the operators whose result can dwarf their operands."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > _MAX_BITS:
            raise _too_big_number(where)
    elif operator == "*" and ints:
        if left.bit_length() + right.bit_length() > _MAX_BITS + 1:
            raise _too_big_number(where)
    elif operator == "*" and isinstance(left, int) and isinstance(right, _SEQUENCES):
        _need(_repeated_size(right, left), where)
    elif operator == "*" and isinstance(right, int) and isinstance(left, _SEQUENCES):
        _need(_repeated_size(left, right), where)
    elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        _need(measure(left) + measure(right), where)
    elif operator == "%" and isinstance(left, str | bytes):
        _need(_printf_size(left, right), where)


# --- filters and globals -------------------------------------------------------------------

_BREAKS = re.compile(r"[\s-]+")
_WORDS = re.compile(r"\S+")


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# Each filter that can expand far beyond its input, sized from its bound arguments before it
# runs (`where` names it in a refusal).


def _size_center(a: Mapping[str, Any], where: str) -> None:
    _need(max(measure(a["value"]), _int(a["width"])), f"|center({_describe(a['width'])})")


def _size_indent(a: Mapping[str, Any], where: str) -> None:
    width = a["width"]
    step = len(width) if isinstance(width, str) else _int(width)
    text = _as_text(a["s"])
    _need(len(text) + (text.count("\n") + 1) * step, f"|indent({_describe(width)})")


def _size_wordwrap(a: Mapping[str, Any], where: str) -> None:
    text = _as_text(a["s"])
    width = max(_int(a["width"]), 1)
    wrap = a["wrapstring"]
    if wrap is not None and len(_as_text(wrap)) > 1:
        breaks = len(text) // width + 1 + sum(1 for _ in _BREAKS.finditer(text))
        _need(len(text) + breaks * len(_as_text(wrap)), where)
    if a["break_long_words"]:  # textwrap copies what is left of a word at each break
        lengths = [m.end() - m.start() for m in _WORDS.finditer(text)]
        copies = sum(n * n for n in lengths if n > width) // (2 * width)
        _too_slow(
            copies,
            1e9,  # memmove: about ten times that here
            f"|wordwrap({width}) of words of up to {max(lengths, default=0):,} characters",
        )


def _size_format(a: Mapping[str, Any], where: str) -> None:
    if isinstance(a["value"], str):
        _need(_printf_size(a["value"], a["kwargs"] or a["args"]), where)


def _size_replace(a: Mapping[str, Any], where: str) -> None:
    count = a["count"]
    _need(
        _replaced_size(
            _as_text(a["s"]),
            _as_text(a["old"]),
            _as_text(a["new"]),
            -1 if count is None else count,
        ),
        where,
    )


def _size_batch(a: Mapping[str, Any], where: str) -> None:
    if a["fill_with"] is not None:
        _need(_int(a["linecount"]) * (measure(a["fill_with"]) + 2), where)


def _size_slice(a: Mapping[str, Any], where: str) -> None:
    fill = 0 if a["fill_with"] is None else measure(a["fill_with"]) + 2
    _need(_int(a["slices"]) * (4 + fill), f"|slice({_describe(a['slices'])})")


def _size_tojson(a: Mapping[str, Any], where: str) -> None:
    indent = a["indent"]
    if indent is None:
        return
    _need(len(indent) if isinstance(indent, str) else _int(indent), where)
    total = 0
    # The pure-Python encoder writes piece by piece: count, and stop before it is all made.
    for piece in json.JSONEncoder(sort_keys=True, indent=indent).iterencode(a["value"]):
        total += len(piece)
        if total > MAX_TEXT:
            raise too_long(where)


def _size_urlize(a: Mapping[str, Any], where: str) -> None:
    extra = len(_as_text(a["target"] or "")) + len(_as_text(a["rel"] or ""))
    if extra > 100:  # each link repeats target and rel
        text = _as_text(a["value"])
        _need(3 * len(text) + sum(1 for _ in _WORDS.finditer(text)) * extra, where)


_FILTER_SIZES: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    "center": _size_center,
    "indent": _size_indent,
    "wordwrap": _size_wordwrap,
    "format": _size_format,
    "replace": _size_replace,
    "batch": _size_batch,
    "slice": _size_slice,
    "tojson": _size_tojson,
    "urlize": _size_urlize,
}


def _before_filter(name: str, a: Mapping[str, Any]) -> None:
    """Size the filters that can expand far beyond their input, before they run."""
    _FILTER_SIZES[name](a, f"|{name}")


def _join_filter(original: Callable[..., str]) -> Callable[..., str]:
    """`join` measures its separator times its items before joining; a generator is read once."""

    @functools.wraps(original)
    def join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> str:
        items = value if isinstance(value, list | tuple) else list(value)
        _need(max(len(items) - 1, 0) * len(_as_text(d)), "|join")
        return original(eval_ctx, items, d, attribute)

    return join


@pass_environment
def _sum_filter(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's `sum`, but lists and tuples are chained in one pass rather than added pairwise,
    which takes time in the square of their number inside one uninterruptible builtin call."""
    items = list(iterable)
    if attribute is not None:
        items = list(map(make_attrgetter(environment, attribute), items))
    if isinstance(start, list | tuple) and all(type(i) is type(start) for i in items):
        _need(measure(start) + sum(measure(i) for i in items), "|sum")
        return type(start)(itertools.chain(start, *items))
    return sum(items, start)


class _CountingWriter:
    """A stream that refuses more than MAX_TEXT characters, for pprint to write into."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.total = 0

    def write(self, text: str) -> int:
        self.total += len(text)
        if self.total > MAX_TEXT:
            raise too_long("|pprint")
        self.parts.append(text)
        return len(text)


def _pprint_filter(value: Any) -> str:
    """Jinja's `pprint` (`pprint.pformat`), written through a counting stream: a long text deep
    inside a structure is printed as many lines, each indented by its depth. At each level it
    prints everything below again to see whether it fits on one line: time in the square of
    the depth."""
    depth = _depth(value)
    _too_slow(measure(value) * (depth + 1) ** 2, 1e8, f"|pprint of a value nested {depth} deep")
    stream = _CountingWriter()
    pprint.PrettyPrinter(stream=stream).pprint(value)  # type: ignore[arg-type]
    return "".join(stream.parts).removesuffix("\n")


def _load_filter(value: Any) -> Any:
    """promptfoo's `load` filter (its Nunjucks has it: `JSON.parse`): JSON text to its value,
    so `(style | load).tone` reads a field of a JSON var. A pure function, bounded like any
    filter: its input is already within the limits, a value nested past Python's stack is
    TOO_DEEP, the parsed value is sized by the filter wrapper. A number, true/false or null
    passes through (JSON.parse reads them the same); a list or mapping is refused, as
    JSON.parse refuses an object."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"load parses JSON text, and this value is {_describe(value)} already: drop '| load'"
        )

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(value, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"load: the value is not JSON ({exc})") from None
    except ValueError as exc:  # NaN, Infinity; a number past Python's digit limit
        raise ValueError(f"load: {exc}") from None


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's `lipsum`, made one paragraph at a time and stopped past the limit."""
    where = f"lipsum(n={_describe(n)}, max={_describe(max)})"
    _need(_int(max) * 2, where)  # one paragraph: up to `max` words of two characters or more
    _need(_int(n) * 10, where)  # each paragraph is at least ten characters, as counted below
    paragraphs: list[str] = []
    total = 0
    for _ in range(n):
        paragraph = generate_lorem_ipsum(1, False, min, max)
        total += len(paragraph) + 9
        _need(total, where)
        paragraphs.append(paragraph)
    if not html:
        return "\n\n".join(paragraphs)
    return Markup("\n".join(f"<p>{escape(p)}</p>" for p in paragraphs))


def _bounded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)
    # Jinja's filters with an async variant (`slice`, `list`, …) take the evaluation context
    # first without declaring it: their signature is the plain function's.
    passed = getattr(original, "jinja_pass_arg", None) is not None
    declared = getattr(inspect.unwrap(original), "jinja_pass_arg", None) is not None
    skip = 1 if passed and not declared else 0

    @functools.wraps(original)  # keeps Jinja's pass_context / pass_environment marker
    def run(*args: Any, **kwargs: Any) -> Any:
        _step()
        try:
            bound = signature.bind(*args[skip:], **kwargs)
        except TypeError:
            pass  # the filter itself says what is wrong
        else:
            bound.apply_defaults()
            _before_filter(name, bound.arguments)
        return _check(original(*args, **kwargs), f"|{name}")

    @functools.wraps(original)
    def run_plain(*args: Any, **kwargs: Any) -> Any:
        _step()
        return _check(original(*args, **kwargs), f"|{name}")

    return run if name in _FILTER_SIZES else run_plain


class _BoundedFormatter(SandboxedFormatter):
    """`str.format` in the sandbox, refusing widths past the limit and counting what it writes."""

    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._written = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in re.findall(r"\d+", format_spec):
            _need(int(number) if len(number) <= 9 else MAX_TEXT + 1, f"format {format_spec!r}")
        text = super().format_field(value, format_spec)
        self._written += len(text)
        _need(self._written, "format()")
        return text


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


# --- the environment -------------------------------------------------------------------------


class _BoundedNamespace(Namespace):
    """`namespace()`, whose attributes together stay within the limit: `{% set ns.x = … %}`
    assigns without any call or operator, so it is checked here."""

    def __setitem__(self, name: str, value: Any) -> None:
        attrs: dict[str, Any] = object.__getattribute__(self, "_Namespace__attrs")
        _need(measure({**attrs, name: value}), f"namespace attribute {name!r}")
        super().__setitem__(name, value)


class _Counted:
    """A loop's iterable: each iteration is a step."""

    __slots__ = ("_items",)

    def __init__(self, items: Any) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            _step()
            yield item

    def __len__(self) -> int:  # loop.length, loop.last: a TypeError makes Jinja count instead
        return len(self._items)


def _held(value: Any) -> Any:
    return _check(value, "a list or mapping written in the template")


def _bounded_join(pieces: Iterable[str], where: str) -> str:
    """Join text, refusing past the limit before anything is joined."""
    parts: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        _need(total, where)
        parts.append(piece)
    return "".join(parts)


def _join_values(*values: Any) -> str:
    """`a ~ b ~ c`: Jinja's `str_join`, stopped past the limit."""
    joined = _bounded_join((str(value) for value in values), "'~'")
    return _check(joined, "'~'")  # type: ignore[no-any-return]


def _concat(pieces: Iterable[str]) -> str:
    """Join the output, or a block's text, refusing past the limit before anything is joined."""
    return _bounded_join(pieces, "the output")


def _finalize(value: Any) -> str:
    """Every `{{ … }}`: the text of a value that is not text already is new, and counted."""
    if type(value) is str:
        return value
    text = str(value)
    _need(len(text), "a {{ … }} expression")
    _made(text)
    return text


_HELPERS = ("loop_items", "held", "join_values")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every operator, call, filter and loop under the budget."""

    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])
    loop_items: Callable[[Any], _Counted]
    held: Callable[[Any], Any]
    join_values: Callable[..., str]

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.concat = _concat  # type: ignore[method-assign]
        self.loop_items = _Counted
        self.held = _held
        self.join_values = _join_values
        self.globals["lipsum"] = _lipsum
        self.globals["namespace"] = _BoundedNamespace
        filters = dict(self.filters)
        filters["join"] = _join_filter(filters["join"])
        filters["sum"] = _sum_filter
        filters["pprint"] = _pprint_filter
        filters["load"] = _load_filter  # promptfoo's one addition to Nunjucks (see _load_filter)
        self.filters = {name: _bounded_filter(name, f) for name, f in filters.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        where = f"{_describe(left)} {operator} {_describe(right)}"
        _before_binop(operator, left, right, where)
        return _check(super().call_binop(context, operator, left, right), where)

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if any(__obj is getattr(__self, name) for name in _HELPERS):
            return __obj(*args)
        _step()
        if isinstance(__obj, LoopContext) and args:  # a recursive loop: loop(item.children)
            args = (_Counted(args[0]), *args[1:])
        # Inside loops and blocks Jinja passes its own scope along; the callee never sees it.
        given = {k: v for k, v in kwargs.items() if k not in ("_loop_vars", "_block_vars")}
        args = _before_call(__obj, args, given)
        result = super().call(__context, __obj, *args, **kwargs)
        return _check(result, f"{getattr(__obj, '__name__', 'a call')}()")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's own wrapper for `str.format` and `str.format_map`, with a bounded formatter."""
        if not isinstance(
            value, types.MethodType | types.BuiltinMethodType
        ) or value.__name__ not in ("format", "format_map"):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            formatter: SandboxedFormatter
            if isinstance(f_self, Markup):
                formatter = _BoundedEscapeFormatter(self, escape=f_self.escape)
            else:
                formatter = _BoundedFormatter(self)
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)


# Prompty's renderer: ImmutableSandboxedEnvironment with keep_trailing_newline and otherwise the
# defaults (no trim_blocks), so whitespace comes out the same. StrictUndefined is ours.
ENV = BoundedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


# --- parsing and compiling -------------------------------------------------------------------


def parse(source: str) -> nodes.Template:
    """Parse a template, refusing one too large to parse and compile quickly.

    The tokens are counted first (lexing stops at the limit), because Jinja's parser and
    Python's compiler take seconds and a gigabyte on a file of nothing but `{{ x }}`.
    """
    for count, (lineno, _, _) in enumerate(ENV.lex(source), 1):
        if count > MAX_TOKENS:
            raise TemplateTooLarge(
                f"template is too long: more than {MAX_TOKENS:,} pieces of Jinja syntax "
                "(tags, names, operators, text between tags; the limit for one template)",
                lineno,
            )
    try:
        return ENV.parse(source)
    except RecursionError:
        raise TemplateTooLarge(TOO_DEEP, 0) from None  # no line: Python's stack ran out


TOO_DEEP = (
    "template nests too deeply (brackets, blocks or macros inside each other past Python's "
    "recursion limit)"
)


class _Rewrite(NodeTransformer):
    """Route what Jinja compiles to plain Python (loops, `~`, literals) through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _helper("loop_items", node.iter, lineno=node.lineno)  # type: ignore[arg-type]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _helper("join_values", *node.nodes, lineno=node.lineno)

    def _literal(self, node: nodes.List | nodes.Tuple | nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":  # `for a, b in …` assigns to a tuple
            return node
        return _helper("held", node, lineno=node.lineno)

    visit_List = visit_Tuple = visit_Dict = _literal


def _helper(name: str, *args: nodes.Expr, lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), list(args), [], None, None, lineno=lineno)
    call.set_environment(ENV)
    return call


def compile_template(source: str) -> Template:
    """Compile a template for bounded rendering: parsed afresh, rewritten, compiled."""
    tree = parse(source)
    with budget():  # Jinja folds constant expressions while compiling: same limits
        try:
            rewritten = _Rewrite().visit(tree)
            return ENV.from_string(rewritten)
        except RecursionError:
            raise TemplateTooLarge(TOO_DEEP, 0) from None  # no line: Python's stack ran out
        except SyntaxError as exc:  # Python's own limits: 20 nested loops, 100 nested blocks
            raise TemplateTooLarge(
                f"template nests loops or blocks too deeply to compile ({exc.msg})", 0
            ) from None
