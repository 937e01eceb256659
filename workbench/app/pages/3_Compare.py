"""Compare: outputs side by side per row — versions × models × parameters, or stored runs."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import streamlit as st

from workbench import compare, evaluate, jobs, ratings, scorers
from workbench.app import charts, state, ui
from workbench.compare import ColumnSpec, Comparison
from workbench.errors import WorkbenchError
from workbench.params import GenerationParams, parse_param_pairs
from workbench.runner import Runner
from workbench.runs import list_runs

ROWS_PER_PAGE = 10

ui.page("Compare", "Outputs side by side: prompt versions, models and parameters on the same rows.")
lib = ui.load_library()
choice = ui.model_sidebar()

mode = st.radio(
    "Compare",
    ["Run columns", "Stored runs"],
    horizontal=True,
    key="cmp_mode",
    help="Run columns generates what is not stored yet; stored runs generate nothing.",
)


def column_inputs(count: int) -> tuple[list[ColumnSpec], list[str]]:
    """The columns as typed, and a line per column whose parameters cannot be used (each is
    also shown under its column): such a comparison is refused before anything runs."""
    specs: list[ColumnSpec] = []
    problems: list[str] = []
    first_prompt = st.session_state.get("cmp_prompt_0", st.session_state.get("compose_prompt"))
    for i, col in enumerate(st.columns(count)):
        with col:
            st.markdown(f"**Column {i + 1}**" + (" (baseline)" if i == 0 else ""))
            version = ui.version_picker(
                lib, f"cmp_prompt_{i}", default=first_prompt, versions_back=i
            )
            if version is None:
                st.stop()
            assert version is not None
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
                GenerationParams.build(version.file.options, overrides)
            except WorkbenchError as exc:
                st.error(ui.escape_markdown(exc))
                problems.append(f"column {i + 1}: {exc}")
                continue
            specs.append(ColumnSpec(version.ref, model or choice.spec, overrides, choice.dtype))
    return specs, problems


def start_comparison(specs: list[ColumnSpec], rows: list[dict[str, object]]) -> jobs.Job:
    compare.check_columns(lib, specs, rows)  # every mistake before any model loads
    backends = {
        spec.model: state.backend(dataclasses.replace(choice, spec=spec.model)) for spec in specs
    }

    def work(job: jobs.Job) -> Comparison:
        return compare.run_columns(
            lib,
            specs,
            rows,
            lambda spec: Runner(lib, backends[spec.model]),
            progress=lambda column, p: job.report(p),
            cancel=job.cancel,
            on_output=job.add_output,
        )

    return jobs.start_job(f"compare {len(specs)} columns × {len(rows)} rows", work)


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


if mode == "Run columns":
    count = int(st.number_input("Columns", 2, compare.MAX_COLUMNS, 2, key="cmp_count"))
    specs, problems = column_inputs(count)
    variables: list[str] = []
    defaults: dict[str, object] = {}
    for spec in specs:
        version = lib.get(spec.ref)
        for name in version.file.template_variables():
            if name not in variables:
                variables.append(name)
        for name, input_spec in version.file.inputs.items():
            if input_spec.has_default:
                defaults.setdefault(name, input_spec.default)
    st.markdown("**Inputs** — one row per comparison row; empty cells use the prompt's default.")
    with ui.guard("Reading the rows"):
        dataset = ui.rows_input(variables, defaults, key="cmp_rows")
        if dataset is not None:
            dataset = ui.map_columns(
                dataset, ui.text_variables(variables, defaults), key="cmp_rows"
            )
    rows = [{k: v for k, v in r.items() if v != ""} for r in dataset.rows] if dataset else []
    use_cache = st.checkbox(
        "Reuse stored answers for identical requests", True, key="cmp_use_cache"
    )
    current = jobs.get_job(st.session_state.get("cmp_job"))
    busy = current is not None and not current.done
    if problems:
        st.warning("Fix the parameters marked above to run this comparison.")
    if st.button("Run comparison", type="primary", key="cmp_run", disabled=busy or bool(problems)):
        with ui.guard("Starting the comparison"):
            st.session_state["cmp_expected"] = len(specs) * len(rows)
            st.session_state.pop("cmp_result", None)
            st.session_state["cmp_job"] = start_comparison(specs, rows).id
    ui.watch_job("cmp_job", "cmp_cancel", watch)
else:
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


def rating_editor(comparison: Comparison) -> None:
    """One table row per shown output: 👍/👎, stars and a comment, saved on demand."""
    current = ratings.ratings(lib.store, comparison.output_ids)
    records = []
    for r, row in enumerate(comparison.cells):
        for c, output in enumerate(row):
            if output is None:
                continue
            rating = current.get(output.id)
            records.append(
                {
                    "output": output.id,
                    "row": r + 1,
                    "column": comparison.columns[c].label,
                    "verdict": rating.thumbs if rating else "",
                    "stars": rating.stars if rating else None,
                    "comment": rating.comment if rating else "",
                }
            )
    frame = pd.DataFrame(records)
    edited = st.data_editor(
        frame,
        hide_index=True,
        width="stretch",
        disabled=["output", "row", "column"],
        column_config={
            "verdict": st.column_config.SelectboxColumn("verdict", options=["", "👍", "👎"]),
            "stars": st.column_config.NumberColumn("stars", min_value=1, max_value=5, step=1),
            "comment": st.column_config.TextColumn("comment", max_chars=ratings.MAX_COMMENT),
        },
        key=f"cmp_ratings:{','.join(str(i) for i in comparison.output_ids)}",
    )
    if st.button("Save ratings", key="cmp_save_ratings"):
        with ui.guard("Saving ratings"):
            saved = 0
            for before, after in zip(records, edited.to_dict("records"), strict=True):
                new = (after["verdict"] or "", after["stars"], after["comment"] or "")
                old = (before["verdict"], before["stars"], before["comment"])
                stars = None if pd.isna(new[1]) else int(new[1])
                if (new[0], stars, new[2]) == (old[0], old[1], old[2]):
                    continue
                ratings.rate(
                    lib.store,
                    int(after["output"]),
                    verdict={"👍": 1, "👎": -1}.get(new[0]),
                    stars=stars,
                    comment=str(new[2]),
                )
                saved += 1
            st.success(f"Saved {saved} rating{'s' if saved != 1 else ''}.")


ASSERTION_HELP = (
    "One assertion per line: shorthand such as `icontains:positive`, `rouge-l>=0.5`, "
    "`exact-match` (against the row's `expected` column), `not-contains:sorry`, `is-json`, or "
    'a JSON object such as `{"type": "regex", "value": "^(Positive|Negative)"}`. Assertions '
    "written in each column's prompt file (metadata.assert) are used too."
)


def score_panel(comparison: Comparison) -> None:
    """Assertions typed here (plus those in the prompt files) scored on every output, stored."""
    with st.expander("Score the outputs", expanded=True):
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


def score_columns(totals: list[compare.ColumnScores]) -> dict[str, list[object]]:
    """Stats-table columns from the stored scores: pass rate, mean score, each metric's mean."""
    if not any(t.scored for t in totals):
        return {}
    out: dict[str, list[object]] = {
        "scored": [t.scored for t in totals],
        "pass rate": [t.pass_rate for t in totals],
        "mean score": [t.mean_score for t in totals],
    }
    for metric in compare.score_metrics(totals):
        found = [t.metric(metric) for t in totals]
        out[f"{metric} (mean)"] = [m.mean if m else None for m in found]
    return out


def show_comparison(comparison: Comparison) -> None:
    st.divider()
    labels = [c.label for c in comparison.columns]
    score_panel(comparison)
    scores = evaluate.stored_scores(lib.store, comparison.output_ids)
    totals = compare.column_scores(comparison, scores)
    extra = score_columns(totals)
    baseline = st.selectbox(
        "Baseline column (diffs and agreement are against it)",
        range(len(labels)),
        format_func=labels.__getitem__,
        key="cmp_baseline",
    )
    stats = compare.column_stats(
        comparison, baseline, ratings.ratings(lib.store, comparison.output_ids)
    )
    table = pd.DataFrame(
        [
            {
                "column": s.label,
                "outputs": s.outputs,
                "errors": s.errors,
                "mean latency (s)": s.mean_latency_s,
                "tokens/s": s.tokens_per_s,
                "mean tokens": s.mean_completion_tokens,
                "agreement with baseline": s.agreement,
                "liked": s.thumbs_up,
                "disliked": s.thumbs_down,
                "stars": s.mean_stars,
            }
            for s in stats
        ]
    )
    for name, values in extra.items():
        table[name] = values
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config=ui.share_columns(
            *(
                n
                for n in ("agreement with baseline", "pass rate", "mean score")
                if n in table.columns
            )
        ),
    )
    charts_tab, rows_tab, ratings_tab = st.tabs(["Charts", "Rows side by side", "Ratings"])
    with charts_tab:
        left, middle, right = st.columns(3)
        left.plotly_chart(charts.latency_chart(comparison), key="cmp_chart_latency")
        middle.plotly_chart(charts.throughput_chart(stats), key="cmp_chart_tps")
        right.plotly_chart(
            charts.agreement_chart(stats, labels[baseline]), key="cmp_chart_agreement"
        )
        if extra:
            left, middle, right = st.columns(3)
            left.plotly_chart(charts.pass_rate_chart(totals), key="cmp_chart_pass_rate")
            middle.plotly_chart(charts.metric_chart(comparison, scores), key="cmp_chart_metrics")
            right.plotly_chart(
                charts.score_latency_chart(comparison, scores), key="cmp_chart_score_latency"
            )
    with rows_tab:
        diff_on = st.toggle("Highlight words that differ from the baseline", True, key="cmp_diff")
        pages = max(1, -(-len(comparison.rows) // ROWS_PER_PAGE))
        page = (
            int(st.number_input(f"Page (of {pages})", 1, pages, 1, key="cmp_page"))
            if pages > 1
            else 1
        )
        agree = compare.row_agreement(comparison)
        for r in range((page - 1) * ROWS_PER_PAGE, min(len(comparison.rows), page * ROWS_PER_PAGE)):
            share = f" · {agree[r]:.0%} of columns agree" if agree[r] is not None else ""
            st.markdown(f"**Row {r + 1}**{share}")
            st.code(
                json.dumps(comparison.rows[r], ensure_ascii=False), language="json", wrap_lines=True
            )
            base_output = comparison.cells[r][baseline]
            for c, col in enumerate(st.columns(len(labels))):
                output = comparison.cells[r][c]
                with col:
                    st.caption(ui.escape_markdown(labels[c]))  # model ids, parameters
                    if output is None:
                        st.info("no output for this row")
                        continue
                    if output.error:
                        st.error(ui.escape_markdown(output.error))
                    if diff_on and c != baseline and base_output is not None:
                        st.html(
                            compare.diff_html(
                                compare.word_diff(base_output.text or "", output.text or "")
                            )
                        )
                    else:
                        ui.show_text(output.text)
                    st.caption(
                        ui.escape_markdown(
                            f"{output.completion_tokens} tokens · {output.latency_s or 0:.2f} s · "
                            f"{output.finish_reason}" + (" · cached" if output.cached else "")
                        )
                    )
                    if scores.get(output.id):
                        # st.text: plain text, so nothing quoted from the output is interpreted
                        st.text(compare.score_badges(scores[output.id]))
    with ratings_tab:
        rating_editor(comparison)
    st.download_button(
        "Download the comparison (CSV)",
        compare.comparison_csv(comparison),
        file_name="comparison.csv",
        mime="text/csv",
        key="cmp_download",
    )


result = st.session_state.get("cmp_result")
if result is not None:
    with ui.guard("Showing the comparison"):
        show_comparison(result)
