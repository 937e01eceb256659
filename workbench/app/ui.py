"""Widgets every page shares: the page frame, error handling, model and parameter pickers,
version pickers and how model text is shown.

Model output is always shown as text (code blocks), never as Markdown or HTML, so an answer
that contains `<script>` or `**` shows exactly those characters. Every other text the workbench
did not write itself — version notes, names, a server's error messages and model ids, file
names, exception messages — goes through `escape_markdown` before it reaches an element that
renders Markdown (st.markdown, st.caption, st.error/warning/info/success, st.subheader,
st.progress text, st.metric, widget labels): a note such as `![x](http://host/t.png)` then
shows those characters instead of making the browser fetch the address.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import pandas as pd
import streamlit as st

from workbench import jobs, testsets
from workbench.app import memory, state
from workbench.datasets import Dataset, parse_dataset
from workbench.errors import WorkbenchError
from workbench.library import Library, VersionInfo
from workbench.params import GenerationParams
from workbench.templates import Rendered

log = logging.getLogger("workbench.app")

MODEL_SOURCES = ("Local model", "OpenAI-compatible server")


def page(title: str, caption: str) -> None:
    st.set_page_config(page_title=f"{title} · Prompt Workbench", page_icon="🧪", layout="wide")
    memory.keep_choices()
    st.session_state.pop(URL_PICKER, None)  # the first picker of this rerun takes the address
    st.title(title)
    st.caption(caption)


@contextmanager
def guard(action: str = "") -> Iterator[None]:
    """Show a failure as a message that says what to do, never as a traceback.

    Expected problems (bad input, missing model, …) carry a message written for the person;
    anything else is logged in full on the server and summarised on the page.
    """
    try:
        yield
    except WorkbenchError as exc:
        st.error(escape_markdown(f"{action}: {exc}" if action else exc))
    except Exception as exc:  # Streamlit's own stop/rerun signals are BaseExceptions, not these
        log.exception("unexpected error%s", f" while {action}" if action else "")
        where = f" while {action.lower()}" if action else ""
        st.error(
            escape_markdown(
                f"Something unexpected went wrong{where}: {type(exc).__name__}: {exc}. "
                "The details are in the server's log; nothing already stored was lost."
            )
        )


def load_library() -> Library:
    try:
        return state.library()
    except WorkbenchError as exc:
        st.error(escape_markdown(f"The library could not be opened: {exc}"))
        st.stop()
        raise  # unreachable; st.stop raises


def model_sidebar() -> state.ModelChoice:
    """Model choice in the sidebar; nothing is loaded or contacted until it is needed."""
    settings = state.settings()
    remote_default = settings.model.startswith("openai")
    st.session_state.setdefault("model_source", MODEL_SOURCES[1 if remote_default else 0])
    st.session_state.setdefault("model_spec", "" if remote_default else settings.model)
    st.session_state.setdefault("model_dtype", "float32")
    st.session_state.setdefault("model_trust_remote_code", False)
    st.session_state.setdefault("model_server_url", settings.openai.base_url)
    st.session_state.setdefault("model_server_model", settings.openai.model)
    st.session_state.setdefault("model_server_key", "")
    asked = memory.requested("model_spec", "model")
    if asked is not None and asked["model"]:
        _select_model(asked["model"])
    with st.sidebar:
        st.subheader("Model")
        source = st.radio("Source", MODEL_SOURCES, key="model_source", horizontal=True)
        if source == MODEL_SOURCES[0]:
            choice = _local_model_fields(settings.model if not remote_default else "default")
        else:
            choice = _server_model_fields(settings.openai.base_url)
        if state.is_loaded(choice):
            info = state.backend(choice).info
            st.caption(  # the name and revision carry the model id a server reported
                escape_markdown(
                    f"Model: {info.name} · {info.dtype} · context {info.context_window} tokens · "
                    f"revision {info.revision[:24]}"
                )
            )
        elif source == MODEL_SOURCES[0]:
            st.caption("Loads on the first run (once per server).")
        else:
            st.caption("The server is contacted on the first run.")
    default = (
        f"openai:{settings.openai.model}@{settings.openai.base_url}"
        if remote_default
        else settings.model
    )
    memory.show_in_url("model_spec", model=None if choice.spec == default else choice.spec)
    return choice


def _local_model_fields(default_spec: str) -> state.ModelChoice:
    """The fields of a local model; an empty spec means `default_spec`."""
    spec = st.text_input(
        "Model",
        key="model_spec",
        help="The default model, a local folder with a transformers model, or a Hugging "
        "Face id already in the local cache. Nothing is downloaded.",
    ).strip()
    dtype = st.selectbox("Weights dtype", state.DTYPES, key="model_dtype")
    trust = st.checkbox(
        "Trust remote code",
        key="model_trust_remote_code",
        help="Runs Python code shipped with the model. Only for models you trust.",
    )
    return state.ModelChoice(spec or default_spec, dtype, trust)


def _server_model_fields(default_url: str) -> state.ModelChoice:
    """The fields of an OpenAI-compatible server; an empty URL means `default_url`."""
    url = st.text_input(
        "Server URL",
        key="model_server_url",
        help="Base URL of a vLLM, TGI, llama.cpp or Ollama server (usually ends in /v1).",
    ).strip()
    name = st.text_input(
        "Model name",
        key="model_server_model",
        help="As the server calls it; empty: the server's only model.",
    ).strip()
    key = st.text_input(
        "API key",
        key="model_server_key",
        type="password",
        help="Kept in this browser session's memory only, never stored "
        "(default: $WORKBENCH_OPENAI_API_KEY).",
    )
    return state.ModelChoice(f"openai:{name}@{url or default_url}", api_key=key.strip())


def _select_model(spec: str) -> None:
    """Fill the model fields from an address's `model=`: a local spec, or `openai:NAME@URL`
    (the API key is never in an address)."""
    if spec.startswith("openai:"):
        name, _, url = spec.removeprefix("openai:").partition("@")
        st.session_state["model_source"] = MODEL_SOURCES[1]
        st.session_state["model_server_model"] = name
        if url:
            st.session_state["model_server_url"] = url
    else:
        st.session_state["model_source"] = MODEL_SOURCES[0]
        st.session_state["model_spec"] = spec


PARAM_HELP = {
    "temperature": "0 = greedy (the same answer every time); higher = more varied",
    "top_p": "nucleus sampling: keep the smallest set of tokens with this much probability",
    "top_k": "keep only the k most likely tokens (0 = off)",
    "max_new_tokens": "longest answer, in tokens",
    "repetition_penalty": "above 1 discourages repeating tokens (of the prompt and the answer)",
    "frequency_penalty": "above 0 lowers a token by how often the answer has used it (OpenAI's)",
    "presence_penalty": "above 0 lowers every token the answer has used once (OpenAI's)",
    "seed": "fixes the random choices when sampling",
    "stop": "one stop string per line; generation ends before the first one",
}


class _ParamField(NamedTuple):
    """One generation parameter's widget: a slider when it has a `step`, else a whole number."""

    name: str
    label: str
    low: float
    high: float
    step: float | None = None


_PARAM_FIELDS = (
    _ParamField("temperature", "Temperature", 0.0, 2.0, 0.05),
    _ParamField("top_p", "Top p", 0.05, 1.0, 0.05),
    _ParamField("top_k", "Top k", 0, 1000),
    _ParamField("max_new_tokens", "Max new tokens", 1, 8192),
    _ParamField("repetition_penalty", "Repetition penalty", 0.5, 2.0, 0.05),
    _ParamField("frequency_penalty", "Frequency penalty", -2.0, 2.0, 0.1),
    _ParamField("presence_penalty", "Presence penalty", -2.0, 2.0, 0.1),
    _ParamField("seed", "Seed", 0, 2**31 - 1),
)


def _param_widget(field: _ParamField, value: Any, key: str) -> float | int:
    if field.step is None:
        return int(
            st.number_input(
                field.label,
                int(field.low),
                int(field.high),
                int(value),
                key=key,
                help=PARAM_HELP[field.name],
            )
        )
    return st.slider(
        field.label,
        float(field.low),
        float(field.high),
        float(value),
        field.step,
        key=key,
        help=PARAM_HELP[field.name],
    )


def params_sidebar(options: Mapping[str, Any], scope: str) -> dict[str, Any]:
    """Generation parameters, starting from the prompt's own options.

    Returns only the values the person changed (the run's overrides), so a run records what
    was deliberately different from the prompt file. `scope` (e.g. the version's ref) gives each
    prompt its own widgets, so switching prompts shows that prompt's defaults.
    """
    try:
        base = GenerationParams.build(options, None)
    except WorkbenchError as exc:
        st.sidebar.error(escape_markdown(f"The prompt's options are invalid: {exc}"))
        base = GenerationParams()
    with st.sidebar:
        st.subheader("Generation")
        k = f"param:{scope}:"
        values: dict[str, Any] = {
            field.name: _param_widget(field, getattr(base, field.name), k + field.name)
            for field in _PARAM_FIELDS
        }
        stop_text = st.text_area(
            "Stop strings",
            "\n".join(base.stop),
            key=k + "stop",
            help=PARAM_HELP["stop"],
            height=68,
        )
        values["stop"] = [line for line in stop_text.splitlines() if line]
    current = base.as_dict()
    return {
        name: value
        for name, value in values.items()
        if (list(value) if isinstance(value, list) else value) != current[name]
    }


LAST_PICK = "wb:last-pick"  # (prompt, version) last picked on any page: where others start
URL_PICKER = "wb:url-picker"  # the picker of this rerun that reads and writes the address


def version_picker(
    lib: Library,
    key: str,
    *,
    label: str = "Prompt",
    default: str | None = None,
    versions_back: int = 0,
    url: bool | None = None,
) -> VersionInfo | None:
    """Pick a prompt and one of its versions (latest first, labels shown).

    `versions_back` preselects an earlier version (1 = the one before the latest), which is
    what a second Compare column usually wants.

    The choice is remembered: through page switches (its widget values are kept, see
    `memory`), across pages (a page opened for the first time starts on the prompt last picked
    anywhere, unless `default` names one), and in the address as `?prompt=<name>&v=<number>`,
    so a link or the back button reopens it. `url=None` gives the address to the first picker
    drawn on the page; `url=False` keeps a picker out of it (a second Compare column).
    """
    prompts = lib.list_prompts()
    if not prompts:
        st.info("The library is empty: create a prompt on the Compose page or import one.")
        return None
    names = [p.name for p in prompts]
    latest = {p.name: p.latest for p in prompts}
    if url is None:
        url = _takes_address(key)
    if url:
        asked = memory.requested(key, "prompt", "v")
        if asked is not None:
            _apply_address(asked, key, latest)
    if key not in st.session_state:
        _open_first_time(key, latest, default, versions_back)
    name = st.selectbox(label, names, key=key)
    summary = next(p for p in prompts if p.name == name)
    by_version: dict[int, list[str]] = {}
    for label_name, number in summary.labels.items():
        by_version.setdefault(number, []).append(label_name)
    numbers = list(range(summary.latest, 0, -1))
    version_key = f"{key}:version:{name}"
    if st.session_state.get(version_key) not in numbers:
        st.session_state[version_key] = numbers[min(versions_back, len(numbers) - 1)]
    number = st.selectbox(
        "Version",
        numbers,
        format_func=lambda n: (
            f"v{n}" + (f" ({', '.join(by_version[n])})" if n in by_version else "")
        ),
        key=version_key,
    )
    st.session_state[LAST_PICK] = (name, number)
    if url:
        memory.show_in_url(key, prompt=name, v=number)
    return lib.get(f"{name}@{number}")


def _takes_address(key: str) -> bool:
    """Whether picker `key` is the first drawn in this rerun, which reads and writes the
    address (the mark is cleared by `page` at the top of every rerun)."""
    if st.session_state.get(URL_PICKER, key) != key:
        return False
    st.session_state[URL_PICKER] = key
    return True


def _open_first_time(
    key: str, latest: Mapping[str, int], default: str | None, versions_back: int
) -> None:
    """Where a picker not drawn before starts: on `default`, else on the prompt last picked
    anywhere, and on that version too unless the picker wants an earlier one."""
    last = _last_pick(list(latest))
    if default in latest:
        st.session_state[key] = default
    elif last is not None:
        st.session_state[key] = last[0]
        if versions_back == 0 and 1 <= last[1] <= latest[last[0]]:
            st.session_state.setdefault(f"{key}:version:{last[0]}", last[1])


def prompt_select(names: Sequence[str], key: str, label: str = "Prompt") -> str:
    """A prompt chooser without versions (Library) that remembers like `version_picker`: it
    opens on the address's `prompt=`, else on the prompt last picked on any page, and puts its
    choice in the address."""
    asked = memory.requested(key, "prompt")
    if asked is not None and asked["prompt"] is not None:
        if asked["prompt"] in names:
            st.session_state[key] = asked["prompt"]
        else:
            _warn_unknown_prompt(asked["prompt"])
    elif key not in st.session_state:
        last = _last_pick(names)
        if last is not None:
            st.session_state[key] = last[0]
    name: str = st.selectbox(label, names, key=key)
    last = st.session_state.get(LAST_PICK)
    if last is None or last[0] != name:
        st.session_state[LAST_PICK] = (name, 0)  # 0: no version chosen, the latest
    memory.show_in_url(key, prompt=name, v=None)
    return name


def _last_pick(names: Sequence[str]) -> tuple[str, int] | None:
    """The (prompt, version) last picked on any page, when that prompt is among `names`
    (version 0: the prompt was picked without a version)."""
    last: tuple[str, int] | None = st.session_state.get(LAST_PICK)
    return last if last is not None and last[0] in names else None


def _warn_unknown_prompt(asked: str | None) -> None:
    st.warning(
        escape_markdown(
            f"The address asks for prompt {asked!r}, which is not in the library: showing "
            "the default prompt instead."
        )
    )


def url_run(key: str) -> int | None:
    """A run the address newly names (`run=42`) for the view `key`, or None; a value that is
    not a run number is one line."""
    asked = memory.requested(key, "run")
    if asked is None or asked["run"] is None:
        return None
    if asked["run"].isdigit():
        return int(asked["run"])
    st.warning(escape_markdown(f"The address names run {asked['run']!r}, which is not a number."))
    return None


def _apply_address(asked: Mapping[str, str | None], key: str, latest: Mapping[str, int]) -> None:
    """Select what the address asks for (`v=` alone: that version of the prompt shown). A
    prompt the library does not have is one line and the picker keeps its choice; a version
    the prompt does not have is one line and the latest is shown."""
    name: str | None = asked.get("prompt") or st.session_state.get(key)
    if name is None or name not in latest:
        _warn_unknown_prompt(asked.get("prompt"))
        return
    st.session_state[key] = name
    wanted = asked.get("v")
    if wanted is None:
        return
    if wanted.isdigit() and 1 <= int(wanted) <= latest[name]:
        st.session_state[f"{key}:version:{name}"] = int(wanted)
        return
    st.session_state[f"{key}:version:{name}"] = latest[name]
    st.warning(
        escape_markdown(
            f"The address asks for version {wanted!r} of {name}, which has versions 1 to "
            f"{latest[name]}: showing v{latest[name]} instead."
        )
    )


# Every ASCII punctuation character Markdown (CommonMark, GitHub's extensions, Streamlit's
# `:color[…]` directives, math and emoji short codes) gives a meaning to; `&` too, or `&lt;`
# would show as `<`, and `/`, or Streamlit would read `:material/…` as an icon name.
# CommonMark lets a backslash make any of them literal.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&/])")
# What GitHub's autolink extension turns into a link (a superset of its patterns). Streamlit
# finds these in the text *after* escapes are read, so a backslash cannot stop them. Backticks
# right before one join its code span: an escaped backtick next to a fence is read unevenly.
_LINKIFIED = re.compile(r"`*(?:(?:https?://|www\.)\S*|[-.\w+]+@[-\w]+(?:\.[-\w]+)+)", re.IGNORECASE)


def escape_markdown(text: object) -> str:
    """Markdown that Streamlit shows as exactly `text`, line breaks kept.

    The one way untrusted text (notes, names, server messages and model ids, file names,
    exception messages) reaches an element that renders Markdown; without it an image in a
    note makes the browser fetch its address, and links and emphasis render. Every special
    character gets a backslash, except in web and e-mail addresses: Streamlit turns those into
    links even when escaped, so they go in a code span, whose text is never interpreted (and
    is copied exactly). The escaped colons also keep Streamlit from loading its emoji short
    codes. What Streamlit still does to plain text — `->` drawn as an arrow, `:streamlit:` as
    its logo — changes how it looks, never what it fetches or links to.
    """
    raw = str(text)
    parts: list[str] = []
    done = 0
    for match in _LINKIFIED.finditer(raw):
        parts += [_escape_characters(raw[done : match.start()]), _code_span(match.group())]
        done = match.end()
    parts.append(_escape_characters(raw[done:]))
    return "".join(parts)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?:_+[A-Za-z0-9]+)*")


def widget_label(name: str) -> str:
    """A widget's label for a name the workbench did not choose (a template variable).

    A label is Markdown, but Streamlit also makes it the field's accessible name as typed, so
    escaping `target_language` would make a screen reader say its backslash. A name of letters
    and digits joined by underscores cannot start any Markdown (underscores inside a word are
    literal) and stays as it is; any other name is escaped.
    """
    return name if _PLAIN_NAME.fullmatch(name) else escape_markdown(name)


def _escape_characters(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def _code_span(text: str) -> str:
    """`text` as a CommonMark code span: fenced by more backticks than any run inside it,
    padded with a space where it starts or ends with a backtick (one is stripped again)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def show_text(text: str | None, *, empty: str = "(empty answer)") -> None:
    """Model text exactly as generated: a code block, so nothing in it is interpreted."""
    st.code(text if text else empty, language=None, wrap_lines=True)


def show_messages(rendered: Rendered) -> None:
    if rendered.mode == "completion":
        show_text(rendered.text)
        return
    for message in rendered.messages:
        st.markdown(f"`{message.role}`")
        st.code(message.content, language=None, wrap_lines=True)


def text_variables(names: Sequence[str], defaults: Mapping[str, Any]) -> list[str]:
    """The variables a person types per input: not those whose default is structured data
    (a list of examples, a schema object), which belong to the prompt and are edited on the
    Compose page, where their structure is shown."""
    return [
        n for n in names if defaults.get(n) is None or isinstance(defaults[n], str | int | float)
    ]


def variables_form(
    names: Sequence[str], defaults: Mapping[str, Any], key: str, *, warn_missing: bool = True
) -> dict[str, Any]:
    """A text area per typed variable, prefilled with the prompt's sample inputs; structured
    variables keep their default.

    `defaults` holds only the variables that have one. An empty box for a variable without a
    default is no value at all, so rendering refuses it by name, as the CLI and Compare do,
    instead of filling in empty text (`{{ tone }}` used but never declared); `warn_missing`
    says so under the form, before anyone presses Run.
    """
    values: dict[str, Any] = {}
    missing: list[str] = []
    typed = text_variables(names, defaults)
    for name in names:
        default = defaults.get(name)
        if name not in typed:
            values[name] = default
            continue
        text = st.text_area(
            widget_label(name),
            "" if default is None else str(default),
            key=f"{key}:{name}",
            height=80,
        )
        if text == "" and name not in defaults:
            missing.append(name)
        else:
            values[name] = text
    if missing and warn_missing:
        listed = ", ".join(repr(n) for n in missing)
        st.warning(
            escape_markdown(
                f"No value for {listed}: the prompt has no default for "
                f"{'them' if len(missing) > 1 else 'it'}, so a run is refused until you type one."
            )
        )
    return values


def rows_input(variables: Sequence[str], defaults: Mapping[str, Any], key: str) -> Dataset | None:
    """Rows of variables: typed into a table, or read from an uploaded CSV / JSON Lines file."""
    variables = text_variables(variables, defaults)
    source = st.radio(
        "Rows", ["Edit rows here", "Upload a file"], horizontal=True, key=f"{key}:source"
    )
    if source == "Upload a file":
        upload = st.file_uploader(
            "CSV or JSON Lines file (first row: column names)",
            type=["csv", "jsonl", "json"],
            key=f"{key}:file",
        )
        if upload is None:
            return None
        return parse_dataset(upload.getvalue(), upload.name)
    starter = {
        name: (defaults.get(name) if isinstance(defaults.get(name), str) else "")
        for name in variables
    }
    # The table's edits are widget state, which a page switch drops: the rows as last edited
    # are kept under a plain key and become the table's starting rows when it is drawn anew
    # (with other variables, another prompt, it starts from the prompt's sample again).
    columns = list(variables) or ["text"]
    editor, base_key, last_key = f"{key}:rows", f"wb:rows-base:{key}", f"wb:rows-last:{key}"
    base = st.session_state.get(base_key)
    if editor not in st.session_state or base is None or list(base.columns) != columns:
        last = st.session_state.get(last_key)
        fits = last is not None and list(last.columns) == columns
        base = last if fits else pd.DataFrame([starter], columns=columns)
        st.session_state[base_key] = base
    frame = st.data_editor(base, num_rows="dynamic", width="stretch", key=editor)
    st.session_state[last_key] = frame
    rows = tuple(
        {k: ("" if pd.isna(v) else str(v)) for k, v in row.items()}
        for row in frame.to_dict("records")
        if any(not pd.isna(v) and str(v) != "" for v in row.values())
    )
    return Dataset("rows edited in the app", tuple(str(c) for c in frame.columns), rows)


TYPED, STORED = "Typed or uploaded", "A stored test set"


def labelled_rows(
    lib: Library,
    variables: Sequence[str],
    defaults: Mapping[str, Any],
    key: str,
    help: str | None = None,
) -> tuple[Dataset | None, bool]:
    """Rows with an `expected` column, typed, uploaded or from a stored test set (the
    Evaluate and Improve pages); returns the rows and whether they were typed or uploaded.
    Empty cells are left out, so a blank `expected` is a missing one, not an empty answer."""
    from workbench import wording

    stored = testsets.list_test_sets(lib.store)
    source = st.radio(
        "Rows from",
        [TYPED, STORED],
        horizontal=True,
        key=f"{key}_source",
        disabled=not stored,
        help=help,
    )
    if source == STORED and stored:
        chosen = st.selectbox(
            "Test set",
            [s.ref for s in stored],
            format_func=lambda ref: next(
                f"{s.ref} · {wording.plural(s.rows, 'row')}" + (f" · {s.note}" if s.note else "")
                for s in stored
                if s.ref == ref
            ),
            key=f"{key}_test_set",
        )
        found = testsets.get_test_set(lib.store, chosen)
        st.dataframe(pd.DataFrame(found.rows), hide_index=True, width="stretch", height=180)
        return found, False
    typed = text_variables(variables, defaults)
    dataset = rows_input([*typed, "expected"], defaults, key=f"{key}_rows")
    if dataset is None:
        return None, True
    rows = tuple({k: v for k, v in row.items() if v != ""} for row in dataset.rows)
    return Dataset(dataset.name, dataset.columns, rows), True


def map_columns(dataset: Dataset, variables: Sequence[str], key: str) -> Dataset:
    """Let the person say which column fills which variable (same-named columns preselected).

    Variables left unmapped fall back to the prompt's default, if it has one.
    """
    unmapped = "(the prompt's default)"
    if set(variables) <= set(dataset.columns):
        return dataset
    st.caption("Match the file's columns to the template's variables.")
    mapping: dict[str, str] = {}
    cols = st.columns(max(1, min(len(variables), 4)))
    for i, name in enumerate(variables):
        options = [unmapped, *dataset.columns]
        with cols[i % len(cols)]:
            chosen = st.selectbox(
                widget_label(name),
                options,
                index=options.index(name) if name in dataset.columns else 0,
                key=f"{key}:map:{name}",
            )
        if chosen != unmapped:
            mapping[name] = chosen
    if not mapping:  # nothing fills a variable: a run refuses it, naming the file's columns
        return dataset
    rows = tuple({var: row.get(col, "") for var, col in mapping.items()} for row in dataset.rows)
    return Dataset(dataset.name, tuple(mapping), rows)


def job_running(state_key: str) -> bool:
    """Whether the job whose id is in `st.session_state[state_key]` is still working."""
    job = jobs.get_job(st.session_state.get(state_key))
    return job is not None and not job.done


def run_button(
    label: str,
    *,
    key: str,
    state_key: str,
    start: Callable[[], jobs.Job],
    action: str = "Starting the run",
    disabled: bool = False,
    help: str | None = None,
    in_fragment: bool = False,
) -> jobs.Job | None:
    """A Run button that starts a background job and is disabled while that job works.

    The click is read from the session before the button is drawn, so the rerun the click
    causes starts the job (a thread: it returns at once, the model loads inside it) and draws
    this button already disabled, and `watch_job` below draws the running state in the same
    rerun — the person sees it as fast as the page redraws, not after the model answered. A
    second click (a double click, or a click that raced the redraw) finds the job working and
    starts nothing. `start()` checks the request first and raises, so a mistake shows here as
    one line. Returns the job started by this rerun, if any.

    `in_fragment`: the button is drawn inside a fragment (such as the view of another job that
    `watch_job` draws), where a click reruns that fragment only, and this job's `watch_job`
    elsewhere on the page would not be drawn: once the job is started, the whole page reruns.
    """
    busy = job_running(state_key)
    started = None
    if st.session_state.get(key) and not busy and not disabled:
        with guard(action):
            started = start()
            st.session_state[state_key] = started.id
            st.session_state[f"{state_key}:clicked_at"] = time.monotonic()
            busy = True
        if started is not None and in_fragment:
            st.rerun(scope="app")
    st.button(label, key=key, type="primary", disabled=disabled or busy, help=help)
    return started


POLL_S = 0.3  # how often a running job is redrawn: streamed text grows about this smoothly


def watch_job(
    state_key: str,
    cancel_key: str,
    show: Callable[[jobs.Job], None],
    *,
    stopped: Callable[[jobs.Job], str] | None = None,
) -> None:
    """Draw the background job whose id is in `st.session_state[state_key]`.

    While it runs: a status line (what runs, for how long, rows done) and a Stop button, redrawn
    every `POLL_S` by a fragment (only this part of the page reruns); when it has ended, one full
    rerun draws the page without the timer. Stop sets the job's cancel, which the runner checks
    between tokens; once the job has ended, `stopped(job)` says what was kept. `show(job)` draws
    the page's own view: progress, text or rows so far, results. The job id lives in a
    non-widget session key, so leaving the page and coming back finds the job as it is.
    """
    job = jobs.get_job(st.session_state.get(state_key))
    if job is None:
        return
    live = not job.done

    def frame() -> None:
        assert job is not None
        if live and job.done:
            st.rerun()
        if not job.done:
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.info(escape_markdown(running_line(job)), icon=":material/progress_activity:")
            if job.cancelled:
                right.caption("Stopping after the current tokens…")
            elif right.button("Stop", key=cancel_key):
                job.cancel.set()
                right.caption("Stopping after the current tokens…")
            if job.run_id is not None and st.session_state.get(f"{state_key}:run") != job.run_id:
                # The run is recorded: one full rerun lets the page put it in the address (a
                # fragment's rerun cannot change the address), so a reload finds this job.
                # After Stop is read, so a click in this rerun is not lost.
                st.session_state[f"{state_key}:run"] = job.run_id
                st.rerun()
        elif job.cancelled and stopped is not None and not job.error:
            st.warning(escape_markdown(stopped(job)), icon=":material/stop_circle:")
        show(job)

    st.fragment(run_every=POLL_S if live else None)(frame)()


def keep_result(result_key: str, what: str) -> Callable[[jobs.Job], None]:
    """A `watch_job` view for a job that ends in a report: a progress bar while it runs, then
    its error (`The {what} stopped: …`) or its result kept under `result_key` for the page."""

    def show(job: jobs.Job) -> None:
        p = job.progress
        st.progress(p.done / p.total if p and p.total else 0.0, text=escape_markdown(job.title))
        if job.done:
            if job.error:
                st.error(escape_markdown(f"The {what} stopped: {job.error}"))
            elif job.result is not None:
                st.session_state[result_key] = job.result

    return show


def running_line(job: jobs.Job) -> str:
    """The status of a working job in one line: "Running run 12: … · 3/10 · 4.2 s" (rows or
    outputs done, when the job reports progress)."""
    progress = job.progress
    parts = [f"Running {job.title}"]
    if progress is not None and progress.total:
        parts.append(f"{progress.done}/{progress.total}")
    parts.append(f"{job.elapsed_s:.1f} s")
    return " · ".join(parts)


def share_columns(*names: str) -> dict[str, Any]:
    """Column settings that draw shares (0–1) as percentage bars, for `st.dataframe`."""
    return {
        name: st.column_config.ProgressColumn(name, min_value=0.0, max_value=1.0, format="percent")
        for name in names
    }


def add_to_test_set(
    rows: Sequence[Mapping[str, Any]], key: str, note: str, *, expected: str | None = None
) -> None:
    """A test-set name field and a button that appends `rows` to that set as a new version.

    With `expected`, an editable "expected answer" field starts from it (usually the output
    just produced: keep it when it is right, correct it when not) and is stored with each row.
    Structured values such as example lists stay with the prompt and are left out.
    """
    answer = None
    if expected is not None:
        answer = st.text_input(
            "Expected answer",
            value=expected.strip(),
            key=f"{key}:expected",
            help="Stored in the test set's `expected` column, which scorers compare with.",
        )
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    set_name = left.text_input(
        "Add to a test set" if len(rows) == 1 else "Add these inputs to a test set",
        key=f"{key}:name",
        placeholder="regressions",
        help="A new version of the test set with these rows appended (a new set if the name "
        "is new).",
    )
    if right.button("Add", key=f"{key}:add", disabled=not set_name.strip()):
        with guard("Adding to the test set"):
            scalar = [
                {k: v for k, v in row.items() if v is None or isinstance(v, str | int | float)}
                | ({"expected": answer} if answer else {})
                for row in rows
            ]
            info, _ = testsets.add_rows(state.library().store, set_name.strip(), scalar, note)
            added = f"{len(scalar)} row" + ("" if len(scalar) == 1 else "s")
            plural = "" if info.rows == 1 else "s"
            st.success(escape_markdown(f"Added {added}: {info.ref} has {info.rows} row{plural}."))
