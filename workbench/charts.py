"""Plotly figures for comparisons. Plain plotly, so the same figures can be saved from a script."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from .compare import ColumnStats, Comparison

LAYOUT = {"height": 320, "margin": {"l": 40, "r": 10, "t": 40, "b": 40}, "showlegend": False}


def short_names(labels: Sequence[str]) -> list[str]:
    """Axis names that fit under a chart: the column's number and its version reference
    (the full label, with model and parameters, is in the hover text)."""
    return [f"{i + 1}. {label.split(' · ')[0]}" for i, label in enumerate(labels)]


def latency_chart(comparison: Comparison) -> go.Figure:
    """Latency of every output, per column (a box each), so outliers stay visible."""
    fig = go.Figure()
    names = short_names([c.label for c in comparison.columns])
    for c, column in enumerate(comparison.columns):
        values = [o.latency_s for o in comparison.column(c) if o.latency_s is not None]
        fig.add_trace(
            go.Box(y=values, name=names[c], boxpoints="all", jitter=0.3, hovertext=column.label)
        )
    fig.update_layout(title="Latency per output (s)", yaxis_title="seconds", **LAYOUT)
    return fig


def throughput_chart(stats: Sequence[ColumnStats]) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=short_names([s.label for s in stats]),
            y=[s.tokens_per_s or 0 for s in stats],
            hovertext=[s.label for s in stats],
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
            hovertext=[s.label for s in stats],
            text=[f"{100 * s.agreement:.0f}%" if s.agreement is not None else "–" for s in stats],
        )
    )
    fig.update_layout(
        title=f"Answers agreeing with {baseline_label.split(' · ')[0]}",
        yaxis_title="% of rows",
        yaxis_range=[0, 105],
        **LAYOUT,
    )
    return fig
