"""Scores that use the probabilities of scored answer choices, not just the answer picked.

A prompt with answer choices stores, per row, the distribution it gives over the choices
(`output.choices`: `{"choices": [...], "logprobs": [...], "probs": [...], "calibrated": [...] |
null}`). Accuracy only says whether the top choice was right; these say how close the model came
and whether its confidence can be trusted. Every figure is computed for the raw distribution and,
when the run was calibrated, for the calibrated one, so the two can be read side by side.

Definitions, so numbers mean one thing:
- accuracy: share of rows whose most probable choice is the expected one (the first on a tie).
- log-loss: mean over rows of −ln p(expected), natural log; p is floored at `EPSILON` (1e-15) so
  a choice given probability 0 costs 34.5 nats, not infinity. 0 is perfect.
- Brier score: the multi-class one, mean over rows of Σ_k (p_k − y_k)², y the one-hot expected
  answer. 0 is perfect, 2 is the worst (all mass on one wrong choice).
- expected calibration error (ECE): rows binned by their top probability into `BINS` (10)
  equal-width bins [0, 0.1), [0.1, 0.2) … [0.9, 1.0]; Σ over bins of (rows in bin / rows) ×
  |accuracy in bin − mean top probability in bin|. The same bins give the reliability diagram.

Expected answers match choices after stripping spaces, ignoring case. A row whose expected answer
is missing or not among its choices, or that has no scored choices, is left out of the figures
and named in `problems` — one line each, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EPSILON = 1e-15  # floor on p(expected) in log-loss
BINS = 10  # equal-width bins on the top probability, for ECE and the reliability diagram
KINDS = ("raw", "calibrated")


@dataclass(frozen=True)
class ScoredChoices:
    """One output's scored choices, as stored (probabilities over the same choices, in order)."""

    choices: tuple[str, ...]
    probs: tuple[float, ...]
    calibrated: tuple[float, ...] | None = None

    @classmethod
    def from_json(cls, data: Any) -> ScoredChoices:
        """Read `output.choices`; ValueError says what is wrong with a malformed value."""
        if not isinstance(data, Mapping):
            raise ValueError("scored choices are not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError("scored choices without a list of choices")
        probs = _distribution(data.get("probs"), len(choices), "probs")
        raw_calibrated = data.get("calibrated")
        calibrated = (
            None
            if raw_calibrated is None
            else _distribution(raw_calibrated, len(choices), "calibrated")
        )
        return cls(tuple(str(c) for c in choices), probs, calibrated)

    def index(self, answer: str) -> int | None:
        """Where `answer` is among the choices (stripped, case ignored), or None."""
        wanted = answer.strip().casefold()
        return next((i for i, c in enumerate(self.choices) if c.strip().casefold() == wanted), None)


def _distribution(value: Any, size: int, name: str) -> tuple[float, ...]:
    """A probability per choice, as stored; rescaled to sum to 1 only when it is off by more
    than rounding (values kept exact, so a row's p(expected) is the stored number)."""
    if not isinstance(value, list) or len(value) != size:
        raise ValueError(f"{name} must hold one probability per choice ({size})")
    try:
        probs = [float(p) for p in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name} holds a value that is not a number") from None
    if any(not math.isfinite(p) or p < 0 for p in probs) or sum(probs) <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero")
    total = sum(probs)
    if abs(total - 1.0) <= 1e-6:
        return tuple(probs)
    return tuple(p / total for p in probs)


@dataclass(frozen=True)
class ChoiceRow:
    """What is scored for one row: its scored choices (None: the output has none) and the
    expected answer (None: the row has none)."""

    row_index: int
    scored: ScoredChoices | None
    expected: str | None
    problem: str | None = None  # why `scored` is None, when known (an error, a bad value)


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability diagram: rows whose top probability is in [lower, upper)
    (the last bin includes 1.0)."""

    lower: float
    upper: float
    count: int
    confidence: float | None  # mean top probability of the rows in the bin (None: empty)
    accuracy: float | None  # share of them whose top choice is the expected one


@dataclass(frozen=True)
class ProbabilityScores:
    """The figures for one distribution (raw or calibrated) over the rows that can be scored."""

    rows: int
    accuracy: float
    log_loss: float
    brier: float
    ece: float
    bins: tuple[ReliabilityBin, ...]


@dataclass(frozen=True)
class RowProbability:
    """The probability each distribution gave a row's expected answer (None: not scorable)."""

    row_index: int
    expected: str | None
    raw: float | None
    calibrated: float | None


@dataclass(frozen=True)
class ChoiceScores:
    """A version's probability scores: raw and (when calibrated) calibrated, per row, and one
    line per row left out."""

    raw: ProbabilityScores | None
    calibrated: ProbabilityScores | None
    rows: tuple[RowProbability, ...]
    problems: tuple[str, ...]

    def by_kind(self) -> list[tuple[str, ProbabilityScores]]:
        """(kind, scores) for the distributions there are, raw first."""
        found = [("raw", self.raw), ("calibrated", self.calibrated)]
        return [(kind, s) for kind, s in found if s is not None]

    def row(self, row_index: int) -> RowProbability | None:
        return next((r for r in self.rows if r.row_index == row_index), None)


def probability_scores(
    distributions: Sequence[Sequence[float]], targets: Sequence[int]
) -> ProbabilityScores:
    """Accuracy, log-loss, Brier score, ECE and reliability bins of distributions over choices
    against the index of the expected choice in each. At least one row."""
    if not distributions or len(distributions) != len(targets):
        raise ValueError("need one expected choice per distribution, and at least one")
    n = len(distributions)
    correct: list[bool] = []
    confidence: list[float] = []
    log_loss = brier = 0.0
    for probs, target in zip(distributions, targets, strict=True):
        top = max(range(len(probs)), key=lambda i: (probs[i], -i))  # first index on a tie
        correct.append(top == target)
        confidence.append(probs[top])
        log_loss -= math.log(max(probs[target], EPSILON))
        brier += sum((p - (1.0 if k == target else 0.0)) ** 2 for k, p in enumerate(probs))
    bins = reliability_bins(confidence, correct)
    ece = sum(
        b.count / n * abs(b.accuracy - b.confidence)
        for b in bins
        if b.accuracy is not None and b.confidence is not None
    )
    return ProbabilityScores(n, sum(correct) / n, log_loss / n, brier / n, ece, bins)


def reliability_bins(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = BINS
) -> tuple[ReliabilityBin, ...]:
    """Rows grouped by top probability into `bins` equal-width bins over [0, 1]."""
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, c in enumerate(confidence):
        members[min(int(c * bins), bins - 1)].append(i)
    out = []
    for b, found in enumerate(members):
        out.append(
            ReliabilityBin(
                b / bins,
                (b + 1) / bins,
                len(found),
                sum(confidence[i] for i in found) / len(found) if found else None,
                sum(correct[i] for i in found) / len(found) if found else None,
            )
        )
    return tuple(out)


def choice_scores(rows: Sequence[ChoiceRow]) -> ChoiceScores | None:
    """The probability scores of a version's rows; None when no row has scored choices (a
    generated run: nothing to say). Calibrated figures only when every scorable row has a
    calibrated distribution, so raw and calibrated are always over the same rows."""
    if all(r.scored is None for r in rows):
        return None
    problems: list[str] = []
    usable: list[tuple[ScoredChoices, int]] = []
    per_row: list[RowProbability] = []
    for r in rows:
        name = f"row {r.row_index + 1}"
        if r.scored is None:
            problems.append(f"{name}: no scored choices ({r.problem or 'none stored'})")
            per_row.append(RowProbability(r.row_index, r.expected, None, None))
            continue
        if r.expected is None or not r.expected.strip():
            problems.append(f"{name}: no expected answer to score against")
            per_row.append(RowProbability(r.row_index, r.expected, None, None))
            continue
        target = r.scored.index(r.expected)
        if target is None:
            problems.append(
                f"{name}: the expected answer {r.expected!r} is not among the choices "
                f"({', '.join(r.scored.choices)})"
            )
            per_row.append(RowProbability(r.row_index, r.expected, None, None))
            continue
        usable.append((r.scored, target))
        p_calibrated = r.scored.calibrated[target] if r.scored.calibrated is not None else None
        per_row.append(
            RowProbability(r.row_index, r.expected, r.scored.probs[target], p_calibrated)
        )
    if not usable:
        return ChoiceScores(None, None, tuple(per_row), tuple(problems))
    targets = [t for _, t in usable]
    raw = probability_scores([s.probs for s, _ in usable], targets)
    calibrated_dists = [s.calibrated for s, _ in usable]
    calibrated = None
    if all(d is not None for d in calibrated_dists):
        calibrated = probability_scores([d for d in calibrated_dists if d is not None], targets)
    elif any(d is not None for d in calibrated_dists):
        problems.append("calibrated figures left out: only some rows have calibrated choices")
    return ChoiceScores(raw, calibrated, tuple(per_row), tuple(problems))


def as_dict(scores: ProbabilityScores) -> dict[str, Any]:
    """JSON-friendly figures, with the definitions that make them comparable."""
    return {
        "rows": scores.rows,
        "accuracy": scores.accuracy,
        "log_loss": scores.log_loss,
        "brier": scores.brier,
        "ece": scores.ece,
        "reliability": [
            {
                "lower": b.lower,
                "upper": b.upper,
                "count": b.count,
                "confidence": b.confidence,
                "accuracy": b.accuracy,
            }
            for b in scores.bins
        ],
    }


DEFINITIONS = (
    f"log-loss in nats with p floored at {EPSILON:g}; Brier = mean Σ(p−y)² over the choices "
    f"(0–2); ECE over {BINS} equal-width bins of the top probability"
)
