"""Prompty files as Microsoft's own tools write them (tests/data/prompty, our own files, one per
construct): each imports, renders as `prompty` 2.1 renders it, and survives export → import;
the out-of-scope ones are refused with a reason. benchmarks/prompty_files.py runs the same
checks over Microsoft's repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prompty
import pytest
import yaml
from prompty.core.discovery import register_renderer
from prompty.renderers.jinja2 import Jinja2Renderer

from workbench.errors import ImportRejected
from workbench.exchange import export_version, import_files
from workbench.library import Library, VersionInfo
from workbench.templates import VOLATILE_METADATA, PromptFile, parse_prompt

DATA = Path(__file__).resolve().parent / "data" / "prompty"
ACCEPTED = sorted(DATA.glob("*.prompty"))
REFUSED = {
    "embedding": "embedding prompts are out of scope",
    "image": "image prompts are out of scope",
    "image-input": "input 'photo' is an image input: image, audio and file inputs are out of scope",
    "nunjucks-elseif": "template format nunjucks: {% elseif %} is nunjucks-only: write {% elif %}",
}
SECRET = "hunter2-not-for-storing"
CONVERSATION = [
    {"role": "user", "content": "Earlier question"},
    {"role": "assistant", "content": "Earlier answer"},
]

# prompty 2.1's Python package has no nunjucks renderer; its Jinja2 one renders the syntax the
# two share, which is all a nunjucks file the workbench accepts may use.
register_renderer("nunjucks", Jinja2Renderer())


@pytest.fixture(autouse=True)
def secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_TEST_SECRET", SECRET)
    # prompty refuses to send a key to an endpoint it does not know; ours is never called
    monkeypatch.setenv("PROMPTY_TRUSTED_ENDPOINTS", "https://example.invalid")


def imported(library: Library, path: Path) -> VersionInfo:
    report = import_files(library, [(path.name, path.read_bytes())])
    (ref,) = report.created
    return library.get(ref)


def values_for(pf: PromptFile) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in pf.inputs.items():
        if spec.kind == "thread":
            values[name] = CONVERSATION
        elif not spec.has_default:
            values[name] = f"<{name}>"
    for name in pf.template_variables():
        if name not in pf.inputs or not pf.inputs[name].has_default:
            values.setdefault(name, f"<{name}>")
    return values


def theirs(path: Path, values: dict[str, Any]) -> list[tuple[str, str]]:
    agent = prompty.load(str(path))
    return [(m.role, m.text) for m in prompty.prepare(agent, dict(values))]


def ours(pf: PromptFile, values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in pf.render(values).messages]


def front_of(text: str) -> dict[str, Any]:
    if not text.startswith("---"):
        return {}
    return yaml.safe_load(text.split("\n---", 1)[0].removeprefix("---")) or {}


def test_every_construct_has_a_file() -> None:
    assert {p.stem for p in ACCEPTED} >= {
        "display-name",
        "tools-and-connection",
        "file-reference",
        "nunjucks-responses",
        "conversation",
        "body-only",
        "empty-front-matter",
        "no-name",
    }
    assert {p.stem for p in (DATA / "refused").glob("*.prompty")} == set(REFUSED)


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_renders_as_prompty_does(path: Path, library: Library) -> None:
    pf = imported(library, path).file
    values = values_for(pf)
    assert ours(pf, values) == theirs(path, values)
    defaults = {n: v for n, v in values.items() if n not in pf.inputs}
    assert ours(pf, defaults) == theirs(path, defaults)


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_export_changes_nothing_but_history(path: Path, library: Library) -> None:
    version = imported(library, path)
    exported = export_version(library, version.ref).data
    again = import_files(library, [(path.name, exported)])
    assert again.created == [] and again.unchanged == [version.ref]
    text = exported.decode("utf-8")
    front, original = front_of(text), front_of(path.read_text(encoding="utf-8"))
    meta = front.get("metadata", {})
    assert meta.get("workbench_version") == 1
    kept = {k: v for k, v in meta.items() if k not in VOLATILE_METADATA}
    if kept:
        front["metadata"] = kept
    else:
        del front["metadata"]
    if "name" not in original:  # a shorthand: the file's name is written in
        assert front.pop("name") == path.stem
    assert front == original
    assert parse_prompt(text).body == version.file.body
    assert library.get(version.ref).content == version.content


def test_display_name_and_library_key(library: Library) -> None:
    version = imported(library, DATA / "display-name.prompty")
    assert version.prompt == "travel-helper-prompt"
    assert version.file.display_name == "Travel Helper Prompt"
    assert version.file.model_id == "gpt-4o-mini"
    assert "name: Travel Helper Prompt\n" in version.content


@pytest.mark.parametrize("stem", ["body-only", "empty-front-matter", "no-name"])
def test_shorthands_take_the_file_name(stem: str, library: Library) -> None:
    assert imported(library, DATA / f"{stem}.prompty").prompt == stem


def test_references_are_kept_and_never_resolved(library: Library) -> None:
    version = imported(library, DATA / "tools-and-connection.prompty")
    assert SECRET not in version.content
    assert "${env:WB_TEST_SECRET}" in version.content
    assert "${env:WB_TEST_ENDPOINT:https://example.invalid/v1}" in version.content
    exported = export_version(library, version.ref).data.decode()
    assert SECRET not in exported
    assert front_of(exported)["metadata"]["version"] == "1.5"  # Prompty's free text, kept
    file_ref = imported(library, DATA / "file-reference.prompty")
    assert "connection: ${file:connection.json}" in file_ref.content


def test_conversation_is_inserted_where_the_template_places_it(library: Library) -> None:
    pf = imported(library, DATA / "conversation.prompty").file
    assert ours(pf, {}) == [
        ("system", "You are a weather assistant."),
        ("user", "What is the weather today?"),
        ("assistant", "Sunny and 21 degrees."),
        ("user", "And tomorrow?"),
    ]
    given = '[{"role": "user", "content": "Hi"}]'  # as text from a command line or a CSV
    assert ours(pf, {"history": given})[1] == ("user", "Hi")
    assert ours(pf, {"history": []}) == [
        ("system", "You are a weather assistant."),
        ("user", "And tomorrow?"),
    ]


def test_a_bad_conversation_is_refused_by_turn(library: Library) -> None:
    pf = imported(library, DATA / "conversation.prompty").file
    with pytest.raises(Exception, match=r"input 'history', turn 2: each turn"):
        pf.render({"history": [{"role": "user", "content": "a"}, {"role": "tool"}]})


@pytest.mark.parametrize("stem", sorted(REFUSED))
def test_out_of_scope_files_are_refused_with_a_reason(stem: str, library: Library) -> None:
    path = DATA / "refused" / f"{stem}.prompty"
    with pytest.raises(ImportRejected) as refused:
        import_files(library, [(path.name, path.read_bytes())])
    ((source, problem),) = refused.value.problems
    assert source == path.name
    assert REFUSED[stem] in problem
    assert "\n" not in problem


def test_an_old_export_still_imports(library: Library) -> None:
    old = (
        "---\nname: legacy\nmetadata:\n  technique: role\n  version: 4\n  note: from before\n"
        "  labels: [production]\n---\nuser:\nhi\n"
    )
    report = import_files(library, [("legacy.prompty", old.encode())])
    assert report.created == ["legacy@4"]
    version = library.get("legacy@production")
    assert (version.number, version.note) == (4, "from before")
    assert "version" not in version.content and "from before" not in version.content
    meta = front_of(version.export_text())["metadata"]
    assert meta == {
        "technique": "role",
        "workbench_version": 4,
        "note": "from before",
        "labels": ["production"],
    }
    # the new form imports to the very same version
    again = import_files(library, [("legacy.prompty", version.export_text().encode())])
    assert again.unchanged == ["legacy@4"] and not again.created


def test_free_text_version_is_content_not_history(library: Library) -> None:
    text = '---\nname: spec-version\nmetadata:\n  version: "2.0"\n---\nuser:\nhi\n'
    report = import_files(library, [("s.prompty", text.encode())])
    assert report.created == ["spec-version@1"]
    assert "version: '2.0'" in library.get("spec-version@1").content


def test_a_name_that_cannot_be_a_key_is_refused() -> None:
    for bad in ("../../etc", "???", "x" * 201):
        with pytest.raises(Exception, match="is not usable"):
            parse_prompt(f"---\nname: '{bad}'\n---\nhi\n")
