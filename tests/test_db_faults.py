"""A database that cannot be used is one line naming it and what to do; one that cannot be
written can still be read.

The tests run as root, whom a file's permission bits never stop, so "read-only" here is the real
thing: a read-only bind mount, made in a mount namespace of its own (`unshare -m`) around a CLI
in a child process; "disk full" is a tiny tmpfs mounted the same way, and, in-process, SQLite's
`max_page_count` (which fails a write exactly as a full disk does: SQLITE_FULL). Where mounts
are not permitted those tests skip and say why. PostgreSQL's read-only case is a database whose
`default_transaction_read_only` is on, as on a standby.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, PromptText, build_prompt_text, forget_stores
from sqlalchemy import create_engine, event
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from workbench.cli import main
from workbench.db_faults import (
    DiskFullError,
    NotADatabaseError,
    ReadOnlyDatabaseError,
)
from workbench.library import Library
from workbench.store import Store

CliResult = tuple[int, str, str]


def one_line_error(code: int, err: str) -> str:
    """The whole of stderr: one `error: …` line, without SQL, parameters or links."""
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for noise in ("Traceback", "[SQL", "[parameters", "sqlalche.me", "unexpected"):
        assert noise not in err, err
    return lines[0]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*args: object) -> CliResult:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def saved_database(folder: Path, migrated_db: Path, prompts: int = 30) -> Path:
    """A database file holding some prompts, closed cleanly (no -wal file left)."""
    path = folder / "workbench.db"
    shutil.copyfile(migrated_db, path)
    store = Store(f"sqlite:///{path}")
    library = Library(store)
    for i in range(prompts):
        library.save(build_prompt_text(f"p{i:02}", body="user:\n" + "words " * 200 + "\n"))
    store.close()
    assert not path.with_name("workbench.db-wal").exists()
    return path


# --- not a database --------------------------------------------------------------------------


def _folder(path: Path) -> None:
    path.mkdir()


def _text(path: Path) -> None:
    path.write_text("name,text\nreview,Great product\n", encoding="utf-8")


def _random(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_folder, "is a folder, not a SQLite database file"),
        (_text, "is a text file, not a SQLite database"),
        (_random, "is not a SQLite database (random bytes?)"),
    ],
    ids=["folder", "text file", "random bytes"],
)
def test_a_file_that_is_not_a_database_is_named_in_one_line(
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[Path], None],
    problem: str,
) -> None:
    path = tmp_path / "storage" / "workbench.db"
    path.parent.mkdir()
    make(path)
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", f"sqlite:///{path}")
    code, _, err = cli("prompts", "list")
    line = one_line_error(code, err)
    assert f"{path} {problem}" in line
    assert "WORKBENCH_DATABASE_URL" in line


def test_a_truncated_database_is_called_damaged(
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    migrated_db: Path,
) -> None:
    path = saved_database(tmp_path, migrated_db)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", f"sqlite:///{path}")
    code, _, err = cli("prompts", "list")
    line = one_line_error(code, err)
    assert f"{path} is a damaged SQLite database (truncated or overwritten?)" in line
    assert "backup" in line


def test_the_store_says_what_the_file_is(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    _text(path)
    with pytest.raises(NotADatabaseError, match="is a text file"):
        Store(f"sqlite:///{path}")
    assert path.read_text(encoding="utf-8").startswith("name,text")  # left as it was


def test_a_read_only_file_with_changes_in_its_wal_says_where_to_fold_them(
    tmp_path: Path, migrated_db: Path
) -> None:
    """SQLite cannot open a read-only file whose -wal holds changes (it would need to write
    beside it): said as such, not as "SQLite cannot open it"."""
    path = tmp_path / "workbench.db"
    shutil.copyfile(migrated_db, path)
    store = Store(f"sqlite:///{path}")
    store.engine.dispose()  # no connection holds the write-ahead log while it is faked here
    wal = path.with_name("workbench.db-wal")
    wal.write_bytes(b"changes")
    orig = sqlite3.OperationalError("unable to open database file")
    orig.sqlite_errorname = "SQLITE_CANTOPEN"
    store.read_only_reason = "its folder is on a read-only file system"
    try:
        with pytest.raises(ReadOnlyDatabaseError) as raised:
            store._raise_fault(OperationalError("SELECT 1", (), orig))
        assert str(raised.value) == (
            f"{path} has changes in workbench.db-wal that SQLite cannot read while the folder "
            "is read-only (its folder is on a read-only file system): open it once where it is "
            "writable, which folds them into the file"
        )
        wal.unlink()
        with pytest.raises(Exception, match="SQLite cannot open it") as plain:
            store._raise_fault(OperationalError("SELECT 1", (), orig))
        assert not isinstance(plain.value, ReadOnlyDatabaseError)
    finally:
        wal.unlink(missing_ok=True)
        store.read_only_reason = None
        store.close()


# --- disk full ---------------------------------------------------------------------------------


def cap_pages(store: Store, extra_pages: int) -> None:
    """From now on the file may grow by `extra_pages` pages only: the next larger write fails
    with SQLITE_FULL, as on a full disk."""
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    store.engine.dispose()

    @event.listens_for(store.engine, "connect")
    def _cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_a_full_disk_is_one_line_and_nothing_is_written(
    tmp_path: Path, migrated_db: Path, prompt_text: PromptText
) -> None:
    path = tmp_path / "full.db"
    shutil.copyfile(migrated_db, path)
    store = Store(f"sqlite:///{path}")
    library = Library(store)
    library.save(prompt_text("small"))
    cap_pages(store, 4)
    with pytest.raises(DiskFullError) as caught:
        library.save(prompt_text("big", body="user:\n" + "x" * 200_000 + "\n"))
    message = str(caught.value)
    assert message == (
        f"the disk holding {path} is full; nothing was written: free some space there "
        f"(df -h {tmp_path}) and try again"
    )
    assert [p.name for p in library.list_prompts()] == ["small"]
    store.close()


def test_a_run_that_fills_the_disk_keeps_its_outputs_and_says_how_far_it_got(
    tmp_path: Path, migrated_db: Path, tiny_backend: Any, prompt_text: PromptText
) -> None:
    from workbench.runner import Runner
    from workbench.runs import get_run, run_outputs

    path = tmp_path / "run.db"
    shutil.copyfile(migrated_db, path)
    store = Store(f"sqlite:///{path}")
    library = Library(store)
    version = library.save(prompt_text("demo", body="user:\n{{ text }}\n" + "pad " * 80)).version
    runner = Runner(library, tiny_backend)
    rows = [{"text": f"row {i}"} for i in range(60)]
    run_id = runner.start([version], rows, overrides={"max_new_tokens": 2})
    cap_pages(store, 6)
    with pytest.raises(DiskFullError) as caught:
        runner.execute(run_id, batch_size=1)
    message = str(caught.value)
    kept = len(run_outputs(store, run_id))
    assert 0 < kept < 60
    assert message.startswith(
        f"run {run_id} stopped with {kept} of 60 outputs stored (they are kept; "
        f"`workbench runs resume {run_id}` finishes it): the disk holding {path} is full"
    )
    assert "\n" not in message
    record = get_run(store, run_id)
    assert record.resumable and record.status in ("failed", "interrupted")
    store.close()


# --- the CLI's last resort ---------------------------------------------------------------------


def test_an_unexpected_database_error_is_still_one_line(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error that is not mapped (a bug) keeps its SQL and parameters for the log."""
    import workbench.workspace

    def broken(*_: Any) -> Any:
        raise OperationalError("INSERT INTO prompt (name) VALUES (?)", ("x",), Exception("boom"))

    monkeypatch.setattr(workbench.workspace, "open_library", broken)
    code, _, err = cli("prompts", "list")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: unexpected OperationalError: (builtins.Exception) boom")
    assert "[SQL" not in err


# --- read-only: a real read-only mount, in a mount namespace of its own ------------------------


def _mounts_work() -> str | None:
    """None when this process may make mount namespaces and mounts; else why not."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"mounts are not permitted here ({probe.stderr.strip() or probe.returncode})"
    return None


needs_mounts = pytest.mark.skipif(
    sys.platform != "linux" or _mounts_work() is not None,
    reason=f"needs a mount namespace (Linux, root): {_mounts_work()}",
)


@pytest.fixture
def isolated_cli_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WORKBENCH_") and k not in ("PYTHONPATH",)
    }
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        WORKBENCH_PROMPTS_DIR=str(tmp_path / "no-builtins"),
        HF_HUB_OFFLINE="1",
    )
    return env


def cli_in_namespace(
    setup: str, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`workbench ARGS` in a child with its own mounts: `setup` (shell) runs first."""
    script = f'{setup} || exit 99\nexec "$@"'
    command = ["unshare", "-m", "sh", "-c", script, "sh"]
    command += [sys.executable, "-m", "workbench.cli", *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode != 99, f"the mount failed: {done.stderr}"
    return done


def read_only_bind(target: Path) -> str:
    return f"mount --bind {target} {target} && mount -o remount,bind,ro {target}"


@needs_mounts
def test_a_read_only_folder_still_lists_and_a_write_says_why_not(
    tmp_path: Path, migrated_db: Path, isolated_cli_env: dict[str, str]
) -> None:
    folder = tmp_path / "storage"
    folder.mkdir()
    saved_database(folder, migrated_db, prompts=3)
    env = {**isolated_cli_env, "WORKBENCH_STORAGE_DIR": str(folder)}
    setup = read_only_bind(folder)

    listed = cli_in_namespace(setup, ["prompts", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "p00" in listed.stdout and "p02" in listed.stdout
    runs = cli_in_namespace(setup, ["runs", "list"], env, tmp_path)
    assert runs.returncode == 0, runs.stderr

    labelled = cli_in_namespace(setup, ["prompts", "label", "p00@1", "production"], env, tmp_path)
    line = one_line_error(labelled.returncode, labelled.stderr)
    assert line == (
        "error: cannot save: storage/workbench.db is read-only here (its folder storage is on "
        "a read-only file system); nothing was written. Reading works; to save, copy it to a "
        "writable folder and point WORKBENCH_DATABASE_URL at the copy"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["workbench.db"]  # nothing left behind


@needs_mounts
def test_a_read_only_folder_reads_changes_still_in_the_write_ahead_log(
    tmp_path: Path, migrated_db: Path, isolated_cli_env: dict[str, str]
) -> None:
    """A writer elsewhere keeps the database open, so its last save is only in the -wal file:
    the read-only view must read it too (`immutable` would not)."""
    folder = tmp_path / "storage"
    folder.mkdir()
    path = saved_database(folder, migrated_db, prompts=1)
    store = Store(f"sqlite:///{path}")
    try:
        Library(store).save(build_prompt_text("in-the-wal"))
        assert path.with_name("workbench.db-wal").stat().st_size > 0
        env = {**isolated_cli_env, "WORKBENCH_STORAGE_DIR": str(folder)}
        listed = cli_in_namespace(read_only_bind(folder), ["prompts", "list"], env, tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert "in-the-wal" in listed.stdout
    finally:
        store.close()


@needs_mounts
def test_a_read_only_database_file_in_a_writable_folder(
    tmp_path: Path, migrated_db: Path, isolated_cli_env: dict[str, str]
) -> None:
    path = saved_database(tmp_path, migrated_db, prompts=2)
    env = {**isolated_cli_env, "WORKBENCH_DATABASE_URL": f"sqlite:///{path}"}
    setup = read_only_bind(path)
    listed = cli_in_namespace(setup, ["prompts", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "p01" in listed.stdout
    labelled = cli_in_namespace(setup, ["prompts", "label", "p00@1", "production"], env, tmp_path)
    line = one_line_error(labelled.returncode, labelled.stderr)
    assert "workbench.db is read-only here (the file is on a read-only file system)" in line


@needs_mounts
def test_a_new_database_in_a_read_only_folder(
    tmp_path: Path, isolated_cli_env: dict[str, str]
) -> None:
    folder = tmp_path / "storage"
    folder.mkdir()
    env = {**isolated_cli_env, "WORKBENCH_STORAGE_DIR": str(folder)}
    done = cli_in_namespace(read_only_bind(folder), ["prompts", "list"], env, tmp_path)
    line = one_line_error(done.returncode, done.stderr)
    assert line == (
        "error: cannot create the SQLite file storage/workbench.db: its folder storage is on a "
        "read-only file system; point WORKBENCH_DATABASE_URL or WORKBENCH_STORAGE_DIR at a "
        "writable folder"
    )


@needs_mounts
def test_an_old_schema_in_a_read_only_folder_is_not_upgraded(
    tmp_path: Path, isolated_cli_env: dict[str, str]
) -> None:
    from alembic import command

    from workbench.migrations import alembic_config, head_revision

    folder = tmp_path / "storage"
    folder.mkdir()
    store = Store(f"sqlite:///{folder / 'workbench.db'}", migrate=False)
    cfg = alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    store.close()
    env = {**isolated_cli_env, "WORKBENCH_STORAGE_DIR": str(folder)}
    done = cli_in_namespace(read_only_bind(folder), ["prompts", "list"], env, tmp_path)
    line = one_line_error(done.returncode, done.stderr)
    assert f"has schema 0006 and this version of the workbench needs {head_revision()}" in line
    assert "open it once where it is writable" in line


@needs_mounts
def test_a_full_disk_during_an_import_is_one_line(
    tmp_path: Path, migrated_db: Path, isolated_cli_env: dict[str, str]
) -> None:
    folder = tmp_path / "small-disk"
    folder.mkdir()
    big = tmp_path / "big.prompty"
    big.write_text(
        build_prompt_text("big", body="user:\n" + os.urandom(150_000).hex() + "\n"),
        encoding="utf-8",
    )
    env = {**isolated_cli_env, "WORKBENCH_STORAGE_DIR": str(folder)}
    size_kb = migrated_db.stat().st_size // 1024 + 160
    setup = (
        f"mount -t tmpfs -o size={size_kb}k tmpfs {folder} && cp {migrated_db} "
        f"{folder}/workbench.db"
    )
    done = cli_in_namespace(setup, ["import", str(big)], env, tmp_path)
    line = one_line_error(done.returncode, done.stderr)
    assert line.startswith("error: the disk holding small-disk/workbench.db is full; nothing was")


# --- PostgreSQL that refuses changes -----------------------------------------------------------


@pytest.fixture
def read_only_postgres(database: str, make_database: Callable[..., str]) -> Iterator[str]:
    """A migrated PostgreSQL database whose transactions are read-only, as on a standby."""
    if database != "postgresql":
        pytest.skip("PostgreSQL only")
    url = make_database("readonly")
    Library(Store(url)).save(build_prompt_text("kept"))
    forget_stores(lambda key: key == url)
    name = make_url(url).database
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(sql_text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    yield url
    forget_stores(lambda key: key == url)
    with admin.connect() as conn:
        conn.execute(sql_text("SET default_transaction_read_only = off"))
        conn.execute(sql_text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
    admin.dispose()


def test_a_read_only_postgres_database_lists_and_refuses_a_save_in_one_line(
    read_only_postgres: str,
    cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", read_only_postgres)
    code, out, err = cli("prompts", "list")
    assert code == 0, err
    assert "kept" in out
    prompt = tmp_path / "new.prompty"
    prompt.write_text(build_prompt_text("new"), encoding="utf-8")
    code, _, err = cli("prompts", "save", prompt)
    line = one_line_error(code, err)
    assert "cannot save: the PostgreSQL server" in line
    assert "refuses changes (cannot execute INSERT in a read-only transaction)" in line
    assert "nothing was written" in line


# --- the app shows the same one line -----------------------------------------------------------


def test_the_app_names_a_broken_database_in_one_line(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import app_test, shown

    path = app_env / "broken.db"
    _random(path)
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", f"sqlite:///{path}")
    at = app_test("Home.py")
    at.run()
    assert not at.exception, at.exception
    (message,) = [shown(e.value) for e in at.error]
    assert message == (
        f"The library could not be opened: {path} is not a SQLite database (random bytes?): "
        "move it away or point WORKBENCH_DATABASE_URL elsewhere"
    )
