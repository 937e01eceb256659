"""Few-shot optimisation: choose a prompt's examples (and how it is asked) by their dev score.

What DSPy taught, and what we do differently. DSPy's LabeledFewShot puts k random labelled
examples in a prompt; BootstrapFewShot keeps the examples a teacher program gets right;
BootstrapFewShotWithRandomSearch tries a zero-shot program, a labelled one and many shuffled
random subsets and keeps the best on a validation set. Those optimise Python programs whose
prompts DSPy writes itself; here the thing optimised is a versioned Prompty file, every trial
must be an ordinary stored version and run (History shows it, the runner batches it with a shared
prefix and its cache makes repeats free). So `dspy` itself is not used; its search is rewritten
small, on top of `evaluate`:

1. *Format* trials: the default 135M model classifies well only as a raw completion prompt with
   labelled examples and its label scored by log-probability with contextual calibration
   (DESIGN.md). So before choosing examples, each way of asking — the prompt's own mode and
   completion mode; generated, or answer choices taken from the distinct train labels, raw or
   calibrated — is tried with two examples per label; the best on dev is kept.
2. *Instructions* (when asked): a meta-prompt asks the model for rewrites of the prompt's
   instruction (workbench.instructions); each is tried with the best way of asking.
3. *Selection*: greedy forward selection (add the example that most raises the dev score; stop
   when none helps, at `max_examples`, or when the budget is spent). Each step tries a few
   examples per label, the least represented label first, each appended next to the question;
   examples tried and not taken go to the back of their label's queue, so the next step sees new
   ones. `random` spends the same budget on random subsets in random order (the baseline).
   Equal accuracy is broken by the log-loss of the scored labels when there is one, which keeps
   a greedy step from stalling on a small dev set. Candidates are tried shortest first.
4. *Refine*: the chosen examples asked the other ways (calibration often pays only once there
   are several examples) and in two other orders (reversed, shuffled).

The search is deterministic for a seed: re-running it after a kill or a cancel replays the same
trials, and every row already scored is a cache hit, so only unfinished work is done (that is the
resume). The test set is never used to choose: the original and the winner are scored on it at
the end, side by side with their dev scores, so overfitting to dev shows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .backends.base import Cancel
from .choices import ChoiceRequest, declared_calibration, declared_choices
from .compose import with_calibration
from .datasets import Dataset
from .demos import (
    Demo,
    with_choices,
    with_demos,
    with_line_stop,
    with_mode,
)
from .errors import WorkbenchError
from .evaluate import EXPECTED_COLUMN, EvalReport, evaluate, plan, version_checks
from .instructions import clean_rewrite, instruction_of, meta_prompt, with_instruction
from .library import Library, SaveResult, VersionInfo
from .runner import Progress, Runner
from .templates import Mode, PromptFile

Strategy = Literal["greedy", "random"]
STRATEGIES: tuple[Strategy, ...] = ("greedy", "random")
DEFAULT_BUDGET = 24
DEFAULT_MAX_EXAMPLES = 9
DEFAULT_SEED = 0
PER_LABEL = 2  # examples of each label a greedy step tries
# Examples of each label the ways of asking are compared with: calibration pays only once there
# are several examples (default model, shipped splits: 3 examples 51% calibrated against 56%
# raw; 6 examples 73% against 62%), so one per label would rank the scorings wrongly.
SEED_PER_LABEL = 2
REFINE_TRIALS = 4  # kept back from selection for the refine phase (at most a quarter left)
MAX_LABELS = 10  # more distinct labels than this is not a classification to score as choices
MAX_LABEL_WORDS = 3
SCORING_CHECK = "exact-match"  # a prompt without assertions is scored on its expected label


class ImproveError(WorkbenchError):
    """A search that cannot start as asked: refused before anything runs, with the reason."""


@dataclass(frozen=True)
class Config:
    """One point of the search space. `demos` None keeps the prompt's own examples."""

    mode: Mode
    choices: tuple[str, ...] | None = None  # declared in the prompt: the label is scored
    calibrate: bool = False
    demos: tuple[Demo, ...] | None = None
    instruction: str | None = None  # a rewrite of the prompt's instruction; None keeps it

    def describe(self) -> str:
        scoring = "generated"
        if self.choices is not None:
            scoring = "choices, calibrated" if self.calibrate else "choices"
        shots = "own examples" if self.demos is None else f"{len(self.demos)} examples"
        told = "" if self.instruction is None else f" · instruction {self.instruction[:50]!r}"
        return f"{self.mode} · {scoring} · {shots}{told}"


@dataclass(frozen=True)
class Score:
    """A trial's score on one dataset. `log_loss` (of the scored labels) breaks ties."""

    accuracy: float  # share of rows whose every assertion passed
    mean: float  # weighted share of assertions passed
    rows: int
    log_loss: float | None = None

    def beats(self, other: Score) -> bool:
        """Strictly better: higher accuracy, else (same accuracy) a lower log-loss."""
        if self.accuracy != other.accuracy:
            return self.accuracy > other.accuracy
        if self.mean != other.mean:
            return self.mean > other.mean
        if self.log_loss is not None and other.log_loss is not None:
            return self.log_loss < other.log_loss - 1e-9
        return False


@dataclass(frozen=True)
class Trial:
    number: int  # 1-based, in the order run
    phase: str  # format, greedy or random
    config: Config
    ref: str  # the trial version (a hidden companion prompt, NAME.trials@N)
    dev: Score
    run_id: int | None
    generated: int  # rows generated or scored now; 0 when every row was a cache hit
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """The original prompt or the winner: its file (under the prompt's own name), scores."""

    config: Config
    file: PromptFile
    ref: str
    dev: Score
    test: Score | None = None


@dataclass(frozen=True)
class ImproveProgress:
    trials: int  # finished
    budget: int
    phase: str
    label: str  # what runs now
    rows: Progress | None  # the current evaluation's rows, as the runner reports them
    elapsed_s: float
    eta_s: float | None  # at most this long: the budget left at the mean time of a trial

    def overall(self) -> Progress:
        """The search as a runner-style progress (trials done of the budget), for a progress
        bar or a job that shows one."""
        speed = self.rows.tokens_per_s if self.rows is not None else 0.0
        return Progress(self.trials, self.budget, 0, speed, self.eta_s, self.elapsed_s)


@dataclass(frozen=True)
class ImproveReport:
    prompt: str  # the original version's ref
    strategy: Strategy
    seed: int
    budget: int
    max_examples: int
    question: str  # the variable the examples fill
    labels: tuple[str, ...]
    datasets: dict[str, str]  # train/dev/test → name (rows)
    original: Outcome
    winner: Outcome
    trials: tuple[Trial, ...]
    cancelled: bool
    wall_s: float

    @property
    def improved(self) -> bool:
        return self.winner.config != self.original.config

    def changes(self) -> list[str]:
        """What the winner changes in the original, in words."""
        a, b = self.original.config, self.winner.config
        out = []
        if a.mode != b.mode:
            out.append(f"{b.mode} mode (was {a.mode})")
        if a.choices != b.choices:
            out.append(
                "answer choices " + ", ".join(b.choices) + " scored by log-probability"
                if b.choices is not None
                else "answers generated (no choices)"
            )
        if b.instruction is not None:
            out.append(f"instruction rewritten: {b.instruction!r}")
        if b.calibrate != a.calibrate:
            out.append("choices calibrated (metadata.calibrate)" if b.calibrate else "uncalibrated")
        stops = "stopSequences"
        if self.winner.file.options.get(stops) != self.original.file.options.get(stops):
            out.append("stops at the end of the line")
        if b.demos is not None:
            listed = "; ".join(f"{d.input[:40]!r} → {d.output}" for d in b.demos)
            out.append(f"{len(b.demos)} examples from {self.datasets['train']}: {listed}")
        return out

    def note(self) -> str:
        """The saved version's note: what changed and the dev/test scores."""
        scores = f"dev {_pct(self.original.dev)} → {_pct(self.winner.dev)}"
        if self.original.test is not None and self.winner.test is not None:
            scores += f", test {_pct(self.original.test)} → {_pct(self.winner.test)}"
        return (
            f"improve ({self.strategy}, budget {self.budget}, seed {self.seed}): "
            + "; ".join(self.changes())
            + f". Accuracy {scores}."
        )


def _pct(score: Score) -> str:
    return f"{score.accuracy:.0%} of {score.rows}"


# A stand-in for evaluation (tests): a version and a dataset → its score.
TrialScorer = Callable[[VersionInfo, Dataset, ChoiceRequest | None], Score]


@dataclass
class _Search:
    library: Library
    runner: Runner | None
    original: VersionInfo
    question: str
    extra: tuple[str, ...]
    budget: int
    progress: Callable[[ImproveProgress], None] | None
    cancel: Cancel | None
    scorer: TrialScorer | None
    start: Config
    started: float = field(default_factory=time.perf_counter)
    trials: list[Trial] = field(default_factory=list)
    seen: dict[Config, Trial] = field(default_factory=dict)
    phase: str = ""
    held: int = 0  # trials kept back for a later phase

    @property
    def spent(self) -> int:
        return len(self.trials)

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def left(self) -> int:
        return 0 if self.cancelled else self.budget - self.spent - self.held

    def file(self, config: Config) -> PromptFile:
        pf = self.original.file
        if config.instruction is not None:
            pf = with_instruction(pf, config.instruction)
        pf = with_mode(pf, config.mode)
        if config.demos is not None:
            pf = with_demos(pf, config.demos, self.question)
        if config.mode == "completion" and config.choices is None and config != self.start:
            pf = with_line_stop(pf)  # a generated label is judged without the text after it
        if not config.calibrate:  # before the choices go: calibrate needs them
            pf = with_calibration(pf, False)
        return with_calibration(with_choices(pf, config.choices), config.calibrate)

    def trial(self, config: Config, dev: Dataset) -> Trial | None:
        """Score one configuration on dev (once per search); None when out of budget or
        cancelled before it finished."""
        if config in self.seen:
            return self.seen[config]
        if self.left() <= 0:
            return None
        pf = self.file(config)
        version = self.library.save_trial(pf, self.original.prompt, config.describe())
        label = f"{self.phase}: {config.describe()}"
        self._report(label, None)
        began = time.perf_counter()
        score, run_id, generated = self._score(version, dev, config.calibrate, label)
        if score is None:  # cancelled part way: not a result
            return None
        trial = Trial(
            self.spent + 1,
            self.phase,
            config,
            version.ref,
            score,
            run_id,
            generated,
            time.perf_counter() - began,
        )
        self.trials.append(trial)
        self.seen[config] = trial
        self._report(label, None)
        return trial

    def _score(
        self, version: VersionInfo, data: Dataset, calibrated: bool, label: str
    ) -> tuple[Score | None, int | None, int]:
        if self.scorer is not None:
            request = ChoiceRequest(None, True) if calibrated else None
            return self.scorer(version, data, request), None, len(data.rows)
        assert self.runner is not None
        last: list[Progress] = []

        def rows(_: str, p: Progress) -> None:
            last[:] = [p]
            self._report(label, p)

        report = evaluate(
            self.library,
            self.runner,
            [version.ref],
            data,
            list(self.extra),
            progress=rows,
            cancel=self.cancel,
        )
        if self.cancelled or not report.versions:
            return None, None, 0
        generated = last[0].done - last[0].cached if last else len(data.rows)
        return score_of(report, calibrated), report.versions[0].run_id, generated

    def score_only(self, pf: PromptFile, config: Config, data: Dataset) -> Score | None:
        """A score outside the budget (the original on dev, both on test)."""
        version = self.library.save_trial(pf, self.original.prompt, config.describe())
        return self._score(version, data, config.calibrate, f"{self.phase}: {data.name}")[0]

    def _report(self, label: str, rows: Progress | None) -> None:
        if self.progress is None:
            return
        timed = [t.seconds for t in self.trials if t.generated]
        eta = sum(timed) / len(timed) * self.left() if timed else None
        self.progress(
            ImproveProgress(
                self.spent,
                self.budget,
                self.phase,
                label,
                rows,
                time.perf_counter() - self.started,
                eta,
            )
        )


def score_of(report: EvalReport, calibrated: bool) -> Score:
    version = report.versions[0]
    log_loss = None
    if version.choice_scores is not None:
        found = version.choice_scores.calibrated if calibrated else version.choice_scores.raw
        log_loss = found.log_loss if found is not None else None
    return Score(version.pass_rate, version.mean_score, len(version.rows), log_loss)


# --- checking the request ---------------------------------------------------------------------


def question_variable(version: VersionInfo, data: Dataset) -> str:
    """The one text variable a row fills: the examples will fill it too."""
    pf = version.file
    draft_examples = _examples_input(pf)
    names = [
        name
        for name in pf.template_variables()
        if name in data.columns and name != draft_examples and name != EXPECTED_COLUMN
    ]
    if not names:
        raise ImproveError(
            f"{data.name} fills none of {version.ref}'s variables "
            f"({', '.join(pf.template_variables()) or 'none'}); its columns: "
            f"{', '.join(data.columns)}"
        )
    if len(names) > 1:
        raise ImproveError(
            f"{version.ref} takes {', '.join(names)} from {data.name}: few-shot examples need "
            "one input variable to fill"
        )
    return names[0]


def _examples_input(pf: PromptFile) -> str | None:
    from .compose import read_draft

    found = read_draft(pf).examples
    return found.input if found is not None else None


def _demos(train: Dataset, question: str) -> list[Demo]:
    if EXPECTED_COLUMN not in train.columns:
        raise ImproveError(
            f"{train.name} has no '{EXPECTED_COLUMN}' column: the examples need their labels "
            f"(its columns: {', '.join(train.columns)})"
        )
    if question not in train.columns:
        raise ImproveError(f"{train.name} has no '{question}' column for the examples' inputs")
    out = []
    for number, row in enumerate(train.rows, start=2):
        text, label = str(row.get(question) or ""), str(row.get(EXPECTED_COLUMN) or "")
        if not text.strip() or not label.strip():
            empty = question if not text.strip() else EXPECTED_COLUMN
            raise ImproveError(f"{train.name}, line {number}: empty {empty}")
        out.append(Demo(text, label))
    return out


def _overlap(train: Dataset, other: Dataset, question: str, role: str) -> None:
    """Train rows whose input is also in dev or test would let the search (or the report)
    see the answer: refused."""
    seen = {str(r.get(question) or "").strip() for r in train.rows}
    shared = [str(r.get(question) or "").strip() for r in other.rows]
    shared = [t for t in shared if t in seen]
    if shared:
        raise ImproveError(
            f"{train.name} and {other.name} ({role}) share {len(shared)} input"
            f"{'s' if len(shared) > 1 else ''} (e.g. {shared[0][:60]!r}): a {role} row must not "
            "be a candidate example; remove the overlap"
        )


def labels_of(demos: Sequence[Demo]) -> tuple[str, ...]:
    """The distinct labels, in order of first appearance."""
    return tuple(dict.fromkeys(d.output for d in demos))


def scorable_labels(labels: Sequence[str]) -> bool:
    """Labels short and few enough to score as answer choices (a classification)."""
    return 2 <= len(labels) <= MAX_LABELS and all(
        len(label.split()) <= MAX_LABEL_WORDS for label in labels
    )


def check_request(
    library: Library,
    ref: str,
    train: Dataset,
    dev: Dataset,
    test: Dataset | None,
    *,
    budget: int,
    strategy: str,
    max_examples: int,
    instructions: int = 0,
) -> tuple[VersionInfo, str, tuple[str, ...], list[Demo]]:
    """Everything that can be wrong, before any model loads or runs: (version, question
    variable, extra assertions, candidate examples)."""
    if strategy not in STRATEGIES:
        raise ImproveError(f"strategy {strategy!r}: choose {' or '.join(STRATEGIES)}")
    if budget <= 0:
        raise ImproveError(f"budget must be at least 1 trial, got {budget}")
    if max_examples <= 0:
        raise ImproveError(f"max examples must be at least 1, got {max_examples}")
    for role, data in (("train", train), ("dev", dev), ("test", test)):
        if data is not None and not data.rows:
            raise ImproveError(f"the {role} set {data.name} has no rows")
    if not 0 <= instructions <= MAX_INSTRUCTIONS:
        raise ImproveError(
            f"instructions: ask for 0 to {MAX_INSTRUCTIONS} rewrites, got {instructions}"
        )
    version = library.get(ref)
    if instructions and instruction_of(version.file) is None:
        raise ImproveError(
            f"{version.ref} has no instruction to rewrite: no plain lines come before its "
            "first template line; write the instruction as plain text above the question, or "
            "run without instructions"
        )
    question = question_variable(version, dev)
    demos = _demos(train, question)
    _overlap(train, dev, question, "dev")
    if test is not None:
        _overlap(train, test, question, "test")
    own = version_checks(version)
    extra: tuple[str, ...] = () if own else (SCORING_CHECK,)
    for role, data in (("dev", dev), ("test", test)):
        if data is None:
            continue
        if not own and EXPECTED_COLUMN not in data.columns:
            raise ImproveError(
                f"{version.ref} has no assertions (metadata.assert) and the {role} set "
                f"{data.name} has no '{EXPECTED_COLUMN}' column: nothing to score it by"
            )
        plan(library, [version.ref], data, list(extra))
    return version, question, extra, demos


# --- the search -------------------------------------------------------------------------------


def improve(
    library: Library,
    runner: Runner | None,
    ref: str,
    train: Dataset,
    dev: Dataset,
    test: Dataset | None = None,
    *,
    budget: int = DEFAULT_BUDGET,
    strategy: str = "greedy",
    seed: int = DEFAULT_SEED,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    instructions: int = 0,
    progress: Callable[[ImproveProgress], None] | None = None,
    cancel: Cancel | None = None,
    scorer: TrialScorer | None = None,
    rewriter: Rewriter | None = None,
) -> ImproveReport:
    """Search the prompt's examples (and how it is asked) for the best dev score.

    `budget` counts trials (one evaluation of one variant on dev); the original's dev score and
    both test scores are extra. After `cancel` the report holds the best found so far and no
    test scores. `instructions` asks the runner's model for that many rewrites of the
    prompt's instruction and tries each (they count against the budget). `scorer` replaces
    evaluation and `rewriter` the model's rewrites (tests); by default every trial is a
    stored run.
    """
    version, question, extra, demos = check_request(
        library,
        ref,
        train,
        dev,
        test,
        budget=budget,
        strategy=strategy,
        max_examples=max_examples,
        instructions=instructions,
    )
    pf = version.file
    start = Config(pf.mode, declared_choices(pf.metadata), declared_calibration(pf.metadata), None)
    search = _Search(
        library, runner, version, question, extra, budget, progress, cancel, scorer, start
    )
    labels = labels_of(demos)
    rng = random.Random(seed)
    order = list(range(len(demos)))
    rng.shuffle(order)
    # Short examples first (the seeded order breaks ties): on the 135M default a short, plain
    # example teaches a label better than a long review, and it keeps the prompt short.
    order.sort(key=lambda i: len(demos[i].input.split()))
    search.phase = "original"
    original_dev = search.score_only(pf, start, dev)

    search.phase = "format"
    seed_demos = _per_label(demos, order, labels, SEED_PER_LABEL, max_examples)
    formats = _formats(pf, labels, runner, scorer, seed_demos)
    for config in formats:
        search.trial(config, dev)
    base = _best(search.trials)
    if base is not None and instructions > 0:
        search.phase = "instructions"
        rewrite = rewriter or _model_rewriter(library, runner, version.prompt, cancel)
        texts = _rewrites(rewrite, instruction_of(pf) or "", instructions, labels)
        for text in texts:
            search.trial(replace(base.config, instruction=text), dev)
        base = _best(search.trials)
    if base is not None:
        search.phase = strategy
        search.held = min(REFINE_TRIALS, search.left() // 4)
        if strategy == "greedy":
            chosen = _greedy(search, dev, base, demos, order, labels, max_examples)
        else:
            chosen = _random(search, dev, base, demos, rng, max_examples)
        if chosen is not None and chosen.config.demos:
            # The examples chosen, asked the other ways and in other orders: calibration
            # and order both change a small model's answers (Zhao et al. 2021).
            search.phase, search.held = "refine", 0
            for config in _refinements(chosen.config, formats, rng):
                search.trial(config, dev)

    best: tuple[Config, Score] | None = (start, original_dev) if original_dev else None
    for trial in search.trials:
        if best is None or trial.dev.beats(best[1]):
            best = (trial.config, trial.dev)
    if best is None:  # cancelled before the original was scored
        raise ImproveError("cancelled before the original prompt was scored")
    winner_config, winner_dev = best
    winner_file = search.file(winner_config) if winner_config != start else pf
    original = Outcome(start, pf, version.ref, original_dev or winner_dev)
    winner = Outcome(
        winner_config,
        winner_file,
        search.seen[winner_config].ref if winner_config in search.seen else version.ref,
        winner_dev,
    )
    if test is not None and not search.cancelled:
        search.phase = "test"
        original = replace(original, test=search.score_only(pf, start, test))
        winner = (
            replace(winner, test=original.test)
            if winner_config == start
            else replace(winner, test=search.score_only(winner_file, winner_config, test))
        )
    return ImproveReport(
        prompt=version.ref,
        strategy=strategy,  # type: ignore[arg-type]
        seed=seed,
        budget=budget,
        max_examples=max_examples,
        question=question,
        labels=labels,
        datasets={
            role: f"{data.name} ({len(data.rows)} rows)"
            for role, data in (("train", train), ("dev", dev), ("test", test))
            if data is not None
        },
        original=original,
        winner=winner,
        trials=tuple(search.trials),
        cancelled=search.cancelled,
        wall_s=time.perf_counter() - search.started,
    )


def _best(trials: Sequence[Trial]) -> Trial | None:
    return max(trials, key=_rank, default=None)


def _refinements(chosen: Config, formats: Sequence[Config], rng: random.Random) -> list[Config]:
    """The chosen examples asked the other ways in the same mode, then reversed and shuffled,
    then in the other mode (the order the kept-back trials are spent in)."""
    demos = chosen.demos or ()
    others = [
        replace(f, demos=demos, instruction=chosen.instruction)
        for f in formats
        if (f.mode, f.choices, f.calibrate) != (chosen.mode, chosen.choices, chosen.calibrate)
    ]
    orders = []
    if len(demos) > 1:
        shuffled = list(demos)
        rng.shuffle(shuffled)
        orders = [
            replace(chosen, demos=other)
            for other in (tuple(reversed(demos)), tuple(shuffled))
            if other != demos
        ]
    same_mode = [c for c in others if c.mode == chosen.mode]
    other_mode = [c for c in others if c.mode != chosen.mode]
    return list(dict.fromkeys([*same_mode, *orders, *other_mode]))


# A source of instruction rewrites (tests): the original instruction and how many → texts.
Rewriter = Callable[[str, int], Sequence[str]]
REWRITE_DRAWS = 2  # samples asked per rewrite wanted: some come back unusable or repeated
MAX_INSTRUCTIONS = 20


def _rewrites(rewrite: Rewriter, original: str, n: int, labels: Sequence[str]) -> list[str]:
    """Up to `n` distinct usable rewrites (see instructions.clean_rewrite)."""
    out: list[str] = []
    for text in rewrite(original, n * REWRITE_DRAWS):
        cleaned = clean_rewrite(text, original, labels)
        if cleaned is not None and cleaned not in out:
            out.append(cleaned)
    return out[:n]


def _model_rewriter(
    library: Library, runner: Runner | None, of: str, cancel: Cancel | None
) -> Rewriter:
    """Rewrites drawn from the meta-prompt (instructions.META_PROMPT), sampled with one seed
    per draw. The meta-prompt is stored as a trial of the prompt, so its run is an ordinary
    stored run and a repeated search gets the same rewrites from the cache."""

    def rewrite(original: str, draws: int) -> list[str]:
        if runner is None:
            return []
        version = library.save_trial(meta_prompt(), of, "instruction rewrites")
        summary = runner.run([version], [{"instruction": original}], samples=draws, cancel=cancel)
        return [o.text for o in summary.outputs if o.text and o.error is None]

    return rewrite


def _rank(trial: Trial) -> tuple[float, float, float, int]:
    """Best first by accuracy, mean, lower log-loss; the earlier trial on a tie."""
    loss = -trial.dev.log_loss if trial.dev.log_loss is not None else float("-inf")
    return (trial.dev.accuracy, trial.dev.mean, loss, -trial.number)


def _formats(
    pf: PromptFile,
    labels: Sequence[str],
    runner: Runner | None,
    scorer: TrialScorer | None,
    seed_demos: tuple[Demo, ...],
) -> list[Config]:
    """The ways of asking to try: the prompt's mode, and completion mode for a chat prompt;
    generated, or the labels scored as answer choices, raw and calibrated (local models)."""
    modes: list[Mode] = [pf.mode] + (["completion"] if pf.mode == "chat" else [])
    declared = declared_choices(pf.metadata)
    scorings: list[tuple[tuple[str, ...] | None, bool]] = []
    can_score = scorer is not None or (runner is not None and runner.backend.capabilities.choices)
    if declared is not None:
        scorings = [(declared, False), (declared, True)] if can_score else [(declared, False)]
    else:
        scorings = [(None, False)]
        if can_score and scorable_labels(labels):
            scorings += [(tuple(labels), False), (tuple(labels), True)]
    return [Config(m, c, cal, seed_demos) for m in modes for c, cal in scorings]


def _per_label(
    demos: Sequence[Demo], order: Sequence[int], labels: Sequence[str], k: int, limit: int
) -> tuple[Demo, ...]:
    """The first `k` examples of each label in the search order, in rounds of one per label
    (LabeledFewShot, balanced), at most `limit`."""
    queues: dict[str, list[Demo]] = {label: [] for label in labels}
    for i in order:
        queues[demos[i].output].append(demos[i])
    rounds = [queues[label][r] for r in range(k) for label in labels if r < len(queues[label])]
    return tuple(rounds[:limit])


def _greedy(
    search: _Search,
    dev: Dataset,
    start: Trial,
    demos: Sequence[Demo],
    order: Sequence[int],
    labels: Sequence[str],
    max_examples: int,
) -> Trial | None:
    """Forward selection from the format trial's examples (one per label).

    A step tries a few examples per label (the least represented label first); the best is
    taken if it beats the current prompt. Examples tried and not taken go to the back of their
    queue, so the next step tries new ones; the search stops when every remaining example has
    been tried since the last one was taken and none helped, at `max_examples`, or when the
    budget is spent."""
    current = start
    chosen = list(current.config.demos or ())
    queues: dict[str, list[Demo]] = {label: [] for label in labels}
    for i in order:
        if demos[i] not in chosen:
            queues[demos[i].output].append(demos[i])
    failed: set[Demo] = set()  # tried since the last example was taken
    while len(chosen) < max_examples and search.left() > 0:
        counts = {label: sum(d.output == label for d in chosen) for label in labels}
        candidates: list[Demo] = []
        for label in sorted(labels, key=lambda name: (counts[name], labels.index(name))):
            candidates += [d for d in queues[label] if d not in failed][:PER_LABEL]
        if not candidates:
            break
        step_best: Trial | None = None
        for demo in candidates:
            found = search.trial(replace(current.config, demos=(*chosen, demo)), dev)
            if found is None:
                break
            if step_best is None or found.dev.beats(step_best.dev):
                step_best = found
        for demo in candidates:  # tried: to the back of their queue
            queue = queues[demo.output]
            queue.remove(demo)
            queue.append(demo)
        if step_best is None or not step_best.dev.beats(current.dev):
            failed.update(candidates)
            continue
        current = step_best
        added = (current.config.demos or ())[-1]
        chosen.append(added)
        queues[added.output].remove(added)
        failed.clear()
    return current


def _random(
    search: _Search,
    dev: Dataset,
    start: Trial,
    demos: Sequence[Demo],
    rng: random.Random,
    max_examples: int,
) -> Trial | None:
    """Random subsets of random size in random order, as many as the budget allows."""
    best: Trial | None = start
    attempts = 0
    while search.left() > 0 and attempts < search.budget * 4:
        attempts += 1  # a repeated subset costs nothing; do not loop for ever on few examples
        k = rng.randint(1, min(max_examples, len(demos)))
        picked = tuple(rng.sample(list(demos), k))
        found = search.trial(replace(start.config, demos=picked), dev)
        if found is not None and (best is None or found.dev.beats(best.dev)):
            best = found
    return best


# --- saving -----------------------------------------------------------------------------------


def save_winner(library: Library, report: ImproveReport) -> SaveResult | None:
    """The winner as the next version of the same prompt (NAME@latest is then it), with a note
    listing what changed and its dev/test scores; None when the original stayed best."""
    if not report.improved:
        return None
    return library.save(report.winner.file, note=report.note())


def report_dict(report: ImproveReport) -> dict[str, Any]:
    def outcome(o: Outcome) -> dict[str, Any]:
        return {
            "ref": o.ref,
            "config": o.config.describe(),
            "dev": _score_dict(o.dev),
            "test": _score_dict(o.test) if o.test is not None else None,
        }

    return {
        "prompt": report.prompt,
        "strategy": report.strategy,
        "seed": report.seed,
        "budget": report.budget,
        "max_examples": report.max_examples,
        "datasets": report.datasets,
        "labels": list(report.labels),
        "original": outcome(report.original),
        "winner": outcome(report.winner),
        "improved": report.improved,
        "changes": report.changes(),
        "cancelled": report.cancelled,
        "wall_s": report.wall_s,
        "trials": [
            {
                "number": t.number,
                "phase": t.phase,
                "config": t.config.describe(),
                "examples": [[d.input, d.output] for d in t.config.demos or ()],
                "ref": t.ref,
                "run_id": t.run_id,
                "dev": _score_dict(t.dev),
                "generated": t.generated,
                "seconds": t.seconds,
            }
            for t in report.trials
        ],
    }


def _score_dict(score: Score) -> dict[str, Any]:
    return {
        "accuracy": score.accuracy,
        "mean": score.mean,
        "rows": score.rows,
        "log_loss": score.log_loss,
    }
