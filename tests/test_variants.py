"""Ablation variants: each renders, lints, and differs from the original only in its block."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from conftest import BUILTIN_PROMPTS_DIR, build_prompt_text

from workbench.compose import read_draft
from workbench.lint import lint
from workbench.templates import PromptFile, parse_prompt
from workbench.variants import ORIGINAL, make_variants

BUILTINS = sorted(BUILTIN_PROMPTS_DIR.glob("*.prompty"))

# Which Draft fields each kind of variant may change (the body only where compose removes a
# block's own `{{ … }}` line; techniques where compose drops the technique with its block).
ALLOWED = {
    "no-examples": {"examples"},
    "no-persona": {"persona", "body"},
    "no-constraints": {"constraints"},
    "no-cot": {"trigger", "body"},
    "no-schema": {"schema"},
    "mode-chat": {"mode"},
    "mode-completion": {"mode"},
    "1-shot": {"examples"},
    "3-shot": {"examples"},
    "sc-1": {"self_consistency", "techniques"},
    "sc-5": {"self_consistency"},
    "choices": {"choices"},
    "choices-off": {"choices"},
    "choices-calibrated": {"choices"},
    "choices-raw": set(),
}


def _load(path: Path) -> PromptFile:
    return parse_prompt(path.read_text(encoding="utf-8"), path.stem)


def _changed(a: PromptFile, b: PromptFile) -> set[str]:
    da, db = read_draft(a), read_draft(b)
    return {f.name for f in fields(da) if getattr(da, f.name) != getattr(db, f.name)}


def _prompt(body: str, **front: object) -> PromptFile:
    return parse_prompt(build_prompt_text("p", body, **front), "p")


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_every_builtin_variant_renders_and_changes_only_its_block(path: Path) -> None:
    original = _load(path)
    found = make_variants(original)
    assert found.original.key == ORIGINAL and found.original.file is original
    keys = [v.key for v in found.variants]
    assert len(keys) == len(set(keys)), keys
    assert len(found.variants) >= 2  # the other mode at least
    for variant in found.variants[1:]:
        assert not variant.failed, (variant.key, variant.error)
        assert variant.file is not None
        variant.file.render()
        assert variant.file.name == original.name
        assert variant.file.description == original.description
        assert _changed(original, variant.file) <= ALLOWED[variant.key], variant.key
        if variant.key == "choices-calibrated":
            assert variant.file.metadata["calibrate"] is True
        else:
            assert _changed(original, variant.file), variant.key  # not the original again
        if not variant.key.startswith("mode-"):  # a switched mode warns about its role lines
            assert variant.lint == ()
            assert [i for i in lint(variant.file) if i.severity == "warning"] == [
                i for i in lint(original) if i.severity == "warning"
            ], variant.key
        assert variant.label and variant.change and "\n" not in variant.change


def test_the_few_shot_sentiment_prompt() -> None:
    found = make_variants(_load(BUILTIN_PROMPTS_DIR / "few-shot-sentiment.prompty"))
    assert [v.key for v in found.variants] == [
        "original",
        "no-examples",
        "mode-chat",
        "1-shot",  # 3 examples: 3-shot is "all", the original
        "choices",
        "choices-calibrated",
    ]
    labels = {v.key: v.label for v in found.variants}
    assert labels["no-examples"] == "without examples (0-shot)"
    assert labels["1-shot"] == "1-shot"
    one = next(v for v in found.variants if v.key == "1-shot")
    assert one.file is not None
    assert one.file.inputs["examples"].default == [{"input": "Great!", "output": "Positive"}]
    choices = next(v for v in found.variants if v.key == "choices")
    assert choices.file is not None
    assert choices.file.metadata["choices"] == ["Positive", "Negative", "Neutral"]


def test_k_shot_for_more_examples_keeps_the_first_k() -> None:
    rows = [{"input": f"t{i}", "output": "Positive" if i % 2 else "Negative"} for i in range(5)]
    body = (
        "Classify the sentiment.\n{% for e in examples %}{{ e.input }}: {{ e.output }}\n"
        "{% endfor %}{{ text }}:"
    )
    pf = _prompt(
        body,
        model={"apiType": "completion"},
        inputs={
            "text": {"kind": "string", "default": "x"},
            "examples": {"kind": "array", "default": rows},
        },
    )
    found = {v.key: v for v in make_variants(pf).variants}
    assert {"no-examples", "1-shot", "3-shot"} <= set(found)
    three = found["3-shot"].file
    assert three is not None and three.inputs["examples"].default == rows[:3]
    empty = found["no-examples"].file
    assert empty is not None and empty.inputs["examples"].default == []


def test_a_prompt_without_blocks_says_which_variants_are_possible() -> None:
    found = make_variants(_load(BUILTIN_PROMPTS_DIR / "zero-shot-sentiment.prompty"))
    assert [v.key for v in found.variants] == ["original", "mode-chat"]
    assert "only the mode variant is possible" in found.notes[0]
    assert any("answer-choices variants need metadata.choices" in n for n in found.notes)
    assert any("self-consistency" in n for n in found.notes)


def test_declared_choices_give_generated_and_calibrated_variants() -> None:
    pf = _prompt(
        "user:\nSentiment of: {{ text }}\n",
        metadata={"choices": ["Positive", "Negative"]},
    )
    found = make_variants(pf)
    variants = {v.key: v for v in found.variants}
    assert set(variants) == {"original", "mode-completion", "choices-off", "choices-calibrated"}
    off = variants["choices-off"].file
    assert off is not None and "choices" not in off.metadata
    calibrated = variants["choices-calibrated"].file
    assert calibrated is not None and calibrated.metadata["calibrate"] is True
    assert calibrated.body == pf.body and calibrated.metadata["choices"] == pf.metadata["choices"]
    assert "only the mode and answer-choices variants are possible" in found.notes[0]


def test_a_prompt_declaring_calibration_gets_an_uncalibrated_variant() -> None:
    pf = _prompt(
        "user:\nSentiment of: {{ text }}\n",
        metadata={"choices": ["Positive", "Negative"], "calibrate": True},
    )
    variants = {v.key: v for v in make_variants(pf).variants}
    assert "choices-calibrated" not in variants
    raw = variants["choices-raw"].file
    assert raw is not None and "calibrate" not in raw.metadata and raw.body == pf.body
    off = variants["choices-off"].file  # without choices, calibration goes too
    assert off is not None and not {"choices", "calibrate"} & set(off.metadata)


@pytest.mark.parametrize(("samples", "keys"), [(3, ["sc-1", "sc-5"]), (5, ["sc-1"])])
def test_self_consistency_with_one_and_five_samples(samples: int, keys: list[str]) -> None:
    pf = _prompt(
        "user:\n{{ text }}\nEnd with: The answer is N.\n",
        model={"options": {"temperature": 0.7}},
        metadata={
            "technique": "self-consistency",
            "samples": samples,
            "answer_pattern": r"The answer is (\d+)",
        },
    )
    variants = {v.key: v for v in make_variants(pf).variants}
    assert [k for k in variants if k.startswith("sc-")] == keys
    one = variants["sc-1"].file
    assert one is not None and "samples" not in one.metadata
    assert variants["sc-1"].samples == 1 and variants["original"].samples == samples
    if "sc-5" in variants:
        five = variants["sc-5"].file
        assert five is not None and five.metadata["samples"] == 5
        assert variants["sc-5"].samples == 5


def test_a_variant_that_cannot_be_built_fails_alone() -> None:
    # The trigger is used inside a sentence as well as on its own line: removing the block
    # would leave `{{ trigger }}` undefined, which compose refuses with the line.
    pf = _prompt(
        "user:\n{{ text }}\nRemember: {{ trigger }}\n{{ trigger }}\n",
        metadata={"technique": "chain-of-thought"},
        inputs={
            "text": {"kind": "string", "default": "2+2?"},
            "trigger": {"kind": "string", "default": "Think step by step."},
        },
    )
    found = {v.key: v for v in make_variants(pf).variants}
    failed = found["no-cot"]
    assert failed.failed and failed.file is None
    assert failed.error is not None and "{{ trigger }}" in failed.error
    assert not found["mode-completion"].failed


def test_variants_render_with_a_dataset_row() -> None:
    pf = _prompt("user:\n{{ text }}\n", inputs={"text": {"kind": "string"}})
    found = make_variants(pf, {"text": "a row", "expected": "x"})
    assert all(not v.failed for v in found.variants)


def test_the_yaml_of_an_unchanged_part_is_untouched() -> None:
    original = _load(BUILTIN_PROMPTS_DIR / "code-generation.prompty")
    for variant in make_variants(original).variants[1:]:
        assert variant.file is not None
        a = yaml.safe_load(original.canonical_text().split("---")[1])
        b = yaml.safe_load(variant.file.canonical_text().split("---")[1])
        assert a["model"]["options"] == b["model"]["options"]
        assert a["description"] == b["description"]
