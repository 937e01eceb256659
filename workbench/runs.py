"""Stored runs read back: the records the CLI, the app and the reports show, and their queries.

The runner writes runs and outputs; everything that only reads them lives here, so History,
Compare, Stability and `workbench runs` share one way to load a run, its outputs and its votes,
and none of them needs a model or a runner to do it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, func, or_, select
from sqlalchemy.orm import Session

from .errors import NotFoundError
from .logprobs import LogprobsFormatError, TokenLogprobs
from .ownership import settle_runs
from .store import Output, Prompt, PromptVersion, Run, RunRow, RunVersion, Store, Vote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputRecord:
    id: int
    run_id: int
    prompt: str
    version: int
    row_index: int
    sample_index: int
    variables: dict[str, Any]
    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    ttft_s: float | None
    batch_size: int | None
    cached: bool
    error: str | None
    answer: str | None
    model: str
    revision: str
    dtype: str
    params: dict[str, Any]
    seed: int
    model_input: str
    messages: list[dict[str, str]]
    created_at: datetime
    backend: str = "transformers"  # which backend generated it (a batch means different things)
    # Scored answer choices, `workbench.choices.ChoiceResult.as_dict()`: None when generated.
    choices: dict[str, Any] | None = None


@dataclass(frozen=True)
class VoteRecord:
    prompt: str
    version: int
    row_index: int
    answer: str | None
    agreement: float
    samples: int
    counts: dict[str, int]


@dataclass(frozen=True)
class RunRecord:
    """A run as read back. `status`: running (a live process is generating it), done,
    cancelled (asked to stop: Cancel, Ctrl+C), failed (an error; `error` says which) or
    interrupted (its process went away without a word, see `ownership`)."""

    id: int
    status: str
    model: str
    revision: str
    dtype: str
    versions: list[str]
    params: dict[str, Any]
    samples: int
    dataset: str | None
    total: int
    done: int
    cached: int
    errors: int
    created_at: datetime
    finished_at: datetime | None
    error: str | None

    @property
    def resumable(self) -> bool:
        """Some outputs are missing (interrupted, cancelled, failed, or deleted since)."""
        return self.done < self.total


def complete() -> ColumnElement[bool]:
    """Outputs that count as done: everything except those cut short by a cancel."""
    return or_(Output.finish_reason.is_(None), Output.finish_reason != "cancelled")


def run_counts(s: Session, run_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """Per run: outputs done (cancelled ones do not count), of which cached, of which failed."""
    return {
        rid: (done, int(cached or 0), errors)
        for rid, done, cached, errors in s.execute(
            select(
                Output.run_id,
                func.count(),
                func.sum(func.cast(Output.cached, type_=Integer())),
                func.count(Output.error),
            )
            .where(Output.run_id.in_(run_ids), complete())
            .group_by(Output.run_id)
        )
    }


def run_versions(s: Session, run_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per run: the references (`name@N`) of its versions, in the order they were given."""
    names: dict[int, list[str]] = {}
    for rid, name, number in s.execute(
        select(RunVersion.run_id, Prompt.name, PromptVersion.number)
        .join(PromptVersion, PromptVersion.id == RunVersion.version_id)
        .join(Prompt, Prompt.id == PromptVersion.prompt_id)
        .where(RunVersion.run_id.in_(run_ids))
        .order_by(RunVersion.run_id, RunVersion.position)
    ):
        names.setdefault(rid, []).append(f"{name}@{number}")
    return names


def run_rows(s: Session, run_id: int) -> list[tuple[int, dict[str, Any]]]:
    """A run's input rows, (row index, variables), in order."""
    return [
        (index, dict(variables))
        for index, variables in s.execute(
            select(RunRow.row_index, RunRow.variables)
            .where(RunRow.run_id == run_id)
            .order_by(RunRow.row_index)
        )
    ]


def run_records(
    s: Session, runs: Sequence[Run], interrupted: Collection[int] = ()
) -> list[RunRecord]:
    """Run rows as records, with their output counts and version references.

    `interrupted`: runs found interrupted (by `settle_runs`) that still say "running" because
    the database could not be written here."""
    ids = [r.id for r in runs]
    stats = run_counts(s, ids)
    names = run_versions(s, ids)
    return [
        RunRecord(
            id=r.id,
            status="interrupted" if r.status == "running" and r.id in interrupted else r.status,
            model=r.model,
            revision=r.revision,
            dtype=r.dtype,
            versions=names.get(r.id, []),
            params=dict(r.params),
            samples=r.samples,
            dataset=r.dataset,
            total=r.total,
            done=stats.get(r.id, (0, 0, 0))[0],
            cached=stats.get(r.id, (0, 0, 0))[1],
            errors=stats.get(r.id, (0, 0, 0))[2],
            created_at=r.created_at,
            finished_at=r.finished_at,
            error=r.error,
        )
        for r in runs
    ]


def list_runs(
    store: Store, limit: int = 50, run_ids: Sequence[int] | None = None
) -> list[RunRecord]:
    """Runs, newest first (only `run_ids` when given); runs whose process is gone are marked
    interrupted first."""
    interrupted = settle_runs(store)
    with store.read() as s:
        query = select(Run).order_by(Run.id.desc())
        if run_ids is not None:
            query = query.where(Run.id.in_(run_ids))
        return run_records(s, s.scalars(query.limit(limit)).all(), interrupted)


def get_run(store: Store, run_id: int) -> RunRecord:
    found = list_runs(store, limit=1, run_ids=[run_id])
    if not found:
        raise NotFoundError(f"no run {run_id} (see `workbench runs list`)")
    return found[0]


def _version_names(s: Session, version_ids: set[int]) -> dict[int, tuple[str, int]]:
    return {
        vid: (name, number)
        for vid, name, number in s.execute(
            select(PromptVersion.id, Prompt.name, PromptVersion.number)
            .join(Prompt, Prompt.id == PromptVersion.prompt_id)
            .where(PromptVersion.id.in_(version_ids))
        )
    }


def output_record(row: Output, prompt: str, version: int) -> OutputRecord:
    """An output row as a record; `prompt` and `version` name its prompt version."""
    return OutputRecord(
        id=row.id,
        run_id=row.run_id,
        prompt=prompt,
        version=version,
        row_index=row.row_index,
        sample_index=row.sample_index,
        variables=dict(row.variables),
        text=row.text,
        finish_reason=row.finish_reason,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        latency_s=row.latency_s,
        ttft_s=row.ttft_s,
        batch_size=row.batch_size,
        cached=row.cached,
        error=row.error,
        answer=row.answer,
        model=row.model,
        revision=row.revision,
        dtype=row.dtype,
        params=dict(row.params),
        seed=row.seed,
        model_input=row.model_input,
        messages=list(row.messages),
        created_at=row.created_at,
        backend=row.backend,
        choices=dict(row.choices) if row.choices is not None else None,
    )


def run_outputs(store: Store, run_id: int) -> list[OutputRecord]:
    """Every output of a run, by version, row and sample."""
    with store.read() as s:
        rows = s.scalars(
            select(Output)
            .where(Output.run_id == run_id)
            .order_by(Output.version_id, Output.row_index, Output.sample_index)
        ).all()
        names = _version_names(s, {row.version_id for row in rows})
        return [output_record(row, *names[row.version_id]) for row in rows]


def run_votes(store: Store, run_id: int) -> list[VoteRecord]:
    """The self-consistency votes of a run, by version and row."""
    with store.read() as s:
        found = s.scalars(
            select(Vote).where(Vote.run_id == run_id).order_by(Vote.version_id, Vote.row_index)
        ).all()
        names = _version_names(s, {vote.version_id for vote in found})
        return [
            VoteRecord(
                *names[vote.version_id],
                vote.row_index,
                vote.answer,
                vote.agreement,
                vote.samples,
                dict(vote.counts),
            )
            for vote in found
        ]


def token_logprobs(store: Store, output_ids: Collection[int]) -> dict[int, TokenLogprobs]:
    """The token log-probabilities stored with these outputs, by output id.

    A separate query, not a field of OutputRecord: at 48 bytes a token they are most of an
    output's size, and listings (History, Compare's grid) do not need them. Outputs without
    any (a server that gave none, a failed output, one stored before migration 0009) are
    absent from the answer; so is a blob this version cannot read, which is logged.
    """
    found: dict[int, TokenLogprobs] = {}
    ids = sorted(set(output_ids))
    with store.read() as s:
        for start in range(0, len(ids), 500):
            rows = s.execute(
                select(Output.id, Output.token_logprobs).where(
                    Output.id.in_(ids[start : start + 500]),
                    Output.token_logprobs.is_not(None),
                )
            )
            for output_id, blob in rows:
                try:
                    found[output_id] = TokenLogprobs.from_bytes(blob or b"")
                except LogprobsFormatError as exc:
                    log.warning("output %s: token log-probabilities unreadable: %s", output_id, exc)
    return found
