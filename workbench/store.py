"""Database engine, sessions and ORM tables, for SQLite and PostgreSQL.

One `Store` per process and database URL. The schema is created and changed only by Alembic
migrations, applied when a store is opened. Writers that read before they write ("latest version
is 3, so this one is 4") must not interleave, and the two databases get there differently:

- SQLite runs in WAL mode with foreign keys on, and every write transaction starts with
  `BEGIN IMMEDIATE`: it takes the database's one write lock before reading, so the second writer
  waits (busy timeout) instead of failing later on a lock upgrade.
- PostgreSQL lets many transactions write at once, so a writer first takes `Store.lock(session,
  scope, key)` — a transaction-scoped advisory lock on, say, the prompt's name — and
  `Store.transaction()` runs the work again when it still loses a race (a unique-key violation,
  a serialization failure or a deadlock). An advisory lock rather than `SELECT … FOR UPDATE`
  because the row to lock may not exist yet: two people saving a brand-new prompt at once.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy import text as sql_text
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .db_faults import (
    ENV_URL,
    DatabaseFault,
    DatabaseUnavailableError,
    ReadOnlyDatabaseError,
    driver_reason,
    not_a_database,
    postgres_fault,
    read_only,
    shown,
    sqlite_error_name,
    sqlite_fault,
    unfolded_changes_unreadable,
    what_file_is,
    why_read_only,
)
from .errors import WorkbenchError

SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_SWITCH_ATTEMPTS = 40  # about 40 s of retries in all
POSTGRES_CONNECT_TIMEOUT_S = 10
WRITE_ATTEMPTS = 8
# SQLSTATEs after which running the whole transaction again is correct: unique_violation (lost a
# race to insert the same key), serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = {"23505", "40001", "40P01"}
UNREACHABLE_SQLSTATES = {"57P01", "57P02", "57P03", "3D000"}
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


NUL_REPLACEMENT = "\ufffd"


class StoredText(TypeDecorator[str]):
    """Text as given, except that on PostgreSQL a NUL character is stored as U+FFFD.

    PostgreSQL cannot hold NUL in text at all, and a model (or a pasted input) can produce one;
    refusing the whole output would lose it, so that one character is replaced — visibly, with
    the Unicode replacement character. SQLite keeps text exactly.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and dialect.name == "postgresql" and "\x00" in value:
            return value.replace("\x00", NUL_REPLACEMENT)
        return value


def without_nul(value: Any) -> Any:
    """A JSON-ready value with every NUL in its strings (keys too) replaced, for PostgreSQL."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def _postgres_json(value: Any) -> str:
    # json's \u0000 would be accepted by the json type but breaks any cast to jsonb
    return json.dumps(without_nul(value))


class Base(DeclarativeBase):
    pass


class Prompt(Base):
    __tablename__ = "prompt"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # "prompt", or "trials": the hidden companion that holds an ablation's or a search's
    # variants (migration 0011; see Library.save_trial).
    kind: Mapped[str] = mapped_column(String(20), default="prompt", server_default="prompt")


class PromptVersion(Base):
    """One immutable version. Rows are inserted, never updated (a trigger refuses updates)."""

    __tablename__ = "prompt_version"
    __table_args__ = (
        UniqueConstraint("prompt_id", "number", name="uq_prompt_version_number"),
        Index("ix_prompt_version_hash", "prompt_id", "content_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id"))
    number: Mapped[int]
    content: Mapped[str] = mapped_column(StoredText)
    content_hash: Mapped[str] = mapped_column(String(64))
    technique: Mapped[str] = mapped_column(String(200), default="")
    mode: Mapped[str] = mapped_column(String(20), default="chat")
    description: Mapped[str] = mapped_column(StoredText, default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_version.id"))
    note: Mapped[str] = mapped_column(StoredText, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Label(Base):
    """A movable name (`production`, `candidate`…) pointing at one version of a prompt."""

    __tablename__ = "label"
    __table_args__ = (UniqueConstraint("prompt_id", "name", name="uq_label_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id"))
    name: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_version.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LabelEvent(Base):
    """Every move of a label, append-only: from which version to which (None = removed)."""

    __tablename__ = "label_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id"))
    label: Mapped[str] = mapped_column(String(100))
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_version.id"))
    to_version_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_version.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    """One press of Run: versions × rows (× samples) on one model with one set of parameters.

    Written before anything is generated; the rows it covers are kept in `run_row`, so a run
    that was interrupted can be resumed exactly. While it runs, its owner (process id, host,
    since when) and a heartbeat say who is generating it and that they still are (migration
    0008): a run whose owner is gone is "interrupted" (see `runs.settle_runs`).
    """

    __tablename__ = "run"
    __table_args__ = (  # only the running runs, which every listing checks (migration 0008)
        Index(
            "ix_run_running",
            "id",
            sqlite_where=sql_text("status = 'running'"),
            postgresql_where=sql_text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # running, done, cancelled (asked to stop: Cancel, Ctrl+C), failed (an error), interrupted
    # (its process went away without a word: killed, crashed)
    status: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(StoredText)
    backend: Mapped[str] = mapped_column(String(50))
    revision: Mapped[str] = mapped_column(String(100))
    dtype: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # overrides given for the run
    samples: Mapped[int] = mapped_column(default=1)
    use_cache: Mapped[bool] = mapped_column(Boolean, default=True)
    dataset: Mapped[str | None] = mapped_column(StoredText)
    total: Mapped[int]
    error: Mapped[str | None] = mapped_column(StoredText)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    owner_pid: Mapped[int | None]
    owner_host: Mapped[str | None] = mapped_column(String(255))
    owner_since: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    # How a run scored answer choices (migration 0010), so a resume scores the rest the same
    # way: the choices given for the run (null: the prompt's own), the content-free inputs of
    # its calibration (null: not calibrated) and, per version, the distribution they gave.
    # NULL when the run generated its answers.
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RunVersion(Base):
    __tablename__ = "run_version"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_version.id"))


class RunRow(Base):
    __tablename__ = "run_row"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"), primary_key=True)
    row_index: Mapped[int] = mapped_column(primary_key=True)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)


class Output(Base):
    """One generation, with everything needed to reproduce it exactly.

    On PostgreSQL, migration 0008 also adds trigram (pg_trgm) GIN indexes on `text` and on the
    variables' JSON text for History's search, when the role may create the extension; they are
    not declared here because a database may lack them.
    """

    __tablename__ = "output"
    __table_args__ = (
        UniqueConstraint(
            "run_id", "version_id", "row_index", "sample_index", name="uq_output_cell"
        ),
        Index("ix_output_cache_key", "cache_key"),
        Index("ix_output_created", "created_at"),
        Index("ix_output_version", "version_id", "id"),
        Index("ix_output_model", "model", "id"),
        Index(  # only the failed outputs: History's "errors only" (migration 0004)
            "ix_output_error",
            "id",
            sqlite_where=sql_text("error IS NOT NULL"),
            postgresql_where=sql_text("error IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_version.id"))
    row_index: Mapped[int]
    sample_index: Mapped[int] = mapped_column(default=0)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    messages: Mapped[list[Any]] = mapped_column(JSON)
    model_input: Mapped[str] = mapped_column(StoredText)
    add_special_tokens: Mapped[bool] = mapped_column(Boolean)
    model: Mapped[str] = mapped_column(StoredText)
    backend: Mapped[str] = mapped_column(String(50))
    revision: Mapped[str] = mapped_column(String(100))
    dtype: Mapped[str] = mapped_column(String(20))
    chat_template_hash: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full, effective parameters
    seed: Mapped[int] = mapped_column(BigInteger)  # 64-bit on PostgreSQL too (migration 0007)
    text: Mapped[str | None] = mapped_column(StoredText)
    finish_reason: Mapped[str | None] = mapped_column(String(20))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_s: Mapped[float | None] = mapped_column(Float)
    ttft_s: Mapped[float | None] = mapped_column(Float)
    batch_size: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(StoredText)
    answer: Mapped[str | None] = mapped_column(StoredText)  # extracted answer (self-consistency)
    cache_key: Mapped[str] = mapped_column(String(64))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Each generated token's log-probability and top alternatives (`workbench.logprobs`'s
    # format; migration 0009), NULL when the backend gave none. Deferred: listings never load
    # it; `runs.token_logprobs` reads it for one output.
    token_logprobs: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # "Continue from here with this token" (migration 0010): the output this one branched from,
    # and where: {"position": N, "token_id": T, "token": "text"}. NULL for ordinary outputs.
    parent_output_id: Mapped[int | None]
    branch: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Scored answer choices (migration 0010): {"choices", "logprobs", "probs", "calibrated"}.
    choices: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Vote(Base):
    """Self-consistency: the majority answer over a cell's samples and how many agreed."""

    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("run_id", "version_id", "row_index", name="uq_vote_cell"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_version.id"))
    row_index: Mapped[int]
    answer: Mapped[str | None] = mapped_column(StoredText)
    agreement: Mapped[float] = mapped_column(Float)
    samples: Mapped[int]
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)


class Rating(Base):
    """A person's verdict on one output: thumbs up/down and/or 1–5 stars, with a comment.

    One row per output; rating again replaces it (the latest opinion is the one that counts).
    """

    __tablename__ = "rating"
    __table_args__ = (
        UniqueConstraint("output_id", name="uq_rating_output"),
        CheckConstraint("verdict IS NULL OR verdict IN (-1, 1)", name="ck_rating_verdict"),
        CheckConstraint("stars IS NULL OR stars BETWEEN 1 AND 5", name="ck_rating_stars"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("output.id"))
    verdict: Mapped[int | None]
    stars: Mapped[int | None]
    comment: Mapped[str] = mapped_column(StoredText, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Score(Base):
    """One metric or assertion on one output; scoring the output again replaces it."""

    __tablename__ = "score"
    __table_args__ = (UniqueConstraint("output_id", "metric", name="uq_score_output_metric"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("output.id"))
    metric: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(50))
    value: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    detail: Mapped[str] = mapped_column(StoredText, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TestSet(Base):
    """One immutable version of a named test set (a dataset kept for evaluations)."""

    __tablename__ = "test_set"
    __test__ = False  # not a pytest test class, whatever its name says
    __table_args__ = (UniqueConstraint("name", "version", name="uq_test_set_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    columns: Mapped[list[str]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(StoredText, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TestSetRow(Base):
    __tablename__ = "test_set_row"
    __test__ = False

    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_set.id"), primary_key=True)
    row_index: Mapped[int] = mapped_column(primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)


class AppState(Base):
    """Small facts about the database itself, such as when the built-ins were loaded."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(StoredText)


class Store:
    """Engine plus sessions for one database; `read()` for queries, `write()` or `transaction()`
    for changes.

    Reading works where writing cannot. A SQLite file whose folder (or mount) is read-only, or
    which is read-only itself, is opened read-only: WAL mode needs the `-shm` and `-wal` files
    next to it, which such a folder cannot hold, so the file is opened with `mode=ro` — and with
    `immutable=1` when no `-wal` file holds unfolded changes, which tells SQLite that no one
    writes it (no one can, through this folder). Migrations are then only checked, and a write
    fails up front with one line naming the file. Every other failure a person can fix (not a
    database, disk full, server down) is turned into a `DatabaseFault` by `read()`, `write()`
    and `transaction()`.
    """

    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        parsed = _parse_url(url)
        self.dialect = parsed.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self.is_postgresql = self.dialect == "postgresql"
        self.where = _describe(parsed)
        self.path: Path | None = None  # the SQLite file, when the database is one
        self.read_only_reason: str | None = None  # why this SQLite file cannot be written here
        if self.is_sqlite:
            parsed = self._open_sqlite_file(parsed)
        try:
            self.engine: Engine = create_engine(parsed, **self._engine_options())
        except ImportError as exc:
            raise WorkbenchError(
                f"cannot open {self.where}: its database driver is not installed ({exc}); for "
                "PostgreSQL run: pip install 'psycopg[binary]'"
            ) from None
        if self.is_sqlite:
            _configure_sqlite(self.engine, wal=self.read_only_reason is None)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = self.engine.execution_options(workbench_write=True)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        if migrate:
            try:
                self._migrate()
            except DBAPIError as exc:
                self.engine.dispose()
                self._raise_fault(exc)
                raise
            except WorkbenchError:
                self.engine.dispose()
                raise

    def _engine_options(self) -> dict[str, Any]:
        if self.is_sqlite:
            return {"connect_args": {"check_same_thread": False, "timeout": 30}}
        # A server restarts or drops idle connections; test each pooled connection before use
        # instead of failing the first query after that. A pool large enough for a run that
        # writes outputs from several threads while the app reads.
        return {
            "pool_pre_ping": True,
            "pool_size": 10,
            "max_overflow": 20,
            "json_serializer": _postgres_json,
            "connect_args": {
                "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
                "application_name": "prompt-workbench",
            },
        }

    @property
    def read_only(self) -> bool:
        """True for a SQLite file opened read-only because it cannot be written here."""
        return self.read_only_reason is not None

    def _open_sqlite_file(self, url: URL) -> URL:
        """Check the SQLite file before SQLite touches it; the URL to open it with.

        A folder, a text file or random bytes where the database should be is named as such
        (SQLite would call all of them "not a database", or "unable to open"); a file that
        cannot be written here is opened read-only (see the class). An in-memory database and
        a `file:` URI the person wrote (`?uri=true`) are opened as given.
        """
        database = url.database
        if not database or database == ":memory:" or url.query.get("uri") in ("true", "1"):
            return url
        path = Path(database)
        reason = what_file_is(path)
        if reason is not None:
            raise not_a_database(path, reason)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReadOnlyDatabaseError(
                f"cannot create the folder {shown(path.parent)} for the SQLite file "
                f"{shown(path)} ({exc.strerror}): point {ENV_URL} or WORKBENCH_STORAGE_DIR at "
                "a writable folder"
            ) from None
        self.path = path
        why = why_read_only(path)
        if why is None:
            return url
        if not path.exists() or path.stat().st_size == 0:
            raise ReadOnlyDatabaseError(
                f"cannot create the SQLite file {shown(path)}: {why}; point {ENV_URL} or "
                "WORKBENCH_STORAGE_DIR at a writable folder"
            )
        self.read_only_reason = why
        query = {"mode": "ro", "uri": "true"}
        if not os.access(path.parent, os.W_OK) and not _has_unfolded_changes(path):
            query["immutable"] = "1"
        return url.set(database=f"file:{quote(str(path.resolve()))}", query=query)

    def _migrate(self) -> None:
        """Bring the schema up to date; a read-only file can only be checked."""
        from .migrations import current_revision, head_revision, upgrade

        if self.read_only_reason is None:
            upgrade(self.engine)
            return
        with self.engine.connect() as conn:
            current = current_revision(conn)
        if current != head_revision():
            assert self.path is not None
            raise ReadOnlyDatabaseError(
                f"{shown(self.path)} has schema {current or 'none'} and this version of the "
                f"workbench needs {head_revision()}, but it is read-only here "
                f"({self.read_only_reason}): open it once where it is writable to upgrade it"
            )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
            except DBAPIError as exc:
                self._raise_fault(exc)
                raise

    @contextmanager
    def _write(self) -> Iterator[Session]:
        if self.read_only_reason is not None:
            assert self.path is not None
            raise read_only(self.path, self.read_only_reason)
        with self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction that commits on success and rolls back on any exception."""
        try:
            with self._write() as session:
                yield session
        except DBAPIError as exc:
            self._raise_fault(exc)
            raise

    def transaction(self, work: Callable[[Session], T], *, attempts: int = WRITE_ATTEMPTS) -> T:
        """Run `work` in a write transaction, and run it again from the start when it lost a race.

        `work` must read what it depends on inside the transaction (never from an earlier one),
        so running it again is always correct. With `lock()` taken first a race is rare; this
        catches what locks do not cover (two imports locking prompts in different orders
        deadlock; PostgreSQL cancels one) and SQLite's busy timeout running out.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self._write() as s:
                    return work(s)
            except DBAPIError as exc:
                if attempt == attempts or not self._retryable(exc):
                    self._raise_fault(exc)
                    raise
            time.sleep(random.uniform(0, 0.01 * attempt))  # let the winner finish first
        raise AssertionError("unreachable")

    def lock(self, session: Session, scope: str, key: object) -> None:
        """Hold off every other writer of the same thing until this transaction ends.

        `scope` and `key` name the thing (`"prompt", "summarise"`), whether or not a row for it
        exists yet. On PostgreSQL this is a transaction-scoped advisory lock; on SQLite it does
        nothing, because a write transaction already holds the database's only write lock.
        """
        if self.is_postgresql:
            session.execute(
                sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(scope, key)}
            )

    def close(self) -> None:
        self.engine.dispose()

    def _retryable(self, exc: DBAPIError) -> bool:
        if self.is_sqlite:
            return "database is locked" in str(exc.orig)
        return _sqlstate(exc) in RETRYABLE_SQLSTATES

    def _raise_fault(self, exc: DBAPIError) -> None:
        """A failure a person can fix becomes one line naming the database and what to do;
        anything else (a bug) is left to the caller to re-raise as it is."""
        if self.is_sqlite:
            fault = self._sqlite_fault(exc)
        else:
            self._raise_if_unreachable(exc)
            fault = postgres_fault(exc, self.where)
        if fault is not None:
            raise fault from exc

    def _sqlite_fault(self, exc: DBAPIError) -> DatabaseFault | None:
        """`sqlite_fault`, except that a file opened read-only with changes still in its `-wal`
        cannot be opened at all here, which is said as such."""
        if (
            self.path is not None
            and self.read_only_reason is not None
            and _has_unfolded_changes(self.path)
            and sqlite_error_name(exc).startswith("SQLITE_CANTOPEN")
        ):
            return unfolded_changes_unreadable(self.path, self.read_only_reason)
        return sqlite_fault(exc, self.path)

    def _raise_if_unreachable(self, exc: DBAPIError) -> None:
        """A server that is down or refuses us becomes one readable line, not a traceback."""
        state = _sqlstate(exc)
        if exc.connection_invalidated:
            unreachable = True
        elif state is None:  # failed before the server said anything: refused, timed out
            unreachable = isinstance(exc, OperationalError)
        else:  # connection exception, bad password, server shutting down, no such database
            unreachable = state[:2] in ("08", "28") or state in UNREACHABLE_SQLSTATES
        if not unreachable:
            return
        reason = driver_reason(exc)
        raise DatabaseUnavailableError(
            f"cannot reach the database at {self.where}: {reason}. Is the server running, and "
            "is WORKBENCH_DATABASE_URL right?"
        ) from None


def _has_unfolded_changes(path: Path) -> bool:
    """Whether a `-wal` file next to the database holds changes not yet in the file itself."""
    wal = path.with_name(path.name + "-wal")
    try:
        return wal.stat().st_size > 0
    except OSError:
        return False


def advisory_key(scope: str, key: object) -> int:
    """A stable signed 64-bit number for a lock name (a collision only makes two writers wait)."""
    digest = hashlib.blake2b(f"{scope}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


SUPPORTED = ("sqlite", "postgresql")


def _parse_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it; `postgresql://` and `postgres://` mean psycopg 3.

    Without a driver SQLAlchemy would pick psycopg2, which the workbench does not install.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise WorkbenchError(
            f"WORKBENCH_DATABASE_URL {url!r} is not a database URL: use sqlite:///path/to/file.db "
            "or postgresql+psycopg://user:password@host:5432/database"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in SUPPORTED:
        raise WorkbenchError(
            f"database {parsed.get_backend_name()!r} is not supported: use SQLite "
            "(sqlite:///file.db) or PostgreSQL (postgresql+psycopg://user:password@host/db)"
        )
    return parsed


def _describe(url: URL) -> str:
    """Where a database is, without its password: a file, or host:port/database."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    return (
        f"PostgreSQL server {url.host or 'localhost'}:{url.port or 5432}, database {url.database}"
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _enable_wal(cursor: Any) -> None:
    """WAL mode belongs to the file: whoever opens a new file first switches it, later
    connections find it switched. The switch needs a lock for which SQLite may answer "locked"
    at once instead of waiting (where waiting could deadlock), which happens when several
    processes open one new file together — so that case is retried briefly."""
    import sqlite3

    for attempt in range(WAL_SWITCH_ATTEMPTS):
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _configure_sqlite(engine: Engine, *, wal: bool = True) -> None:
    """Pragmas on every new connection; `wal=False` for a file opened read-only, which cannot
    switch its journal mode (and need not: it is only read)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (the pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("workbench_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def get_store(url: str) -> Store:
    """The process-wide store for a URL: migrations run once, connections are pooled."""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = Store(url)
        return store


@atexit.register
def close_stores() -> None:
    """Close the process-wide stores' connections when the process ends, explicitly rather than
    whenever the garbage collector gets to them (in a process that loaded a model it never does:
    loading freezes what exists, see backends.local): the last SQLite connection to close folds
    the write-ahead log back into the database file, so `workbench.db` alone holds everything."""
    with _stores_lock:
        for store in _stores.values():
            store.close()
