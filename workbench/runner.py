"""Run prompt versions on a model and keep every result.

A run is planned before anything is generated: versions, rows and parameters are checked and
every row is rendered, so a missing column or a bad parameter costs nothing. The run row is
written first; each output is written the moment it is finished, so a crash or a kill keeps
what was done and `resume` finishes only what is missing. Identical requests (same model,
revision, chat template, exact model input, parameters and seed) are answered from the stored
output at once, marked as cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from .answers import counts as answer_counts
from .answers import group_answers
from .backends.base import (
    Backend,
    Cancel,
    CapabilityError,
    ChoiceScores,
    FinishReason,
    Generation,
    ModelInfo,
    ModelInput,
)
from .choices import (
    CONTENT_FREE,
    FINISH_REASON,
    ChoiceRequest,
    ChoiceResult,
    ChoicesError,
    average,
    content_free_variables,
    declared_calibration,
    declared_choices,
    normalise,
)
from .constraints import Constraint, ConstraintError, declared
from .datasets import Dataset, check_columns
from .db_faults import DatabaseFault
from .errors import NotFoundError, WorkbenchError
from .library import Library, VersionInfo
from .logprobs import LogprobsFormatError, TokenLogprobs
from .ownership import check_not_busy, claim, executing, planned, take
from .params import GenerationParams, typed_values
from .runs import (
    OutputRecord,
    RunRecord,
    VoteRecord,
    complete,
    get_run,
    output_record,
    run_outputs,
    run_rows,
    run_votes,
)
from .store import Output, PromptVersion, Run, RunRow, RunVersion, Vote, utcnow
from .techniques import SelfConsistency
from .templates import Rendered

SAMPLING_TEMPERATURE = 0.7  # used for self-consistency when a prompt asks for greedy decoding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    cached: int
    tokens_per_s: float
    eta_s: float | None
    elapsed_s: float


@dataclass(frozen=True)
class RunSummary:
    run: RunRecord
    outputs: list[OutputRecord]
    votes: list[VoteRecord]
    wall_s: float
    generated_tokens: int
    # What the backend said about its answers, each once (a server without log-probabilities).
    notices: tuple[str, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class _Cell:
    samples: int  # how many samples its (version, row) draws; > 1 means a vote
    version: VersionInfo
    version_id: int
    row_index: int
    sample_index: int
    variables: dict[str, Any]
    rendered: Rendered
    params: GenerationParams
    seed: int
    model_input: ModelInput | None = None
    cache_key: str = ""
    choices: tuple[str, ...] | None = None  # scored instead of generated (see workbench.choices)
    calibrate: bool = False
    choice_result: ChoiceResult | None = None  # set once scored, or read from a cached answer


@dataclass
class _Plan:
    run_id: int
    cells: list[_Cell] = field(default_factory=list)


def cache_key(
    backend: Backend,
    model_input: ModelInput,
    params: GenerationParams,
    seed: int,
    choices: Sequence[str] | None = None,
    calibrate: bool = False,
) -> str:
    info = backend.info
    payload: dict[str, Any] = {
        "backend": info.backend,
        "model": info.name,
        "revision": info.revision,
        "dtype": info.dtype,
        "chat_template": info.chat_template_hash,
        "input": model_input.text,
        "special_tokens": model_input.add_special_tokens,
        "params": params.key(),
        "seed": seed if params.sampling else None,
    }
    if model_input.messages is not None:  # only servers that template messages themselves
        payload["messages"] = [list(m) for m in model_input.messages]
    if choices is not None:  # a scored answer never answers a generated request, nor the reverse
        payload["choices"] = list(choices)
        payload["calibration"] = list(CONTENT_FREE) if calibrate else None
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def samples_for(version: VersionInfo, samples: int | None = None) -> int:
    """How many samples a run draws per row of `version`: `samples` when given, else the
    prompt's own self-consistency samples, else one."""
    if samples is not None:
        return samples
    sc = SelfConsistency.from_metadata(version.file.metadata)
    return sc.samples if sc and sc.samples > 1 else 1


def required_variables(version: VersionInfo) -> list[str]:
    """Variables a dataset must provide: used by the template and without a default."""
    pf = version.file
    specs = pf.inputs
    return [v for v in pf.template_variables() if not (v in specs and specs[v].has_default)]


class Runner:
    """Plans, executes and resumes runs; the CLI and the app call the same methods."""

    def __init__(self, library: Library, backend: Backend | Callable[[], Backend] | None = None):
        """`backend` may be a factory, so a model loads only when something is generated."""
        self.library = library
        self.store = library.store
        self._backend = backend
        # Rows rendered while checking a run in `start`, reused when it executes in this process.
        self._rendered: dict[int, dict[tuple[str, int], Rendered]] = {}

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise WorkbenchError("no model chosen for this runner")
        if not hasattr(self._backend, "info"):
            self._backend = self._backend()
        return self._backend  # type: ignore[return-value]

    # --- planning -----------------------------------------------------------------------------
    def start(
        self,
        versions: Sequence[VersionInfo],
        rows: Dataset | Sequence[Mapping[str, Any]],
        *,
        overrides: Mapping[str, Any] | None = None,
        samples: int | None = None,
        use_cache: bool = True,
        choices: ChoiceRequest | None = None,
    ) -> int:
        """Check everything, render every row, and write the run; returns its id.

        Nothing is loaded or generated here, so every mistake in the request surfaces at once.
        `choices` overrides the prompts' own `metadata.choices` and/or asks for calibration.
        """
        if not versions:
            raise WorkbenchError("choose at least one prompt version to run")
        scored = check_choices(versions, choices, samples)
        dataset = rows if isinstance(rows, Dataset) else None
        source: Sequence[Mapping[str, Any]] = dataset.rows if dataset else rows  # type: ignore[assignment]
        row_list = [dict(r) for r in source]
        if not row_list:
            raise WorkbenchError("nothing to run: the input has no rows")
        if dataset is not None:
            check_columns(
                dataset,
                {v.ref: required_variables(v) for v in versions},
                {v.ref: list(v.file.template_variables()) for v in versions},
            )
        if samples is not None and samples < 1:
            raise WorkbenchError(f"--samples must be at least 1, got {samples}")
        rendered: dict[tuple[str, int], Rendered] = {}

        def capable() -> bool:  # asked only of a declared constraint: no model for a typo
            return self.backend.capabilities.constrained

        for version in versions:
            params = GenerationParams.build(version.file.options, overrides)  # raises if bad
            for index, row in enumerate(row_list):
                where = f"row {index + 1}: " if len(row_list) > 1 else ""
                try:
                    done = rendered[(version.content_hash, index)] = version.file.render(row)
                except WorkbenchError as exc:
                    raise WorkbenchError(f"{version.ref}: {where}{exc}") from None
                try:  # a bad constraint (schema, pattern) is refused here, before a model loads
                    output_constraint(version, done, params, capable, choices)
                except (ConstraintError, CapabilityError) as exc:
                    raise type(exc)(f"{version.ref}: {where}{exc}") from None
        if scored and not self.backend.capabilities.choices:
            raise CapabilityError(
                f"{self.backend.info.name} gives no log-probabilities for choices: scoring "
                "answer choices needs a local model (or run without answer choices)"
            )
        info = self.backend.info
        n_samples = [samples_for(v, samples) for v in versions]
        with self.store.write() as s:
            run = Run(
                status="running",
                model=info.name,
                backend=info.backend,
                revision=info.revision,
                dtype=info.dtype,
                params=typed_values(overrides or {}),  # 16, not "16", whoever called
                samples=samples or 1,
                use_cache=use_cache,
                dataset=dataset.name if dataset else None,
                total=len(row_list) * sum(n_samples),
                created_at=utcnow(),
                calibration=choices.stored() if choices is not None else None,
            )
            take(run, run.created_at)  # this process owns it from the start (see ownership)
            s.add(run)
            s.flush()
            for position, version in enumerate(versions):
                s.add(
                    RunVersion(
                        run_id=run.id,
                        position=position,
                        version_id=self.library.resolve_in(s, version.ref).id,
                    )
                )
            s.add_all(
                RunRow(run_id=run.id, row_index=index, variables=_jsonable(row))
                for index, row in enumerate(row_list)
            )
            run_id = run.id
        planned(self.store, run_id)
        self._rendered = {run_id: rendered}  # only the run just started
        return run_id

    def _plan(self, run_id: int) -> _Plan:
        """The cells of a run that have no output yet, rendered and keyed."""
        with self.store.read() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"no run {run_id} (see `workbench runs list`)")
            version_ids = s.scalars(
                select(RunVersion.version_id)
                .where(RunVersion.run_id == run_id)
                .order_by(RunVersion.position)
            ).all()
            rows = run_rows(s, run_id)
            done = set(
                s.execute(
                    select(Output.version_id, Output.row_index, Output.sample_index).where(
                        Output.run_id == run_id, complete()
                    )
                ).all()
            )
            versions = {vid: self._version_info(s, vid) for vid in version_ids}
            overrides = dict(run.params)
            samples_override = run.samples if run.samples > 1 else None
            request = ChoiceRequest.from_stored(run.calibration)
        plan = _Plan(run_id)
        prepared = self._rendered.pop(run_id, {})
        capable = self.backend.capabilities.constrained
        for vid in version_ids:
            version = versions[vid]
            params = GenerationParams.build(version.file.options, overrides)
            n = samples_for(version, samples_override)
            choices = effective_choices(version, request)
            if n > 1 and not params.sampling:
                params = params.with_(temperature=SAMPLING_TEMPERATURE)
            for row_index, variables in rows:
                rendered = prepared.pop((version.content_hash, row_index), None)
                if rendered is None or any(
                    rendered.variables.get(k) != v for k, v in variables.items()
                ):  # not prepared in this process, or changed by the JSON round trip
                    rendered = version.file.render(variables)
                constraint = output_constraint(version, rendered, params, lambda: capable, request)
                row_params = params.with_(constraint=constraint) if constraint else params
                for sample in range(n):
                    if (vid, row_index, sample) in done:
                        continue
                    seed = params.seed + sample
                    plan.cells.append(
                        _Cell(
                            n,
                            version,
                            vid,
                            row_index,
                            sample,
                            dict(variables),
                            rendered,
                            row_params,
                            seed,
                            choices=choices,
                            calibrate=choices is not None
                            and (
                                (request is not None and request.calibrate)
                                or declared_calibration(version.file.metadata)
                            ),
                        )
                    )
        return plan

    def _version_info(self, s: Session, version_id: int) -> VersionInfo:
        row = s.get_one(PromptVersion, version_id)
        return self.library.info_in(s, row)

    # --- executing ----------------------------------------------------------------------------
    def execute(
        self,
        run_id: int,
        *,
        progress: Callable[[Progress], None] | None = None,
        cancel: Cancel | None = None,
        batch_size: int | None = None,
        on_output: Callable[[OutputRecord], None] | None = None,
    ) -> RunSummary:
        """Generate every missing output of a run (all of them for a new run).

        While it works the run is this process's: its heartbeat is renewed, and a resume from
        another process is refused. Ctrl+C (KeyboardInterrupt) ends it as cancelled, any other
        exception as failed; a database fault (disk full…) says how far the run got.
        """
        with executing(self.store, run_id):
            return self._execute(run_id, progress, cancel, batch_size, on_output)

    def _execute(
        self,
        run_id: int,
        progress: Callable[[Progress], None] | None,
        cancel: Cancel | None,
        batch_size: int | None,
        on_output: Callable[[OutputRecord], None] | None,
    ) -> RunSummary:
        started = time.perf_counter()
        plan = self._plan(run_id)
        backend = self.backend
        with self.store.read() as s:
            run = s.get_one(Run, run_id)
            total, use_cache = run.total, run.use_cache
            already = s.scalar(select(func.count()).where(Output.run_id == run_id, complete())) or 0
        for cell in plan.cells:
            cell.model_input = backend.model_input(cell.rendered)
            cell.cache_key = _key(backend, cell)
        self._drop_incomplete(run_id)
        stored_choices: dict[str, ChoiceResult] = {}
        hits = (
            self._cached_many([c.cache_key for c in plan.cells], stored_choices)
            if use_cache
            else {}
        )
        for cell in plan.cells:
            cell.choice_result = stored_choices.get(cell.cache_key)
        pending = [c for c in plan.cells if c.cache_key not in hits]
        scoring = [c for c in pending if c.choices is not None]
        pending = [c for c in pending if c.choices is None]
        checked: set[Constraint] = set()
        for cell in pending:  # every row must fit before the first token is generated
            assert cell.model_input is not None
            constraint = cell.params.constraint
            try:
                backend.check_fits(backend.count_tokens(cell.model_input), cell.params)
                if constraint is not None and constraint not in checked:
                    checked.add(constraint)
                    backend.check_constraint(constraint)  # with the tokenizer, not the weights
            except WorkbenchError as exc:
                self._finish_run(run_id, "failed", str(exc))
                raise type(exc)(f"{cell.version.ref}, row {cell.row_index + 1}: {exc}") from None

        counters = {"done": already, "cached": 0, "tokens": 0}
        written: list[tuple[tuple[int, int, int], OutputRecord]] = []
        notices: dict[str, None] = {}  # in the order heard, each once

        def report() -> None:
            if progress is None:
                return
            elapsed = time.perf_counter() - started
            generated_rows = counters["done"] - already - counters["cached"]
            remaining = total - counters["done"]
            rate = generated_rows / elapsed if elapsed > 0 and generated_rows else 0.0
            progress(
                Progress(
                    done=counters["done"],
                    total=total,
                    cached=counters["cached"],
                    tokens_per_s=counters["tokens"] / elapsed if elapsed > 0 else 0.0,
                    eta_s=remaining / rate if rate else None,
                    elapsed_s=elapsed,
                )
            )

        def store(items: list[tuple[_Cell, Generation, bool]]) -> None:
            for record, (cell, generation, cached) in zip(
                self._write_outputs(run_id, items), items, strict=True
            ):
                written.append(((cell.version_id, cell.row_index, cell.sample_index), record))
                counters["done"] += 1
                if cached:
                    counters["cached"] += 1
                else:
                    counters["tokens"] += generation.completion_tokens
                    if generation.notice:
                        notices.setdefault(generation.notice)
                if on_output is not None:
                    on_output(record)
                report()

        report()
        if hits:  # one transaction for all answers that are already known
            store([(c, hits[c.cache_key], True) for c in plan.cells if c.cache_key in hits])

        status = "done"
        try:
            if scoring:
                self._score(run_id, scoring, store, batch_size, cancel)
            groups: dict[tuple[int, str], list[_Cell]] = {}
            for cell in pending:
                groups.setdefault((cell.version_id, cell.params.key()), []).append(cell)
            for cells in groups.values():
                if cancel is not None and cancel.is_set():
                    break
                inputs = [c.model_input for c in cells]
                backend.generate(
                    inputs,  # type: ignore[arg-type]
                    cells[0].params,
                    seeds=[c.seed for c in cells],
                    batch_size=batch_size,
                    on_batch=lambda done, cells=cells: store(  # type: ignore[misc]
                        [(cells[i], g, False) for i, g in done]
                    ),
                    cancel=cancel,
                    # Someone is watching: store and show each row as soon as it ends.
                    rows_as_they_finish=on_output is not None,
                )
            if cancel is not None and cancel.is_set():
                status = "cancelled"
        except KeyboardInterrupt:  # Ctrl+C: the person stopped it, as Cancel does
            self._end_run(run_id, "cancelled", None)
            raise
        except DatabaseFault as exc:  # the outputs stored so far are kept: say so
            self._end_run(run_id, "failed", str(exc))
            raise type(exc)(
                f"run {run_id} stopped with {counters['done']} of {total} outputs stored (they "
                f"are kept; `workbench runs resume {run_id}` finishes it): {exc}"
            ) from exc
        except BaseException as exc:
            self._end_run(run_id, "failed", _error_text(exc))
            raise
        self._write_votes(run_id)
        with self.store.read() as s:
            missing = total - (
                s.scalar(select(func.count()).where(Output.run_id == run_id, complete())) or 0
            )
        if status == "done" and missing > 0:
            status = "cancelled"
        self._finish_run(run_id, status, None)
        # A run done in one go already holds every record; a resumed one reads the rest back.
        if already == 0:
            outputs = [record for _, record in sorted(written, key=lambda item: item[0])]
        else:
            outputs = run_outputs(self.store, run_id)
        wall = time.perf_counter() - started
        return RunSummary(
            get_run(self.store, run_id),
            outputs,
            run_votes(self.store, run_id),
            wall,
            counters["tokens"],
            tuple(notices),
        )

    def run(
        self,
        versions: Sequence[VersionInfo],
        rows: Dataset | Sequence[Mapping[str, Any]],
        *,
        overrides: Mapping[str, Any] | None = None,
        samples: int | None = None,
        use_cache: bool = True,
        progress: Callable[[Progress], None] | None = None,
        cancel: Cancel | None = None,
        batch_size: int | None = None,
        on_output: Callable[[OutputRecord], None] | None = None,
        choices: ChoiceRequest | None = None,
    ) -> RunSummary:
        run_id = self.start(
            versions,
            rows,
            overrides=overrides,
            samples=samples,
            use_cache=use_cache,
            choices=choices,
        )
        return self.execute(
            run_id, progress=progress, cancel=cancel, batch_size=batch_size, on_output=on_output
        )

    def resume(self, run_id: int, **kwargs: Any) -> RunSummary:
        """Finish a run that was interrupted, cancelled or failed: only missing outputs are
        generated. A run that a live process is still generating is refused (RunBusyError)
        before any model loads."""
        check_not_busy(self.store, run_id)
        record = get_run(self.store, run_id)
        info = self.backend.info
        if (record.model, record.revision, record.dtype) != (info.name, info.revision, info.dtype):
            raise WorkbenchError(
                f"run {run_id} used {record.model} ({record.revision}, {record.dtype}); load that "
                f"model to resume it, not {info.name} ({info.revision}, {info.dtype})"
            )
        if record.done >= record.total:
            return RunSummary(
                record, run_outputs(self.store, run_id), run_votes(self.store, run_id), 0.0, 0
            )
        claim(self.store, run_id)  # atomic: of two resumes at once, one is refused
        return self.execute(run_id, **kwargs)

    # --- streaming one answer ---------------------------------------------------------------
    def stream(
        self,
        version: VersionInfo,
        variables: Mapping[str, Any],
        *,
        overrides: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        cancel: Cancel | None = None,
        choices: ChoiceRequest | None = None,
    ) -> StreamedRun:
        """Start a single-row run and stream its answer; the output is stored when it ends.
        With answer choices (the prompt's or `choices`) the scored answer comes as one piece."""
        run_id = self.start(
            [version],
            [variables],
            overrides=overrides,
            use_cache=use_cache,
            samples=1,
            choices=choices,
        )
        plan = self._plan(run_id)
        cell = plan.cells[0]
        backend = self.backend
        cell.model_input = backend.model_input(cell.rendered)
        cell.cache_key = _key(backend, cell)
        return StreamedRun(self, run_id, cell, use_cache, cancel)

    # --- answer choices -----------------------------------------------------------------------
    def _score(
        self,
        run_id: int,
        cells: Sequence[_Cell],
        store: Callable[[list[tuple[_Cell, Generation, bool]]], Any],
        batch_size: int | None,
        cancel: Cancel | None,
    ) -> None:
        """Score the choices of these cells (per version and choice list, one batched call),
        calibrated first when asked; each batch is stored as it finishes."""
        backend = self.backend
        groups: dict[tuple[int, tuple[str, ...]], list[_Cell]] = {}
        for cell in cells:
            assert cell.choices is not None
            groups.setdefault((cell.version_id, cell.choices), []).append(cell)
        for (_, choices), group in groups.items():
            if cancel is not None and cancel.is_set():
                return
            content_free = self._content_free(run_id, group[0]) if group[0].calibrate else None

            def done(
                scored: list[tuple[int, ChoiceScores]],
                group: list[_Cell] = group,
                choices: tuple[str, ...] = choices,
                content_free: list[float] | None = content_free,
            ) -> None:
                items = []
                for i, scores in scored:
                    cell = group[i]
                    cell.choice_result = ChoiceResult.score(choices, scores.logprobs, content_free)
                    items.append((cell, _choice_generation(cell.choice_result, scores), False))
                store(items)

            backend.score_choices(
                [c.model_input for c in group],  # type: ignore[misc]
                choices,
                batch_size=batch_size,
                on_batch=done,
                cancel=cancel,
            )

    def _content_free(self, run_id: int, cell: _Cell) -> list[float]:
        """The distribution `cell`'s version gives its choices with each content-free input in
        every input variable the rows fill, averaged: read from the run, else computed once
        and stored in `run.calibration` with what it was computed from."""
        assert cell.choices is not None
        key = str(cell.version_id)
        with self.store.read() as s:
            stored = dict(s.get_one(Run, run_id).calibration or {})
        known = (stored.get("distributions") or {}).get(key)
        if known is not None and known.get("choices") == list(cell.choices):
            return [float(p) for p in known["probs"]]
        version = cell.version
        names = content_free_names(version, cell.variables)
        inputs = []
        for value in CONTENT_FREE:
            variables = content_free_variables(names, value, cell.variables)
            try:
                rendered = version.file.render(variables)
            except WorkbenchError as exc:
                raise ChoicesError(
                    f"{version.ref}: calibration puts {value!r} into {', '.join(names)}, and "
                    f"the prompt does not render with it: {exc}"
                ) from None
            inputs.append(self.backend.model_input(rendered))
        scored = self.backend.score_choices(inputs, cell.choices)
        per_input = [normalise(s.logprobs) for s in scored if s is not None]
        probs = average(per_input)
        stored.setdefault("distributions", {})
        stored["distributions"] = {
            **stored["distributions"],
            key: {
                "ref": version.ref,
                "choices": list(cell.choices),
                "variables": names,
                "inputs": list(CONTENT_FREE),
                "per_input": per_input,
                "probs": probs,
            },
        }
        with self.store.write() as s:
            s.get_one(Run, run_id).calibration = stored
        return probs

    # --- storing ------------------------------------------------------------------------------
    def _cached_many(
        self, keys: Sequence[str], choices: dict[str, ChoiceResult] | None = None
    ) -> dict[str, Generation]:
        """Stored generations for these cache keys (the earliest complete one for each); their
        scored choices, when they have some, go into `choices`."""
        found: dict[str, Generation] = {}
        unique = list(dict.fromkeys(keys))
        with self.store.read() as s:
            for start in range(0, len(unique), 500):
                rows = s.execute(
                    select(
                        Output.cache_key,
                        Output.text,
                        Output.finish_reason,
                        Output.prompt_tokens,
                        Output.completion_tokens,
                        Output.latency_s,
                        Output.ttft_s,
                        Output.batch_size,
                        Output.token_logprobs,
                        Output.choices,
                    )
                    .where(
                        Output.cache_key.in_(unique[start : start + 500]),
                        Output.error.is_(None),
                        Output.text.is_not(None),
                        Output.finish_reason != "cancelled",
                    )
                    .order_by(Output.id.desc())
                )
                for key, text, reason, p_tok, c_tok, latency, ttft, batch, blob, scored in rows:
                    if choices is not None and scored is not None:
                        choices[key] = ChoiceResult.from_dict(scored)
                    found[key] = Generation(
                        text or "",
                        cast(FinishReason, reason),
                        p_tok or 0,
                        c_tok or 0,
                        latency or 0.0,
                        ttft,
                        batch or 1,
                        logprobs=_stored_logprobs(blob),
                    )
        return found

    def _write_outputs(
        self, run_id: int, items: Sequence[tuple[_Cell, Generation, bool]]
    ) -> list[OutputRecord]:
        """Store finished generations in one transaction (a single one as soon as it is done)."""
        info = self.backend.info
        rows = [self._output_row(run_id, cell, g, cached, info) for cell, g, cached in items]
        with self.store.write() as s:
            s.add_all(rows)
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))
            s.flush()
            return [
                output_record(row, cell.version.prompt, cell.version.number)
                for row, (cell, _, _) in zip(rows, items, strict=True)
            ]

    @staticmethod
    def _output_row(
        run_id: int, cell: _Cell, g: Generation, cached: bool, info: ModelInfo
    ) -> Output:
        assert cell.model_input is not None
        sc = SelfConsistency.from_metadata(cell.version.file.metadata)
        if sc is None and cell.samples > 1:  # --samples on a prompt without a pattern
            sc = SelfConsistency(cell.samples)
        return Output(
            run_id=run_id,
            version_id=cell.version_id,
            row_index=cell.row_index,
            sample_index=cell.sample_index,
            variables=_jsonable(cell.variables),
            messages=[m.as_dict() for m in cell.rendered.messages],
            model_input=cell.model_input.text,
            add_special_tokens=cell.model_input.add_special_tokens,
            model=info.name,
            backend=info.backend,
            revision=info.revision,
            dtype=info.dtype,
            chat_template_hash=info.chat_template_hash,
            params=cell.params.as_dict(),
            seed=cell.seed,
            **g.stored_columns(),
            error=None if cached else g.error,
            answer=sc.extract(g.text) if sc is not None else None,
            cache_key=cell.cache_key,
            cached=cached,
            created_at=utcnow(),
            choices=cell.choice_result.as_dict() if cell.choice_result is not None else None,
        )

    def _drop_incomplete(self, run_id: int) -> None:
        """Outputs cut short by a cancel are redone on resume: remove the partial ones first."""
        with self.store.write() as s:
            s.execute(
                delete(Output).where(Output.run_id == run_id, Output.finish_reason == "cancelled")
            )

    def _write_votes(self, run_id: int) -> None:
        with self.store.write() as s:
            self.store.lock(s, "votes", run_id)  # two resumes of one run vote once per cell
            cells: dict[tuple[int, int], list[str | None]] = {}
            for vid, row_index, answer in s.execute(
                select(Output.version_id, Output.row_index, Output.answer)
                .where(Output.run_id == run_id)
                .order_by(Output.sample_index)
            ):
                cells.setdefault((vid, row_index), []).append(answer)
            existing = set(
                s.execute(
                    select(Vote.version_id, Vote.row_index).where(Vote.run_id == run_id)
                ).all()
            )
            for (vid, row_index), answers in cells.items():
                if len(answers) < 2 or (vid, row_index) in existing:
                    continue
                groups = group_answers(answers)
                s.add(
                    Vote(
                        run_id=run_id,
                        version_id=vid,
                        row_index=row_index,
                        answer=groups[0].answer if groups else None,
                        agreement=groups[0].count / len(answers) if groups else 0.0,
                        samples=len(answers),
                        counts=answer_counts(groups),
                    )
                )

    def _finish_run(self, run_id: int, status: str, error: str | None) -> None:
        with self.store.write() as s:
            run = s.get_one(Run, run_id)
            run.status, run.error, run.finished_at = status, error, utcnow()

    def _end_run(self, run_id: int, status: str, error: str | None) -> None:
        """Record how a run ended while an exception is on its way out. When even that cannot
        be written (the disk is full, the database went read-only) the exception on its way
        matters more: the run still says running, and once this process has let go of it a
        reader marks it interrupted."""
        try:
            self._finish_run(run_id, status, error)
        except DatabaseFault as exc:
            log.warning("run %s: its end (%s) not recorded: %s", run_id, status, exc)


class StreamedRun:
    """Iterate for text pieces; afterwards `.output` is the stored OutputRecord."""

    def __init__(
        self, runner: Runner, run_id: int, cell: _Cell, use_cache: bool, cancel: Cancel | None
    ):
        self.runner, self.run_id, self.cell = runner, run_id, cell
        self.use_cache, self.cancel = use_cache, cancel
        self.output: OutputRecord | None = None
        self.cached = False
        self.notice: str | None = None  # what the backend said about this answer

    def __iter__(self) -> Iterator[str]:
        with executing(self.runner.store, self.run_id):
            yield from self._iterate()

    def _iterate(self) -> Iterator[str]:
        runner, cell = self.runner, self.cell
        assert cell.model_input is not None
        found: dict[str, ChoiceResult] = {}
        hit = (
            runner._cached_many([cell.cache_key], found).get(cell.cache_key)
            if self.use_cache
            else None
        )
        cell.choice_result = found.get(cell.cache_key, cell.choice_result)
        if hit is not None:
            self.cached = True
            yield hit.text
            generation = hit
        elif cell.choices is not None:  # scored, not generated: the chosen answer at once
            scored: list[Generation] = []
            try:
                runner._score(
                    self.run_id,
                    [cell],
                    lambda items: scored.extend(g for _, g, _ in items),
                    1,
                    None,
                )
            except BaseException as exc:
                runner._end_run(self.run_id, "failed", _error_text(exc))
                raise
            generation = scored[0]
            yield generation.text
        else:
            backend = runner.backend
            stream = backend.stream(cell.model_input, cell.params, self.cancel)
            try:
                yield from stream
            except (GeneratorExit, KeyboardInterrupt):  # the reader went away, or Ctrl+C
                runner._end_run(self.run_id, "cancelled", None)
                raise
            except BaseException as exc:
                runner._end_run(self.run_id, "failed", _error_text(exc))
                raise
            assert stream.result is not None
            generation = stream.result
            self.notice = generation.notice
        self.output = runner._write_outputs(self.run_id, [(cell, generation, self.cached)])[0]
        status = "cancelled" if generation.finish_reason == "cancelled" else "done"
        runner._finish_run(self.run_id, status, None)


def check_choices(
    versions: Sequence[VersionInfo], request: ChoiceRequest | None, samples: int | None
) -> bool:
    """Whether any version's answers are scored choices; refuses, before any model loads,
    calibration without choices and choices with sampled votes."""
    scored = False
    for version in versions:
        choices = effective_choices(version, request)
        if choices is None:
            if request is not None:  # calibration, or scoring asked for without choices
                asked = "calibration" if request.calibrate else "scoring answer choices"
                raise ChoicesError(
                    f"{asked} needs answer choices: {version.ref} declares no "
                    "metadata.choices; give them for the run (--choices, or the choices field "
                    "on the Evaluate page)"
                )
            continue
        scored = True
        if samples_for(version, samples) > 1:
            raise ChoicesError(
                f"{version.ref}: answer choices are scored, not sampled, so there is nothing to "
                "vote on: drop samples (self-consistency) or the choices"
            )
    return scored


def output_constraint(
    version: VersionInfo,
    rendered: Rendered,
    params: GenerationParams,
    capable: Callable[[], bool],
    request: ChoiceRequest | None,
) -> Constraint | None:
    """The constraint a row's answer is decoded under, or None (see workbench.constraints).

    On by default when the prompt declares one; `params.constrain` False turns it off, True
    requires one. Answers scored as choices are not generated, so they take none. A backend
    that cannot decode under a grammar runs declared constraints free (its outputs then say
    so: none is stored with them), and refuses a required one."""
    if params.constrain is False or effective_choices(version, request) is not None:
        return None
    constraint = declared(version.file.metadata, version.file.techniques, rendered.variables)
    if constraint is None:
        if params.constrain:
            raise ConstraintError(
                "constrained decoding was asked for, but the prompt declares no output "
                "constraint (metadata.json_schema, metadata.output_pattern or metadata.choices)"
            )
        return None
    if not capable():
        if params.constrain:
            raise CapabilityError(
                "this model's backend cannot decode under a grammar: run without --constrain"
            )
        return None
    return constraint


def content_free_names(version: VersionInfo, row: Mapping[str, Any]) -> list[str]:
    """The variables calibration empties: the text inputs the rows fill (the content being
    classified), not structured ones such as few-shot examples, which stay as in the first row
    so the content-free prompt is the same prompt; when the rows fill none, every text input."""
    specs = version.file.inputs
    used = set(version.file.template_variables())

    def text(name: str) -> bool:
        return name not in specs or specs[name].kind == "string"

    names = [n for n in row if n in used and text(n) and isinstance(row[n], str)]
    names = names or [n for n in version.file.template_variables() if text(n)]
    if not names:
        raise ChoicesError(
            f"{version.ref}: calibration puts content-free inputs into the prompt's text inputs, "
            "and it has none"
        )
    return names


def effective_choices(
    version: VersionInfo, request: ChoiceRequest | None
) -> tuple[str, ...] | None:
    """The choices a version's answers are scored on: the run's, else the prompt's own."""
    if request is not None and request.choices is not None:
        return request.choices
    return declared_choices(version.file.metadata)


def _key(backend: Backend, cell: _Cell) -> str:
    assert cell.model_input is not None
    return cache_key(
        backend, cell.model_input, cell.params, cell.seed, cell.choices, cell.calibrate
    )


def _choice_generation(result: ChoiceResult, scores: ChoiceScores) -> Generation:
    """A scored answer as the runner stores it: the chosen label as text, nothing generated."""
    return Generation(
        result.answer,
        FINISH_REASON,
        scores.prompt_tokens,
        0,
        scores.latency_s,
        None,
        scores.batch_size,
    )


def _stored_logprobs(blob: bytes | None) -> TokenLogprobs | None:
    """A cached answer's stored token log-probabilities, kept with the answer that reuses it
    (None when there are none, or in a format this version cannot read)."""
    if blob is None:
        return None
    try:
        return TokenLogprobs.from_bytes(blob)
    except LogprobsFormatError:
        return None


def _error_text(exc: BaseException) -> str:
    """A run's error as stored: a WorkbenchError's own message, else the exception's type too."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(row), ensure_ascii=False, default=str))  # type: ignore[no-any-return]
