"""Database engine, sessions and ORM tables.

One `Store` per process and database URL. SQLite runs in WAL mode with foreign keys on, and every
write transaction starts with `BEGIN IMMEDIATE`: it takes the write lock before reading, so two
writers that both read "latest version is 3" cannot happen — the second waits (busy timeout)
instead of failing later on a lock upgrade. The schema is created and changed only by Alembic
migrations, applied when a store is opened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Prompt(Base):
    __tablename__ = "prompt"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


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
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    technique: Mapped[str] = mapped_column(String(200), default="")
    mode: Mapped[str] = mapped_column(String(20), default="chat")
    description: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_version.id"))
    note: Mapped[str] = mapped_column(Text, default="")
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
    that was interrupted can be resumed exactly.
    """

    __tablename__ = "run"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # running, done, cancelled, failed
    model: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(50))
    revision: Mapped[str] = mapped_column(String(100))
    dtype: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # overrides given for the run
    samples: Mapped[int] = mapped_column(default=1)
    use_cache: Mapped[bool] = mapped_column(Boolean, default=True)
    dataset: Mapped[str | None] = mapped_column(Text)
    total: Mapped[int]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


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
    """One generation, with everything needed to reproduce it exactly."""

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
    model_input: Mapped[str] = mapped_column(Text)
    add_special_tokens: Mapped[bool] = mapped_column(Boolean)
    model: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(50))
    revision: Mapped[str] = mapped_column(String(100))
    dtype: Mapped[str] = mapped_column(String(20))
    chat_template_hash: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full, effective parameters
    seed: Mapped[int]
    text: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(20))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_s: Mapped[float | None] = mapped_column(Float)
    ttft_s: Mapped[float | None] = mapped_column(Float)
    batch_size: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)  # extracted answer (self-consistency)
    cache_key: Mapped[str] = mapped_column(String(64))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Vote(Base):
    """Self-consistency: the majority answer over a cell's samples and how many agreed."""

    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("run_id", "version_id", "row_index", name="uq_vote_cell"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("prompt_version.id"))
    row_index: Mapped[int]
    answer: Mapped[str | None] = mapped_column(Text)
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
    comment: Mapped[str] = mapped_column(Text, default="")
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
    detail: Mapped[str] = mapped_column(Text, default="")
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
    note: Mapped[str] = mapped_column(Text, default="")
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
    value: Mapped[str] = mapped_column(Text)


class Store:
    """Engine plus sessions for one database; `read()` for queries, `write()` for changes."""

    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = self.engine.execution_options(workbench_write=True)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        if migrate:
            from .migrations import upgrade

            upgrade(self.engine)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction that commits on success and rolls back on any exception."""
        with self._write_sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (the pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
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
