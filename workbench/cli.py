"""The `workbench` command: a thin layer over the library, exchange and app.

Every command calls the same service functions the app uses. Problems a user can fix end the
command with one line on stderr (`error: …`) and exit status 1; usage mistakes exit 2.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import json_text, wording
from .config import Settings
from .errors import WorkbenchError

if TYPE_CHECKING:
    from .choices import ChoiceRequest
    from .datasets import Dataset
    from .evaluate import EvalReport, VersionReport
    from .library import Library
    from .runner import Runner, RunSummary
    from .runs import OutputRecord
    from .scorers import Check
    from .terminal import ProgressDisplay

# A click command as the decorators pass it along (a function until @app.command wraps it).
Command = TypeVar("Command", bound=Callable[..., object])


@click.group(help="Prompt Workbench: versioned prompts, local models, stored and comparable runs.")
@click.version_option(package_name="prompt-workbench")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    envvar="WORKBENCH_VERBOSE",
    help="Show the model libraries' loading bars and warnings on stderr; by default they go "
    "to the log, STORAGE/logs/workbench.log. Same as WORKBENCH_VERBOSE=1.",
)
@click.pass_context
def app(ctx: click.Context, verbose: bool) -> None:
    from . import logs

    ctx.with_resource(
        logs.command_logging(
            logs.log_file(Settings.from_env().storage_dir),
            verbose=verbose,
            command=ctx.obj or (),
            not_errors=(click.exceptions.Exit, click.ClickException),
        )
    )


@app.group("prompts")
def prompts_app() -> None:
    """Browse, render, diff and label prompt versions."""


json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _library() -> Library:
    from .workspace import open_library

    return open_library(Settings.from_env())


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from .terminal import print_table

    print_table(headers, rows)


def _progress(hidden: bool, label: str = "") -> AbstractContextManager[ProgressDisplay | None]:
    """The progress display for a run on stderr, or none (--json keeps stderr for errors)."""
    from .terminal import ProgressDisplay

    return nullcontext() if hidden else ProgressDisplay(label)


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
    """Start the web app (Streamlit) on http://127.0.0.1:PORT; Ctrl+C or SIGTERM stops it."""
    from .server import run_app

    _library()  # migrate and load built-ins before the first page asks for them
    click.echo(f"Prompt Workbench on http://{address}:{port}  (Ctrl+C stops it)")
    raise click.exceptions.Exit(run_app(address, port))


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
            loaded = json_text.loads(vars_file.read_text(encoding="utf-8"))
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
    from .templates import name_from_source, parse_prompt_bytes

    path = Path(target)
    if path.suffix == ".prompty" and path.exists():
        # as import reads it: a file without a name (Prompty's shorthands) takes its file's
        pf = parse_prompt_bytes(
            path.read_bytes(), str(path), default_name=name_from_source(path.name)
        )
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
    from .templates import name_from_source, parse_prompt_bytes

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkbenchError(f"cannot read {path}: {exc.strerror}") from None
    # as import reads it: a file without a name (Prompty's shorthands) takes its file's
    pf = parse_prompt_bytes(data, str(path), default_name=name_from_source(path.name))
    result = _library().save(pf, note)
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


def _output_file(output: str, default_name: str) -> Path:
    """Where `-o OUTPUT` writes: inside OUTPUT, under `default_name`, when OUTPUT is a folder —
    one that exists, or a new one when OUTPUT ends in a slash (`-o exports/`, created here) —
    else OUTPUT itself.

    The slash is read from the text as typed: `Path("exports/")` forgets it, which made
    `-o exports/` write a file called `exports`.
    """
    path = Path(output)
    if output.endswith("/") or output.endswith(os.sep):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkbenchError(f"cannot create the folder {output}: {exc.strerror}") from None
    return path / default_name if path.is_dir() else path


@app.command("export")
@click.argument("ref", required=False)
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    default=".",
    help="File or folder to write to (default: the current folder). A folder that does not "
    "exist yet is created when the path ends in /.",
)
def export(ref: str | None, output: str) -> None:
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
    target = _output_file(output, exported.filename)
    try:
        target = write_export(exported, target)
    except OSError as exc:
        raise WorkbenchError(f"cannot write {target}: {exc.strerror}") from None
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
    for line in report.moved:  # an edited export can move `production`: say so
        click.echo(f"  label moved {line}")


# --- running ----------------------------------------------------------------------------------


def model_options(command: Command) -> Command:
    """--model, --dtype and --trust-remote-code, shared by the commands that load a model."""
    command = click.option(
        "--trust-remote-code",
        is_flag=True,
        help="Allow a model's own Python code to run (off by default: only for code you trust).",
    )(command)
    command = click.option(
        "--dtype",
        type=click.Choice(["float32", "bfloat16"]),
        default="float32",
        show_default=True,
        help="bfloat16 is about 2x faster on CPU, but batched outputs may then differ from "
        "one-by-one outputs; float32 keeps every output independent of its batch.",
    )(command)
    return click.option(
        "--model",
        default=None,
        help="A local model folder, an already-downloaded Hugging Face id, or an "
        "OpenAI-compatible server: openai, openai:MODEL or openai:MODEL@http://HOST:PORT/v1 "
        "(key from $WORKBENCH_OPENAI_API_KEY) "
        "(default: $WORKBENCH_MODEL, else the built-in SmolLM2-135M-Instruct).",
    )(command)


def choice_options(command: Command) -> Command:
    """--choices and --calibrate, shared by run and eval (see workbench.choices)."""
    command = click.option(
        "--calibrate",
        is_flag=True,
        help="Contextual calibration (Zhao et al. 2021): divide each row's choice "
        "probabilities by those the prompt gives content-free inputs (N/A, '', [MASK]) and "
        "answer the calibrated argmax; needs choices. Stored with the run.",
    )(command)
    return click.option(
        "--choices",
        default=None,
        help="Score these answers instead of generating, comma-separated (e.g. "
        "'Positive,Negative,Neutral'): the answer is the most likely one, and every choice's "
        "probability is stored. Overrides the prompt's metadata.choices. Local models only.",
    )(command)


def constrain_option(command: Command) -> Command:
    """--constrain/--no-constrain, shared by run and eval (see workbench.constraints)."""
    return click.option(
        "--constrain/--no-constrain",
        "constrain",
        default=None,
        help="Decode under the prompt's declared output constraint (metadata.json_schema, the "
        "json-format schema input, metadata.output_pattern or metadata.choices), so the answer "
        "follows it by construction. On by default when one is declared; --constrain refuses a "
        "prompt that declares none. Local models only; stored with each output.",
    )(command)


def _with_constrain(overrides: dict[str, Any], constrain: bool | None) -> dict[str, Any]:
    """The run's overrides with the --constrain switch (stored with the run, so a resume
    decodes the same way)."""
    return overrides if constrain is None else {**overrides, "constrain": constrain}


def _choice_request(choices: str | None, calibrate: bool) -> ChoiceRequest | None:
    from .choices import ChoiceRequest, ChoicesError

    try:
        return ChoiceRequest.build(choices, calibrate)
    except ChoicesError as exc:
        raise WorkbenchError(f"--choices: {exc}") from None


def _runner(
    model: str | None, dtype: str, trust_remote_code: bool, library: Library | None = None
) -> Runner:
    """A runner on the model spec (default: the settings' model); the model opens when something
    is generated, so a cached answer never loads it."""
    from .backends import open_backend
    from .runner import Runner

    settings = Settings.from_env()
    spec = model or settings.model
    return Runner(
        library or _library(),
        lambda: open_backend(
            spec, settings.storage_dir, dtype=dtype, trust_remote_code=trust_remote_code
        ),
    )


@app.command("run")
@click.argument("ref")
@click.option("--var", "var", multiple=True, help="A variable, NAME=VALUE (repeatable).")
@click.option("--vars-file", type=click.Path(path_type=Path), help="A JSON object of variables.")
@click.option(
    "--dataset",
    type=click.Path(path_type=Path),
    help="CSV or JSON Lines whose columns fill the variables; runs every row.",
)
@click.option(
    "--param",
    "param",
    multiple=True,
    help="Generation parameter NAME=VALUE: temperature, top_p, top_k, max_new_tokens, "
    "repetition_penalty, do_sample, seed, stop (repeatable).",
)
@click.option("--samples", type=int, help="Draw N sampled answers and vote (self-consistency).")
@click.option("--no-cache", is_flag=True, help="Generate even when an identical output is stored.")
@click.option("--batch-size", type=int, help="Rows per batch (default: chosen from the lengths).")
@choice_options
@constrain_option
@model_options
@json_flag
def run_command(
    ref: str,
    var: tuple[str, ...],
    vars_file: Path | None,
    dataset: Path | None,
    param: tuple[str, ...],
    samples: int | None,
    no_cache: bool,
    batch_size: int | None,
    choices: str | None,
    calibrate: bool,
    constrain: bool | None,
    model: str | None,
    dtype: str,
    trust_remote_code: bool,
    as_json: bool,
) -> None:
    """Run REF (NAME, NAME@VERSION or NAME@LABEL) on a model (local, or a server via --model).

    One input streams the answer; --dataset runs every row with a progress bar and prints a
    summary. Every output is stored; `workbench runs` shows them.
    """
    from .datasets import read_dataset
    from .params import parse_param_pairs
    from .runner import samples_for

    overrides = _with_constrain(parse_param_pairs(list(param)), constrain)
    request = _choice_request(choices, calibrate)
    library = _library()
    version = library.get(ref)
    rows: Any
    if dataset is not None:
        if var or vars_file:
            raise WorkbenchError("give either --dataset or --var/--vars-file, not both")
        rows = read_dataset(dataset)
    else:
        rows = [_parse_vars(list(var), vars_file)]
    runner = _runner(model, dtype, trust_remote_code, library)
    use_cache = not no_cache
    single = (
        dataset is None and not (samples and samples > 1) and samples_for(version, samples) == 1
    )
    if single and not as_json:
        from .terminal import shown

        streamed = runner.stream(
            version, rows[0], overrides=overrides, use_cache=use_cache, choices=request
        )
        # On a terminal the answer is shown as text; piped, it is the exact answer (data).
        on_terminal = sys.stdout.isatty()
        for piece in streamed:
            click.echo(shown(piece) if on_terminal else piece, nl=False)
        click.echo()
        out = streamed.output
        assert out is not None
        ttft = f" · first token {out.ttft_s:.2f} s" if out.ttft_s is not None else ""
        if out.cached or out.choices is not None:  # nothing generated now: no rate
            origin = wording.latency_text(out)
        else:
            origin = f"{wording.latency_text(out)} · {wording.tokens_per_s_text(out)} tok/s{ttft}"
        constraint = out.params.get("constraint")
        under = f" · under {constraint['kind']} ({constraint['source']})" if constraint else ""
        click.echo(
            f"[{out.prompt}@{out.version} · {out.finish_reason}{under} · {out.prompt_tokens}+"
            f"{out.completion_tokens} tokens · {origin} · run {out.run_id}]",
            err=True,
        )
        _print_notices([streamed.notice] if streamed.notice else [])
        return
    with _progress(as_json, version.ref) as progress:
        summary = runner.run(
            [version],
            rows,
            overrides=overrides,
            samples=samples,
            use_cache=use_cache,
            progress=progress,
            batch_size=batch_size,
            choices=request,
        )
    _print_summary(summary, as_json)


def _print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        _echo_json(
            {
                "run": summary.run.__dict__,
                "outputs": [o.__dict__ for o in summary.outputs],
                "votes": [v.__dict__ for v in summary.votes],
                "notices": list(summary.notices),
            }
        )
        return
    _table(
        ["ROW", "SAMPLE", "FINISH", "TOKENS", "LATENCY", "OUTPUT"],
        [
            [
                o.row_index + 1,
                o.sample_index,
                o.finish_reason or "error",
                f"{o.prompt_tokens}+{o.completion_tokens}",
                wording.latency_text(o),
                _choice_text(o) or (o.text or o.error or "").replace("\n", " ")[:70],
            ]
            for o in summary.outputs
        ],
    )
    for vote in summary.votes:
        click.echo(
            f"row {vote.row_index + 1}: majority {vote.answer!r} "
            f"({vote.agreement:.0%} of {vote.samples} samples agree; counts {vote.counts})"
        )
    run = summary.run
    click.echo(
        f"run {run.id}: {run.status} · {run.done}/{run.total} outputs · {run.cached} cached · "
        + _timing(summary)
    )
    _print_notices(summary.notices)


def _print_notices(notices: Sequence[str]) -> None:
    """What the backend said about its answers, once each, on stderr (a server's words, made
    printable)."""
    from .terminal import plain

    for notice in notices:
        click.echo(f"note: {plain(notice)}", err=True)


def _choice_text(output: OutputRecord) -> str | None:
    """A scored answer with its probability: "Positive 93%"; calibrated, with the raw answer
    beside it: "Negative 56% calibrated (raw Positive 62%)"."""
    if output.choices is None:
        return None
    from .choices import ChoiceResult, argmax

    result = ChoiceResult.from_dict(output.choices)
    raw = argmax(result.probs)
    if result.calibrated is None:
        return f"{result.choices[raw]} {result.probs[raw]:.0%}"
    best = argmax(result.calibrated)
    return (
        f"{result.choices[best]} {result.calibrated[best]:.0%} calibrated "
        f"(raw {result.choices[raw]} {result.probs[raw]:.0%})"
    )


def _timing(summary: RunSummary) -> str:
    """This execution's wall time and rate; for a run only read back (`runs show`), nothing
    was timed now, so the stored outputs' mean latency (generated ones only) is shown instead
    of "0.0 s · 0.0 generated tok/s"."""
    if summary.wall_s > 0:
        return f"{summary.wall_s:.1f} s · {summary.tokens_per_s:.1f} generated tok/s"
    generated = wording.generated(summary.outputs)
    mean = wording.mean_latency(generated)
    if mean is None:
        return "nothing generated by this run (every answer cached)"
    count = wording.plural(len(generated), "generated output")
    return f"mean latency {wording.seconds(mean)} over {count}"


EXIT_BELOW_MIN = 3  # distinct from errors (1) and usage mistakes (2), for CI scripts


@app.command("eval")
@click.argument("refs", nargs=-1)
@click.option(
    "--dataset",
    help="A CSV or JSON Lines file, or a stored test set (NAME or NAME@VERSION): columns fill "
    "the variables; 'expected' (or expected_<metric>) holds the answer scorers compare with.",
)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    help="Run a promptfoo config (promptfooconfig.yaml) instead of REFS and --dataset: every "
    "prompt x provider x test, scored by the tests' assertions. Providers: echo, "
    "workbench:default, openai:chat:MODEL with config.apiBaseUrl, ollama:…, llama:….",
)
@click.option(
    "--import-prompts",
    is_flag=True,
    help="With --config: save the config's prompts into the library as versions (note "
    "'imported from FILE'); by default they are kept as hidden versions.",
)
@click.option(
    "--skip-unsupported",
    is_flag=True,
    help="With --config: run what is supported and list what was left out (whole providers, "
    "prompts and tests), instead of refusing the config.",
)
@click.option(
    "--assert",
    "assertions",
    multiple=True,
    help="An assertion besides the prompt's metadata.assert: a shorthand such as "
    "'icontains:positive', 'not-contains:sorry', 'is-json', 'rouge-l>=0.5', 'exact-match', or "
    'a JSON object {"type": ..., "value": ..., "threshold": ...} (repeatable).',
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="Write the full report: .json, .csv or .xml (JUnit, for CI test reports).",
)
@click.option(
    "--min-pass-rate",
    type=click.FloatRange(0, 1),
    help=f"Exit with status {EXIT_BELOW_MIN} when a version passes fewer rows than this (0–1).",
)
@click.option("--param", "param", multiple=True, help="Generation parameter NAME=VALUE.")
@click.option("--no-cache", is_flag=True, help="Generate even when an identical output is stored.")
@choice_options
@constrain_option
@click.option(
    "--vs-free",
    is_flag=True,
    help="Run each version that declares an output constraint twice, constrained and free, "
    "side by side: constraint-valid and JSON-parse rates, pass rate, tokens and latency.",
)
@model_options
@json_flag
def eval_command(
    refs: tuple[str, ...],
    dataset: str | None,
    config: Path | None,
    import_prompts: bool,
    skip_unsupported: bool,
    assertions: tuple[str, ...],
    output: Path | None,
    min_pass_rate: float | None,
    param: tuple[str, ...],
    no_cache: bool,
    choices: str | None,
    calibrate: bool,
    constrain: bool | None,
    vs_free: bool,
    model: str | None,
    dtype: str,
    trust_remote_code: bool,
    as_json: bool,
) -> None:
    """Evaluate one or more prompt versions (REF: NAME, NAME@VERSION, NAME@LABEL) on a dataset.

    Every row's output is scored by the prompt's assertions and --assert; a row passes when all
    its assertions pass. Prints the pass rate per version; outputs and scores are stored.
    With --config, runs a promptfoo config instead.
    """
    from .evaluate import (
        REPORT_FORMATS,
        constraint_costs,
        evaluate,
        plan,
        report_dict,
        write_report,
    )
    from .params import parse_param_pairs
    from .reports import report_format

    if output is not None:
        report_format(output, REPORT_FORMATS)
    if config is not None:
        given = {
            "REFS": bool(refs),
            "--dataset": dataset is not None,
            "--assert": bool(assertions),
            "--param": bool(param),
            "--choices": choices is not None,
            "--calibrate": calibrate,
            "--constrain/--no-constrain": constrain is not None,
            "--vs-free": vs_free,
        }
        clash = [name for name, on in given.items() if on]
        if clash:
            raise WorkbenchError(
                f"--config runs the config's prompts, tests and assertions: leave out "
                f"{', '.join(clash)}"
            )
        _eval_config(
            config,
            import_prompts=import_prompts,
            skip_unsupported=skip_unsupported,
            output=output,
            min_pass_rate=min_pass_rate,
            no_cache=no_cache,
            model=model,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            as_json=as_json,
        )
        return
    if import_prompts or skip_unsupported:
        raise WorkbenchError("--import-prompts and --skip-unsupported go with --config")
    if not refs:
        raise WorkbenchError("name the prompt versions to evaluate (REFS), or give --config")
    if dataset is None:
        raise WorkbenchError("give the rows to evaluate: --dataset FILE|TESTSET")
    if vs_free and constrain is False:
        raise WorkbenchError("--vs-free runs constrained and free: leave out --no-constrain")
    overrides = _with_constrain(parse_param_pairs(list(param)), constrain)
    library = _library()
    rows = _dataset_or_test_set(library, dataset)
    extra = _assertions(assertions)
    request = _choice_request(choices, calibrate)
    plan(library, refs, rows, extra, choices=request)  # every mistake before the model loads
    runner = _runner(model, dtype, trust_remote_code, library)
    with _progress(as_json) as display:
        report = evaluate(
            library,
            runner,
            refs,
            rows,
            extra,
            overrides=overrides,
            use_cache=not no_cache,
            progress=(lambda ref, p: display(p, ref)) if display else None,
            choices=request,
            vs_free=vs_free,
        )
    if output is not None:
        write_report(report, output)
    if as_json:
        _echo_json(report_dict(report))
    else:
        _eval_table(report)
        _probability_scores(report)
        for line in constraint_costs(report):
            click.echo(f"note: {line}")
        if output is not None:
            click.echo(f"report written to {output}")
    _exit_below(report, min_pass_rate)


def _eval_table(report: EvalReport) -> None:
    """The pass rates per version (and per metric), as `workbench eval` prints them."""
    metrics = sorted({m.metric for v in report.versions for m in v.metrics})
    json_column = any(v.expects_json for v in report.versions)
    declared = any(v.decoding is not None for v in report.versions)
    _table(
        [
            "VERSION",
            "RUN",
            "ROWS",
            "PASSED",
            "PASS RATE",
            *(["JSON PARSED"] if json_column else []),
            *(["DECODED", "VALID", "CUT", "TOKENS", "LATENCY"] if declared else []),
            *[m.upper() for m in metrics],
        ],
        [
            [
                v.ref,
                v.run_id,
                len(v.rows),
                v.passed,
                f"{v.pass_rate:.0%}",
                *([f"{v.json_parse_rate:.0%}"] if json_column else []),
                *(_decoding_cells(v) if declared else []),
                *[_metric_cell(v, m) for m in metrics],
            ]
            for v in report.versions
        ],
    )


def _exit_below(report: EvalReport, min_pass_rate: float | None) -> None:
    below = report.below(min_pass_rate)
    if below:
        click.echo(
            "error: pass rate below "
            f"{min_pass_rate:.0%}: " + ", ".join(f"{v.ref} {v.pass_rate:.0%}" for v in below),
            err=True,
        )
        raise click.exceptions.Exit(EXIT_BELOW_MIN)


def _eval_config(
    path: Path,
    *,
    import_prompts: bool,
    skip_unsupported: bool,
    output: Path | None,
    min_pass_rate: float | None,
    no_cache: bool,
    model: str | None,
    dtype: str,
    trust_remote_code: bool,
    as_json: bool,
) -> None:
    """`workbench eval --config promptfooconfig.yaml`: everything decided (and every file read)
    before a model loads; then one run per prompt and provider, scored per test."""
    from .backends import open_backend
    from .evaluate import report_dict, write_report
    from .promptfoo_config import load_config, run_config

    plan = load_config(path, skip_unsupported=skip_unsupported, model=model)
    for key, why in plan.ignored.items():
        click.echo(f"ignored: {key} ({why})" if why else f"ignored: {key}", err=True)
    for item in plan.skipped:
        click.echo(f"skipped (unsupported): {item}", err=True)
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    storage = Settings.from_env().storage_dir
    with _progress(as_json) as display:
        result = run_config(
            _library(),
            plan,
            lambda spec: open_backend(
                spec, storage, dtype=dtype, trust_remote_code=trust_remote_code
            ),
            import_prompts=import_prompts,
            use_cache=not no_cache,
            progress=(lambda line, p: display(p, line)) if display else None,
        )
    report = result.report
    if output is not None:
        write_report(report, output)
    if as_json:
        data = report_dict(report)
        data["promptfoo"] = {
            "config": str(path),
            "description": plan.description,
            "ignored": plan.ignored,
            "skipped": plan.skipped,
            "imported": result.imported,
            "tests": {
                line: [{"key": t.key, "description": t.description} for t in tests]
                for line, tests in result.tests.items()
            },
        }
        _echo_json(data)
    else:
        if plan.description:
            click.echo(plan.description)
        _eval_table(report)
        for line in result.failures():
            click.echo(line)
        total = sum(len(v.rows) for v in report.versions)
        passed = sum(v.passed for v in report.versions)
        click.echo(
            # a provider's `prompts:` can limit what it runs: counts, not a product
            f"{passed}/{total} passed ({passed / total:.0%}) · "
            f"{wording.plural(len(plan.prompts), 'prompt')}, "
            f"{wording.plural(len(plan.providers), 'provider')}, "
            f"{wording.plural(len(plan.tests), 'test')} · "
            f"{result.wall_s:.1f} s"
            if total
            else "nothing ran"
        )
        for ref in result.imported:
            click.echo(f"imported {ref}")
        if output is not None:
            click.echo(f"report written to {output}")
    _exit_below(report, min_pass_rate)


def _decoding_cells(version: VersionReport) -> list[str]:
    """How a version's answers were decoded and what it cost: the constraint (or "free"), the
    share that follow it, how many were cut by max_new_tokens, mean tokens and latency."""
    valid = version.valid_rate
    tokens = version.mean_tokens
    latency = version.mean_latency_s
    return [
        version.decoding or "—",
        "—" if valid is None else f"{valid:.0%}",
        str(version.cut),
        "—" if tokens is None else f"{tokens:.1f}",
        "—" if latency is None else f"{latency:.2f} s",
    ]


@app.command("ablate")
@click.argument("ref")
@click.option(
    "--dataset",
    required=True,
    help="A CSV or JSON Lines file, or a stored test set (NAME or NAME@VERSION): columns fill "
    "the variables; 'expected' holds the answer (exact match when the prompt has no assertions).",
)
@click.option(
    "--assert",
    "assertions",
    multiple=True,
    help="An assertion besides the prompt's metadata.assert, as for `workbench eval` "
    "(repeatable); every variant is scored with the same ones.",
)
@click.option(
    "--resamples",
    type=click.IntRange(100, 100_000),
    default=2000,
    show_default=True,
    help="Bootstrap resamples for the 95% confidence intervals.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling."
)
@click.option(
    "--save-best",
    is_flag=True,
    help="Save the best variant as the next version of the prompt, with a note listing what "
    "changed and the scores (nothing is saved when the original is best).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Print a table or JSON.",
)
@model_options
def ablate_command(
    ref: str,
    dataset: str,
    assertions: tuple[str, ...],
    resamples: int,
    seed: int,
    save_best: bool,
    fmt: str,
    model: str | None,
    dtype: str,
    trust_remote_code: bool,
) -> None:
    """Technique ablation of REF (NAME, NAME@VERSION, NAME@LABEL) on a dataset.

    Each technique block is removed in turn (examples, persona, constraints, chain-of-thought
    trigger, JSON schema), the other mode is tried, k-shot for k in 0, 1, 3, self-consistency
    with 1 and 5 samples, answer choices with and without calibration, where the prompt has
    them. Every variant is a stored trial version and an ordinary run; prints each variant's
    score with a bootstrap 95% CI and its difference from the original paired over rows (*
    marks a difference whose CI excludes 0).
    """
    from . import ablation

    library = _library()
    rows = _dataset_or_test_set(library, dataset)
    extra = _assertions(assertions)
    ablation.check_ablation(library, ref, rows, extra, resamples=resamples)  # before a model
    runner = _runner(model, dtype, trust_remote_code, library)
    with _progress(fmt == "json") as display:  # as for eval --json: stderr keeps errors only
        report = ablation.ablate(
            library,
            runner,
            ref,
            rows,
            extra,
            resamples=resamples,
            seed=seed,
            progress=(lambda label, p: display(p, label)) if display else None,
        )
    saved = ablation.save_best(library, report) if save_best else None
    if fmt == "json":
        data = ablation.report_dict(report)
        if saved is not None:
            data["saved"] = {
                "ref": saved.saved.version.ref if saved.saved is not None else None,
                "created": saved.saved.created if saved.saved is not None else False,
                "message": saved.message,
            }
        _echo_json(data)
        return
    _table(ablation.HEADERS, ablation.table_rows(report))
    for line in ablation.report_lines(report):
        click.echo(line)
    if saved is not None:
        click.echo(saved.message)


def _assertions(texts: Sequence[str]) -> list[Check]:
    """--assert values parsed, or one line naming the bad one."""
    from .scorers import parse_assertion

    extra = []
    for text in texts:
        try:
            extra.append(parse_assertion(text))
        except WorkbenchError as exc:
            raise WorkbenchError(f"--assert {text!r}: {exc}") from None
    return extra


EXIT_REFUSED = 2  # a search refused before it ran (bad sets, budget…), as a usage mistake


@app.command("improve")
@click.argument("ref")
@click.option("--train", required=True, help="Labelled examples to choose from (FILE|TESTSET).")
@click.option("--dev", required=True, help="The set the choice is scored on (FILE|TESTSET).")
@click.option(
    "--test",
    default=None,
    help="A held-out set (FILE|TESTSET): the original and the winner are scored on it at the "
    "end, never used to choose.",
)
@click.option(
    "--budget",
    type=int,
    default=24,
    show_default=True,
    help="Trials at most: one trial is one variant evaluated on the dev set.",
)
@click.option(
    "--strategy",
    type=click.Choice(["greedy", "random"]),
    default="greedy",
    show_default=True,
    help="greedy: forward selection; random: random subsets (the baseline).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the search order.")
@click.option(
    "--max-examples", type=int, default=9, show_default=True, help="Examples in the prompt at most."
)
@click.option(
    "--instructions",
    type=int,
    default=0,
    show_default=True,
    help="Ask the model for N rewrites of the prompt's instruction and try each (they count "
    "against the budget).",
)
@click.option(
    "--save",
    is_flag=True,
    help="Store the winner as the next version of the prompt (NAME@latest), with a note.",
)
@model_options
@json_flag
def improve_command(
    ref: str,
    train: str,
    dev: str,
    test: str | None,
    budget: int,
    strategy: str,
    seed: int,
    max_examples: int,
    instructions: int,
    save: bool,
    model: str | None,
    dtype: str,
    trust_remote_code: bool,
    as_json: bool,
) -> None:
    """Choose REF's few-shot examples (and how it asks) by their score on a dev set.

    Tries ways of asking (mode, answer choices from the train labels, calibration), then
    chooses examples from --train by greedy forward selection or random search, every trial
    a stored run. Prints the original's and the winner's dev and test scores side by side.
    Run it again after a kill or Ctrl+C: finished trials come from the cache.
    """
    from .improve import check_request, improve, report_dict, save_winner

    library = _library()
    try:
        sets = [_dataset_or_test_set(library, s) if s else None for s in (train, dev, test)]
        train_set, dev_set, test_set = sets
        assert train_set is not None and dev_set is not None
        check_request(
            library,
            ref,
            train_set,
            dev_set,
            test_set,
            budget=budget,
            strategy=strategy,
            max_examples=max_examples,
            instructions=instructions,
        )
    except WorkbenchError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_REFUSED) from None
    runner = _runner(model, dtype, trust_remote_code, library)
    with _progress(as_json, "trials") as display:
        report = improve(
            library,
            runner,
            ref,
            train_set,
            dev_set,
            test_set,
            budget=budget,
            strategy=strategy,
            seed=seed,
            max_examples=max_examples,
            instructions=instructions,
            progress=(lambda p: display(p.overall(), "trials")) if display else None,
        )
    saved = save_winner(library, report) if save else None
    if as_json:
        data = report_dict(report)
        data["saved"] = saved.version.ref if saved is not None else None
        _echo_json(data)
        return
    _table(
        ["TRIAL", "PHASE", "VARIANT", "DEV", "GENERATED"],
        [
            [t.number, t.phase, t.config.describe(), f"{t.dev.accuracy:.0%}", t.generated]
            for t in report.trials
        ],
    )
    click.echo()
    _table(
        ["", "VERSION", "VARIANT", "DEV", "TEST"],
        [
            [
                role,
                o.ref,
                o.config.describe(),
                f"{o.dev.accuracy:.0%} of {o.dev.rows}",
                f"{o.test.accuracy:.0%} of {o.test.rows}" if o.test is not None else "-",
            ]
            for role, o in (("original", report.original), ("winner", report.winner))
        ],
    )
    for change in report.changes():
        click.echo(f"- {change}")
    cached = sum(1 for t in report.trials if t.generated == 0)
    click.echo(
        f"{len(report.trials)} trials ({cached} from the cache), {report.wall_s:.0f} s"
        + (" — cancelled" if report.cancelled else "")
    )
    if save:
        click.echo(
            f"saved {saved.version.ref}"
            if saved is not None
            else "nothing saved: no variant beat the original on dev"
        )


SPLIT_ROWS_SHOWN = 20


@app.command("stability")
@click.argument("refs", nargs=-1)
@click.option(
    "--dataset",
    help="A CSV or JSON Lines file, or a stored test set (NAME or NAME@VERSION); an 'expected' "
    "column adds one-sample and majority accuracy.",
)
@click.option("--var", "var", multiple=True, help="One input instead: NAME=VALUE (repeatable).")
@click.option(
    "--seeds",
    type=int,
    default=5,
    show_default=True,
    help="Samples per row, each under its own seed (a greedy prompt samples at temperature 0.7).",
)
@click.option("--run", "run_id", type=int, help="Report on a stored sampled run instead.")
@click.option(
    "--answer-pattern",
    help="A regex that picks the answer out of each output (its first group, else the whole "
    "match; the last match counts), e.g. '(Positive|Negative|Neutral)'. Default: the prompt's "
    "own self-consistency pattern, else the whole output.",
)
@click.option("--output", type=click.Path(path_type=Path), help="Write the report: .json or .csv.")
@click.option("--param", "param", multiple=True, help="Generation parameter NAME=VALUE.")
@click.option("--no-cache", is_flag=True, help="Generate even when an identical output is stored.")
@model_options
@json_flag
def stability_command(
    refs: tuple[str, ...],
    dataset: str | None,
    var: tuple[str, ...],
    seeds: int,
    run_id: int | None,
    answer_pattern: str | None,
    output: Path | None,
    param: tuple[str, ...],
    no_cache: bool,
    model: str | None,
    dtype: str,
    trust_remote_code: bool,
    as_json: bool,
) -> None:
    """How stable are the answers of REFS (NAME, NAME@VERSION, NAME@LABEL) across seeds?

    Every row is drawn --seeds times; answers equal after normalisation (case, punctuation,
    articles, spaces) are grouped; each version gets its mean agreement with the majority
    answer, the share of unanimous rows and the distinct answers per row.
    """
    from .params import parse_param_pairs
    from .reports import report_format
    from .stability import (
        REPORT_FORMATS,
        check_pattern,
        check_seeds,
        measure,
        run_stability,
        summary_rows,
    )
    from .stability import report_dict as stability_dict
    from .stability import write_report as write_stability

    if output is not None:
        report_format(output, REPORT_FORMATS)
    library = _library()
    if run_id is not None:
        if refs or dataset or var:
            raise WorkbenchError("--run reports on a stored run: give no REFS, --dataset or --var")
        report = run_stability(library.store, run_id, answer_pattern)
    else:
        if not refs:
            raise WorkbenchError("give one or more prompt versions (REFS), or --run ID")
        if dataset and var:
            raise WorkbenchError("give either --dataset or --var, not both")
        if not dataset and not var:
            raise WorkbenchError("give the input: --dataset FILE|TESTSET or --var NAME=VALUE")
        check_seeds(seeds)
        check_pattern(answer_pattern)
        rows = _dataset_or_test_set(library, dataset) if dataset else [_parse_vars(list(var), None)]
        versions = [library.get(ref) for ref in refs]
        with _progress(as_json) as progress:
            report = measure(
                _runner(model, dtype, trust_remote_code, library),
                versions,
                rows,
                seeds,
                overrides=parse_param_pairs(list(param)),
                use_cache=not no_cache,
                progress=progress,
                answer_pattern=answer_pattern,
            )
    if output is not None:
        write_stability(report, output)
    if as_json:
        _echo_json(stability_dict(report))
        return
    lines = summary_rows(report)
    headers = list(dict.fromkeys(k for line in lines for k in line))
    _table(
        [h.upper() for h in headers],
        [[_stability_cell(h, line.get(h)) for h in headers] for line in lines],
    )
    split = [(v, r) for v in report.versions for r in v.rows if not r.unanimous]
    for v, r in split[:SPLIT_ROWS_SHOWN]:
        answers = ", ".join(f"{g.answer[:40]!r}×{g.count}" for g in r.groups[:4])
        none = f", no answer×{r.unanswered}" if r.unanswered else ""
        click.echo(f"{v.ref} row {r.row_index + 1}: {answers}{none}")
    if len(split) > SPLIT_ROWS_SHOWN:
        click.echo(f"… and {len(split) - SPLIT_ROWS_SHOWN} more split rows (see --output)")
    if output is not None:
        click.echo(f"report written to {output}")


def _stability_cell(header: str, value: Any) -> str:
    if value is None:
        return "-"
    if header in ("agreement", "unanimous", "one-sample accuracy", "majority accuracy"):
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _dataset_or_test_set(library: Library, source: str) -> Dataset:
    """A file when the path exists, else a stored test set of that name."""
    from .datasets import read_dataset
    from .errors import NotFoundError
    from .testsets import get_test_set

    path = Path(source)
    if path.exists():
        return read_dataset(path)
    try:
        return get_test_set(library.store, source)
    except NotFoundError as exc:
        raise WorkbenchError(f"--dataset {source}: no such file, and {exc}") from None


def _probability_scores(report: EvalReport) -> None:
    """Accuracy, log-loss, Brier and ECE from scored answer choices, raw and calibrated."""
    from .evaluate import PROBABILITY_HEADERS, probability_lines, probability_table

    table = probability_table(report)
    if table:
        click.echo()
        _table(
            [h.upper() for h in PROBABILITY_HEADERS],
            [[*line[:3], f"{line[3]:.0%}", *(f"{x:.3f}" for x in line[4:])] for line in table],
        )
    for line in probability_lines(report):
        click.echo(line)


def _metric_cell(version: VersionReport, metric: str) -> str:
    found = next((m for m in version.metrics if m.metric == metric), None)
    if found is None:
        return "-"
    mean = f"{found.mean:.2f} · " if found.mean is not None else ""
    return f"{mean}{found.pass_rate:.0%} pass"


@app.group("testsets")
def testsets_app() -> None:
    """Named, versioned datasets kept in the database for evaluations."""


@testsets_app.command("save")
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-m", "--note", default="", help="Why this version (shown in the list).")
def testsets_save(name: str, file: Path, note: str) -> None:
    """Save FILE (CSV or JSON Lines) as the next version of test set NAME."""
    from .datasets import read_dataset
    from .testsets import save_test_set

    info, created = save_test_set(_library().store, name, read_dataset(file), note)
    state = "saved as" if created else "unchanged: same rows as"
    rows = wording.plural(info.rows, "row")
    click.echo(f"{state} {info.ref} ({rows}; columns {', '.join(info.columns)})")


@testsets_app.command("list")
@json_flag
def testsets_list(as_json: bool) -> None:
    """Test sets with their latest version."""
    from .testsets import list_test_sets

    sets = list_test_sets(_library().store)
    if as_json:
        _echo_json([{**s.__dict__, "ref": s.ref} for s in sets])
        return
    _table(
        ["NAME", "LATEST", "ROWS", "COLUMNS", "NOTE"],
        [[s.name, f"v{s.version}", s.rows, ", ".join(s.columns), s.note] for s in sets],
    )


@testsets_app.command("show")
@click.argument("ref")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="CSV (one column per variable) or JSON Lines (one object per row).",
)
def testsets_show(ref: str, fmt: str) -> None:
    """Print test set REF (NAME or NAME@VERSION) as CSV or JSON Lines."""
    from .reports import csv_bytes
    from .testsets import get_test_set

    data = get_test_set(_library().store, ref)
    if fmt == "jsonl":
        for row in data.rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    columns = list(data.columns)
    rows = ([row.get(c) for c in columns] for row in data.rows)
    click.echo(csv_bytes(columns, rows).decode("utf-8"), nl=False)


@app.group("runs")
def runs_app() -> None:
    """Stored runs: list, show, resume, export."""


@runs_app.command("list")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@json_flag
def runs_list(limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from .runs import list_runs

    runs = list_runs(_library().store, limit=limit)
    if as_json:
        _echo_json([r.__dict__ for r in runs])
        return
    _table(
        ["RUN", "STATUS", "WHEN", "VERSIONS", "MODEL", "DATASET", "DONE", "CACHED"],
        [
            [
                r.id,
                r.status,
                r.created_at.strftime("%Y-%m-%d %H:%M"),
                ", ".join(r.versions),
                r.model,
                r.dataset or "-",
                f"{r.done}/{r.total}",
                r.cached,
            ]
            for r in runs
        ],
    )


@runs_app.command("show")
@click.argument("run_id", type=int)
@json_flag
def runs_show(run_id: int, as_json: bool) -> None:
    """Show a run and its outputs."""
    from .runner import RunSummary
    from .runs import get_run, run_outputs, run_votes

    store = _library().store
    record = get_run(store, run_id)
    summary = RunSummary(record, run_outputs(store, run_id), run_votes(store, run_id), 0.0, 0)
    if not as_json:
        click.echo(
            f"run {record.id} · {record.status} · {', '.join(record.versions)} · {record.model} "
            f"({record.revision}, {record.dtype}) · params {json.dumps(record.params)}"
        )
        if record.error:
            click.echo(f"error: {record.error}")
    _print_summary(summary, as_json)


@runs_app.command("resume")
@click.argument("run_id", type=int)
@click.option("--batch-size", type=int, help="Rows per batch (default: chosen from the lengths).")
@model_options
def runs_resume(
    run_id: int, batch_size: int | None, model: str | None, dtype: str, trust_remote_code: bool
) -> None:
    """Finish an interrupted run: generate only its missing outputs (same model required)."""
    from .runs import get_run

    record = get_run(_library().store, run_id)
    runner = _runner(model or record.model, dtype if model else record.dtype, trust_remote_code)
    with _progress(False, f"run {run_id}") as progress:
        summary = runner.resume(run_id, progress=progress, batch_size=batch_size)
    _print_summary(summary, False)


@runs_app.command("export")
@click.argument("run_id", type=int)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="jsonl",
    show_default=True,
    help="CSV for spreadsheets, JSON Lines for scripts.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    help="File or folder (default: stdout); in a folder the file is run-ID.FORMAT. A folder "
    "that does not exist yet is created when the path ends in /.",
)
def runs_export(run_id: int, fmt: str, output: str | None) -> None:
    """Export a run's outputs with their exact model input and parameters."""
    from .exchange import export_outputs
    from .runs import get_run, run_outputs

    store = _library().store
    get_run(store, run_id)
    data = export_outputs(run_outputs(store, run_id), fmt)
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
        return
    target = _output_file(output, f"run-{run_id}.{fmt}")  # the app's download name
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise WorkbenchError(f"cannot write {target}: {exc.strerror}") from None
    click.echo(f"wrote {target} ({len(data)} bytes)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the command, turn user-fixable problems into one line on stderr."""
    try:
        args = list(argv) if argv is not None else sys.argv[1:]
        result = app.main(args=args, prog_name="workbench", standalone_mode=False, obj=args)
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
        # One line: a database error's message goes on with its SQL, parameters and a link,
        # which the log keeps (with the traceback) and the terminal does not need.
        first = (str(exc).strip().splitlines() or [""])[0]
        click.echo(
            f"error: unexpected {type(exc).__name__}: {first} "
            "(set WORKBENCH_DEBUG=1 to see the traceback)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


def run() -> NoReturn:
    """The console script: `main()`, then end the process without the interpreter's teardown.

    Everything a command writes is written by then; what remains is tearing down the 500-odd
    modules a command imports, 0.15-0.3 s of CPU at every exit. On a machine busy with a model
    and a browser that stretched Ctrl+C's exit past 5 s, so it is skipped: exit handlers still
    run (log files are flushed, temporary folders removed) and so does the wait for any thread
    that is not a daemon (if one is alive, the normal exit takes over).
    """
    code = main()
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe (`workbench … | head`) or stream: nothing more can be written.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
