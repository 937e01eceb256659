"""The `workbench` command: a thin layer over the library, exchange and app.

Every command calls the same service functions the app uses. Problems a user can fix end the
command with one line on stderr (`error: …`) and exit status 1; usage mistakes exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .config import PROJECT_ROOT, Settings
from .errors import WorkbenchError


@click.group(help="Prompt Workbench: versioned prompts, local models, stored and comparable runs.")
@click.version_option(package_name="prompt-workbench")
def app() -> None:
    pass


@app.group("prompts")
def prompts_app() -> None:
    """Browse, render, diff and label prompt versions."""


json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _library() -> Any:
    from .workspace import open_library

    return open_library(Settings.from_env())


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


# --- serve ----------------------------------------------------------------------------------


@app.command()
@click.option("--port", default=8501, show_default=True, help="Port to listen on.")
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; the default keeps the app on this machine.",
)
def serve(port: int, address: str) -> None:
    """Start the web app (Streamlit) on http://127.0.0.1:PORT."""
    entry = Path(__file__).resolve().parent / "app" / "Home.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(entry),
        "--server.address", address,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    _library()  # migrate and load built-ins before the first page asks for them
    click.echo(f"Prompt Workbench on http://{address}:{port}  (Ctrl+C stops it)")
    try:
        code = subprocess.call(command, cwd=PROJECT_ROOT, env=os.environ.copy())
    except KeyboardInterrupt:
        code = 0
    raise click.exceptions.Exit(code)


# --- prompts --------------------------------------------------------------------------------


@prompts_app.command("list")
@json_flag
def prompts_list(as_json: bool) -> None:
    """List prompts with technique, mode, latest version and labels."""
    prompts = _library().list_prompts()
    if as_json:
        _echo_json([p.__dict__ for p in prompts])
        return
    _table(
        ["NAME", "TECHNIQUE", "MODE", "LATEST", "LABELS", "DESCRIPTION"],
        [
            [
                p.name,
                p.technique,
                p.mode,
                f"v{p.latest}",
                ", ".join(f"{k}=v{v}" for k, v in p.labels.items()),
                p.description[:60],
            ]
            for p in prompts
        ],
    )


@prompts_app.command("show")
@click.argument("ref")
def prompts_show(ref: str) -> None:
    """Print REF (NAME, NAME@VERSION or NAME@LABEL) as its .prompty file, the exported form."""
    click.echo(_library().get(ref).export_text(), nl=False)


@prompts_app.command("versions")
@click.argument("name")
@json_flag
def prompts_versions(name: str, as_json: bool) -> None:
    """List a prompt's versions, oldest first, with notes and labels."""
    versions = _library().versions(name)
    if as_json:
        _echo_json(
            [{k: v for k, v in version.__dict__.items() if k != "content"} for version in versions]
        )
        return
    _table(
        ["VERSION", "PARENT", "CREATED", "LABELS", "NOTE"],
        [
            [
                f"v{v.number}",
                f"v{v.parent}" if v.parent else "-",
                v.created_at.strftime("%Y-%m-%d %H:%M"),
                ", ".join(v.labels),
                v.note,
            ]
            for v in versions
        ],
    )


@prompts_app.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("-U", "context", default=3, show_default=True, help="Lines of context.")
def prompts_diff(a: str, b: str, context: int) -> None:
    """Unified diff from version A to version B.

    A is NAME@VERSION or NAME@LABEL; B is the same, or a bare version or label of A's prompt.
    """
    if "@" not in b:
        b = f"{a.partition('@')[0]}@{b}"
    text = _library().diff(a, b, context)
    click.echo(text if text else "(no differences)", nl=not text)


@prompts_app.command("label")
@click.argument("ref")
@click.argument("label")
@click.option("--remove", is_flag=True, help="Remove the label instead.")
def prompts_label(ref: str, label: str, remove: bool) -> None:
    """Point LABEL (e.g. production) at version REF; every move is kept in its history."""
    lib = _library()
    if remove:
        move = lib.remove_label(ref.partition("@")[0], label)
        click.echo(f"{move.prompt}: removed {label} (was v{move.from_version})")
        return
    move = lib.set_label(ref, label)
    was = f" (was v{move.from_version})" if move.from_version else ""
    click.echo(f"{move.prompt}: {label} → v{move.to_version}{was}")


@prompts_app.command("labels")
@click.argument("name")
@json_flag
def prompts_labels(name: str, as_json: bool) -> None:
    """Show a prompt's labels and the history of every move."""
    history = _library().label_history(name)
    if as_json:
        _echo_json([m.__dict__ for m in history])
        return
    if not history:
        click.echo(f"{name} has no labels")
        return
    _table(
        ["WHEN", "LABEL", "FROM", "TO"],
        [
            [
                m.at.strftime("%Y-%m-%d %H:%M:%S"),
                m.label,
                f"v{m.from_version}" if m.from_version else "-",
                f"v{m.to_version}" if m.to_version else "(removed)",
            ]
            for m in history
        ],
    )


def _parse_vars(pairs: list[str], vars_file: Path | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if vars_file is not None:
        try:
            loaded = json.loads(vars_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise WorkbenchError(f"cannot read vars file {vars_file}: {exc.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WorkbenchError(f"vars file {vars_file} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise WorkbenchError(f"vars file {vars_file} must hold a JSON object of name: value")
        values.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"--var expects NAME=VALUE, got {pair!r}")
        values[key.strip()] = value
    return values


@prompts_app.command("render")
@click.argument("ref")
@click.option("--var", "var", multiple=True, help="A variable, NAME=VALUE (repeatable).")
@click.option("--vars-file", type=click.Path(path_type=Path), help="A JSON object of variables.")
@json_flag
def prompts_render(ref: str, var: tuple[str, ...], vars_file: Path | None, as_json: bool) -> None:
    """Render REF (NAME, NAME@VERSION or NAME@LABEL) with variables; print its messages."""
    version = _library().get(ref)
    rendered = version.file.render(_parse_vars(list(var), vars_file))
    if as_json:
        _echo_json(
            {
                "prompt": version.prompt,
                "version": version.number,
                "mode": rendered.mode,
                "messages": [m.as_dict() for m in rendered.messages],
                "text": rendered.text if rendered.mode == "completion" else None,
                "variables": dict(rendered.variables),
            }
        )
        return
    click.echo(f"# {version.ref} ({rendered.mode})")
    if rendered.mode == "completion":
        click.echo("── text ──")
        click.echo(rendered.text)
        return
    for message in rendered.messages:
        click.echo(f"── {message.role} ──")
        click.echo(message.content)


@prompts_app.command("lint")
@click.argument("target")
def prompts_lint(target: str) -> None:
    """Check TARGET (a .prompty file or NAME[@VERSION]) for likely mistakes.

    Exits 1 when there are warnings.
    """
    from .lint import lint
    from .templates import parse_prompt_bytes

    path = Path(target)
    if path.suffix == ".prompty" and path.exists():
        pf = parse_prompt_bytes(path.read_bytes(), str(path))
    else:
        pf = _library().get(target).file
    issues = lint(pf)
    for issue in issues:
        click.echo(f"{pf.source}: {issue}")
    if not issues:
        click.echo(f"{pf.source}: no problems found")
    if any(i.severity == "warning" for i in issues):
        raise click.exceptions.Exit(1)


@prompts_app.command("save")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--note", "-m", default="", help="What changed and why.")
def prompts_save(path: Path, note: str) -> None:
    """Save the .prompty file PATH as the next version of its prompt.

    Content equal to the latest version keeps that version.
    """
    from .templates import parse_prompt_bytes

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkbenchError(f"cannot read {path}: {exc.strerror}") from None
    result = _library().save(parse_prompt_bytes(data, str(path)), note)
    state = "saved" if result.created else "unchanged, still"
    click.echo(f"{state} {result.version.ref}")


@prompts_app.command("restore")
@click.argument("ref")
@click.option("--note", "-m", default=None, help="Note for the new version.")
def prompts_restore(ref: str, note: str | None) -> None:
    """Save the content of an old version REF (NAME@VERSION) as the newest version."""
    result = _library().restore(ref, note)
    state = "restored as" if result.created else "unchanged, latest is already"
    click.echo(f"{state} {result.version.ref}")


# --- export / import ------------------------------------------------------------------------


@app.command("export")
@click.argument("ref", required=False)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("."),
    help="File or folder to write to (default: the current folder).",
)
def export(ref: str | None, output: Path) -> None:
    """Export prompt versions as .prompty files.

    REF is NAME@VERSION for one file, NAME for a zip of all its versions; without REF, a zip of
    the whole library.
    """
    from .exchange import export_library, export_prompt, export_version, write_export

    lib = _library()
    if ref is None:
        exported = export_library(lib)
    elif "@" in ref:
        exported = export_version(lib, ref)
    else:
        exported = export_prompt(lib, ref)
    try:
        target = write_export(exported, output)
    except OSError as exc:
        raise WorkbenchError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {target} ({len(exported.data)} bytes)")


@app.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def import_(paths: tuple[Path, ...]) -> None:
    """Import .prompty files and zips, all or nothing: one bad file rejects the whole import."""
    from .exchange import import_files

    files = []
    for path in paths:
        try:
            files.append((path.name, path.read_bytes()))
        except OSError as exc:
            raise WorkbenchError(f"cannot read {path}: {exc.strerror}") from None
    report = import_files(_library(), files)
    click.echo(f"imported: {report.summary()}")
    for ref in report.created:
        click.echo(f"  new {ref}")
    for line in report.labels:
        click.echo(f"  label {line}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the command, turn user-fixable problems into one line on stderr."""
    try:
        result = app.main(
            args=list(argv) if argv is not None else None,
            prog_name="workbench",
            standalone_mode=False,
        )
    except WorkbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except Exception as exc:  # a bug or an environment problem: still no traceback by default
        if os.environ.get("WORKBENCH_DEBUG"):
            raise
        click.echo(
            f"error: unexpected {type(exc).__name__}: {exc} "
            "(set WORKBENCH_DEBUG=1 to see the traceback)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
