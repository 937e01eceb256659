"""Trial versions: the variants an ablation or a search runs are kept out of the way."""

from __future__ import annotations

import pytest
from conftest import PromptText

from workbench.errors import WorkbenchError
from workbench.library import Library, trial_name
from workbench.templates import parse_prompt


def test_a_trial_is_a_runnable_version_hidden_from_the_list(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text(), "original")
    variant = parse_prompt(prompt_text(body="user:\nShorter: {{ text }}\n"))
    trial = library.save_trial(variant, of="demo", note="without the persona")
    assert trial.ref == "demo.trials@1"
    assert trial.note == "without the persona"
    assert trial.file.name == "demo.trials"
    assert library.get(trial.ref).content == trial.content
    assert [p.name for p in library.list_prompts()] == ["demo"]
    assert library.get("demo").number == 1  # demo@latest is still the original


def test_the_same_variant_again_is_the_same_trial(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text())
    a = parse_prompt(prompt_text(body="user:\nA {{ text }}\n"))
    b = parse_prompt(prompt_text(body="user:\nB {{ text }}\n"))
    first = library.save_trial(a, of="demo")
    library.save_trial(b, of="demo")
    again = library.save_trial(a, of="demo")
    assert (first.number, again.number) == (1, 1)
    assert len(library.versions("demo.trials")) == 2


def test_trials_of_a_prompt_that_does_not_exist_are_refused(
    library: Library, prompt_text: PromptText
) -> None:
    with pytest.raises(WorkbenchError, match="no prompt named 'nothing'"):
        library.save_trial(parse_prompt(prompt_text()), of="nothing")


def test_a_user_prompt_cannot_take_a_trials_name_nor_the_reverse(
    library: Library, prompt_text: PromptText
) -> None:
    library.save(prompt_text())
    library.save_trial(parse_prompt(prompt_text(body="user:\nA {{ text }}\n")), of="demo")
    with pytest.raises(WorkbenchError, match="holds the trials of 'demo'"):
        library.save(prompt_text(name="demo.trials"))
    library.save(prompt_text(name="other"))
    library.save(prompt_text(name="other.trials"))
    with pytest.raises(WorkbenchError, match=r"a prompt named 'other\.trials' exists already"):
        library.save_trial(parse_prompt(prompt_text(name="other")), of="other")


def test_a_name_too_long_for_its_trials_is_refused_with_the_limit() -> None:
    with pytest.raises(WorkbenchError, match="at most 100"):
        trial_name("x" * 95)


def test_exporting_the_library_leaves_trials_out(library: Library, prompt_text: PromptText) -> None:
    library.save(prompt_text())
    library.save_trial(parse_prompt(prompt_text(body="user:\nA {{ text }}\n")), of="demo")
    assert [v.ref for v in library.all_versions()] == ["demo@1"]
