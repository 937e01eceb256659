"""Compare: a grid you work in — rows of inputs, one column per (version, model, parameters).

The selection lives in the URL (`?prompt=<name>&v=<new>&base=<old>` plus `&testset=<name>` or
`&run=<id>`), so a link opens the same view. The grid's logic (what a row shows, pass/fail,
filters, the summary) is `workbench.grid`; this page draws it and saves ratings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from workbench import compare, divergence, evaluate, grid, jobs, ratings, scorers
from workbench.app import charts, constrain_panel, state, token_text, ui
from workbench.compare import AnswerCheck, ColumnSpec, Comparison, ConstraintFigures
from workbench.datasets import Dataset
from workbench.errors import WorkbenchError
from workbench.params import GenerationParams, parse_param_pairs
from workbench.runs import OutputRecord, list_runs
from workbench.testsets import list_test_sets

PER_PAGE = 20
MAX_INPUT_COLUMNS = 3  # variables beyond these share one column
RUN_COLUMNS, STORED_RUNS = "Run columns", "Stored runs"
TESTSET, RUN_ROWS, TYPED = "A test set", "Rows of an earlier run", "Type or upload rows"

# The grid's switches outlive a run in which the grid is not drawn (while a comparison runs).
GRID_KEYS = (
    "cmp_only_diff",
    "cmp_only_fail",
    "cmp_worse_first",
    "cmp_timing",
    "cmp_diff",
    "cmp_parts",
    "cmp_parts_column",
)
ROW_ORDER, EARLIEST, LATEST = "row order", "earliest first", "latest first"
PARTS_SORT: dict[str, grid.DivergenceSort | None] = {
    ROW_ORDER: None,
    EARLIEST: "earliest",
    LATEST: "latest",
}

ui.page("Compare", "Outputs side by side: prompt versions, models and parameters on the same rows.")
for kept in GRID_KEYS:
    if kept in st.session_state:
        st.session_state[kept] = st.session_state[kept]
lib = ui.load_library()
choice = ui.model_sidebar()
prompts = lib.list_prompts()
if not prompts:
    st.info("The library is empty: create a prompt on the Compose page or import one.")
    st.stop()
latest = {p.name: p.latest for p in prompts}


def version_key(i: int, prompt: str) -> str:
    return f"cmp_v{i}:{prompt}"


def use_source(selection: grid.Selection) -> None:
    """Point the rows picker at the selection's test set or run (nothing: typed rows)."""
    if selection.testset:
        st.session_state["cmp_source"] = TESTSET
        st.session_state["cmp_testset"] = selection.testset
    elif selection.run is not None:
        st.session_state["cmp_source"] = RUN_ROWS
        st.session_state["cmp_source_run"] = selection.run
    else:
        st.session_state["cmp_source"] = TYPED


def open_from_url() -> None:
    """Apply the address's selection when it is new to this session (a link was opened, or
    the browser went back). Coming back from another page, whose links drop the parameters,
    shows the last view. Either way the address is left as it came: Streamlit adds a browser
    history entry for every change of the parameters, and rewriting an address the person
    just went back to would keep the back button on this page; `write_url` writes only the
    person's own changes."""
    params = st.query_params.to_dict()
    if params == st.session_state.get("cmp_url"):
        return
    st.session_state["cmp_url"] = params
    st.session_state["cmp_hold"] = True
    if not params:
        params = st.session_state.get("cmp_view") or {}
    selection = grid.parse_selection(params)
    if selection.prompt is None:
        return
    if selection.prompt not in latest:
        st.warning(
            ui.escape_markdown(
                f"The link names a prompt {selection.prompt!r} that is not in the library."
            )
        )
        return
    name, top = selection.prompt, latest[selection.prompt]
    new = selection.new if selection.new is not None and selection.new <= top else top
    base = (
        selection.base if selection.base is not None and selection.base <= top else max(1, new - 1)
    )
    st.session_state["cmp_mode"] = RUN_COLUMNS
    st.session_state["cmp_prompt"] = name
    st.session_state[version_key(0, name)] = base
    st.session_state[version_key(1, name)] = new
    if selection.testset or selection.run is not None:
        use_source(selection)
    else:
        use_source(grid.suggest_source(lib.store, name))
    st.session_state["cmp_suggested"] = name


open_from_url()
mode = st.radio(
    "Compare",
    [RUN_COLUMNS, STORED_RUNS],
    horizontal=True,
    key="cmp_mode",
    help="Run columns generates what is not stored yet; stored runs generate nothing.",
)


def column_inputs(name: str, count: int) -> tuple[list[ColumnSpec], list[str]]:
    """The columns as chosen, and a line per column whose parameters cannot be used (each is
    also shown under its column): such a comparison is refused before anything runs."""
    specs: list[ColumnSpec] = []
    problems: list[str] = []
    numbers = list(range(latest[name], 0, -1))
    for i, col in enumerate(st.columns(count)):
        with col:
            key = version_key(i, name)
            if st.session_state.get(key) not in numbers:  # new, or a version that is gone
                new = latest[name]
                st.session_state[key] = max(1, new - 1) if i == 0 else new
            number = st.selectbox(
                f"Column {i + 1}" + (" (baseline)" if i == 0 else ""),
                numbers,
                format_func=lambda n: f"v{n}",
                key=key,
            )
            model = st.text_input("Model", value=choice.spec, key=f"cmp_model_{i}").strip()
            params_text = st.text_input(
                "Parameters",
                key=f"cmp_params_{i}",
                placeholder="temperature=0.7, max_new_tokens=64",
                help="What differs from the prompt's options: NAME=VALUE, comma-separated.",
            )
            pairs = [p.strip() for p in params_text.split(",") if p.strip()]
            try:
                overrides = parse_param_pairs(pairs)
                version = lib.get(f"{name}@{number}")
                GenerationParams.build(version.file.options, overrides)
            except WorkbenchError as exc:
                st.error(ui.escape_markdown(exc))
                problems.append(f"column {i + 1}: {exc}")
                continue
            if compare.CONSTRAIN not in overrides:  # typed constrain=… wins over the switch
                overrides |= constrain_panel.switch(
                    version, {}, model or choice.spec, f"cmp_constrain_{i}"
                )
            specs.append(
                ColumnSpec(f"{name}@{number}", model or choice.spec, overrides, choice.dtype)
            )
    return specs, problems


def pick_rows(name: str, specs: list[ColumnSpec]) -> Dataset | None:
    """The rows: a stored test set, an earlier run's rows, or rows typed or uploaded here."""
    if st.session_state.get("cmp_suggested") != name:  # a prompt picked here: its usual rows
        st.session_state["cmp_suggested"] = name
        use_source(grid.suggest_source(lib.store, name))
    source = st.radio("Rows", [TESTSET, RUN_ROWS, TYPED], horizontal=True, key="cmp_source")
    if source == TESTSET:
        names = [t.name for t in list_test_sets(lib.store)]
        chosen = st.session_state.get("cmp_testset")
        if chosen and chosen not in names:
            names.append(chosen)
        if not names:
            st.info("No test set is stored yet: add rows to one from the Playground or History.")
            return None
        ref = st.selectbox("Test set", names, key="cmp_testset")
        return grid.testset_rows(lib.store, ref)
    if source == RUN_ROWS:
        runs = {r.id: r for r in list_runs(lib.store, limit=200)}
        ids = list(runs)
        chosen_run = st.session_state.get("cmp_source_run")
        if isinstance(chosen_run, int) and chosen_run not in runs:
            ids.insert(0, chosen_run)
        if not ids:
            st.info("No run is stored yet.")
            return None
        run_id = st.selectbox(
            "Run",
            ids,
            format_func=lambda i: (
                f"run {i} · {runs[i].dataset or 'typed input'} · {', '.join(runs[i].versions)}"
                if i in runs
                else f"run {i}"
            ),
            key="cmp_source_run",
        )
        return grid.run_dataset(lib.store, run_id)
    variables: list[str] = []
    defaults: dict[str, object] = {}
    for spec in specs:
        version = lib.get(spec.ref)
        for var in version.file.template_variables():
            if var not in variables:
                variables.append(var)
        for var, input_spec in version.file.inputs.items():
            if input_spec.has_default:
                defaults.setdefault(var, input_spec.default)
    st.caption("One row per comparison row; empty cells use the prompt's default.")
    typed = ui.text_variables(variables, defaults)
    dataset = ui.rows_input([*typed, grid.EXPECTED], defaults, key="cmp_rows")
    if dataset is None:
        return None
    dataset = ui.map_columns(dataset, typed, key="cmp_rows")
    rows = tuple({k: v for k, v in r.items() if v != ""} for r in dataset.rows)
    return Dataset(dataset.name, dataset.columns, rows)


def side_by_side(
    specs: list[ColumnSpec], dataset: Dataset | None, problems: list[str]
) -> list[ColumnSpec]:
    """The columns to run: with "constrained and free side by side" (offered when a column
    decodes under its prompt's constraint), each such column and the same one free."""
    if not any(s.overrides.get(compare.CONSTRAIN) is True for s in specs):
        return specs
    if not st.checkbox(
        "Constrained and free side by side",
        key="cmp_vs_free",
        help="Adds the free run of each constrained column as its own column, with the "
        "constraint-valid and JSON-parse rates, pass rate, tokens, latency and cut answers "
        "of each: a constraint can fix the format and still hurt the answer.",
    ):
        return specs
    try:
        run_specs = compare.constrained_and_free(lib, specs, dataset.rows if dataset else [])
    except WorkbenchError as exc:
        st.error(ui.escape_markdown(exc))
        problems.append(str(exc))
        return specs
    st.caption(
        ui.escape_markdown(
            f"Runs {grid.plural(len(run_specs), 'column')}: "
            + "; ".join(f"{n}. {s.label}" for n, s in enumerate(run_specs, 1))
        )
    )
    return run_specs


def write_url(selection: grid.Selection) -> None:
    """Put the view in the address when the person changed it (see `open_from_url`)."""
    params = selection.params()
    if st.session_state.pop("cmp_hold", False):  # the view the address (or memory) opened
        st.session_state["cmp_view"] = params
        return
    if params == st.session_state.get("cmp_view"):
        return
    st.session_state["cmp_view"] = st.session_state["cmp_url"] = params
    st.query_params.from_dict(params)


def start_comparison(specs: list[ColumnSpec], dataset: Dataset) -> jobs.Job:
    compare.check_columns(lib, specs, dataset)  # every mistake before any model loads

    def work(job: jobs.Job) -> Comparison:  # the models load here: the page shows it running
        return compare.run_columns(
            lib,
            specs,
            dataset,
            lambda spec: state.runner(dataclasses.replace(choice, spec=spec.model)),
            progress=lambda column, p: job.report(p),
            cancel=job.cancel,
            on_output=job.add_output,
        )

    what = f"{grid.plural(len(specs), 'column')} × {grid.plural(len(dataset.rows), 'row')}"
    return jobs.start_job(f"compare {what}", work)


def watch(job: jobs.Job) -> None:
    expected = st.session_state.get("cmp_expected", 0)
    done = len(job.outputs_so_far())
    st.progress(min(1.0, done / expected) if expected else 0.0, text=f"{done}/{expected} outputs")
    if job.done:
        if job.error:
            st.error(
                ui.escape_markdown(
                    f"The comparison stopped: {job.error}. Outputs already finished are stored."
                )
            )
        elif job.result is not None:
            st.session_state["cmp_result"] = job.result
            if job.cancelled:
                st.warning("Cancelled: the columns finished so far are shown.")


if mode == RUN_COLUMNS:
    names = list(latest)
    if st.session_state.get("cmp_prompt") not in names:
        compose_prompt = st.session_state.get("compose_prompt")
        st.session_state["cmp_prompt"] = compose_prompt if compose_prompt in names else names[0]
    prompt = st.selectbox("Prompt", names, key="cmp_prompt")
    count = int(st.number_input("Columns", 2, compare.MAX_COLUMNS, 2, key="cmp_count"))
    specs, problems = column_inputs(prompt, count)
    dataset: Dataset | None = None
    fits = False
    with ui.guard("Reading the rows"):
        dataset = pick_rows(prompt, specs)
        if dataset is not None:
            st.caption(
                ui.escape_markdown(f"{grid.plural(len(dataset.rows), 'row')} from {dataset.name}")
            )
            compare.check_fit(lib, specs, dataset)  # a file that fits no variable: refused now
            fits = True
    source = st.session_state.get("cmp_source")
    versions = [int(s.ref.rsplit("@", 1)[1]) for s in specs]
    write_url(
        grid.Selection(
            prompt,
            versions[1] if len(versions) > 1 else None,
            versions[0] if versions else None,
            testset=st.session_state.get("cmp_testset") if source == TESTSET else None,
            run=st.session_state.get("cmp_source_run") if source == RUN_ROWS else None,
        )
    )
    use_cache = st.checkbox(
        "Reuse stored answers for identical requests", True, key="cmp_use_cache"
    )
    run_specs = side_by_side(specs, dataset, problems)
    if problems:
        st.warning("Fix the parameters marked above to run this comparison.")

    def start() -> jobs.Job:
        assert dataset is not None
        job = start_comparison(run_specs, dataset)
        st.session_state["cmp_expected"] = len(run_specs) * len(dataset.rows)
        st.session_state.pop("cmp_result", None)
        return job

    ui.run_button(  # the running state and Stop at once; disabled while the comparison runs
        "Run comparison",
        key="cmp_run",
        state_key="cmp_job",
        start=start,
        action="Starting the comparison",
        disabled=bool(problems) or not fits or dataset is None,
    )
    ui.watch_job("cmp_job", "cmp_cancel", watch)
else:
    st.session_state.pop("cmp_hold", None)  # the next change of columns is the person's
    runs = list_runs(lib.store, limit=200)
    if not runs:
        st.info("No stored runs yet: run something in the Playground or with Run columns.")
        st.stop()
    labels = {
        r.id: f"run {r.id} · {', '.join(r.versions)} · {r.model.rstrip('/').rsplit('/', 1)[-1]}"
        f" · {r.done}/{r.total} · {r.created_at:%Y-%m-%d %H:%M}"
        for r in runs
    }
    chosen = st.multiselect(
        "Runs", list(labels), format_func=labels.__getitem__, key="cmp_runs", max_selections=4
    )
    pairs = compare.stored_columns(lib.store, chosen) if chosen else []
    picked = st.multiselect(
        "Columns (run · version)",
        pairs,
        default=pairs[: compare.MAX_COLUMNS],
        format_func=lambda p: f"run {p[0]} · {p[1]}",
        key=f"cmp_pairs:{','.join(map(str, chosen))}",
        max_selections=compare.MAX_COLUMNS,
    )
    if st.button("Compare stored outputs", type="primary", key="cmp_stored", disabled=not picked):
        with ui.guard("Comparing stored runs"):
            st.session_state["cmp_result"] = compare.compare_runs(lib.store, picked)


# --- ratings: saved by the buttons' callbacks, before the page is drawn again ----------------
def save_rating(output_id: int, verdict: int | None, stars: int | None, comment: str) -> None:
    try:
        ratings.rate(lib.store, output_id, verdict=verdict, stars=stars, comment=comment)
    except WorkbenchError as exc:
        st.session_state["cmp_rating_problem"] = f"Saving the rating: {exc}"


def rate_verdict(output_id: int, verdict: int) -> None:
    old = ratings.ratings(lib.store, [output_id]).get(output_id)
    save_rating(output_id, verdict, old.stars if old else None, old.comment if old else "")


def rate_form(output_id: int) -> None:
    old = ratings.ratings(lib.store, [output_id]).get(output_id)
    stars = st.session_state.get(f"cmp_stars:{output_id}")
    comment = str(st.session_state.get(f"cmp_comment:{output_id}") or "")
    stars = stars if isinstance(stars, int) else None
    save_rating(output_id, old.verdict if old else None, stars, comment)
    st.session_state.pop("cmp_rating_open", None)


def open_rating(output_id: int) -> None:
    st.session_state["cmp_rating_open"] = output_id


def rating_controls(output: OutputRecord, rating: ratings.RatingRecord | None) -> None:
    """Good/bad in one click each; stars and a comment in a small form under the output,
    saved with one click. The form is drawn for one output at a time: text fields and radios
    cost Streamlit time in proportion to everything in the session, and a page of 80 forms
    took over a second to draw."""
    st.caption(f"Rating: {ui.escape_markdown(grid.verdict_label(rating))}")
    verdict = rating.verdict if rating else None
    buttons = st.container(horizontal=True, gap="small")  # wraps when the column is narrow
    for label, value in (("Good", 1), ("Bad", -1)):
        buttons.button(
            label,
            key=f"cmp_{label.lower()}:{output.id}",
            type="primary" if verdict == value else "secondary",
            on_click=rate_verdict,
            args=(output.id, value),
        )
    buttons.button("Stars…", key=f"cmp_more:{output.id}", on_click=open_rating, args=(output.id,))
    if st.session_state.get("cmp_rating_open") != output.id:
        return
    with st.form(f"cmp_rate:{output.id}"):
        st.radio(
            "Stars",
            ["none", 1, 2, 3, 4, 5],
            index=rating.stars if rating and rating.stars else 0,
            horizontal=True,
            key=f"cmp_stars:{output.id}",
        )
        st.text_input(
            "Comment",
            value=rating.comment if rating else "",
            max_chars=ratings.MAX_COMMENT,
            key=f"cmp_comment:{output.id}",
        )
        st.form_submit_button(
            "Save rating", key=f"cmp_rate_save:{output.id}", on_click=rate_form, args=(output.id,)
        )


ASSERTION_HELP = (
    "One assertion per line: shorthand such as `icontains:positive`, `rouge-l>=0.5`, "
    "`exact-match` (against the row's `expected` column), `not-contains:sorry`, `is-json`, or "
    'a JSON object such as `{"type": "regex", "value": "^(Positive|Negative)"}`. Assertions '
    "written in each column's prompt file (metadata.assert) are used too."
)


def score_panel(comparison: Comparison) -> None:
    """Assertions typed here (plus those in the prompt files) scored on every output, stored."""
    with st.expander("Score with assertions"):
        text = st.text_area(
            "Assertions",
            key="cmp_assertions",
            placeholder="icontains:positive\nrouge-l>=0.5\nnot-contains:sorry",
            help=ASSERTION_HELP,
        )
        if st.button("Score these outputs", key="cmp_score"):
            with ui.guard("Scoring"):
                checks = scorers.parse_assertion_lines(text)
                with st.spinner("Scoring…"):
                    result = compare.score_comparison(
                        lib,
                        comparison,
                        checks,
                        model_for=lambda spec: state.backend(
                            dataclasses.replace(choice, spec=spec)
                        ),
                    )
                st.success(
                    f"Scored {result.outputs} output{'s' if result.outputs != 1 else ''}: "
                    f"{result.passed} passed every assertion."
                )


def timing_line(output: OutputRecord) -> str:
    if output.cached:
        return f"cached (original {output.latency_s or 0:.2f} s, {output.completion_tokens} tokens)"
    return (
        f"{output.completion_tokens} tokens · {output.latency_s or 0:.2f} s · "
        f"{output.finish_reason}"
    )


def draw_cell(
    model: grid.GridModel,
    row: grid.GridRow,
    c: int,
    current: dict[int, ratings.RatingRecord],
    *,
    diff_on: bool,
    timing: bool,
    checks: dict[int, AnswerCheck],
) -> None:
    cell = row.cells[c]
    output = cell.output
    if output is None:
        st.caption("no output for this row")
        return
    if cell.passed is not None:
        st.markdown(":green-badge[pass]" if cell.passed else ":red-badge[fail]")
    parts = row.diverges[c] if c < len(row.diverges) else None
    if parts is not None:
        st.caption(f"diverges at token {parts}")
    base = row.cells[model.baseline].output
    if output.error:
        st.error(ui.escape_markdown(output.error))
    elif diff_on and c != model.baseline and base is not None and base.error is None:
        st.html(compare.diff_html(compare.word_diff(base.text or "", output.text or "")))
    else:
        ui.show_text(output.text)
    if cell.scores:
        st.text(compare.score_badges(cell.scores))  # plain text: nothing quoted is interpreted
    check = checks.get(output.id)
    if check is not None:  # what it decoded under; a cut answer is incomplete, never valid
        st.caption(ui.escape_markdown(check.line))
    if timing:
        st.caption(ui.escape_markdown(timing_line(output)))
    rating_controls(output, current.get(output.id))


def grid_model(comparison: Comparison, scores: dict[int, list[scorers.Score]]) -> grid.GridModel:
    """The grid's model, kept while the outputs and their stored scores stay the same."""
    key = grid.signature(comparison, scores)
    kept = st.session_state.get("cmp_grid")
    if kept is not None and kept[0] == key:
        return kept[1]  # type: ignore[no-any-return]
    model = grid.build_grid(comparison, 0, grid.column_checks(lib, comparison), scores)
    st.session_state["cmp_grid"] = (key, model)
    return model


def constraint_checks(
    comparison: Comparison,
) -> tuple[dict[int, AnswerCheck], list[ConstraintFigures]]:
    """Every answer against its prompt's declared constraint, and the figures per column;
    kept while the comparison's outputs stay the same (validating is per answer)."""
    key = (tuple(comparison.output_ids), tuple(c.ref for c in comparison.columns))
    kept = st.session_state.get("cmp_constraint")
    if kept is not None and kept[0] == key:
        return kept[1]  # type: ignore[no-any-return]
    checks = compare.check_answers(lib, comparison)
    found = (checks, compare.constraint_figures(comparison, checks))
    st.session_state["cmp_constraint"] = (key, found)
    return found


def show_constraint_table(
    figures: list[ConstraintFigures], summaries: list[grid.ColumnSummary]
) -> None:
    """Constrained and free side by side: the figures of every column in one table (plain
    text cells; labels carry names)."""
    st.markdown("**Output constraint per column**")
    st.dataframe(
        pd.DataFrame(grid.constraint_table(figures, summaries)), hide_index=True, width="stretch"
    )


def show_grid(comparison: Comparison) -> None:
    st.divider()
    score_panel(comparison)  # first: what it stores shows in this same run
    scores = evaluate.stored_scores(lib.store, comparison.output_ids)
    model = grid_model(comparison, scores)
    current = ratings.ratings(lib.store, comparison.output_ids)
    checks, figures = constraint_checks(comparison)
    summaries = grid.summarise(model, current)
    if any(f.decoding is not None for f in figures):
        show_constraint_table(figures, summaries)
    problem = st.session_state.pop("cmp_rating_problem", None)
    if problem:
        st.error(ui.escape_markdown(problem))
    filters = st.columns(5)
    only_diff = filters[0].toggle("Only rows that differ", key="cmp_only_diff")
    only_fail = filters[1].toggle(
        "Only failing rows",
        key="cmp_only_fail",
        disabled=not model.scored,
        help="Pass/fail comes from the rows' expected answers or the prompt's assertions.",
    )
    worse_first = filters[2].toggle("Got worse than baseline first", key="cmp_worse_first")
    timing = filters[3].toggle("Latency and tokens", key="cmp_timing")
    st.session_state.setdefault("cmp_diff", True)
    diff_on = filters[4].toggle("Word diff against the baseline", key="cmp_diff")
    parts, parts_column = parts_sort(model)
    if parts is not None:  # sorting needs every row's: read once for this comparison
        everything = range(len(model.rows))
        model = dataclasses.replace(
            model, rows=grid.with_divergence(model.rows, divergence_of(comparison, everything))
        )
    rows = grid.select_rows(
        model,
        only_differing=only_diff,
        only_failing=only_fail,
        worse_first=worse_first,
        parts=parts,
        parts_column=parts_column,
    )
    pages = grid.page_count(len(rows), PER_PAGE)
    page = 1
    if pages > 1:
        if st.session_state.get("cmp_page", 1) > pages:  # a filter left fewer pages
            st.session_state["cmp_page"] = pages
        page = int(st.number_input(f"Page (of {pages})", 1, pages, key="cmp_page"))
    st.caption(f"{grid.plural(len(rows), 'row')} of {len(model.rows)} · baseline: column 1")

    shown_vars = model.variables[:MAX_INPUT_COLUMNS]
    rest = model.variables[MAX_INPUT_COLUMNS:]
    inputs = len(shown_vars) + bool(rest) + model.has_expected
    widths = [1.0] * inputs + [2.0] * len(model.labels)
    header = st.columns(widths)
    titles = [
        *shown_vars,
        *(["other inputs"] if rest else []),
        *(["expected"] if model.has_expected else []),
    ]
    for col, title in zip(header, titles, strict=False):
        col.markdown(f"**{ui.escape_markdown(title)}**")
    for c, summary in enumerate(summaries):
        with header[inputs + c]:
            st.markdown(f"**{ui.escape_markdown(summary.label)}**")
            lines = grid.summary_lines(summary, baseline=c == model.baseline)
            for line in lines + grid.constraint_lines(figures[c]):
                st.caption(ui.escape_markdown(line))
    shown_rows = grid.page_of(rows, page, PER_PAGE)
    found = divergence_of(comparison, [r.index for r in shown_rows])
    for row in grid.with_divergence(shown_rows, found):
        with st.container(border=True):
            cols = st.columns(widths)
            k = 0
            for k, name in enumerate(shown_vars):
                with cols[k]:
                    if k == 0:
                        st.caption(f"row {row.index + 1}")
                    st.text(str(row.variables.get(name, "")))
            k = len(shown_vars)
            if rest:
                cols[k].text("\n".join(f"{n}: {row.variables.get(n, '')}" for n in rest))
                k += 1
            if model.has_expected:
                cols[k].text(row.expected if row.expected is not None else "")
            for c in range(len(model.labels)):
                with cols[inputs + c]:
                    draw_cell(model, row, c, current, diff_on=diff_on, timing=timing, checks=checks)
            if len(model.labels) > 1:
                row_detail(model, row)
    if st.toggle("Charts", key="cmp_charts"):
        show_charts(comparison, scores)
    st.download_button(
        "Download the comparison (CSV)",
        compare.comparison_csv(comparison),
        file_name="comparison.csv",
        mime="text/csv",
        key="cmp_download",
    )


def divergence_of(comparison: Comparison, rows: Sequence[int]) -> dict[int, tuple[int | None, ...]]:
    """Where each column's answer parts from the baseline's, for these rows; kept for the
    comparison, so a row is read once. Reading every row's token probabilities costs about
    0.2 s per 4,000 outputs: the grid reads the rows it shows, and all of them only to sort."""
    key = tuple(comparison.output_ids)
    kept = st.session_state.get("cmp_parts_found")
    if kept is None or kept[0] != key:
        kept = (key, {})
    found: dict[int, tuple[int | None, ...]] = kept[1]
    missing = [i for i in rows if i not in found]
    if missing:
        found.update(
            grid.divergence_column(lib.store, comparison, 0, token_text.decoder_for, missing)
        )
    st.session_state["cmp_parts_found"] = kept
    return found


def parts_sort(model: grid.GridModel) -> tuple[grid.DivergenceSort | None, int | None]:
    """The sort by "diverges at token N": the order, and which column (None: any, earliest)."""
    if len(model.labels) < 2:
        return None, None
    left, right = st.columns(2)
    order = left.selectbox(
        "Sort by where answers part from the baseline",
        list(PARTS_SORT),
        key="cmp_parts",
        help="The token at which each column's answer first differs from the baseline's, "
        "read from the stored token probabilities. Rows where it does not part come last.",
    )
    compared = [c for c in range(len(model.labels)) if c != model.baseline]
    column: int | None = compared[0]
    if len(compared) > 1:
        column = right.selectbox(
            "Of column",
            [None, *compared],
            format_func=lambda c: "any (earliest)" if c is None else f"column {c + 1}",
            key="cmp_parts_column",
        )
    return PARTS_SORT[order], column


def toggle_detail(index: int) -> None:
    opened = st.session_state.get("cmp_detail")
    st.session_state["cmp_detail"] = None if opened == index else index


def row_detail(model: grid.GridModel, row: grid.GridRow) -> None:
    """Where each column's answer parts from the baseline's, for one row at a time: finding
    it needs the tokenizer for the texts (never the model), so it is drawn when asked."""
    opened = st.session_state.get("cmp_detail") == row.index
    st.button(
        "Hide where they part" if opened else "Where they part",
        key=f"cmp_parts_open:{row.index}",
        on_click=toggle_detail,
        args=(row.index,),
        help="The first token where each answer parts from the baseline's, the text before "
        "it, each side's alternatives there and the probability each gave the other's token.",
    )
    if not opened:
        return
    found = grid.row_divergences(lib.store, row, model.baseline, token_text.decoder_for)
    for c, d in enumerate(found):
        if c == model.baseline:
            continue
        label = ui.escape_markdown(f"Column {c + 1} ({model.labels[c]})")
        if d is None:
            st.markdown(f"**{label}**: nothing to compare (no answer, or an error)")
            continue
        st.markdown(f"**{label}**: {ui.escape_markdown(divergence.summary(d))}")
        for note in d.notes:
            st.caption(ui.escape_markdown(note))
        if d.kind == "same":
            continue
        if d.before is None:
            st.caption("The text before it is unknown: no tokenizer for these outputs.")
        else:
            st.caption("The text both share before they part:")
            ui.show_text(d.before, empty="(nothing: they part at the first token)")
        table = divergence.side_rows(d, ("baseline", f"column {c + 1}"))
        if table:
            st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")


def show_charts(comparison: Comparison, scores: dict[int, list[scorers.Score]]) -> None:
    labels = [c.label for c in comparison.columns]
    stats = compare.column_stats(comparison, 0, ratings.ratings(lib.store, comparison.output_ids))
    totals = compare.column_scores(comparison, scores)
    left, middle, right = st.columns(3)
    left.plotly_chart(charts.latency_chart(comparison), key="cmp_chart_latency")
    middle.plotly_chart(charts.throughput_chart(stats), key="cmp_chart_tps")
    right.plotly_chart(charts.agreement_chart(stats, labels[0]), key="cmp_chart_agreement")
    if any(t.scored for t in totals):
        left, middle, right = st.columns(3)
        left.plotly_chart(charts.pass_rate_chart(totals), key="cmp_chart_pass_rate")
        middle.plotly_chart(charts.metric_chart(comparison, scores), key="cmp_chart_metrics")
        right.plotly_chart(
            charts.score_latency_chart(comparison, scores), key="cmp_chart_score_latency"
        )


result = st.session_state.get("cmp_result")
if result is not None:
    with ui.guard("Showing the comparison"):
        show_grid(result)
