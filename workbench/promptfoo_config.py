"""promptfoo configs: read a `promptfooconfig.yaml` and run it as workbench evaluations.

People arrive with promptfoo test suites. This module reads promptfoo's config format —
`prompts`, `providers`, `tests` (inline, YAML/JSON files, CSV files with `__expected` columns),
`defaultTest`, `description` — and runs every prompt × provider × test the way promptfoo does,
as ordinary stored runs and scores.

Everything is decided before any model loads (`load_config`): every file read, every prompt
parsed and rendered for every test, every assertion checked, every provider mapped. What the
workbench does not do (assertions that run code, hosted-only providers, red-team configs,
output transforms) is refused as a whole, with the list of all of it; nothing is run halfway.
With `skip_unsupported` the rest runs instead, skipping whole providers, prompts and tests
(never a part of a test), and the list says what was left out. Keys that change nothing about
the verdicts (sharing, output paths, tags…) are ignored and named.

Providers (promptfoo's ids, mapped here):
- `echo`: promptfoo's own; the output is the rendered prompt. No model loads.
- `workbench:default` (or `workbench`): the workbench's default model ($WORKBENCH_MODEL, else the
  built-in one); `workbench:SPEC` any model spec `--model` takes (a folder, `openai:M@URL`).
- `openai:chat:M`, `openai:completion:M`, `openai:M` with `config.apiBaseUrl` (or `apiHost`):
  that OpenAI-compatible server (vLLM, llama.cpp, Ollama…). Without one it would be
  api.openai.com, a hosted service: refused.
- `ollama:chat:M`, `ollama:completion:M`, `ollama:M`: Ollama's OpenAI-compatible API at
  $OLLAMA_BASE_URL (default http://localhost:11434).
- `llama:M`, `llama.cpp:M`, `localai:…`: a llama.cpp server at $LLAMA_BASE_URL (default
  http://localhost:8080), completion prompts; LocalAI at $LOCALAI_BASE_URL likewise.
- anything else (anthropic:, bedrock:, vertex:, azure:, http…, file://provider.js, exec:,
  python:) needs a hosted service or runs code: refused with the reason.

A provider's `prompts:` (labels or ids; `name*` matches the labels and ids it begins, `file`
the prompts of `file: …`, as promptfoo's `doesPromptRefMatch`) limits it to those prompts; a
name that matches no prompt is an error, not a silent empty run. `--model SPEC` runs in place
of all the providers, and runs the prompts they ran between them: the union of their lists, or
every prompt when one of them has none (a prompt written for one provider, `llama_prompt`, is
still tried; a prompt no provider ran is not). A prompt no provider runs is left out, in a note.

Prompts render in the workbench's sandboxed Jinja, which shares Nunjucks's syntax for what
promptfoo prompts use. promptfoo's one built-in addition to Nunjucks, the `load` filter
(`JSON.parse`: `{{ (style | load).tone }}`), is in the sandbox itself (`sandbox._load_filter`),
because a prompt kept from a config is a stored version that every part of the workbench
renders again later; it is a pure, bounded JSON parse. promptfoo's `env` global (the process
environment) is not offered: a prompt reads only its vars. A prompt written as a bare path
(`prompts/llama.txt`, promptfoo's older form) is that file when it exists in the folder.

`file://` paths are read only inside the config's folder: `file://../x`, an absolute path
elsewhere, or a symlink out of it are refused, naming the key.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import frontmatter
from .backends.base import Backend, is_remote_spec
from .backends.echo import ECHO, EchoBackend
from .datasets import Dataset, DatasetError, parse_dataset
from .errors import PromptFileError, TemplateLimitError, WorkbenchError
from .evaluate import (
    EvalReport,
    RowResult,
    VersionReport,
    score_output,
    store_scores,
    summarise_metrics,
)
from .library import TRIALS_KIND, Library, VersionInfo, content_hash, trial_name
from .params import GenerationParams
from .runner import Progress, Runner, RunSummary
from .scorers import (
    ALIASES,
    SCORERS,
    AssertionConfigError,
    Check,
    check_needs_expected,
    parse_check,
    weighted_pass,
)
from .store import PromptVersion
from .templates import ROLE_LINE, Mode, PromptFile, dump_prompt, parse_prompt

MAX_CONFIG_BYTES = 1024 * 1024  # as a prompt file
MAX_FILE_BYTES = 1024 * 1024  # a prompt, a var or an assertion value read from a file
MAX_TESTS = 10_000  # after array vars are expanded
DEFAULT_PROVIDER = "workbench:default"


class PromptfooConfigError(WorkbenchError):
    """A config that cannot be used as written: one line naming the file, key and line."""


class UnsupportedConfigError(PromptfooConfigError):
    """A config that asks for what the workbench does not do; `items` lists all of it."""

    def __init__(self, config: str, items: Sequence[str]):
        self.items = list(items)
        lines = "\n".join(f"  - {item}" for item in self.items)
        super().__init__(
            f"{config}: nothing was run; {len(self.items)} unsupported "
            f"item{'s' if len(self.items) != 1 else ''} (pass --skip-unsupported to run the "
            f"rest without them):\n{lines}"
        )


# --- the decided config ----------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSpec:
    index: int
    label: str
    key: str  # where it was written: prompts[0], or prompts[1] (file.txt, prompt 2)
    # Chat messages as (role, template); a text prompt is one user message. `chat_json`: it was
    # written as JSON chat messages, so promptfoo's echo answers the rendered JSON.
    messages: tuple[tuple[str, str], ...]
    chat_json: bool = False
    text: str = ""  # the prompt as written (the template of a text prompt)
    id: str = ""  # the `id` it was given in the config (file://prompt.txt), if any


@dataclass(frozen=True)
class ProviderSpec:
    index: int
    id: str
    label: str
    spec: str | None  # a model spec for open_backend; None for echo
    mode: Mode
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # promptfoo's `prompts:` on a provider: the labels or ids of the prompts it runs (None: all)
    prompts: tuple[str, ...] | None = None

    @property
    def is_echo(self) -> bool:
        return self.spec is None


@dataclass(frozen=True)
class TestSpec:
    index: int  # 0-based, after expansion
    key: str  # tests[2], tests[0] (tests.csv, row 3)
    description: str
    vars: Mapping[str, Any]
    checks: tuple[Check, ...]
    threshold: float | None = None
    providers: tuple[str, ...] | None = None  # promptfoo's per-test filters
    prompts: tuple[str, ...] | None = None


@dataclass
class ConfigPlan:
    path: Path
    description: str
    prompts: list[PromptSpec]
    providers: list[ProviderSpec]
    tests: list[TestSpec]
    ignored: dict[str, str] = field(default_factory=dict)  # key → why
    skipped: list[str] = field(default_factory=list)  # unsupported, left out
    notes: list[str] = field(default_factory=list)
    files: dict[tuple[int, str], PromptFile] = field(default_factory=dict)  # by prompt, mode

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def prompts_by_index(self) -> dict[int, PromptSpec]:
        return {p.index: p for p in self.prompts}

    def runs(self, prompt: PromptSpec, provider: ProviderSpec) -> list[TestSpec]:
        """The tests that run this prompt on this provider: none when the provider's `prompts:`
        leaves the prompt out, else those the tests' own filters let through."""
        if not prompt_allowed(prompt, provider.prompts):
            return []
        return [t for t in self.tests if _selected(t, prompt, provider)]


def _selected(test: TestSpec, prompt: PromptSpec, provider: ProviderSpec) -> bool:
    if test.providers is not None and not any(
        _matches(f, provider.label) or _matches(f, provider.id) for f in test.providers
    ):
        return False
    return prompt_allowed(prompt, test.prompts)


def prompt_allowed(prompt: PromptSpec, refs: Sequence[str] | None) -> bool:
    """promptfoo's rule for a provider's or a test's `prompts:` list: None allows every prompt,
    an empty list none; otherwise one reference must match (`prompt_matches`)."""
    return refs is None or any(prompt_matches(ref, prompt) for ref in refs)


def prompt_matches(ref: str, prompt: PromptSpec) -> bool:
    """As promptfoo (`doesPromptRefMatch`): the prompt's label or id exactly; a reference ending
    in `*` matches the label or id it begins (`prompt_*`, `Group:*`); `Group` matches a label or
    id `Group:…` (a file's prompts are labelled `file.txt: …`). The workbench's own key for the
    prompt (`prompts[1]`) works too."""
    names = [n for n in (prompt.label, prompt.id) if n]
    if ref in names or ref == prompt.key:
        return True
    if ref.endswith("*") and any(n.startswith(ref[:-1]) for n in names):
        return True
    if "*" in ref.rstrip("*") and any(fnmatch.fnmatchcase(n, ref) for n in names):
        return True  # a wildcard inside (`*_prompt`): the workbench's extension
    return any(n.startswith(ref + ":") for n in names)


def _matches(pattern: str, name: str) -> bool:
    if "*" in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    return pattern == name or name.startswith(pattern + ":")


# --- reading ---------------------------------------------------------------------------------

TOP_LEVEL_IGNORED = {
    "sharing": "results are stored in the workbench's database, not shared",
    "outputPath": "use --output report.json|csv|xml",
    "tags": "informational only",
    "metadata": "informational only",
    "writeLatestResults": "every run is stored",
    "commandLineOptions": "give options on the workbench command line",
    "env": "the workbench reads its own settings (WORKBENCH_…), never promptfoo's keys",
    "evaluateOptions": "runs are batched and cached by the workbench; one answer per test",
    "derivedMetrics": "not computed here",
    "yaml-language-server": "editor hint",
    "$schema": "editor hint",
}
TOP_LEVEL_UNSUPPORTED = {
    "redteam": "red-team configs generate attacks with hosted models: not supported",
    "scenarios": "scenarios are not supported: write their tests out in `tests`",
    "nunjucksFilters": "custom Nunjucks filters run JavaScript: not supported",
    "extensions": "extension hooks run code: not supported",
}
TEST_KEYS = {"description", "vars", "assert", "options", "threshold", "providers", "prompts"}
TEST_IGNORED = {
    "metadata": "filterable metadata; nothing here filters by it",
}
TEST_UNSUPPORTED = {
    "provider": "a per-test provider is not supported",
    "providerOutput": "a fixed output instead of a provider is not supported",
    "assertScoringFunction": "scoring functions run code: not supported",
}
OPTION_IGNORED = {
    "provider": "model-graded assertions ask the model under test",
    "rubricPrompt": "model-graded assertions use the workbench's own question",
    "runSerially": "runs are batched by the workbench",
    "storeOutputAs": "not supported; outputs are stored with every run",
    "disableVarExpansion": "",
    "disableConversationVar": "no conversation var here",
}
OPTION_UNSUPPORTED = {
    "transform": "output transforms run JavaScript: not supported",
    "postprocess": "output transforms run JavaScript: not supported",
    "prefix": "a per-test prompt prefix is not supported",
    "suffix": "a per-test prompt suffix is not supported",
}
ASSERT_IGNORED = {
    "provider": "model-graded assertions ask the model under test",
    "rubricPrompt": "model-graded assertions use the workbench's own question",
    "config": "assertion config is not read",
}
ASSERT_UNSUPPORTED = {
    "transform": "assertion transforms run JavaScript: not supported",
    "contextTransform": "context transforms run JavaScript: not supported",
}
UNSUPPORTED_ASSERTIONS = {
    "javascript": "runs JavaScript",
    "python": "runs Python",
    "webhook": "calls a web hook",
    "assert-set": "assertion sets are not supported",
    "select-best": "compares outputs with a hosted grader",
    "max-score": "compares outputs across providers",
    "human": "needs a person's rating",
}
# promptfoo's assertion types the workbench does not have (a hosted grader, tool calls, traces);
# any other unknown type is a mistake, reported with the closest name.
PROMPTFOO_ONLY_ASSERTIONS = {
    "answer-relevance",
    "classifier",
    "context-faithfulness",
    "context-recall",
    "context-relevance",
    "conversation-relevance",
    "factuality",
    "g-eval",
    "guardrails",
    "is-valid-function-call",
    "is-valid-openai-function-call",
    "is-valid-openai-tools-call",
    "meteor",
    "model-graded-closedqa",
    "model-graded-factuality",
    "moderation",
    "pi",
    "search-rubric",
    "tool-call-f1",
    "trace-error-spans",
    "trace-span-count",
    "trace-span-duration",
}
PROVIDER_CONFIG_PARAMS = {
    "temperature": "temperature",
    "max_tokens": "max_new_tokens",
    "maxTokens": "max_new_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "stop": "stop",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repeat_penalty": "repetition_penalty",
}
PROVIDER_CONFIG_IGNORED = {"apiBaseUrl", "apiHost", "apiKey", "apiKeyEnvar", "headers"}


class _Reader:
    """One config being read: its folder, its node tree (for lines), what was found so far."""

    def __init__(self, path: Path, text: str, skip_unsupported: bool):
        self.path = path
        self.base = path.parent.resolve()
        self.name = path.name
        self.root_node = frontmatter.compose(text)
        self.skip = skip_unsupported
        self.unsupported: list[str] = []
        self.ignored: dict[str, str] = {}
        self.notes: list[str] = []

    # where things are
    def line(self, key: str) -> int | None:
        node = self.root_node
        for part in _key_parts(key):
            if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
                if part >= len(node.value):
                    return None
                node = node.value[part]
            elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if getattr(k, "value", None) == part:
                        node = v
                        break
                else:
                    return None
            else:
                return None
        return None if node is None else node.start_mark.line + 1

    def where(self, key: str) -> str:
        line = self.line(key)
        return f"{self.name}, line {line}: {key}" if line else f"{self.name}: {key}"

    def fail(self, key: str, problem: str) -> PromptfooConfigError:
        return PromptfooConfigError(f"{self.where(key)}: {problem}")

    def refuse(self, key: str, why: str) -> None:
        self.unsupported.append(f"{self.where(key)}: {why}")

    def ignore(self, key: str, why: str) -> None:
        pattern = re.sub(r"\[\d+\]", "[]", key.split(" (")[0])
        self.ignored.setdefault(pattern, why)

    # files
    def file(self, ref: str, key: str) -> list[Path]:
        """The files a `file://` reference names, inside the config's folder; a glob may name
        several (sorted)."""
        raw = ref.removeprefix("file://").strip()
        raw = raw.split(":", 1)[0] if re.search(r"\.(py|js|ts|mjs|cjs):", raw) else raw
        if not raw:
            raise self.fail(key, "file:// names no file")
        if any(c in raw for c in "*?["):
            found = (
                sorted(p for p in self.base.glob(raw) if p.is_file())
                if not Path(raw).is_absolute()
                else []
            )
            if not found:
                raise self.fail(key, f"file://{raw} matches no file in {self.base}")
            return [self._inside(p, raw, key) for p in found]
        return [self._inside(self.base / raw, raw, key)]

    def _inside(self, path: Path, raw: str, key: str) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.base):
            raise self.fail(
                key, f"file://{raw} points outside the config's folder ({self.base}): refused"
            )
        if not resolved.is_file():
            raise self.fail(key, f"file://{raw}: no such file")
        return resolved

    def read(self, path: Path, key: str, limit: int = MAX_FILE_BYTES) -> str:
        try:
            size = path.stat().st_size
            if size > limit:
                raise self.fail(
                    key, f"{path.name} is {size / 1e6:.1f} MB; the limit is {limit // 1024} KB"
                )
            return path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise self.fail(key, f"{path.name} is not UTF-8 text") from None
        except OSError as exc:
            raise self.fail(key, f"cannot read {path.name}: {exc.strerror}") from None

    def data(self, path: Path, key: str) -> Any:
        """A YAML or JSON file's data, read within the same bounds as the config."""
        text = self.read(path, key)
        if path.suffix.lower() == ".json":
            try:
                return json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise self.fail(key, f"{path.name} is not JSON: {exc}") from None
        return _load_yaml(text, f"{self.name}: {key} ({path.name})")


def _key_parts(key: str) -> Iterator[str | int]:
    for name, index in re.findall(r"([A-Za-z_$][\w$-]*)|\[(\d+)\]", key.split(" (")[0]):
        yield name if name else int(index)


def _load_yaml(text: str, source: str) -> Any:
    """YAML within the bounds of a prompt's front matter (values, depth, text: see
    `frontmatter`), with errors on the file's own lines."""
    try:
        return frontmatter.load(text, source)
    except PromptFileError as exc:
        line = exc.line - 1 if exc.line is not None else None
        problem = exc.problem.replace("malformed front matter", "malformed YAML")
        problem = problem.replace("front matter", "the file")
        if isinstance(exc, TemplateLimitError):
            problem += "; put many tests in a CSV file (tests: file://tests.csv)"
        where = f"{source}, line {line}" if line else source
        raise PromptfooConfigError(f"{where}: {problem}") from None


def read_config(path: Path) -> tuple[Any, str]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PromptfooConfigError(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_CONFIG_BYTES:
        raise PromptfooConfigError(
            f"{path.name} is {size / 1e6:.1f} MB; configs are limited to "
            f"{MAX_CONFIG_BYTES // 1024} KB (put many tests in a CSV file: tests: file://tests.csv)"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PromptfooConfigError(f"{path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise PromptfooConfigError(f"cannot read {path}: {exc.strerror}") from None
    text = text.replace("\r\n", "\n")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text), text
        except (json.JSONDecodeError, RecursionError) as exc:
            raise PromptfooConfigError(f"{path.name}: not JSON: {exc}") from None
    return _load_yaml(text, path.name), text


def load_config(
    path: Path, *, skip_unsupported: bool = False, model: str | None = None
) -> ConfigPlan:
    """Read, check and decide a whole config; nothing loads or runs here. Raises
    UnsupportedConfigError listing everything unsupported (unless `skip_unsupported`).
    `model` (a model spec, as --model takes) runs in place of the config's providers."""
    data, text = read_config(path)
    reader = _Reader(path, text, skip_unsupported)
    if not isinstance(data, dict):
        raise PromptfooConfigError(f"{path.name}: a promptfoo config is a mapping (prompts:, …)")
    if model is not None:
        replaced = "providers" if "providers" in data or "targets" not in data else "targets"
        runs = _replaced_prompts(reader, data.get(replaced), replaced)
        for key in ("providers", "targets"):
            if key in data:
                reader.ignore(key, f"replaced by --model {model}")
        data = {k: v for k, v in data.items() if k not in ("providers", "targets")}
        provider: dict[str, Any] = {"id": model if model == ECHO else f"workbench:{model}"}
        if runs is not None:
            provider["prompts"] = list(runs)
        data["providers"] = [provider]
    known = {"description", "prompts", "providers", "targets", "tests", "defaultTest"}
    for key in data:
        if key in known:
            continue
        if key in TOP_LEVEL_UNSUPPORTED:
            reader.refuse(str(key), TOP_LEVEL_UNSUPPORTED[key])
        else:
            reader.ignore(
                str(key), TOP_LEVEL_IGNORED.get(str(key), "not a key the workbench reads")
            )
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise reader.fail("description", "must be text")
    prompts = _prompts(reader, data.get("prompts"))
    provider_key = "providers" if "providers" in data or "targets" not in data else "targets"
    providers = _providers(reader, data.get(provider_key), provider_key)
    default = _default_test(reader, data.get("defaultTest"))
    tests = _tests(reader, data.get("tests"), default)
    plan = ConfigPlan(path, description, prompts, providers, tests)
    plan.ignored, plan.notes = reader.ignored, reader.notes
    refused = _check_capabilities(reader, plan)
    if reader.unsupported and not skip_unsupported:
        raise UnsupportedConfigError(path.name, reader.unsupported)
    plan.skipped = reader.unsupported
    all_prompts = plan.prompts
    plan.prompts = [p for p in plan.prompts if p.index >= 0]
    plan.providers = [p for p in plan.providers if p.index >= 0]
    plan.tests = [t for t in plan.tests if t.index >= 0 and t.index not in refused]
    _check_prompt_filters(reader, all_prompts, plan, replaced=model is not None)
    if not plan.prompts or not plan.providers or not plan.tests:
        what = "prompt" if not plan.prompts else "provider" if not plan.providers else "test"
        raise PromptfooConfigError(f"{path.name}: no {what} is left to run")
    _prepare(reader, plan)
    return plan


def _check_prompt_filters(
    reader: _Reader, prompts: Sequence[PromptSpec], plan: ConfigPlan, *, replaced: bool
) -> None:
    """Every label or id a provider's `prompts:` names is one of the config's prompts (a typo
    would silently run nothing); a provider left with no prompt to run is said so."""
    known = ", ".join(repr(p.label) for p in prompts if p.index >= 0)
    for provider in plan.providers:
        if provider.prompts is None:
            continue
        where = "providers" if replaced else f"providers[{provider.index}].prompts"
        for ref in provider.prompts:
            if not any(prompt_matches(ref, p) for p in prompts):
                raise reader.fail(where, f"{ref!r} names no prompt (the prompts' labels: {known})")
        if not any(prompt_allowed(p, provider.prompts) for p in plan.prompts):
            plan.notes.append(f"{provider.label} runs none of the prompts left to run")
    unused = [
        p for p in plan.prompts if not any(prompt_allowed(p, v.prompts) for v in plan.providers)
    ]
    if unused:
        names = ", ".join(repr(p.label) for p in unused)
        plan.notes.append(f"not run: {names} (no provider's prompts: list names it)")
        plan.prompts = [p for p in plan.prompts if p not in unused]


# --- prompts ---------------------------------------------------------------------------------

PROMPT_FILE_TEXT = {".txt", ".md", ".j2", ".njk", ".nunjucks", ".prompt", ""}
PROMPT_FILE_CODE = {".js", ".ts", ".mjs", ".cjs", ".py"}


def _prompts(reader: _Reader, raw: Any) -> list[PromptSpec]:
    if raw is None:
        raise reader.fail("prompts", "the config has no prompts")
    items: list[tuple[str, Any]]
    if isinstance(raw, str):
        items = [("prompts", raw)]
    elif isinstance(raw, list):
        items = [(f"prompts[{i}]", item) for i, item in enumerate(raw)]
    elif isinstance(raw, dict):  # {file://path: label}
        items = [(f"prompts.{k}", {"raw": k, "label": v}) for k, v in raw.items()]
    else:
        raise reader.fail("prompts", "a prompt, or a list of prompts")
    out: list[PromptSpec] = []
    for key, item in items:
        label: str | None = None
        pid = ""
        if isinstance(item, dict):
            for extra in item:
                if extra not in ("raw", "label", "id", "config"):
                    reader.ignore(f"{key}.{extra}", "not a prompt key the workbench reads")
            if "config" in item:
                reader.ignore(f"{key}.config", "per-prompt provider config is not read")
            label = item.get("label") or item.get("id")
            pid = str(item.get("id") or (item["raw"] if key.startswith("prompts.") else ""))
            item = item.get("raw", item.get("id"))
        if not isinstance(item, str) or not item.strip():
            raise reader.fail(key, "a prompt is text, file://path or {raw, label}")
        item = _bare_path(reader, item)
        for text, where, chat_json, messages, suffix_label in _prompt_texts(reader, key, item):
            index = len(out)
            if messages is None:
                out.append(PromptSpec(index, "", where, (), False, text, pid))
                continue
            name = label if label is not None else suffix_label
            out.append(PromptSpec(index, str(name), where, messages, chat_json, text, pid))
    labels: dict[str, int] = {}
    final = []
    for p in out:
        if not p.messages:  # refused: keep the index out of the run, and out of the names
            final.append(PromptSpec(-1, p.label or p.key, p.key, (), False, p.text, p.id))
            continue
        label = p.label or (p.text if len(p.text) <= 60 else p.text[:59] + "…")
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f"{label} ({labels[label]})"
        final.append(PromptSpec(p.index, label, p.key, p.messages, p.chat_json, p.text, p.id))
    return final


def _bare_path(reader: _Reader, item: str) -> str:
    """A prompt written as a bare path (`prompts/llama.txt`, as promptfoo's older examples do)
    is that file when it exists in the config's folder; anything else stays text."""
    if item.startswith("file://") or "\n" in item or not re.fullmatch(r"[\w./ -]+\.\w{1,8}", item):
        return item
    path = reader.base / item
    if not Path(item).is_absolute() and ".." not in Path(item).parts and path.is_file():
        return "file://" + item
    return item


def _prompt_texts(
    reader: _Reader, key: str, item: str
) -> Iterator[tuple[str, str, bool, tuple[tuple[str, str], ...] | None, str]]:
    """(text, key, chat_json, messages or None when refused, default label) per prompt."""
    if not item.startswith("file://"):
        if re.match(r"^(python|exec|js|javascript|langfuse|portkey|helicone)://", item):
            reader.refuse(key, "prompts from code or a hosted prompt store are not supported")
            yield item, key, False, None, item
            return
        chat = _chat_messages(item)
        yield item, key, chat is not None, chat or (("user", item),), item
        return
    for path in reader.file(item, key):
        suffix = path.suffix.lower()
        rel = path.relative_to(reader.base).as_posix()
        where = f"{key} ({rel})"
        if suffix in PROMPT_FILE_CODE:
            reader.refuse(where, "prompt functions run code: not supported")
            yield item, where, False, None, rel
            continue
        text = reader.read(path, key)
        if suffix == ".json":
            chat = _chat_messages(text)
            if chat is None:
                yield text, where, False, (("user", text),), rel
            else:
                yield text, where, True, chat, rel
        elif suffix in (".yaml", ".yml"):
            data = reader.data(path, key)
            chat = _messages_of(data)
            if chat is None:
                raise reader.fail(key, f"{rel} is not a list of chat messages ({{role, content}})")
            yield text, where, True, chat, rel
        elif suffix == ".jsonl":
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    chat = _chat_messages(line)
                    if chat is None:
                        raise reader.fail(key, f"{rel}, line {number}: not a JSON chat prompt")
                    yield line, f"{key} ({rel}, line {number})", True, chat, f"{rel}:{number}"
        elif suffix in PROMPT_FILE_TEXT:
            parts = _split_text_prompts(text)
            for n, part in enumerate(parts, start=1):
                where_n = where if len(parts) == 1 else f"{key} ({rel}, prompt {n})"
                chat = _chat_messages(part)
                label = f"{rel}: {part}"
                yield part, where_n, chat is not None, chat or (("user", part),), label
        else:
            reader.refuse(where, f"prompt files of type {suffix} are not supported")
            yield item, where, False, None, rel


def _split_text_prompts(text: str) -> list[str]:
    """A text file holds prompts separated by `---` lines (promptfoo's delimiter), each
    trimmed; empty ones are dropped."""
    parts, buffer = [], list[str]()
    for line in text.split("\n"):
        if line.strip() == "---":
            parts.append("\n".join(buffer).strip())
            buffer = []
        else:
            buffer.append(line)
    parts.append("\n".join(buffer).strip())
    return [p for p in parts if p]


def _chat_messages(text: str) -> tuple[tuple[str, str], ...] | None:
    """A prompt written as JSON chat messages, before rendering (its `{{ }}` sit inside JSON
    strings), as (role, content template) pairs; None when it is not one."""
    if not text.lstrip().startswith("["):
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return _messages_of(data)


def _messages_of(data: Any) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(data, list) or not data:
        return None
    out = []
    for message in data:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return None
        content = message.get("content")
        if not isinstance(content, str):
            return None
        out.append((message["role"].lower(), content))
    return tuple(out)


# --- providers -------------------------------------------------------------------------------

HOSTED = (
    "anthropic",
    "azure",
    "azureopenai",
    "bedrock",
    "vertex",
    "google",
    "gemini",
    "mistral",
    "cohere",
    "groq",
    "together",
    "replicate",
    "huggingface",
    "perplexity",
    "openrouter",
    "deepseek",
    "fireworks",
    "xai",
    "cloudflare-ai",
    "watsonx",
    "ai21",
    "voyage",
    "databricks",
    "sagemaker",
    "adaline",
)
CODE_PROVIDERS = ("exec:", "python:", "file://", "http:", "https:", "ws:", "wss:", "golang:")


def _providers(reader: _Reader, raw: Any, key: str) -> list[ProviderSpec]:
    if raw is None:
        raise reader.fail(
            key, f"the config has no providers: name one, e.g. {DEFAULT_PROVIDER} or {ECHO}"
        )
    items: list[tuple[str, Any]]
    if isinstance(raw, str):
        items = [(key, raw)]
    elif isinstance(raw, list):
        items = [(f"{key}[{i}]", item) for i, item in enumerate(raw)]
    else:
        raise reader.fail(key, "a provider id, or a list of them")
    out = []
    for where, item in items:
        config: Mapping[str, Any] = {}
        label = None
        prompts = None
        if isinstance(item, dict):
            item = _provider_item(item)
            for extra in item:
                if extra not in ("id", "label", "config", "prompts"):
                    reader.ignore(f"{where}.{extra}", "not a provider key the workbench reads")
            config = item.get("config") or {}
            if not isinstance(config, dict):
                raise reader.fail(f"{where}.config", "must be a mapping")
            label = item.get("label")
            prompts = _filter(reader, item.get("prompts"), f"{where}.prompts")
            item = item.get("id")
        if not isinstance(item, str) or not item.strip():
            raise reader.fail(where, "a provider is an id (echo, openai:chat:MODEL…) or {id, …}")
        pid = item.strip()
        spec_mode = _provider_spec(pid, config)
        if isinstance(spec_mode, str):
            reader.refuse(where, f"{pid}: {spec_mode}")
            out.append(ProviderSpec(-1, pid, label or pid, None, "chat", prompts=prompts))
            continue
        spec, mode = spec_mode
        overrides = {}
        for name, value in config.items():
            if name in PROVIDER_CONFIG_PARAMS:
                overrides[PROVIDER_CONFIG_PARAMS[name]] = value
            elif name not in PROVIDER_CONFIG_IGNORED:
                reader.ignore(f"{where}.config.{name}", "not a generation option the workbench has")
        try:
            GenerationParams.build({}, overrides)
        except WorkbenchError as exc:
            raise reader.fail(f"{where}.config", str(exc)) from None
        out.append(ProviderSpec(len(out), pid, str(label or pid), spec, mode, overrides, prompts))
    return out


def _provider_item(item: dict[str, Any]) -> dict[str, Any]:
    """A provider written as a mapping: `{id, …}`, or promptfoo's `{openai:chat:m: {config…}}`."""
    if "id" not in item and len(item) == 1:
        ((pid, body),) = item.items()
        return {"id": pid, **(body if isinstance(body, dict) else {})}
    return item


def _replaced_prompts(reader: _Reader, raw: Any, key: str) -> tuple[str, ...] | None:
    """With --model in place of the config's providers: the prompts they run between them (the
    union of their `prompts:` lists; None, every prompt, when one of them has none). A prompt
    meant for one provider runs on the model; a prompt no provider runs stays out, as in
    promptfoo."""
    items = raw if isinstance(raw, list) else [raw]
    refs: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return None
        found = _filter(reader, _provider_item(item).get("prompts"), f"{key}[{i}].prompts")
        if found is None:
            return None
        refs += [r for r in found if r not in refs]
    return tuple(refs)


def _provider_spec(pid: str, config: Mapping[str, Any]) -> tuple[str | None, Mode] | str:
    """(model spec or None for echo, mode), or why the provider is refused."""
    if pid == ECHO:
        return None, "chat"
    if pid in ("workbench", "workbench:default"):
        from .config import Settings

        return Settings.from_env().model, "chat"
    if pid.startswith("workbench:"):
        return pid.removeprefix("workbench:"), "chat"
    if pid.startswith(CODE_PROVIDERS) or pid.endswith((".js", ".py", ".ts")):
        return "custom providers run code or call arbitrary HTTP endpoints: not supported"
    head, _, rest = pid.partition(":")
    if head == "openai":
        kind, _, model = rest.partition(":")
        if kind not in ("chat", "completion"):
            kind, model = "chat", rest
        if kind == "chat" and model.startswith(("assistant:", "responses:", "realtime:")):
            return "this OpenAI API is hosted only: not supported"
        url = config.get("apiBaseUrl")
        if not url and config.get("apiHost"):
            url = f"https://{config['apiHost']}/v1"
        if not url:
            return (
                "needs a hosted service (api.openai.com): give config.apiBaseUrl of an "
                f"OpenAI-compatible server, or use {DEFAULT_PROVIDER}"
            )
        return _server(model, str(url), kind)
    if head == "ollama":
        kind, _, model = rest.partition(":")
        if kind not in ("chat", "completion"):
            kind, model = "completion", rest
        if kind == "chat" and model.startswith("embeddings"):
            return "embedding providers are not supported"
        base = str(config.get("apiBaseUrl") or os.environ.get("OLLAMA_BASE_URL") or "")
        return _server(model, (base or "http://localhost:11434").rstrip("/") + "/v1", kind)
    if head in ("llama", "llama.cpp", "llamacpp"):
        base = os.environ.get("LLAMA_BASE_URL") or "http://localhost:8080"
        return _server(rest, base.rstrip("/") + "/v1", "completion")
    if head == "localai":
        kind, _, model = rest.partition(":")
        if kind not in ("chat", "completion"):
            kind, model = "chat", rest
        base = os.environ.get("LOCALAI_BASE_URL") or "http://localhost:8080/v1"
        return _server(model, base, kind)
    if head.lower() in HOSTED or head.lower().startswith(HOSTED):
        return f"{head} is a hosted service; the workbench runs offline (use {DEFAULT_PROVIDER})"
    return f"unknown provider; use {DEFAULT_PROVIDER}, {ECHO} or openai:chat:MODEL with apiBaseUrl"


def _server(model: str, url: str, kind: str) -> tuple[str, Mode] | str:
    if not model:
        return "names no model"
    if not re.match(r"^https?://", url):
        return f"the base URL {url!r} is not http(s)"
    return f"openai:{model}@{url}", "completion" if kind == "completion" else "chat"


# --- tests -----------------------------------------------------------------------------------


@dataclass
class _Defaults:
    vars: dict[str, Any] = field(default_factory=dict)
    asserts: list[tuple[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None


def _default_test(reader: _Reader, raw: Any) -> _Defaults:
    if raw is None:
        return _Defaults()
    key = "defaultTest"
    if isinstance(raw, str) and raw.startswith("file://"):
        (path,) = reader.file(raw, key)[:1]
        raw = reader.data(path, key)
    if not isinstance(raw, dict):
        raise reader.fail(key, "must be a mapping (vars, assert, options)")
    defaults = _Defaults()
    for name in raw:
        if name in ("vars", "assert", "options", "threshold"):
            continue
        _test_key(reader, f"{key}.{name}", name)
    defaults.vars = _vars(reader, raw.get("vars"), f"{key}.vars")
    defaults.asserts = _assert_list(reader, raw.get("assert"), f"{key}.assert")
    defaults.options = _options(reader, raw.get("options"), f"{key}.options")
    defaults.threshold = _threshold(reader, raw.get("threshold"), f"{key}.threshold")
    return defaults


def _test_key(reader: _Reader, where: str, name: str) -> None:
    if name in TEST_UNSUPPORTED:
        reader.refuse(where, TEST_UNSUPPORTED[name])
    else:
        reader.ignore(where, TEST_IGNORED.get(name, "not a test key the workbench reads"))


def _threshold(reader: _Reader, raw: Any, key: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise reader.fail(key, f"must be a number, got {raw!r}")
    return float(raw)


def _options(reader: _Reader, raw: Any, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise reader.fail(key, "must be a mapping")
    for name in raw:
        where = f"{key}.{name}"
        if name in OPTION_UNSUPPORTED:
            reader.refuse(where, OPTION_UNSUPPORTED[name])
        elif name in OPTION_IGNORED:
            if OPTION_IGNORED[name]:
                reader.ignore(where, OPTION_IGNORED[name])
        else:
            reader.ignore(where, "not an option the workbench reads")
    return dict(raw)


def _vars(reader: _Reader, raw: Any, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str) and raw.startswith("file://"):
        (path,) = reader.file(raw, key)[:1]
        raw = reader.data(path, key)
    if not isinstance(raw, dict):
        raise reader.fail(key, "must be a mapping of variable names to values")
    out = {}
    for name, value in raw.items():
        out[str(name)] = _var_value(reader, value, f"{key}.{name}")
    return out


IMAGE_OR_MEDIA = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg", ".pdf", ".mp4"}
IMAGE_OR_MEDIA |= {".webm", ".ogg", ".mov", ".avi", ".wmv", ".mkv", ".m4v", ".wav", ".mp3"}


def _var_value(reader: _Reader, value: Any, key: str) -> Any:
    """A var's value; `file://` read as promptfoo reads it (text trimmed; YAML as its JSON)."""
    if isinstance(value, list):
        return [_var_value(reader, v, key) for v in value]
    if not (isinstance(value, str) and value.startswith("file://")):
        return value
    paths = reader.file(value, key)
    if len(paths) > 1:  # a glob: one value each, expanded like an array
        return [_file_var(reader, p, key) for p in paths]
    return _file_var(reader, paths[0], key)


def _file_var(reader: _Reader, path: Path, key: str) -> Any:
    suffix = path.suffix.lower()
    if suffix in PROMPT_FILE_CODE:
        reader.refuse(key, f"{path.name}: vars computed by code are not supported")
        return ""
    if suffix in IMAGE_OR_MEDIA:
        reader.refuse(key, f"{path.name}: images, audio, video and PDF vars are not supported")
        return ""
    if suffix in (".yaml", ".yml"):
        return json.dumps(reader.data(path, key), ensure_ascii=False, separators=(",", ":"))
    return reader.read(path, key).strip()


def _assert_list(reader: _Reader, raw: Any, key: str) -> list[tuple[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise reader.fail(key, "must be a list of assertions")
    return [(f"{key}[{i}]", item) for i, item in enumerate(raw)]


def _tests(reader: _Reader, raw: Any, defaults: _Defaults) -> list[TestSpec]:
    """Every test, with defaultTest merged in and array vars expanded (promptfoo's product)."""
    raws: list[tuple[str, Any]] = []
    if raw is None:
        raws = [("tests", {})]  # promptfoo runs each prompt once
    elif isinstance(raw, str):
        raws = _test_file(reader, raw, "tests")
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if isinstance(item, str):
                raws += _test_file(reader, item, f"tests[{i}]")
            else:
                raws.append((f"tests[{i}]", item))
    else:
        raise reader.fail("tests", "a list of tests, or file://tests.csv")
    out: list[TestSpec] = []
    for key, test in raws:
        out += _test(reader, key, test, defaults, len(out))
        if len(out) > MAX_TESTS:
            raise reader.fail(key, f"more than {MAX_TESTS:,} tests after expanding array vars")
    return out


def _test_file(reader: _Reader, ref: str, key: str) -> list[tuple[str, Any]]:
    if not ref.startswith("file://"):
        if ref.startswith(("huggingface://", "https://", "http://")):
            reader.refuse(key, "tests from the network are not supported")
            return []
        ref = "file://" + ref  # promptfoo reads a bare path as a file too
    out: list[tuple[str, Any]] = []
    for path in reader.file(ref, key):
        rel = path.relative_to(reader.base).as_posix()
        suffix = path.suffix.lower()
        if suffix == ".csv":
            try:
                dataset = parse_dataset(_bytes(reader, path, key), rel)
            except DatasetError as exc:
                raise reader.fail(key, str(exc)) from None
            out += [
                (f"{key} ({rel}, row {n})", _csv_test(reader, row, f"{key} ({rel}, row {n})"))
                for n, row in enumerate(dataset.rows, start=1)
            ]
        elif suffix in (".yaml", ".yml", ".json"):
            data = reader.data(path, key)
            if isinstance(data, dict):
                data = [data]
            if not isinstance(data, list):
                raise reader.fail(key, f"{rel} is not a list of tests")
            out += [(f"{key} ({rel}, test {n})", t) for n, t in enumerate(data, start=1)]
        elif suffix == ".jsonl":
            for n, line in enumerate(reader.read(path, key).splitlines(), start=1):
                if line.strip():
                    try:
                        out.append((f"{key} ({rel}, line {n})", json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise reader.fail(key, f"{rel}, line {n}: not JSON: {exc.msg}") from None
        elif suffix in PROMPT_FILE_CODE:
            reader.refuse(key, f"{rel}: tests generated by code are not supported")
        else:
            reader.refuse(key, f"{rel}: test files of type {suffix or 'none'} are not supported")
    return out


def _bytes(reader: _Reader, path: Path, key: str) -> bytes:
    from .datasets import MAX_DATASET_BYTES

    return reader.read(path, key, MAX_DATASET_BYTES).encode()


def _csv_test(reader: _Reader, row: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A CSV row as promptfoo reads it: `__expected…` columns are assertions, `__description`,
    `__metric` and `__threshold` describe the test, the rest are vars."""
    test: dict[str, Any] = {"vars": {}, "assert": []}
    metric = None
    for column, value in row.items():
        text = "" if value is None else str(value)
        if column.startswith("__expected"):
            if text.strip():
                test["assert"].append(_assertion_of_text(text))
        elif column == "__description":
            test["description"] = text
        elif column == "__metric":
            metric = text or None
        elif column == "__threshold":
            try:
                test["threshold"] = float(text) if text.strip() else None
            except ValueError:
                raise reader.fail(key, f"__threshold {text!r} is not a number") from None
        elif column in ("__prefix", "__suffix", "__providerOutput", "__config"):
            if text.strip():
                reader.refuse(f"{key}.{column}", f"the {column} column is not supported")
        else:
            test["vars"][column] = value
    if metric:
        for item in test["assert"]:
            item["metric"] = metric
    return test


_STRING_ASSERTION = re.compile(r"^(not-)?([a-z][a-z0-9-]*)(?:\((\d+(?:\.\d+)?)\))?(?::([\s\S]*))?$")
_LIST_TYPES = {"contains-all", "contains-any", "icontains-all", "icontains-any"}
_THRESHOLD_TYPES = {
    "answer-relevance",
    "classifier",
    "context-faithfulness",
    "context-recall",
    "context-relevance",
    "cost",
    "latency",
    "levenshtein",
    "perplexity-score",
    "perplexity",
    "rouge-n",
    "similar",
    "starts-with",
}
_PROMPTFOO_TYPES = set(SCORERS) | set(ALIASES) | set(UNSUPPORTED_ASSERTIONS)
_PROMPTFOO_TYPES |= _THRESHOLD_TYPES | PROMPTFOO_ONLY_ASSERTIONS


def _assertion_of_text(text: str) -> dict[str, Any]:
    """promptfoo's `__expected` syntax: `TYPE:VALUE`, `not-TYPE`, `TYPE(THRESHOLD):VALUE`,
    `grade:`/`llm-rubric:` a rubric, `javascript:`/`fn:`/`python:` code; anything else is
    `equals`."""
    for prefix, kind in (("javascript:", "javascript"), ("fn:", "javascript"), ("eval:", "js")):
        if text.startswith(prefix):
            return {"type": kind, "value": text[len(prefix) :].strip()}
    if text.startswith("python:"):
        return {"type": "python", "value": text[7:].strip()}
    if text.startswith("file://") and re.search(r"\.(py|js|ts)(:|$)", text):
        return {"type": "python" if ".py" in text else "javascript", "value": text[7:]}
    for prefix in ("grade:", "llm-rubric:"):
        if text.startswith(prefix):
            return {"type": "llm-rubric", "value": text[len(prefix) :]}
    m = _STRING_ASSERTION.match(text)
    if m is None or m.group(2) not in _PROMPTFOO_TYPES:
        return {"type": "equals", "value": text}
    negate, kind, threshold, value = m.groups()
    out: dict[str, Any] = {"type": f"{negate or ''}{kind}"}
    if value is not None:
        out["value"] = [s.strip() for s in value.split(",")] if kind in _LIST_TYPES else value
    if kind in _THRESHOLD_TYPES:
        default = 0.8 if kind == "similar" else 0.75
        out["threshold"] = float(threshold) if threshold and float(threshold) else default
    return out


def _test(reader: _Reader, key: str, raw: Any, defaults: _Defaults, start: int) -> list[TestSpec]:
    if not isinstance(raw, dict):
        raise reader.fail(key, "a test is a mapping (vars, assert…)")
    refused_before = len(reader.unsupported)  # anything refused below leaves the test out
    for name in raw:
        if name not in TEST_KEYS:
            _test_key(reader, f"{key}.{name}", name)
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        description = str(description)
    options = {**defaults.options, **_options(reader, raw.get("options"), f"{key}.options")}
    own = _vars(reader, raw.get("vars"), f"{key}.vars")
    variables = {**defaults.vars, **own}
    checks = _checks(
        reader, [*defaults.asserts, *_assert_list(reader, raw.get("assert"), key + ".assert")]
    )
    threshold = _threshold(reader, raw.get("threshold"), f"{key}.threshold")
    if threshold is None:
        threshold = defaults.threshold
    providers = _filter(reader, raw.get("providers"), f"{key}.providers")
    prompts = _filter(reader, raw.get("prompts"), f"{key}.prompts")
    refused = len(reader.unsupported) > refused_before
    expand = not options.get("disableVarExpansion")
    combos = _expand(variables) if expand else [variables]
    out = []
    for n, combo in enumerate(combos):
        where = key if len(combos) == 1 else f"{key} (combination {n + 1})"
        for check in checks:
            if check_needs_expected(check) and "expected" not in combo:
                raise reader.fail(
                    key, f"{check.name} compares with an expected answer: give a var 'expected'"
                )
        out.append(
            TestSpec(
                -1 if refused else start + n,
                where,
                description or "",
                _resolve_vars(combo),
                tuple(checks),
                threshold,
                providers,
                prompts,
            )
        )
    return out


def _filter(reader: _Reader, raw: Any, key: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise reader.fail(key, "a list of labels or ids")
    return tuple(raw)


def _expand(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """promptfoo runs a test once per combination of its array vars' values."""
    names = list(variables)
    lists = [v if isinstance(v, list) else [v] for v in variables.values()]
    total = 1
    for values in lists:
        total *= max(len(values), 1)
        if total > MAX_TESTS:
            raise PromptfooConfigError(
                f"array vars expand to more than {MAX_TESTS:,} tests: "
                "set options.disableVarExpansion, or write fewer values"
            )
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]


def _resolve_vars(variables: Mapping[str, Any]) -> dict[str, Any]:
    """As promptfoo: one trailing newline dropped from text values, and `{{other}}` inside a
    value filled from the other vars (up to 5 rounds)."""
    out = {
        k: v[:-1] if isinstance(v, str) and v.endswith("\n") else v for k, v in variables.items()
    }
    pattern = re.compile(r"\{\{\s*(\w+)\s*\}\}")
    for _ in range(5):
        changed = False
        for name, value in out.items():
            if not isinstance(value, str):
                continue
            m = pattern.search(value)
            if m and m.group(1) in out and m.group(1) != name:
                out[name] = value.replace(m.group(0), str(out[m.group(1)]), 1)
                changed = True
        if not changed:
            break
    return out


def _checks(reader: _Reader, items: Sequence[tuple[str, Any]]) -> list[Check]:
    out = []
    for key, item in items:
        if isinstance(item, str):
            item = _assertion_of_text(item)
        if not isinstance(item, dict):
            raise reader.fail(key, "an assertion is a mapping with a type")
        kind = str(item.get("type", "")).strip().lower()
        base = kind.removeprefix("not-")
        if base in UNSUPPORTED_ASSERTIONS or kind.startswith("promptfoo:"):
            reader.refuse(
                key, f"{kind} assertions: {UNSUPPORTED_ASSERTIONS.get(base, 'not supported')}"
            )
            continue
        if base in PROMPTFOO_ONLY_ASSERTIONS:
            reader.refuse(key, f"{kind} assertions are not supported here")
            continue
        clean: dict[str, Any] = {}
        for name, value in item.items():
            if name in ("type", "value", "threshold", "weight", "metric"):
                clean[name] = value
            elif name in ASSERT_UNSUPPORTED:
                reader.refuse(f"{key}.{name}", ASSERT_UNSUPPORTED[name])
            else:
                reader.ignore(f"{key}.{name}", ASSERT_IGNORED.get(name, "not an assertion key"))
        value = clean.get("value")
        if isinstance(value, str) and value.startswith("file://"):
            clean["value"] = _assert_file(reader, value, f"{key}.value")
        if base == "levenshtein" and isinstance(clean.get("threshold"), float):
            clean["threshold"] = float(int(clean["threshold"]))  # distances are whole
        if SCORERS.get(ALIASES.get(base, base)) is not None:
            info = SCORERS[ALIASES.get(base, base)]
            if info.kind == "pass" and "threshold" in clean:
                reader.ignore(f"{key}.threshold", f"{base} is a yes/no check")
                del clean["threshold"]
        try:
            out.append(parse_check(clean))
        except AssertionConfigError as exc:
            raise reader.fail(key, str(exc)) from None
    return out


def _assert_file(reader: _Reader, ref: str, key: str) -> Any:
    path = reader.file(ref, key)[0]
    suffix = path.suffix.lower()
    if suffix in PROMPT_FILE_CODE:
        reader.refuse(key, f"{path.name}: assertion values computed by code are not supported")
        return ""
    if suffix in (".json", ".yaml", ".yml"):
        return reader.data(path, key)
    return reader.read(path, key)


def _check_capabilities(reader: _Reader, plan: ConfigPlan) -> set[int]:
    """Tests with assertions a provider cannot serve, refused before anything loads:
    model-graded and perplexity need a model (echo has none), perplexity a local one."""
    refused: set[int] = set()
    for test in plan.tests:
        for provider in plan.providers:
            if provider.index < 0 or test.index < 0 or test.index in refused:
                continue
            why = _capability_problem(test, provider)
            if why is not None:
                reader.refuse(test.key, why)
                refused.add(test.index)
    return refused


def _capability_problem(test: TestSpec, provider: ProviderSpec) -> str | None:
    for check in test.checks:
        info = SCORERS[check.type]
        if provider.is_echo and info.needs_model:
            return f"{check.type} needs a model, and the echo provider has none"
        remote = provider.spec is not None and is_remote_spec(provider.spec)
        if info.needs_capability == "logits" and remote:
            return f"{check.type} needs a local model, and {provider.id} is a server"
    return None


# --- prompt versions -------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[^a-z0-9._-]+")


def _slug(text: str, limit: int = 60) -> str:
    slug = _NAME_CHARS.sub("-", text.lower()).strip("-._")
    return slug[:limit].rstrip("-._") or "prompt"


def base_name(path: Path) -> str:
    """What the config's prompts are named after: the file, or its folder for
    `promptfooconfig.yaml`."""
    stem = path.stem
    if stem.lower().startswith("promptfooconfig"):
        stem = path.resolve().parent.name + stem[len("promptfooconfig") :]
    return _slug(stem, 40)


def prompt_name(plan: ConfigPlan, prompt: PromptSpec, mode: Mode) -> str:
    name = f"{base_name(plan.path)}-{prompt.index + 1}"
    if mode == "completion" and any(p.mode == "chat" for p in plan.providers):
        name += "-completion"
    return name


def _escape_role_lines(text: str) -> str:
    """A line of the prompt that reads like a Prompty role line (`system:`) is text in
    promptfoo: keep it text."""
    lines = []
    for line in text.split("\n"):
        if ROLE_LINE.match(line.strip()):
            line = "{% raw %}" + line + "{% endraw %}"
        lines.append(line)
    return "\n".join(lines)


def prompt_file(plan: ConfigPlan, prompt: PromptSpec, mode: Mode) -> PromptFile:
    """The prompt as a workbench prompt file: its messages as role sections (a completion
    prompt: their text), checked like any prompt file."""
    name = prompt_name(plan, prompt, mode)
    front: dict[str, Any] = {
        "name": name,
        "description": f"{prompt.label} (promptfoo: {plan.name}, {prompt.key})"[:500],
    }
    if mode == "completion":
        front["model"] = {"apiType": "completion"}
    if mode == "completion":
        body = "\n\n".join(_escape_role_lines(c) for _, c in prompt.messages)
    else:
        body = "\n".join(
            f"{role}:\n{_escape_role_lines(content)}\n" for role, content in prompt.messages
        )
    try:
        return parse_prompt(dump_prompt(front, body), name)
    except PromptFileError as exc:
        raise PromptfooConfigError(f"{plan.name}: {prompt.key}: {exc.problem}") from None


def _fill_missing(pf: PromptFile, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Vars with every variable the prompt reads: one no test gives renders empty, as in
    promptfoo (Nunjucks renders an undefined variable as nothing)."""
    out = dict(variables)
    for name in pf.template_variables():
        out.setdefault(name, "")
    return out


def _prepare(reader: _Reader, plan: ConfigPlan) -> None:
    """Parse every prompt for every mode it runs in, and render it for every test it runs
    with: every template mistake is found here, before a model loads."""
    missing: dict[str, set[str]] = {}
    for provider in plan.providers:
        for prompt in plan.prompts:
            if not prompt_allowed(prompt, provider.prompts):
                continue
            key = (prompt.index, provider.mode)
            if key not in plan.files:
                plan.files[key] = prompt_file(plan, prompt, provider.mode)
            pf = plan.files[key]
            for test in plan.runs(prompt, provider):
                for name in pf.template_variables():
                    if name not in test.vars:
                        missing.setdefault(name, set()).add(test.key)
                try:
                    pf.render(_fill_missing(pf, test.vars))
                except WorkbenchError as exc:
                    problem = exc.problem if isinstance(exc, PromptFileError) else str(exc)
                    raise PromptfooConfigError(
                        f"{reader.where(prompt.key)}, with {test.key}: {problem}"
                    ) from None
    for name, keys in sorted(missing.items()):
        count = len(keys)
        plan.notes.append(
            f"{count} test{'s give' if count > 1 else ' gives'} no value for {{{{ {name} }}}}: "
            "it renders empty, as in promptfoo"
        )


def store_prompt(library: Library, pf: PromptFile, *, imported: bool, note: str) -> VersionInfo:
    """The prompt as a stored version: imported into the library (a new version of its name
    when it changed), or kept hidden as a trial so it does not crowd the Library."""
    if imported:
        return library.save(pf, note).version
    name = trial_name(pf.name)
    front = {**pf.front, "name": name}
    hidden = parse_prompt(dump_prompt(front, pf.body), name)
    content = hidden.canonical_text()
    digest = content_hash(content)

    def save(s: Any) -> VersionInfo:
        writer = library.writer_in(s, name, kind=TRIALS_KIND)
        number = writer.earliest.get(digest)
        if number is None:
            number, _ = writer.add(hidden, note, content=content, digest=digest)
        return library.info_in(s, s.get_one(PromptVersion, writer.id_of(number)))

    return library.store.transaction(save)


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigReport:
    report: EvalReport
    plan: ConfigPlan
    imported: list[str]  # refs saved into the library (--import-prompts)
    tests: dict[str, list[TestSpec]]  # by report line (version · provider), in row order
    wall_s: float

    def failures(self, limit: int = 20) -> list[str]:
        """One line per failed test (up to `limit`): on what, which test, and why."""
        lines = []
        for version in self.report.versions:
            tests = self.tests[version.ref]
            for row in version.rows:
                if row.passed:
                    continue
                test = tests[row.row_index]
                name = test.key + (f" {test.description!r}" if test.description else "")
                failed = [f"{s.metric}: {s.detail}" for s in row.scores if not s.passed]
                if not failed and row.output is None:
                    failed = ["no output"]
                elif not failed:
                    failed = [f"score {row.score:.2f} below the test's threshold"]
                lines.append(_one_line(f"FAIL {version.ref} · {name}: {'; '.join(failed)}"))
        if len(lines) > limit:
            return [*lines[:limit], f"… and {len(lines) - limit} more failed tests"]
        return lines


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _factory(
    provider: ProviderSpec, open_model: Callable[[str], Backend], chat_json: frozenset[str]
) -> Callable[[], Backend]:
    spec = provider.spec
    if spec is None:
        return lambda: EchoBackend(chat_json)
    return lambda: open_model(spec)


def run_config(
    library: Library,
    plan: ConfigPlan,
    open_model: Callable[[str], Backend],
    *,
    import_prompts: bool = False,
    use_cache: bool = True,
    progress: Callable[[str, Progress], None] | None = None,
) -> ConfigReport:
    """Every prompt × provider × test, one stored run per prompt and provider, each output
    scored by its own test's assertions (a test passes when all of them pass, or when its
    weighted score reaches the test's `threshold`)."""
    started = time.perf_counter()
    note = f"imported from {plan.name}"
    versions: dict[tuple[int, str], VersionInfo] = {}
    imported: list[str] = []
    for key, pf in plan.files.items():
        version = store_prompt(library, pf, imported=import_prompts, note=note)
        versions[key] = version
        if import_prompts and version.ref not in imported:
            imported.append(version.ref)
    chat_json = frozenset(
        plan.files[key].name for key in plan.files if plan.prompts_by_index[key[0]].chat_json
    )
    reports: list[VersionReport] = []
    checks: dict[str, list[Check]] = {}
    tests_by_line: dict[str, list[TestSpec]] = {}
    for provider in plan.providers:
        runner = Runner(library, _factory(provider, open_model, chat_json))
        for prompt in plan.prompts:
            tests = plan.runs(prompt, provider)
            if not tests:
                continue
            key = (prompt.index, provider.mode)
            version, pf = versions[key], plan.files[key]
            rows = [_fill_missing(pf, t.vars) for t in tests]
            columns = tuple(dict.fromkeys(k for r in rows for k in r))
            line = f"{version.ref} · {provider.label}"
            shown = None if progress is None else _progress(progress, line)
            summary = runner.run(
                [version],
                Dataset(plan.name, columns, tuple(rows)),
                overrides=provider.overrides,
                samples=1,
                use_cache=use_cache,
                progress=shown,
            )
            reports.append(_report(library, runner, line, summary, tests, provider))
            checks[line] = _union(c for t in tests for c in t.checks)
            tests_by_line[line] = tests
    report = EvalReport(plan.name, checks, reports)
    return ConfigReport(report, plan, imported, tests_by_line, time.perf_counter() - started)


def _progress(progress: Callable[[str, Progress], None], line: str) -> Callable[[Progress], None]:
    return lambda p: progress(line, p)


def _union(checks: Iterable[Check]) -> list[Check]:
    """Each distinct check once, in order (a value may be a list: compared as JSON)."""
    seen: dict[str, Check] = {}
    for check in checks:
        seen.setdefault(json.dumps(check.as_dict(), sort_keys=True, default=str), check)
    return list(seen.values())


def _report(
    library: Library,
    runner: Runner,
    line: str,
    summary: RunSummary,
    tests: Sequence[TestSpec],
    provider: ProviderSpec,
) -> VersionReport:
    rows = []
    needs_model = any(SCORERS[c.type].needs_model for t in tests for c in t.checks)
    model = runner.backend if needs_model and not provider.is_echo else None
    for output in summary.outputs:
        test = tests[output.row_index]
        scores = score_output(output, test.checks, model)
        share, passed = weighted_pass(scores)
        if test.threshold is not None:
            passed = share >= test.threshold
        if output.error is not None or output.text is None:
            passed = False
        rows.append(RowResult.of(output, scores, passed, share))
    store_scores(
        library.store,
        [(r.output_id, r.scores) for r in rows],
        _union(c for t in tests for c in t.checks),
    )
    return VersionReport(
        line, summary.run.id, summary.run.model, rows, summarise_metrics(r.scores for r in rows)
    )
