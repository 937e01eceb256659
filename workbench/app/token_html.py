"""The token view as HTML: each token of an answer shaded by how likely the model found it, its
alternatives shown on hover (or on click, which focuses the token).

Why HTML and not a component: shading every token inline, as running text, needs spans with a
background; Streamlit's own elements draw text, tables and charts but no inline colouring of
arbitrary text (Markdown's colour syntax would interpret the model's text). `st.html` draws
sanitised HTML in the page itself (DOMPurify, no scripts, nothing fetched), and the hover and
click behaviour is pure CSS (`:hover`, `:focus` on a focusable span). The third-party
`st-annotated-text` was the other candidate: it renders through Markdown with HTML allowed and
draws labelled chips, not a tooltip per token.

Model output is untrusted: every token text and every alternative goes through
`html.escape` before it is placed, so `<b>` or `![x](http://h/t.png)` show as those characters
and nothing in an answer becomes markup, a link or a fetch. This module builds strings only.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from workbench.token_view import TokenStep, visible
from workbench.wording import probability

SHADE = (230, 80, 40)  # the colour of doubt: the less likely a token, the stronger it shows
MAX_ALPHA = 0.75
LEGEND = (1.0, 0.9, 0.5, 0.2, 0.05)

STYLE = """<style>
.wb-tokens { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.9rem;
  white-space: pre-wrap; word-break: break-word; line-height: 1.9; }
.wb-tok { position: relative; border-radius: 3px; padding: 1px 0;
  box-shadow: inset 0 0 0 1px rgba(128, 128, 128, 0.25); cursor: help; }
.wb-tok:focus { outline: 2px solid rgba(30, 100, 200, 0.8); }
.wb-forced { box-shadow: inset 0 0 0 2px rgba(30, 100, 200, 0.9); }
.wb-ws { opacity: 0.55; }
.wb-tip { display: none; position: absolute; left: 0; top: 1.7em; z-index: 20; min-width: 14em;
  padding: 4px 8px; border: 1px solid #999; border-radius: 4px; background: #fffdf5;
  color: #222; white-space: pre; font-size: 0.8rem; line-height: 1.4;
  box-shadow: 0 2px 6px rgba(0, 0, 0, 0.2); }
.wb-tok:hover > .wb-tip, .wb-tok:focus > .wb-tip { display: block; }
.wb-legend { font-size: 0.8rem; margin-top: 0.4rem; opacity: 0.85; }
.wb-legend span.wb-swatch { display: inline-block; padding: 0 6px; margin-right: 4px;
  border-radius: 3px; box-shadow: inset 0 0 0 1px rgba(128, 128, 128, 0.25); }
</style>"""


def shade(prob: float) -> str:
    """The background of a token the model gave probability `prob`: clear when it was sure."""
    alpha = round(MAX_ALPHA * (1.0 - min(max(prob, 0.0), 1.0)), 3)
    return f"rgba({SHADE[0]}, {SHADE[1]}, {SHADE[2]}, {alpha})"


def _shown(text: str) -> str:
    """A token's text in running text: escaped, with newlines, tabs and a token of spaces
    only marked (the line break itself kept), and an empty piece (part of a character that
    the next token completes) as a faint ∅."""
    if not text:
        return '<span class="wb-ws">∅</span>'
    if not text.strip(" "):
        return f'<span class="wb-ws">{"·" * len(text)}</span>'
    out = []
    for ch in text:
        if ch == "\n":
            out.append('<span class="wb-ws">↵</span>\n')
        elif ch == "\t":
            out.append('<span class="wb-ws">⇥</span>\t')
        elif ch == "\r":
            out.append('<span class="wb-ws">␍</span>')
        else:
            out.append(html.escape(ch))
    return "".join(out)


def tip_text(step: TokenStep) -> str:
    """The hover text of a token, as plain text (escaped where it is placed)."""
    rank = f", rank {step.rank}" if step.rank else ""
    lines = [f"token {step.position}: {visible(step.text)!r}  {probability(step.prob)}{rank}"]
    if step.alternatives:
        lines.append("alternatives:")
        for alt in step.alternatives:
            mark = "→" if step.is_chosen(alt) else " "
            lines.append(f" {mark} {visible(alt.text)!r}  {probability(alt.prob)}")
    return "\n".join(lines)


def token_html(steps: Sequence[TokenStep], *, forced: int | None = None) -> str:
    """The whole view: the answer's tokens as shaded, focusable spans, then a legend. In a
    branch, the token forced at position `forced` is framed."""
    spans = [
        f'<span class="wb-tok{" wb-forced" if step.position == forced else ""}" tabindex="0" '
        f'style="background: {shade(step.prob)}" data-position="{step.position}">'
        f'{_shown(step.text)}<span class="wb-tip">{html.escape(tip_text(step))}</span></span>'
        for step in steps
    ]
    swatches = "".join(
        f'<span class="wb-swatch" style="background: {shade(p)}">{probability(p)}</span>'
        for p in LEGEND
    )
    legend = (
        f'<div class="wb-legend">Probability of each token: {swatches} — the stronger the '
        "shade, the less sure the model was. Hover over a token (or click it) for the "
        "alternatives it had there; ↵ is a line break, · a space, ∅ part of a character"
        + ("; the framed token is the one chosen for this branch" if forced is not None else "")
        + ".</div>"
    )
    return f'{STYLE}<div class="wb-tokens">{"".join(spans)}</div>{legend}'
