"""The Library page: prompts, versions, labels, downloads and uploads, checked against the store."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit.testing.v1.app_test as app_test_module
from conftest import BUILTIN_PROMPTS_DIR, app_test, build_prompt_text, count_versions, shown
from streamlit.runtime.memory_media_file_storage import MemoryFile, MemoryMediaFileStorage

from workbench.exchange import export_library, export_versions
from workbench.library import Library
from workbench.workspace import open_library

PAGE = "pages/5_Library.py"
PROMPT_COLUMNS = ("name", "technique", "mode", "versions", "latest", "labels", "description")


class RecordingStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage, kept after the run so a test can read downloads."""

    instances: list[RecordingStorage] = []  # noqa: RUF012 — filled per test by the fixture

    def __init__(self, media_endpoint: str) -> None:
        super().__init__(media_endpoint)
        RecordingStorage.instances.append(self)


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], MemoryFile]]:
    """url of a download button → the file behind it (bytes, mimetype, file name)."""
    monkeypatch.setattr(RecordingStorage, "instances", [])
    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", RecordingStorage)

    def file_at(url: str) -> MemoryFile:
        file_id = url.rsplit("/", 1)[-1].split(".", 1)[0]
        return RecordingStorage.instances[-1].get_file(file_id)

    yield file_at


@pytest.fixture
def lib(app_env: Path) -> Library:
    """The same library the page opens (its database, with the real built-ins)."""
    return open_library()


def page(lib: Library) -> Any:
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    return at


def table(at: Any, *columns: str) -> pd.DataFrame:
    """The dataframe on the page with exactly these columns."""
    found = [d.value for d in at.dataframe if list(d.value.columns) == list(columns)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    frame: pd.DataFrame = found[0]
    return frame


def choose(at: Any, name: str) -> Any:
    at.selectbox(key="library_prompt").set_value(name).run()
    assert not at.exception, at.exception
    return at


def texts(elements: Any) -> list[str]:
    return [shown(str(e.value)) for e in elements]


def remove_box(at: Any) -> Any:
    """The "Label to remove" box (its key changes with the labels, so it is found by label)."""
    (box,) = [s for s in at.selectbox if s.label == "Label to remove"]
    return box


def problem_lines(at: Any) -> list[str]:
    """An import's problems as the page lists them, one whole line each."""
    lists = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert len(lists) == 1, lists
    return [shown(line[2:]) for line in lists[0].split("\n")]


def new_version(lib: Library, name: str, note: str) -> int:
    v1 = lib.get(name)
    edited = v1.file.canonical_text().replace("\n---\n", "\n---\n(edited)\n", 1)
    assert edited != v1.file.canonical_text()
    return lib.save(edited, note).version.number


# --- the prompt table and the timeline ---------------------------------------------------------


def test_table_lists_every_builtin_with_technique_mode_and_counts(lib: Library) -> None:
    at = page(lib)
    prompts = table(at, *PROMPT_COLUMNS)
    files = sorted(p.stem for p in BUILTIN_PROMPTS_DIR.glob("*.prompty"))
    assert sorted(prompts["name"]) == files
    stored = {p.name: p for p in lib.list_prompts()}
    for row in prompts.to_dict("records"):
        summary = stored[row["name"]]
        assert (row["technique"], row["mode"], row["versions"]) == (
            summary.technique,
            summary.mode,
            summary.versions,
        )
    assert set(prompts["mode"]) <= {"chat", "completion"}
    assert any(prompts["technique"].str.contains("few-shot"))
    assert not at.error


def test_timeline_shows_each_version_with_note_hash_and_parent(lib: Library) -> None:
    assert new_version(lib, "zero-shot-translation", "shorter instructions") == 2
    at = choose(page(lib), "zero-shot-translation")
    timeline = table(at, "version", "created", "note", "hash", "labels", "parent")
    v1, v2 = lib.versions("zero-shot-translation")
    assert timeline.to_dict("records") == [
        {
            "version": "v2",
            "created": f"{v2.created_at:%Y-%m-%d %H:%M} UTC",
            "note": "shorter instructions",
            "hash": v2.content_hash[:12],
            "labels": "",
            "parent": "v1",
        },
        {
            "version": "v1",
            "created": f"{v1.created_at:%Y-%m-%d %H:%M} UTC",
            "note": "built-in",
            "hash": v1.content_hash[:12],
            "labels": "",
            "parent": "",
        },
    ]
    assert "No label has been set on this prompt yet." in texts(at.caption)


# --- labels --------------------------------------------------------------------------------------


def test_setting_moving_and_removing_a_label(lib: Library) -> None:
    name = "zero-shot-sentiment"
    new_version(lib, name, "v2")
    at = choose(page(lib), name)

    at.selectbox(key=f"library_label_version:{name}").set_value(1)
    at.text_input(key="library_label_name").input("production")
    at.button(key="library_set_label").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert lib.get(f"{name}@production").number == 1
    assert f"{name}: label production set on v1." in texts(at.success)
    assert table(at, "when", "label", "change")["change"].tolist() == ["set on v1"]
    assert "production → v1" in table(at, *PROMPT_COLUMNS).set_index("name").loc[name, "labels"]

    at.selectbox(key=f"library_label_version:{name}").set_value(2)
    at.button(key="library_set_label").click().run()
    assert lib.get(f"{name}@production").number == 2
    assert table(at, "when", "label", "change")["change"].tolist() == [
        "moved v1 → v2",
        "set on v1",
    ]
    timeline = table(at, "version", "created", "note", "hash", "labels", "parent")
    assert timeline["labels"].tolist() == ["production", ""]

    remove_box(at).set_value("production")
    at.button(key="library_remove").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert lib.list_prompts() and all(not p.labels for p in lib.list_prompts())
    moves = lib.label_history(name)
    assert [(m.from_version, m.to_version) for m in moves] == [(None, 1), (1, 2), (2, None)]
    assert table(at, "when", "label", "change")["change"].tolist()[0] == "removed from v2"
    assert f"{name}: label production removed from v2." in texts(at.success)
    assert f"{name} has no labels." in texts(at.caption)


@pytest.mark.parametrize(
    ("label", "message"),
    [("Bad Label", "is not usable"), ("latest", "is not usable"), ("", "type a label name")],
)
def test_an_unusable_label_is_refused_with_a_message(
    lib: Library, label: str, message: str
) -> None:
    at = choose(page(lib), "json-answer")
    at.text_input(key="library_label_name").input(label)
    at.button(key="library_set_label").click().run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value
    assert all(not p.labels for p in lib.list_prompts())


# --- files out -----------------------------------------------------------------------------------


def test_version_file_is_shown_as_text_and_downloads_exactly(
    lib: Library, downloads: Callable[[str], MemoryFile]
) -> None:
    name = "few-shot-sentiment"
    v1 = lib.get(name)
    edited = v1.file.canonical_text().replace(
        "\n---\n", "\n---\n<script>alert(1)</script> **x**\n", 1
    )
    lib.save(edited, "risky text")
    lib.set_label(f"{name}@2", "staging")

    at = choose(page(lib), name)
    assert at.selectbox(key=f"library_file_version:{name}").value == 2
    expected = lib.get(f"{name}@2").export_text()
    assert expected.rstrip("\n") in texts(at.code)  # st.code drops the final newline
    assert "<script>alert(1)</script> **x**" in expected
    assert not any("<script>" in m for m in texts(at.markdown))

    button = at.get("download_button")
    version_button = next(b for b in button if b.proto.id.endswith("library_download_version"))
    assert version_button.proto.label == "Download v2 (.prompty)"
    file = downloads(version_button.proto.url)
    assert file.content == expected.encode("utf-8")
    assert file.filename == f"{name}.prompty"

    at.selectbox(key=f"library_file_version:{name}").set_value(1).run()
    assert lib.get(f"{name}@1").export_text().rstrip("\n") in texts(at.code)
    version_button = next(
        b for b in at.get("download_button") if b.proto.id.endswith("library_download_version")
    )
    v1_text = lib.get(f"{name}@1").export_text()
    assert downloads(version_button.proto.url).content == v1_text.encode("utf-8")


def zip_button(at: Any) -> Any:
    return next(b for b in at.get("download_button") if b.proto.id.endswith("library_download_zip"))


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist()


def test_zip_of_a_selection_and_of_the_whole_library(
    lib: Library, downloads: Callable[[str], MemoryFile]
) -> None:
    new_version(lib, "json-answer", "v2")
    at = page(lib)
    whole = zip_button(at)
    count = len(lib.all_versions())
    assert whole.proto.label == f"Download the whole library: {count} versions (.zip)"
    assert downloads(whole.proto.url).content == export_library(lib).data

    at.multiselect(key="library_export_prompts").select("json-answer")
    at.multiselect(key="library_export_versions").select("zero-shot-sentiment@1").run()
    assert not at.exception
    chosen = zip_button(at)
    assert chosen.proto.label == "Download 3 versions (.zip)"
    file = downloads(chosen.proto.url)
    assert file.filename == "prompt-versions.zip"
    assert zip_names(file.content) == [
        "json-answer/v1.prompty",
        "json-answer/v2.prompty",
        "zero-shot-sentiment/v1.prompty",
    ]
    assert (
        file.content
        == export_versions(lib, ["json-answer@1", "json-answer@2", "zero-shot-sentiment@1"]).data
    )


# --- files in ------------------------------------------------------------------------------------


def upload(at: Any, *files: tuple[str, bytes]) -> Any:
    at.file_uploader(key="library_upload").set_value(
        [(name, data, "application/octet-stream") for name, data in files]
    ).run()
    at.button(key="library_import").click().run()
    assert not at.exception, at.exception
    return at


def test_import_reports_new_and_unchanged_versions(lib: Library) -> None:
    at = page(lib)
    assert at.button(key="library_import").disabled
    new = build_prompt_text("brand-new", metadata={"technique": "zero-shot"})
    existing = lib.get("json-answer").export_text()
    at = upload(at, ("brand-new.prompty", new.encode()), ("json-answer.prompty", existing.encode()))

    assert not at.error, texts(at.error)
    assert "Imported: 1 new version, 1 already present." in texts(at.success)
    assert table(at, "version", "result").to_dict("records") == [
        {"version": "brand-new@1", "result": "new version"},
        {"version": "json-answer@1", "result": "already present"},
    ]
    assert lib.get("brand-new").content == lib.get("brand-new@1").content
    assert [v.number for v in lib.versions("json-answer")] == [1]
    assert "brand-new" in table(at, *PROMPT_COLUMNS)["name"].tolist()


def test_a_malformed_zip_writes_nothing_and_shows_every_problem(lib: Library) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("good/v1.prompty", build_prompt_text("good-one"))
        zf.writestr("bad/v1.prompty", "---\nname: bad-one\ninputs: [\n---\nuser:\nhi\n")
    loose_bad = build_prompt_text("loose", metadata={"version": 0})
    before = count_versions(lib.store)
    names_before = {p.name for p in lib.list_prompts()}

    at = upload(
        page(lib),
        ("mixed.zip", buf.getvalue()),
        ("loose.prompty", loose_bad.encode()),
        ("fine.prompty", build_prompt_text("fine").encode()),
    )
    assert count_versions(lib.store) == before
    assert {p.name for p in lib.list_prompts()} == names_before
    assert len(at.error) == 1
    assert at.error[0].value.startswith(
        "Import rejected, nothing was written: 2 problems in 2 files."
    )
    problems = problem_lines(at)
    assert [p.split(": ", 1)[0] for p in problems] == ["mixed.zip:bad/v1.prompty", "loose.prompty"]
    assert "metadata.version must be a whole number" in problems[1]
    assert problems[0].split(": ", 1)[1]
    assert not at.success


def test_a_file_that_is_not_a_zip_is_named(lib: Library) -> None:
    at = upload(page(lib), ("broken.zip", b"PK\x03\x04 not really a zip"))
    assert problem_lines(at) == ["broken.zip: not a valid zip file"]
    assert "1 problem in 1 file." in at.error[0].value
    assert [p.name for p in lib.list_prompts()] == sorted(
        p.stem for p in BUILTIN_PROMPTS_DIR.glob("*.prompty")
    )


def test_import_of_a_zip_sets_its_labels_and_lists_ignored_files(lib: Library) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("zipped/v1.prompty", build_prompt_text("zipped", metadata={"labels": ["prod"]}))
        zf.writestr("**notes**.md", "not a prompt")
    at = upload(page(lib), ("bundle.zip", buf.getvalue()))
    assert not at.error, texts(at.error)
    assert "Imported: 1 new version, 0 already present, 1 label set, " in texts(at.success)[0]
    assert "Labels set: zipped@prod → v1" in texts(at.caption)
    assert "Ignored (not .prompty): bundle.zip:**notes**.md" in texts(at.text)
    assert lib.get("zipped@prod").number == 1


def test_the_label_to_remove_box_shows_the_labels_as_they_are_now(lib: Library) -> None:
    name = "zero-shot-sentiment"
    new_version(lib, name, "v2")
    lib.set_label(f"{name}@1", "production")
    lib.set_label(f"{name}@1", "candidate")
    at = choose(page(lib), name)
    before = remove_box(at)
    assert before.options == ["candidate (v1)", "production (v1)"]

    at.selectbox(key=f"library_label_version:{name}").set_value(2)
    at.text_input(key="library_label_name").input("production")
    at.button(key="library_set_label").click().run()
    after = remove_box(at)
    assert after.options == ["candidate (v1)", "production (v2)"]
    # A new box, not the old one with a new list: the browser keeps showing what an old box
    # held ("production (v1)") until it is touched.
    assert after.proto.id != before.proto.id

    after.set_value("candidate")
    at.button(key="library_remove").click().run()
    assert remove_box(at).options == ["production (v2)"]


def test_reimporting_an_edited_export_says_which_labels_it_moved(lib: Library) -> None:
    name = "zero-shot-sentiment"
    new_version(lib, name, "v2")
    lib.set_label(f"{name}@2", "production")
    lib.set_label(f"{name}@2", "candidate")
    exported = lib.get(f"{name}@1").export_text()
    # the export of v1, edited to carry production and a new label, as a person might do
    assert "labels:" not in exported
    edited = exported.replace("metadata:\n", "metadata:\n  labels: [production, beta]\n", 1)
    assert edited != exported
    at = upload(page(lib), (f"{name}.prompty", edited.encode()))
    assert not at.error, texts(at.error)
    assert lib.get(f"{name}@production").number == 1
    (warning,) = texts(at.warning)
    assert warning == f"1 label moved by this import: {name}@production v2 → v1"
    assert f"1 label moved: {name}@production v2 → v1" in texts(at.success)[0]
    assert f"Labels set: {name}@beta → v1" in texts(at.caption)


def test_a_long_import_problem_is_shown_whole(lib: Library) -> None:
    from workbench.errors import ImportRejected
    from workbench.exchange import import_files

    bad = "---\nname: long-problem\nmetadata:\n  labels: [Bad Label]\n---\nuser:\nhi\n"
    with pytest.raises(ImportRejected) as refused:
        import_files(lib, [("long.prompty", bad.encode())])
    ((source, problem),) = refused.value.problems
    assert len(problem) > 100  # longer than a table cell shows
    at = upload(page(lib), ("long.prompty", bad.encode()))
    assert problem_lines(at) == [f"{source}: {problem}"]  # whole, not cut
    assert "1 problem in 1 file." in at.error[0].value
