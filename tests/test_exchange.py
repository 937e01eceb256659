"""Export and import: files with their history, deterministic zips, exact round trips."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import PromptText, build_prompt_text, count_versions
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from workbench import exchange
from workbench.errors import ImportRejected, NotFoundError, WorkbenchError
from workbench.exchange import (
    BUILTINS_STATE_KEY,
    ImportReport,
    export_library,
    export_prompt,
    export_version,
    export_versions,
    import_files,
    load_builtins,
    write_export,
)
from workbench.library import Library, content_hash
from workbench.store import AppState, Prompt, PromptVersion, Store, utcnow
from workbench.templates import MAX_FILE_BYTES, parse_prompt


def body(n: object) -> str:
    return f"system:\nYou are version {n}.\n\nuser:\n{{{{ text }}}}\n"


def zip_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def build_library(library: Library, prompt_text: PromptText) -> None:
    """Two prompts; 'alpha' goes A, B, A (a restore) and has labels moved around."""
    library.save(prompt_text("alpha", body=body("A")), "A")
    library.save(prompt_text("alpha", body=body("B")), "B: shorter")
    library.restore("alpha@1")
    library.save(prompt_text("alpha", body=body("C")), "C")
    library.set_label("alpha@2", "production")
    library.set_label("alpha@3", "production")  # moved
    library.set_label("alpha@3", "candidate")
    library.set_label("alpha@4", "experiment")
    library.remove_label("alpha", "experiment")
    library.save(
        prompt_text(
            "beta",
            body="Continue: {{ text }}",
            model={"apiType": "completion", "options": {"temperature": 0.3}},
            metadata={"technique": "zero-shot"},
        ),
        "",
    )
    library.save(prompt_text("beta", body="Go on: {{ text }}", model={"apiType": "completion"}))
    library.set_label("beta@1", "production")


@pytest.fixture
def full_library(library: Library, prompt_text: PromptText) -> Library:
    build_library(library, prompt_text)
    return library


@pytest.fixture
def fresh_library(make_store: Callable[[str], Store]) -> Callable[[str], Library]:
    """Another, empty library (as on another machine)."""
    return lambda name: Library(make_store(name))


# --- export ----------------------------------------------------------------------------------


def test_export_version_has_history(full_library: Library) -> None:
    exported = export_version(full_library, "alpha@3")
    assert exported.filename == "alpha.prompty"
    assert exported.media_type == "text/plain"
    pf = parse_prompt(exported.data.decode("utf-8"))
    assert pf.metadata == {
        "workbench_version": 3,
        "note": "restored from v1",
        "labels": ["candidate", "production"],
    }
    # the content is exactly the stored version's
    assert pf.canonical_text() == full_library.get("alpha@3").content


def test_export_version_by_label(full_library: Library) -> None:
    pf = parse_prompt(export_version(full_library, "beta@production").data.decode())
    assert pf.metadata["workbench_version"] == 1
    assert pf.metadata["technique"] == "zero-shot"
    assert "note" not in pf.metadata  # an empty note is not written


def test_export_prompt_zip(full_library: Library) -> None:
    exported = export_prompt(full_library, "alpha")
    assert exported.filename == "alpha.zip"
    assert exported.media_type == "application/zip"
    entries = zip_entries(exported.data)
    assert list(entries) == [f"alpha/v{n}.prompty" for n in range(1, 5)]
    for n in range(1, 5):
        expected = full_library.get(f"alpha@{n}").export_text().encode("utf-8")
        assert entries[f"alpha/v{n}.prompty"] == expected


def test_export_library_zip(full_library: Library) -> None:
    exported = export_library(full_library)
    assert exported.filename == "prompt-library.zip"
    assert list(zip_entries(exported.data)) == [
        "alpha/v1.prompty",
        "alpha/v2.prompty",
        "alpha/v3.prompty",
        "alpha/v4.prompty",
        "beta/v1.prompty",
        "beta/v2.prompty",
    ]
    only_beta = export_library(full_library, ["beta"])
    assert list(zip_entries(only_beta.data)) == ["beta/v1.prompty", "beta/v2.prompty"]
    with pytest.raises(NotFoundError, match="no prompt named 'gamma'"):
        export_library(full_library, ["beta", "gamma"])


def test_exports_are_deterministic(full_library: Library) -> None:
    assert export_library(full_library).data == export_library(full_library).data
    assert export_prompt(full_library, "alpha").data == export_prompt(full_library, "alpha").data
    with zipfile.ZipFile(io.BytesIO(export_library(full_library).data)) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.compress_type == zipfile.ZIP_DEFLATED


def test_write_export(full_library: Library, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = write_export(export_library(full_library), folder)
    assert target == folder / "prompt-library.zip"
    single = write_export(export_version(full_library, "alpha@1"), folder)
    assert single == folder / "alpha.prompty"
    named = write_export(export_version(full_library, "alpha@1"), folder / "chosen.prompty")
    assert named.read_bytes() == single.read_bytes()


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_is_byte_identical(
    full_library: Library, fresh_library: Callable[[str], Library]
) -> None:
    first = export_library(full_library).data
    other = fresh_library("other")
    report = import_files(other, [("prompt-library.zip", first)])
    assert sorted(report.created) == [
        "alpha@1",
        "alpha@2",
        "alpha@3",
        "alpha@4",
        "beta@1",
        "beta@2",
    ]
    second = export_library(other).data
    assert second == first
    assert zip_entries(second) == zip_entries(first)
    for name in ("alpha", "beta"):
        assert export_prompt(other, name).data == export_prompt(full_library, name).data
        for v in full_library.versions(name):
            assert export_version(other, v.ref).data == export_version(full_library, v.ref).data


def test_import_preserves_numbers_notes_parents_labels(
    full_library: Library, fresh_library: Callable[[str], Library]
) -> None:
    other = fresh_library("other")
    import_files(other, [("lib.zip", export_library(full_library).data)])
    for name in ("alpha", "beta"):
        theirs = [(v.number, v.note, v.content, v.labels) for v in other.versions(name)]
        ours = [(v.number, v.note, v.content, v.labels) for v in full_library.versions(name)]
        assert theirs == ours
    assert other.get("alpha@3").content == other.get("alpha@1").content  # the restore survives
    assert [v.parent for v in other.versions("alpha")] == [None, 1, 2, 3]
    assert other.get("alpha@production").number == 3
    assert other.get("beta@production").number == 1


NOTES = [
    "two\nlines",
    "ends with a newline\n",
    "  leading spaces",
    "trailing space ",
    "tab\there",
    "émoji 🎉 and 日本語",
    "key: value",
    "- looks like a list",
    "# looks like a comment",
    "'single' and \"double\" quotes",
    "yes",
    "123",
    "null",
    "line with trailing space \nnext",
]


def test_round_trip_keeps_awkward_notes_and_bodies(
    library: Library, prompt_text: PromptText, fresh_library: Callable[[str], Library]
) -> None:
    bodies = [
        "user:\n{{ text }}",  # no final newline
        "\n\nuser:\n{{ text }}\n\n\n",  # blank lines around
        "user:\n---\nA markdown rule above and trailing spaces   \n{{ text }}\n",
        "user:\n\ttabs\tand unicode ✓\n{{ text }}\n",
    ]
    for i, note in enumerate(NOTES):
        library.save(prompt_text(body=bodies[i % len(bodies)] + "\n" * (i // len(bodies))), note)
    first = export_library(library).data
    other = fresh_library("other")
    import_files(other, [("lib.zip", first)])
    assert [v.note for v in other.versions("demo")] == NOTES
    assert [v.content for v in other.versions("demo")] == [
        v.content for v in library.versions("demo")
    ]
    assert export_library(other).data == first


def test_import_report(full_library: Library, fresh_library: Callable[[str], Library]) -> None:
    other = fresh_library("other")
    report = import_files(other, [("lib.zip", export_library(full_library).data)])
    assert report.unchanged == []
    assert sorted(report.labels) == [
        "alpha@candidate → v3",
        "alpha@production → v3",
        "beta@production → v1",
    ]
    assert report.skipped == []
    assert report.summary() == "6 new versions, 0 already present, 3 labels set"


def test_importing_the_same_zip_twice_changes_nothing(
    full_library: Library, fresh_library: Callable[[str], Library]
) -> None:
    data = export_library(full_library).data
    other = fresh_library("other")
    import_files(other, [("lib.zip", data)])
    history_before = other.label_history("alpha") + other.label_history("beta")
    report = import_files(other, [("lib.zip", data)])
    assert report.created == []
    assert len(report.unchanged) == 6
    assert report.labels == [], "labels moved although nothing changed"
    assert count_versions(other.store) == 6
    assert other.label_history("alpha") + other.label_history("beta") == history_before
    assert export_library(other).data == data


def test_reimport_into_source_library_changes_nothing(full_library: Library) -> None:
    data = export_library(full_library).data
    report = import_files(full_library, [("lib.zip", data)])
    assert report.created == []
    assert report.labels == []
    assert export_library(full_library).data == data


def test_import_into_existing_prompt_adds_only_new_versions(
    library: Library, prompt_text: PromptText, fresh_library: Callable[[str], Library]
) -> None:
    # Somewhere else, alpha has A, B, C.
    elsewhere = fresh_library("elsewhere")
    for n in "ABC":
        elsewhere.save(prompt_text("alpha", body=body(n)), f"note {n}")
    # Here, alpha has A and a local D.
    library.save(prompt_text("alpha", body=body("A")), "local A")
    library.save(prompt_text("alpha", body=body("D")), "local D")
    report = import_files(library, [("alpha.zip", export_prompt(elsewhere, "alpha").data)])
    assert report.unchanged == ["alpha@1"]
    assert report.created == ["alpha@3", "alpha@4"]  # B and C, after the local versions
    versions = library.versions("alpha")
    assert [v.number for v in versions] == [1, 2, 3, 4]
    assert [v.note for v in versions] == ["local A", "local D", "note B", "note C"]
    assert len({v.content_hash for v in versions}) == 4  # no duplicate content
    assert [s.name for s in library.list_prompts()] == ["alpha"]  # no duplicate prompt


def test_import_keeps_gaps_in_numbers(library: Library, prompt_text: PromptText) -> None:
    text = prompt_text(metadata={"version": 5, "note": "fifth"})
    report = import_files(library, [("demo.prompty", text.encode())])
    assert report.created == ["demo@5"]
    assert library.get("demo").number == 5
    assert library.get("demo@5").note == "fifth"


def test_import_loose_files_and_zip_together(
    library: Library, prompt_text: PromptText, fresh_library: Callable[[str], Library]
) -> None:
    source = fresh_library("source")
    source.save(prompt_text("zipped"))
    files = [
        ("a.prompty", prompt_text("loose").encode()),
        ("z.zip", export_library(source).data),
    ]
    report = import_files(library, files)
    assert sorted(report.created) == ["loose@1", "zipped@1"]


def test_import_skips_non_prompt_files_in_zip(library: Library, prompt_text: PromptText) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("demo/v1.prompty", prompt_text())
        zf.writestr("README.md", "# notes")
        zf.writestr("__MACOSX/._v1.prompty", b"\x00\x05")
        zf.writestr("demo/", "")
    report = import_files(library, [("x.zip", buf.getvalue())])
    assert report.created == ["demo@1"]
    assert report.skipped == ["x.zip:README.md"]
    assert "1 non-prompt file ignored" in report.summary()


def test_import_of_nothing_is_rejected(library: Library) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.md", "# notes")
    with pytest.raises(ImportRejected, match=r"no \.prompty files found"):
        import_files(library, [("x.zip", buf.getvalue())])


def test_conflicting_versions_in_one_import_are_rejected(
    library: Library, prompt_text: PromptText
) -> None:
    one = prompt_text(body=body(1), metadata={"version": 2})
    two = prompt_text(body=body(2), metadata={"version": 2})
    with pytest.raises(ImportRejected) as info:
        import_files(library, [("one.prompty", one.encode()), ("two.prompty", two.encode())])
    assert info.value.problems == [
        ("two.prompty", "demo@2 differs from the same version in one.prompty")
    ]
    assert count_versions(library.store) == 0


def test_same_version_twice_in_one_import_is_fine(
    library: Library, prompt_text: PromptText
) -> None:
    one = prompt_text(metadata={"version": 1}).encode()
    report = import_files(library, [("a.prompty", one), ("b.prompty", one)])
    assert report.created == ["demo@1"]
    assert count_versions(library.store) == 1


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"version": 0}, "metadata.version must be a whole number ≥ 1, got 0"),
        ({"workbench_version": 0}, "metadata.workbench_version must be a whole number ≥ 1, got 0"),
        (
            {"workbench_version": "three"},
            "metadata.workbench_version must be a whole number ≥ 1, got 'three'",
        ),
        (
            {"workbench_version": True},
            "metadata.workbench_version must be a whole number ≥ 1, got True",
        ),
        ({"note": ["a"]}, "metadata.note must be text"),
        ({"labels": "production"}, "metadata.labels must be a list of label names"),
        ({"labels": ["Bad Label"]}, "label 'Bad Label' is not usable"),
        ({"labels": ["latest"]}, "label 'latest' is not usable"),
    ],
)
def test_bad_history_fields_are_rejected(
    metadata: dict[str, object], problem: str, library: Library, prompt_text: PromptText
) -> None:
    text = prompt_text(metadata=metadata).encode()
    with pytest.raises(ImportRejected) as info:
        import_files(library, [("f.prompty", text)])
    [(source, message)] = info.value.problems
    assert source == "f.prompty"
    assert problem in message
    assert count_versions(library.store) == 0


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"frequencyPenalty": 3}, "model option 'frequencyPenalty' cannot be used"),
        ({"temperature": "warm"}, "model option 'temperature' cannot be used"),
        (
            {"additionalProperties": {"repetitionPenalty": 0}},
            "'additionalProperties.repetitionPenalty' cannot be used",
        ),
    ],
)
def test_option_values_no_run_could_use_are_rejected(
    options: dict[str, object], problem: str, library: Library, prompt_text: PromptText
) -> None:
    text = prompt_text(model={"options": options}).encode()
    with pytest.raises(ImportRejected) as info:
        import_files(library, [("f.prompty", text)])
    [(source, message)] = info.value.problems
    assert source == "f.prompty" and problem in message and message.startswith("line ")
    assert count_versions(library.store) == 0


def test_options_the_workbench_does_not_use_still_import(
    library: Library, prompt_text: PromptText
) -> None:
    # Files from other Prompty tools keep their options (lint names the ignored ones).
    options = {"responseFormat": {"type": "json_object"}, "additionalProperties": {"x": 1}}
    text = prompt_text(model={"options": options}).encode()
    import_files(library, [("f.prompty", text)])
    assert count_versions(library.store) == 1


# --- built-ins -------------------------------------------------------------------------------


def write_builtins(folder: Path, prompt_text: PromptText) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "one.prompty").write_text(prompt_text("one"), encoding="utf-8")
    (folder / "two.prompty").write_text(
        prompt_text("two", metadata={"labels": ["production"]}), encoding="utf-8"
    )
    (folder / "notes.txt").write_text("not a prompt", encoding="utf-8")


def builtins_state(store: Store) -> str | None:
    with store.read() as s:
        row = s.get(AppState, BUILTINS_STATE_KEY)
        return None if row is None else row.value


def test_load_builtins_once(library: Library, prompt_text: PromptText, tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    write_builtins(folder, prompt_text)
    report = load_builtins(library, folder)
    assert isinstance(report, ImportReport)
    assert sorted(report.created) == ["one@1", "two@1"]
    assert library.get("one").note == "built-in"
    assert library.get("two@production").number == 1
    assert builtins_state(library.store) is not None

    assert load_builtins(library, folder) is None  # second call: nothing happens
    assert count_versions(library.store) == 2

    # a person who deletes every built-in does not get them back on the next start
    (folder / "three.prompty").write_text(prompt_text("three"), encoding="utf-8")
    assert load_builtins(library, folder) is None
    assert [p.name for p in library.list_prompts()] == ["one", "two"]


def test_load_builtins_skips_a_library_that_has_prompts(
    library: Library, prompt_text: PromptText, tmp_path: Path
) -> None:
    library.save(prompt_text("mine"))
    folder = tmp_path / "prompts"
    write_builtins(folder, prompt_text)
    report = load_builtins(library, folder)
    assert report is not None and report.created == []
    assert [p.name for p in library.list_prompts()] == ["mine"]
    assert builtins_state(library.store) is not None  # the state is recorded anyway
    assert load_builtins(library, folder) is None


def test_load_builtins_without_folder(library: Library, tmp_path: Path) -> None:
    report = load_builtins(library, tmp_path / "missing")
    assert report is not None and report.created == []
    assert builtins_state(library.store) is not None


def test_bad_builtin_file_loads_nothing_and_records_nothing(
    library: Library, prompt_text: PromptText, tmp_path: Path
) -> None:
    folder = tmp_path / "prompts"
    write_builtins(folder, prompt_text)
    (folder / "broken.prompty").write_text("---\nname: broken\n---\n{{ oops\n", encoding="utf-8")
    with pytest.raises(ImportRejected, match=r"broken\.prompty"):
        load_builtins(library, folder)
    assert count_versions(library.store) == 0
    assert builtins_state(library.store) is None
    with library.store.read() as s:
        assert s.scalars(select(AppState)).all() == []


# --- limits and large libraries ----------------------------------------------------------------


def seed_versions(library: Library, prompts: int, versions: int) -> None:
    """Many small versions written straight into the table: saving 5,000 one by one is slow.

    Each version is the same front matter with its own body line (no parents: they do not
    travel in the files).
    """
    rows = []
    for p in range(prompts):
        head = parse_prompt(build_prompt_text(f"p{p:03d}", body="")).canonical_text()
        for v in range(1, versions + 1):
            content = f"{head}user:\nv{v} {{{{ text }}}}\n"
            rows.append(
                {
                    "prompt_id": p + 1,
                    "number": v,
                    "content": content,
                    "content_hash": content_hash(content),
                    "description": "A demo prompt.",
                    "note": f"note {v}",
                    "created_at": utcnow(),
                }
            )

    def write(s: Session) -> None:
        s.execute(
            insert(Prompt),
            [{"id": p + 1, "name": f"p{p:03d}", "created_at": utcnow()} for p in range(prompts)],
        )
        s.execute(insert(PromptVersion), rows)

    library.store.transaction(write)


def test_a_library_of_more_than_5000_versions_goes_through_export_and_import(
    library: Library, fresh_library: Callable[[str], Library]
) -> None:
    seed_versions(library, 41, 122)  # 5,002 versions; the limit used to be 5,000
    library.set_label("p000@3", "production")
    first = export_library(library).data
    other = fresh_library("other")
    report = import_files(other, [("prompt-library.zip", first)])
    assert len(report.created) == 5002
    assert other.get("p040@122").export_text() == library.get("p040@122").export_text()
    assert other.get("p000@production").number == 3


@pytest.mark.parametrize("export", ["library", "prompt", "versions"])
def test_export_refuses_more_versions_than_an_import_takes(
    export: str, library: Library, prompt_text: PromptText, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        library.save(prompt_text("alpha", body=body(n)))
    monkeypatch.setattr(exchange, "MAX_ZIP_ENTRIES", 4)

    def run() -> bytes:
        if export == "library":
            return export_library(library).data
        if export == "prompt":
            return export_prompt(library, "alpha").data
        return export_versions(library, [f"alpha@{n}" for n in range(1, 6)]).data

    with pytest.raises(WorkbenchError) as info:
        run()
    assert str(info.value) == (
        "5 versions are more than an import takes (4 files in one zip): "
        "export fewer prompts or versions at a time"
    )
    monkeypatch.setattr(exchange, "MAX_ZIP_ENTRIES", 5)
    assert len(zip_entries(run())) == 5


def test_export_refuses_more_bytes_than_an_import_takes(
    full_library: Library, fresh_library: Callable[[str], Library], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = export_library(full_library).data
    total = sum(map(len, zip_entries(data).values()))
    monkeypatch.setattr(exchange, "MAX_ZIP_TOTAL_BYTES", total - 1)
    with pytest.raises(
        WorkbenchError, match=r"^these versions unpack to more than an import takes"
    ):
        export_library(full_library)
    other = fresh_library("other")
    with pytest.raises(ImportRejected, match=r"lib\.zip: unpacks to "):
        import_files(other, [("lib.zip", data)])
    monkeypatch.setattr(exchange, "MAX_ZIP_TOTAL_BYTES", total)
    assert export_library(full_library).data == data
    import_files(other, [("lib.zip", data)])


def test_export_refuses_a_version_whose_file_an_import_would_refuse(
    library: Library, prompt_text: PromptText
) -> None:
    """The content passed the 1 MB check when saved; its note can push the file past it."""
    padding = "x" * (MAX_FILE_BYTES - 300)
    library.save(prompt_text("huge", body=f"user:\n{padding}\n{{{{ text }}}}\n"), "n" * 500)
    [version] = library.versions("huge")
    assert len(version.export_text().encode()) > MAX_FILE_BYTES
    message = (
        r"^huge@1 is 1024\.\d KB as a file with its history; an import takes files up to "
        r"1024 KB: shorten its note"
    )
    with pytest.raises(WorkbenchError, match=message):
        export_version(library, "huge@1")
    with pytest.raises(WorkbenchError, match=message):
        export_library(library)


def test_import_makes_a_few_queries_per_prompt_not_several_per_version(
    library: Library, fresh_library: Callable[[str], Library]
) -> None:
    """An import of 4,000 versions took 20 s, mostly seven queries and a flush per version."""
    seed_versions(library, 3, 40)
    for p in range(3):
        library.set_label(f"p{p:03d}@40", "production")
    data = export_library(library).data
    other = fresh_library("other")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(other.store.engine, "before_cursor_execute", count)
    report = import_files(other, [("lib.zip", data)])
    event.remove(other.store.engine, "before_cursor_execute", count)
    assert len(report.created) == 120
    inserts = [s for s in statements if s.startswith("INSERT INTO prompt_version")]
    assert len(inserts) == 120
    assert len(statements) - len(inserts) <= 3 * 8, statements
    assert export_library(other).data == data


def test_an_edited_export_that_moves_a_label_says_so(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text("moving", body=body(1)))
    library.save(prompt_text("moving", body=body(2)))
    library.set_label("moving@2", "production")
    edited = library.get("moving@1").export_text()
    edited = edited.replace("metadata:\n", "metadata:\n  labels: [production, beta]\n", 1)
    report = import_files(library, [("moving.prompty", edited.encode())])
    assert report.unchanged == ["moving@1"]
    assert report.moved == ["moving@production v2 → v1"]
    assert report.labels == ["moving@beta → v1"]
    assert report.summary() == (
        "0 new versions, 1 already present, 1 label set, 1 label moved: moving@production v2 → v1"
    )
