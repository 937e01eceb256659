"""Microsoft's own `.prompty` files through our import, each rendered as `prompty` 2.1 renders it.

Run on demand (not part of the test suite; needs no network):

    .venv/bin/python benchmarks/prompty_files.py PATH        # a checkout of microsoft/prompty
    .venv/bin/python benchmarks/prompty_files.py PATH --json  # one JSON object per file

PATH is a work tree or a bare git directory (its HEAD is unpacked into a temporary folder, so
`${file:…}` references resolve for Prompty as they do in the repository). Every `.prompty` file
is read; embedding and image prompts (`model.apiType: embedding | image`) are out of scope and
only counted. Each text prompt is imported on its own into a fresh SQLite library through
`exchange.import_files`, exported, imported again (the round trip must give the same version),
and rendered from the stored version; the same file is rendered by `prompty.load` +
`prompty.prepare` with the same values, and the two message lists — (role, text) — must be equal.

Values: an input's default where it declares one (on both sides); a short conversation for a
`kind: thread` input; a Prompty 1 file's `sample:` values; `<name>` for any other variable the
template reads. Prompty resolves
`${env:NAME}` when it loads a file, so each referenced variable is set to `<NAME>` for it; the
workbench keeps the reference as written. Prompty 2.1's Python package has no nunjucks renderer:
a `template.format: nunjucks` file is rendered by its Jinja2 renderer, which is what "the syntax
agrees" means for these files.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from workbench.errors import ImportRejected, WorkbenchError  # noqa: E402
from workbench.exchange import export_version, import_files  # noqa: E402
from workbench.library import Library  # noqa: E402
from workbench.store import Store  # noqa: E402
from workbench.templates import HISTORY_VERSION_KEY, PromptFile  # noqa: E402

OUT_OF_SCOPE = ("embedding", "image")
CONVERSATION = [
    {"role": "user", "content": "What did I ask before?"},
    {"role": "assistant", "content": "You asked about the weather."},
]
_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:[^}]*)?\}")


@dataclass
class Result:
    path: str
    outcome: str  # "same", "different", "refused", "out of scope", "prompty failed"
    detail: str = ""
    ref: str = ""


def checkout(path: Path, into: Path) -> Path:
    """A folder holding the repository's files: `path` itself, or from a bare repository's HEAD
    every `.prompty` file and the files beside it (what `${file:…}` references name)."""
    if any(path.rglob("*.prompty")):
        return path

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "--git-dir", str(path), *args], check=True, capture_output=True
        ).stdout

    names = git("ls-tree", "-r", "--name-only", "-z", "HEAD").decode().split("\0")
    folders = {posixpath.dirname(n) for n in names if n.endswith(".prompty")}
    tree = into / "tree"
    for name in names:
        if name and posixpath.dirname(name) in folders:
            try:
                data = git("cat-file", "blob", f"HEAD:{name}")
            except subprocess.CalledProcessError:
                continue  # a large file the snapshot lists but does not hold
            target = tree / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return tree


def api_type(text: str) -> str | None:
    front = text.split("\n---", 1)[0] if text.startswith("---") else ""
    try:
        data = yaml.safe_load(front.removeprefix("---")) or {}
    except yaml.YAMLError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return str(model.get("apiType")) if isinstance(model, dict) else None


def values_for(pf: PromptFile) -> dict[str, Any]:
    sample = pf.front.get("sample")  # Prompty 1's example values, kept in older docs' files
    values: dict[str, Any] = dict(sample) if isinstance(sample, dict) else {}
    for name, spec in pf.inputs.items():
        if spec.kind == "thread":
            values[name] = CONVERSATION
        elif not spec.has_default:
            values[name] = f"<{name}>"
    for name in pf.template_variables():
        if name not in pf.inputs or not pf.inputs[name].has_default:
            values.setdefault(name, f"<{name}>")
    return values


def ours(pf: PromptFile, values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in pf.render(values).messages]


def theirs(path: Path, values: dict[str, Any]) -> list[tuple[str, str]]:
    import prompty

    for name, default in _ENV_REFERENCE.findall(path.read_text(encoding="utf-8")):
        if not default:
            os.environ.setdefault(name, f"<{name}>")
    agent = prompty.load(str(path))
    return [(m.role, m.text) for m in prompty.prepare(agent, dict(values))]


def register_nunjucks() -> None:
    from prompty.core.discovery import register_renderer
    from prompty.renderers.jinja2 import Jinja2Renderer

    register_renderer("nunjucks", Jinja2Renderer())


def measure(tree: Path, work: Path) -> Iterator[Result]:
    register_nunjucks()
    for number, path in enumerate(sorted(tree.rglob("*.prompty"))):
        rel = str(path.relative_to(tree))
        data = path.read_bytes()
        api = api_type(data.decode("utf-8", "replace"))
        if api in OUT_OF_SCOPE:
            yield Result(rel, "out of scope", f"apiType {api}")
            continue
        library = Library(Store(f"sqlite:///{work / f'{number}.db'}"))
        try:
            report = import_files(library, [(path.name, data)])
        except ImportRejected as exc:
            yield Result(rel, "refused", "; ".join(problem for _, problem in exc.problems))
            continue
        (ref,) = report.created
        version = library.get(ref)
        exported = export_version(library, ref).data
        again = import_files(library, [(path.name, exported)])
        if again.created or again.unchanged != [ref]:
            yield Result(rel, "different", "export → import made another version", ref)
            continue
        pf = version.file
        values = values_for(pf)
        try:
            mine = ours(pf, values)
        except WorkbenchError as exc:
            yield Result(rel, "different", f"workbench render failed: {exc}", ref)
            continue
        try:
            expected = theirs(path, values)
        except Exception as exc:  # any failure of the other tool is reported
            yield Result(rel, "prompty failed", f"{type(exc).__name__}: {exc}", ref)
            continue
        if mine == expected:
            yield Result(rel, "same", "", ref)
        else:
            yield Result(rel, "different", f"workbench {mine!r} vs prompty {expected!r}", ref)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("path", type=Path, help="a checkout of microsoft/prompty (or its .git)")
    parser.add_argument("--json", action="store_true", help="one JSON line per file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = list(measure(checkout(args.path.resolve(), work), work))
    if args.json:
        for r in results:
            print(json.dumps(asdict(r)))
    else:
        for r in results:
            print(f"{r.outcome:14} {r.path}" + (f"  — {r.detail}" if r.detail else ""))
    text = [r for r in results if r.outcome != "out of scope"]
    same = sum(r.outcome == "same" for r in text)
    refused = [r for r in text if r.outcome == "refused"]
    print(
        f"\n{len(results)} files; {len(results) - len(text)} embedding or image prompts (out of "
        f"scope); of {len(text)} text prompts {same} import and render as prompty 2.1 does "
        f"({same / max(len(text), 1):.0%}), {len(refused)} refused, "
        f"{len(text) - same - len(refused)} other. History key: metadata.{HISTORY_VERSION_KEY}."
    )
    return 0 if same + len(refused) == len(text) else 1


if __name__ == "__main__":
    sys.exit(main())
