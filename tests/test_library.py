"""The library: immutable versions, restore, diff, refs, labels and their history, concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO_ROOT, PromptText, count_versions
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from workbench.errors import NotFoundError, WorkbenchError
from workbench.library import Library, Ref, check_label
from workbench.store import PromptVersion, Store


def body(n: object) -> str:
    return f"system:\nYou are version {n}.\n\nuser:\n{{{{ text }}}}\n"


# --- saving ----------------------------------------------------------------------------------


def test_first_save_creates_v1(library: Library, prompt_text: PromptText) -> None:
    result = library.save(prompt_text(), "first")
    assert result.created
    v = result.version
    assert (v.prompt, v.number, v.parent, v.note) == ("demo", 1, None, "first")
    assert v.ref == "demo@1"
    assert v.mode == "chat"
    assert v.description == "A demo prompt."
    assert len(v.content_hash) == 64


def test_identical_save_returns_same_version(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text(), "first")
    again = library.save(prompt_text(), "again")
    assert not again.created
    assert again.version.number == 1
    assert again.version.note == "first"
    assert len(library.versions("demo")) == 1


def test_history_fields_do_not_make_a_new_version(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text())
    exported = prompt_text(metadata={"version": 9, "note": "elsewhere", "labels": ["prod"]})
    assert not library.save(exported).created


def test_same_content_in_other_encoding_is_the_same_version(
    library: Library, prompt_text: PromptText
) -> None:
    text = prompt_text()
    library.save(text)
    for variant in (text.replace("\n", "\r\n"), "\ufeff" + text):
        result = library.save(variant)
        assert not result.created and result.version.number == 1


def test_change_creates_next_version_with_parent_and_note(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text(body=body(1)), "first")
    result = library.save(prompt_text(body=body(2)), "sharper system message")
    assert result.created
    v = result.version
    assert (v.number, v.parent, v.note) == (2, 1, "sharper system message")
    assert "You are version 2." in v.content
    assert library.get("demo@1").content != v.content


def test_save_records_technique_and_mode(library: Library, prompt_text: PromptText) -> None:
    v = library.save(
        prompt_text(
            body="{{ text }}",
            model={"apiType": "completion"},
            metadata={"technique": ["few-shot", "role"]},
        )
    ).version
    assert (v.technique, v.mode) == ("few-shot, role", "completion")


def test_restore_saves_old_content_as_new_version(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text(body=body("A")), "A")
    library.save(prompt_text(body=body("B")), "B")
    result = library.restore("demo@1")
    assert result.created
    v3 = result.version
    assert (v3.number, v3.parent, v3.note) == (3, 2, "restored from v1")
    assert v3.content == library.get("demo@1").content
    assert v3.content_hash == library.get("demo@1").content_hash
    # restoring what is already the latest changes nothing
    again = library.restore("demo@3")
    assert not again.created and again.version.number == 3


def test_restore_with_own_note(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text(body=body("A")))
    library.save(prompt_text(body=body("B")))
    assert library.restore("demo@v1", note="B broke JSON").version.note == "B broke JSON"


def test_versions_oldest_first(library: Library, prompt_text: PromptText) -> None:
    for n in range(1, 5):
        library.save(prompt_text(body=body(n)), f"n{n}")
    versions = library.versions("demo")
    assert [v.number for v in versions] == [1, 2, 3, 4]
    assert [v.parent for v in versions] == [None, 1, 2, 3]
    assert [v.note for v in versions] == ["n1", "n2", "n3", "n4"]


def test_diff_is_unified_text(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text(body=body("old")))
    library.save(prompt_text(body=body("new")))
    diff = library.diff("demo@1", "demo@2")
    lines = diff.splitlines()
    assert lines[0] == "--- demo@1"
    assert lines[1] == "+++ demo@2"
    assert lines[2].startswith("@@ ")
    assert "-You are version old." in lines
    assert "+You are version new." in lines
    assert " user:" in lines  # context
    assert library.diff("demo@1", "demo@1") == ""
    assert library.diff("demo@2", "demo@1").splitlines()[0] == "--- demo@2"


def test_diff_context_lines(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text(body=body("old")))
    library.save(prompt_text(body=body("new")))
    narrow = library.diff("demo@1", "demo@2", context=0)
    assert " user:" not in narrow.splitlines()


def test_list_prompts(library: Library, prompt_text: PromptText) -> None:
    assert library.list_prompts() == []
    library.save(prompt_text("beta", metadata={"technique": "role"}))
    for n in range(3):
        library.save(prompt_text("alpha", body=body(n), description=f"alpha {n}"))
    library.set_label("alpha@2", "production")
    library.set_label("alpha@3", "candidate")
    summaries = library.list_prompts()
    assert [s.name for s in summaries] == ["alpha", "beta"]
    alpha, beta = summaries
    assert (alpha.latest, alpha.versions, alpha.description) == (3, 3, "alpha 2")
    assert alpha.labels == {"candidate": 3, "production": 2}
    assert (beta.latest, beta.versions, beta.labels, beta.technique) == (1, 1, {}, "role")


def test_all_versions_by_name_then_number(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text("zeta"))
    library.save(prompt_text("alpha", body=body(1)))
    library.save(prompt_text("alpha", body=body(2)))
    assert [v.ref for v in library.all_versions()] == ["alpha@1", "alpha@2", "zeta@1"]


# --- refs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("demo", Ref("demo")),
        ("demo@3", Ref("demo", version=3)),
        ("demo@v3", Ref("demo", version=3)),
        ("demo@V12", Ref("demo", version=12)),
        ("demo@latest", Ref("demo")),
        ("demo@", Ref("demo")),
        ("demo@production", Ref("demo", label="production")),
        ("demo@v2-beta", Ref("demo", label="v2-beta")),
        ("  demo@3  ", Ref("demo", version=3)),
    ],
)
def test_ref_parse(text: str, expected: Ref) -> None:
    assert Ref.parse(text) == expected


@pytest.mark.parametrize(
    ("ref", "text"),
    [(Ref("d"), "d"), (Ref("d", version=2), "d@2"), (Ref("d", label="prod"), "d@prod")],
)
def test_ref_str(ref: Ref, text: str) -> None:
    assert str(ref) == text


@pytest.mark.parametrize("bad", ["", "@3", "  "])
def test_ref_parse_rejects_missing_name(bad: str) -> None:
    with pytest.raises(WorkbenchError, match="not a prompt reference"):
        Ref.parse(bad)


def test_get_by_every_kind_of_ref(library: Library, prompt_text: PromptText) -> None:
    for n in range(1, 4):
        library.save(prompt_text(body=body(n)))
    library.set_label("demo@2", "production")
    assert library.get("demo").number == 3
    assert library.get("demo@latest").number == 3
    assert library.get("demo@1").number == 1
    assert library.get("demo@v1").number == 1
    assert library.get("demo@production").number == 2
    assert library.get(Ref("demo", version=2)).labels == ("production",)


# --- not found -------------------------------------------------------------------------------


def test_no_prompt_suggests_close_name(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text("summarize"))
    with pytest.raises(NotFoundError) as info:
        library.get("sumarize")
    assert str(info.value) == "no prompt named 'sumarize' — did you mean 'summarize'?"


def test_no_prompt_without_close_name(library: Library) -> None:
    with pytest.raises(
        NotFoundError, match="no prompt named 'x' \\(see `workbench prompts list`\\)"
    ):
        library.get("x")
    with pytest.raises(NotFoundError, match="no prompt named 'x'"):
        library.versions("x")
    with pytest.raises(NotFoundError, match="no prompt named 'x'"):
        library.label_history("x")


def test_missing_version_names_range(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text(body=body(1)))
    library.save(prompt_text(body=body(2)))
    with pytest.raises(NotFoundError) as info:
        library.get("demo@99")
    assert str(info.value) == "demo has no version 99 (versions are 1…2)"
    with pytest.raises(NotFoundError, match="has no version 99"):
        library.restore("demo@99")
    with pytest.raises(NotFoundError, match="has no version 99"):
        library.diff("demo@1", "demo@99")


def test_unknown_label_lists_labels(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text())
    with pytest.raises(NotFoundError, match="demo has no label 'prod' \\(it has no labels\\)"):
        library.get("demo@prod")
    library.set_label("demo@1", "production")
    library.set_label("demo@1", "candidate")
    with pytest.raises(NotFoundError) as info:
        library.get("demo@prod")
    assert str(info.value) == "demo has no label 'prod' (labels: candidate, production)"


# --- labels ----------------------------------------------------------------------------------


def test_labels_set_move_remove_with_history(library: Library, prompt_text: PromptText) -> None:
    for n in range(1, 4):
        library.save(prompt_text(body=body(n)))
    first = library.set_label("demo@1", "production")
    assert (first.prompt, first.label, first.from_version, first.to_version) == (
        "demo",
        "production",
        None,
        1,
    )
    moved = library.set_label("demo@3", "production")
    assert (moved.from_version, moved.to_version) == (1, 3)
    library.set_label("demo@2", "candidate")
    assert library.get("demo@production").number == 3
    assert library.get("demo@3").labels == ("production",)
    assert library.get("demo@1").labels == ()

    removed = library.remove_label("demo", "production")
    assert (removed.from_version, removed.to_version) == (3, None)
    with pytest.raises(NotFoundError):
        library.get("demo@production")

    history = library.label_history("demo")
    assert [(m.label, m.from_version, m.to_version) for m in history] == [
        ("production", None, 1),
        ("production", 1, 3),
        ("candidate", None, 2),
        ("production", 3, None),
    ]
    assert [m.at for m in history] == sorted(m.at for m in history)
    only = library.label_history("demo", "candidate")
    assert [(m.label, m.to_version) for m in only] == [("candidate", 2)]


def test_a_label_move_says_what_changed(library: Library, prompt_text: PromptText) -> None:
    for n in range(1, 3):
        library.save(prompt_text(body=body(n)))
    assert library.set_label("demo@1", "production").change == "set on v1"
    assert library.set_label("demo@2", "production").change == "moved v1 → v2"
    assert library.remove_label("demo", "production").change == "removed from v2"


def test_setting_label_to_its_version_adds_no_history(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text())
    library.set_label("demo@1", "production")
    library.set_label("demo@1", "production")
    assert len(library.label_history("demo")) == 1


def test_label_by_label_and_latest(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text(body=body(1)))
    library.save(prompt_text(body=body(2)))
    library.set_label("demo@1", "production")
    assert library.set_label("demo@production", "stable").to_version == 1
    assert library.set_label("demo", "candidate").to_version == 2


def test_labels_are_per_prompt(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text("a"))
    library.save(prompt_text("b"))
    library.set_label("a@1", "production")
    with pytest.raises(NotFoundError, match="b has no label 'production'"):
        library.get("b@production")


def test_remove_missing_label(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text())
    with pytest.raises(NotFoundError, match="demo has no label 'production'"):
        library.remove_label("demo", "production")


@pytest.mark.parametrize("label", ["production", "candidate-2", "a", "v2.1_rc", "x" * 100])
def test_valid_label_names(label: str) -> None:
    check_label(label)


@pytest.mark.parametrize(
    "label",
    ["", "latest", "Production", "2nd", "-x", "has space", "a/b", "x" * 101, "prod@1", "ünï"],
)
def test_invalid_label_names(label: str, library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text())
    with pytest.raises(WorkbenchError, match="is not usable"):
        library.set_label("demo@1", label)
    assert library.label_history("demo") == []


# --- immutability ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE prompt_version SET note = 'x'",
        "UPDATE prompt_version SET content = 'tampered', content_hash = 'x'",
        "UPDATE prompt_version SET number = number + 10",
    ],
)
def test_version_rows_cannot_be_updated(
    statement: str, store: Store, library: Library, prompt_text: PromptText
) -> None:
    before = library.save(prompt_text(), "original").version
    with (
        pytest.raises(DBAPIError, match="prompt versions are immutable"),
        store.engine.begin() as conn,
    ):
        conn.execute(text(statement))
    after = library.get("demo@1")
    assert after == before
    with store.read() as s:
        row = s.scalars(select(PromptVersion)).one()
        assert (row.note, row.content, row.number) == ("original", before.content, 1)


def test_orm_update_is_refused_too(store: Store, library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text(), "original")
    with pytest.raises(DBAPIError, match="immutable"), store.write() as s:
        s.scalars(select(PromptVersion)).one().note = "edited"
    assert library.get("demo@1").note == "original"


# --- concurrency -----------------------------------------------------------------------------


def _check_versions(library: Library, expected_contents: set[str]) -> None:
    versions = library.versions("demo")
    numbers = [v.number for v in versions]
    assert numbers == list(range(1, len(expected_contents) + 1))
    bodies = [v.file.body for v in versions]
    assert len(bodies) == len(set(bodies)), "a content was saved twice"
    assert set(bodies) == expected_contents
    # parents chain: each version's parent is the one before it
    assert [v.parent for v in versions] == [None, *numbers[:-1]]


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_saves_from_threads(
    workers: int, make_database: Callable[..., str], prompt_text: PromptText
) -> None:
    url = make_database("concurrent")  # migrated once; each worker then opens its own Store
    stores = [Store(url) for _ in range(workers)]
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        library = Library(stores[i])
        try:
            barrier.wait(timeout=30)
            for j in range(10):
                library.save(prompt_text(body=body(f"w{i}-{j}")), f"worker {i} save {j}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    expected = {body(f"w{i}-{j}") for i in range(workers) for j in range(10)}
    _check_versions(Library(Store(url)), expected)
    for s in stores:
        s.close()


WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    folder, i, action = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    from workbench.config import Settings
    from workbench.library import Library
    from workbench.store import Store
    from workbench.workspace import open_library
    # Warm up (imports, migration scripts) on a scratch database so every worker is at the
    # same point when released, then wait for the go line on stdin without using CPU.
    Store(f"sqlite:///{folder}/warm-up-{i}.db").close()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no go signal")
    if action == "open":
        library = open_library(Settings.from_env())
        print(len(library.list_prompts()))
    else:
        library = Library(Store(sys.argv[4]))
        for j in range(10):
            text = (
                "---\\nname: demo\\n---\\nsystem:\\nYou are version p%d-%d.\\n\\nuser:\\nhi\\n"
                % (i, j)
            )
            library.save(text, "process %d save %d" % (i, j))
    """
)


def _run_together(folder: Path, argv_for: list[list[str]], env: dict[str, str]) -> list[str]:
    """Start one Python process per argv, release them at the same moment, return stdouts."""
    folder.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder), str(i), *argv],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, argv in enumerate(argv_for)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdin is not None
            if p.stdout.readline().strip() != "ready":
                p.kill()
                pytest.fail(f"worker did not start: {p.communicate()[1][-2000:]}")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    return [out for out, _ in outputs]


def test_concurrent_saves_from_processes(tmp_path: Path, make_database: Callable[..., str]) -> None:
    url = make_database("processes")  # an existing database, as when app and CLI both have it
    _run_together(tmp_path / "sync", [["save", url], ["save", url]], dict(os.environ))
    library = Library(Store(url))
    expected = {
        f"system:\nYou are version p{i}-{j}.\n\nuser:\nhi\n" for i in range(2) for j in range(10)
    }
    _check_versions(library, expected)
    assert count_versions(library.store) == 20


def test_fresh_database_opened_by_several_processes_at_once(
    tmp_path: Path, make_database: Callable[..., str]
) -> None:
    """Three `workbench` commands started together on a new database: all work, built-ins once.

    On PostgreSQL the migrations and the built-ins each run under an advisory lock."""
    prompts = tmp_path / "fresh-builtins"
    prompts.mkdir()
    (prompts / "hello.prompty").write_text("---\nname: hello\n---\nuser:\nhi\n", encoding="utf-8")
    url = make_database("fresh", migrated=False)
    env = dict(os.environ, WORKBENCH_DATABASE_URL=url, WORKBENCH_PROMPTS_DIR=str(prompts))
    outputs = _run_together(tmp_path / "sync", [["open"]] * 3, env)
    assert [o.strip() for o in outputs] == ["1"] * 3
    library = Library(Store(url))
    assert [v.ref for v in library.all_versions()] == ["hello@1"]
