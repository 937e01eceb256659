""" "Continue from here with this token": branch a stored answer at one of its tokens.

A branch is a new stored output whose first N tokens are exactly its parent's, then a token
the person chose (one of the alternatives the model had there, or one they typed), then what
the model writes after it with the parent's parameters and seed. It records its parent
(`output.parent_output_id`) and where it forks (`output.branch`: position, token id, token text).

Branching needs the parent's token ids, so it is refused with the reason when they are not
known or would not mean the same thing any more: a server's output (its ids are the server's),
an output without stored log-probabilities, another model (or revision, dtype, chat template)
loaded now, a prompt version that is gone or now renders a different model input. After
generating, the kept tokens' log-probabilities are checked against the parent's stored ones:
if the model scores them differently now, the branch is refused and nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .backends.base import Backend, Cancel, Generation, ModelInput
from .errors import NotFoundError, WorkbenchError
from .library import Library
from .logprobs import LogprobsFormatError, TokenLogprobs
from .params import GenerationParams
from .runs import OutputRecord, output_record
from .store import Output, Prompt, PromptVersion, Run, RunRow, RunVersion, utcnow

# How far a kept token's log-probability may move between the parent's generation and the
# branch's single scoring pass before the model counts as changed. float32 agrees to about
# 1e-5 (checked to 1e-4 in the tests); bfloat16's rounding moves values by up to a few 0.01.
TOLERANCE = {"float32": 1e-3}
TOLERANCE_OTHER = 0.1


class BranchError(WorkbenchError):
    """A branch that cannot be made, with the reason."""


@dataclass(frozen=True)
class BranchPoint:
    """Where a branch forks from its parent: the kept tokens, and the one put at `position`."""

    position: int  # how many of the parent's tokens are kept (0: none; the forced one is first)
    token_id: int
    token: str  # its text, as the tokenizer decodes it alone

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "token_id": self.token_id, "token": self.token}


@dataclass(frozen=True)
class Branch:
    """A stored branch: the output it came from and where."""

    parent_output_id: int
    point: BranchPoint


@dataclass(frozen=True)
class _Parent:
    row: Output
    prompt: str
    version: int
    logprobs: TokenLogprobs


def branch_output(
    library: Library,
    backend: Backend,
    output_id: int,
    position: int,
    token: int | str,
    *,
    cancel: Cancel | None = None,
) -> OutputRecord:
    """Store and return a new output: output `output_id`'s first `position` tokens, then
    `token` (an id, or a text that must be exactly one token), then the model's continuation.

    Every refusal (BranchError, NotFoundError) comes before the model generates anything,
    except a parent whose kept tokens the model now scores differently: that shows only once
    they are scored, and then nothing is stored.
    """
    parent = _parent(library, backend, output_id)
    tokens = parent.logprobs.tokens
    if not 0 <= position < len(tokens):
        raise BranchError(
            f"position {position} is outside output {output_id}'s answer: it has "
            f"{len(tokens)} tokens, so a position is 0 to {len(tokens) - 1}"
        )
    token_id = _token_id(backend, token)
    same = _made_before(library, parent, position, token_id)
    if same is not None:  # the same branch again: the same tokens, so the stored one
        return same
    params = GenerationParams.from_values(parent.row.params)
    model_input = ModelInput(parent.row.model_input, parent.row.add_special_tokens)
    try:
        generation = backend.generate_forced(
            model_input,
            [*tokens[:position], token_id],
            params,
            seed=parent.row.seed,
            cancel=cancel,
        )
    except ValueError as exc:  # an id outside the vocabulary
        raise BranchError(str(exc)) from None
    _check_kept(parent, generation, position)
    text = backend.token_pieces([token_id], in_sequence=False)[0]  # an id known to be valid
    return _store(library, parent, generation, BranchPoint(position, token_id, text))


def branches(library: Library, output_ids: Collection[int]) -> dict[int, Branch]:
    """Which of these outputs are branches, and of what (absent: an ordinary output)."""
    found: dict[int, Branch] = {}
    ids = sorted(set(output_ids))
    with library.store.read() as s:
        for start in range(0, len(ids), 500):
            rows = s.execute(
                select(Output.id, Output.parent_output_id, Output.branch).where(
                    Output.id.in_(ids[start : start + 500]), Output.parent_output_id.is_not(None)
                )
            )
            for output_id, parent_id, point in rows:
                point = point or {}
                found[output_id] = Branch(
                    int(parent_id),
                    BranchPoint(
                        int(point.get("position", 0)),
                        int(point.get("token_id", -1)),
                        str(point.get("token", "")),
                    ),
                )
    return found


def describe(branch: Branch) -> str:
    """One line for listings: "branch of output 12 at token 3 ('word')"."""
    point = branch.point
    return (
        f"branch of output {branch.parent_output_id} at token {point.position} "
        f"({point.token!r}, id {point.token_id})"
    )


def children(library: Library, output_id: int) -> list[int]:
    """The ids of the branches made from this output, oldest first."""
    with library.store.read() as s:
        return list(
            s.scalars(
                select(Output.id).where(Output.parent_output_id == output_id).order_by(Output.id)
            )
        )


def output_runs(library: Library, output_ids: Collection[int]) -> dict[int, int]:
    """The run of each of these outputs (a page links to a stored output through its run)."""
    ids = sorted(set(output_ids))
    with library.store.read() as s:
        return {
            output_id: run_id
            for output_id, run_id in s.execute(
                select(Output.id, Output.run_id).where(Output.id.in_(ids))
            )
        }


def get_output(library: Library, output_id: int) -> OutputRecord:
    """One stored output as a record (NotFoundError when there is none)."""
    with library.store.read() as s:
        row = s.get(Output, output_id)
        if row is None:
            raise NotFoundError(f"no output {output_id}")
        version = s.get_one(PromptVersion, row.version_id)
        prompt = s.get_one(Prompt, version.prompt_id)
        return output_record(row, prompt.name, version.number)


def _parent(library: Library, backend: Backend, output_id: int) -> _Parent:
    """The parent output, checked to still mean the same token ids on the loaded model."""
    info = backend.info
    with library.store.read() as s:
        row = s.get(Output, output_id)
        if row is None:
            raise NotFoundError(f"no output {output_id}")
        blob = row.token_logprobs
        s.expunge(row)
        version = s.get(PromptVersion, row.version_id)
        prompt = s.get(Prompt, version.prompt_id) if version is not None else None
        if version is None or prompt is None:
            raise BranchError(
                f"output {output_id}'s prompt version is gone, so what it was asked cannot be "
                "checked; it cannot be branched"
            )
        version_info = library.info_in(s, version)
    name = f"output {output_id}"
    if row.backend != "transformers" or not backend.capabilities.has("logits"):
        where = row.backend if row.backend != "transformers" else info.backend
        raise BranchError(
            f"{name} cannot be branched: branching forces token ids into a local model, and "
            f"{'that output came from' if where == row.backend else 'the model chosen is'} a "
            f"server ({where}), whose token ids are not known here"
        )
    if row.error is not None or row.text is None:
        raise BranchError(f"{name} failed ({row.error}); there is no answer to branch")
    if blob is None:
        raise BranchError(
            f"{name} has no stored token log-probabilities (stored before they were kept, or "
            "by a backend that gave none), so its token ids are unknown"
        )
    try:
        logprobs = TokenLogprobs.from_bytes(blob)
    except LogprobsFormatError as exc:
        raise BranchError(f"{name}'s token log-probabilities cannot be read: {exc}") from None
    used = (row.model, row.revision, row.dtype)
    if used != (info.name, info.revision, info.dtype):
        raise BranchError(
            f"{name} was generated by {row.model} ({row.revision}, {row.dtype}); load that "
            f"model to branch it, not {info.name} ({info.revision}, {info.dtype})"
        )
    if row.chat_template_hash != info.chat_template_hash:
        raise BranchError(
            f"{name} was generated with another chat template of {info.name} than the one it "
            "has now, so its prompt would not be read the same way"
        )
    try:
        now = backend.model_input(version_info.file.render(row.variables))
    except WorkbenchError as exc:
        raise BranchError(f"{version_info.ref} no longer renders {name}'s input: {exc}") from None
    if (now.text, now.add_special_tokens) != (row.model_input, row.add_special_tokens):
        raise BranchError(
            f"{version_info.ref} now gives the model a different input than it gave for "
            f"{name}, so a branch would not continue the same prompt"
        )
    return _Parent(row, version_info.prompt, version_info.number, logprobs)


def _token_id(backend: Backend, token: int | str) -> int:
    if isinstance(token, int):
        return token
    if not token:
        raise BranchError("type the token to continue with")
    ids = backend.token_ids(token)
    if len(ids) != 1:
        pieces = backend.token_pieces(ids, in_sequence=False)
        raise BranchError(
            f"{token!r} is {len(ids)} tokens for {backend.info.name} "
            f"({' | '.join(repr(p) for p in pieces)}); type exactly one token"
        )
    return ids[0]


def _check_kept(parent: _Parent, generation: Generation, position: int) -> None:
    """The kept tokens must be scored now as they were when the parent was generated."""
    now = generation.logprobs
    assert now is not None, "a local backend gives log-probabilities"
    before = parent.logprobs
    tolerance = TOLERANCE.get(parent.row.dtype, TOLERANCE_OTHER)
    for i in range(position):
        old, new = before.logprobs[i], now.logprobs[i]
        if old == new:  # both -inf is a match too
            continue
        if abs(old - new) > tolerance:
            raise BranchError(
                f"the model now gives output {parent.row.id}'s token {i} a log-probability of "
                f"{new:.4f}, not the {old:.4f} stored with it: the model or its settings "
                "changed since, so the branch is not stored"
            )


def _key(parent: _Parent, position: int, token_id: int) -> str:
    """A branch's cache key: its parent's request and where it forks. Its own kind of key, so
    a request for the parent's answer is never answered by a branch."""
    payload = ["branch", parent.row.cache_key, position, token_id]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _made_before(
    library: Library, parent: _Parent, position: int, token_id: int
) -> OutputRecord | None:
    """A finished branch of this parent at this point, if one is stored: generation is
    deterministic given the parent's parameters and seed, so it would come out the same."""
    with library.store.read() as s:
        found = s.scalar(
            select(Output.id)
            .where(
                Output.cache_key == _key(parent, position, token_id),
                Output.parent_output_id == parent.row.id,
                Output.error.is_(None),
                Output.finish_reason != "cancelled",
            )
            .order_by(Output.id)
            .limit(1)
        )
    return get_output(library, found) if found is not None else None


def _store(
    library: Library, parent: _Parent, generation: Generation, point: BranchPoint
) -> OutputRecord:
    """A run of its own (one row, done), holding the branch."""
    row = parent.row
    key = _key(parent, point.position, point.token_id)
    with library.store.write() as s:
        parent_run = s.get_one(Run, row.run_id)
        now = utcnow()
        run = Run(
            status="cancelled" if generation.finish_reason == "cancelled" else "done",
            model=row.model,
            backend=row.backend,
            revision=row.revision,
            dtype=row.dtype,
            params=dict(parent_run.params),
            samples=1,
            use_cache=False,
            dataset=None,
            total=1,
            created_at=now,
            finished_at=now,
        )
        s.add(run)
        s.flush()
        s.add(RunVersion(run_id=run.id, position=0, version_id=row.version_id))
        s.add(RunRow(run_id=run.id, row_index=0, variables=dict(row.variables)))
        output = Output(
            run_id=run.id,
            version_id=row.version_id,
            row_index=0,
            sample_index=0,
            variables=dict(row.variables),
            messages=list(row.messages),
            model_input=row.model_input,
            add_special_tokens=row.add_special_tokens,
            model=row.model,
            backend=row.backend,
            revision=row.revision,
            dtype=row.dtype,
            chat_template_hash=row.chat_template_hash,
            params=dict(row.params),
            seed=row.seed,
            **(generation.stored_columns() | {"batch_size": 1}),
            error=None,
            answer=None,
            cache_key=key,
            cached=False,
            created_at=now,
            parent_output_id=row.id,
            branch=point.as_dict(),
        )
        s.add(output)
        s.flush()
        return output_record(output, parent.prompt, parent.version)
