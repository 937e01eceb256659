"""Export prompt versions as `.prompty` files and import them back, all or nothing.

An exported file is the version's content plus its place in history (`metadata.workbench_version`,
`note`, `labels`). Import strips those fields again, so export → import into an empty database →
export gives the same bytes. Exports written before `workbench_version` carry the number as a
whole-number `metadata.version`, and import reads it so; any other `metadata.version` is Prompty's
free-text field and stays in the content. Files as Prompty's own tools write them import too: a file
without a name (all body, empty front matter, or no `name:`) takes its file's name.

Zips are written deterministically (sorted entries, fixed timestamps) so they too can be compared
and committed.

Import checks every file before writing anything and writes in one transaction: one bad file
rejects the whole import with a message naming it, and the database is left as it was.
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import ImportRejected, PromptFileError, WorkbenchError
from .library import Library, PromptWriter, Ref, VersionInfo, check_label, content_hash
from .lint import option_issues
from .reports import csv_bytes
from .store import AppState, Prompt, utcnow
from .templates import (
    MAX_FILE_BYTES,
    PromptFile,
    history_of,
    name_from_source,
    parse_prompt_bytes,
)
from .wording import plural

# One zip carries a whole library back in: 20,000 versions of the built-ins' size (about 1 KB)
# are 20 MB unpacked and about 12 MB zipped, under the app's 20 MB upload limit. The bytes bound
# is what holds memory; the count bounds the time spent listing and parsing entries. Export
# refuses what import would refuse (see _zip).
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_TOTAL_BYTES = 64 * 1024 * 1024
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
BUILTINS_STATE_KEY = "builtins_loaded_at"


@dataclass(frozen=True)
class ExportFile:
    filename: str
    data: bytes
    media_type: str


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # set where there was none: `a@prod → v3`
    # Labels that pointed at another version before this import (`a@production v2 → v3`): an
    # edited export can move `production`, and that must never happen without a word.
    moved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            plural(len(self.created), "new version"),
            f"{len(self.unchanged):,} already present",
        ]
        if self.labels:
            parts.append(plural(len(self.labels), "label") + " set")
        if self.moved:
            parts.append(plural(len(self.moved), "label") + " moved: " + ", ".join(self.moved))
        if self.skipped:
            parts.append(plural(len(self.skipped), "non-prompt file") + " ignored")
        return ", ".join(parts)


# --- export ---------------------------------------------------------------------------------


def export_version(library: Library, ref: str | Ref) -> ExportFile:
    version = library.get(ref)
    return ExportFile(f"{version.prompt}.prompty", _file_bytes(version), "text/plain")


def export_prompt(library: Library, name: str) -> ExportFile:
    return ExportFile(f"{name}.zip", _zip(library.versions(name)), "application/zip")


def export_library(library: Library, names: Sequence[str] | None = None) -> ExportFile:
    versions = library.all_versions()
    if names is not None:
        wanted = set(names)
        for name in wanted - {v.prompt for v in versions}:
            library.get(name)  # raises a NotFoundError naming it
        versions = [v for v in versions if v.prompt in wanted]
    return ExportFile("prompt-library.zip", _zip(versions), "application/zip")


def export_versions(
    library: Library, refs: Sequence[str | Ref], filename: str = "prompt-versions.zip"
) -> ExportFile:
    """Chosen versions (`name@3`, `name@production`, …) as one zip laid out like the others.

    A version named twice (say by number and by label) is written once; an unknown reference
    raises the NotFoundError that names it, before anything is zipped.
    """
    if not refs:
        raise WorkbenchError("choose at least one version to export")
    chosen: dict[tuple[str, int], VersionInfo] = {}
    for ref in refs:
        version = library.get(ref)
        chosen[(version.prompt, version.number)] = version
    return ExportFile(filename, _zip(chosen.values()), "application/zip")


def _zip(versions: Iterable[VersionInfo]) -> bytes:
    """One deterministic zip, refused here when `import_files` would refuse it.

    An export that cannot be imported back is a trap found only on the other machine, so the
    import's limits — files per zip, bytes unpacked, bytes per file — are checked on the way
    out, with a message saying what to export instead.
    """
    chosen = sorted(versions, key=lambda v: (v.prompt, v.number))
    if len(chosen) > MAX_ZIP_ENTRIES:
        raise WorkbenchError(
            f"{len(chosen)} versions are more than an import takes ({MAX_ZIP_ENTRIES} files in "
            "one zip): export fewer prompts or versions at a time"
        )
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for v in chosen:
            data = _file_bytes(v)
            total += len(data)
            if total > MAX_ZIP_TOTAL_BYTES:
                raise WorkbenchError(
                    "these versions unpack to more than an import takes "
                    f"({MAX_ZIP_TOTAL_BYTES // 1024 // 1024} MB in one zip): export fewer "
                    "prompts or versions at a time"
                )
            info = zipfile.ZipInfo(f"{v.prompt}/v{v.number}.prompty", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _file_bytes(version: VersionInfo) -> bytes:
    """The version's file; its content passed the size limit when saved, but a long note or
    many labels can push the file with its history past what an import reads."""
    data = version.export_text().encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise WorkbenchError(
            f"{version.ref} is {len(data) / 1024:.1f} KB as a file with its history; an import "
            f"takes files up to {MAX_FILE_BYTES // 1024} KB: shorten its note"
        )
    return data


def write_export(export: ExportFile, output: Path) -> Path:
    """Write to `output`, or into it when it is a folder: a zip as is, a single file by its name."""
    target = output / export.filename if output.is_dir() else output
    target.write_bytes(export.data)
    return target


# --- import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Incoming:
    source: str
    file: PromptFile
    version: int | None
    note: str
    labels: tuple[str, ...]
    content: str  # the canonical text, made once: dumping YAML is a third of an import's time
    digest: str


def import_files(library: Library, files: Sequence[tuple[str, bytes]]) -> ImportReport:
    """Import `.prompty` files and zips; every file is checked before anything is written."""
    report = ImportReport()
    incoming, problems = _read_all(files, report)
    if problems:
        raise ImportRejected(problems)
    if not incoming:
        raise ImportRejected([("import", "no .prompty files found")])
    _check_conflicts(incoming)

    def write(s: Session) -> ImportReport:
        attempt = ImportReport(skipped=list(report.skipped))  # a retry starts a clean report
        _write(library, s, incoming, attempt)
        return attempt

    return library.store.transaction(write)


def _read_all(
    files: Sequence[tuple[str, bytes]], report: ImportReport
) -> tuple[list[_Incoming], list[tuple[str, str]]]:
    incoming: list[_Incoming] = []
    problems: list[tuple[str, str]] = []
    for name, data in files:
        if name.lower().endswith(".zip") or data[:4] == b"PK\x03\x04":
            try:
                entries = _zip_entries(name, data, report)
            except ImportRejected as exc:
                problems += exc.problems
                continue
        else:
            entries = [(name, data)]
        for source, content in entries:
            try:
                incoming.append(_incoming(source, content))
            except PromptFileError as exc:
                problems.append(
                    (source, exc.problem if exc.line is None else f"line {exc.line}: {exc.problem}")
                )
    return incoming, problems


def _zip_entries(name: str, data: bytes, report: ImportReport) -> list[tuple[str, bytes]]:
    """The `.prompty` members of a zip, each read through a bounded read.

    Nothing a zip's headers declare is trusted to bound the work: a member is read with
    `read(limit + 1)`, which makes zlib inflate at most that much, never with `read()`, which
    inflates up to 2 GB in one step before cutting the result to the declared size (a 1 MB zip
    whose header claims 500 bytes reached 2.1 GB that way). What is read is counted against the
    per-file and per-zip limits as it comes. Only stored and deflate members are opened:
    zipfile inflates bzip2 and LZMA without any bound (242 bytes of bzip2 took 300 MB even
    through a bounded read). Every oddity of one member — an unsafe path, a name twice,
    encryption, another compression, data that does not match its header — becomes a problem
    naming the member, and the zip is refused whole.
    """
    # zipfile builds one ZipInfo per entry before any can be counted (the 250,000 empty entries
    # a 20 MB upload can hold cost 1.2 s and 175 MB), so count the entries' signatures first.
    # Each entry has one; stray copies inside compressed data are too rare to matter here.
    if data.count(b"PK\x01\x02") > MAX_ZIP_ENTRIES:
        raise _rejected(name, f"holds more than {MAX_ZIP_ENTRIES} entries (the limit)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except UnicodeDecodeError as exc:  # a name flagged UTF-8 whose bytes are not UTF-8
        raw = exc.object if isinstance(exc.object, bytes) else b""
        member = raw.decode("utf-8", "backslashreplace")
        raise _rejected(
            f"{name}:{member}", "member name is marked UTF-8 but is not valid UTF-8"
        ) from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        raise _rejected(name, "not a valid zip file") from None
    with zf:
        return _read_members(name, zf, report)


def _read_members(name: str, zf: zipfile.ZipFile, report: ImportReport) -> list[tuple[str, bytes]]:
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise _rejected(name, f"holds {len(infos)} entries; the limit is {MAX_ZIP_ENTRIES}")
    declared = sum(i.file_size for i in infos)
    if declared > MAX_ZIP_TOTAL_BYTES:
        raise _rejected(name, _too_big_zip(declared))
    out: list[tuple[str, bytes]] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    total = 0
    for info in infos:
        path = info.filename
        source = f"{name}:{path}"
        normalised = posixpath.normpath(path)
        if _unsafe_member_path(path, normalised):
            problems.append((source, "unsafe path in zip (absolute or leaving the archive)"))
            continue
        if normalised in seen:
            problems.append((source, "the zip holds more than one member of this name"))
            continue
        seen.add(normalised)
        if info.is_dir() or path.startswith("__MACOSX/") or path.endswith(".DS_Store"):
            continue
        if not path.endswith(".prompty"):
            report.skipped.append(source)
            continue
        try:
            content = _read_member(zf, info)
        except _UnreadableMember as exc:
            problems.append((source, exc.problem))
            continue
        total += len(content)
        if total > MAX_ZIP_TOTAL_BYTES:
            raise _rejected(name, _too_big_zip(total, more=True))
        out.append((source, content))
    if problems:
        raise ImportRejected(problems)
    return out


def _unsafe_member_path(path: str, normalised: str) -> bool:
    """A member name that is absolute, leaves the archive, or names a drive (`C:`)."""
    return (
        "\\" in path
        or path.startswith("/")
        or normalised.startswith("..")
        or ":" in path.split("/")[0]
    )


class _UnreadableMember(Exception):
    """A `.prompty` member that is not read: `problem` says why, for the import's report."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes through a bounded read (see `_zip_entries`), or _UnreadableMember."""
    if info.flag_bits & 0x1:
        raise _UnreadableMember("encrypted; export the zip again without a password")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _UnreadableMember(
            f"compressed with method {info.compress_type}; only stored and deflate "
            "members are read (the usual zip tools write deflate)"
        )
    if info.file_size > MAX_FILE_BYTES:
        raise _UnreadableMember(_too_big_file(info.file_size))
    try:
        with zf.open(info) as member:
            content = member.read(MAX_FILE_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _UnreadableMember(
            f"does not match its header ({exc}); reading stopped at the "
            f"{info.file_size} bytes it declares: the zip is damaged, or made to "
            "unpack to more than it says"
        ) from None
    except (OSError, RuntimeError, NotImplementedError, UnicodeDecodeError, ValueError) as exc:
        raise _UnreadableMember(f"cannot be unpacked: {exc}") from None
    if len(content) > MAX_FILE_BYTES:  # only if zipfile ever stopped honouring the header
        raise _UnreadableMember(_too_big_file(len(content), more=True))
    return content


def _rejected(source: str, problem: str) -> ImportRejected:
    return ImportRejected([(source, problem)])


def _too_big_file(size: int, more: bool = False) -> str:
    return (
        f"file is {'more than ' if more else ''}{size / 1024 / 1024:.1f} MB; prompt files are "
        f"limited to {MAX_FILE_BYTES // 1024} KB"
    )


def _too_big_zip(size: int, more: bool = False) -> str:
    return (
        f"unpacks to {'more than ' if more else ''}{size / 1024 / 1024:.0f} MB; the limit is "
        f"{MAX_ZIP_TOTAL_BYTES // 1024 // 1024} MB"
    )


def _incoming(source: str, data: bytes) -> _Incoming:
    pf = parse_prompt_bytes(data, source, default_name=name_from_source(source))
    invalid = [i for i in option_issues(pf) if i.code == "invalid-option"]
    if invalid:  # a value no run could use; options that are only ignored are lint's business
        raise PromptFileError(invalid[0].message, line=invalid[0].line)
    history = history_of(pf.front)
    version, note, labels = history.version, history.note, history.labels
    for label in labels:
        try:
            check_label(label)
        except WorkbenchError as exc:
            raise PromptFileError(str(exc)) from None
    content = pf.canonical_text()
    return _Incoming(source, pf, version, note, tuple(labels), content, content_hash(content))


def _check_conflicts(incoming: list[_Incoming]) -> None:
    seen: dict[tuple[str, int], _Incoming] = {}
    problems = []
    for item in incoming:
        if item.version is None:
            continue
        key = (item.file.name, item.version)
        other = seen.get(key)
        if other and other.digest != item.digest:
            problems.append(
                (
                    item.source,
                    f"{item.file.name}@{item.version} differs from the same version "
                    f"in {other.source}",
                )
            )
        seen.setdefault(key, item)
    if problems:
        raise ImportRejected(problems)


def _write(library: Library, s: Session, incoming: list[_Incoming], report: ImportReport) -> None:
    """Write what is new, in name then version order, through one PromptWriter per prompt."""
    order = sorted(
        range(len(incoming)),
        key=lambda i: (incoming[i].file.name, incoming[i].version or 1 << 30, i),
    )
    writers: dict[str, PromptWriter] = {}
    for i in order:
        item = incoming[i]
        name = item.file.name
        writer = writers.get(name)
        if writer is None:
            # Locked before reading, in name order, so concurrent imports neither miss each
            # other's versions nor deadlock.
            writer = writers[name] = library.writer_in(s, name)
        number = _write_version(writer, item, report)
        for label in item.labels:
            move = writer.set_label(number, label)
            if move.from_version is None:
                report.labels.append(f"{name}@{label} → v{move.to_version}")
            elif move.from_version != move.to_version:
                report.moved.append(f"{name}@{label} v{move.from_version} → v{move.to_version}")


def _write_version(writer: PromptWriter, item: _Incoming, report: ImportReport) -> int:
    """The number `item` has in the library: the version already holding its content, or a
    new one; reported as created or unchanged."""
    name = item.file.name
    if item.version is not None and writer.has(item.version, item.digest):
        number = item.version  # the very same version (same number, same content)
        report.unchanged.append(f"{name}@{number}")
    elif item.digest in writer.earliest:
        # Already here (an earlier import, or the same content under another number).
        number = writer.earliest[item.digest]
        report.unchanged.append(f"{name}@{number}")
    else:
        number, created = writer.add(
            item.file,
            item.note,
            content=item.content,
            digest=item.digest,
            preferred_number=item.version,
        )
        (report.created if created else report.unchanged).append(f"{name}@{number}")
    return number


# --- built-ins ------------------------------------------------------------------------------


def load_builtins(library: Library, prompts_dir: Traversable) -> ImportReport | None:
    """Load the built-in prompt files into an empty database, once in its lifetime.

    `prompts_dir` is a folder or the package data the files ship as (config.BUILTIN_PROMPTS),
    hence a Traversable. The state row is written in the same transaction as the prompts, so two
    processes starting together load them once, and a person who later deletes a built-in does
    not get it back.
    """
    files = (
        sorted(
            (f for f in prompts_dir.iterdir() if f.name.endswith(".prompty") and f.is_file()),
            key=lambda f: f.name,
        )
        if prompts_dir.is_dir()
        else []
    )

    def load(s: Session) -> ImportReport | None:
        library.store.lock(s, "app_state", BUILTINS_STATE_KEY)  # SQLite: BEGIN IMMEDIATE does it
        if s.get(AppState, BUILTINS_STATE_KEY) is not None:
            return None
        report = ImportReport()
        if s.scalar(select(Prompt.id).limit(1)) is None and files:
            incoming, problems = _read_all([(f.name, f.read_bytes()) for f in files], report)
            if problems:
                raise ImportRejected(problems)
            incoming = [dataclasses.replace(i, note=i.note or "built-in") for i in incoming]
            _write(library, s, incoming, report)
        s.add(AppState(key=BUILTINS_STATE_KEY, value=utcnow().isoformat()))
        return report

    return library.store.transaction(load)


# --- runs -------------------------------------------------------------------------------------

RUN_EXPORT_FIELDS = (
    "run_id",
    "prompt",
    "version",
    "row_index",
    "sample_index",
    "variables",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "ttft_s",
    "batch_size",
    "cached",
    "error",
    "answer",
    "choices",  # scored answer choices: each choice's log-probability and probabilities
    "model",
    "revision",
    "dtype",
    "params",
    "seed",
    "messages",
    "model_input",
    "created_at",
)


def export_outputs(outputs: Sequence[Any], fmt: str) -> bytes:
    """Outputs as CSV (spreadsheet-safe, see reports.csv_bytes) or JSON Lines (exact), with the
    exact model input and parameters of each."""
    rows = [{f: getattr(o, f) for f in RUN_EXPORT_FIELDS} for o in outputs]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode(
            "utf-8"
        )
    if fmt == "csv":
        return csv_bytes(RUN_EXPORT_FIELDS, (list(r.values()) for r in rows))
    raise WorkbenchError(f"export format {fmt!r} is not supported: use csv or jsonl")
