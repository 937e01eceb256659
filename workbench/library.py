"""Prompts and their immutable versions: save, look up, diff, label, restore.

A version's identity is its content: the canonical text of its prompt file (front matter without
history fields, plus the body). Saving content equal to the latest version returns that version;
anything else becomes version n+1 with a note and a parent. Labels are movable names whose every
move is kept in `label_event`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from .errors import NotFoundError, WorkbenchError
from .store import Label, LabelEvent, Prompt, PromptVersion, Store, utcnow
from .templates import PromptFile, dump_prompt, parse_cached, parse_prompt, strip_volatile

LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{0,99}$")
RESERVED_LABELS = {"latest"}
PROMPT_KIND = "prompt"
TRIALS_KIND = "trials"  # a companion that keeps another prompt's variants (migration 0011)
TRIALS_SUFFIX = ".trials"
MAX_NAME = 100  # prompt.name's column width
T = TypeVar("T")


@dataclass(frozen=True)
class VersionInfo:
    prompt: str
    number: int
    content: str
    content_hash: str
    technique: str
    mode: str
    description: str
    note: str
    parent: int | None
    created_at: datetime
    labels: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.prompt}@{self.number}"

    @property
    def file(self) -> PromptFile:
        return parse_cached(self.content, self.ref)

    def export_text(self) -> str:
        return self.file.with_history(self.number, self.note, list(self.labels))


@dataclass(frozen=True)
class PromptSummary:
    name: str
    technique: str
    mode: str
    description: str
    latest: int
    versions: int
    labels: dict[str, int]
    updated_at: datetime


@dataclass(frozen=True)
class SaveResult:
    version: VersionInfo
    created: bool


@dataclass(frozen=True)
class LabelMove:
    """One change of a label: from which version to which (None: not set before / removed)."""

    prompt: str
    label: str
    from_version: int | None
    to_version: int | None
    at: datetime

    @property
    def change(self) -> str:
        """The change in words: `set on v2`, `moved v1 → v2`, `removed from v2`."""
        if self.to_version is None:
            return f"removed from v{self.from_version}"
        if self.from_version is None:
            return f"set on v{self.to_version}"
        return f"moved v{self.from_version} → v{self.to_version}"


@dataclass(frozen=True)
class Ref:
    """`name`, `name@3`, `name@v3`, `name@latest` or `name@production`."""

    name: str
    version: int | None = None
    label: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        name, _, selector = text.strip().partition("@")
        if not name:
            raise WorkbenchError(
                f"{text!r} is not a prompt reference: use NAME, NAME@3 or NAME@label"
            )
        selector = selector.strip()
        if not selector or selector == "latest":
            return cls(name)
        digits = selector[1:] if selector[:1] in ("v", "V") and selector[1:].isdigit() else selector
        if digits.isdigit():
            return cls(name, version=int(digits))
        return cls(name, label=selector)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.label}" if self.label else self.name


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


class Library:
    def __init__(self, store: Store):
        self.store = store

    # --- reading -----------------------------------------------------------------------------
    def list_prompts(self) -> list[PromptSummary]:
        with self.store.read() as s:
            latest = (
                select(
                    PromptVersion.prompt_id,
                    func.max(PromptVersion.number).label("n"),
                    func.count().label("count"),
                )
                .group_by(PromptVersion.prompt_id)
                .subquery()
            )
            rows = s.execute(
                select(Prompt.name, PromptVersion, latest.c.n, latest.c.count)
                .join(latest, latest.c.prompt_id == Prompt.id)
                .join(
                    PromptVersion,
                    (PromptVersion.prompt_id == Prompt.id) & (PromptVersion.number == latest.c.n),
                )
                .where(Prompt.kind == PROMPT_KIND)
                .order_by(Prompt.name)
            ).all()
            labels = self._labels_by_prompt(s)
            return [
                PromptSummary(
                    name=name,
                    technique=v.technique,
                    mode=v.mode,
                    description=v.description,
                    latest=n,
                    versions=count,
                    labels=labels.get(v.prompt_id, {}),
                    updated_at=v.created_at,
                )
                for name, v, n, count in rows
            ]

    def get(self, ref: str | Ref) -> VersionInfo:
        r = Ref.parse(ref) if isinstance(ref, str) else ref
        with self.store.read() as s:
            return self._info(s, self._resolve(s, r))

    def versions(self, name: str) -> list[VersionInfo]:
        with self.store.read() as s:
            prompt = self._prompt(s, name)
            rows = s.scalars(
                select(PromptVersion)
                .where(PromptVersion.prompt_id == prompt.id)
                .order_by(PromptVersion.number)
            ).all()
            return self._infos(s, prompt, rows)

    def all_versions(self) -> list[VersionInfo]:
        """Every version of every prompt, by prompt name then number (for export).

        Trials (see `save_trial`) are scratch work, not the library: they are left out."""
        with self.store.read() as s:
            out: list[VersionInfo] = []
            query = select(Prompt).where(Prompt.kind == PROMPT_KIND).order_by(Prompt.name)
            for prompt in s.scalars(query):
                rows = s.scalars(
                    select(PromptVersion)
                    .where(PromptVersion.prompt_id == prompt.id)
                    .order_by(PromptVersion.number)
                ).all()
                out += self._infos(s, prompt, rows)
            return out

    def diff(self, a: str | Ref, b: str | Ref, context: int = 3) -> str:
        va, vb = self.get(a), self.get(b)
        return "".join(
            difflib.unified_diff(
                va.content.splitlines(keepends=True),
                vb.content.splitlines(keepends=True),
                fromfile=va.ref,
                tofile=vb.ref,
                n=context,
            )
        )

    def label_history(self, name: str, label: str | None = None) -> list[LabelMove]:
        with self.store.read() as s:
            prompt = self._prompt(s, name)
            query = select(LabelEvent).where(LabelEvent.prompt_id == prompt.id)
            if label:
                query = query.where(LabelEvent.label == label)
            numbers = self._numbers(s, prompt.id)
            return [
                LabelMove(
                    prompt=name,
                    label=e.label,
                    from_version=numbers.get(e.from_version_id) if e.from_version_id else None,
                    to_version=numbers.get(e.to_version_id) if e.to_version_id else None,
                    at=e.created_at,
                )
                for e in s.scalars(query.order_by(LabelEvent.id))
            ]

    # --- writing -----------------------------------------------------------------------------
    def save(self, prompt: PromptFile | str, note: str = "") -> SaveResult:
        """Save content as a new version, or return the latest when nothing changed."""
        pf = parse_prompt(prompt) if isinstance(prompt, str) else prompt
        return self._retrying(lambda s: self.save_in(s, pf, note))

    def save_trial(self, prompt: PromptFile, of: str, note: str = "") -> VersionInfo:
        """Keep a variant of prompt `of` as a version of its hidden companion `of.trials`.

        An ablation or a few-shot search runs dozens of variants; each must be a stored version
        (a run names its versions, History shows them), but none may become `of@latest` or
        crowd the Library. A variant with the content of any earlier trial is that trial, not a
        new version, so trying it again names the same version and its outputs come from the
        cache.
        """
        name = trial_name(of)
        front = dict(strip_volatile(prompt.front))
        front["name"] = name
        pf = parse_prompt(dump_prompt(front, prompt.body), name)

        def save(s: Session) -> VersionInfo:
            self._prompt(s, of)  # the prompt tried must exist
            writer = self.writer_in(s, name, kind=TRIALS_KIND)
            content = pf.canonical_text()
            digest = content_hash(content)
            number = writer.earliest.get(digest)
            if number is None:
                number, _ = writer.add(pf, note, content=content, digest=digest)
            return self._info(s, s.get_one(PromptVersion, writer.id_of(number)))

        return self._retrying(save)

    def restore(self, ref: str | Ref, note: str | None = None) -> SaveResult:
        old = self.get(ref)
        return self.save(old.file, note if note is not None else f"restored from v{old.number}")

    def set_label(self, ref: str | Ref, label: str) -> LabelMove:
        check_label(label)

        def move(s: Session) -> LabelMove:
            r = Ref.parse(ref) if isinstance(ref, str) else ref
            version = self._resolve(s, r)
            return self.set_label_in(s, version, label)

        return self._retrying(move)

    def remove_label(self, name: str, label: str) -> LabelMove:
        def remove(s: Session) -> LabelMove:
            prompt = self._prompt(s, name)
            self.store.lock(s, "prompt", name)
            row = s.scalar(select(Label).where(Label.prompt_id == prompt.id, Label.name == label))
            if row is None:
                raise NotFoundError(f"{name} has no label {label!r}")
            s.add(
                LabelEvent(
                    prompt_id=prompt.id,
                    label=label,
                    from_version_id=row.version_id,
                    to_version_id=None,
                    created_at=utcnow(),
                )
            )
            old = self._numbers(s, prompt.id).get(row.version_id)
            s.delete(row)
            return LabelMove(name, label, old, None, utcnow())

        return self._retrying(remove)

    # --- building blocks shared with import (one session = one transaction) -------------------
    def writer_in(self, s: Session, name: str, *, kind: str = "prompt") -> PromptWriter:
        """A writer of prompt `name`'s versions and labels; it takes the prompt's lock first."""
        return PromptWriter(self.store, s, name, kind=kind)

    def save_in(
        self,
        s: Session,
        pf: PromptFile,
        note: str,
        *,
        preferred_number: int | None = None,
    ) -> SaveResult:
        # Two people saving the same prompt both read "latest is v3": the second waits at the
        # writer's lock until the first commits v4, then reads v4 and writes v5.
        writer = self.writer_in(s, pf.name)
        number, created = writer.add(pf, note, preferred_number=preferred_number)
        return SaveResult(self._info(s, s.get_one(PromptVersion, writer.id_of(number))), created)

    def set_label_in(self, s: Session, version: PromptVersion, label: str) -> LabelMove:
        # Every move is recorded from the label's real place: the writer locks, then reads it.
        name = s.get_one(Prompt, version.prompt_id).name
        return self.writer_in(s, name).set_label(version.number, label)

    def resolve_in(self, s: Session, ref: str | Ref) -> PromptVersion:
        """The version row a reference names, inside the caller's transaction."""
        return self._resolve(s, Ref.parse(ref) if isinstance(ref, str) else ref)

    def info_in(self, s: Session, row: PromptVersion) -> VersionInfo:
        return self._info(s, row)

    def _retrying(self, work: Callable[[Session], T]) -> T:
        """Run `work` in a write transaction, again if it lost a race (see Store.transaction)."""
        return self.store.transaction(work)

    # --- lookups ------------------------------------------------------------------------------
    def _prompt(self, s: Session, name: str) -> Prompt:
        prompt = s.scalar(select(Prompt).where(Prompt.name == name))
        if prompt is None:
            names = s.scalars(select(Prompt.name)).all()
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else " (see `workbench prompts list`)"
            raise NotFoundError(f"no prompt named {name!r}{hint}")
        return prompt

    def _resolve(self, s: Session, r: Ref) -> PromptVersion:
        prompt = self._prompt(s, r.name)
        if r.label:
            label = s.scalar(
                select(Label).where(Label.prompt_id == prompt.id, Label.name == r.label)
            )
            if label is None:
                have = s.scalars(select(Label.name).where(Label.prompt_id == prompt.id)).all()
                known = f" (labels: {', '.join(sorted(have))})" if have else " (it has no labels)"
                raise NotFoundError(f"{r.name} has no label {r.label!r}{known}")
            return s.get_one(PromptVersion, label.version_id)
        query = select(PromptVersion).where(PromptVersion.prompt_id == prompt.id)
        if r.version is None:
            row = s.scalar(query.order_by(PromptVersion.number.desc()).limit(1))
        else:
            row = s.scalar(query.where(PromptVersion.number == r.version))
        if row is None:
            latest = s.scalar(
                select(func.max(PromptVersion.number)).where(PromptVersion.prompt_id == prompt.id)
            )
            raise NotFoundError(
                f"{r.name} has no version {r.version} (versions are 1…{latest})"
                if latest
                else f"{r.name} has no versions"
            )
        return row

    def _numbers(self, s: Session, prompt_id: int) -> dict[int, int]:
        rows = s.execute(
            select(PromptVersion.id, PromptVersion.number).where(
                PromptVersion.prompt_id == prompt_id
            )
        )
        return {version_id: number for version_id, number in rows}

    def _labels_by_prompt(self, s: Session) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        rows = s.execute(
            select(Label.prompt_id, Label.name, PromptVersion.number)
            .join(PromptVersion, PromptVersion.id == Label.version_id)
            .order_by(Label.name)
        )
        for prompt_id, name, number in rows:
            out.setdefault(prompt_id, {})[name] = number
        return out

    def _info(self, s: Session, row: PromptVersion) -> VersionInfo:
        prompt = s.get_one(Prompt, row.prompt_id)
        return self._infos(s, prompt, [row])[0]

    def _infos(
        self, s: Session, prompt: Prompt, rows: Iterable[PromptVersion]
    ) -> list[VersionInfo]:
        rows = list(rows)
        numbers = self._numbers(s, prompt.id) if any(r.parent_id for r in rows) else {}
        labels: dict[int, list[str]] = {}
        for label in s.scalars(select(Label).where(Label.prompt_id == prompt.id)):
            labels.setdefault(label.version_id, []).append(label.name)
        return [
            VersionInfo(
                prompt=prompt.name,
                number=r.number,
                content=r.content,
                content_hash=r.content_hash,
                technique=r.technique,
                mode=r.mode,
                description=r.description,
                note=r.note,
                parent=numbers.get(r.parent_id) if r.parent_id else None,
                created_at=r.created_at,
                labels=tuple(sorted(labels.get(r.id, []))),
            )
            for r in rows
        ]


# On the table, not the ORM class: the ORM's insert path costs 0.4 ms a row, this 0.1 ms.
_VERSIONS = cast(Table, PromptVersion.__table__)
_INSERT_VERSION = insert(_VERSIONS).returning(_VERSIONS.c.id)


class PromptWriter:
    """Adds versions to one prompt and moves its labels, inside the caller's transaction.

    It takes the prompt's lock, reads the prompt's versions (number, id, content hash) and its
    labels once, and keeps them current as it writes, so n new versions cost n INSERTs. Saved
    one at a time, each version cost seven queries and a flush: half of the 20 s an import of
    4,000 versions took. `Library.save_in` and `set_label_in` write through it too, so
    there is one way a version is numbered and a label is moved.
    """

    def __init__(self, store: Store, s: Session, name: str, *, kind: str = PROMPT_KIND):
        store.lock(s, "prompt", name)
        self.s, self.name, self.kind = s, name, kind
        found = s.execute(select(Prompt.id, Prompt.kind).where(Prompt.name == name)).first()
        self.prompt_id: int | None = found[0] if found else None
        if found is not None and found[1] != kind:
            raise WorkbenchError(
                f"{name!r} holds the trials of {name.removesuffix(TRIALS_SUFFIX)!r} (an "
                "ablation's or a search's variants): give the prompt another name"
                if found[1] == TRIALS_KIND
                else f"a prompt named {name!r} exists already, so the trials of "
                f"{name.removesuffix(TRIALS_SUFFIX)!r} cannot be kept under that name: rename it"
            )
        rows = (
            s.execute(
                select(PromptVersion.number, PromptVersion.id, PromptVersion.content_hash)
                .where(PromptVersion.prompt_id == self.prompt_id)
                .order_by(PromptVersion.number)
            ).all()
            if self.prompt_id is not None
            else []
        )
        self._versions: dict[int, tuple[int, str]] = {n: (i, h) for n, i, h in rows}
        self._numbers: dict[int, int] = {i: n for n, i, _ in rows}
        self._latest: int | None = rows[-1][0] if rows else None
        self.earliest: dict[str, int] = {}
        """Content hash → number of the earliest version with it, as it was when opened."""
        for n, _, h in rows:
            self.earliest.setdefault(h, n)
        self._labels: dict[str, Label] = (
            {
                row.name: row
                for row in s.scalars(select(Label).where(Label.prompt_id == self.prompt_id))
            }
            if self.prompt_id is not None
            else {}
        )

    def has(self, number: int, digest: str) -> bool:
        """Whether version `number` exists with exactly this content."""
        found = self._versions.get(number)
        return found is not None and found[1] == digest

    def id_of(self, number: int) -> int:
        return self._versions[number][0]

    def add(
        self,
        pf: PromptFile,
        note: str,
        *,
        content: str | None = None,
        digest: str | None = None,
        preferred_number: int | None = None,
    ) -> tuple[int, bool]:
        """Save content as the next version, or return the latest when it has the same content.

        `content` and `digest` are the file's canonical text and its hash when the caller has
        them already. A `preferred_number` above the next number is taken (an import keeps the
        gaps in its history); one at or below it is not (numbers only grow).
        """
        content = pf.canonical_text() if content is None else content
        digest = content_hash(content) if digest is None else digest
        latest = self._latest
        if latest is not None and self._versions[latest][1] == digest:
            return latest, False
        now = utcnow()
        if self.prompt_id is None:
            self.prompt_id = self.s.execute(
                insert(Prompt)
                .values(name=self.name, created_at=now, kind=self.kind)
                .returning(Prompt.id)
            ).scalar_one()
        number = (latest or 0) + 1
        if preferred_number is not None and preferred_number > number:
            number = preferred_number
        version_id = self.s.execute(
            _INSERT_VERSION,
            {
                "prompt_id": self.prompt_id,
                "number": number,
                "content": content,
                "content_hash": digest,
                "technique": ", ".join(pf.techniques),
                "mode": pf.mode,
                "description": pf.description,
                "parent_id": self._versions[latest][0] if latest is not None else None,
                "note": note,
                "created_at": now,
            },
        ).scalar_one()
        self._versions[number] = (version_id, digest)
        self._numbers[version_id] = number
        self._latest = number
        return number, True

    def set_label(self, number: int, label: str) -> LabelMove:
        """Point `label` at version `number`, recording the move (none when it is there)."""
        assert self.prompt_id is not None, "a prompt with a version has a row"
        version_id = self.id_of(number)
        row = self._labels.get(label)
        previous = row.version_id if row else None
        now = utcnow()
        if previous != version_id:
            if row is None:
                row = Label(
                    prompt_id=self.prompt_id, name=label, version_id=version_id, updated_at=now
                )
                self.s.add(row)
                self._labels[label] = row
            else:
                row.version_id, row.updated_at = version_id, now
            self.s.add(
                LabelEvent(
                    prompt_id=self.prompt_id,
                    label=label,
                    from_version_id=previous,
                    to_version_id=version_id,
                    created_at=now,
                )
            )
        return LabelMove(
            self.name, label, self._numbers.get(previous) if previous else None, number, now
        )


def trial_name(name: str) -> str:
    """The companion prompt that keeps `name`'s trials (see Library.save_trial)."""
    trial = name + TRIALS_SUFFIX
    if len(trial) > MAX_NAME:
        raise WorkbenchError(
            f"{name!r} is too long to keep trials beside it ({len(trial)} characters with "
            f"{TRIALS_SUFFIX!r}; names hold at most {MAX_NAME}): save it under a shorter name"
        )
    return trial


def check_label(label: str) -> None:
    if not LABEL_PATTERN.match(label) or label in RESERVED_LABELS:
        raise WorkbenchError(
            f"label {label!r} is not usable: start with a letter, then lowercase letters, digits, "
            "'-', '_' or '.' (and not 'latest', which always means the newest version)"
        )
