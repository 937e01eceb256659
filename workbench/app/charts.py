"""Plotly figures for comparisons. Plain plotly, so the same figures can be saved from a script.

Plotly reads a few HTML tags in every label (`<b>`, `<a href>`, `<span style>`), so text the
workbench did not write — column labels carry model ids a server reported, metric names come
from prompt files — goes through `plain` first: its `<`, `>` and `&` show as themselves.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from workbench.compare import ColumnScores, ColumnStats, Comparison
from workbench.scorers import Score, weighted_pass
from workbench.stability import StabilityReport

LAYOUT = {"height": 320, "margin": {"l": 40, "r": 10, "t": 40, "b": 40}, "showlegend": False}


def plain(text: str) -> str:
    """`text` as plotly shows it literally (entities for the characters its labels read)."""
    return html.escape(text, quote=False)


def short_names(labels: Sequence[str]) -> list[str]:
    """Axis names that fit under a chart: the column's number and its version reference
    (the full label, with model and parameters, is in the hover text)."""
    return [f"{i + 1}. {plain(label.split(' · ')[0])}" for i, label in enumerate(labels)]


def latency_chart(comparison: Comparison) -> go.Figure:
    """Latency of every output, per column (a box each), so outliers stay visible."""
    fig = go.Figure()
    names = short_names([c.label for c in comparison.columns])
    for c, column in enumerate(comparison.columns):
        values = [o.latency_s for o in comparison.column(c) if o.latency_s is not None]
        fig.add_trace(
            go.Box(
                y=values,
                name=names[c],
                boxpoints="all",
                jitter=0.3,
                hovertext=plain(column.label),
            )
        )
    fig.update_layout(title="Latency per output (s)", yaxis_title="seconds", **LAYOUT)
    return fig


def throughput_chart(stats: Sequence[ColumnStats]) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=short_names([s.label for s in stats]),
            y=[s.tokens_per_s or 0 for s in stats],
            hovertext=[plain(s.label) for s in stats],
            text=[f"{s.tokens_per_s:.1f}" if s.tokens_per_s else "–" for s in stats],
        )
    )
    fig.update_layout(title="Generated tokens per second", yaxis_title="tokens/s", **LAYOUT)
    return fig


def agreement_chart(stats: Sequence[ColumnStats], baseline_label: str) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=short_names([s.label for s in stats]),
            y=[100 * (s.agreement or 0) for s in stats],
            hovertext=[plain(s.label) for s in stats],
            text=[f"{100 * s.agreement:.0f}%" if s.agreement is not None else "–" for s in stats],
        )
    )
    fig.update_layout(
        title=f"Answers agreeing with {plain(baseline_label.split(' · ')[0])}",
        yaxis_title="% of rows",
        yaxis_range=[0, 105],
        **LAYOUT,
    )
    return fig


def pass_rate_chart(totals: Sequence[ColumnScores]) -> go.Figure:
    """Per column, the share of scored outputs that pass every assertion."""
    fig = go.Figure(
        go.Bar(
            x=short_names([t.label for t in totals]),
            y=[100 * (t.pass_rate or 0) for t in totals],
            hovertext=[plain(f"{t.label}: {t.passed}/{t.scored} outputs") for t in totals],
            text=[f"{100 * t.pass_rate:.0f}%" if t.pass_rate is not None else "–" for t in totals],
        )
    )
    fig.update_layout(
        title="Outputs passing every assertion",
        yaxis_title="% of scored outputs",
        yaxis_range=[0, 105],
        **LAYOUT,
    )
    return fig


def metric_chart(
    comparison: Comparison, scores_by_output: Mapping[int, Sequence[Score]]
) -> go.Figure:
    """Each metric's values, a box per column, grouped by metric (scores with no value, such as
    an output that could not be scored, are left out)."""
    fig = go.Figure()
    names = short_names([c.label for c in comparison.columns])
    for c, column in enumerate(comparison.columns):
        metrics: list[str] = []
        values: list[float] = []
        for output in comparison.column(c):
            for score in scores_by_output.get(output.id, ()):
                if score.value is not None:
                    metrics.append(plain(score.metric))
                    values.append(score.value)
        fig.add_trace(
            go.Box(
                x=metrics,
                y=values,
                name=names[c],
                boxpoints="all",
                jitter=0.3,
                hovertext=plain(column.label),
            )
        )
    fig.update_layout(title="Score values per metric", yaxis_title="value", **LAYOUT)
    fig.update_layout(boxmode="group", showlegend=True)
    return fig


def score_latency_chart(
    comparison: Comparison, scores_by_output: Mapping[int, Sequence[Score]]
) -> go.Figure:
    """Every scored output: its latency against the weighted share of assertions it passed."""
    fig = go.Figure()
    names = short_names([c.label for c in comparison.columns])
    for c, column in enumerate(comparison.columns):
        points = [
            (o.latency_s, weighted_pass(scores_by_output[o.id])[0], r + 1)
            for r, row in enumerate(comparison.cells)
            if (o := row[c]) is not None and o.latency_s is not None and scores_by_output.get(o.id)
        ]
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="markers",
                name=names[c],
                hovertext=[plain(f"{column.label} · row {p[2]}") for p in points],
            )
        )
    fig.update_layout(
        title="Score against latency",
        xaxis_title="seconds",
        yaxis_title="share of assertions passed",
        yaxis_range=[-0.05, 1.05],
        yaxis_tickformat=".0%",
        **LAYOUT,
    )
    fig.update_layout(showlegend=True)
    return fig


def stability_chart(report: StabilityReport) -> go.Figure:
    """Per version, every row's agreement with its majority answer (a box of points), so a
    version that is stable on average but wavers on a few rows shows those rows."""
    fig = go.Figure()
    names = short_names([v.ref for v in report.versions])
    for name, version in zip(names, report.versions, strict=True):
        fig.add_trace(
            go.Box(
                y=[100 * r.agreement for r in version.rows],
                name=name,
                boxpoints="all",
                jitter=0.3,
                boxmean=True,
                hovertext=[plain(f"{version.ref} · row {r.row_index + 1}") for r in version.rows],
            )
        )
    fig.update_layout(
        title=f"Agreement with the majority answer over {report.seeds} seeds",
        yaxis_title="% of seeds, per row",
        yaxis_range=[0, 105],
        **LAYOUT,
    )
    return fig


def vote_gain_chart(report: StabilityReport) -> go.Figure:
    """Per version, accuracy of one sample against accuracy of the majority vote."""
    versions = [v for v in report.versions if v.majority_accuracy is not None]
    names = short_names([v.ref for v in versions])
    fig = go.Figure()
    for label, values in (
        ("one sample", [v.sample_accuracy or 0.0 for v in versions]),
        ("majority vote", [v.majority_accuracy or 0.0 for v in versions]),
    ):
        fig.add_trace(
            go.Bar(
                x=names,
                y=[100 * x for x in values],
                name=label,
                text=[f"{100 * x:.0f}%" for x in values],
            )
        )
    fig.update_layout(
        title="Accuracy against the expected answer", yaxis_title="% of rows", yaxis_range=[0, 105]
    )
    fig.update_layout(**{**LAYOUT, "showlegend": True}, barmode="group")
    return fig
