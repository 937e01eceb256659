"""Library chatter goes to the log file unless --verbose (workbench/logs.py, `workbench -v`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BUILTIN_PROMPTS_DIR, REPO_ROOT

from workbench import logs
from workbench.cli import main
from workbench.errors import WorkbenchError

Cli = Callable[..., tuple[int, str, str]]


def log_text() -> str:
    path = logs.log_file(Path(os.environ["WORKBENCH_STORAGE_DIR"]))
    return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], builtins: dict[str, str]) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


# --- in-process ---------------------------------------------------------------------------------


def test_warnings_and_library_records_go_to_the_file_and_everything_is_put_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled

    path = tmp_path / "logs" / "workbench.log"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    bars_off = are_progress_bars_disabled()
    showwarning = warnings.showwarning
    hub = logging.getLogger("huggingface_hub")
    own = logging.StreamHandler(sys.stderr)  # what the library installs on import
    hub.addHandler(own)
    try:
        with logs.command_logging(path, verbose=False, command=["run", "x"]):
            warnings.warn("a torch-style warning", UserWarning, stacklevel=1)
            hub.warning("a hub notice")
            logging.getLogger("workbench.runner").info("our own record")
            assert are_progress_bars_disabled()
        assert capsys.readouterr().err == ""
        text = path.read_text(encoding="utf-8")
        assert "workbench.command: workbench run x" in text
        assert "a torch-style warning" in text and "a hub notice" in text
        assert "our own record" in text
        assert root.handlers == handlers and root.level == level
        assert own in hub.handlers
        assert are_progress_bars_disabled() == bars_off
        assert warnings.showwarning is showwarning
    finally:
        hub.removeHandler(own)


def test_verbose_leaves_the_libraries_on_stderr_and_still_keeps_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workbench.log"
    with logs.command_logging(path, verbose=True, command=["run"]):
        with pytest.warns(UserWarning, match="still a warning"):
            warnings.warn("still a warning", UserWarning, stacklevel=1)
        logging.getLogger("httpx").warning("a library warning")
    assert "WARNING httpx: a library warning" in capsys.readouterr().err
    assert "a library warning" in path.read_text(encoding="utf-8")


def test_the_error_that_ends_a_command_is_logged_but_never_printed_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workbench.log"
    for verbose in (False, True):
        with pytest.raises(WorkbenchError), logs.command_logging(path, verbose=verbose):
            raise WorkbenchError("no such prompt")
        assert capsys.readouterr().err == ""
    with pytest.raises(ZeroDivisionError), logs.command_logging(path, verbose=False):
        _ = 1 / 0
    text = path.read_text(encoding="utf-8")
    assert text.count("error: no such prompt") == 2
    assert "unexpected error" in text and "ZeroDivisionError" in text and "Traceback" in text


def test_control_flow_exceptions_are_not_errors(tmp_path: Path) -> None:
    path = tmp_path / "workbench.log"
    with (
        pytest.raises(SystemExit),
        logs.command_logging(path, verbose=False, not_errors=(SystemExit,)),
    ):
        raise SystemExit(3)
    assert "error" not in path.read_text(encoding="utf-8")


def test_an_unwritable_log_folder_leaves_the_chatter_on_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with logs.command_logging(blocked / "logs" / "workbench.log", verbose=False):
        logging.getLogger("httpx").warning("still seen")
    assert "still seen" in capsys.readouterr().err


def test_a_cli_error_is_one_line_on_stderr_with_or_without_verbose(cli: Cli) -> None:
    for args in (["prompts", "show", "nope"], ["--verbose", "prompts", "show", "nope"]):
        code, _, err = cli(*args)
        assert code == 1
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert log_text().count("ERROR workbench.command: error: ") == 2


def test_verbose_can_come_from_the_environment(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKBENCH_VERBOSE", "1")
    with pytest.MonkeyPatch.context() as m:
        seen: list[bool] = []
        real = logs.command_logging

        def spy(*args: object, **kwargs: bool) -> object:
            seen.append(kwargs["verbose"])
            return real(*args, **kwargs)  # type: ignore[arg-type]

        m.setattr(logs, "command_logging", spy)
        code, _, _ = cli("prompts", "list")
    assert code == 0 and seen == [True]


# --- a fresh process loading the tiny model -------------------------------------------------------


@pytest.fixture
def noisy_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with a generation config transformers complains about when it loads."""
    folder = tmp_path / "noisy-model"
    shutil.copytree(tiny_model_dir, folder)
    path = folder / "generation_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    config.update(do_sample=False, temperature=0.5, top_p=0.3)
    path.write_text(json.dumps(config), encoding="utf-8")
    return folder


def workbench(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKBENCH_PROMPTS_DIR": str(BUILTIN_PROMPTS_DIR), "HF_HUB_OFFLINE": "1"}
    for name in ("WORKBENCH_VERBOSE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *map(str, args)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_loading_a_model_prints_no_bars_or_warnings_unless_verbose(
    noisy_model: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("text\ngood\nbad\n", encoding="utf-8")
    args = ["run", "zero-shot-sentiment", "--dataset", rows, "--model", noisy_model]
    args += ["--param", "max_new_tokens=2", "--no-cache"]

    quiet = workbench(*args)
    assert quiet.returncode == 0, quiet.stderr
    assert "\r" not in quiet.stderr and "Loading weights" not in quiet.stderr
    assert "generation flags" not in quiet.stderr
    assert all(line.startswith("zero-shot-sentiment@1: ") for line in quiet.stderr.splitlines())
    text = log_text()
    assert "generation flags are not valid" in text  # transformers' notice, kept in the file
    assert "workbench.command: workbench run zero-shot-sentiment" in text

    loud = workbench("--verbose", *args)
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr and "generation flags" in loud.stderr
