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
