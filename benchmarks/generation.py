"""Generation throughput on the default model: our runner against the usual alternatives.

Run on demand (not part of the test suite):

    .venv/bin/python benchmarks/generation.py            # both workloads, 32 rows each
    .venv/bin/python benchmarks/generation.py --rows 8   # a quick look

Two workloads, greedy, everything measured in this one process on the same loaded model:
  W1 classification (prompt-bound): the built-in zero-shot sentiment prompt (chat) over 32
     reviews, max_new_tokens 32; answers are a token or two, so the time goes into reading
     the prompt.
  W2 generation (decode-bound): the built-in chain-of-thought prompt over 32 word problems,
     max_new_tokens 64.
For each: (a) the loop a user writes by hand, one `model.generate` per row; (b) transformers'
`pipeline("text-generation", batch_size=8)`; (c) our runner; (d) our runner again, answered
from the cache; (e) llama.cpp on the same GGUF, one request at a time, when `llama_cpp` is
importable. Printed: wall time, rows/s, generated tokens/s, the ratios c/a, c/b, c/e and d/c,
and how many outputs differ from (a). Then the cost of recording token log-probabilities: (c)
against the same runner with a recorder that records nothing, alternated three times each on
the loaded model, best of each; printed as "logprobs overhead" (target: at most 5%).
`--overhead-only` measures just that.
Then, on W1, answer-choice scoring against generating the label: the same runner over the same
32 reviews, (g) generating (as in W1), (s) scoring the three labels Positive/Negative/Neutral
(`--choices`), (s+c) scoring them with contextual calibration (`--calibrate`: three more
prompts), alternated, best of five each; rows/s and the ratio s/g. `--choices-only` measures
just that.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REVIEWS = [
    "I love this product!", "Terrible, it broke after one day.", "It arrived on Tuesday.",
    "Absolutely fantastic quality and fast shipping.", "Worst purchase I have ever made.",
    "The box is blue.", "Not bad, but not great either.", "I would buy it again in a heartbeat!",
    "The battery died within an hour.", "Exactly as described.", "Customer service ignored me.",
    "My kids use it every day and they adore it.", "It is a phone case.", "Do not buy this.",
    "Surprisingly good for the price.", "The instructions were in French.",
    "It stopped working and the refund took weeks.", "Five stars, would recommend.",
    "The package contained two screws.", "Mediocre at best.", "This changed my mornings!",
    "Broken on arrival, very disappointed.", "It weighs about a kilogram.", "Pure joy to use.",
    "Cheap plastic, feels flimsy.", "The colour matches the photo.", "Best gift I ever gave.",
    "Returned it the next day.", "It is fine.", "Awful smell when it heats up.",
    "Setup took ten minutes.", "I am thrilled with it.",
]  # fmt: skip
PROBLEMS = [
    f"A shop had {a} apples. It sold {b} and then bought {c} more. How many apples does it have?"
    for a, b, c in [
        (23, 20, 6), (15, 4, 9), (40, 12, 5), (8, 3, 10), (31, 30, 2), (50, 25, 25), (12, 7, 7),
        (19, 9, 1), (27, 14, 3), (33, 11, 8), (9, 9, 9), (60, 45, 12), (14, 2, 20), (22, 21, 4),
        (17, 6, 6), (45, 5, 15), (38, 19, 2), (11, 10, 30), (26, 13, 13), (70, 35, 1),
        (16, 8, 4), (29, 28, 7), (42, 2, 3), (35, 17, 9), (13, 12, 12), (55, 50, 5), (21, 1, 1),
        (18, 9, 18), (64, 32, 16), (10, 5, 25), (37, 36, 11), (48, 24, 6),
    ]
]  # fmt: skip


@dataclass
class Measure:
    label: str
    wall_s: float
    rows: int
    tokens: int
    texts: list[str]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


def timed(label: str, fn: Callable[[], tuple[list[str], int]], rows: int) -> Measure:
    started = time.perf_counter()
    texts, tokens = fn()
    return Measure(label, time.perf_counter() - started, rows, tokens, texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--workload", choices=["W1", "W2", "both"], default="both")
    parser.add_argument("--overhead-only", action="store_true", help="only the logprobs overhead")
    parser.add_argument(
        "--choices-only", action="store_true", help="only W1's choice scoring against generation"
    )
    args = parser.parse_args()

    from bench_setup import default_model_and_library, machine_line

    backend, library = default_model_and_library()
    print(machine_line(backend))

    workloads = {
        "W1": ("zero-shot-sentiment-chat", [{"text": r} for r in REVIEWS], 32),
        "W2": ("chain-of-thought-math", [{"question": q} for q in PROBLEMS], 64),
    }
    for name, (prompt, rows, max_new) in workloads.items():
        if args.workload in (name, "both"):
            rows = (rows * ((args.rows + len(rows) - 1) // len(rows)))[: args.rows]
            if not (args.overhead_only or args.choices_only):
                workload(name, library, backend, prompt, rows, max_new)
            if not args.choices_only:
                logprobs_overhead(name, library, backend, prompt, rows, max_new)
            if name == "W1" and not args.overhead_only:
                choice_scoring(library, backend, prompt, rows, max_new)


def workload(
    name: str,
    library: Any,
    backend: Any,
    prompt: str,
    rows: list[dict[str, str]],
    max_new: int,
) -> None:
    import torch
    from transformers import pipeline

    from workbench.backends.model_files import default_gguf
    from workbench.runner import Runner

    model, tok = backend.model, backend.tokenizer
    version = library.get(prompt)
    rendered = [version.file.render(r) for r in rows]
    messages = [[m.as_dict() for m in r.messages] for r in rendered]
    inputs = [backend.model_input(r) for r in rendered]
    overrides = {"max_new_tokens": max_new, "temperature": 0, "stop": []}
    print(f"\n{name}: {prompt} × {len(rows)} rows, greedy, max_new_tokens {max_new}")

    def by_hand() -> tuple[list[str], int]:
        texts, tokens = [], 0
        with torch.inference_mode():
            for m in messages:
                enc = tok.apply_chat_template(
                    m, add_generation_prompt=True, return_tensors="pt", return_dict=True
                )
                out = model.generate(
                    **enc, max_new_tokens=max_new, do_sample=False, pad_token_id=backend.pad_id
                )
                new = out[0, enc["input_ids"].shape[1] :]
                tokens += _count(new.tolist(), backend.eos_ids)
                texts.append(tok.decode(new, skip_special_tokens=True))
        return texts, tokens

    def with_pipeline() -> tuple[list[str], int]:
        pipe = pipeline("text-generation", model=model, tokenizer=tok)
        pipe.tokenizer.padding_side = "left"
        results = pipe(
            messages, batch_size=8, max_new_tokens=max_new, do_sample=False,
            pad_token_id=backend.pad_id, return_full_text=False,
        )  # fmt: skip
        texts = [r[0]["generated_text"] for r in results]
        tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        return texts, tokens

    def ours(use_cache: bool) -> Callable[[], tuple[list[str], int]]:
        def go() -> tuple[list[str], int]:
            summary = Runner(library, backend).run(
                [version], rows, overrides=overrides, use_cache=use_cache
            )
            texts = [o.text or "" for o in summary.outputs]
            return texts, sum(o.completion_tokens or 0 for o in summary.outputs)

        return go

    # Warm up every path once on two rows so no path pays first-call costs.
    with torch.inference_mode():
        backend.generate(inputs[:2], backend_params(overrides))
    a = timed("(a) one generate per row", by_hand, len(rows))
    b = timed("(b) pipeline batch_size=8", with_pipeline, len(rows))
    c = timed("(c) workbench runner", ours(False), len(rows))
    d = timed("(d) workbench runner, cached", ours(True), len(rows))
    e = None
    with contextlib.suppress(ImportError):
        e = timed(
            "(e) llama.cpp, one at a time",
            llama_cpp(default_gguf(), messages, max_new),
            len(rows),
        )
    measures = [m for m in (a, b, c, d, e) if m is not None]
    print(f"{'':34}{'wall s':>8}{'rows/s':>9}{'tok/s':>9}{'differ from a':>15}")
    for m in measures:
        differ = sum(x.strip() != y.strip() for x, y in zip(m.texts, a.texts, strict=True))
        print(
            f"{m.label:34}{m.wall_s:8.2f}{m.rows_per_s:9.2f}{m.tokens_per_s:9.1f}"
            f"{differ:>10}/{len(rows)}"
        )
    unit = "rows/s" if name == "W1" else "tok/s"

    def rate(m: Measure) -> float:
        return m.rows_per_s if name == "W1" else m.tokens_per_s

    ratios = [f"c/a {rate(c) / rate(a):.2f}", f"c/b {rate(c) / rate(b):.2f}"]
    if e is not None:
        ratios.append(f"c/e {rate(c) / rate(e):.2f}")
    ratios.append(f"d/c time {d.wall_s / c.wall_s:.1%}")
    print(f"ratios ({unit}): " + ", ".join(ratios))


def logprobs_overhead(
    name: str,
    library: Any,
    backend: Any,
    prompt: str,
    rows: list[dict[str, str]],
    max_new: int,
    rounds: int = 3,
) -> None:
    """What recording token log-probabilities costs the runner, measured two ways.

    Direct: the time spent inside the recorder (each step's log-softmax, top-k and lists, and
    each row's record) as a share of the run's wall time — robust to a shared machine's load,
    since both are taken in the same run. End to end: the runner with the recorder against one
    that keeps nothing (swapped in for this measurement only), alternated so the machine's load
    falls on both, best of each; on a busy machine this one is noisier than the effect."""
    from unittest import mock

    from workbench.backends import local
    from workbench.backends.processors import LogprobRecorder
    from workbench.runner import Runner

    spent = [0.0]

    class Timing(LogprobRecorder):
        def observe(self, scores: Any) -> None:
            started = time.perf_counter()
            super().observe(scores)
            spent[0] += time.perf_counter() - started

        def took(self, tokens: Any, rows: list[int] | None = None) -> None:
            started = time.perf_counter()
            super().took(tokens, rows)
            spent[0] += time.perf_counter() - started

        def result(self, row: int, steps: int) -> Any:
            started = time.perf_counter()
            found = super().result(row, steps)
            spent[0] += time.perf_counter() - started
            return found

    class Nothing(LogprobRecorder):
        def observe(self, scores: Any) -> None:
            pass

        def took(self, tokens: Any, rows: list[int] | None = None) -> None:
            pass

    version = library.get(prompt)
    overrides = {"max_new_tokens": max_new, "temperature": 0, "stop": []}

    def run() -> float:
        started = time.perf_counter()
        Runner(library, backend).run([version], rows, overrides=overrides, use_cache=False)
        return time.perf_counter() - started

    run()  # warm up
    with mock.patch.object(local, "LogprobRecorder", Timing):
        wall = run()
    print(
        f"{name} logprobs overhead, direct: {spent[0]:.3f} s of {wall:.2f} s in the recorder "
        f"= {spent[0] / (wall - spent[0]):+.1%} (target ≤ +5%)"
    )
    with_lp: list[float] = []
    without: list[float] = []
    for _ in range(rounds):
        with mock.patch.object(local, "LogprobRecorder", Nothing):
            without.append(run())
        with_lp.append(run())
    best_with, best_without = min(with_lp), min(without)
    print(
        f"{name} logprobs overhead, end to end: runner {best_with:.2f} s with token "
        f"log-probabilities, "
        f"{best_without:.2f} s without (best of {rounds} each, alternated): "
        f"{best_with / best_without - 1:+.1%} (target ≤ +5%)"
    )


def choice_scoring(
    library: Any,
    backend: Any,
    prompt: str,
    rows: list[dict[str, str]],
    max_new: int,
    rounds: int = 5,
) -> None:
    """W1 through the runner three ways, alternated so the machine's load falls on all:
    generating the label, scoring the three labels, scoring them calibrated."""
    from workbench.choices import ChoiceRequest
    from workbench.runner import Runner

    version = library.get(prompt)
    overrides = {"max_new_tokens": max_new, "temperature": 0, "stop": []}
    labels = "Positive,Negative,Neutral"
    ways = {
        "(g) generate the label": None,
        "(s) score 3 choices": ChoiceRequest.build(labels),
        "(s+c) score 3 choices, calibrated": ChoiceRequest.build(labels, calibrate=True),
    }

    def run(request: Any) -> float:
        started = time.perf_counter()
        Runner(library, backend).run(
            [version], rows, overrides=overrides, use_cache=False, choices=request
        )
        return time.perf_counter() - started

    for request in ways.values():  # warm up
        run(request)
    best = {label: min(run(request) for _ in range(1)) for label, request in ways.items()}
    for _ in range(rounds - 1):
        for label, request in ways.items():
            best[label] = min(best[label], run(request))
    print(f"\nW1 answer choices: {prompt} × {len(rows)} rows (best of {rounds}, alternated)")
    print(f"{'':38}{'wall s':>8}{'rows/s':>9}")
    for label, wall in best.items():
        print(f"{label:38}{wall:8.2f}{len(rows) / wall:9.2f}")
    g, s_, c = best.values()
    print(f"ratios (rows/s): s/g {g / s_:.2f}, (s+c)/g {g / c:.2f}")


def backend_params(overrides: dict[str, object]) -> object:
    from workbench.params import GenerationParams

    return GenerationParams.from_values(overrides)


def _count(ids: list[int], eos: set[int]) -> int:
    for i, t in enumerate(ids):
        if t in eos:
            return i + 1
    return len(ids)


def llama_cpp(
    gguf: Path, messages: list[list[dict[str, str]]], max_new: int
) -> Callable[[], tuple[list[str], int]]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=os.cpu_count(), verbose=False)

    def go() -> tuple[list[str], int]:
        texts, tokens = [], 0
        for m in messages:
            out = llm.create_chat_completion(m, max_tokens=max_new, temperature=0.0)
            texts.append(out["choices"][0]["message"]["content"] or "")
            tokens += out["usage"]["completion_tokens"]
        return texts, tokens

    return go


if __name__ == "__main__":
    main()
