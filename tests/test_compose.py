"""Editing prompts through technique blocks (workbench.compose): starters, reading blocks out of
the built-ins, writing edits back, and the errors a person sees for blocks that cannot be saved."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from workbench import compose
from workbench.compose import (
    ComposeError,
    Constraints,
    Draft,
    Examples,
    Schema,
    SchemaError,
    SelfConsistencyBlock,
    SelfConsistencyError,
)
from workbench.errors import PromptFileError
from workbench.lint import lint
from workbench.techniques import TECHNIQUES
from workbench.templates import PromptFile, parse_prompt

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "workbench" / "prompts"
BUILTIN_NAMES = sorted(p.stem for p in PROMPTS_DIR.glob("*.prompty"))


def builtin(name: str) -> PromptFile:
    return parse_prompt((PROMPTS_DIR / f"{name}.prompty").read_text(encoding="utf-8"), name)


def messages(pf: PromptFile) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in pf.render().messages]


def as_form(draft: Draft) -> Draft:
    """The draft as the page gives it back untouched: form values as text, table rows with
    every column, tuples turned into whatever the widgets return."""
    values = {
        k: "" if v is None else v if not isinstance(v, int | float) else str(v)
        for k, v in draft.values.items()
    }
    examples = draft.examples
    if examples is not None:
        rows = tuple({c: str(r.get(c, "")) for c in examples.columns} for r in examples.rows)
        examples = replace(examples, rows=rows)
    return draft.edit(values=values, examples=examples)


# --- starters ---------------------------------------------------------------------------------

STARTER_BLOCKS: dict[str, Callable[[Draft], object]] = {
    "zero-shot": lambda d: d.block_inputs == set(),
    "few-shot": lambda d: d.examples is not None and d.examples.columns == ("input", "output"),
    "chain-of-thought": lambda d: d.trigger == compose.DEFAULT_TRIGGER,
    "role": lambda d: bool(d.persona),
    "json-format": lambda d: d.schema is not None and compose.parse_schema(d.schema.text),
    "constraints": lambda d: d.constraints is not None and len(d.constraints.items) == 2,
    "self-consistency": lambda d: (
        d.self_consistency is not None and d.self_consistency.samples == 5
    ),
}


def test_every_technique_has_a_starter() -> None:
    assert set(STARTER_BLOCKS) == set(TECHNIQUES)


@pytest.mark.parametrize("technique", list(TECHNIQUES))
def test_starter_renders_lints_clean_and_shows_its_block(technique: str) -> None:
    text = compose.new_prompt(technique, f"my-{technique}")
    pf = parse_prompt(text)
    assert pf.name == f"my-{technique}"
    assert pf.techniques == (technique,)
    assert pf.canonical_text() == text
    assert lint(pf) == []
    assert pf.render().messages
    for name, spec in pf.inputs.items():
        assert spec.has_default and spec.description, name
    draft = compose.read_draft(pf)
    assert STARTER_BLOCKS[technique](draft)
    assert compose.apply_draft(pf, as_form(draft)) == text


@pytest.mark.parametrize(
    ("technique", "name", "message"),
    [
        ("few-shots", "ok", "unknown technique 'few-shots'"),
        ("few-shot", "My Prompt", "name 'My Prompt' is not usable"),
        ("few-shot", "", "is not usable"),
    ],
)
def test_starter_refuses(technique: str, name: str, message: str) -> None:
    with pytest.raises(ComposeError, match=message):
        compose.new_prompt(technique, name)


def test_new_name_must_be_free() -> None:
    compose.check_name("fresh", ["taken"])
    with pytest.raises(ComposeError, match="already exists"):
        compose.check_name("taken", ["taken", "other"])


# --- reading blocks out of the built-ins -------------------------------------------------------

# name → (examples input and columns and row count, persona?, constraints input and count,
#         schema?, trigger, samples, sample-input names)
BUILTIN_BLOCKS: dict[str, dict[str, Any]] = {
    "chain-of-thought-math": {
        "examples": ("examples", ("question", "answer"), 1),
        "trigger": "Let's think step by step.",
        "values": ["question"],
    },
    "code-generation": {
        "persona": True,
        "constraints": ("requirements", 4),
        "values": ["function_name", "parameters", "description"],
    },
    "constraints-explain": {"constraints": ("constraints", 2), "values": ["question"]},
    "few-shot-sentiment": {"examples": ("examples", ("input", "output"), 3), "values": ["text"]},
    "few-shot-sentiment-chat": {
        "examples": ("examples", ("input", "output"), 3),
        "values": ["text"],
    },
    "few-shot-translation": {"examples": ("examples", ("input", "output"), 2), "values": ["text"]},
    "json-answer": {"schema": True, "values": ["question"]},
    "role-python-expert": {"persona": True, "values": ["task"]},
    "self-consistency-math": {"samples": (5, r"The answer is (-?\d+)"), "values": ["question"]},
    "summarize-3-sentences": {"values": ["text"]},
    "zero-shot-sentiment": {"values": ["text"]},
    "zero-shot-sentiment-chat": {"values": ["text"]},
    "zero-shot-translation": {"values": ["target_language", "text"]},
}


def test_block_table_covers_the_builtins() -> None:
    assert sorted(BUILTIN_BLOCKS) == BUILTIN_NAMES


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_blocks_read_from_builtin(name: str) -> None:
    want = BUILTIN_BLOCKS[name]
    pf = builtin(name)
    draft = compose.read_draft(pf)
    if "examples" in want:
        assert draft.examples is not None
        assert (draft.examples.input, draft.examples.columns, len(draft.examples.rows)) == (
            want["examples"]
        )
    else:
        assert draft.examples is None
    assert (draft.persona is not None) == want.get("persona", False)
    if "constraints" in want:
        assert draft.constraints is not None
        assert (draft.constraints.input, len(draft.constraints.items)) == want["constraints"]
    else:
        assert draft.constraints is None
    assert (draft.schema is not None) == want.get("schema", False)
    assert draft.trigger == want.get("trigger")
    sc = draft.self_consistency
    assert (None if sc is None else (sc.samples, sc.answer_pattern)) == want.get("samples")
    assert sorted(draft.values) == sorted(want["values"])
    assert (draft.name, draft.description, draft.mode, draft.techniques, draft.body) == (
        pf.name,
        pf.description,
        pf.mode,
        pf.techniques,
        pf.body,
    )


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_unchanged_blocks_give_identical_canonical_text(name: str) -> None:
    pf = builtin(name)
    draft = compose.read_draft(pf)
    assert compose.apply_draft(pf, draft) == pf.canonical_text()
    assert compose.apply_draft(pf, as_form(draft)) == pf.canonical_text()
    assert compose.changes(pf, compose.build(pf, as_form(draft))) == ""


# --- editing blocks ----------------------------------------------------------------------------


def add_example(d: Draft) -> Draft:
    assert d.examples is not None
    row = {"input": "Goodbye", "output": "Au revoir"}
    return d.edit(examples=replace(d.examples, rows=(*d.examples.rows, row, {"input": ""})))


def edit_first_example(d: Draft) -> Draft:
    assert d.examples is not None
    first = {**d.examples.rows[0], "output": "Salut"}
    return d.edit(examples=replace(d.examples, rows=(first, *d.examples.rows[1:])))


def add_rule(d: Draft) -> Draft:
    assert d.constraints is not None
    items = (*d.constraints.items, "End with a question.", "  ")
    return d.edit(constraints=Constraints(d.constraints.input, items))


def edit_schema(d: Draft) -> Draft:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    return d.edit(schema=Schema(json.dumps(schema, indent=1)))


EDITS: list[tuple[str, Callable[[Draft], Draft], Callable[[PromptFile], object]]] = [
    (
        "few-shot-translation",
        add_example,
        lambda pf: (
            ("assistant", "Au revoir") in messages(pf)
            and pf.inputs["examples"].default[-1] == {"input": "Goodbye", "output": "Au revoir"}
            and len(pf.inputs["examples"].default) == 3
        ),
    ),
    (
        "few-shot-translation",
        edit_first_example,
        lambda pf: (
            ("assistant", "Salut") in messages(pf) and ("assistant", "Bonjour") not in messages(pf)
        ),
    ),
    (
        "few-shot-sentiment",
        lambda d: d.edit(examples=Examples("examples", ("input", "output"), ())),
        lambda pf: (
            pf.inputs["examples"].default == []
            and compose.read_draft(pf).examples == Examples("examples", ("input", "output"), ())
        ),
    ),
    (
        "role-python-expert",
        lambda d: d.edit(persona="You are a terse Rust expert."),
        lambda pf: messages(pf)[0] == ("system", "You are a terse Rust expert."),
    ),
    (
        "constraints-explain",
        add_rule,
        lambda pf: (
            pf.inputs["constraints"].default[-1] == "End with a question."
            and len(pf.inputs["constraints"].default) == 3
            and "- End with a question." in messages(pf)[-1][1]
        ),
    ),
    (
        "json-answer",
        edit_schema,
        lambda pf: (
            json.loads(pf.inputs["schema"].default)["properties"] == {"city": {"type": "string"}}
            and '"city"' in messages(pf)[-1][1]
        ),
    ),
    (
        "self-consistency-math",
        lambda d: d.edit(self_consistency=SelfConsistencyBlock(3, r"Answer: (\d+)")),
        lambda pf: (pf.metadata["samples"], pf.metadata["answer_pattern"]) == (3, r"Answer: (\d+)"),
    ),
    (
        "self-consistency-math",
        lambda d: d.edit(self_consistency=None),
        lambda pf: "samples" not in pf.metadata and pf.techniques == ("chain-of-thought",),
    ),
    (
        "role-python-expert",
        lambda d: d.edit(self_consistency=SelfConsistencyBlock(4, r"def (\w+)")),
        lambda pf: pf.metadata["samples"] == 4 and pf.techniques == ("role", "self-consistency"),
    ),
    (
        "chain-of-thought-math",
        lambda d: d.edit(trigger="Think it through."),
        lambda pf: messages(pf)[-1][1].endswith("Think it through."),
    ),
    (
        "chain-of-thought-math",
        lambda d: d.edit(trigger=None),
        lambda pf: (
            "trigger" not in pf.inputs
            and "{{ trigger }}" not in pf.body
            and not messages(pf)[-1][1].endswith("step by step.")
        ),
    ),
    (
        "zero-shot-sentiment-chat",
        lambda d: d.edit(trigger="Let's think step by step."),
        lambda pf: (
            pf.body.endswith("{{ trigger }}\n")
            and pf.techniques == ("zero-shot", "chain-of-thought")
            and messages(pf)[-1][1].endswith("Sentiment:\nLet's think step by step.")
        ),
    ),
    (
        "zero-shot-sentiment-chat",
        lambda d: d.edit(persona="You are a careful annotator."),
        lambda pf: (
            messages(pf)[0] == ("system", "You are a careful annotator.")
            and "role" in pf.techniques
        ),
    ),
    (
        "few-shot-translation",
        lambda d: d.edit(persona="You are a translator."),
        lambda pf: messages(pf)[0][1].startswith("You are a translator.\nTranslate the English"),
    ),
    (
        "role-python-expert",
        lambda d: d.edit(persona=None),
        lambda pf: [r for r, _ in messages(pf)] == ["user"] and "persona" not in pf.inputs,
    ),
    (
        "zero-shot-translation",
        lambda d: d.edit(values={**d.values, "target_language": "German"}),
        lambda pf: (
            pf.inputs["target_language"].default == "German" and "German" in messages(pf)[0][1]
        ),
    ),
    (
        "zero-shot-translation",
        lambda d: d.edit(
            body=d.body.replace("{{ text }}'", "{{ text }}' ({{ tone }})"),
            values={**d.values, "tone": "formal"},
        ),
        lambda pf: pf.inputs["tone"].default == "formal" and "(formal)" in messages(pf)[0][1],
    ),
    (
        "zero-shot-translation",
        lambda d: d.edit(body="user:\nTranslate to French: '{{ text }}'\n"),
        lambda pf: list(pf.inputs) == ["text"],
    ),
    (
        "zero-shot-sentiment",
        lambda d: d.edit(description="New words.", techniques=("zero-shot", "constraints")),
        lambda pf: pf.description == "New words." and pf.techniques == ("zero-shot", "constraints"),
    ),
]


@pytest.mark.parametrize(
    ("name", "edit", "check"), EDITS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(EDITS)]
)
def test_edit_round_trips(
    name: str, edit: Callable[[Draft], Draft], check: Callable[[PromptFile], object]
) -> None:
    pf = builtin(name)
    new = compose.build(pf, edit(compose.read_draft(pf)))
    assert check(new)
    assert new.canonical_text() != pf.canonical_text()
    assert "+" in compose.changes(pf, new)
    # read back and built again: nothing changes any more
    again = compose.read_draft(new)
    assert compose.apply_draft(new, again) == new.canonical_text()
    assert compose.apply_draft(new, as_form(again)) == new.canonical_text()
    assert [i for i in lint(new) if i.code != "unknown-technique"] == []


def test_object_schema_stays_an_object(prompt_text: Callable[..., str]) -> None:
    pf = parse_prompt(
        prompt_text(
            body="user:\n{{ text }}\n{{ schema | tojson }}\n",
            inputs={
                "text": {"default": "hi"},
                "schema": {"kind": "object", "default": {"type": "object"}},
            },
        )
    )
    draft = compose.read_draft(pf)
    assert draft.schema == Schema('{\n  "type": "object"\n}', as_object=True)
    assert compose.apply_draft(pf, draft) == pf.canonical_text()
    new = compose.build(pf, draft.edit(schema=Schema('{"type": "object", "title": "T"}', True)))
    assert new.inputs["schema"].default == {"type": "object", "title": "T"}


def test_list_form_inputs_are_edited_in_place(prompt_text: Callable[..., str]) -> None:
    pf = parse_prompt(
        prompt_text(
            body="system:\n{{ persona }}\nuser:\n{{ text }}\n",
            inputs=[{"name": "persona", "default": "Old."}, {"name": "text", "default": "hi"}],
        )
    )
    new = compose.build(pf, compose.read_draft(pf).edit(persona="New."))
    assert new.front["inputs"][0] == {"name": "persona", "default": "New."}
    assert messages(new)[0] == ("system", "New.")


def test_template_fields_and_variables() -> None:
    pf = builtin("chain-of-thought-math")
    assert compose.template_fields(pf, "examples") == ("question", "answer")
    assert compose.template_fields(pf, "question") == ()
    assert compose.template_variables(pf.body) == ["examples", "question", "trigger"]
    assert compose.template_variables("user:\n{{ broken") == []


# --- errors --------------------------------------------------------------------------------------

ERRORS: list[tuple[str, Callable[[Draft], Draft], type[Exception], str]] = [
    (
        "json-answer",
        lambda d: d.edit(schema=Schema('{"type": "object",\n "x": }')),
        SchemaError,
        r"not valid JSON: .* at line 2, column",
    ),
    (
        "json-answer",
        lambda d: d.edit(schema=Schema('["answer"]')),
        SchemaError,
        r"must be a JSON object",
    ),
    ("json-answer", lambda d: d.edit(schema=Schema("")), SchemaError, r"not valid JSON"),
    (
        "self-consistency-math",
        lambda d: d.edit(self_consistency=SelfConsistencyBlock(0, "(x)")),
        SelfConsistencyError,
        r"samples must be a whole number of at least 1 .*got 0",
    ),
    (
        "self-consistency-math",
        lambda d: d.edit(self_consistency=SelfConsistencyBlock(5, "The answer is (\\d+")),
        SelfConsistencyError,
        r"answer pattern is not a valid regular expression",
    ),
    (
        "chain-of-thought-math",
        lambda d: d.edit(trigger="  "),
        ComposeError,
        r"trigger line is empty",
    ),
    (
        "chain-of-thought-math",
        lambda d: d.edit(
            trigger=None, body=d.body.replace("{{ question }}", "{{ question }} {{ trigger }}")
        ),
        ComposeError,
        r"chain-of-thought is off but template line 10 still uses",
    ),
    (
        "zero-shot-translation",
        lambda d: d.edit(body="user:\nTranslate {{ text }\n"),
        PromptFileError,
        r"zero-shot-translation, line 25: template syntax error",
    ),
    ("zero-shot-translation", lambda d: d.edit(name="Bad Name"), ComposeError, r"not usable"),
]


@pytest.mark.parametrize(
    ("name", "edit", "error", "message"), ERRORS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)]
)
def test_bad_blocks_are_refused_with_a_clear_message(
    name: str, edit: Callable[[Draft], Draft], error: type[Exception], message: str
) -> None:
    pf = builtin(name)
    with pytest.raises(error, match=message):
        compose.build(pf, edit(compose.read_draft(pf)))


def test_missing_variable_is_reported_on_render(prompt_text: Callable[..., str]) -> None:
    pf = parse_prompt(prompt_text(inputs={"text": "an example, not a default"}))
    new = compose.build(pf, compose.read_draft(pf))
    with pytest.raises(Exception, match="missing variable: text"):
        new.render()
