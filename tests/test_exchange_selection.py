"""Exporting a chosen set of versions as one zip (the Library page's "download a selection")."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from conftest import PromptText

from workbench.errors import NotFoundError, WorkbenchError
from workbench.exchange import export_prompt, export_versions, import_files
from workbench.library import Library
from workbench.store import Store


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture
def two_prompts(library: Library, prompt_text: PromptText) -> Library:
    """'alpha' v1…v3 with 'production' on v2; 'beta' v1."""
    for n in (1, 2, 3):
        library.save(prompt_text("alpha", f"user:\nalpha {n} {{{{ text }}}}\n"), f"alpha {n}")
    library.save(prompt_text("beta", "user:\nbeta {{ text }}\n"), "beta")
    library.set_label("alpha@2", "production")
    return library


def test_selection_holds_exactly_the_chosen_versions(two_prompts: Library) -> None:
    export = export_versions(two_prompts, ["beta@1", "alpha@3", "alpha@1"])
    assert export.filename == "prompt-versions.zip"
    assert export.media_type == "application/zip"
    files = entries(export.data)
    assert list(files) == ["alpha/v1.prompty", "alpha/v3.prompty", "beta/v1.prompty"]
    for path, data in files.items():
        name, number = path.removesuffix(".prompty").split("/v")
        assert data == two_prompts.get(f"{name}@{number}").export_text().encode("utf-8")


def test_a_version_named_twice_is_written_once(two_prompts: Library) -> None:
    export = export_versions(two_prompts, ["alpha@production", "alpha@2", "alpha@v2"])
    assert list(entries(export.data)) == ["alpha/v2.prompty"]
    assert b"production" in entries(export.data)["alpha/v2.prompty"]


def test_selection_is_deterministic_and_matches_whole_prompt_export(two_prompts: Library) -> None:
    refs = ["alpha@3", "alpha@2", "alpha@1"]
    first = export_versions(two_prompts, refs).data
    assert export_versions(two_prompts, list(reversed(refs))).data == first
    assert first == export_prompt(two_prompts, "alpha").data


@pytest.mark.parametrize(
    ("refs", "error", "message"),
    [
        ([], WorkbenchError, "choose at least one version"),
        (["alpha@1", "alpha@9"], NotFoundError, "alpha has no version 9"),
        (["gamma@1"], NotFoundError, "no prompt named 'gamma'"),
        (["alpha@staging"], NotFoundError, "alpha has no label 'staging'"),
    ],
)
def test_bad_selections_are_refused(
    two_prompts: Library, refs: list[str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        export_versions(two_prompts, refs)


def test_selection_imports_into_an_empty_library_with_its_numbers(
    two_prompts: Library, make_store: Callable[[str], Store]
) -> None:
    export = export_versions(two_prompts, ["alpha@1", "alpha@3", "alpha@production"])
    empty = Library(make_store("other"))
    report = import_files(empty, [(export.filename, export.data)])
    assert report.created == ["alpha@1", "alpha@2", "alpha@3"]
    assert [(v.number, v.note) for v in empty.versions("alpha")] == [
        (1, "alpha 1"),
        (2, "alpha 2"),
        (3, "alpha 3"),
    ]
    assert empty.get("alpha@production").number == 2
    again = export_versions(empty, ["alpha@1", "alpha@2", "alpha@3"])
    assert again.data == export.data
