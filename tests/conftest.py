"""Shared fixtures: an isolated environment for every test, a store, a library, prompt texts."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, func, select
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

import workbench.store as store_module
from workbench.library import Library
from workbench.store import Base, PromptVersion, Store

DEFAULT_BODY = "system:\nYou are a helpful assistant.\n\nuser:\n{{ text }}\n"

PromptText = Callable[..., str]


def build_prompt_text(name: str = "demo", body: str = DEFAULT_BODY, **front: Any) -> str:
    """A small valid prompt file: `name`, a description, one `text` input, and `body`.

    Keyword arguments replace or add front-matter keys; passing None drops a key.
    """
    data: dict[str, Any] = {
        "name": name,
        "description": "A demo prompt.",
        "inputs": {"text": {"kind": "string", "default": "hello"}},
    }
    data.update(front)
    data = {k: v for k, v in data.items() if v is not None}
    return "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + body


@pytest.fixture
def prompt_text() -> PromptText:
    return build_prompt_text


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database file at the current schema, made once by the real migrations.

    Copying it is several times faster than migrating a new file for each test; tests that are
    about opening a brand-new database create their own file instead.
    """
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    Store(f"sqlite:///{path}").close()
    assert not path.with_name("migrated.db-wal").exists()
    return path


# --- databases: the storage tests run on SQLite and on a real PostgreSQL server -----------------

DATABASES = ("sqlite", "postgresql")
POSTGRES_URL_VARIABLE = "WORKBENCH_TEST_POSTGRES_URL"
START_POSTGRES = "bash scripts/postgres"


def postgres_required() -> bool:
    """In CI (or when asked), a PostgreSQL server that is not there fails the tests."""
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("WORKBENCH_REQUIRE_POSTGRES") == "1"
    )


class PostgresServer:
    """A PostgreSQL server on which the tests create and reuse their own databases.

    The admin URL's role needs CREATEDB (scripts/postgres makes one). Migrations run once, into
    a template database. A test that wants a migrated database gets one from a pool: created
    from the template the first time (`CREATE DATABASE … TEMPLATE`, about a second), and after
    the test emptied again (its connections closed, every row deleted, ids restarted at 1: about
    50 ms) and handed to the next test. A database a test asks for empty (to run the migrations
    itself) is made from template0 and dropped afterwards. Names carry the pytest process id, so
    two test sessions can share a server, and what a killed session left is dropped by the next.
    """

    def __init__(self, admin_url: str):
        url = make_url(admin_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        self.admin_url = url
        self.engine = create_engine(
            url,
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
            connect_args={"connect_timeout": 5},
        )
        self.prefix = f"wbtest_{os.getpid()}_"
        self.template = f"{self.prefix}template"
        self._numbers = itertools.count(1)
        self._free: list[str] = []  # migrated, empty, ready for a test
        self._pooled: set[str] = set()
        self._resetters: dict[str, Engine] = {}

    def _execute(self, statement: str) -> list[Any]:
        with self.engine.connect() as conn:
            result = conn.execute(sql_text(statement))
            return list(result.all()) if result.returns_rows else []

    def prepare(self) -> None:
        """Drop what dead test sessions left, then build the migrated template."""
        rows = self._execute("SELECT datname FROM pg_database WHERE datname LIKE 'wbtest_%'")
        for (name,) in rows:
            pid = name.split("_")[1]
            if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.template}" TEMPLATE template0')
        Store(self.url(self.template)).close()  # the real migrations, once per session

    def url(self, database: str) -> str:
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def create(self, *, migrated: bool = True) -> str:
        """A database at the current schema, or an empty one (for tests of the migrations)."""
        if migrated and self._free:
            return self.url(self._free.pop())
        name = f"{self.prefix}{next(self._numbers)}"
        source = self.template if migrated else "template0"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        if migrated:
            self._pooled.add(name)
        return self.url(name)

    def release(self, url: str) -> None:
        """Empty a pooled database for the next test; drop any other."""
        name = str(make_url(url).database)
        if name in self._pooled:
            try:
                self._reset(url)
            except Exception:
                self._pooled.discard(name)
            else:
                self._free.append(name)
                return
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _reset(self, url: str) -> None:
        name = str(make_url(url).database)
        if name not in self._resetters:  # one connection per pooled database, kept open
            self._resetters[name] = create_engine(make_url(url), pool_size=1, max_overflow=0)
        with self._resetters[name].begin() as conn:
            conn.execute(
                sql_text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            for table in reversed(Base.metadata.sorted_tables):  # children first
                conn.execute(table.delete())
            conn.execute(
                sql_text(
                    "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, 1, "
                    "false) FROM pg_sequences WHERE schemaname = 'public'"
                )
            )

    def close(self) -> None:
        for engine in self._resetters.values():
            engine.dispose()
        for name in [*self._pooled, self.template]:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.engine.dispose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postgres_unavailable(reason: str) -> None:
    if postgres_required():
        pytest.fail(
            f"{reason} — PostgreSQL is required here (CI=true or WORKBENCH_REQUIRE_POSTGRES=1)",
            pytrace=False,
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The server named by WORKBENCH_TEST_POSTGRES_URL; without one the PostgreSQL tests skip
    (or fail, in CI)."""
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not admin_url:
        _postgres_unavailable(
            f"{POSTGRES_URL_VARIABLE} is not set: start a server with "
            f"`export {POSTGRES_URL_VARIABLE}=$({START_POSTGRES})`"
        )
    assert admin_url is not None
    try:
        server = PostgresServer(admin_url)
        server.prepare()
    except Exception as exc:  # any reason at all: say which server and why, once
        where = make_url(admin_url)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _postgres_unavailable(
            f"cannot use the PostgreSQL server at {where.host}:{where.port} from "
            f"{POSTGRES_URL_VARIABLE} ({reason}); start one with `{START_POSTGRES}`"
        )
    yield server
    server.close()


class Databases:
    """Makes test databases of either kind: a copy of the migrated SQLite file, or a database
    on the PostgreSQL server created from the migrated template."""

    def __init__(self, request: pytest.FixtureRequest, migrated_db: Path):
        self._request = request
        self._migrated_db = migrated_db

    def create(self, kind: str, folder: Path, name: str, *, migrated: bool = True) -> str:
        if kind == "sqlite":
            path = folder / f"{name}.db"
            if migrated:
                shutil.copyfile(self._migrated_db, path)
            return f"sqlite:///{path}"
        server: PostgresServer = self._request.getfixturevalue("postgres_server")
        return server.create(migrated=migrated)

    def release(self, url: str) -> None:
        """Done with a database: close its stores; PostgreSQL's go back to the pool."""
        forget_stores(lambda key: key == url)
        if url.startswith("postgresql"):
            self._request.getfixturevalue("postgres_server").release(url)


@pytest.fixture(scope="session")
def databases(request: pytest.FixtureRequest, migrated_db: Path) -> Databases:
    return Databases(request, migrated_db)


@pytest.fixture(scope="module", params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    """Which database a storage test runs on; every test that uses a store runs on both.

    Module scope, so a module's tests run on SQLite first, then on PostgreSQL, and a module's
    shared fixtures (History's seeded database) are built once per kind.
    """
    return str(request.param)


@pytest.fixture
def make_database(
    database: str, databases: Databases, tmp_path: Path
) -> Iterator[Callable[..., str]]:
    """`make_database(name, migrated=True)`: the URL of a database of this test's kind that no
    other test sees (a new SQLite file; a PostgreSQL database of its own until the test ends)."""
    made: list[str] = []

    def make(name: str, *, migrated: bool = True) -> str:
        made.append(databases.create(database, tmp_path, name, migrated=migrated))
        return made[-1]

    yield make
    for url in made:
        databases.release(url)


@pytest.fixture
def make_store(make_database: Callable[..., str]) -> Iterator[Callable[[str], Store]]:
    """Open a Store on a new, migrated database (SQLite file tmp_path/NAME.db or PostgreSQL)."""
    opened: list[Store] = []

    def make(name: str) -> Store:
        opened.append(Store(make_database(name)))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


def forget_stores(matches: Callable[[str], bool]) -> None:
    """Close and drop the process-wide stores (get_store) whose URL matches."""
    with store_module._stores_lock:
        for key in [k for k in store_module._stores if matches(k)]:
            store_module._stores.pop(key).close()


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_db: Path
) -> Iterator[None]:
    """Point every setting at tmp_path so no test touches storage/ or the built-in prompts.

    WORKBENCH_PROMPTS_DIR points at a folder that does not exist unless a test asks for the
    `builtins` fixture, so by default the CLI starts on an empty library.
    """
    shutil.copyfile(migrated_db, tmp_path / "cli.db")
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", url)
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(tmp_path / "builtins"))
    monkeypatch.setenv("WORKBENCH_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.delenv("WORKBENCH_DEBUG", raising=False)
    for name in [n for n in os.environ if n.startswith("WORKBENCH_OPENAI_")]:
        monkeypatch.delenv(name)  # a developer's own server settings must not leak into tests
    yield
    # get_store caches one Store per URL for the life of the process; drop this test's ones.
    forget_stores(lambda key: str(tmp_path) in key)


@pytest.fixture
def store(make_store: Callable[[str], Store]) -> Store:
    return make_store("t")


@pytest.fixture
def library(store: Store) -> Library:
    return Library(store)


# A one-input prompt whose two versions differ in one word: Compare's and the grid's tests.
ECHO_PROMPT = """---
name: echo
description: Repeats.
inputs:
  text:
    kind: string
    default: hi
---
user:
Say {{ text }}
"""


@pytest.fixture
def two_versions(library: Library) -> Library:
    """The library with echo@1 ("Say …") and echo@2 ("Please say …")."""
    library.save(ECHO_PROMPT, "v1")
    library.save(ECHO_PROMPT.replace("Say", "Please say"), "v2")
    return library


def count_versions(store: Store) -> int:
    with store.read() as s:
        return int(s.scalar(select(func.count()).select_from(PromptVersion)) or 0)


@pytest.fixture
def version_count() -> Callable[[Store], int]:
    """Number of prompt_version rows in a store (to show that a refused write wrote nothing)."""
    return count_versions


BUILTIN_FILES = {
    "greet": build_prompt_text(
        "greet",
        "system:\nYou are kind.\n\nuser:\nSay hello to {{ who }}.\n",
        description="Greets someone.",
        inputs={"who": {"kind": "string", "description": "Who to greet.", "default": "world"}},
        metadata={"technique": "zero-shot"},
    ),
    "count": build_prompt_text(
        "count",
        "user:\nCount to {{ n }}{% if shout %}!{% endif %}\n",
        description="Counts.",
        inputs={
            "n": {"kind": "integer", "default": 3},
            "shout": {"kind": "boolean", "default": False},
        },
        metadata={"technique": "zero-shot"},
    ),
    "story": build_prompt_text(
        "story",
        "Once upon a time, {{ hero }}",
        description="A completion prompt.",
        model={"apiType": "completion"},
        inputs={"hero": {"kind": "string", "default": "a fox"}},
        metadata={"technique": "zero-shot"},
    ),
}


@pytest.fixture
def builtins(tmp_path: Path) -> dict[str, str]:
    """Write three small prompt files where WORKBENCH_PROMPTS_DIR points; the CLI loads them."""
    folder = tmp_path / "builtins"
    folder.mkdir(exist_ok=True)
    for name, text in BUILTIN_FILES.items():
        (folder / f"{name}.prompty").write_text(text, encoding="utf-8")
    return dict(BUILTIN_FILES)


# --- a tiny local model for the runner tests ----------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILTIN_PROMPTS_DIR = REPO_ROOT / "workbench" / "prompts"
TINY_WEIGHT_SCALE = 6.0


def child_env(**settings: str) -> dict[str, str]:
    """The environment for a `workbench` child process: this test's settings (the autouse
    fixture's), the built-in prompts, this checkout first on the import path."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "WORKBENCH_PROMPTS_DIR": str(BUILTIN_PROMPTS_DIR),
        "PYTHONPATH": path,
        **settings,
    }


def _sharpen(folder: Path, factor: float) -> None:
    """Scale every weight matrix except the embeddings, in place.

    At its default initialisation (std 0.02) the random model's residual stream is almost just
    the last token's embedding, and with tied embeddings it repeats that token for ever (every
    prompt ending in "Sentiment:" answers "::::…", with no spaces, so a streamer never flushes).
    Larger weights make each answer depend on the whole prompt, so "batched equals one-by-one"
    and the streaming tests really compare something. It is still saved and loaded like any model.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.mul_(factor)
    model.save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + ChatML tokenizer in a folder (see tests/tiny_model.py)."""
    from tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    _sharpen(folder, TINY_WEIGHT_SCALE)
    return folder


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The process-wide backend for the tiny model (load_backend caches it per process)."""
    from workbench.backends.local import load_backend

    return load_backend(str(tiny_model_dir), tmp_path_factory.mktemp("storage"))


@pytest.fixture(autouse=True)
def _one_torch_thread_for_the_tiny_model(request: pytest.FixtureRequest) -> None:
    """Tests on the tiny model run torch on one thread.

    Loading a backend sets torch to every core (local.configure_threads). For a 64-wide model
    that buys nothing, and when other work keeps the cores busy, OpenMP's barriers make each
    step of a two-thread pass wait for a descheduled thread: a 40-row batch took 14 s instead of
    0.2 s. Outputs do not depend on it (batched and one-by-one runs use the same setting).
    Tests of the real default model keep the product's setting.
    """
    if "tiny_backend" in request.fixturenames:
        import torch

        request.getfixturevalue("tiny_backend")  # loaded first: loading sets the threads
        torch.set_num_threads(1)


@pytest.fixture
def builtin_library(make_store: Callable[[str], Store]) -> Library:
    """A fresh migrated store holding the real built-in prompts (workbench/prompts/)."""
    from workbench.exchange import load_builtins

    lib = Library(make_store("runner"))
    load_builtins(lib, BUILTIN_PROMPTS_DIR)
    return lib


@pytest.fixture
def runner(builtin_library: Library, tiny_backend: Any) -> Any:
    """A Runner over the real built-in prompts and the tiny model."""
    from workbench.runner import Runner

    return Runner(builtin_library, tiny_backend)


# --- the Streamlit app ----------------------------------------------------------------------------

APP_DIR = REPO_ROOT / "workbench" / "app"


@pytest.fixture
def app_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_db: Path, tiny_model_dir: Path
) -> Path:
    """Settings for an app under test: its own database with the real built-ins, the tiny model
    as the default model, and no resources or background jobs of an earlier test (jobs are
    found by run id, and every test's database numbers its runs from 1)."""
    import streamlit as st

    from workbench import jobs

    monkeypatch.setattr(jobs, "_jobs", {})

    shutil.copyfile(migrated_db, tmp_path / "app.db")
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", f"sqlite:///{tmp_path}/app.db")
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(BUILTIN_PROMPTS_DIR))
    monkeypatch.setenv("WORKBENCH_MODEL", str(tiny_model_dir))
    st.cache_resource.clear()
    return tmp_path


def app_test(page: str, timeout: float = 60) -> Any:
    """AppTest for `Home.py` or `pages/N_Name.py` (absolute path: AppTest resolves relative
    paths against the calling file)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP_DIR / page), default_timeout=timeout)


def shown(markdown: str) -> str:
    """What the browser shows for a Markdown body written with `ui.escape_markdown`: the text
    without its backslash escapes (CommonMark's: before ASCII punctuation), hard breaks and
    the fences of the code spans that hold web and e-mail addresses."""
    text = markdown.replace("  \n", "\n")
    spans = re.compile(r"(?<![\\`])(`+)(?!`)(.+?)(?<!`)\1(?!`)")
    parts, done = [], 0
    for span in spans.finditer(text):
        parts.append(_unescape(text[done : span.start()]))
        content = span.group(2)
        stripped = content[1:-1] if content.startswith(" ") and content.endswith(" ") else content
        parts.append(stripped if stripped.strip() else content)
        done = span.end()
    parts.append(_unescape(text[done:]))
    return "".join(parts)


def _unescape(text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


# --- the real default model ---------------------------------------------------------------------


def refuse_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"network access attempted: {args!r}")


@pytest.fixture(scope="session")
def default_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A storage folder holding the converted default model (converted once per session, about
    30 s, or copied from the repository's storage/models when a converted copy is there)."""

    from workbench.backends.model_files import DEFAULT_ALIAS, ensure_default_model

    storage = tmp_path_factory.mktemp("default-model-storage")
    converted = REPO_ROOT / "storage" / "models" / DEFAULT_ALIAS
    if (converted / "workbench-model.json").exists():
        shutil.copytree(converted, storage / "models" / DEFAULT_ALIAS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", refuse_network)
        ensure_default_model(storage)  # converts only when nothing was copied
    yield storage


# --- a real server --------------------------------------------------------------------------------


@contextmanager
def workbench_server(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """`workbench serve` on a free port, started in the log's folder (its Streamlit settings come
    with the command, not from a project folder); yields its URL once /_stcore/health answers;
    stops the whole process group. The server's output goes to `log_path`."""
    from servers import free_port, serving

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(port)]
    health = f"{url}/_stcore/health"
    with serving(command, log_path, health, timeout_s=90, env=env, cwd=log_path.parent):
        yield url


def make_output(text: str | None = "answer", **fields: Any) -> Any:
    """An OutputRecord for tests of code that only reads outputs (no run, no database)."""
    from datetime import datetime

    from workbench.runs import OutputRecord

    base: dict[str, Any] = dict(
        id=1,
        run_id=1,
        prompt="p",
        version=1,
        row_index=0,
        sample_index=0,
        variables={"text": "x"},
        text=text,
        finish_reason="eos",
        prompt_tokens=5,
        completion_tokens=4,
        latency_s=0.5,
        ttft_s=0.1,
        batch_size=1,
        cached=False,
        error=None,
        answer=None,
        model="m",
        revision="r",
        dtype="float32",
        params={},
        seed=0,
        model_input="",
        messages=[],
        created_at=datetime(2026, 1, 1),
    )
    base.update(fields)
    return OutputRecord(**base)


CliResult = tuple[int, str, str]


@pytest.fixture
def tiny_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    tiny_backend: Any,
) -> Callable[..., CliResult]:
    """`workbench ARGS…` in-process on the real built-ins, with the tiny model as the default
    model (loaded once per session); returns (exit status, stdout, stderr)."""
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(BUILTIN_PROMPTS_DIR))
    monkeypatch.setenv("WORKBENCH_MODEL", str(tiny_model_dir))

    def run(*args: object) -> CliResult:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# --- a real OpenAI-compatible server ------------------------------------------------------------


@pytest.fixture(scope="session")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's server on the default model's GGUF file, once per session; its base
    URL. Without the package the tests that need it skip and say why (fail in CI)."""
    from servers import llama_server, missing_modules

    missing = missing_modules()
    if missing:
        reason = (
            f"llama-cpp-python's server is not installed (missing: {', '.join(missing)}); "
            "`bash scripts/setup` installs it"
        )
        if os.environ.get("CI") == "true" or os.environ.get("WORKBENCH_REQUIRE_REMOTE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from workbench.backends.model_files import default_gguf

    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    started = time.monotonic()
    with llama_server(default_gguf(), log) as url:
        print(f"\nllama_cpp.server up in {time.monotonic() - started:.1f} s at {url}")
        yield url
