"""A stored answer is found without loading the model: no weights, no tokenizer, no torch.

The cache key needs the exact text the model reads; for chat prompts that is the chat template
applied to the messages, which the backend renders itself (backends/chat_template.py) once the
model's tokenizer has been seen to render it the same way. These tests hold the two renderings
equal — for every built-in prompt, and for templates that use what transformers' environment
offers — and show what a cached answer no longer loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BUILTIN_PROMPTS_DIR, child_env

import workbench.backends.local as local
from workbench.backends.chat_template import (
    ChatTemplate,
    TemplateChecks,
    agrees_with_tokenizer,
    read_chat_template,
)
from workbench.backends.local import CHECKS_FOLDER, TransformersBackend
from workbench.backends.model_files import resolve_model
from workbench.library import Library
from workbench.runner import Runner, cache_key
from workbench.templates import Rendered, parse_prompt_bytes

BUILTINS = sorted(p.stem for p in BUILTIN_PROMPTS_DIR.glob("*.prompty"))


def fresh_backend(model_dir: Path, storage: Path) -> TransformersBackend:
    """A new backend object for the model (not the process-wide one), nothing loaded yet."""
    checks = TemplateChecks(storage / "models" / CHECKS_FOLDER)
    return TransformersBackend(resolve_model(str(model_dir), storage), "float32", checks=checks)


def rendered_builtin(name: str) -> Rendered:
    pf = parse_prompt_bytes((BUILTIN_PROMPTS_DIR / f"{name}.prompty").read_bytes(), name)
    return pf.render({})  # every built-in's inputs have defaults


# --- the same model input, computed without the tokenizer ---------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_input_and_key_equal_the_tokenizers(
    name: str, tiny_model_dir: Path, tiny_backend: Any, tmp_path: Path
) -> None:
    """Every built-in prompt: the input and cache key rendered from the folder's files equal
    what the loaded tokenizer gives."""
    from workbench.params import GenerationParams

    storage = tmp_path / "storage"
    fresh_backend(tiny_model_dir, storage)  # loads the tokenizer, which checks the template
    quick = fresh_backend(tiny_model_dir, storage)
    assert quick._tokenizer is None and not quick.loaded
    rendered = rendered_builtin(name)
    mine = quick.model_input(rendered)
    theirs = tiny_backend.tokenizer_model_input(rendered)
    assert mine == theirs
    assert quick.info == tiny_backend.info
    params = GenerationParams()
    assert cache_key(quick, mine, params, 0) == cache_key(tiny_backend, theirs, params, 0)
    assert quick._tokenizer is None and not quick.loaded


def test_model_info_from_the_files_equals_the_loaded_models(
    tiny_model_dir: Path, tiny_backend: Any, tmp_path: Path
) -> None:
    fresh_backend(tiny_model_dir, tmp_path)
    quick = fresh_backend(tiny_model_dir, tmp_path)
    assert quick._tokenizer is None
    assert quick.info == tiny_backend.info
    assert quick.info.context_window == tiny_backend.model.config.max_position_embeddings


# Templates using what transformers' environment offers: special tokens, namespace(), loop
# controls, tojson, the generation tag, raise_exception, whitespace control, a default system
# line; each is rendered here and by a real tokenizer on the probes and on prefilled answers.
TEMPLATES = {
    "bos and eos": "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}"
    "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}",
    "namespace and loop controls": "{% set ns = namespace(n=0) %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% continue %}{% endif %}{% set ns.n = ns.n + 1 %}"
    "<{{ ns.n }}|{{ m['role'] }}>{{ m['content'] | trim }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}",
    "tojson and dict": "{{ messages | tojson }}{% set d = dict(a=1) %}{{ d | tojson }}"
    "{% if add_generation_prompt %}\nA:{% endif %}",
    "generation tag": "{% for m in messages %}{% if m['role'] == 'assistant' %}"
    "{% generation %}{{ m['content'] }}{% endgeneration %}{% else %}{{ m['content'] }}"
    "{% endif %}\n{% endfor %}{% if add_generation_prompt %}>>{% endif %}",
    "refuses a system message": "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    "trims the continued message": "{% for m in messages %}  {{- m['role'] }}:\n"
    "{{ m['content'] | trim }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
    "assistant:\n{% endif %}",
    "default system line": "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
    "You are helpful.<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>"
    "{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}


def model_with_template(tiny_model_dir: Path, folder: Path, template: str) -> Path:
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").write_text(template)
    return folder


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_templates_render_as_the_tokenizer_does(
    name: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    folder = model_with_template(tiny_model_dir, tmp_path / "model", TEMPLATES[name])
    template = read_chat_template(folder)
    assert template is not None and template.source == TEMPLATES[name]
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert agrees_with_tokenizer(template, tokenizer)
    for name_ in BUILTINS:
        rendered = rendered_builtin(name_)
        if rendered.mode != "chat":
            continue
        messages = [m.as_dict() for m in rendered.messages]
        for prefill in (False, True):
            turns = [*messages, {"role": "assistant", "content": "So "}] if prefill else messages
            try:
                theirs: Any = tokenizer.apply_chat_template(
                    turns,
                    tokenize=False,
                    add_generation_prompt=not prefill,
                    continue_final_message=prefill,
                )
            except Exception as exc:
                with pytest.raises(type(exc)):
                    template.render(turns, prefill=prefill)
                continue
            assert template.render(turns, prefill=prefill) == theirs


def test_special_tokens_the_template_reads_come_from_the_config(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = model_with_template(tiny_model_dir, tmp_path / "model", TEMPLATES["bos and eos"])
    template = read_chat_template(folder)
    assert template is not None
    assert dict(template.special_tokens) == {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}


def test_a_template_that_renders_differently_is_never_used(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the files say one thing and the tokenizer another (here: a bos_token that the
    template reads, changed behind the reader's back), the check fails, nothing is recorded,
    and every input keeps coming from the tokenizer."""
    from transformers import AutoTokenizer

    folder = model_with_template(tiny_model_dir, tmp_path / "model", TEMPLATES["bos and eos"])
    wrong = ChatTemplate(TEMPLATES["bos and eos"], (("bos_token", "<s>"), ("eos_token", "</s>")))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert not agrees_with_tokenizer(wrong, tokenizer)

    storage = tmp_path / "storage"
    monkeypatch.setattr(local, "read_chat_template", lambda path: wrong)
    backend = fresh_backend(folder, storage)
    again = fresh_backend(folder, storage)
    assert backend._tokenizer is not None and again._tokenizer is not None  # checked each time
    assert not (storage / "models" / CHECKS_FOLDER).exists()
    rendered = rendered_builtin("zero-shot-sentiment-chat")
    assert again.model_input(rendered).text == tokenizer.apply_chat_template(
        [m.as_dict() for m in rendered.messages], tokenize=False, add_generation_prompt=True
    )


def test_a_model_with_several_templates_goes_through_the_tokenizer(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "additional_chat_templates").mkdir()
    (folder / "additional_chat_templates" / "tool_use.jinja").write_text("{{ messages }}")
    assert read_chat_template(folder) is None
    storage = tmp_path / "storage"
    fresh_backend(folder, storage)
    assert fresh_backend(folder, storage)._tokenizer is not None


def test_the_check_is_remembered_per_model_revision(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    storage = tmp_path / "storage"
    assert fresh_backend(folder, storage)._tokenizer is not None  # nothing recorded: checked
    assert len(list((storage / "models" / CHECKS_FOLDER).glob("*.json"))) == 1
    assert fresh_backend(folder, storage)._tokenizer is None
    # a changed file makes another revision, which is checked again
    stat = (folder / "tokenizer_config.json").stat()
    os.utime(folder / "tokenizer_config.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert fresh_backend(folder, storage)._tokenizer is not None
    assert fresh_backend(folder, storage)._tokenizer is None


# --- a cached answer loads nothing ---------------------------------------------------------------


def test_cached_answer_is_identical_and_loads_no_weights(
    builtin_library: Library, tiny_model_dir: Path, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    version = builtin_library.get("zero-shot-sentiment-chat")
    first = Runner(builtin_library, fresh_backend(tiny_model_dir, storage))
    streamed = first.stream(version, {"text": "Great!"}, overrides={"max_new_tokens": 12})
    text = "".join(streamed)
    assert streamed.output is not None and not streamed.output.cached

    backend = fresh_backend(tiny_model_dir, storage)
    again = Runner(builtin_library, backend).stream(
        version, {"text": "Great!"}, overrides={"max_new_tokens": 12}
    )
    assert "".join(again) == text
    assert again.cached and again.output is not None and again.output.cached
    assert again.output.text == streamed.output.text
    assert again.output.model_input == streamed.output.model_input
    assert not backend.loaded and backend._tokenizer is None

    # a dataset whose rows are all stored: no weights either
    summary = Runner(builtin_library, backend).run(
        [version], [{"text": "Great!"}] * 3, overrides={"max_new_tokens": 12}
    )
    assert [o.cached for o in summary.outputs] == [True] * 3
    assert {o.text for o in summary.outputs} == {text}
    assert not backend.loaded and backend._tokenizer is None


PROBE = """
import json, sys
from workbench.cli import main
code = main(sys.argv[2:])
from workbench.backends import local
backend = next(iter(local._loaded.values()))
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "torch": "torch" in sys.modules,
               "transformers": "transformers" in sys.modules,
               "weights": backend.loaded, "tokenizer": backend._tokenizer is not None}, f)
"""


def test_cached_cli_answer_imports_no_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`workbench run` in a new process: the second, cached answer never imports torch."""
    env = child_env(WORKBENCH_MODEL=str(tiny_model_dir), HF_HUB_OFFLINE="1")
    args = [
        "run",
        "zero-shot-sentiment-chat",
        "--var",
        "text=Great!",
        "--param",
        "max_new_tokens=12",
    ]
    db = os.environ["WORKBENCH_DATABASE_URL"].removeprefix("sqlite:///")
    seen = []
    for n in range(2):
        report = tmp_path / f"probe{n}.json"
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(report), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        seen.append(
            (done.stdout, done.stderr.strip().splitlines()[-1], json.loads(report.read_text()))
        )
        # the process loaded a model and skipped the collector at exit, yet closed the database:
        # SQLite folded its write-ahead log back into the file
        assert not Path(db + "-wal").exists()
    (out1, status1, probe1), (out2, status2, probe2) = seen
    assert probe1 == {
        "code": 0,
        "torch": True,
        "transformers": True,
        "weights": True,
        "tokenizer": True,
    }
    assert "cached" not in status1
    assert out2 == out1
    assert re.search(r"· cached \(original [\d.]+ s\) ·", status2), status2
    assert probe2 == {
        "code": 0,
        "torch": False,
        "transformers": False,
        "weights": False,
        "tokenizer": False,
    }


def test_loading_leaves_the_garbage_collector_on(tiny_model_dir: Path, tmp_path: Path) -> None:
    import gc

    backend = fresh_backend(tiny_model_dir, tmp_path)
    assert gc.isenabled()
    backend.model  # noqa: B018 - loads it
    assert backend.loaded and gc.isenabled()
