"""A local model's chat template, read from its folder and rendered without transformers.

Deciding whether an answer is already stored needs the exact text the model reads, and for a
chat prompt that is the chat template applied to the messages. transformers' tokenizer does
that, but importing it imports torch (about 3 s, more than the whole cached answer should
take). The template is a Jinja file in the model folder, and transformers renders it in an
environment of a few lines (`transformers.utils.chat_template_utils`): `ChatTemplate` reads the
same files and renders in the same environment, with the same arguments, for the messages a
prompt file produces (plain role/content strings, no tools or documents).

That the two agree is not taken on trust. The first time a model's tokenizer is loaded, its
template, the special tokens the template reads and a set of probe conversations are rendered
both ways (`agrees_with_tokenizer`); only then is a record written under the storage folder
(`TemplateChecks`), and only a model with a record is rendered without the tokenizer. The record
is keyed by the model's folder and revision, the template and tokens, and the installed
transformers and Jinja, so a changed model or an upgrade checks again. A model whose files leave
the template in doubt (several named templates, a template in an unexpected form) always goes
through the tokenizer.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
import jinja2.nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Bump when `render` changes, so that records made by an older renderer are not trusted.
RENDERER_VERSION = 1
SPECIAL_TOKENS = (  # transformers' SPECIAL_TOKENS_ATTRIBUTES: what apply_chat_template passes
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
TEMPLATE_FILE = "chat_template.jinja"
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # transformers' marker for continuing a message


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template (empty: the model has none) and the special tokens it reads."""

    source: str
    special_tokens: tuple[tuple[str, str], ...] = ()

    @property
    def hash(self) -> str:
        """What ModelInfo.chat_template_hash holds (and the cache key includes)."""
        return template_hash(self.source)

    def render(self, messages: Sequence[Mapping[str, str]], *, prefill: bool) -> str:
        """The text `tokenizer.apply_chat_template(messages, tokenize=False,
        add_generation_prompt=not prefill, continue_final_message=prefill)` returns."""
        if not messages:
            raise ValueError(
                "Cannot apply chat template to an empty conversation. Provide at least one message."
            )
        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        final = ""
        if prefill:
            final = chat[-1].get("content")  # type: ignore[assignment]
            if final is None:
                raise ValueError(
                    'continue_final_message is set but the final message has no "content" to '
                    "continue!"
                )
            if "content" not in self.source:
                raise ValueError(
                    'continue_final_message is set to "content" but this is not an accepted '
                    "field in the chat_template"
                )
            chat[-1]["content"] = final + _CONTINUE_TAG
        text = _compile(self.source).render(
            messages=chat,
            tools=None,
            documents=None,
            add_generation_prompt=not prefill,
            **dict(self.special_tokens),
        )
        if prefill:
            if final.strip() not in text or _CONTINUE_TAG.strip() not in text:
                raise ValueError(
                    "continue_final_message is set but the final message does not appear in the "
                    "chat after applying the chat template! This can happen if the chat template "
                    "deletes portions of the final message. Please verify the chat template and "
                    "final message in your chat to ensure they are compatible."
                    f"Final message to continue: {final.strip()}\nRendered chat:\n{text}"
                )
            at = text.rindex(_CONTINUE_TAG.strip())
            if text[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
                text = text[:at]
            else:  # the template trimmed the message's trailing spacing
                text = text[:at].rstrip()
        return text


def template_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def read_chat_template(folder: Path) -> ChatTemplate | None:
    """The chat template the tokenizer in `folder` would load, or None when its files leave that
    in doubt (only loading the tokenizer can tell then).

    As transformers does: `chat_template.jinja` wins over `chat_template` in
    tokenizer_config.json; special tokens come from tokenizer_config.json, or from the legacy
    special_tokens_map.json when the config has no `added_tokens_decoder`.
    """
    if (folder / "additional_chat_templates").exists() or (folder / "chat_template.json").exists():
        return None
    try:
        config = _read_json(folder / "tokenizer_config.json")
        legacy = (
            _read_json(folder / "special_tokens_map.json")
            if "added_tokens_decoder" not in config
            else {}
        )
        jinja_file = folder / TEMPLATE_FILE
        source = jinja_file.read_text(encoding="utf-8") if jinja_file.exists() else None
    except (OSError, ValueError):
        return None
    if source is None:
        source = config.get("chat_template")
        if source is not None and not isinstance(source, str):
            return None  # a list of named templates
    tokens: dict[str, str] = {}
    for name in SPECIAL_TOKENS:
        value = legacy.get(name, config.get(name))
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            tokens[name] = value
        elif value is not None:
            return None
    source = source or ""
    read = template_variables(source) if source else frozenset()
    return ChatTemplate(source, tuple(sorted((k, v) for k, v in tokens.items() if k in read)))


def template_variables(source: str) -> frozenset[str]:
    """Names a template reads that it does not set itself."""
    try:
        return frozenset(jinja2.meta.find_undeclared_variables(_environment().parse(source)))
    except TemplateError:
        return frozenset()


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


# --- the environment transformers renders chat templates in -------------------------------------


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}…{% endgeneration %}`: transformers marks assistant text with it for
    its assistant-token masks; rendered, the block is just its body."""

    tags = {"generation"}  # noqa: RUF012 - as Jinja declares it

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        call = self.call_method("_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return str(caller())


class _TemplateDict:
    """`dict(...)` in a template, without the type object itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace(...)` refusing underscore-prefixed attributes, as transformers' does."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # Jinja's signature trick: no `self`
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise SecurityError(
                "Chat templates cannot store underscore-prefixed attributes on a namespace, but "
                f"got {name!r}. Please rename the attribute."
            )


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


# --- checking against the tokenizer, and remembering that it agreed -------------------------------

# Conversations rendered both ways before a template is trusted: with and without a system
# message, several turns, a continued (prefilled) answer with and without trailing space, and
# content with spacing, braces, markup and non-ASCII text.
PROBES: tuple[tuple[tuple[tuple[str, str], ...], bool], ...] = (
    ((("user", "Hello"),), False),
    ((("system", "You are terse."), ("user", "Say hi.")), False),
    (
        (
            ("system", "Answer in French."),
            ("user", "Good morning"),
            ("assistant", "Bonjour"),
            ("user", "  See you {{ tomorrow }}\n\n"),
        ),
        False,
    ),
    ((("user", 'Reply in JSON: {"a": 1} <b>é ✓ 日本</b>'),), False),
    ((("user", "Name a colour."), ("assistant", "The colour is")), True),
    ((("system", "Be brief."), ("user", "Count:"), ("assistant", "1, 2, ")), True),
)


def agrees_with_tokenizer(template: ChatTemplate, tokenizer: Any) -> bool:
    """Whether `template` renders exactly as `tokenizer.apply_chat_template` does."""
    loaded = tokenizer.chat_template
    if not isinstance(loaded, (str, type(None))) or (loaded or "") != template.source:
        return False
    if not template.source:
        return True
    read = template_variables(template.source)
    theirs = {k: v for k, v in tokenizer.special_tokens_map.items() if k in read}
    if theirs != dict(template.special_tokens):
        return False
    for turns, prefill in PROBES:
        messages = [{"role": role, "content": content} for role, content in turns]
        if _outcome(template.render, messages, prefill=prefill) != _outcome(
            tokenizer.apply_chat_template,
            messages,
            tokenize=False,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
        ):
            return False
    return True


def _outcome(render: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    try:
        return ("text", str(render(*args, **kwargs)))
    except Exception as exc:  # a template may refuse a conversation: both must refuse it
        return (type(exc).__name__, str(exc))


class TemplateChecks:
    """Records, one file each, of (model, template, software) that rendered as the tokenizer."""

    def __init__(self, folder: Path):
        self.folder = folder

    def key(self, model_path: Path, revision: str, template: ChatTemplate) -> str:
        payload = {
            "renderer": RENDERER_VERSION,
            "software": _software(),
            "model": str(model_path),
            "revision": revision,
            "template": template.source,
            "special_tokens": [list(t) for t in template.special_tokens],
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def known(self, key: str) -> bool:
        return (self.folder / f"{key}.json").exists()

    def record(self, key: str, model_path: Path, revision: str) -> None:
        """Remember a check that passed; a folder we cannot write to just means checking again."""
        note = {"model": str(model_path), "revision": revision, "checked_at": _now()}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                json.dump(note, f)
            os.replace(tmp, self.folder / f"{key}.json")
        except OSError:
            pass


@functools.cache
def _software() -> list[str]:
    """The installed Jinja and transformers, without importing transformers: its version file
    and the two modules that load and render chat templates, by size and modification time."""
    parts = [f"jinja2 {jinja2.__version__}"]
    spec = importlib.util.find_spec("transformers")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        for name in ("__init__.py", "tokenization_utils_base.py", "utils/chat_template_utils.py"):
            try:
                st = (root / name).stat()
                parts.append(f"{root / name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{root / name}:missing")
    return parts


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
