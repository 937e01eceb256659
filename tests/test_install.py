"""The workbench installs like a Python package: built-in prompts ship as package data, storage
goes to the user data folder (never into site-packages), and `workbench serve` needs no project
folder. The slow test builds the wheel and uses it from a throwaway virtual environment."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from servers import free_port, serving

from workbench import config
from workbench.config import BUILTIN_PROMPTS, Settings

BUILTIN_NAMES = sorted(
    p.name.removesuffix(".prompty")
    for p in BUILTIN_PROMPTS.iterdir()
    if p.name.endswith(".prompty")
)


def test_the_builtins_are_package_data_and_the_default() -> None:
    assert len(BUILTIN_NAMES) == 13
    assert Path(str(BUILTIN_PROMPTS)) == REPO_ROOT / "workbench" / "prompts"
    top = REPO_ROOT / "prompts"  # one place for the files: the top-level folder is a link
    assert top.is_symlink() and top.resolve() == Path(str(BUILTIN_PROMPTS)).resolve()
    assert Settings.from_env({}).prompts_dir == BUILTIN_PROMPTS
    assert Settings.from_env({"WORKBENCH_PROMPTS_DIR": "/x"}).prompts_dir == Path("/x")


def test_a_checkout_keeps_its_storage_folder() -> None:
    assert config.source_checkout() == REPO_ROOT
    settings = Settings.from_env({})
    assert settings.storage_dir == REPO_ROOT / "storage"
    assert settings.database_url == f"sqlite:///{REPO_ROOT / 'storage' / 'workbench.db'}"
    assert Settings.from_env({"WORKBENCH_STORAGE_DIR": "/data/wb"}).storage_dir == Path("/data/wb")


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG folders are Linux's")
def test_an_installed_package_stores_in_the_user_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("platformdirs", reason="a dependency of the package: run scripts/setup")
    monkeypatch.setattr(config, "source_checkout", lambda: None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert Settings.from_env({}).storage_dir == tmp_path / "prompt-workbench"
    assert Settings.from_env({"WORKBENCH_STORAGE_DIR": "/d"}).storage_dir == Path("/d")


def _run(command: list[str | Path], **kwargs: object) -> str:
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="venv layout and XDG folders are Linux's")
def test_the_wheel_installs_lists_the_builtins_and_serves(tmp_path: Path) -> None:
    pytest.importorskip("platformdirs", reason="a dependency of the package: run scripts/setup")
    # Build from a copy, so the checkout gets no build/ or egg-info folder.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source)
    shutil.copytree(
        REPO_ROOT / "workbench",
        source / "workbench",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheels = tmp_path / "wheels"
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source])
    (wheel,) = wheels.glob("prompt_workbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n for n in names if n.endswith(".prompty")} == {
        f"workbench/prompts/{name}.prompty" for name in BUILTIN_NAMES
    }
    assert "workbench/app/Home.py" in names and "workbench/migrations/env.py" in names

    # A throwaway venv with only the wheel in it. The dependencies (torch, Streamlit, …) come
    # from this interpreter's site-packages through a .pth line instead of minutes of
    # installing; folders a .pth adds are not scanned for .pth files themselves, so the
    # editable install of the checkout living there stays out of the way.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel])
    purelib = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    )
    (purelib / "zz-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "PYTHON"))} | {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
    }
    # (from tmp_path: `python -c` puts the working directory first on sys.path)
    where = _run(
        [python, "-c", "import workbench; print(workbench.__file__)"], env=env, cwd=tmp_path
    )
    assert Path(where.strip()).is_relative_to(purelib), where

    workbench = venv / "bin" / "workbench"
    listed = _run([workbench, "prompts", "list", "--json"], env=env, cwd=tmp_path)
    assert sorted(p["name"] for p in json.loads(listed)) == BUILTIN_NAMES
    data = home / "data" / "prompt-workbench"
    assert (data / "workbench.db").is_file()  # the user data folder, not site-packages
    assert not list(venv.rglob("workbench.db"))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(workbench), "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    health = f"{url}/_stcore/health"
    with (
        serving(command, log, health, timeout_s=90, env=env, cwd=tmp_path),
        urllib.request.urlopen(url, timeout=10) as response,
    ):
        assert response.status == 200
