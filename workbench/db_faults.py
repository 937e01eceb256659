"""Database failures a person can fix, each as one line that names the database and what to do.

SQLAlchemy's errors carry the driver's message, the statement and its parameters (`[SQL: INSERT
…]`, `[parameters: …]`, for an output several screens of them) and a link: right for a log,
useless at the screen. The store turns the failures a person can act on into these exceptions,
whose message is the whole story: which file or server, what is wrong with it, what to do.

- `NotADatabaseError`: the SQLite path is a folder, a text file, random bytes, or a SQLite file
  that is damaged (truncated, overwritten). Told apart by looking at the file itself, because
  SQLite says "file is not a database" to all but the last.
- `ReadOnlyDatabaseError`: the file, its folder or its mount is read-only (reading still works:
  see `Store`), or a PostgreSQL server refuses changes (a standby, a read-only role).
- `DiskFullError`: nothing of the failed transaction was written; what was stored before is kept.
- `DatabaseUnavailableError`: a server that is down or refuses us.
- `DatabaseBusyError`: another process held SQLite's write lock for longer than the busy timeout.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from .errors import WorkbenchError

SQLITE_HEADER = b"SQLite format 3\x00"
ENV_URL = "WORKBENCH_DATABASE_URL"
# SQLSTATEs: disk_full; read_only_sql_transaction (a standby, default_transaction_read_only);
# insufficient_privilege (a role without INSERT/UPDATE on the tables).
POSTGRES_DISK_FULL = {"53100"}
POSTGRES_READ_ONLY = {"25006", "42501"}


class DatabaseFault(WorkbenchError):
    """A database that cannot do what was asked, for a reason outside the workbench."""


class DatabaseUnavailableError(DatabaseFault):
    """The database server cannot be reached (down, wrong address, wrong password)."""


class NotADatabaseError(DatabaseFault):
    """The SQLite path is a folder, a text file, random bytes or a damaged database."""


class ReadOnlyDatabaseError(DatabaseFault):
    """The database can be read but not changed here; nothing of the change was written."""


class DiskFullError(DatabaseFault):
    """The disk (or the server's disk) is full; nothing of the change was written."""


class DatabaseBusyError(DatabaseFault):
    """Another process kept the SQLite file's write lock for longer than we wait."""


def shown(path: Path) -> str:
    """A path as a person would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def what_file_is(path: Path) -> str | None:
    """Why `path` is not a usable SQLite database, from the file itself; None when it looks like
    one (or is empty or missing: SQLite makes a new database there)."""
    if path.is_dir():
        return "is a folder, not a SQLite database file"
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not head or head.startswith(SQLITE_HEADER):
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "is not a SQLite database (random bytes?)"
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if printable >= 0.95 * len(text):
        return "is a text file, not a SQLite database"
    return "is not a SQLite database (random bytes?)"


def not_a_database(path: Path, reason: str | None = None) -> NotADatabaseError:
    reason = reason or what_file_is(path)
    if reason is None:  # it starts like SQLite, yet SQLite cannot read it
        return NotADatabaseError(
            f"{shown(path)} is a damaged SQLite database (truncated or overwritten?): restore it "
            f"from a backup, or move it away to start a new one (sqlite3's .recover command may "
            f"rescue part of it)"
        )
    if reason.startswith("is a folder"):
        return NotADatabaseError(
            f"{shown(path)} {reason}: move it away, or point {ENV_URL} at a file "
            "(sqlite:///path/to/workbench.db)"
        )
    return NotADatabaseError(f"{shown(path)} {reason}: move it away or point {ENV_URL} elsewhere")


def why_read_only(path: Path) -> str | None:
    """Why the SQLite file at `path` cannot be written here; None when it can.

    `os.access` asks the kernel, so a read-only mount counts even for root (which a file's
    permission bits never stop), and a folder or file without write permission counts for
    everyone else.
    """
    folder = path.parent
    if not os.access(folder, os.W_OK):
        return f"its folder {shown(folder)} is {_not_writable(folder)}"
    if path.exists() and not os.access(path, os.W_OK):
        return f"the file is {_not_writable(path)}"
    return None


def _not_writable(path: Path) -> str:
    try:
        read_only_mount = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_mount = False
    return "on a read-only file system" if read_only_mount else "not writable"


def read_only(path: Path, reason: str) -> ReadOnlyDatabaseError:
    return ReadOnlyDatabaseError(
        f"cannot save: {shown(path)} is read-only here ({reason}); nothing was written. Reading "
        f"works; to save, copy it to a writable folder and point {ENV_URL} at the copy"
    )


def disk_full(path: Path) -> DiskFullError:
    return DiskFullError(
        f"the disk holding {shown(path)} is full; nothing was written: free some space "
        f"there (df -h {shown(path.parent)}) and try again"
    )


def unfolded_changes_unreadable(path: Path, reason: str) -> ReadOnlyDatabaseError:
    """A file opened read-only whose `-wal` still holds changes, which SQLite cannot read in a
    read-only folder."""
    return ReadOnlyDatabaseError(
        f"{shown(path)} has changes in {path.name}-wal that SQLite cannot read while the folder "
        f"is read-only ({reason}): open it once where it is writable, which folds them into the "
        "file"
    )


def sqlite_error_name(exc: DBAPIError) -> str:
    """SQLite's name for the failure (`SQLITE_FULL`, `SQLITE_CANTOPEN_…`); empty if none."""
    return str(getattr(exc.orig, "sqlite_errorname", ""))


def driver_reason(exc: DBAPIError) -> str:
    """The first line of the driver's own message (without SQLAlchemy's statement and link)."""
    return (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]


def sqlite_fault(exc: DBAPIError, path: Path | None) -> DatabaseFault | None:
    """The SQLite failure as a DatabaseFault, or None when it is not one a person can fix
    (a bug: left as it is, with its statement, for the log)."""
    name = sqlite_error_name(exc)
    if path is None:  # an in-memory database: nothing on disk to name or to fix
        return None
    if name == "SQLITE_FULL":
        return disk_full(path)
    if name.startswith("SQLITE_READONLY"):
        return read_only(path, why_read_only(path) or "the file or its folder is not writable")
    if name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT"):
        return not_a_database(path)
    if name == "SQLITE_BUSY":
        return DatabaseBusyError(
            f"{shown(path)} stayed locked by another process (a long import or run?) for "
            "longer than the workbench waits: try again when it is done"
        )
    if name.startswith("SQLITE_CANTOPEN") or name.startswith("SQLITE_IOERR"):
        return _cannot_open_or_read(name, path)
    return None


def _cannot_open_or_read(name: str, path: Path) -> DatabaseFault:
    """SQLITE_CANTOPEN or SQLITE_IOERR: something that is no database, a failing disk, or a
    file SQLite may not open here."""
    reason = what_file_is(path)
    if reason is not None:
        return not_a_database(path, reason)
    if name.startswith("SQLITE_IOERR"):
        return DatabaseFault(
            f"cannot read or write {shown(path)}: input/output error ({name}); check the "
            "disk it is on"
        )
    why = why_read_only(path)
    problem = f"it is read-only here ({why})" if why else "SQLite cannot open it"
    return DatabaseFault(
        f"cannot open {shown(path)}: {problem}; point {ENV_URL} at a file in a writable folder"
    )


def postgres_fault(exc: DBAPIError, where: str) -> DatabaseFault | None:
    """A PostgreSQL failure a person can act on as a DatabaseFault (else None)."""
    state = getattr(exc.orig, "sqlstate", None)
    reason = driver_reason(exc)
    if state in POSTGRES_DISK_FULL:
        return DiskFullError(
            f"the disk of the {where} is full ({reason}); nothing was written: ask whoever "
            "runs the server to free some space"
        )
    if state in POSTGRES_READ_ONLY:
        return ReadOnlyDatabaseError(
            f"cannot save: the {where} refuses changes ({reason}); nothing was written. Point "
            f"{ENV_URL} at a server and role that may write (not a standby)"
        )
    return None
