"""Is this SQL? promptfoo's is-sql and contains-sql, decided by SQLite's own parser.

promptfoo parses with node-sql-parser (MySQL by default). The closest well-kept parser that
ships with Python is SQLite's: each statement is compiled with EXPLAIN on an empty in-memory
database — compiled, never run — and only a syntax error counts against it ("no such table"
means the grammar was fine). So a statement MySQL alone accepts (`SHOW TABLES`) fails here;
the parity fixture records where the two differ.
"""

from __future__ import annotations

import re
import sqlite3

_NAME_ERRORS = ("no such table", "no such column", "no such function", "unknown database",
                "no such collation", "no such module", "no such index", "no such view")  # fmt: skip


def _statements(text: str) -> list[str]:
    """The text cut into statements at semicolons outside quotes and comments."""
    out: list[str] = []
    current = ""
    for char in text:
        current += char
        if char == ";" and sqlite3.complete_statement(current):
            out.append(current)
            current = ""
    if current.strip():
        out.append(current)
    return [s for s in (s.strip() for s in out) if s.strip(" ;\n\t\r")]


def _syntax_error(statement: str) -> str | None:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        connection.execute("EXPLAIN " + statement)
    except sqlite3.Warning as exc:  # more than one statement slipped through
        return str(exc)
    except sqlite3.Error as exc:
        message = str(exc)
        if message.startswith(_NAME_ERRORS):
            return None
        return message
    finally:
        connection.close()
    return None


def is_sql(text: str) -> tuple[bool, str]:
    """Whether every statement in the text is valid SQL (SQLite's grammar); no empty text, no
    unpaired backtick, no MySQL-foreign generate_series()."""
    sql = text.strip()
    if not sql:
        return False, "SQL statement is empty"
    if sql.count("`") % 2:
        return False, "SQL statement has an unpaired backtick"
    if re.search(r"\bgenerate_series\s*\(", sql, re.IGNORECASE):
        return False, "generate_series() is not MySQL"
    statements = _statements(sql)
    if not statements:
        return False, "SQL statement is empty"
    for statement in statements:
        error = _syntax_error(statement)
        if error is not None:
            return False, f"not valid SQL: {error}"
    return True, "valid SQL"


_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})(.*)$")


def sql_blocks(text: str) -> list[str]:
    """The bodies of ``` fences marked sql (or unmarked) in the text."""
    blocks: list[str] = []
    fence: str | None = None
    is_sql_block = False
    body: list[str] = []
    for line in re.split(r"\r\n?|\n", text):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                is_sql_block = m.group(2).strip().lower() in ("", "sql")
                body = []
            continue
        if (
            m
            and m.group(1)[0] == fence[0]
            and len(m.group(1)) >= len(fence)
            and not m.group(2).strip()
        ):
            if is_sql_block:
                blocks.append("\n".join(body).strip())
            fence = None
        else:
            body.append(line)
    return blocks


def contains_sql(text: str) -> tuple[bool, str]:
    """Whether an SQL fence in the text (or, with none, the whole text) is valid SQL."""
    candidates = sql_blocks(text) or [text]
    reason = "Output does not contain valid SQL"
    for candidate in candidates:
        if not candidate.strip():
            continue
        ok, reason = is_sql(candidate)
        if ok:
            return True, "contains valid SQL"
    return False, reason
