"""Technique ablation variants: the prompt with one technique block changed at a time.

"Does the persona help?" is answered by running the prompt without it on the same rows. Each
variant here is the original prompt file with exactly one block edited through a compose
`Draft` (so the edit is the one the Compose page would make, and the rest of the file stays
byte-for-byte the same), or the original file with one run option changed (calibrating its
answer choices). Which variants a prompt has follows from the blocks it has:

- each block removed in turn: examples (emptied, i.e. 0-shot), persona, constraints (emptied),
  chain-of-thought trigger, JSON schema (emptied to `{}`: compose keeps the schema input, and the
  instruction text around it is the prompt's own wording, not a block);
- the other mode (chat ↔ completion): the 135M default model's results hinge on it;
- k-shot for k in {1, 3} below the number of examples (the first k, in order; 0 is "without
  examples", all is the original);
- self-consistency with 1 sample (the block removed) and 5 samples, where the prompt has an
  answer pattern to vote on;
- answer choices: with and without contextual calibration where the prompt declares
  `metadata.choices`; where it declares none but its examples are short labels that the prompt
  says it classifies into (`compose.suggested_choices`), the same two with those choices added.

A variant that cannot be built or rendered is kept as a failed variant with its error, so one
bad block never hides the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from jinja2 import TemplateError

from .choices import ChoicesError, declared_calibration, declared_choices
from .compose import (
    Constraints,
    Draft,
    Examples,
    Schema,
    SelfConsistencyBlock,
    build,
    read_draft,
    suggested_choices,
    with_calibration,
)
from .errors import WorkbenchError
from .lint import lint
from .techniques import SelfConsistency
from .templates import PromptFile

ORIGINAL = "original"
K_SHOTS = (1, 3)  # with 0 ("without examples") and all (the original): k ∈ {0, 1, 3, all}
VOTE_SAMPLES = 5
EMPTY_SCHEMA = "{}"


@dataclass(frozen=True)
class Variant:
    """One variant: what it is (`key` a stable slug, `label` for people, `change` one line),
    the prompt file to store as a trial (how it runs — samples, scored choices, calibration —
    is declared in the file, so a saved variant runs as it did here). `error` set: it could not
    be built, `file` is None. `lint` lists warnings the variant has and the original has not
    (a completion prompt's role lines after a mode switch, say): shown, not refused, since
    they are what the switch means."""

    key: str
    label: str
    change: str
    file: PromptFile | None
    error: str | None = None
    lint: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def samples(self) -> int:
        """Samples drawn per row: the file's self-consistency samples (a vote), else 1."""
        block = SelfConsistency.from_metadata(self.file.metadata) if self.file else None
        return block.samples if block is not None and block.samples > 1 else 1


@dataclass(frozen=True)
class VariantSet:
    """The variants (the original first) and notes on which kinds are possible and why not."""

    variants: tuple[Variant, ...]
    notes: tuple[str, ...]

    @property
    def original(self) -> Variant:
        return self.variants[0]


def make_variants(pf: PromptFile, sample: Mapping[str, Any] | None = None) -> VariantSet:
    """Every variant of `pf`; each is rendered with `sample` (a dataset row; default values
    otherwise) and linted before it is returned, so a variant that fails does so here."""
    draft = read_draft(pf)
    base_lint = {str(issue) for issue in lint(pf) if issue.severity == "warning"}
    notes: list[str] = []
    out = [Variant(ORIGINAL, "original", "nothing changed", pf, None)]

    def add(key: str, label: str, change: str, edit: Callable[[Draft], Draft]) -> None:
        out.append(_built(pf, draft, key, label, change, edit, sample, base_lint))

    if draft.examples is not None and draft.examples.rows:
        examples = draft.examples
        n = len(examples.rows)
        add(
            "no-examples",
            "without examples (0-shot)",
            f"examples block emptied ({n} → 0 examples)",
            lambda d: d.edit(examples=replace(examples, rows=())),
        )
    if draft.persona is not None:
        add("no-persona", "without persona", "persona removed", lambda d: d.edit(persona=None))
    if draft.constraints is not None and draft.constraints.items:
        constraints = draft.constraints
        add(
            "no-constraints",
            "without constraints",
            f"constraints emptied ({len(constraints.items)} rules → 0)",
            lambda d: d.edit(constraints=_no_rules(constraints)),
        )
    if draft.trigger is not None:
        add(
            "no-cot",
            "without chain-of-thought trigger",
            f"trigger line {draft.trigger!r} removed",
            lambda d: d.edit(trigger=None),
        )
    if draft.schema is not None and draft.schema.text.strip() != EMPTY_SCHEMA:
        schema = draft.schema
        add(
            "no-schema",
            "without JSON schema",
            "JSON schema emptied to {}",
            lambda d: d.edit(schema=Schema(EMPTY_SCHEMA, schema.as_object)),
        )
    other = "completion" if draft.mode == "chat" else "chat"
    add(
        f"mode-{other}",
        f"{other} mode",
        f"mode {draft.mode} → {other}",
        lambda d: d.edit(mode=other),
    )
    if draft.examples is not None and draft.examples.rows:
        examples = draft.examples
        n = len(examples.rows)
        for k in K_SHOTS:
            if k < n:
                add(
                    f"{k}-shot",
                    f"{k}-shot",
                    f"first {k} of {n} examples kept",
                    lambda d, k=k: d.edit(examples=_first(examples, k)),  # type: ignore[misc]
                )
    _self_consistency(draft, add, notes)
    out += _choices(pf, draft, add, notes)
    if all(v.key == ORIGINAL or v.key.startswith(("mode-", "choices")) for v in out):
        notes.insert(
            0,
            "no technique blocks to remove (examples, persona, constraints, chain-of-thought "
            "trigger, JSON schema, self-consistency): only the mode"
            + (" and answer-choices variants are" if _has_choices(out) else " variant is")
            + " possible",
        )
    return VariantSet(tuple(out), tuple(notes))


def _has_choices(variants: list[Variant]) -> bool:
    return any(v.key.startswith("choices") for v in variants)


def _no_rules(constraints: Constraints) -> Constraints:
    return replace(constraints, items=())


def _first(examples: Examples, k: int) -> Examples:
    return replace(examples, rows=examples.rows[:k])


Add = Callable[[str, str, str, Callable[[Draft], Draft]], None]


def _self_consistency(draft: Draft, add: Add, notes: list[str]) -> None:
    block = draft.self_consistency
    if block is None or not block.answer_pattern:
        notes.append(
            "self-consistency variants need a self-consistency block with an answer pattern "
            "to vote on; this prompt has none"
        )
        return
    if draft.choices is not None:
        notes.append("self-consistency variants skipped: answer choices are scored, not sampled")
        return
    if block.samples > 1:
        add(
            "sc-1",
            "self-consistency 1 sample",
            f"self-consistency removed ({block.samples} samples → 1)",
            lambda d: d.edit(self_consistency=None),
        )
    if block.samples != VOTE_SAMPLES:
        add(
            f"sc-{VOTE_SAMPLES}",
            f"self-consistency {VOTE_SAMPLES} samples",
            f"samples {block.samples} → {VOTE_SAMPLES}",
            lambda d: d.edit(
                self_consistency=SelfConsistencyBlock(VOTE_SAMPLES, block.answer_pattern)
            ),
        )


def _choices(pf: PromptFile, draft: Draft, add: Add, notes: list[str]) -> list[Variant]:
    """Answer-choices variants; returns those built directly as files (calibration is the
    file's `metadata.calibrate`, which the draft does not edit)."""
    if draft.choices is not None:
        try:
            declared_choices(pf.metadata)
        except ChoicesError as exc:
            notes.append(f"answer-choices variants skipped: {exc}")
            return []
        add(
            "choices-off",
            "generated (no answer choices)",
            "metadata.choices removed: the answer is generated",
            lambda d: d.edit(choices=None),
        )
        if declared_calibration(pf.metadata):
            return [
                Variant(
                    "choices-raw",
                    "choices, uncalibrated",
                    "metadata.calibrate removed: the most likely label, uncalibrated",
                    with_calibration(pf, False),
                )
            ]
        return [
            Variant(
                "choices-calibrated",
                "choices, calibrated",
                "metadata.calibrate: true — answer choices scored with contextual calibration",
                with_calibration(pf, True),
            )
        ]
    labels = suggested_choices(draft)
    if not labels:
        notes.append(
            "answer-choices variants need metadata.choices, or examples whose outputs are "
            "short labels the prompt says it classifies into; this prompt has neither"
        )
        return []
    if draft.self_consistency is not None and draft.self_consistency.samples > 1:
        notes.append("answer-choices variants skipped: the prompt samples and votes")
        return []
    said = ", ".join(labels)
    add(
        "choices",
        "choices scored",
        f"metadata.choices [{said}] added: the answer is the most likely label",
        lambda d: d.edit(choices=labels),
    )
    key, label = "choices-calibrated", "choices scored, calibrated"
    change = f"metadata.choices [{said}] added, calibrated (metadata.calibrate: true)"
    try:
        with_choices = build(pf, draft.edit(choices=labels))
    except WorkbenchError as exc:  # the plain "choices" variant above fails the same way
        return [Variant(key, label, change, None, error=str(exc))]
    return [Variant(key, label, change, with_calibration(with_choices, True))]


def _built(
    pf: PromptFile,
    draft: Draft,
    key: str,
    label: str,
    change: str,
    edit: Callable[[Draft], Draft],
    sample: Mapping[str, Any] | None,
    base_lint: set[str],
) -> Variant:
    """The variant built, rendered and linted; any problem makes it a failed variant."""
    try:
        built = build(pf, edit(draft))
        built.render(sample)
    except (WorkbenchError, TemplateError) as exc:
        return Variant(key, label, change, None, error=str(exc) or type(exc).__name__)
    warnings = tuple(
        str(issue)
        for issue in lint(built)
        if issue.severity == "warning" and str(issue) not in base_lint
    )
    return Variant(key, label, change, built, lint=warnings)
