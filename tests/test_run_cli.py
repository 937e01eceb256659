"""`workbench run` and `workbench runs` on the tiny model, in-process, and a run killed mid-way."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILTIN_PROMPTS_DIR, REPO_ROOT

from workbench.backends.base import ModelInput
from workbench.cli import main
from workbench.params import GenerationParams

Result = tuple[int, str, str]
Cli = Callable[..., Result]


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_backend: Any
) -> Cli:
    """`workbench ARGS…` in-process, on a library holding the real built-in prompts.

    Depends on tiny_backend so the model is loaded once per session; the CLI's load_backend
    finds it in the process-wide cache."""
    monkeypatch.setenv("WORKBENCH_PROMPTS_DIR", str(BUILTIN_PROMPTS_DIR))

    def run(*args: str) -> Result:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def ok(result: Result) -> tuple[str, str]:
    code, out, err = result
    assert code == 0, err
    assert "Traceback" not in err
    return out, err


def failed(result: Result) -> str:
    code, out, err = result
    assert code == 1, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def db_path() -> Path:
    url = os.environ["WORKBENCH_DATABASE_URL"]
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def query(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the CLI's database directly (read-only), as another process would."""
    con = sqlite3.connect(f"file:{db_path()}?mode=ro", uri=True, timeout=30)
    try:
        return list(con.execute(sql, args))
    finally:
        con.close()


def expected_text(backend: Any, prompt: str, variables: dict[str, Any], **params: Any) -> str:
    from conftest import BUILTIN_PROMPTS_DIR as folder

    from workbench.templates import parse_prompt_bytes

    pf = parse_prompt_bytes((folder / f"{prompt}.prompty").read_bytes(), prompt)
    mi = backend.model_input(pf.render(variables))
    p = GenerationParams.build(pf.options, params)
    return str(backend.generate([mi], p)[0].text)


def write_csv(path: Path, texts: list[str]) -> Path:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["text"])
    writer.writerows([t] for t in texts)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


MOODS = ["good", "bad", "fine", "odd"]
REVIEWS = [f"Review {i}: the {MOODS[i % 4]} thing" for i in range(40)]


# --- run one input -------------------------------------------------------------------------------


def test_run_one_input_streams_and_stores(
    cli: Cli, tiny_backend: Any, tiny_model_dir: Path
) -> None:
    out, err = ok(
        cli("run", "zero-shot-sentiment-chat", "--var", "text=hi", "--model", tiny_model_dir)
    )
    text = expected_text(tiny_backend, "zero-shot-sentiment-chat", {"text": "hi"})
    assert out == text + "\n"
    status = err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"\[zero-shot-sentiment-chat@1 · length · \d+\+8 tokens · [\d.]+ s · [\d.]+ tok/s"
        r"( · first token [\d.]+ s)? · run 1\]",
        status,
    ), status
    assert query("select status, total from run") == [("done", 1)]
    assert query("select text, cached from output") == [(text, 0)]

    out2, err2 = ok(
        cli("run", "zero-shot-sentiment-chat", "--var", "text=hi", "--model", tiny_model_dir)
    )
    assert out2 == out
    assert "cached" in err2 and "run 2]" in err2
    assert query("select run_id, cached from output order by id") == [(1, 0), (2, 1)]


def test_run_no_cache(cli: Cli, tiny_model_dir: Path) -> None:
    args = ("run", "zero-shot-sentiment-chat", "--var", "text=hi", "--model", tiny_model_dir)
    ok(cli(*args))
    _, err = ok(cli(*args, "--no-cache"))
    assert "cached" not in err
    assert query("select cached from output order by id") == [(0,), (0,)]


def test_run_json(cli: Cli, tiny_backend: Any, tiny_model_dir: Path) -> None:
    out, _ = ok(
        cli(
            "run",
            "zero-shot-sentiment-chat",
            "--var",
            "text=hi",
            "--model",
            tiny_model_dir,
            "--param",
            "max_new_tokens=5",
            "--json",
        )
    )
    data = json.loads(out)
    assert data["run"]["status"] == "done" and data["run"]["total"] == 1
    (output,) = data["outputs"]
    assert output["text"] == expected_text(
        tiny_backend, "zero-shot-sentiment-chat", {"text": "hi"}, max_new_tokens=5
    )
    assert output["completion_tokens"] == 5 and output["params"]["max_new_tokens"] == 5
    assert output["model"] == str(tiny_model_dir)
    assert output["model_input"].startswith("<|im_start|>user\n")
    assert data["votes"] == []


def test_run_dataset_prints_a_summary(cli: Cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "rows.csv", REVIEWS[:4])
    out, err = ok(cli("run", "zero-shot-sentiment", "--dataset", rows, "--model", tiny_model_dir))
    lines = out.splitlines()
    assert lines[0].split() == ["ROW", "SAMPLE", "FINISH", "TOKENS", "LATENCY", "OUTPUT"]
    assert [line.split()[0] for line in lines[2:6]] == ["1", "2", "3", "4"]
    assert re.match(r"run 1: done · 4/4 outputs · 0 cached · ", lines[-1]), lines[-1]
    # greedy rows share a batch: each row names it rather than claiming the time as its own
    assert all(re.search(r" batch of [2-4], [\d.]+ s ", line) for line in lines[2:6]), lines
    assert "4/4" in err  # the progress bar
    out2, _ = ok(cli("run", "zero-shot-sentiment", "--dataset", rows, "--model", tiny_model_dir))
    assert "run 2: done · 4/4 outputs · 4 cached" in out2
    # a cached answer's time is its original generation's, and says so
    assert [line.count("cached (original ") for line in out2.splitlines()[2:6]] == [1, 1, 1, 1]


def test_run_samples_prints_the_vote(cli: Cli, tiny_model_dir: Path) -> None:
    out, _ = ok(
        cli(
            "run",
            "self-consistency-math",
            "--var",
            "question=1+1?",
            "--param",
            "max_new_tokens=4",
            "--model",
            tiny_model_dir,
        )
    )
    assert re.search(r"row 1: majority .* of 5 samples agree", out), out
    assert "run 1: done · 5/5 outputs" in out


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_runs_export_into_a_folder_uses_the_apps_file_name(
    cli: Cli, tiny_model_dir: Path, tmp_path: Path, fmt: str
) -> None:
    ok(cli("run", "zero-shot-sentiment-chat", "--var", "text=hi", "--model", tiny_model_dir))
    out, _ = ok(cli("runs", "export", "1", "--format", fmt, "-o", f"{tmp_path}/exports/"))
    target = tmp_path / "exports" / f"run-1.{fmt}"
    assert out.startswith(f"wrote {target} (") and target.stat().st_size > 0
    out, _ = ok(cli("runs", "export", "1", "--format", fmt, "-o", tmp_path / "exports"))
    assert out.startswith(f"wrote {target} (")


def test_param_values_are_stored_as_numbers_not_text(cli: Cli, tiny_model_dir: Path) -> None:
    """`--param max_new_tokens=3` is stored as 3 in the run's parameters, so History, `runs
    show` and exports read a number, as they do for a run started in the app."""
    args = ["run", "zero-shot-sentiment-chat", "--var", "text=hi", "--model", tiny_model_dir]
    ok(cli(*args, "--param", "max_new_tokens=3", "--param", "temperature=0", "--param", "stop=!"))
    (params,) = query("select params from run")
    assert json.loads(params[0]) == {"max_new_tokens": 3, "temperature": 0.0, "stop": ["!"]}
    out, _ = ok(cli("runs", "show", "1", "--json"))
    assert json.loads(out)["run"]["params"]["max_new_tokens"] == 3


def test_a_run_stored_with_text_params_still_shows_exports_and_resumes(
    cli: Cli, tiny_model_dir: Path
) -> None:
    """Runs stored before parameters were typed hold {"max_new_tokens": "3"}: still fine."""
    rows = ["--var", "text=hi", "--model", tiny_model_dir, "--param", "max_new_tokens=3"]
    ok(cli("run", "zero-shot-sentiment-chat", *rows))
    con = sqlite3.connect(db_path())
    with con:
        con.execute("""update run set params = '{"max_new_tokens": "3"}'""")
        con.execute("delete from output")
    con.close()
    assert 'params {"max_new_tokens": "3"}' in ok(cli("runs", "show", "1"))[0]
    ok(cli("runs", "export", "1"))
    out, _ = ok(cli("runs", "resume", "1", "--model", tiny_model_dir))
    assert "run 1: done · 1/1 outputs" in out
    assert query("select completion_tokens <= 3 from output") == [(1,)]


# --- mistakes ---------------------------------------------------------------------------------


def test_bad_param_is_reported_before_loading_anything(cli: Cli) -> None:
    line = failed(
        cli(
            "run",
            "zero-shot-sentiment-chat",
            "--var",
            "text=hi",
            "--param",
            "temperature=-1",
            "--model",
            "/nonexistent",
        )
    )
    assert "temperature" in line and "nonexistent" not in line
    assert query("select count(*) from run") == [(0,)]


def test_a_variable_used_but_not_declared_is_a_warning_and_a_refusal_not_empty_text(
    cli: Cli, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`{{ tone }}` typed into a template and never given a value: lint names the file line,
    a run without a value is refused by name, a run with one goes through."""
    path = tmp_path / "toned.prompty"
    path.write_text(
        "---\nname: toned\ninputs:\n  text:\n    default: hi\n---\nuser:\n{{ text }}\n"
        "Tone: {{ tone }}\n",
        encoding="utf-8",
    )
    ok(cli("prompts", "save", path))
    code, out, _ = cli("prompts", "lint", "toned")
    assert code == 1
    assert out.startswith("toned@1: line 9: warning: variable 'tone' is used but not declared")
    line = failed(cli("run", "toned", "--model", tiny_model_dir))
    assert "missing variable: tone" in line
    assert query("select count(*) from output") == [(0,)]
    ok(cli("run", "toned", "--var", "tone=formal", "--model", tiny_model_dir))
    assert query("select variables from output") == [('{"tone": "formal"}',)]


@pytest.mark.parametrize(
    "param", ["temperature", "top_p=2", "max_new_tokens=0", "colour=red", "max_new_tokens=many"]
)
def test_bad_param_forms(cli: Cli, param: str) -> None:
    failed(cli("run", "zero-shot-sentiment-chat", "--param", param, "--model", "/nonexistent"))


def test_max_new_tokens_beyond_the_window(cli: Cli, tiny_model_dir: Path) -> None:
    line = failed(
        cli(
            "run",
            "zero-shot-sentiment-chat",
            "--param",
            "max_new_tokens=600",
            "--model",
            tiny_model_dir,
        )
    )
    assert "context window of 512" in line


def test_unknown_model_is_one_error_line(cli: Cli) -> None:
    line = failed(
        cli("run", "zero-shot-sentiment-chat", "--var", "text=hi", "--model", "/nonexistent")
    )
    assert "/nonexistent" in line and "nothing is downloaded" in line


def test_unknown_prompt(cli: Cli, tiny_model_dir: Path) -> None:
    failed(cli("run", "no-such-prompt", "--model", tiny_model_dir))


def test_dataset_and_var_together(cli: Cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "rows.csv", ["a"])
    line = failed(
        cli(
            "run",
            "zero-shot-sentiment",
            "--dataset",
            rows,
            "--var",
            "text=a",
            "--model",
            tiny_model_dir,
        )
    )
    assert "not both" in line


def test_missing_dataset_file(cli: Cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    line = failed(
        cli(
            "run",
            "zero-shot-sentiment",
            "--dataset",
            tmp_path / "nope.csv",
            "--model",
            tiny_model_dir,
        )
    )
    assert "cannot read dataset" in line and "nope.csv" in line


def test_dataset_without_the_column(cli: Cli, tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("review\ngood\n", encoding="utf-8")
    line = failed(cli("run", "zero-shot-sentiment", "--dataset", rows, "--model", tiny_model_dir))
    assert "none of which is a column" in line
    assert query("select count(*) from run") == [(0,)]


def test_prompt_longer_than_the_context(cli: Cli, tiny_model_dir: Path) -> None:
    long_text = " ".join(f"word{i} and more words" for i in range(200))
    line = failed(
        cli(
            "run",
            "zero-shot-sentiment-chat",
            "--var",
            f"text={long_text}",
            "--model",
            tiny_model_dir,
        )
    )
    assert "context window of 512" in line
    assert query("select count(*) from output") == [(0,)]


# --- runs list / show / export ------------------------------------------------------------------


@pytest.fixture
def finished_run(cli: Cli, tiny_model_dir: Path, tmp_path: Path) -> int:
    rows = write_csv(tmp_path / "rows.csv", ['a "quoted", text', "two\nlines", "plain"])
    ok(cli("run", "zero-shot-sentiment", "--dataset", rows, "--model", tiny_model_dir))
    ((run_id,),) = query("select id from run")
    return int(run_id)


def test_runs_list(cli: Cli, finished_run: int, tiny_model_dir: Path) -> None:
    out, _ = ok(cli("runs", "list"))
    header, _, row = out.splitlines()
    assert header.split() == [
        "RUN",
        "STATUS",
        "WHEN",
        "VERSIONS",
        "MODEL",
        "DATASET",
        "DONE",
        "CACHED",
    ]
    assert row.split()[:2] == [str(finished_run), "done"]
    assert "zero-shot-sentiment@1" in row and str(tiny_model_dir) in row
    assert "rows.csv" in row and "3/3" in row
    data = json.loads(ok(cli("runs", "list", "--json"))[0])
    assert [r["id"] for r in data] == [finished_run]


def test_runs_show(cli: Cli, finished_run: int, tiny_backend: Any) -> None:
    out, _ = ok(cli("runs", "show", str(finished_run)))
    first = out.splitlines()[0]
    assert first.startswith(f"run {finished_run} · done · zero-shot-sentiment@1 · ")
    assert tiny_backend.info.revision in first and "float32" in first
    assert f"run {finished_run}: done · 3/3 outputs" in out
    # read back, not executed now: the stored outputs' mean latency, not "0.0 s · 0.0 tok/s"
    assert re.search(r"· mean latency [\d.]+ s over 3 generated outputs$", out.splitlines()[-1])
    data = json.loads(ok(cli("runs", "show", str(finished_run), "--json"))[0])
    assert len(data["outputs"]) == 3


def test_runs_show_unknown(cli: Cli) -> None:
    assert "no run 7" in failed(cli("runs", "show", "7"))


def test_runs_export_csv(cli: Cli, finished_run: int, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    out, _ = ok(cli("runs", "export", str(finished_run), "--format", "csv", "-o", target))
    assert out.startswith(f"wrote {target} (")
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    assert len(rows) == 3
    stored = query("select model_input, text, params from output order by row_index")
    for row, (model_input, text, params) in zip(rows, stored, strict=True):
        assert row["model_input"] == model_input
        assert row["text"] == text
        assert json.loads(row["params"]) == json.loads(params)
    assert json.loads(rows[1]["variables"]) == {"text": "two\nlines"}


def test_runs_export_jsonl_to_stdout(cli: Cli, finished_run: int) -> None:
    out, _ = ok(cli("runs", "export", str(finished_run)))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["row_index"] for r in rows] == [0, 1, 2]
    assert all(r["params"]["max_new_tokens"] == 4 for r in rows)
    assert all(r["model_input"].startswith("Classify the sentiment") for r in rows)
    assert rows[0]["variables"] == {"text": 'a "quoted", text'}


def test_runs_export_to_a_missing_folder(cli: Cli, finished_run: int, tmp_path: Path) -> None:
    line = failed(
        cli("runs", "export", str(finished_run), "-o", tmp_path / "no" / "such" / "f.csv")
    )
    assert "cannot write" in line


def test_runs_resume_unknown(cli: Cli, tiny_model_dir: Path) -> None:
    assert "no run 3" in failed(cli("runs", "resume", "3", "--model", tiny_model_dir))


# --- a run killed mid-way, then resumed --------------------------------------------------------


def _can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def test_killed_run_keeps_its_outputs_and_resumes(
    cli: Cli, tiny_backend: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = write_csv(tmp_path / "rows.csv", REVIEWS)
    env = {**os.environ, "WORKBENCH_PROMPTS_DIR": str(BUILTIN_PROMPTS_DIR), "HF_HUB_OFFLINE": "1"}
    args = [
        "run",
        "zero-shot-sentiment",
        "--dataset",
        str(rows),
        "--model",
        str(tiny_model_dir),
        "--batch-size",
        "1",
        "--param",
        "max_new_tokens=24",
    ]
    # `python -m workbench.cli ARGS`, on one CPU: the model then runs torch on one thread
    # (local.configure_threads follows the CPU affinity), which keeps this test quick when
    # other work shares the machine; what is tested is what a kill leaves behind.
    pin = "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " if _can_pin() else ""
    command = [
        sys.executable,
        "-c",
        f"import os, runpy, sys; {pin}sys.argv = ['workbench', *sys.argv[1:]]; "
        "runpy.run_module('workbench.cli', run_name='__main__', alter_sys=True)",
        *args,
    ]
    log = tmp_path / "run.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 60
        done = 0
        while done < 5:
            assert proc.poll() is None, f"the run ended before it was killed: {log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
            try:
                done = query("select count(*) from output")[0][0]
            except sqlite3.OperationalError:  # the database is being set up
                continue
        # while it runs, a second process may not resume it (their outputs would collide)
        ((run_id,),) = query("select id from run")
        line = failed(cli("runs", "resume", str(run_id), "--model", tiny_model_dir))
        assert line == (
            f"error: run {run_id} is being run by process {proc.pid} on this machine; wait for it "
            f"to finish, or stop that process (Ctrl+C in its terminal, or kill {proc.pid}) and "
            "resume it then"
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    ((run_id, status, total),) = query("select id, status, total from run")
    kept = query("select row_index from output where run_id = ? order by row_index", run_id)
    assert status == "running" and total == 40  # a killed process records nothing…
    assert 5 <= len(kept) < 40, "the run finished before it could be killed"
    assert len({r for (r,) in kept}) == len(kept)
    out, _ = ok(cli("runs", "list"))  # …so whoever lists the runs finds its process gone
    assert re.search(rf"^{run_id}\s+interrupted\s", out, re.MULTILINE), out
    assert query("select status from run where id = ?", run_id) == [("interrupted",)]

    out, _ = ok(cli("runs", "resume", str(run_id), "--model", tiny_model_dir))
    assert f"run {run_id}: done · 40/40 outputs" in out
    assert query("select status from run where id = ?", run_id) == [("done",)]
    cells = query("select version_id, row_index, sample_index from output where run_id = ?", run_id)
    assert len(cells) == 40 and len(set(cells)) == 40
    assert sorted(r for _, r, _ in cells) == list(range(40))

    # outputs from the killed process and from the resume are what the model says
    stored = query(
        "select model_input, add_special_tokens, text, finish_reason from output "
        "where run_id = ? order by row_index",
        run_id,
    )
    params = GenerationParams(max_new_tokens=24, stop=("Text:",))
    fresh = tiny_backend.generate([ModelInput(m, bool(a)) for m, a, _, _ in stored], params)
    assert [(t, f) for _, _, t, f in stored] == [(g.text, g.finish_reason) for g in fresh]
