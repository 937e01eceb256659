"""Prompt files: parse a `.prompty` file, check its Jinja template, render it to messages.

A prompt file is YAML front matter between `---` lines and a body that is one Jinja template with
`system:` / `user:` / `assistant:` lines starting each message, as in the Prompty format. We follow
Prompty's rendering exactly (the same Jinja settings, the same role-line grammar, the same
default role and trimming) so a file renders to the same messages here and in any Prompty tool.

Three things we do on top, all for safety:
- the template is compiled in a sandbox with `StrictUndefined`, and a static pass refuses any
  access to underscore attributes (`''.__class__`, `cycler.__init__`) before anything renders;
- every render is bounded in time and memory (`sandbox`), and so is reading the front matter
  (`frontmatter`): a file that would stall the app is refused, naming the limit it crossed;
- role lines are recognised only in the template's own text, never inside a variable's value, so a
  dataset row that contains "system:" on a line cannot forge a message. Before compiling, each
  role line becomes a marker carrying a random token; after rendering only marker lines split
  messages (Prompty's strict mode does the same with a nonce, but raises instead).
"""

from __future__ import annotations

import difflib
import functools
import re
import secrets
import types
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

from . import frontmatter, json_text, sandbox
from .choices import ChoicesError, parse_choices
from .errors import (
    MissingVariablesError,
    PromptFileError,
    TemplateLimitError,
    UnsafeTemplateError,
)
from .sandbox import ENV as _ENV

Mode = Literal["chat", "completion"]
MODES: tuple[Mode, ...] = ("chat", "completion")
# Prompty's apiType values: `responses` (OpenAI's Responses API) runs as chat here; embedding and
# image prompts make no text and are out of scope.
API_TYPES: dict[str, Mode] = {"chat": "chat", "completion": "completion", "responses": "chat"}
OUT_OF_SCOPE_API_TYPES = ("embedding", "image")
ROLES = ("system", "user", "assistant", "developer")
MAX_FILE_BYTES = 1024 * 1024
# A library key: what `name` becomes (see `slug`), and what names a prompt on a command line.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MAX_DISPLAY_NAME = 200
# Where a version sits in its history, not what it says: written on export under `metadata`,
# stripped on import, and never part of the content hash. Our version number has its own key:
# Prompty's `metadata.version` is free text ("2.0") that belongs to the file's content.
HISTORY_VERSION_KEY = "workbench_version"
VOLATILE_METADATA = (HISTORY_VERSION_KEY, "note", "labels")
# Exports before `workbench_version` carried the number as `metadata.version`: a whole number
# there, with no `workbench_version` beside it, is read as that (see `history_of`).
LEGACY_VERSION_KEY = "version"
TEMPLATE_FORMATS = ("jinja2", "nunjucks")

# Prompty's role-line grammar: `user:` or `user[name="Alice"]:`, optionally after `#`.
ROLE_LINE = re.compile(
    r"(?i)^\s*#?\s*(" + "|".join(ROLES) + r")"
    r"(\[(?:\w++\s*+=\s*+(?:\"[^\"]*\"|[^\",\]]*+)\s*+,?+\s*+)+\])?\s*:\s*$"
)
_HEADER_LIKE = re.compile(r"^\s*#?\s*([A-Za-z][A-Za-z_-]*)\s*(\[[^\]]*\])?\s*:\s*$")
_UNSUPPORTED_ROLES = {"tool", "function", "human", "ai", "bot", "model"}
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_INPUT_KINDS = {"string", "number", "integer", "float", "boolean", "array", "object", "thread"}
_OUT_OF_SCOPE_KINDS = {"image", "audio", "file"}
# `${env:NAME}`, `${env:NAME:default}`, `${file:path}`: Prompty resolves these when it loads a
# file. The workbench keeps them as written and never resolves them, so a stored prompt can never
# capture a secret from the app's environment or a file beside it.
REFERENCE = re.compile(r"^\$\{(env|file):[^}]*\}$", re.IGNORECASE)
# nunjucks syntax the workbench's Jinja does not share, each with what to write instead.
_NUNJUCKS_ONLY: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\{%-?\s*elseif\b"), "{% elseif %} is nunjucks-only: write {% elif %}"),
    (
        re.compile(r"\{%-?\s*(asyncEach|asyncAll|ifAsync|endeach|endall)\b"),
        "{% asyncEach %}, {% asyncAll %} and {% ifAsync %} are nunjucks-only: use for and if",
    ),
    (
        re.compile(r"\|\s*dump\b"),
        "the filter 'dump' is nunjucks-only: write 'tojson'",
    ),
    (
        re.compile(r"\|\s*nl2br\b"),
        "the filter 'nl2br' is nunjucks-only (an HTML filter): drop it",
    ),
    (
        re.compile(r"(\{\{|\{%)[^}\n]*(?<![\w.])r/[^/\n]+/[gimy]*"),
        "regular-expression literals (r/…/) are nunjucks-only: keep the pattern as a string",
    ),
)


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: str = "string"
    description: str = ""
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class Section:
    """A role line in the template text and the template lines that follow it."""

    role: str
    line: int  # file line of the role line (0 when the body starts without one)
    text: str


@dataclass(frozen=True)
class Rendered:
    prompt: str
    mode: Mode
    messages: tuple[Message, ...]
    variables: Mapping[str, Any]

    @property
    def text(self) -> str:
        """What a completion-mode prompt feeds the model: the messages' text, role lines dropped."""
        return "\n\n".join(m.content for m in self.messages)


@dataclass(frozen=True)
class PromptFile:
    """A parsed, checked prompt file. Constructing one means the template compiled and is safe."""

    front: Mapping[str, Any]
    body: str
    source: str = "prompt"
    body_line: int = 1  # file line on which the body starts
    front_text: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    # --- front matter views -------------------------------------------------------------
    @property
    def name(self) -> str:
        """The library key: the file's name as a slug (`My Prompt` → `my-prompt`)."""
        return slug(self.display_name)

    @property
    def display_name(self) -> str:
        """The name as written (Prompty's `displayName` when the file has one)."""
        shown = self.front.get("displayName")
        return str(shown) if isinstance(shown, str) and shown.strip() else str(self.front["name"])

    @property
    def description(self) -> str:
        return str(self.front.get("description") or "")

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.front.get("metadata") or {}
        return meta if isinstance(meta, Mapping) else {}

    @property
    def mode(self) -> Mode:
        model = self.front.get("model") or {}
        api = model.get("apiType", "chat") if isinstance(model, Mapping) else "chat"
        return API_TYPES.get(str(api), "chat")

    @property
    def model_id(self) -> str | None:
        """The model the file names (`model: gpt-4` or `model: {id: gpt-4}`), if any."""
        model = self.front.get("model")
        if isinstance(model, Mapping):
            model = model.get("id")
        return model if isinstance(model, str) and model and not is_reference(model) else None

    @property
    def template_format(self) -> str:
        return _template_format(self.front) or "jinja2"

    @property
    def options(self) -> Mapping[str, Any]:
        model = self.front.get("model") or {}
        opts = model.get("options") if isinstance(model, Mapping) else None
        return opts if isinstance(opts, Mapping) else {}

    @property
    def techniques(self) -> tuple[str, ...]:
        value = self.metadata.get("technique")
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return tuple(str(v) for v in value)

    @property
    def inputs(self) -> dict[str, InputSpec]:
        if "inputs" not in self._cache:
            self._cache["inputs"] = _input_specs(self.front.get("inputs"))
        return dict(self._cache["inputs"])

    # --- template analysis ----------------------------------------------------------------
    @property
    def _lead_lines(self) -> int:
        """Prompty drops the body's leading whitespace before rendering: the lines lost."""
        return self.body[: len(self.body) - len(self.body.lstrip())].count("\n")

    def file_line(self, template_line: int) -> int:
        """File line of a line of the compiled template."""
        return template_line + self.body_line - 1 + self._lead_lines

    def template_line(self, file_line: int | None) -> int | None:
        """The line of the body as written (1 = the line after the closing `---`) that a file
        line falls on; None for the front matter. File lines are what the CLI and lint report
        (a person has the file open); the app's template box shows the body alone."""
        if file_line is None or file_line < self.body_line:
            return None
        return file_line - self.body_line + 1

    def _locate(self, exc: PromptFileError) -> None:
        exc.template_line = self.template_line(exc.line)

    @property
    def _marker(self) -> str:
        if "marker" not in self._cache:
            self._cache["marker"] = secrets.token_hex(8)
        return str(self._cache["marker"])

    @property
    def template_source(self) -> str:
        """The body as compiled: leading whitespace dropped, role lines replaced by markers."""
        if "source" not in self._cache:
            lines = []
            for line in self.body.lstrip().split("\n"):
                m = ROLE_LINE.match(line.strip())
                if m:
                    line = f"{_MARK_OPEN}{self._marker}:{m.group(1).lower()}{_MARK_CLOSE}"
                lines.append(line)
            self._cache["source"] = "\n".join(lines)
        return str(self._cache["source"])

    @property
    def ast(self) -> nodes.Template:
        if "ast" not in self._cache:
            self._cache["ast"] = sandbox.parse(self.template_source)
        return self._cache["ast"]  # type: ignore[no-any-return]

    def template_variables(self) -> dict[str, int]:
        """Variables the template reads from outside, each with the file line of first use."""
        if "variables" not in self._cache:
            self._cache["variables"] = self._find_variables()
        return dict(self._cache["variables"])

    def _find_variables(self) -> dict[str, int]:
        from jinja2 import meta

        names = meta.find_undeclared_variables(self.ast) - set(_ENV.globals)
        first: dict[str, int] = {}
        for node in self.ast.find_all(nodes.Name):
            if node.name in names and node.ctx == "load" and node.name not in first:
                first[node.name] = self.file_line(node.lineno)
        return {name: first.get(name, self.body_line) for name in sorted(names)}

    def sections(self) -> list[Section]:
        """Role sections as written in the template (before rendering)."""
        out: list[Section] = []
        role, start, buf = "system", 0, list[str]()
        for offset, line in enumerate(self.body.splitlines()):
            m = ROLE_LINE.match(line.strip())
            if m:
                if buf or start:
                    out.append(Section(role, start, "\n".join(buf)))
                role, start, buf = m.group(1).lower(), self.body_line + offset, []
            else:
                buf.append(line)
        if buf or start:
            out.append(Section(role, start, "\n".join(buf)))
        return out

    def line_of(self, *path: str) -> int | None:
        """File line of a front-matter key such as ('inputs', 'text'), when it can be found."""
        if "front_node" not in self._cache:
            self._cache["front_node"] = frontmatter.compose(self.front_text or "{}")
        return _front_line(self._cache["front_node"], path)

    # --- text forms -------------------------------------------------------------------------
    def canonical_text(self) -> str:
        """The version's content: normalised front matter without history fields, and the body.

        Two files that say the same thing have the same canonical text, so its hash identifies
        a version and export → import → export is byte-identical.
        """
        return dump_prompt(strip_volatile(self.front), self.body)

    def with_history(self, version: int, note: str, labels: list[str]) -> str:
        """File text for export: the content plus where it sits in its prompt's history."""
        front = strip_volatile(self.front)
        meta = dict(front.get("metadata") or {})
        meta[HISTORY_VERSION_KEY] = version
        if note:
            meta["note"] = note
        if labels:
            meta["labels"] = sorted(labels)
        front["metadata"] = meta
        return dump_prompt(front, self.body)

    @property
    def compiled(self) -> Any:
        """The template compiled for bounded rendering (see `sandbox`)."""
        if "compiled" not in self._cache:
            self._cache["compiled"] = sandbox.compile_template(self.template_source)
        return self._cache["compiled"]

    # --- rendering ----------------------------------------------------------------------------
    def resolve_variables(self, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with the given values, coerced to the declared kinds.

        Raises MissingVariablesError naming every variable the template needs and nobody gave.
        """
        given = dict(variables or {})
        specs = self.inputs
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            if name in given:
                values[name] = coerce_value(name, spec.kind, given[name])
            elif spec.has_default:
                values[name] = spec.default
            elif spec.kind == "thread":
                values[name] = []  # no conversation: Prompty inserts nothing either
            if spec.kind == "thread" and name in values:
                thread_turns(name, values[name])  # each turn a role and its text
        for name, value in given.items():
            values.setdefault(name, value)
        for name, value in values.items():
            _check_size(name, value, self.source)
            if _has_marker_chars(value):
                raise PromptFileError(
                    f"variable {name!r} contains reserved characters U+E000/U+E001",
                    source=self.source,
                )
        needed = set(self.template_variables()) | {
            n for n, s in specs.items() if not s.has_default and n not in values
        }
        missing = sorted(n for n in needed if n not in values)
        if missing:
            raise MissingVariablesError(missing, prompt=self.name)
        return values

    def render(self, variables: Mapping[str, Any] | None = None) -> Rendered:
        """Render to messages, within the limits of `sandbox`: every renderer comes here."""
        try:
            return self._render(variables)
        except PromptFileError as exc:
            self._locate(exc)
            raise

    def _render(self, variables: Mapping[str, Any] | None) -> Rendered:
        values = self.resolve_variables(variables)
        threads = {
            name: thread_turns(name, values[name])
            for name, spec in self.inputs.items()
            if spec.kind == "thread" and name in values
        }
        thread_mark = f"{_MARK_OPEN}{self._marker}#"
        # A conversation goes into the template as a marker, replaced by its turns once the
        # text is split into messages (as Prompty does with its nonce).
        render_values = {**values, **{n: f"{thread_mark}{n}{_MARK_CLOSE}" for n in threads}}
        try:
            with sandbox.budget():
                text = self.compiled.render(**render_values)
        except TemplateLimitError as exc:
            raise TemplateLimitError(
                exc.problem, source=self.source, line=self._error_line(exc)
            ) from None
        except RecursionError as exc:
            raise TemplateLimitError(
                sandbox.TOO_DEEP, source=self.source, line=self._error_line(exc)
            ) from None
        except SecurityError as exc:
            raise UnsafeTemplateError(
                f"refused: {exc}", source=self.source, line=self._error_line(exc)
            ) from None
        except UndefinedError as exc:
            raise PromptFileError(
                f"{exc.message} (check the variable's name and its value's fields)",
                source=self.source,
                line=self._error_line(exc),
            ) from None
        except TemplateError as exc:
            raise PromptFileError(
                str(exc), source=self.source, line=self._error_line(exc)
            ) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:  # e.g. "{0}".format()
            raise PromptFileError(
                f"rendering failed: {exc}", source=self.source, line=self._error_line(exc)
            ) from None
        messages = tuple(_split_messages(text, f"{_MARK_OPEN}{self._marker}:"))
        if threads:
            messages = tuple(_insert_threads(messages, thread_mark, threads))
        if threads and any(thread_mark in m.content for m in messages):
            raise PromptFileError(
                "a conversation (kind: thread) input is inserted whole, with {{ name }} on its "
                "own: a filter, a loop or an index over it has no text to work on",
                source=self.source,
            )
        if any(_MARK_OPEN in m.content for m in messages):
            raise PromptFileError(
                "a role line ended up inside a message after rendering: keep each role line "
                "(system:, user:, assistant:) on a line of its own, and don't let whitespace "
                "control ({{ x -}}, {%- … %}) or a filter block swallow the line break before it",
                source=self.source,
            )
        return Rendered(prompt=self.name, mode=self.mode, messages=messages, variables=values)

    def _error_line(self, exc: BaseException) -> int | None:
        tb: types.TracebackType | None = exc.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<template>":
                line = tb.tb_lineno
            tb = tb.tb_next
        return None if line is None else self.file_line(line)


# --- variables ----------------------------------------------------------------------------


def _check_size(name: str, value: Any, source: str) -> None:
    """A variable's value within the limit for one prompt, before anything walks or renders it."""
    try:
        size = sandbox.measure(value)
    except RecursionError:
        raise TemplateLimitError(_nests_too_deeply(name), source=source) from None
    if size > sandbox.MAX_TEXT:
        raise TemplateLimitError(
            f"variable {name!r} is more than {sandbox.MAX_TEXT:,} characters (the limit for one "
            "prompt)",
            source=source,
        )


def _nests_too_deeply(name: str) -> str:
    return (
        f"variable {name!r} nests too deeply (values inside values past Python's recursion limit)"
    )


def _split_messages(text: str, marker: str) -> Iterator[Message]:
    """Prompty's parser on marker lines: default role system, each message's outer newlines trimmed.

    Lines are split on "\\n" only, so a value's own line breaks (\\r\\n, U+2028) reach the model
    unchanged.
    """
    role, buf = "system", list[str]()
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(marker) and stripped.endswith(_MARK_CLOSE):
            if buf:
                yield Message(role, "\n".join(buf).strip("\n"))
            role, buf = stripped[len(marker) : -1], []
            continue
        buf.append(line)
    if buf:
        yield Message(role, "\n".join(buf).strip("\n"))


def _insert_threads(
    messages: tuple[Message, ...], mark: str, threads: Mapping[str, list[Message]]
) -> Iterator[Message]:
    """Each conversation marker replaced by its turns, as Prompty does: the message around it is
    cut there, each side stripped of whitespace (and dropped when nothing is left). With no
    marker anywhere, the conversations follow the last message."""
    pattern = re.compile(re.escape(mark) + r"([A-Za-z_][A-Za-z0-9_]*)" + _MARK_CLOSE)
    found = False
    for message in messages:
        pieces = pattern.split(message.content)
        if len(pieces) == 1:
            yield message
            continue
        found = True
        for i, piece in enumerate(pieces):
            if i % 2:
                yield from threads.get(piece, ())
            elif piece.strip():
                yield Message(message.role, piece.strip())
    if not found:
        for turns in threads.values():
            yield from turns


def thread_turns(name: str, value: Any) -> list[Message]:
    """A conversation value: a list of turns, each `{role, content}` (role `user` if left out)."""
    if not isinstance(value, list | tuple):
        raise PromptFileError(
            f"input {name!r} is a conversation (kind: thread): give a list of turns, each "
            f"{{role, content}}, not {type(value).__name__}"
        )
    turns = []
    for number, turn in enumerate(value, 1):
        role = turn.get("role", "user") if isinstance(turn, Mapping) else None
        content = turn.get("content", "") if isinstance(turn, Mapping) else None
        if role not in ROLES or not isinstance(content, str):
            raise PromptFileError(
                f"input {name!r}, turn {number}: each turn of a conversation is "
                "{role, content} with a role of " + ", ".join(ROLES) + " and text content"
            )
        turns.append(Message(str(role), content))
    return turns


# --- names and references -------------------------------------------------------------------


def is_reference(value: Any) -> bool:
    """`${env:…}` or `${file:…}`, kept as written (see REFERENCE)."""
    return isinstance(value, str) and REFERENCE.match(value) is not None


def slug(name: str) -> str:
    """The library key for a display name: `Shakespearean Writing Prompty` →
    `shakespearean-writing-prompty`, `ExamplePrompt` → `example-prompt`. A name that is a key
    already is its own slug, so every name the library held before keeps its key."""
    if NAME_PATTERN.match(name):
        return name
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)  # camelCase → camel-Case
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    text = re.sub(r"-{2,}", "-", text).lstrip("._-").rstrip("-")
    return text


def _name_problem(name: Any) -> str | None:
    """Why a display name cannot name a prompt, or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return "front matter needs a 'name' (lowercase letters, digits, '-', '_' or '.')"
    if (
        len(name) > MAX_DISPLAY_NAME
        or any(c in name for c in "/\\")
        or any(unicodedata.category(c).startswith("C") for c in name)
        or not NAME_PATTERN.match(slug(name))
    ):
        return (
            f"name {name[:120]!r} is not usable: use letters, digits, spaces, '-', '_' or '.' "
            "(no '/' or '\\'), at most 100 characters once lowercased with '-' for spaces"
        )
    return None


def name_from_source(source: str) -> str:
    """The name a file without one takes: its file name without `.prompty` (`a.zip:x/y.prompty`
    → `y`)."""
    base = source.rsplit(":", 1)[-1].replace("\\", "/").rsplit("/", 1)[-1]
    return base.removesuffix(".prompty") or "prompt"


def _template_format(front: Mapping[str, Any]) -> str | None:
    template = front.get("template")
    fmt = template.get("format") if isinstance(template, Mapping) else template
    if isinstance(fmt, Mapping):
        fmt = fmt.get("kind")
    return None if fmt is None else str(fmt)


# --- history --------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Where an exported file sat in its prompt's history (see VOLATILE_METADATA)."""

    version: int | None = None
    note: str = ""
    labels: tuple[str, ...] = ()


def _legacy_history(meta: Mapping[str, Any]) -> bool:
    """An export written before `workbench_version`: `metadata.version` a whole number."""
    old = meta.get(LEGACY_VERSION_KEY)
    return HISTORY_VERSION_KEY not in meta and isinstance(old, int) and not isinstance(old, bool)


def _history_keys(meta: Mapping[str, Any]) -> tuple[str, ...]:
    if _legacy_history(meta):
        return (LEGACY_VERSION_KEY, "note", "labels")
    return VOLATILE_METADATA


def history_of(front: Mapping[str, Any]) -> History:
    """The history fields of a file's front matter, checked; PromptFileError when one is bad.

    `metadata.workbench_version` is the version number; an older export's whole-number
    `metadata.version` is read the same way. Any other `metadata.version` ("2.0") is content."""
    meta = front.get("metadata")
    if not isinstance(meta, Mapping):
        return History()
    key = LEGACY_VERSION_KEY if _legacy_history(meta) else HISTORY_VERSION_KEY
    version = meta.get(key)
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise PromptFileError(f"metadata.{key} must be a whole number ≥ 1, got {version!r}")
    note = meta.get("note", "")
    if not isinstance(note, str):
        raise PromptFileError("metadata.note must be text")
    labels = meta.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise PromptFileError("metadata.labels must be a list of label names")
    return History(version, note, tuple(labels))


# --- parsing --------------------------------------------------------------------------------


def parse_prompt_bytes(
    data: bytes, source: str = "prompt", *, default_name: str | None = None
) -> PromptFile:
    if len(data) > MAX_FILE_BYTES:
        raise PromptFileError(
            f"file is {len(data) / 1024 / 1024:.1f} MB; prompt files are limited to "
            f"{MAX_FILE_BYTES // 1024} KB",
            source=source,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptFileError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
            source=source,
        ) from None
    return parse_prompt(text, source, default_name=default_name)


def parse_prompt(
    text: str, source: str = "prompt", *, default_name: str | None = None
) -> PromptFile:
    """Parse and check a prompt file; every problem is a PromptFileError with a line number.

    With a `default_name` (a file's name, see `name_from_source`), Prompty's shorthands are read
    too: a file that is all body, empty front matter, or front matter without a name; the name
    is then written into the front matter, so the stored version says which prompt it is."""
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise PromptFileError(f"file is larger than {MAX_FILE_BYTES // 1024} KB", source=source)
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise PromptFileError("the file is empty", source=source)
    if _MARK_OPEN in text or _MARK_CLOSE in text:
        raise PromptFileError("contains reserved characters U+E000/U+E001", source=source)
    lines = text.split("\n")
    if lines[0].strip() != "---" and default_name is not None:
        lines = ["---", "---", *lines]  # all body: Prompty's shorthand for no front matter
        body_shift = -2
    else:
        body_shift = 0
    if lines[0].strip() != "---":
        raise PromptFileError(
            "missing front matter: a prompt file starts with a '---' line, then YAML "
            "(name, description, inputs…), then another '---' line",
            source=source,
            line=1,
        )
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None:
        raise PromptFileError(
            "front matter is not closed: add a '---' line after the YAML", source=source, line=1
        )
    front_text = "\n".join(lines[1:end]) + "\n"
    front = frontmatter.load(front_text, source)
    if front is None:
        front = {}  # `---` then `---`: empty front matter
    if not isinstance(front, dict):
        raise PromptFileError(
            "malformed front matter: expected 'key: value' lines", source=source, line=2
        )
    if default_name is not None and front.get("name") in (None, ""):
        front = {"name": default_name, **{k: v for k, v in front.items() if k != "name"}}
    body = "\n".join(lines[end + 1 :])
    pf = PromptFile(
        front=front,
        body=body,
        source=source,
        body_line=end + 2 + body_shift,
        front_text=front_text,
    )
    try:
        _check_front(pf)
        _check_template(pf)
    except PromptFileError as exc:
        pf._locate(exc)
        raise
    return pf


def _check_front(pf: PromptFile) -> None:
    front, source = pf.front, pf.source

    def fail(problem: str, *path: str) -> None:
        raise PromptFileError(problem, source=source, line=pf.line_of(*path) if path else 2)

    name = front.get("name")
    problem = _name_problem(name)
    if problem is not None:
        fail(problem, *(("name",) if "name" in front else ()))
    model = front.get("model")
    if model is not None and not isinstance(model, dict | str):
        fail("'model' must be a model id (model: gpt-4o) or a mapping (id, apiType…)", "model")
    if isinstance(model, dict):
        api = model.get("apiType", "chat")
        if api in OUT_OF_SCOPE_API_TYPES:
            fail(
                f"model.apiType {api!r}: {api} prompts are out of scope; the workbench runs "
                "text prompts (chat, completion, responses)",
                "model",
                "apiType",
            )
        if api not in API_TYPES:
            fail(
                f"model.apiType {api!r} is not a mode: use 'chat' (chat template), "
                "'completion' (raw text) or 'responses' (run as chat)",
                "model",
                "apiType",
            )
        if "options" in model and not isinstance(model["options"], dict):
            fail("model.options must be a mapping", "model", "options")
    fmt = _template_format(front)
    if fmt is not None and fmt not in TEMPLATE_FORMATS:
        fail(
            f"template format {fmt!r} is not supported: use 'jinja2' (or 'nunjucks' where its "
            "syntax is Jinja's)",
            "template",
        )
    meta = front.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        fail("'metadata' must be a mapping", "metadata")
    if isinstance(meta, dict) and "choices" in meta:
        try:
            parse_choices(meta["choices"])
        except ChoicesError as exc:
            fail(f"metadata.choices: {exc}", "metadata", "choices")
    if isinstance(meta, dict) and "calibrate" in meta:
        if not isinstance(meta["calibrate"], bool):
            fail("metadata.calibrate must be true or false", "metadata", "calibrate")
        if meta["calibrate"] and meta.get("choices") is None:
            fail(
                "metadata.calibrate needs metadata.choices: only scored answer choices are "
                "calibrated",
                "metadata",
                "calibrate",
            )
    raw_inputs = front.get("inputs")
    if raw_inputs is not None and not is_reference(raw_inputs):
        if not isinstance(raw_inputs, dict | list):
            fail("'inputs' must be a mapping of input names", "inputs")
        try:
            _input_specs(raw_inputs)
        except ValueError as exc:
            fail(str(exc), "inputs")


def _check_template(pf: PromptFile) -> None:
    """Refuse, before anything renders, a body that does not parse, reaches for internals, names
    a filter or test Jinja lacks, includes other templates, does not compile, or (chat) has a
    section header that is not a role."""
    if pf.template_format == "nunjucks":
        _check_nunjucks(pf)
    ast = _parsed(pf)
    _check_no_internal_attributes(pf, ast)
    _check_known_filters(pf, ast)
    _check_self_contained(pf, ast)
    _check_compiles(pf)
    if pf.mode == "chat":
        _check_section_headers(pf)


def _check_nunjucks(pf: PromptFile) -> None:
    """A nunjucks body renders through the same Jinja where the two agree; a construct only
    nunjucks has is refused here, by name, rather than as a Jinja syntax error."""
    for offset, line in enumerate(pf.body.split("\n")):
        for pattern, problem in _NUNJUCKS_ONLY:
            if pattern.search(line):
                raise PromptFileError(
                    f"template format nunjucks: {problem}",
                    source=pf.source,
                    line=pf.body_line + offset,
                )


def _parsed(pf: PromptFile) -> nodes.Template:
    """The body's syntax tree; a syntax error says where, with a hint for literal JSON."""
    try:
        return pf.ast
    except sandbox.TemplateTooLarge as exc:
        line = pf.file_line(exc.lineno) if exc.lineno else None
        raise TemplateLimitError(exc.message or "", source=pf.source, line=line) from None
    except TemplateSyntaxError as exc:
        line = pf.file_line(exc.lineno or 1)
        hint = ""
        source_lines = pf.template_source.split("\n")
        text_line = (
            source_lines[exc.lineno - 1] if 0 < (exc.lineno or 0) <= len(source_lines) else ""
        )
        if re.search(r"\{\{\s*[\"'{\[]", text_line) or ("{%" in text_line and ":" in text_line):
            hint = (
                " — this looks like literal JSON or braces: wrap it in {% raw %}…{% endraw %}, "
                "or keep it in an input and insert it with {{ name }} or {{ name | tojson }}"
            )
        raise PromptFileError(
            f"template syntax error: {exc.message}{hint}", source=pf.source, line=line
        ) from None


def _internal_attribute(node: nodes.Node) -> object:
    """The attribute or item `node` reads by a constant name (`x.a`, `x['a']`), or a name
    starting with an underscore given to the `attr` or `map` filter; None when there is none."""
    attr: object = None
    if isinstance(node, nodes.Getattr):
        attr = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        attr = node.arg.value
    elif isinstance(node, nodes.Filter | nodes.Test) and node.name in ("attr", "map"):
        for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
            if isinstance(arg, nodes.Const) and str(arg.value).startswith("_"):
                attr = arg.value
    return attr


def _check_no_internal_attributes(pf: PromptFile, ast: nodes.Template) -> None:
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test)):
        attr = _internal_attribute(node)
        if isinstance(attr, str) and attr.startswith("_"):
            raise UnsafeTemplateError(
                f"refused: the template reaches for the internal attribute {attr!r}; templates "
                "may only read the values they are given",
                source=pf.source,
                line=pf.file_line(node.lineno),
            )


def _check_known_filters(pf: PromptFile, ast: nodes.Template) -> None:
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        known = _ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            close = difflib.get_close_matches(node.name, list(known), n=1)
            raise PromptFileError(
                f"template error: there is no {kind} named {node.name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
                source=pf.source,
                line=pf.file_line(node.lineno),
            )


def _check_self_contained(pf: PromptFile, ast: nodes.Template) -> None:
    for bad in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        raise UnsafeTemplateError(
            "refused: templates cannot include, import or extend other templates",
            source=pf.source,
            line=pf.file_line(bad.lineno),
        )


def _check_compiles(pf: PromptFile) -> None:
    """Compiled now, so a file that cannot compile is never saved."""
    try:
        pf.compiled  # noqa: B018
    except sandbox.TemplateTooLarge as exc:
        raise TemplateLimitError(exc.message or "", source=pf.source) from None
    except TemplateSyntaxError as exc:
        raise PromptFileError(
            f"template syntax error: {exc.message}",
            source=pf.source,
            line=pf.file_line(exc.lineno or 1),
        ) from None


def _check_section_headers(pf: PromptFile) -> None:
    """A chat body's `word:` line that looks meant as a role but is none (`assistent:`)."""
    for offset, text in enumerate(pf.body.splitlines()):
        m = _HEADER_LIKE.match(text)
        if not m or ROLE_LINE.match(text.strip()):
            continue
        word = m.group(1).lower()
        if word in _UNSUPPORTED_ROLES or _near_role(word):
            raise PromptFileError(
                f"unknown section header {text.strip()!r}: sections are "
                + ", ".join(f"'{r}:'" for r in ROLES),
                source=pf.source,
                line=pf.body_line + offset,
            )


def _has_marker_chars(value: Any) -> bool:
    if isinstance(value, str):
        return _MARK_OPEN in value or _MARK_CLOSE in value
    if isinstance(value, Mapping):
        return any(_has_marker_chars(k) or _has_marker_chars(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_marker_chars(v) for v in value)
    return False


def _near_role(word: str) -> bool:
    return bool(difflib.get_close_matches(word, ROLES, n=1, cutoff=0.75))


def _input_specs(raw: Any) -> dict[str, InputSpec]:
    """Prompty accepts a mapping (name: {kind, default…} or name: example) or a list of specs."""
    if raw is None or is_reference(raw):
        return {}  # `inputs: ${file:…}` is kept as written, never read
    items: list[tuple[str, Any]]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = []
        for entry in raw:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ValueError("each entry of 'inputs' needs a 'name'")
            items.append((entry["name"], entry))
    else:
        raise ValueError("'inputs' must be a mapping of input names")
    specs: dict[str, InputSpec] = {}
    for name, value in items:
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ValueError(f"input name {name!r} is not a valid variable name")
        if isinstance(value, dict):
            kind = value.get("kind", "string")
            if kind in _OUT_OF_SCOPE_KINDS:
                raise ValueError(
                    f"input {name!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} input: "
                    "image, audio and file inputs are out of scope (the workbench runs text "
                    "prompts)"
                )
            if kind not in _INPUT_KINDS:
                raise ValueError(
                    f"input {name!r} has unknown kind {kind!r}; use one of "
                    + ", ".join(sorted(_INPUT_KINDS))
                )
            # Prompty applies only `default`; an `example` documents a value but is not used.
            # A default that is an `${env:…}`/`${file:…}` reference is not read (see REFERENCE):
            # the input then has no default, and a run asks for its value.
            default = value.get("default")
            has = default is not None and not is_reference(default)
            if has and kind == "thread":
                try:
                    thread_turns(name, default)
                except PromptFileError as exc:
                    raise ValueError(f"the default of {exc.problem}") from None
            specs[name] = InputSpec(
                name, str(kind), str(value.get("description") or ""), default, has
            )
        else:  # `name: example` shorthand: declared, no default
            specs[name] = InputSpec(name, "string", "", None, False)
    return specs


def coerce_value(name: str, kind: str, value: Any) -> Any:
    """Values typed on a command line or in a CSV arrive as text; make them the declared kind."""
    if not isinstance(value, str) or kind == "string":
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind in ("number", "float"):
            return float(value)
        if kind == "boolean":
            low = value.strip().lower()
            if low in ("true", "yes", "1"):
                return True
            if low in ("false", "no", "0"):
                return False
            raise ValueError(value)
        if kind in ("array", "object", "thread"):
            parsed = json_text.loads(value)
            if not isinstance(parsed, dict if kind == "object" else list):
                raise ValueError(value)
            return parsed
    except (RecursionError, json_text.TooDeepError):
        raise PromptFileError(_nests_too_deeply(name)) from None
    except ValueError:
        raise PromptFileError(
            f"variable {name!r} should be {'an' if kind[0] in 'aeiou' else 'a'} {kind}"
            + (" (JSON)" if kind in ("array", "object", "thread") else "")
            + f", got {value[:60]!r}"
        ) from None
    return value


# --- canonical YAML -----------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_prompt(front: Mapping[str, Any], body: str) -> str:
    text = yaml.dump(
        dict(front),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return f"---\n{text}---\n{body}"


def strip_volatile(front: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(front)
    meta = out.get("metadata")
    if isinstance(meta, Mapping):
        drop = _history_keys(meta)
        kept = {k: v for k, v in meta.items() if k not in drop}
        if kept:
            out["metadata"] = kept
        else:
            del out["metadata"]
    return out


def _front_line(node: yaml.Node | None, path: tuple[str, ...]) -> int | None:
    if node is None or not path:
        return None
    line: int | None = None
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if getattr(k, "value", None) == key:
                line, node = k.start_mark.line + 2, v
                break
        else:
            break
    return line


@functools.lru_cache(maxsize=512)
def parse_cached(text: str, source: str = "prompt") -> PromptFile:
    """Versions never change, so parsing a stored version's text once per process is enough."""
    return parse_prompt(text, source)
