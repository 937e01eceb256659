"""The generation sidebar (`ui.params_sidebar`): every parameter, its widget, range and step."""

from __future__ import annotations

from pathlib import Path

from conftest import app_test

PAGE = "pages/2_Playground.py"
REF = "zero-shot-sentiment-chat@1"


def test_the_generation_sidebar_offers_every_parameter_in_its_range(app_env: Path) -> None:
    """Each parameter's widget (a slider, or a whole number), label, range and step, in order."""
    at = app_test(PAGE).run()
    at.selectbox(key="play_prompt").set_value("zero-shot-sentiment-chat").run()
    assert not at.exception, at.exception
    sliders = {s.key: s for s in at.sidebar.slider}
    numbers = {n.key: n for n in at.sidebar.number_input}
    expected_sliders = {
        "temperature": ("Temperature", 0.0, 2.0, 0.05),
        "top_p": ("Top p", 0.05, 1.0, 0.05),
        "repetition_penalty": ("Repetition penalty", 0.5, 2.0, 0.05),
        "frequency_penalty": ("Frequency penalty", -2.0, 2.0, 0.1),
        "presence_penalty": ("Presence penalty", -2.0, 2.0, 0.1),
    }
    for name, (label, low, high, step) in expected_sliders.items():
        slider = sliders[f"param:{REF}:{name}"]
        assert (slider.label, slider.min, slider.max, slider.step) == (label, low, high, step)
        assert isinstance(slider.value, float)
    expected_numbers = {
        "top_k": ("Top k", 0, 1000),
        "max_new_tokens": ("Max new tokens", 1, 8192),
        "seed": ("Seed", 0, 2**31 - 1),
    }
    for name, (label, low, high) in expected_numbers.items():
        number = numbers[f"param:{REF}:{name}"]
        assert (number.label, number.min, number.max) == (label, low, high)
        assert isinstance(number.value, int)
    order = [w.key for w in at.sidebar if w.key and w.key.startswith(f"param:{REF}:")]
    assert order == [
        f"param:{REF}:{name}"
        for name in (
            "temperature",
            "top_p",
            "top_k",
            "max_new_tokens",
            "repetition_penalty",
            "frequency_penalty",
            "presence_penalty",
            "seed",
            "stop",
        )
    ]
