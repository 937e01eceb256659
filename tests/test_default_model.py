"""The real default model (SmolLM2-135M-Instruct, from the packaged GGUF), offline.

Converted once per session into a temporary storage folder (about 30 s), or copied from the
repository's storage/models when a converted copy is already there; later loads take under a
second. Network access is blocked in-process and HF_HUB_OFFLINE=1 is set for subprocesses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILTIN_PROMPTS_DIR, refuse_network

from workbench.backends.local import load_backend
from workbench.backends.model_files import DEFAULT_ALIAS
from workbench.params import GenerationParams
from workbench.runner import Runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def default_backend(default_storage: Path) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", refuse_network)
        return load_backend("default", default_storage)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse_network)


def test_default_model_info(default_backend: Any, default_storage: Path) -> None:
    info = default_backend.info
    assert info.name == DEFAULT_ALIAS
    assert Path(info.path) == default_storage / "models" / DEFAULT_ALIAS
    assert info.revision.startswith("gguf-sha256-")
    assert info.dtype == "float32"
    assert info.context_window == 8192
    assert load_backend("smollm2-135m-instruct", default_storage) is default_backend


def test_cli_run_answers_positive(default_storage: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WORKBENCH_STORAGE_DIR": str(default_storage),
        "WORKBENCH_PROMPTS_DIR": str(BUILTIN_PROMPTS_DIR),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("WORKBENCH_MODEL", None)
    command = [
        sys.executable,
        "-m",
        "workbench.cli",
        "run",
        "zero-shot-sentiment-chat",
        "--var",
        "text=I love this product!",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() == "Positive"
    status = done.stderr.strip().splitlines()[-1]
    assert status.startswith("[zero-shot-sentiment-chat@1 · eos · ")
    assert status.endswith("· run 1]")


def test_dataset_batched_equals_one_by_one(builtin_library: Any, default_backend: Any) -> None:
    runner = Runner(builtin_library, default_backend)
    version = builtin_library.get("zero-shot-sentiment")
    rows = [
        {"text": "I love this product!"},
        {"text": "This is terrible, it broke after one day."},
        {"text": "The package arrived on Tuesday."},
        {"text": "Absolutely fantastic service, thank you!"},
    ]
    overrides = {"max_new_tokens": 6}
    batched = runner.run([version], rows, overrides=overrides)
    assert max(o.batch_size or 0 for o in batched.outputs) > 1
    alone = runner.run([version], rows, overrides=overrides, use_cache=False, batch_size=1)
    assert {o.batch_size for o in alone.outputs} == {1}
    assert [(o.text, o.finish_reason, o.completion_tokens) for o in batched.outputs] == [
        (o.text, o.finish_reason, o.completion_tokens) for o in alone.outputs
    ]
    assert "Positive" in (batched.outputs[0].text or "")


def test_stream_equals_the_greedy_text(default_backend: Any) -> None:
    from workbench.templates import parse_prompt_bytes

    pf = parse_prompt_bytes(
        (BUILTIN_PROMPTS_DIR / "summarize-3-sentences.prompty").read_bytes(), "summarize"
    )
    mi = default_backend.model_input(pf.render({}))
    assert mi.text.startswith("<|im_start|>system\n") and not mi.add_special_tokens
    params = GenerationParams(max_new_tokens=24)
    expected = default_backend.generate([mi], params)[0]
    stream = default_backend.stream(mi, params)
    pieces = list(stream)
    assert len(pieces) >= 2
    assert stream.result is not None
    assert "".join(pieces) == stream.result.text == expected.text
    assert stream.result.finish_reason == expected.finish_reason


@pytest.mark.parametrize("name", sorted(p.stem for p in BUILTIN_PROMPTS_DIR.glob("*.prompty")))
def test_builtin_inputs_without_the_tokenizer_equal_the_tokenizers(
    name: str, default_backend: Any, default_storage: Path
) -> None:
    """The cache lookup's model input, rendered from the folder's files (no tokenizer, no
    torch), equals the tokenizer's for every built-in prompt on the real chat template."""
    from workbench.backends.chat_template import TemplateChecks
    from workbench.backends.local import CHECKS_FOLDER, TransformersBackend
    from workbench.backends.model_files import resolve_model
    from workbench.runner import cache_key
    from workbench.templates import parse_prompt_bytes

    checks = TemplateChecks(default_storage / "models" / CHECKS_FOLDER)
    quick = TransformersBackend(resolve_model("default", default_storage), "float32", checks=checks)
    assert quick._tokenizer is None and not quick.loaded  # default_backend checked the template
    pf = parse_prompt_bytes((BUILTIN_PROMPTS_DIR / f"{name}.prompty").read_bytes(), name)
    rendered = pf.render({})
    mine, theirs = quick.model_input(rendered), default_backend.tokenizer_model_input(rendered)
    assert mine == theirs
    assert quick.info == default_backend.info
    params = GenerationParams()
    assert cache_key(quick, mine, params, 0) == cache_key(default_backend, theirs, params, 0)
    assert quick._tokenizer is None and not quick.loaded


JSON_QUESTIONS = [
    "What colour is the sky on a clear day?",
    "How many sides does a triangle have?",
    "What is the freezing point of water in Celsius?",
    "Which animal is known as the king of the jungle?",
    "What is 12 divided by 4?",
    "What is the opposite of hot?",
    "How many hours are in a day?",
    "What do bees make?",
    "Which season comes after winter?",
    "What is the capital of Italy?",
    "How many wheels does a bicycle have?",
    "What is the main ingredient of bread?",
    "Which star is closest to the Earth?",
    "What is the plural of mouse?",
    "How many minutes are in an hour?",
    "What instrument has black and white keys?",
]


def test_json_answer_constrained_is_schema_valid_for_every_question(
    builtin_library: Any, default_backend: Any
) -> None:
    """The built-in json-answer under its own schema (the issue measured 0/16 free): every
    answer is one JSON object valid against the schema and ends before max_new_tokens."""
    import json

    import jsonschema

    version = builtin_library.get("json-answer")
    schema = json.loads(version.file.inputs["schema"].default)
    rows = [{"question": q} for q in JSON_QUESTIONS]
    outputs = Runner(builtin_library, default_backend).run([version], rows).outputs
    assert len(outputs) == 16
    for out in outputs:
        assert out.params["constraint"]["source"] == "input schema"
        assert out.finish_reason == "eos", (out.variables, out.text)
        jsonschema.validate(json.loads(out.text or ""), schema)
