"""Is this XML? Markup checks for model output (promptfoo's is-xml and contains-xml).

Python's own expat parser decides well-formedness: it ships with Python, reads nothing from
the network and refuses entity-expansion bombs; a document type with an internal subset
(`<!DOCTYPE x [ … ]>`, where entities are declared) is refused outright, as promptfoo
refuses it, so no declared entity is ever expanded. Required elements are dotted paths of
element names from the root (`analysis.summary`), as promptfoo names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.parsers import expat


@dataclass
class _Node:
    name: str
    children: list[_Node] = field(default_factory=list)


class _InternalSubset(Exception):
    pass


def _parse(text: str) -> tuple[_Node | None, str]:
    """(the root element, "") for well-formed XML, else (None, why not)."""
    parser = expat.ParserCreate()
    root = _Node("")
    stack = [root]

    def start(name: str, attrs: object) -> None:
        node = _Node(name)
        stack[-1].children.append(node)
        stack.append(node)

    def end(name: str) -> None:
        stack.pop()

    def doctype(name: str, sysid: object, pubid: object, has_internal_subset: int) -> None:
        if has_internal_subset:
            raise _InternalSubset

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(text, True)
    except _InternalSubset:
        return None, "DTD internal subsets are not supported by is-xml validation"
    except expat.ExpatError as exc:
        return None, f"XML parsing failed: {expat.ErrorString(exc.code)} (line {exc.lineno})"
    except RecursionError:
        return None, "XML parsing failed: nested too deeply"
    if not root.children:
        return None, "XML parsing failed: no element"
    return root, ""


def _has_path(root: _Node, path: list[str]) -> bool:
    nodes = [root]
    for name in path:
        nodes = [child for node in nodes for child in node.children if child.name == name]
        if not nodes:
            return False
    return True


def _missing(root: _Node, required: list[str] | None) -> list[str]:
    return [e for e in required or [] if not _has_path(root, e.split("."))]


def is_xml(text: str, required: list[str] | None = None) -> tuple[bool, str]:
    """Whether the whole text is well-formed XML holding every required element."""
    root, reason = _parse(text)
    if root is None:
        return False, reason
    missing = _missing(root, required)
    if missing:
        return False, f"XML is missing required elements: {', '.join(missing)}"
    return True, "well-formed XML" + (" with every required element" if required else "")


_TAG = re.compile(r"<(/?)([A-Za-z_:][\w.:-]*)(?:\s[^<>]*?)?(/?)>")


def _candidates(text: str) -> list[tuple[int, int]]:
    """Spans of balanced elements in the text, outermost first."""
    stack: list[tuple[str, int]] = []
    spans: list[tuple[int, int]] = []
    for m in _TAG.finditer(text):
        closing, name, self_closing = m.groups()
        if closing:
            if stack and stack[-1][0] == name:
                spans.append((stack.pop()[1], m.end()))
            else:
                stack.clear()
        elif self_closing:
            spans.append((m.start(), m.end()))
        else:
            stack.append((name, m.start()))
    return sorted(spans, key=lambda s: (s[0], -s[1]))


def contains_xml(text: str, required: list[str] | None = None) -> tuple[bool, str]:
    """Whether a well-formed XML element (with every required element) appears in the text."""
    spans = _candidates(text)
    if not spans:
        return False, "No XML content found in the output"
    for start, end in spans:
        ok, _ = is_xml(text[start:end], required)
        if ok:
            return True, "contains well-formed XML"
    return False, "No valid XML content found matching the requirements"


# --- HTML ---------------------------------------------------------------------------------------

# The elements of the HTML standard a person writes by hand (wrappers html/head/body count
# only when written out; a custom element, with a hyphen in its name, counts too)
HTML_ELEMENTS = frozenset(
    [
        "html",
        "head",
        "title",
        "base",
        "link",
        "meta",
        "style",
        "body",
        "article",
        "section",
        "nav",
        "aside",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "footer",
        "address",
        "p",
        "hr",
        "pre",
        "blockquote",
        "ol",
        "ul",
        "li",
        "dl",
        "dt",
        "dd",
        "figure",
        "figcaption",
        "main",
        "div",
        "a",
        "em",
        "strong",
        "small",
        "s",
        "cite",
        "q",
        "dfn",
        "abbr",
        "ruby",
        "rt",
        "rp",
        "data",
        "time",
        "code",
        "var",
        "samp",
        "kbd",
        "sub",
        "sup",
        "i",
        "b",
        "u",
        "mark",
        "bdi",
        "bdo",
        "span",
        "br",
        "wbr",
        "img",
        "iframe",
        "embed",
        "object",
        "param",
        "picture",
        "source",
        "video",
        "audio",
        "track",
        "map",
        "area",
        "svg",
        "math",
        "script",
        "noscript",
        "canvas",
        "ins",
        "del",
        "table",
        "caption",
        "colgroup",
        "col",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "td",
        "th",
        "form",
        "label",
        "input",
        "button",
        "select",
        "datalist",
        "optgroup",
        "option",
        "textarea",
        "output",
        "progress",
        "meter",
        "fieldset",
        "legend",
        "details",
        "summary",
        "dialog",
        "menu",
        "slot",
        "template",
    ]
)
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)
_WRAPPERS = frozenset({"html", "head", "body"})


class _HtmlReader:
    """Elements written in the text and whether text stands outside every element."""

    def __init__(self, text: str) -> None:
        from html.parser import HTMLParser

        self.elements: list[str] = []
        self.loose_text = False
        stack: list[str] = []
        reader = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag: str, attrs: object) -> None:
                reader.elements.append(tag)
                if tag not in _VOID and tag not in _WRAPPERS:
                    stack.append(tag)

            def handle_startendtag(self, tag: str, attrs: object) -> None:
                reader.elements.append(tag)

            def handle_endtag(self, tag: str) -> None:
                if tag in stack:
                    while stack and stack.pop() != tag:
                        pass

            def handle_data(self, data: str) -> None:
                if not stack and data.strip():
                    reader.loose_text = True

        parser = Parser(convert_charrefs=True)
        parser.feed(text)
        parser.close()


def is_html(text: str) -> tuple[bool, str]:
    """Whether the whole text is an HTML fragment or document: it holds an element of the
    HTML standard (or a custom one) and no text outside its elements, unless a <body> is
    written out (as promptfoo decides with its parser)."""
    trimmed = text.strip()
    if not trimmed:
        return False, "Output is empty"
    if re.match(r"<\?xml", trimmed, re.IGNORECASE):
        return False, "Output appears to be XML, not HTML"
    reader = _HtmlReader(trimmed)
    lowered = trimmed.lower()
    if reader.loose_text and not re.search(r"<body(?=[\s>/])", lowered):
        return False, "Output must be wrapped in HTML tags"
    for tag in reader.elements:
        if tag in _WRAPPERS:
            if re.search(rf"<{tag}(?=[\s>/])", lowered):
                return True, "Output is valid HTML"
        elif tag in HTML_ELEMENTS or "-" in tag:
            return True, "Output is valid HTML"
    return False, "Output does not contain recognized HTML elements"


_HTML_HINTS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"<[a-zA-Z][a-zA-Z0-9-]*(?:\s[^>]*)?/>"), 1),
    (re.compile(r"&(?:[a-zA-Z]+|#[0-9]+|#x[0-9a-fA-F]+);"), 1),
    (re.compile(r"<!DOCTYPE\s+html", re.IGNORECASE), 2),
    (re.compile(r"<!--[^-]*(?:-[^-]+)*-->"), 1),
    (re.compile(r"\s[a-zA-Z-]+=\s*[\"'][^\"']*[\"']"), 1),
    (
        re.compile(
            r"<(html|head|body|div|span|p|a|img|h[1-6]|ul|ol|li|table|tr|td|th|form|input|"
            r"button|script|style|link|meta|br|hr)\b",
            re.IGNORECASE,
        ),
        2,
    ),
)
_OPENING = re.compile(r"<[a-zA-Z][a-zA-Z0-9-]*(?:\s[^>]*)?>")
_CLOSING = re.compile(r"</[a-zA-Z][a-zA-Z0-9-]*\s*>")


def contains_html(text: str) -> tuple[bool, str]:
    """Whether HTML appears in the text, by promptfoo's count of signs (tags, entities, a
    doctype, comments, attributes, common element names): two signs are enough."""
    opening, closing = bool(_OPENING.search(text)), bool(_CLOSING.search(text))
    signs = 2 if opening and closing else int(opening or closing)
    signs += sum(weight for pattern, weight in _HTML_HINTS if pattern.search(text))
    if signs >= 2:
        return True, "contains HTML"
    return False, "Expected output to contain HTML content"
