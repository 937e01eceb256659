"""Playground token view and branching: each token shaded with its alternatives, model text
shown as text (never markup), and "continue from here with this token" storing a branch that is
shown beside its parent."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from conftest import app_test, shown
from sqlalchemy import update

from workbench import jobs
from workbench.app.token_panel import BRANCH_JOB, TYPED
from workbench.branching import branches
from workbench.logprobs import TokenLogprobs
from workbench.runner import Runner
from workbench.runs import OutputRecord, list_runs, run_outputs, token_logprobs
from workbench.store import Output
from workbench.workspace import open_library

PAGE = "pages/2_Playground.py"
PROMPT = "zero-shot-sentiment"
SINGLE = "play_single_job"
UNTRUSTED = "<b>bold</b> ![x](http://h/t.png)\n<script>alert(1)</script>"


class _TokenText(HTMLParser):
    """The text a browser shows in the token view, tooltips left out, and the tags it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self._tip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if self._tip or ("class", "wb-tip") in attrs:
            self._tip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._tip:
            self._tip -= 1

    def handle_data(self, data: str) -> None:
        if not self._tip:
            self.text.append(data)


def _token_view(body: str) -> _TokenText:
    start = body.index('<div class="wb-tokens">')
    parser = _TokenText()
    parser.feed(body[start : body.index('<div class="wb-legend">')])
    return parser


def _outputs() -> list[OutputRecord]:
    store = Runner(open_library()).store
    return [o for r in list_runs(store) for o in run_outputs(store, r.id)]


def _answer(max_new_tokens: int = 8) -> Any:
    at = app_test(PAGE).run()
    at.selectbox(key="play_prompt").set_value(PROMPT).run()
    at.text_area(key=f"play_var:{PROMPT}@1:text").set_value("the battery was fine").run()
    at.number_input(key=f"param:{PROMPT}@1:max_new_tokens").set_value(max_new_tokens).run()
    at.button(key="play_run").click().run()
    job = jobs.get_job(at.session_state[SINGLE])
    assert job is not None and job.wait(120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_answer_shows_each_token_shaded_with_its_alternatives(app_env: Path) -> None:
    at = _answer()
    [output] = _outputs()
    record = token_logprobs(open_library().store, [output.id])[output.id]
    [view] = at.get("html")
    body = view.value
    assert body.count('class="wb-tok"') == len(record) == output.completion_tokens
    assert body.count('class="wb-tip"') == len(record)
    assert "alternatives:" in body and "Probability of each token" in body
    assert "background: rgba(" in body
    table = at.dataframe[0].value
    assert list(table["position"]) == list(range(len(record)))
    assert list(table["id"]) == list(record.tokens)
    assert any("Token probabilities" in c.value for c in at.caption)


def test_untrusted_tokens_show_literally_as_text(app_env: Path, tiny_backend: Any) -> None:
    runner = Runner(open_library(), tiny_backend)  # not the page: no job to reopen instead
    [output] = runner.run([runner.library.get(PROMPT)], [{"text": "x"}]).outputs
    ids = tiny_backend.token_ids(UNTRUSTED)
    record = TokenLogprobs(
        tuple(ids),
        tuple(-0.5 for _ in ids),
        tuple((t, ids[(i + 1) % len(ids)]) for i, t in enumerate(ids)),  # untrusted choices
        tuple((-0.5, -1.5) for _ in ids),
        k=2,
    )
    with open_library().store.write() as s:
        s.execute(
            update(Output)
            .where(Output.id == output.id)
            .values(text=UNTRUSTED, token_logprobs=record.to_bytes(), cache_key="x")
        )
    at = app_test(PAGE)
    at.query_params["run"] = str(output.run_id)
    at.run()
    assert not at.exception, at.exception
    [view] = at.get("html")
    shown = _token_view(view.value)
    pieces = tiny_backend.token_pieces(ids)  # a token of spaces only shows them as ·
    marked = [p if p.strip(" ") else "·" * len(p) for p in pieces]
    assert "".join(shown.text) == "".join(marked).replace("\n", "↵\n")
    assert "".join(pieces) == UNTRUSTED
    assert set(shown.tags) == {"div", "span"}  # no <b>, <img>, <script>, <a>: the view's own
    assert "<b>" not in view.value and "<script>" not in view.value
    assert "&lt;" in view.value and "&gt;" in view.value
    assert UNTRUSTED in [c.value for c in at.code]
    # The branch form's choices are Markdown labels: the model's text in them is escaped.
    for position in range(len(ids)):
        at.selectbox(key=f"play_branch_pos:{output.id}").set_value(position).run()
        labels = at.radio(key=f"play_branch_token:{output.id}").options
        assert all(not re.search(r"(?<!\\)[<\[!(*_`]", label) for label in labels), labels


def test_continue_from_a_token_stores_a_branch_shown_beside_its_parent(app_env: Path) -> None:
    at = _answer()
    [parent] = _outputs()
    record = token_logprobs(open_library().store, [parent.id])[parent.id]
    at.selectbox(key=f"play_branch_pos:{parent.id}").set_value(2).run()
    forced = at.radio(key=f"play_branch_token:{parent.id}").value
    assert forced != record.tokens[2] and forced in record.top_ids[2]
    at.button(key=f"play_branch_run:{parent.id}").click().run()
    job = jobs.get_job(at.session_state[BRANCH_JOB])
    assert job is not None and job.wait(120)
    at.run()
    assert not at.exception, at.exception
    assert job.error is None, job.error

    branch = next(o for o in _outputs() if o.id != parent.id)
    found = branches(open_library(), [branch.id])[branch.id]
    assert (found.parent_output_id, found.point.position, found.point.token_id) == (
        parent.id,
        2,
        forced,
    )
    stored = token_logprobs(open_library().store, [branch.id])[branch.id]
    assert stored.tokens[:3] == (*record.tokens[:2], forced)
    bold = [m.value for m in at.markdown]
    assert f"**Parent: output {parent.id}**" in bold and f"**Branch: output {branch.id}**" in bold
    assert any(f"A branch of output {parent.id}" in i.value for i in at.info)
    views = [h.value for h in at.get("html")]
    assert len(views) == 3  # the answer, then the parent and the branch side by side
    framed = re.findall(r'class="wb-tok wb-forced"[^>]*data-position="(\d+)"', views[2])
    assert framed == ["2"]  # the chosen token is framed in the branch
    assert "wb-tok wb-forced" not in views[0] + views[1]


def test_a_typed_text_of_several_tokens_is_refused_with_the_reason(app_env: Path) -> None:
    at = _answer()
    [parent] = _outputs()
    at.radio(key=f"play_branch_token:{parent.id}").set_value(TYPED).run()
    at.text_input(key=f"play_branch_typed:{parent.id}").set_value("several words here").run()
    at.button(key=f"play_branch_run:{parent.id}").click().run()
    job = jobs.get_job(at.session_state[BRANCH_JOB])
    assert job is not None and job.wait(120)
    at.run()
    assert not at.exception, at.exception
    assert at.error and "exactly one token" in at.error[0].value
    assert len(_outputs()) == 1


def test_history_shows_that_an_output_is_a_branch(app_env: Path, tiny_backend: Any) -> None:
    from workbench.branching import branch_output

    runner = Runner(open_library(), tiny_backend)
    [parent] = runner.run([runner.library.get(PROMPT)], [{"text": "x"}]).outputs
    record = token_logprobs(runner.store, [parent.id])[parent.id]
    branch = branch_output(runner.library, tiny_backend, parent.id, 1, record.top_ids[1][1])
    at = app_test("pages/4_History.py")
    at.query_params["run"] = str(branch.run_id)
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert dict(zip(table["id"], table["branch of"], strict=True))[branch.id] == parent.id
    assert any(f"branch of output {parent.id} at token 1" in c.value for c in at.caption)


def test_a_dataset_run_shows_the_tokens_of_a_row_picked(app_env: Path) -> None:
    at = app_test(PAGE).run()
    at.selectbox(key="play_prompt").set_value(PROMPT).run()
    at.session_state[f"play_ds:{PROMPT}@1:rows"] = {
        "edited_rows": {0: {"text": "great"}},
        "added_rows": [{"text": "awful"}],
        "deleted_rows": [],
    }
    at.number_input(key=f"param:{PROMPT}@1:max_new_tokens").set_value(4).run()
    at.button(key="play_run_dataset").click().run()
    job = jobs.get_job(at.session_state["play_dataset_job"])
    assert job is not None and job.wait(120)
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="play_row_tokens").set_value(1).run()
    assert not at.exception, at.exception
    awful = next(o for o in _outputs() if o.variables["text"] == "awful")
    record = token_logprobs(open_library().store, [awful.id])[awful.id]
    [view] = at.get("html")
    assert view.value.count('class="wb-tok"') == len(record)
    assert awful.text in [c.value for c in at.code]


def test_an_output_of_another_model_says_which_model_its_tokens_need(
    app_env: Path, tiny_backend: Any
) -> None:
    runner = Runner(open_library(), tiny_backend)
    [output] = runner.run([runner.library.get(PROMPT)], [{"text": "x"}]).outputs
    with runner.store.write() as s:
        s.execute(update(Output).where(Output.id == output.id).values(model="other-model"))
    at = app_test(PAGE)
    at.query_params["run"] = str(output.run_id)
    at.run()
    assert not at.exception, at.exception
    assert not at.get("html")
    assert any("(other-model); choose it in the sidebar" in shown(c.value) for c in at.caption)
