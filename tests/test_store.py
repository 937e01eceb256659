"""The store on both databases: migrations from nothing and back, dialect quirks, and errors a
person can act on when the database is missing or unreachable."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import PromptText
from sqlalchemy import inspect

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.library import Library
from workbench.migrations import alembic_config
from workbench.store import NUL_REPLACEMENT, Output, Store, get_store

TABLES = {
    "prompt", "prompt_version", "label", "label_event", "app_state", "run", "run_version",
    "run_row", "output", "vote", "rating", "score", "test_set", "test_set_row",
}  # fmt: skip


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_an_empty_database_is_migrated_when_opened(make_database: Callable[..., str]) -> None:
    store = Store(make_database("empty", migrated=False))
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == revisions()[-1]
        assert set(inspect(conn).get_table_names()) >= TABLES
    store.close()


def test_every_migration_goes_up_and_down_one_step_at_a_time(
    make_database: Callable[..., str],
) -> None:
    """Each script on its own, as a database that lived through every release would see them."""
    store = Store(make_database("steps", migrated=False), migrate=False)
    cfg = alembic_config()
    steps = revisions()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        for revision in steps:
            command.upgrade(cfg, revision)
            assert MigrationContext.configure(conn).get_current_revision() == revision
        for revision in [*reversed(steps[:-1]), "base"]:
            command.downgrade(cfg, "-1")
            expected = None if revision == "base" else revision
            assert MigrationContext.configure(conn).get_current_revision() == expected
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        command.upgrade(cfg, "head")
    store.close()


def test_partial_index_of_failed_outputs_exists(store: Store) -> None:
    with store.engine.connect() as conn:
        indexes = {i["name"]: i for i in inspect(conn).get_indexes("output")}
    assert "ix_output_error" in indexes


def test_nul_in_model_text_is_stored(
    library: Library, prompt_text: PromptText, tiny_backend: object
) -> None:
    """A model can emit NUL; PostgreSQL text cannot hold it, so it becomes U+FFFD there."""
    from workbench.runner import Runner

    library.save(prompt_text(), "v1")
    run = Runner(library, tiny_backend).run(  # type: ignore[arg-type]
        [library.get("demo")], [{"text": "a\x00b"}], overrides={"max_new_tokens": 1}
    )
    output_id = run.outputs[0].id
    with library.store.write() as s:
        s.get_one(Output, output_id).text = "before\x00after"
    with library.store.read() as s:
        row = s.get_one(Output, output_id)
        nul = "\x00" if library.store.is_sqlite else NUL_REPLACEMENT
        assert row.text == f"before{nul}after"
        assert row.variables == {"text": f"a{nul}b"}


def test_a_seed_past_32_bits_is_stored(
    library: Library, prompt_text: PromptText, tiny_backend: object
) -> None:
    """Migration 0007: PostgreSQL's INTEGER is 32-bit; a seed is any integer torch takes."""
    from workbench.runner import Runner

    library.save(prompt_text(), "v1")
    seed = 2**40 + 1
    run = Runner(library, tiny_backend).run(  # type: ignore[arg-type]
        [library.get("demo")],
        [{}],
        overrides={"max_new_tokens": 1, "do_sample": True, "temperature": 0.7, "seed": seed},
        samples=2,
    )
    assert sorted(o.seed for o in run.outputs) == [seed, seed + 1]


def test_the_cli_uses_the_database_the_url_names(
    make_database: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    prompt_text: PromptText,
    tmp_path: object,
) -> None:
    url = make_database("cli")
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", url)
    Library(get_store(url)).save(prompt_text("shared"), "saved by a teammate")
    assert main(["prompts", "list"]) == 0
    assert "shared" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://me:secret@127.0.0.1:1/team", "127.0.0.1:1, database team"),
        ("postgresql://me:secret@127.0.0.1:1/team", "Is the server running"),
        ("mysql://me@localhost/team", "'mysql' is not supported"),
        ("not a url", "is not a database URL"),
    ],
)
def test_a_database_that_cannot_be_used_is_a_readable_error(url: str, message: str) -> None:
    with pytest.raises(WorkbenchError, match=message) as caught:
        Store(url)
    assert "secret" not in str(caught.value)


def test_the_cli_says_which_server_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", "postgresql://me:pw@127.0.0.1:1/team")
    assert main(["prompts", "list"]) != 0
    err = capsys.readouterr().err
    assert "cannot reach the database at PostgreSQL server 127.0.0.1:1" in err
    assert "Traceback" not in err


def test_the_newest_revision_is_known_from_the_file_names() -> None:
    """Opening a store compares the database with `head_revision()` without loading Alembic;
    that only holds while every script's revision id is its number."""
    import re

    from alembic.script import ScriptDirectory

    from workbench.migrations import VERSIONS, head_revision

    for script in VERSIONS.glob("*.py"):
        if script.name == "__init__.py":
            continue
        number = script.name.split("_", 1)[0]
        assert re.fullmatch(r"\d{4}", number), f"{script.name}: name it NNNN_what.py"
        text = script.read_text(encoding="utf-8")
        assert f'revision = "{number}"' in text, f"{script.name}: its revision id must be {number}"
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
