"""The README is the first thing a person reads: every command and setting must be in it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from workbench.cli import app
from workbench.config import ENVIRONMENT_VARIABLES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "workbench") -> list[str]:
    out = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            out += _commands(command, path)
        else:
            out.append(path)
    return out


@pytest.mark.parametrize("command", _commands(app))
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"`{command}" in README


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT_VARIABLES))
def test_every_setting_is_in_the_readme(variable: str) -> None:
    assert f"`{variable}`" in README


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "bash scripts/serve" in first_block and "bash scripts/test" in first_block


ROOT = Path(__file__).resolve().parent.parent


def test_every_page_is_described_and_every_picture_exists() -> None:
    import re

    pages = sorted((ROOT / "workbench" / "app" / "pages").glob("*.py"))
    assert len(pages) == 7
    for page in pages:
        title = page.stem.split("_", 1)[1]
        assert f"- **{title}** —" in README, title
    pictures = re.findall(r"\]\((docs/screenshots/[^)]+)\)", README)
    assert pictures
    for picture in pictures:
        assert (ROOT / picture).is_file(), picture


def test_every_model_option_is_in_the_readmes_table() -> None:
    from workbench.params import MODEL_OPTIONS

    rows = [line for line in README.splitlines() if line.startswith("| `")]
    for option in MODEL_OPTIONS:
        assert any(row.startswith(f"| `{option.name}` | `{option.field}` |") for row in rows), (
            option.name
        )
