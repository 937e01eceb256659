"""The Compare grid's "diverges at token N": computed from the outputs' stored token
log-probabilities on the tiny model, sorted by, and the row detail behind it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from conftest import make_output
from sqlalchemy import update

from workbench import compare, divergence, grid
from workbench.compare import Column, ColumnSpec, Comparison
from workbench.library import Library
from workbench.runner import Runner
from workbench.runs import OutputRecord, token_logprobs
from workbench.store import Output

ROWS = [{"text": t} for t in ("one", "two words", "a longer line of text", "four", "ok")]


@pytest.fixture
def compared(two_versions: Library, tiny_backend: Any) -> Comparison:
    """v1 against v2 on the tiny model: answers that share a beginning or not."""
    library = two_versions
    specs = [ColumnSpec(f"echo@{n}", "tiny", {"max_new_tokens": 8}) for n in (1, 2)]
    return compare.run_columns(library, specs, ROWS, lambda spec: Runner(library, tiny_backend))


def reference(comparison: Comparison, library: Library) -> list[int | None]:
    """Per row, where column 2's stored tokens first differ from column 1's (from 1)."""
    stored = token_logprobs(library.store, comparison.output_ids)
    out: list[int | None] = []
    for base, other in comparison.cells:
        assert base is not None and other is not None
        a, b = stored[base.id].tokens, stored[other.id].tokens
        same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if same is None:
            same = None if len(a) == len(b) else min(len(a), len(b))
        out.append(None if same is None else same + 1)
    return out


def test_the_column_is_where_the_stored_tokens_part(compared: Comparison, library: Library) -> None:
    column = grid.divergence_column(library.store, compared, 0)
    expected = reference(compared, library)
    assert list(column) == list(range(len(ROWS)))
    assert [values[1] for values in column.values()] == expected
    assert all(values[0] is None for values in column.values())  # the baseline's own column
    assert any(n is not None for n in expected)  # the pair really parts somewhere
    model = grid.build_grid(compared, 0, None, None, column)
    assert [r.diverges for r in model.rows] == list(column.values())
    # a page asks for its own rows only; filled in, they are the same
    some = grid.divergence_column(library.store, compared, 0, rows=[3, 1])
    assert some == {1: column[1], 3: column[3]}
    plain = grid.build_grid(compared, 0).rows
    assert all(r.diverges == () for r in plain)
    filled = grid.with_divergence(plain, some)
    assert [r.diverges for r in filled] == [(), column[1], (), column[3], ()]


def test_the_row_detail_reads_the_tokens_with_the_model_s_tokenizer(
    compared: Comparison, library: Library, tiny_backend: Any
) -> None:
    model = grid.build_grid(
        compared, 0, None, None, grid.divergence_column(library.store, compared)
    )
    row = next(r for r in model.rows if r.diverges[1] is not None)
    found = grid.row_divergences(library.store, row, 0, lambda output: tiny_backend.token_pieces)
    assert found[0] is None
    d = found[1]
    assert d is not None and d.kind == "token" and d.by == "ids"
    assert d.token == row.diverges[1]
    stored = token_logprobs(library.store, [c.output.id for c in row.cells if c.output])
    base, other = (stored[c.output.id] for c in row.cells if c.output)
    i = (d.token or 0) - 1
    assert d.before == tiny_backend.tokenizer.decode(list(base.tokens[:i]))
    assert d.sides is not None
    for side, record, rival in ((d.sides[0], base, other), (d.sides[1], other, base)):
        if i < len(record):
            assert side.token_id == record.tokens[i]
            assert side.text == tiny_backend.token_pieces(record.tokens)[i]
            assert [x.token_id for x in side.alternatives] == list(record.top_ids[i])
        if i < len(record) and i < len(rival) and rival.tokens[i] in record.top_ids[i]:
            assert side.other is not None  # the other's token is in its top k: its probability
        else:
            assert side.other is None and side.other_note  # said, never made up


def test_without_a_tokenizer_the_detail_still_finds_the_token(
    compared: Comparison, library: Library
) -> None:
    model = grid.build_grid(
        compared, 0, None, None, grid.divergence_column(library.store, compared)
    )
    row = next(r for r in model.rows if r.diverges[1] is not None)
    d = grid.row_divergences(library.store, row, 0, None)[1]
    assert d is not None and d.token == row.diverges[1] and d.before is None


def test_two_models_are_compared_by_token_texts(
    compared: Comparison, library: Library, tiny_backend: Any
) -> None:
    """Column 2 stored under another model's name: its ids are not the baseline's, so token
    texts are compared. The token named is the first of column 2 whose text leaves the text
    both share (the random model's byte tokens make pieces that add nothing on their own)."""
    with library.store.write() as s:
        s.execute(
            update(Output)
            .where(Output.run_id == compared.columns[1].run_id)
            .values(model="another-model")
        )
    cells = [[o, replace(p, model="another-model")] for o, p in compared.cells]  # type: ignore[arg-type]
    renamed = Comparison(compared.columns, compared.rows, cells)  # type: ignore[arg-type]
    without = grid.divergence_column(library.store, renamed, 0)
    assert all(values[1] is None for values in without.values())  # no tokenizer: no token to name
    decoder = lambda output: tiny_backend.token_pieces  # noqa: E731
    texts = grid.divergence_column(library.store, renamed, 0, decoder)
    stored = token_logprobs(library.store, renamed.output_ids)
    model = grid.build_grid(renamed, 0, None, None, texts)
    parted = 0
    for row, (base, other) in zip(model.rows, renamed.cells, strict=True):
        assert base is not None and other is not None
        d = grid.row_divergences(library.store, row, 0, decoder)[1]
        assert d is not None and d.by == "texts"
        assert any("different tokenizers" in n for n in d.notes)
        if d.kind == "same":
            assert row.diverges[1] is None
            continue
        parted += 1
        assert d.token == row.diverges[1] and d.sides is not None and d.before is not None
        content = []
        for output, side in ((base, d.sides[0]), (other, d.sides[1])):
            record = stored[output.id]
            pieces = tiny_backend.token_pieces(record.tokens)
            if output.finish_reason == "eos":
                pieces = pieces[:-1]
            content.append("".join(pieces))
            assert "".join(pieces[: side.index]) == d.before + side.lead  # text before it
            assert side.other is None and "not comparable" in side.other_note
        shared = len(d.before) + len(d.sides[1].lead) + len(d.sides[1].text or "")
        assert not content[0].startswith(content[1][:shared]) or len(content[1]) < shared
    assert parted


# --- sorting ----------------------------------------------------------------------------------
_ids = iter(range(1, 10_000))


def _out(text: str) -> OutputRecord:
    return make_output(text, id=next(_ids))  # type: ignore[no-any-return]


def _model(diverges: list[list[int | None]]) -> grid.GridModel:
    rows = [{"text": str(i)} for i in range(len(diverges))]
    cells: list[list[OutputRecord | None]] = [[_out("a") for _ in values] for values in diverges]
    columns = [Column(f"col{i}", f"p@{i + 1}", "m", {}, i + 1) for i in range(len(diverges[0]))]
    found = dict(enumerate(diverges))
    return grid.build_grid(Comparison(columns, rows, cells), 0, None, None, found)


PARTS = [[None, 5, 2], [None, None, None], [None, 1, 9], [None, 3, None]]


@pytest.mark.parametrize(
    ("parts", "column", "order"),
    [
        (None, None, [0, 1, 2, 3]),
        ("earliest", 1, [2, 3, 0, 1]),  # 1, 3, 5, then the row that does not part
        ("latest", 1, [0, 3, 2, 1]),
        ("earliest", 2, [0, 2, 1, 3]),
        ("earliest", None, [2, 0, 3, 1]),  # any column: 1, 2, 3
        ("latest", None, [3, 0, 2, 1]),
    ],
)
def test_rows_sort_by_where_they_part(parts: Any, column: int | None, order: list[int]) -> None:
    rows = grid.select_rows(_model(PARTS), parts=parts, parts_column=column)
    assert [r.index for r in rows] == order


def test_the_divergence_sort_comes_before_got_worse_and_keeps_filters() -> None:
    model = _model(PARTS)
    rows = grid.select_rows(model, worse_first=True, parts="earliest", parts_column=1)
    assert [r.index for r in rows] == [2, 3, 0, 1]


def test_failed_or_missing_outputs_have_no_divergence(library: Library) -> None:
    base, failed = _out("x"), replace(_out("y"), error="boom")
    comparison = Comparison(
        [
            Column("a", "p@1", "m", {}, 1),
            Column("b", "p@2", "m", {}, 2),
            Column("c", "p@3", "m", {}, 3),
        ],
        [{"text": "1"}],
        [[base, failed, None]],
    )
    assert grid.divergence_column(library.store, comparison, 0) == {0: (None, None, None)}
    row = grid.build_grid(comparison).rows[0]
    assert grid.row_divergences(library.store, row, 0) == [None, None, None]


def test_outputs_stored_without_probabilities_are_compared_by_characters(
    library: Library,
) -> None:
    a, b = _out("Positive, I think"), _out("Positive!")
    comparison = Comparison(
        [Column("a", "p@1", "m", {}, 1), Column("b", "p@2", "m", {}, 2)], [{"text": "1"}], [[a, b]]
    )
    assert grid.divergence_column(library.store, comparison) == {0: (None, None)}
    d = grid.row_divergences(library.store, grid.build_grid(comparison).rows[0])[1]
    assert d is not None and d.kind == "text" and d.before == "Positive"
    assert divergence.summary(d) == "they part at character 9"
