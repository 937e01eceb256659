"""Bad input: every problem is one clear message naming the file and line; nothing is written.

Each case goes through three doors: parsing, the library's import (the database must not change)
and the CLI (`workbench import`: exit status 1, one `error:` line on stderr, no traceback).
"""

from __future__ import annotations

import bz2
import io
import os
import zipfile
from pathlib import Path

import pytest
from conftest import PromptText, count_versions
from zips import BZIP2, DEFLATED, ENCRYPTED, UTF8_NAME, Member, deflated, raw_zip

from workbench.cli import main
from workbench.errors import (
    ImportRejected,
    MissingVariablesError,
    NotFoundError,
    PromptFileError,
    UnsafeTemplateError,
)
from workbench.exchange import import_files
from workbench.library import Library
from workbench.store import get_store
from workbench.templates import parse_prompt, parse_prompt_bytes

TEN_MB = 10 * 1024 * 1024

# (id, file bytes, the problem as reported, the file line or None)
BAD_FILES: list[tuple[str, bytes, str, int | None]] = [
    (
        "jinja-syntax-error",
        b"---\nname: broken\n---\nuser:\nHello\n{{ name + }}\nbye\n",
        "template syntax error: unexpected 'end of print statement'",
        6,
    ),
    (
        "unclosed-expression",
        b"---\nname: broken\ninputs:\n  a: x\n---\nuser:\n{{ a\n",
        "template syntax error",
        7,
    ),
    (
        "literal-json-braces",
        b'---\nname: broken\n---\nuser:\nAnswer like {{ "answer": 42 }}\n',
        "this looks like literal JSON or braces: wrap it in {% raw %}",
        5,
    ),
    (
        "escape-mro",
        b"---\nname: esc\n---\nuser:\n{{ ''.__class__.__mro__ }}\n",
        "refused: the template reaches for the internal attribute",
        5,
    ),
    (
        "escape-globals",
        b"---\nname: esc\n---\nuser:\n{{ cycler.__init__.__globals__ }}\n",
        "refused: the template reaches for the internal attribute",
        5,
    ),
    (
        "escape-attr-filter",
        b"---\nname: esc\n---\nuser:\nhi\n{{ x|attr('__class__') }}\n",
        "refused: the template reaches for the internal attribute '__class__'",
        6,
    ),
    (
        "escape-self",
        b"---\nname: esc\n---\nuser:\n{{ self.__init__ }}\n",
        "refused: the template reaches for the internal attribute '__init__'",
        5,
    ),
    (
        "escape-subscript",
        b"---\nname: esc\n---\nuser:\n{{ x['__class__'] }}\n",
        "refused: the template reaches for the internal attribute '__class__'",
        5,
    ),
    (
        "include",
        b"---\nname: esc\n---\nuser:\n{% include '/etc/passwd' %}\n",
        "refused: templates cannot include, import or extend other templates",
        5,
    ),
    (
        "bad-yaml",
        b"---\nname: broken\ndescription: a: b\n---\nuser:\nhi\n",
        "malformed front matter: mapping values are not allowed in this context",
        3,
    ),
    (
        "bad-yaml-indentation",
        b"---\nname: broken\ninputs:\n  a:\n    kind: string\n   default: 1\n---\nhi\n",
        "malformed front matter",
        6,
    ),
    (
        "front-matter-not-a-mapping",
        b"---\n- just\n- a list\n---\nhi\n",
        "malformed front matter: expected 'key: value' lines",
        2,
    ),
    (
        "no-front-matter",
        b"user:\nhi\n",
        "missing front matter",
        1,
    ),
    (
        "front-matter-not-closed",
        b"---\nname: broken\nuser:\nhi\n",
        "front matter is not closed",
        1,
    ),
    (
        "no-name",
        b"---\ndescription: nameless\n---\nhi\n",
        "front matter needs a 'name'",
        2,
    ),
    (
        "bad-name",
        b"---\ndescription: x\nname: ../../etc\n---\nhi\n",
        "name '../../etc' is not usable",
        3,
    ),
    (
        "unknown-kind",
        b"---\nname: broken\ninputs:\n  a:\n    kind: strnig\n---\n{{ a }}\n",
        "input 'a' has unknown kind 'strnig'",
        3,
    ),
    (
        "unknown-api-type",
        b"---\nname: broken\nmodel:\n  apiType: embeddings\n---\nhi\n",
        "model.apiType 'embeddings' is not a mode",
        4,
    ),
    (
        "unknown-section-header",
        b"---\nname: broken\n---\nsytem:\nYou are helpful.\nuser:\nhi\n",
        "unknown section header 'sytem:'",
        4,
    ),
    (
        "unsupported-role",
        b"---\nname: broken\n---\nuser:\nhi\ntool:\nresult\n",
        "unknown section header 'tool:'",
        6,
    ),
    ("empty-file", b"", "the file is empty", None),
    ("blank-file", b"  \n\n\t\n", "the file is empty", None),
    (
        "not-utf8",
        b"---\nname: latin\n---\nuser:\nCaf\xe9\n",
        "not UTF-8 text (byte 0xe9 at offset 29); save the file as UTF-8",
        None,
    ),
    (
        "utf16",
        "---\nname: wide\n---\nhi\n".encode("utf-16"),
        "not UTF-8 text",
        None,
    ),
    (
        "reserved-characters",
        "---\nname: odd\n---\nuser:\n\ue000x\ue001\n".encode(),
        "reserved characters",
        None,
    ),
    (
        "ten-megabytes",
        b"---\nname: big\n---\nuser:\n" + b"x" * TEN_MB,
        "file is 10.0 MB; prompt files are limited to 1024 KB",
        None,
    ),
]
BAD_IDS = [case[0] for case in BAD_FILES]
# Prompty's shorthands: refused where text must name itself (parsing), read where a file's name
# can name it (import, `prompts save` and `lint` of a file; tests/test_prompty_files.py).
SHORTHANDS = ("no-front-matter", "no-name")
BAD_IMPORTS = [case for case in BAD_FILES if case[0] not in SHORTHANDS]
BAD_IMPORT_IDS = [case[0] for case in BAD_IMPORTS]


def where(source: str, line: int | None) -> str:
    return source if line is None else f"{source}, line {line}"


@pytest.fixture
def seeded(library: Library, prompt_text: PromptText) -> Library:
    """A library that already holds something, so 'unchanged' means more than 'still empty'."""
    library.save(prompt_text("existing"))
    return library


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "data", "problem", "line"), BAD_FILES, ids=BAD_IDS)
def test_parse_reports_file_and_line(
    case: str, data: bytes, problem: str, line: int | None
) -> None:
    with pytest.raises(PromptFileError) as info:
        parse_prompt_bytes(data, "bad.prompty")
    error = info.value
    assert error.source == "bad.prompty"
    assert error.line == line
    assert problem in error.problem
    assert str(error).startswith(where("bad.prompty", line) + ": ")
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ x|attr('__class__') }}",
        "{{ self.__init__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ x | map(attribute='__class__') | list }}",
        "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_sandbox_escapes_refused_before_rendering(
    expression: str, seeded: Library, prompt_text: PromptText
) -> None:
    text = prompt_text("esc", body=f"user:\n{expression}\n", inputs={"x": {"default": "v"}})
    with pytest.raises(UnsafeTemplateError, match="refused"):
        parse_prompt(text)
    before = count_versions(seeded.store)
    with pytest.raises(UnsafeTemplateError):
        seeded.save(text)
    assert count_versions(seeded.store) == before


@pytest.mark.parametrize(
    "expression",
    [
        "{{ x | attr('_' ~ '_class__') }}",
        "{{ x[('_' * 2) ~ 'class' ~ ('_' * 2)] }}",
        "{{ x.format.__self__ }}",
    ],
    ids=["attr-computed", "subscript-computed", "method-self"],
)
def test_computed_escapes_refused_at_render(expression: str, prompt_text: PromptText) -> None:
    """Names built at run time pass the static check; the sandbox still refuses them."""
    text = prompt_text("esc", body=f"user:\n{expression}\n", inputs={"x": {"default": "v"}})
    try:
        pf = parse_prompt(text)
    except UnsafeTemplateError:
        return  # refused even earlier: fine
    with pytest.raises(UnsafeTemplateError) as info:
        pf.render()
    assert info.value.line == pf.body_line + 1


def test_missing_variable_named(prompt_text: PromptText) -> None:
    pf = parse_prompt(
        prompt_text(
            "need", body="user:\n{{ who }} {{ text }}\n", inputs={"who": {"kind": "string"}}
        )
    )
    with pytest.raises(MissingVariablesError) as info:
        pf.render({"text": "t"})
    assert str(info.value) == (
        "need: missing variable: who (pass it with --var NAME=VALUE or a vars file)"
    )


def test_missing_field_of_a_variable_names_line(prompt_text: PromptText) -> None:
    pf = parse_prompt(
        prompt_text(
            "need", body="user:\nhi\n{{ text.missing }}\n", inputs={"text": {"kind": "object"}}
        )
    )
    with pytest.raises(PromptFileError) as info:
        pf.render({"text": {"present": 1}})
    assert info.value.line == pf.body_line + 2
    assert "has no attribute 'missing'" in str(info.value)


# --- import: refused whole, nothing written ---------------------------------------------------


@pytest.mark.parametrize(("case", "data", "problem", "line"), BAD_IMPORTS, ids=BAD_IMPORT_IDS)
def test_import_rejects_and_writes_nothing(
    case: str, data: bytes, problem: str, line: int | None, seeded: Library
) -> None:
    before = count_versions(seeded.store)
    with pytest.raises(ImportRejected) as info:
        import_files(seeded, [("bad.prompty", data)])
    [(source, message)] = info.value.problems
    assert source == "bad.prompty"
    assert problem in message
    if line is not None:
        assert message.startswith(f"line {line}: ")
    assert str(info.value).startswith("import rejected, nothing was written: bad.prompty: ")
    assert count_versions(seeded.store) == before


def test_good_and_bad_files_import_nothing(seeded: Library, prompt_text: PromptText) -> None:
    before = count_versions(seeded.store)
    good = prompt_text("good").encode()
    bad = b"---\nname: bad\n---\nuser:\n{{ oops +}}\n"
    with pytest.raises(ImportRejected) as info:
        import_files(seeded, [("good.prompty", good), ("bad.prompty", bad)])
    assert [source for source, _ in info.value.problems] == ["bad.prompty"]
    assert "good.prompty" not in str(info.value)
    assert count_versions(seeded.store) == before
    with pytest.raises(NotFoundError):
        seeded.get("good")


def test_every_bad_file_is_named(seeded: Library, prompt_text: PromptText) -> None:
    files = [
        ("a.prompty", b""),
        ("ok.prompty", prompt_text("ok").encode()),
        ("b.prompty", b"---\nname: b\n---\nsytem:\nx\n"),
    ]
    with pytest.raises(ImportRejected) as info:
        import_files(seeded, files)
    assert [source for source, _ in info.value.problems] == ["a.prompty", "b.prompty"]


def make_zip(entries: dict[str, bytes | str] | bytes) -> bytes:
    """A zip of these entries, written by zipfile; bytes are a zip built by hand (tests/zips.py)."""
    if isinstance(entries, bytes):
        return entries
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


GOOD = "---\nname: fine\n---\nuser:\nhi\n"
BAD_ZIPS = [
    ("parent-dir", {"../x.prompty": GOOD}, "bad.zip:../x.prompty", "unsafe path in zip"),
    ("nested-parent", {"a/../../x.prompty": GOOD}, "bad.zip:a/../../x.prompty", "unsafe path"),
    ("absolute", {"/etc/x.prompty": GOOD}, "bad.zip:/etc/x.prompty", "unsafe path in zip"),
    ("drive-letter", {"C:/x.prompty": GOOD}, "bad.zip:C:/x.prompty", "unsafe path in zip"),
    ("backslash", {"..\\x.prompty": GOOD}, "bad.zip:..\\x.prompty", "unsafe path in zip"),
    (
        "good-and-traversal",
        {"fine/v1.prompty": GOOD, "../evil.prompty": GOOD},
        "bad.zip:../evil.prompty",
        "unsafe path in zip",
    ),
    (
        "bad-entry",
        {"fine/v1.prompty": GOOD, "broken/v1.prompty": "---\nname: broken\n---\n{{ x +\n"},
        "bad.zip:broken/v1.prompty",
        "line 4: template syntax error",
    ),
    (
        "oversized-entry",
        {"big/v1.prompty": "---\nname: big\n---\n" + "x" * (2 * 1024 * 1024)},
        "bad.zip:big/v1.prompty",
        "file is 2.0 MB; prompt files are limited to 1024 KB",
    ),
    (
        "name-not-utf8",
        raw_zip(Member(b"caf\xe9/v1.prompty", GOOD.encode(), flags=UTF8_NAME)),
        "bad.zip:caf\\xe9/v1.prompty",
        "member name is marked UTF-8 but is not valid UTF-8",
    ),
    (
        "encrypted",
        raw_zip(
            Member("fine/v1.prompty", GOOD.encode()),
            Member("secret/v1.prompty", b"\x8a" * 40, flags=ENCRYPTED),
        ),
        "bad.zip:secret/v1.prompty",
        "encrypted; export the zip again without a password",
    ),
    (
        "bzip2",
        raw_zip(Member("fine/v1.prompty", bz2.compress(GOOD.encode()), len(GOOD), BZIP2)),
        "bad.zip:fine/v1.prompty",
        "compressed with method 12; only stored and deflate members are read",
    ),
    (
        "duplicate-name",
        raw_zip(Member("fine/v1.prompty", GOOD.encode()), Member("fine/v1.prompty", b"other")),
        "bad.zip:fine/v1.prompty",
        "the zip holds more than one member of this name",
    ),
    (
        "duplicate-after-normalising",
        {"fine/v1.prompty": GOOD, "fine/./v1.prompty": GOOD.replace("hi", "hello")},
        "bad.zip:fine/./v1.prompty",
        "the zip holds more than one member of this name",
    ),
    (
        "zero-length-member",
        {"fine/v1.prompty": GOOD, "empty/v1.prompty": ""},
        "bad.zip:empty/v1.prompty",
        "the file is empty",
    ),
    (
        "crc-mismatch",
        raw_zip(Member("fine/v1.prompty", GOOD.encode(), crc=1234)),
        "bad.zip:fine/v1.prompty",
        "does not match its header (Bad CRC-32",
    ),
    (
        "size-understated",
        raw_zip(Member("fine/v1.prompty", deflated(GOOD.encode() * 50), 20, DEFLATED, crc=0)),
        "bad.zip:fine/v1.prompty",
        "reading stopped at the 20 bytes it declares",
    ),
    (
        "broken-deflate",
        raw_zip(Member("fine/v1.prompty", b"\xff" * 30, len(GOOD), DEFLATED)),
        "bad.zip:fine/v1.prompty",
        "does not match its header (Error -3 while decompressing data",
    ),
]


@pytest.mark.parametrize(
    ("case", "entries", "source", "problem"), BAD_ZIPS, ids=[c[0] for c in BAD_ZIPS]
)
def test_bad_zip_rejected_whole(
    case: str,
    entries: dict[str, bytes | str] | bytes,
    source: str,
    problem: str,
    seeded: Library,
) -> None:
    before = count_versions(seeded.store)
    with pytest.raises(ImportRejected) as info:
        import_files(seeded, [("bad.zip", make_zip(entries))])
    assert [s for s, _ in info.value.problems] == [source]
    assert problem in info.value.problems[0][1]
    assert count_versions(seeded.store) == before
    with pytest.raises(NotFoundError):
        seeded.get("fine")


def test_corrupt_zip(seeded: Library) -> None:
    before = count_versions(seeded.store)
    with pytest.raises(ImportRejected) as info:
        import_files(seeded, [("lib.zip", b"PK\x03\x04 this is not really a zip")])
    assert info.value.problems == [("lib.zip", "not a valid zip file")]
    assert count_versions(seeded.store) == before


def test_missing_version_clear_error(seeded: Library) -> None:
    with pytest.raises(NotFoundError, match=r"^existing has no version 99 \(versions are 1…1\)$"):
        seeded.get("existing@99")


# --- the same through the CLI -----------------------------------------------------------------


def cli_versions() -> int:
    return count_versions(get_store(os.environ["WORKBENCH_DATABASE_URL"]))


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *phrases: str) -> None:
    assert code == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.fixture
def cli_seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str], prompt_text: PromptText) -> None:
    seed = tmp_path / "existing.prompty"
    seed.write_text(prompt_text("existing"), encoding="utf-8")
    assert main(["import", str(seed)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(("case", "data", "problem", "line"), BAD_IMPORTS, ids=BAD_IMPORT_IDS)
def test_cli_import_bad_file(
    case: str,
    data: bytes,
    problem: str,
    line: int | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cli_seeded: None,
) -> None:
    path = tmp_path / "bad.prompty"
    path.write_bytes(data)
    before = cli_versions()
    code, out, err = run(["import", str(path)], capsys)
    expected = "bad.prompty: " + (f"line {line}: " if line is not None else "")
    assert_one_error_line(code, err, "import rejected, nothing was written", expected, problem)
    assert out == ""
    assert cli_versions() == before


@pytest.mark.parametrize(
    ("case", "entries", "source", "problem"), BAD_ZIPS, ids=[c[0] for c in BAD_ZIPS]
)
def test_cli_import_bad_zip(
    case: str,
    entries: dict[str, bytes | str] | bytes,
    source: str,
    problem: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cli_seeded: None,
) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(make_zip(entries))
    before = cli_versions()
    code, _, err = run(["import", str(path)], capsys)
    assert_one_error_line(code, err, source, problem)
    assert cli_versions() == before


def test_cli_import_good_and_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_seeded: None
) -> None:
    good, bad = tmp_path / "good.prompty", tmp_path / "bad.prompty"
    good.write_text(GOOD, encoding="utf-8")
    bad.write_text("---\nname: bad\n---\nuser:\n{{ ''.__class__ }}\n", encoding="utf-8")
    before = cli_versions()
    code, _, err = run(["import", str(good), str(bad)], capsys)
    assert_one_error_line(code, err, "bad.prompty: line 5: refused")
    assert "good.prompty" not in err
    assert cli_versions() == before
    code, _, err = run(["prompts", "show", "fine"], capsys)
    assert_one_error_line(code, err, "no prompt named 'fine'")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["prompts", "show", "existing@99"], "existing has no version 99 (versions are 1…1)"),
        (["prompts", "render", "existing@99"], "existing has no version 99"),
        (["prompts", "render", "existing@nolabel"], "existing has no label 'nolabel'"),
        (["prompts", "versions", "exisitng"], "no prompt named 'exisitng' — did you mean"),
        (["prompts", "diff", "existing@1", "existing@99"], "has no version 99"),
        (["prompts", "restore", "existing@99"], "has no version 99"),
        (["prompts", "label", "existing@99", "production"], "has no version 99"),
        (["prompts", "label", "existing@1", "Not Valid"], "label 'Not Valid' is not usable"),
        (["prompts", "label", "existing", "prod", "--remove"], "existing has no label 'prod'"),
        (["export", "existing@99"], "has no version 99"),
        (["export", "nothing"], "no prompt named 'nothing'"),
        (["prompts", "render", "existing", "--var", "novalue"], "--var expects NAME=VALUE"),
        (["import", "/no/such/file.prompty"], "cannot read /no/such/file.prompty"),
        (["prompts", "save", "/no/such/file.prompty"], "cannot read /no/such/file.prompty"),
        (["prompts", "render", "@3"], "is not a prompt reference"),
    ],
)
def test_cli_errors_are_one_line(
    args: list[str], phrase: str, capsys: pytest.CaptureFixture[str], cli_seeded: None
) -> None:
    before = cli_versions()
    code, _, err = run(args, capsys)
    assert_one_error_line(code, err, phrase)
    assert cli_versions() == before


def test_cli_render_missing_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prompt_text: PromptText
) -> None:
    path = tmp_path / "need.prompty"
    path.write_text(
        prompt_text("need", body="user:\n{{ who }}\n", inputs={"who": {"kind": "string"}}),
        encoding="utf-8",
    )
    assert main(["prompts", "save", str(path)]) == 0
    capsys.readouterr()
    code, _, err = run(["prompts", "render", "need"], capsys)
    assert_one_error_line(code, err, "need: missing variable: who")
    code, _, err = run(["prompts", "render", "need", "--var", "who=x", "--var", "n"], capsys)
    assert_one_error_line(code, err, "--var expects NAME=VALUE, got 'n'")


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("[1, 2]", "must hold a JSON object"),
        ("{not json", "is not JSON"),
        (None, "cannot read vars file"),
    ],
)
def test_cli_bad_vars_file(
    content: str | None,
    phrase: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cli_seeded: None,
) -> None:
    path = tmp_path / "vars.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, _, err = run(["prompts", "render", "existing", "--vars-file", str(path)], capsys)
    assert_one_error_line(code, err, phrase)


def test_cli_bad_kind_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prompt_text: PromptText
) -> None:
    path = tmp_path / "n.prompty"
    path.write_text(
        prompt_text("n", body="user:\n{{ n }}\n", inputs={"n": {"kind": "integer", "default": 1}}),
        encoding="utf-8",
    )
    assert main(["prompts", "save", str(path)]) == 0
    capsys.readouterr()
    code, _, err = run(["prompts", "render", "n", "--var", "n=many"], capsys)
    assert_one_error_line(code, err, "variable 'n' should be an integer, got 'many'")


@pytest.mark.parametrize(("case", "data", "problem", "line"), BAD_FILES[:6], ids=BAD_IDS[:6])
def test_cli_save_and_lint_bad_file(
    case: str,
    data: bytes,
    problem: str,
    line: int | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cli_seeded: None,
) -> None:
    path = tmp_path / "bad.prompty"
    path.write_bytes(data)
    before = cli_versions()
    for command in (["prompts", "save", str(path)], ["prompts", "lint", str(path)]):
        code, _, err = run(command, capsys)
        assert_one_error_line(code, err, f"{where(str(path), line)}: ", problem)
    assert cli_versions() == before
