"""Stored history made up quickly: prompts through the library, runs and outputs as rows.

Used by the History tests (a few hundred outputs) and by `benchmarks/history.py` (100,000).
Generating that many outputs with a model would take hours, so runs, rows and outputs are
written as table rows in large batches, shaped like the runner's own: one run = one version of a
prompt over `rows_per_run` rows on one model, ids and timestamps rising together.

Deterministic for a given `seed`: the same call makes the same database.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from workbench.library import Library
from workbench.store import Output, Run, RunRow, RunVersion

PROMPTS = ("summarize", "classify", "translate", "extract")
MODELS = ("tiny-llama", "smollm2-135m-instruct", "qwen-0.5b")
RARE_WORD = "zebracorn"  # in the text of every RARE_EVERY-th output
RARE_EVERY = 281
NON_ASCII_EVERY = 13  # these rows' variables mention "café crème"
ERROR_EVERY = 211
CANCELLED_EVERY = 307
LENGTH_EVERY = 5
START = datetime(2026, 1, 1)
WORDS = (
    "the", "model", "answered", "quickly", "and", "the", "review", "was", "positive",
    "although", "shipping", "took", "longer", "than", "expected", "battery", "screen",
    "price", "quality", "support", "refund", "colour", "size", "weight", "delivery",
    "package", "great", "terrible", "fine", "excellent", "poor", "average", "recommend",
    "return", "broken", "works", "perfectly", "daily",
)  # fmt: skip


def prompt_text(name: str, number: int) -> str:
    return (
        "---\n"
        f"name: {name}\n"
        f"description: The {name} prompt, revision {number}.\n"
        "inputs:\n  text:\n    kind: string\n    default: hello\n"
        "---\n"
        f"system:\nYou {name} text (revision {number}).\n\nuser:\n{{{{ text }}}}\n"
    )


@dataclass(frozen=True)
class Seeded:
    outputs: int
    runs: int
    version_ids: dict[str, int]  # "name@N" -> version id
    labels: dict[str, str]  # "name@label" -> "name@N"


def seed_history(
    library: Library,
    n_outputs: int,
    *,
    versions_per_prompt: int = 3,
    rows_per_run: int = 50,
    text_chars: tuple[int, int] = (40, 1500),
    run_every: timedelta = timedelta(minutes=10),
    batch: int = 5000,
    seed: int = 7,
) -> Seeded:
    """Write `n_outputs` outputs (and their runs) after whatever is already stored."""
    rng = random.Random(seed)
    version_ids: dict[str, int] = {}
    for name in PROMPTS:
        for number in range(1, versions_per_prompt + 1):
            saved = library.save(prompt_text(name, number), f"revision {number}")
            version_ids[saved.version.ref] = _version_id(library, saved.version.ref)
    labels: dict[str, str] = {}
    for name in PROMPTS:
        production = f"{name}@{max(1, versions_per_prompt - 1)}"
        library.set_label(production, "production")
        labels[f"{name}@production"] = production
    refs = list(version_ids)
    store = library.store
    with store.read() as s:
        from sqlalchemy import func, select

        first_run = (s.scalar(select(func.max(Run.id))) or 0) + 1
    n_runs = -(-n_outputs // rows_per_run)
    written = 0
    with store.write() as s:
        run_rows: list[dict[str, Any]] = []
        version_rows: list[dict[str, Any]] = []
        row_rows: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        for r in range(n_runs):
            run_id = first_run + r
            ref = refs[r % len(refs)]
            model = MODELS[(r // len(refs)) % len(MODELS)]
            n_rows = min(rows_per_run, n_outputs - written)
            run_start = START + run_every * (first_run - 1 + r)
            run_rows.append(
                run_record(
                    run_id,
                    model,
                    n_rows,
                    run_start,
                    params={"max_new_tokens": 64} if r % 2 else {},
                )
            )
            version_rows.append({"run_id": run_id, "position": 0, "version_id": version_ids[ref]})
            for i in range(n_rows):
                k = written + i + 1  # 1-based number of this output in the seeded set
                variables = {"text": f"review {k}: " + _words(rng, 12)}
                if k % NON_ASCII_EVERY == 0:
                    variables["text"] += " café crème"
                row_rows.append({"run_id": run_id, "row_index": i, "variables": variables})
                outputs.append(
                    _output(
                        rng,
                        k,
                        run_id,
                        version_ids[ref],
                        i,
                        variables,
                        model,
                        run_start + timedelta(seconds=i),
                        text_chars,
                    )
                )
            written += n_rows
            if len(outputs) >= batch or r == n_runs - 1:
                s.execute(insert(Run), run_rows)
                s.execute(insert(RunVersion), version_rows)
                s.execute(insert(RunRow), row_rows)
                s.execute(insert(Output), outputs)
                run_rows, version_rows, row_rows, outputs = [], [], [], []
    return Seeded(written, n_runs, version_ids, labels)


def _output(
    rng: random.Random,
    k: int,
    run_id: int,
    version_id: int,
    row_index: int,
    variables: dict[str, Any],
    model: str,
    created_at: datetime,
    text_chars: tuple[int, int],
) -> dict[str, Any]:
    error = k % ERROR_EVERY == 0
    text = None
    if not error:
        target = rng.randint(*text_chars)
        text = _words(rng, max(1, target // 7))[:target]
        if k % RARE_EVERY == 0:
            text = f"{text} {RARE_WORD}"
    reason = (
        "cancelled" if k % CANCELLED_EVERY == 0 else "length" if k % LENGTH_EVERY == 0 else "eos"
    )
    model_input = f"<|im_start|>user\n{variables['text']}<|im_end|>\n<|im_start|>assistant\n"
    return output_record(
        run_id,
        version_id,
        row_index,
        variables,
        model,
        text,
        created_at,
        model_input=model_input,
        params={"temperature": 0.0, "max_new_tokens": 64, "seed": 0},
        finish_reason=None if error else reason,
        prompt_tokens=40,
        batch_size=8,
        error="RuntimeError: out of memory" if error else None,
        cache_key=f"{k:064x}",
        cached=k % 17 == 0,
    )


def run_record(
    run_id: int,
    model: str,
    total: int,
    created_at: datetime,
    *,
    params: dict[str, Any] | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """A finished run as a row for a bulk insert (History's seed and the Compare benchmark)."""
    return {
        "id": run_id,
        "status": "done",
        "model": model,
        "backend": "transformers",
        "revision": "main",
        "dtype": "float32",
        "params": params or {},
        "samples": 1,
        "use_cache": True,
        "dataset": dataset,
        "total": total,
        "error": None,
        "created_at": created_at,
        "finished_at": created_at + timedelta(minutes=5),
    }


def output_record(
    run_id: int,
    version_id: int,
    row_index: int,
    variables: dict[str, Any],
    model: str,
    text: str | None,
    created_at: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """One output as a row for a bulk insert; `fields` override the plain defaults here."""
    return {
        "run_id": run_id,
        "version_id": version_id,
        "row_index": row_index,
        "sample_index": 0,
        "variables": variables,
        "messages": [{"role": "user", "content": variables["text"]}],
        "model_input": variables["text"],
        "add_special_tokens": False,
        "model": model,
        "backend": "transformers",
        "revision": "main",
        "dtype": "float32",
        "chat_template_hash": "0" * 64,
        "params": {"temperature": 0.0, "max_new_tokens": 32, "seed": 0},
        "seed": 0,
        "text": text,
        "finish_reason": "eos",
        "prompt_tokens": 30,
        "completion_tokens": None if text is None else len(text) // 4,
        "latency_s": 0.5,
        "ttft_s": 0.05,
        "batch_size": 1,
        "error": None,
        "answer": None,
        "cache_key": f"{run_id:08x}{row_index:056x}",
        "cached": False,
        "created_at": created_at,
        **fields,
    }


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _version_id(library: Library, ref: str) -> int:
    with library.store.read() as s:
        return library.resolve_in(s, ref).id
