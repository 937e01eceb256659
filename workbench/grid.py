"""The Compare grid: a comparison laid out as rows you work in, and the link that opens one.

`compare` lines stored outputs up; this module decides what a person sees in each row of the
grid: the row's variables as separate fields and its expected answer beside them, one cell per
column with a pass/fail verdict, whether the row differs from the baseline or got worse, the
filters and the sort, and a summary per column. It reads everything it needs as plain values,
so the page only draws it and the logic is tested without Streamlit.

Pass/fail needs no typing: scores stored for an output (from the score panel or an evaluation)
decide it; otherwise the prompt file's own assertions (`metadata.assert`), or, when the rows
carry an expected answer, the `exact-match` scorer against it (SQuAD-normalised, as Evaluate
compares). Scorers that need a model are left to the explicit score panel, so drawing the grid
never loads one.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from . import divergence, evaluate
from .compare import Comparison, ConstraintFigures, agreement
from .datasets import Dataset
from .divergence import Answer, Decoder, Divergence
from .errors import WorkbenchError
from .library import Library
from .ratings import RatingRecord
from .runs import OutputRecord, get_run, list_runs, run_rows, token_logprobs
from .scorers import SCORERS, Check, Score, check_needs_expected, parse_check, weighted_pass
from .store import Store
from .testsets import get_test_set, list_test_sets

EXPECTED = "expected"  # the column evaluate.expected_value reads (and expected_<metric>)
DEFAULT_CHECK = parse_check("exact-match")  # against the row's expected answer
SUGGEST_RUNS = 200  # recent runs looked at for the prompt's last dataset


def is_expected_column(name: str) -> bool:
    return name == EXPECTED or name.startswith(EXPECTED + "_")


# --- the grid's model ------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    output: OutputRecord | None
    passed: bool | None  # None: nothing to score it with (or no output)
    scores: tuple[Score, ...] = ()


@dataclass(frozen=True)
class GridRow:
    index: int  # position in the comparison (shown as index + 1)
    variables: dict[str, object]  # the inputs, without the expected answers
    expected: str | None
    cells: tuple[Cell, ...]
    differs: bool  # some column's text is not the baseline's
    failing: bool  # some column fails
    worse: int  # columns that fail where the baseline passes (or error where it did not)
    # per column, the token (from 1) where its answer parts from the baseline's; None: the
    # same answer, the baseline's own column, or nothing to compare on tokens
    diverges: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class GridModel:
    labels: list[str]
    baseline: int
    variables: list[str]  # input columns, in the order first met
    has_expected: bool
    scored: bool  # some cell has a pass/fail verdict
    rows: list[GridRow]
    agreement: list[float | None]  # per column, with the baseline


def _text(output: OutputRecord | None) -> str | None:
    if output is None:
        return None
    return (output.text or "").strip() if output.error is None else f"\0error:{output.error}"


def _verdict(
    output: OutputRecord | None, checks: Sequence[Check], stored: Mapping[int, Sequence[Score]]
) -> Cell:
    if output is None:
        return Cell(None, None)
    scores = list(stored.get(output.id) or ())
    if not scores and checks:
        scores = evaluate.score_output(output, checks)
    if not scores:
        return Cell(output, None)
    return Cell(output, weighted_pass(scores)[1], tuple(scores))


def column_checks(library: Library, comparison: Comparison) -> list[list[Check]]:
    """Per column, what its cells are scored with when no score is stored: the prompt file's
    assertions that need no model, else exact-match when some row has an expected answer."""
    has_expected = any(row.get(EXPECTED) not in (None, "") for row in comparison.rows)
    plans = []
    for column in comparison.columns:
        try:
            written = evaluate.version_checks(library.get(column.ref))
        except WorkbenchError:  # a bad metadata.assert is reported where it is scored
            written = []
        usable = [c for c in written if not SCORERS[c.type].needs_model]
        if usable and not has_expected:
            usable = [c for c in usable if not check_needs_expected(c)]
        plans.append(usable or ([DEFAULT_CHECK] if has_expected else []))
    return plans


def build_grid(
    comparison: Comparison,
    baseline: int = 0,
    checks: Sequence[Sequence[Check]] | None = None,
    stored: Mapping[int, Sequence[Score]] | None = None,
    diverges: Mapping[int, Sequence[int | None]] | None = None,
) -> GridModel:
    """Every row of the comparison with its cells judged; nothing is drawn or generated.
    `diverges`: by row, per column, where the answer parts from the baseline's
    (`divergence_column`); rows without it carry none (see `with_divergence`)."""
    stored = stored or {}
    n = len(comparison.columns)
    plans = list(checks) if checks is not None else [[] for _ in range(n)]
    variables: dict[str, None] = {}
    rows: list[GridRow] = []
    for index, (values, outputs) in enumerate(zip(comparison.rows, comparison.cells, strict=True)):
        for name in values:
            if not is_expected_column(name):
                variables.setdefault(name, None)
        cells = tuple(_verdict(o, plans[c], stored) for c, o in enumerate(outputs))
        texts = {_text(o) for o in outputs}
        base = cells[baseline]
        worse = sum(1 for c, cell in enumerate(cells) if c != baseline and _got_worse(base, cell))
        expected = values.get(EXPECTED)
        rows.append(
            GridRow(
                index=index,
                variables={k: v for k, v in values.items() if not is_expected_column(k)},
                expected=None if expected in (None, "") else str(expected),
                cells=cells,
                differs=len(texts) > 1,
                failing=any(cell.passed is False for cell in cells),
                worse=worse,
                diverges=tuple(diverges.get(index, ())) if diverges is not None else (),
            )
        )
    return GridModel(
        labels=[c.label for c in comparison.columns],
        baseline=baseline,
        variables=list(variables),
        has_expected=any(r.expected is not None for r in rows),
        scored=any(cell.passed is not None for r in rows for cell in r.cells),
        rows=rows,
        agreement=agreement(comparison, baseline) if comparison.columns else [],
    )


def signature(comparison: Comparison, stored: Mapping[int, Sequence[Score]]) -> int:
    """What a grid model depends on that can change between redraws: the outputs and their
    stored scores. The same signature means the same model, so a page keeps it instead of
    judging 4,000 cells again on every click (ratings only change the summary)."""
    scores = tuple(
        (oid, tuple((s.metric, s.passed, s.weight) for s in stored[oid])) for oid in sorted(stored)
    )
    return hash((tuple(comparison.output_ids), tuple(c.ref for c in comparison.columns), scores))


def _got_worse(base: Cell, cell: Cell) -> bool:
    if base.output is None or cell.output is None:
        return False
    if base.passed is True and cell.passed is False:
        return True
    return base.output.error is None and cell.output.error is not None


# --- where answers part from the baseline ----------------------------------------------------
DecoderFor = Callable[[OutputRecord], Decoder | None]  # an output's tokenizer, if at hand
DivergenceSort = Literal["earliest", "latest"]


class _Answers:
    """Outputs as the divergence finder reads them, each built (and decoded) once."""

    def __init__(
        self, store: Store, outputs: Sequence[OutputRecord], decoder_for: DecoderFor | None
    ):
        self.stored = token_logprobs(store, [o.id for o in outputs])
        self.decoder_for: DecoderFor = decoder_for or (lambda output: None)
        self.plain: dict[int, Answer] = {}
        self.texts: dict[tuple[int, bool], Answer] = {}

    def get(self, output: OutputRecord) -> Answer:
        found = self.plain.get(output.id)
        if found is None:
            found = self.plain[output.id] = divergence.answer_of(output, self.stored.get(output.id))
        return found

    def decoder(self, output: OutputRecord) -> Decoder | None:
        return self.decoder_for(output)

    def with_texts(self, output: OutputRecord, *, alternatives: bool) -> Answer:
        key = (output.id, alternatives)
        found = self.texts.get(key)
        if found is None:
            found = self.texts[key] = divergence.with_pieces(
                self.get(output), self.decoder_for(output), alternatives=alternatives
            )
        return found


def _pair(
    outputs: Sequence[OutputRecord | None], c: int, baseline: int
) -> tuple[OutputRecord, OutputRecord] | None:
    """The baseline's output and column c's, when both answered (no error) and c is not the
    baseline's own column."""
    base, output = outputs[baseline], outputs[c]
    if c == baseline or base is None or output is None or base.error or output.error:
        return None
    return base, output


def divergence_column(
    store: Store,
    comparison: Comparison,
    baseline: int = 0,
    decoder_for: DecoderFor | None = None,
    rows: Collection[int] | None = None,
) -> dict[int, tuple[int | None, ...]]:
    """By row (all, or the indices in `rows`), per column, the token (from 1) where the
    column's answer parts from the baseline's: the sortable "diverges at token N" (None: the
    same answer, the baseline's own column, no stored log-probabilities). One query reads the
    outputs' stored token log-probabilities — about 0.2 s for 4,000 of them, which is why a
    page asks for the rows it shows and for all only to sort; token texts are decoded only for
    pairs of two tokenizers (each output once, its own tokens only) by `decoder_for`, the
    page's cached tokenizer — never a model."""
    wanted = range(len(comparison.cells)) if rows is None else sorted(set(rows))
    cells = {i: comparison.cells[i] for i in wanted if 0 <= i < len(comparison.cells)}
    outputs = [o for row in cells.values() for o in row if o is not None]
    answers = _Answers(store, outputs, decoder_for)
    column: dict[int, tuple[int | None, ...]] = {}
    for index, row in cells.items():
        values: list[int | None] = []
        for c in range(len(row)):
            pair = _pair(row, c, baseline)
            if pair is None:
                values.append(None)
                continue
            base, output = pair
            a, b = answers.get(base), answers.get(output)
            values.append(
                divergence.diverges_at_decoding(
                    a, b, answers.decoder(base), answers.decoder(output)
                )
            )
        column[index] = tuple(values)
    return column


def with_divergence(
    rows: Sequence[GridRow], found: Mapping[int, Sequence[int | None]]
) -> list[GridRow]:
    """The rows with the divergence found for them (`divergence_column`) filled in."""
    return [replace(r, diverges=tuple(found[r.index])) if r.index in found else r for r in rows]


def row_divergences(
    store: Store, row: GridRow, baseline: int = 0, decoder_for: DecoderFor | None = None
) -> list[Divergence | None]:
    """For a row's detail: per column, where its answer parts from the baseline's, with the
    text before it, each side's token and alternatives and the cross probabilities (None: the
    baseline's own column, a missing or failed output)."""
    outputs = [cell.output for cell in row.cells]
    answers = _Answers(store, [o for o in outputs if o is not None], decoder_for)
    found: list[Divergence | None] = []
    for c in range(len(outputs)):
        pair = _pair(outputs, c, baseline)
        if pair is None:
            found.append(None)
            continue
        base, output = pair
        found.append(
            divergence.first_divergence(
                answers.with_texts(base, alternatives=True),
                answers.with_texts(output, alternatives=True),
                ("the baseline", f"column {c + 1}"),
            )
        )
    return found


def _parts_at(row: GridRow, column: int | None) -> int | None:
    if column is not None:
        return row.diverges[column] if column < len(row.diverges) else None
    return min((n for n in row.diverges if n is not None), default=None)


# --- filters, sort, pages ------------------------------------------------------------------
def select_rows(
    model: GridModel,
    *,
    only_differing: bool = False,
    only_failing: bool = False,
    worse_first: bool = False,
    parts: DivergenceSort | None = None,
    parts_column: int | None = None,
) -> list[GridRow]:
    """The rows to show: filtered, and with "got worse than baseline" first when asked (most
    columns worse first; otherwise in their own order). `parts`: sorted by the token where
    the answer of `parts_column` (None: any column, the earliest) parts from the baseline's,
    earliest or latest first, before "got worse"; rows where it does not part come last."""
    rows = [
        r
        for r in model.rows
        if (not only_differing or r.differs) and (not only_failing or r.failing)
    ]
    if worse_first:
        rows.sort(key=lambda r: -r.worse)  # stable: ties keep the rows' order
    if parts is not None:
        sign = 1 if parts == "earliest" else -1
        at = {r.index: _parts_at(r, parts_column) for r in rows}
        rows.sort(key=lambda r: (at[r.index] is None, sign * (at[r.index] or 0)))
    return rows


def page_count(rows: int, per_page: int) -> int:
    return max(1, -(-rows // per_page))


def page_of(rows: Sequence[GridRow], page: int, per_page: int) -> list[GridRow]:
    """Rows of page `page` (from 1; clamped to the pages there are)."""
    page = min(max(1, page), page_count(len(rows), per_page))
    return list(rows[(page - 1) * per_page : page * per_page])


def plural(n: int, word: str) -> str:
    """`1 row`, `2 rows`: how the page counts things."""
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- the summary strip -----------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnSummary:
    label: str
    outputs: int
    scored: int
    passed: int
    agreement: float | None
    generated: int  # outputs made by the model for this comparison's runs (timed)
    cached: int  # answers from the store: marked, left out of the timing
    mean_latency_s: float | None  # over the generated outputs only
    mean_tokens: float | None
    good: int
    bad: int
    mean_stars: float | None

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.scored if self.scored else None


def summarise(
    model: GridModel, ratings: Mapping[int, RatingRecord] | None = None
) -> list[ColumnSummary]:
    """Per column: pass rate, agreement with the baseline, mean latency of the outputs actually
    generated (a cached answer's stored latency is the original run's, not this one's), and
    the ratings given so far."""
    ratings = ratings or {}
    out = []
    for c, label in enumerate(model.labels):
        cells = [r.cells[c] for r in model.rows if r.cells[c].output is not None]
        outputs = [cell.output for cell in cells if cell.output is not None]
        generated = [o for o in outputs if not o.cached and o.error is None]
        latencies = [o.latency_s for o in generated if o.latency_s is not None]
        tokens = [o.completion_tokens for o in generated if o.completion_tokens is not None]
        rated = [ratings[o.id] for o in outputs if o.id in ratings]
        stars = [r.stars for r in rated if r.stars is not None]
        judged = [cell.passed for cell in cells if cell.passed is not None]
        out.append(
            ColumnSummary(
                label=label,
                outputs=len(outputs),
                scored=len(judged),
                passed=sum(judged),
                agreement=model.agreement[c] if c < len(model.agreement) else None,
                generated=len(generated),
                cached=sum(o.cached for o in outputs),
                mean_latency_s=statistics.fmean(latencies) if latencies else None,
                mean_tokens=statistics.fmean(tokens) if tokens else None,
                good=sum(r.verdict == 1 for r in rated),
                bad=sum(r.verdict == -1 for r in rated),
                mean_stars=statistics.fmean(stars) if stars else None,
            )
        )
    return out


def summary_lines(summary: ColumnSummary, *, baseline: bool) -> list[str]:
    """The strip above a column, as short plain lines."""
    lines = []
    if summary.pass_rate is not None:
        lines.append(f"pass {summary.passed}/{summary.scored} ({summary.pass_rate:.0%})")
    if baseline:
        lines.append("baseline")
    elif summary.agreement is not None:
        lines.append(f"agrees with baseline {summary.agreement:.0%}")
    if summary.mean_latency_s is not None:
        lines.append(
            f"mean latency {summary.mean_latency_s:.2f} s over {summary.generated} generated"
        )
    if summary.cached:
        lines.append(f"{summary.cached} cached (not timed)")
    rated = [f"good {summary.good}", f"bad {summary.bad}"]
    if summary.mean_stars is not None:
        rated.append(f"stars {summary.mean_stars:.1f}")
    lines.append(" · ".join(rated))
    return lines


# --- constrained and free: the figures per column --------------------------------------------
def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "–"


def constraint_lines(figures: ConstraintFigures) -> list[str]:
    """Under a column's summary when its prompt declares an output constraint: what it was
    decoded under, how many answers follow it, parse as JSON, and were cut. None declared:
    nothing."""
    if figures.decoding is None:
        return []
    lines = [
        f"decoded {figures.decoding}"
        if figures.decoding == "free"
        else f"decoded under {figures.decoding}",
        f"follows the constraint {_share(figures.valid, figures.checked)}",
    ]
    if figures.json_checked:
        lines.append(f"parses as JSON {_share(figures.json_parsed, figures.json_checked)}")
    if figures.cut:
        lines.append(f"{plural(figures.cut, 'answer')} cut at max_new_tokens (incomplete)")
    return lines


def constraint_table(
    figures: Sequence[ConstraintFigures], summaries: Sequence[ColumnSummary]
) -> list[dict[str, str]]:
    """One row per column, for putting the same version constrained and free side by side:
    what it was decoded under, JSON-parse and constraint-valid rates, the grid's pass rate
    (assertions or expected answers: a constraint can fix the format and hurt the answer),
    mean tokens, mean latency and the answers cut at max_new_tokens. Plain text cells."""
    rows = []
    for number, (f, summary) in enumerate(zip(figures, summaries, strict=True), 1):
        latency = (
            f"{f.mean_latency_s:.2f} s over {f.generated}"
            if f.mean_latency_s is not None
            else ("cached (not timed)" if f.answers else "–")
        )
        rows.append(
            {
                "column": f"{number}: {f.label}",
                "decoded": f.decoding or "nothing declared",
                "parses as JSON": _share(f.json_parsed, f.json_checked),
                "constraint-valid": _share(f.valid, f.checked),
                "pass": _share(summary.passed, summary.scored),
                "mean tokens": f"{f.mean_tokens:.1f}" if f.mean_tokens is not None else "–",
                "mean latency": latency,
                "cut (length)": str(f.cut),
            }
        )
    return rows


# --- rating labels: text, never emoji only ---------------------------------------------------
VERDICTS = {"good": 1, "bad": -1}


def verdict_label(rating: RatingRecord | None) -> str:
    if rating is None:
        return "not rated"
    parts = [{1: "good", -1: "bad"}.get(rating.verdict or 0, "")]
    if rating.stars:
        parts.append(f"{rating.stars}/5 stars")
    if rating.comment:
        parts.append("commented")
    return ", ".join(p for p in parts if p) or "not rated"


# --- the selection in the URL ----------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """What `?prompt=<name>&v=<new>&base=<old>&testset=<name>|run=<id>` asks Compare to show."""

    prompt: str | None = None
    new: int | None = None
    base: int | None = None
    testset: str | None = None
    run: int | None = None

    def params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.prompt:
            out["prompt"] = self.prompt
        if self.new is not None:
            out["v"] = str(self.new)
        if self.base is not None:
            out["base"] = str(self.base)
        if self.testset:
            out["testset"] = self.testset
        elif self.run is not None:
            out["run"] = str(self.run)
        return out


def _number(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip().lstrip("v")
    return int(value) if value.isdigit() and int(value) > 0 else None


def parse_selection(params: Mapping[str, str]) -> Selection:
    """The URL's selection; a value that is not a version or run number is ignored."""
    return Selection(
        prompt=(params.get("prompt") or "").strip() or None,
        new=_number(params.get("v")),
        base=_number(params.get("base")),
        testset=(params.get("testset") or "").strip() or None,
        run=_number(params.get("run")),
    )


def previous_version(
    name: str, version: int, *, testset: str | None = None, run: int | None = None
) -> Selection:
    """Compare `version` with the one before it (itself when it is the first)."""
    return Selection(name, version, max(1, version - 1), testset, run)


# --- where the rows come from ----------------------------------------------------------------
def run_dataset(store: Store, run_id: int) -> Dataset:
    """A stored run's input rows as a dataset, named as the run named it."""
    record = get_run(store, run_id)
    with store.read() as s:
        rows = tuple(variables for _, variables in run_rows(s, run_id))
    if not rows:
        raise WorkbenchError(f"run {run_id} has no input rows")
    columns = tuple(dict.fromkeys(k for row in rows for k in row))
    return Dataset(record.dataset or f"rows of run {run_id}", columns, rows)


def suggest_source(store: Store, prompt: str) -> Selection:
    """Rows for comparing versions of `prompt` when the link names none: the test set it was
    last run on (or one named after it), else the rows of its last run over a dataset."""
    stored = {t.name for t in list_test_sets(store)}
    last_run: int | None = None
    for record in list_runs(store, limit=SUGGEST_RUNS):
        if not any(ref.rpartition("@")[0] == prompt for ref in record.versions):
            continue
        name = (record.dataset or "").rpartition("@")[0]
        if name in stored:
            return Selection(testset=name)
        if record.dataset and last_run is None:
            last_run = record.id
    if prompt in stored:
        return Selection(testset=prompt)
    return Selection(run=last_run)


def testset_rows(store: Store, name: str) -> Dataset:
    """A stored test set's rows (`name` or `name@N`), named by its exact version."""
    return get_test_set(store, name)
