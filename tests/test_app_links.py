""" "Compare with previous version": one link from Compose, Library and History that opens Compare
on the new and the previous version with the right rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from conftest import app_test

from workbench import testsets
from workbench.datasets import Dataset
from workbench.runner import Runner
from workbench.workspace import open_library

PROMPT = "zero-shot-sentiment-chat"


def _save_v2() -> None:
    lib = open_library()
    text = lib.get(PROMPT).file.canonical_text()
    assert lib.save(text.replace("Sentiment", "Feeling", 1), "v2").version.number == 2


def _page(path: str) -> Any:
    """A page opened from the app's entry point, as the browser opens it (links resolve)."""
    at = app_test("Home.py").run()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def _link(at: Any) -> tuple[str, dict[str, str]]:
    links = [p.proto for p in at.get("page_link") if p.proto.label.startswith("Compare v")]
    assert len(links) == 1, [p.proto.label for p in at.get("page_link")]
    return links[0].label, dict(parse_qsl(links[0].query_string))


def _open_compare(params: dict[str, str]) -> Any:
    at = app_test("pages/3_Compare.py")
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def test_compose_links_a_saved_version_to_compare_with_the_previous_one(app_env: Path) -> None:
    _save_v2()
    testsets.save_test_set(
        open_library().store, PROMPT, Dataset("x", ("text",), ({"text": "fine"},))
    )
    at = _page("pages/1_Compose.py")
    at.selectbox(key="compose_prompt").set_value(PROMPT).run()
    label, params = _link(at)
    assert label == "Compare v2 with v1"
    assert params == {"prompt": PROMPT, "v": "2", "base": "1"}
    # Compare opens on the two versions, with the prompt's stored test set.
    compare = _open_compare(params)
    assert compare.selectbox(key=f"cmp_v0:{PROMPT}").value == 1
    assert compare.selectbox(key=f"cmp_v1:{PROMPT}").value == 2
    assert compare.selectbox(key="cmp_testset").value == PROMPT
    # The address stays the link's, so the back button goes back to Compose.
    assert "testset" not in compare.query_params


def test_a_first_version_has_no_previous_to_compare_with(app_env: Path) -> None:
    at = _page("pages/1_Compose.py")
    at.selectbox(key="compose_prompt").set_value(PROMPT).run()
    assert not [p for p in at.get("page_link") if p.proto.label.startswith("Compare v")]


def test_library_links_the_latest_version(app_env: Path) -> None:
    _save_v2()
    at = _page("pages/5_Library.py")
    at.selectbox(key="library_prompt").set_value(PROMPT).run()
    assert _link(at) == ("Compare v2 with v1", {"prompt": PROMPT, "v": "2", "base": "1"})


def test_history_links_an_opened_run_with_its_rows(app_env: Path, tiny_backend: Any) -> None:
    _save_v2()
    lib = open_library()
    summary = Runner(lib, tiny_backend).run(
        [lib.get(f"{PROMPT}@2")],
        Dataset("reviews.csv", ("text",), ({"text": "good"}, {"text": "bad"})),
        overrides={"max_new_tokens": 2},
    )
    at = _page("pages/4_History.py")
    label, params = _link(at)
    assert label == "Compare v2 with v1"
    assert params == {"prompt": PROMPT, "v": "2", "base": "1", "run": str(summary.run.id)}
    compare = _open_compare(params)
    assert compare.radio(key="cmp_source").value == "Rows of an earlier run"
    assert compare.selectbox(key="cmp_source_run").value == summary.run.id
    captions = [c.value for c in compare.caption]
    assert any("2 rows from reviews" in c for c in captions)
