"""Every built-in renders to the same messages in Prompty itself as in the workbench."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prompty
import pytest

from workbench.templates import PromptFile, parse_prompt_bytes

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "workbench" / "prompts"
PROMPT_PATHS = sorted(PROMPTS_DIR.glob("*.prompty"))


def load(path: Path) -> PromptFile:
    return parse_prompt_bytes(path.read_bytes(), path.name)


def defaults(pf: PromptFile) -> dict[str, Any]:
    return {name: spec.default for name, spec in pf.inputs.items() if spec.has_default}


def ours(pf: PromptFile, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in pf.render(inputs).messages]


def theirs(path: Path, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    agent = prompty.load(str(path))
    return [(m.role, m.text) for m in prompty.prepare(agent, dict(inputs))]


def test_builtins_found() -> None:
    assert PROMPT_PATHS


@pytest.mark.parametrize("path", PROMPT_PATHS, ids=lambda p: p.stem)
def test_same_messages_with_defaults(path: Path) -> None:
    pf = load(path)
    inputs = defaults(pf)
    assert theirs(path, inputs) == ours(pf, inputs)


@pytest.mark.parametrize("path", PROMPT_PATHS, ids=lambda p: p.stem)
def test_same_messages_with_other_values(path: Path) -> None:
    pf = load(path)
    inputs = defaults(pf)
    first_string = next(n for n, s in pf.inputs.items() if s.kind == "string")
    inputs[first_string] = "Something else entirely,\nover two lines."
    for name, spec in pf.inputs.items():
        if spec.kind == "array" and inputs[name]:
            inputs[name] = inputs[name][:1]  # fewer examples or rules
    expected = ours(pf, inputs)
    assert theirs(path, inputs) == expected
    assert any("Something else entirely," in content for _, content in expected)


@pytest.mark.parametrize("path", PROMPT_PATHS, ids=lambda p: p.stem)
def test_prompty_reads_the_front_matter(path: Path) -> None:
    pf = load(path)
    agent = prompty.load(str(path))
    assert agent.name == pf.name
    assert agent.model is not None
    assert agent.model.api_type == pf.mode
    assert {p.name for p in agent.inputs or []} == set(pf.inputs)
    assert {p.name: p.default for p in agent.inputs or []} == defaults(pf)
