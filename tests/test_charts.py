"""Charts keep rates on 0–100% axes and every point inside the plot; cached answers, whose time
is an earlier generation's, are not drawn as latencies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from workbench.app import charts


@dataclass(frozen=True)
class Out:
    id: int
    latency_s: float | None
    cached: bool = False
    completion_tokens: int | None = 4
    batch_size: int | None = 1
    backend: str = "transformers"


@dataclass(frozen=True)
class Column:
    label: str


@dataclass
class FakeComparison:
    """What the charts read of a Comparison: columns, a column's outputs and the cells."""

    columns: list[Column]
    outputs: list[list[Out]]
    cells: list[list[Out | None]] = field(default_factory=list)

    def column(self, c: int) -> list[Out]:
        return self.outputs[c]


def spec(figure: Any) -> dict[str, Any]:
    return json.loads(figure.to_json())  # type: ignore[no-any-return]


def test_a_rate_of_forty_percent_fills_two_fifths_of_the_axis() -> None:
    figure = spec(charts.rate_chart(["demo@1", "demo@2"], [0.4, None], "Pass rate"))
    assert figure["layout"]["yaxis"]["range"] == [0, 105]
    assert figure["layout"]["yaxis"]["autorange"] is False
    assert figure["data"][0]["y"] == [40.0, 0]
    assert figure["data"][0]["text"] == ["40%", "–"]


def test_latency_points_stay_inside_the_plot_and_cached_answers_are_left_out() -> None:
    comparison = FakeComparison(
        [Column("demo@1 · tiny"), Column("demo@2 · tiny")],
        [
            [Out(1, 0.5), Out(2, 8.35, cached=True)],
            [Out(3, 1.0), Out(4, 2.0)],
        ],
    )
    figure = spec(charts.latency_chart(comparison))  # type: ignore[arg-type]
    assert [trace["y"] for trace in figure["data"]] == [[0.5], [1.0, 2.0]]
    low, high = figure["layout"]["yaxis"]["range"]
    assert low == 0 and high > 2.0 * 1.1  # room above the highest point for its marker
    assert figure["layout"]["yaxis"]["autorange"] is False
    assert "1 cached answer left out" in figure["layout"]["title"]["text"]


def test_score_against_latency_keeps_points_inside_and_skips_cached() -> None:
    from workbench.scorers import Score

    outs = [Out(1, 3.0), Out(2, 9.0, cached=True)]
    comparison = FakeComparison([Column("demo@1")], [outs], [[outs[0]], [outs[1]]])
    passed = Score("exact-match", 1.0, True, "")
    figure = spec(
        charts.score_latency_chart(comparison, {1: [passed], 2: [passed]})  # type: ignore[arg-type]
    )
    assert figure["data"][0]["x"] == [3.0]
    assert figure["layout"]["xaxis"]["range"][1] > 3.0


def test_column_means_count_only_the_outputs_generated_now() -> None:
    from conftest import make_output

    from workbench import compare
    from workbench.compare import Column, Comparison

    cells = [
        [
            make_output("a", id=1, latency_s=1.0),
            make_output("a", id=2, latency_s=8.35, cached=True),
        ],
        [make_output("b", id=3, latency_s=3.0), make_output("b", id=4, latency_s=0.5)],
    ]
    columns = [Column(f"c{i}", f"p@{i + 1}", "m", {}, i) for i in range(2)]
    comparison = Comparison(columns, [{"text": "a"}, {"text": "b"}], cells)
    first, second = compare.column_stats(comparison, baseline=0)
    assert first.mean_latency_s == 2.0 and first.tokens_per_s == 8 / 4.0
    assert second.mean_latency_s == 0.5  # the cached 8.35 s is the original run's, not this one's
    assert second.tokens_per_s == 4 / 0.5
