"""Find stored outputs and runs again: filters, newest first, one page at a time.

Written for a database that holds 100,000 outputs and more, which shapes every query here:

- Pages are keyset pages on the primary key (`id < cursor ORDER BY id DESC LIMIT n`), not
  OFFSET pages: page 500 costs what page 1 costs, and an output written while someone pages
  does not shift every later page by one (no row is shown twice or skipped).
- Filters are turned into plain column conditions before the query runs. A prompt, version or
  label becomes a list of `version_id`s (a label is looked up at query time, so "production"
  means the version it points at now), which lets SQLite walk `ix_output_version` /
  `ix_output_model` in id order instead of joining and sorting.
- Only the columns a table shows are read: never `model_input`, `messages` or `params`, which
  are most of an output's bytes. Prompt names and version numbers are looked up for the page's
  few version ids afterwards instead of being joined into the scan.
- The total is counted up to a cap: past `COUNT_CAP` matches the page says "more than N",
  because an exact count of a broad text search means reading every row.

Text search uses LIKE on SQLite (case-insensitive for ASCII letters) and ILIKE on PostgreSQL; the
variables are searched through their decoded JSON values, so `café` finds `café` and a key name
finds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Generic, Literal, TypeVar, get_args

from sqlalchemy import ColumnElement, Text, and_, exists, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from .errors import NotFoundError, WorkbenchError
from .ownership import settle_runs
from .runs import RunRecord, run_records, run_rows, run_versions
from .store import (
    Label,
    Output,
    Prompt,
    PromptVersion,
    Rating,
    Run,
    RunVersion,
    Store,
)

T = TypeVar("T")

COUNT_CAP = 10_000
PREVIEW_CHARS = 400
PAGE_SIZES = (25, 50, 100, 200)
MAX_PAGE_SIZE = 1000

Status = Literal["all", "ok", "errors", "cancelled", "truncated", "cached"]
STATUSES: tuple[Status, ...] = get_args(Status)
SearchIn = Literal["both", "text", "variables"]
SEARCH_IN: tuple[SearchIn, ...] = get_args(SearchIn)
RunStatus = Literal["all", "running", "done", "cancelled", "failed", "interrupted", "unfinished"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)


@dataclass(frozen=True)
class HistoryFilter:
    """What to look for; every field left at its default matches everything.

    `version` and `label` narrow `prompt` (a label without a prompt means that label on any
    prompt). Dates are UTC: a `date` for `date_to` includes that whole day.
    """

    prompt: str | None = None
    version: int | None = None
    label: str | None = None
    model: str | None = None
    date_from: date | datetime | None = None
    date_to: date | datetime | None = None
    text: str = ""
    search_in: SearchIn = "both"
    status: Status = "all"
    run_id: int | None = None


@dataclass(frozen=True)
class HistoryRow:
    """One output as the History table shows it: no model input, messages or parameters."""

    id: int
    run_id: int
    created_at: datetime
    prompt: str
    version: int
    model: str
    row_index: int
    sample_index: int
    variables: dict[str, Any]
    text: str | None  # the first PREVIEW_CHARS characters
    text_chars: int
    finish_reason: str | None
    completion_tokens: int | None
    latency_s: float | None
    cached: bool
    error: str | None
    batch_size: int | None = None  # how many rows shared the generation's time (wording)
    backend: str = "transformers"
    verdict: int | None = None
    stars: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.prompt}@{self.version}"

    @property
    def truncated(self) -> bool:
        return self.text is not None and self.text_chars > len(self.text)


HistoryRun = RunRecord  # a run as History lists it: the runner's record


@dataclass(frozen=True)
class HistoryPage(Generic[T]):
    rows: list[T]
    total: int  # exact, unless total_capped
    total_capped: bool
    next_before_id: int | None  # pass as `before_id` for the next (older) page

    @property
    def total_text(self) -> str:
        return f"more than {self.total:,}" if self.total_capped else f"{self.total:,}"


@dataclass(frozen=True)
class FilterChoices:
    """Values for the filter dropdowns, read from the small tables only (never from output)."""

    prompts: list[str]
    versions: dict[str, list[int]]  # newest first
    labels: dict[str, list[str]]  # prompt -> its labels
    models: list[str]
    all_labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RerunRequest:
    """Everything needed to run a stored run again: the same versions, rows and overrides."""

    run_id: int
    versions: list[str]  # "name@N"
    rows: list[dict[str, Any]]
    overrides: dict[str, Any]
    samples: int | None
    use_cache: bool
    model: str


# --- outputs --------------------------------------------------------------------------------


def search_outputs(
    store: Store,
    flt: HistoryFilter | None = None,
    *,
    page_size: int = 50,
    before_id: int | None = None,
    count: bool = True,
) -> HistoryPage[HistoryRow]:
    """One page of outputs matching `flt`, newest first, older than `before_id` if given."""
    flt = flt or HistoryFilter()
    _check_page_size(page_size)
    with store.read() as s:
        conditions = _output_conditions(s, flt, store.is_sqlite)
        if conditions is None:  # a filter that cannot match (a prompt with no such label…)
            return HistoryPage([], 0, False, None)
        page_conditions = [*conditions]
        if before_id is not None:
            page_conditions.append(Output.id < before_id)
        # Pick the page's ids first, then read their columns: when the filter is answered by an
        # index (version, model, date, errors) the ids come from the index alone, and only
        # page_size + 1 rows are read from the table instead of every match before sorting.
        ids = (
            select(Output.id)
            .where(*page_conditions)
            .order_by(Output.id.desc())
            .limit(page_size + 1)
            .scalar_subquery()
        )
        rows = s.execute(
            select(
                Output.id,
                Output.run_id,
                Output.created_at,
                Output.version_id,
                Output.model,
                Output.row_index,
                Output.sample_index,
                Output.variables,
                func.substr(Output.text, 1, PREVIEW_CHARS),
                func.length(Output.text),
                Output.finish_reason,
                Output.completion_tokens,
                Output.latency_s,
                Output.cached,
                Output.error,
                Output.batch_size,
                Output.backend,
                Prompt.name,
                PromptVersion.number,
                Rating.verdict,
                Rating.stars,
            )
            .join(PromptVersion, PromptVersion.id == Output.version_id)
            .join(Prompt, Prompt.id == PromptVersion.prompt_id)
            .outerjoin(Rating, Rating.output_id == Output.id)
            .where(Output.id.in_(ids))
            .order_by(Output.id.desc())
        ).all()
        more = len(rows) > page_size
        rows = rows[:page_size]
        if not count:
            total, capped = 0, False
        elif before_id is None and not more:
            total, capped = len(rows), False  # the whole result is on this page
        else:
            # PostgreSQL with a text search: see _capped_count
            newest_first = not store.is_sqlite and bool(flt.text.strip())
            total, capped = _capped_count(s, conditions, newest_first=newest_first)
    out = [
        HistoryRow(
            id=r.id,
            run_id=r.run_id,
            created_at=r.created_at,
            prompt=r.name,
            version=r.number,
            model=r.model,
            row_index=r.row_index,
            sample_index=r.sample_index,
            variables=dict(r.variables or {}),
            text=r[8],
            text_chars=r[9] or 0,
            finish_reason=r.finish_reason,
            completion_tokens=r.completion_tokens,
            latency_s=r.latency_s,
            cached=bool(r.cached),
            error=r.error,
            batch_size=r.batch_size,
            backend=r.backend,
            verdict=r.verdict,
            stars=r.stars,
        )
        for r in rows
    ]
    return HistoryPage(out, total, capped, out[-1].id if more and out else None)


def _check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise WorkbenchError(f"a page holds 1 to {MAX_PAGE_SIZE} rows, not {page_size}")


def _output_conditions(
    s: Session, flt: HistoryFilter, is_sqlite: bool
) -> list[ColumnElement[bool]] | None:
    """The filter as conditions on `output` alone; None when nothing can match."""
    conditions: list[ColumnElement[bool]] = []
    version_ids = resolve_versions(s, flt)
    if version_ids is not None:
        if not version_ids:
            return None
        conditions.append(
            Output.version_id == version_ids[0]
            if len(version_ids) == 1
            else Output.version_id.in_(version_ids)
        )
    if flt.model:
        conditions.append(Output.model == flt.model)
    if flt.run_id is not None:
        conditions.append(Output.run_id == flt.run_id)
    conditions += _date_conditions(Output.created_at, flt)
    if flt.text.strip():
        conditions.append(_text_condition(flt.text.strip(), flt.search_in, is_sqlite))
    status = _status_condition(flt.status)
    if status is not None:
        conditions.append(status)
    return conditions


def resolve_versions(s: Session, flt: HistoryFilter) -> list[int] | None:
    """The version ids the prompt/version/label part of a filter allows (None: any version).

    A label is resolved here, when the query runs: after `production` moves from v2 to v3,
    the same filter shows v3's outputs.
    """
    if flt.prompt is None:
        if flt.version is not None:
            raise WorkbenchError("choose a prompt to filter by version number")
        if flt.label is None:
            return None
        return list(s.scalars(select(Label.version_id).where(Label.name == flt.label)))
    query = (
        select(PromptVersion.id)
        .join(Prompt, Prompt.id == PromptVersion.prompt_id)
        .where(Prompt.name == flt.prompt)
    )
    if flt.version is not None:
        query = query.where(PromptVersion.number == flt.version)
    if flt.label is not None:
        query = query.join(Label, Label.version_id == PromptVersion.id).where(
            Label.prompt_id == Prompt.id, Label.name == flt.label
        )
    found = list(s.scalars(query))
    if not found and s.scalar(select(Prompt.id).where(Prompt.name == flt.prompt)) is None:
        raise NotFoundError(f"no prompt named {flt.prompt!r}")
    return found


def _date_conditions(column: Any, flt: HistoryFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.date_from is not None:
        start = flt.date_from
        if not isinstance(start, datetime):
            start = datetime.combine(start, time())
        conditions.append(column >= start)
    if flt.date_to is not None:
        end = flt.date_to
        if isinstance(end, datetime):
            conditions.append(column <= end)
        else:  # a day: everything before the next midnight
            conditions.append(column < datetime.combine(end + timedelta(days=1), time()))
    return conditions


def _text_condition(term: str, search_in: str, is_sqlite: bool) -> ColumnElement[bool]:
    if search_in not in SEARCH_IN:
        raise WorkbenchError(f"search in one of {', '.join(SEARCH_IN)}, not {search_in!r}")

    # SQLite's LIKE ignores the case of ASCII letters; PostgreSQL's ILIKE does what it means.
    def like(column: Any) -> ColumnElement[bool]:
        if is_sqlite:
            return column.contains(term, autoescape=True)  # type: ignore[no-any-return]
        return column.icontains(term, autoescape=True)  # type: ignore[no-any-return]

    in_text = like(Output.text)
    stored = func.cast(Output.variables, Text)
    # The stored JSON text may hold the term as typed or, outside ASCII, as \u escapes (the
    # default JSON encoder's ensure_ascii): a cheap LIKE on it drops almost every row before
    # the values are decoded...
    escaped = json.dumps(term)[1:-1]
    raw = stored.contains(term, autoescape=True) if is_sqlite else like(stored)
    if escaped != term:
        raw = or_(raw, stored.contains(escaped, autoescape=True))
    # ...and only the decoded values count, so a key name or half an escape never matches.
    if is_sqlite:
        tree = func.json_tree(Output.variables).table_valued("atom").alias("v")
        decoded = exists(
            select(literal_column("1"))
            .select_from(tree)
            .where(tree.c.atom.contains(term, autoescape=True))
        )
    else:
        # Every value at any depth (strict: arrays are not unwrapped twice); containers are
        # left out, since their text holds their keys.
        atom = func.jsonb_path_query(
            func.cast(Output.variables, JSONB), literal_column("'strict $.**'::jsonpath")
        ).column_valued("atom")
        decoded = exists(
            select(literal_column("1")).where(
                func.jsonb_typeof(atom).not_in(["object", "array"]),
                atom.op("#>>")(literal_column("'{}'")).icontains(term, autoescape=True),
            )
        )
    in_vars: ColumnElement[bool] = and_(raw, decoded)
    if search_in == "text":
        return in_text
    if search_in == "variables":
        return in_vars
    return or_(in_text, in_vars)


def _status_condition(status: str) -> ColumnElement[bool] | None:
    if status not in STATUSES:
        raise WorkbenchError(f"status is one of {', '.join(STATUSES)}, not {status!r}")
    conditions: dict[str, ColumnElement[bool]] = {
        "ok": and_(
            Output.error.is_(None),
            or_(Output.finish_reason.is_(None), Output.finish_reason != "cancelled"),
        ),
        "errors": Output.error.is_not(None),
        "cancelled": Output.finish_reason == "cancelled",
        "truncated": Output.finish_reason == "length",
        "cached": Output.cached.is_(True),
    }
    return conditions.get(status)


def _capped_count(
    s: Session, conditions: Sequence[ColumnElement[bool]], *, newest_first: bool = False
) -> tuple[int, bool]:
    """Count matches, but stop reading after COUNT_CAP + 1 of them.

    `newest_first` counts the newest matches (the same number). It is for PostgreSQL's text
    search: with the trigram indexes (migration 0008) the planner otherwise collects a common
    word's every match from the indexes and rechecks them, about twice the time of walking the
    primary key down until the cap; ordered by id, a common word walks the key and stops, and a
    rare one still goes through the index.
    """
    query = select(Output.id if newest_first else literal_column("1"))
    query = query.select_from(Output).where(*conditions)
    if newest_first:
        query = query.order_by(Output.id.desc())
    inner = query.limit(COUNT_CAP + 1).subquery()
    n = s.scalar(select(func.count()).select_from(inner)) or 0
    return (COUNT_CAP, True) if n > COUNT_CAP else (n, False)


# --- runs -----------------------------------------------------------------------------------


def search_runs(
    store: Store,
    flt: HistoryFilter | None = None,
    *,
    status: RunStatus = "all",
    page_size: int = 20,
    before_id: int | None = None,
) -> HistoryPage[HistoryRun]:
    """One page of runs, newest first. Uses the prompt/version/label, model and date filters
    of `flt` (a run matches when any of its versions does); text and output status are ignored.
    """
    flt = flt or HistoryFilter()
    _check_page_size(page_size)
    if status not in RUN_STATUSES:
        raise WorkbenchError(f"run status is one of {', '.join(RUN_STATUSES)}, not {status!r}")
    interrupted = settle_runs(store)  # so that "running" means running
    with store.read() as s:
        conditions: list[ColumnElement[bool]] = []
        version_ids = resolve_versions(s, flt)
        if version_ids is not None:
            if not version_ids:
                return HistoryPage([], 0, False, None)
            conditions.append(
                exists().where(RunVersion.run_id == Run.id, RunVersion.version_id.in_(version_ids))
            )
        if flt.model:
            conditions.append(Run.model == flt.model)
        if flt.run_id is not None:
            conditions.append(Run.id == flt.run_id)
        conditions += _date_conditions(Run.created_at, flt)
        if status == "unfinished":
            conditions.append(Run.status != "done")
        elif status != "all":
            conditions.append(Run.status == status)
        query = select(Run).where(*conditions)
        if before_id is not None:
            query = query.where(Run.id < before_id)
        runs = list(s.scalars(query.order_by(Run.id.desc()).limit(page_size + 1)))
        more = len(runs) > page_size
        runs = runs[:page_size]
        if before_id is None and not more:
            total, capped = len(runs), False
        else:
            inner = select(Run.id).where(*conditions).limit(COUNT_CAP + 1).subquery()
            n = s.scalar(select(func.count()).select_from(inner)) or 0
            total, capped = (COUNT_CAP, True) if n > COUNT_CAP else (n, False)
        out = run_records(s, runs, interrupted)
    return HistoryPage(out, total, capped, out[-1].id if more and out else None)


def rerun_request(store: Store, run_id: int) -> RerunRequest:
    """The versions, rows and overrides of a stored run, ready to run again."""
    with store.read() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        versions = run_versions(s, [run_id]).get(run_id, [])
        rows = [variables for _, variables in run_rows(s, run_id)]
        return RerunRequest(
            run_id=run_id,
            versions=versions,
            rows=rows,
            overrides=dict(run.params),
            samples=run.samples if run.samples > 1 else None,
            use_cache=run.use_cache,
            model=run.model,
        )


# --- filter choices -------------------------------------------------------------------------


def filter_choices(store: Store) -> FilterChoices:
    """Prompts, versions, labels and models to offer in the filters.

    Models come from `run` (every output carries its run's model), which holds one row per run
    instead of one per output, so this stays cheap however many outputs are stored.
    """
    with store.read() as s:
        versions: dict[str, list[int]] = {}
        for name, number in s.execute(
            select(Prompt.name, PromptVersion.number)
            .join(PromptVersion, PromptVersion.prompt_id == Prompt.id)
            .order_by(Prompt.name, PromptVersion.number.desc())
        ):
            versions.setdefault(name, []).append(number)
        labels: dict[str, list[str]] = {}
        for name, label in s.execute(
            select(Prompt.name, Label.name)
            .join(Label, Label.prompt_id == Prompt.id)
            .order_by(Prompt.name, Label.name)
        ):
            labels.setdefault(name, []).append(label)
        models = list(s.scalars(select(Run.model).distinct().order_by(Run.model)))
    return FilterChoices(
        prompts=sorted(versions),
        versions=versions,
        labels=labels,
        models=models,
        all_labels=sorted({label for names in labels.values() for label in names}),
    )
