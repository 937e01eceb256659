"""Dataset runs through the OpenAI-compatible backend: 1 request at a time against 8 at once.

Run on demand (not part of the test suite):

    .venv/bin/python benchmarks/remote.py                       # starts llama-cpp-python's server
    .venv/bin/python benchmarks/remote.py --base-url http://gpu-box:8000/v1 --model NAME

Without --base-url it starts llama-cpp-python's server on the default model's GGUF file
(SmolLM2-135M-Instruct, 2048-token context) on a free port, and stops it afterwards. The
workload is the built-in zero-shot sentiment prompt (chat) over 64 reviews, greedy, with the
cache off, run through the Runner exactly as `workbench run --dataset` does: once with
WORKBENCH_OPENAI_MAX_CONCURRENCY=1 (the baseline) and once with 8. Printed: wall time,
rows/s, generated tokens/s, mean latency per row, and the speed-up.

Every request asks for token log-probabilities (top 5) as the workbench does by default; a
third pass at concurrency 1 with WORKBENCH_OPENAI_TOP_LOGPROBS=0 asks for none, and the cost of
asking is printed, with the bytes per token the stored records take.

A server that answers one request at a time (llama-cpp-python's does: one model, one lock)
shows a speed-up near 1: concurrency then only hides the network round trip. Servers that
batch requests together (vLLM, TGI, llama.cpp's own server with --parallel N) gain from it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # servers.py: how the tests start the server

from generation import REVIEWS  # noqa: E402  (benchmarks/generation.py: the same 32 reviews)


@dataclass
class Measure:
    concurrency: int
    wall_s: float
    rows: int
    tokens: int
    latency_s: float
    top_logprobs: int
    logprob_bytes: int  # stored token log-probabilities, all rows
    logprob_tokens: int  # tokens they hold

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


def measure(
    library: Any, spec: str, concurrency: int, rows: list[dict[str, str]], top_logprobs: int = 5
) -> Measure:
    from workbench.backends.remote import RemoteBackend, ServerSpec
    from workbench.config import OpenAISettings, Settings
    from workbench.runner import Runner
    from workbench.runs import token_logprobs

    settings = Settings.from_env().openai
    settings = OpenAISettings(
        **{**settings.__dict__, "max_concurrency": concurrency, "top_logprobs": top_logprobs}
    )
    backend = RemoteBackend(ServerSpec.parse(spec, settings), settings)
    runner = Runner(library, backend)
    version = library.get("zero-shot-sentiment-chat")
    started = time.perf_counter()
    summary = runner.run([version], rows, overrides={"max_new_tokens": 16}, use_cache=False)
    wall = time.perf_counter() - started
    outputs = summary.outputs
    assert all(o.error is None and o.text is not None for o in outputs)
    records = token_logprobs(library.store, [o.id for o in outputs]).values()
    for notice in summary.notices:  # a server that gives no log-probabilities
        print(f"note: {notice}")
    return Measure(
        concurrency,
        wall,
        len(outputs),
        sum(o.completion_tokens or 0 for o in outputs),
        statistics.mean(o.latency_s or 0 for o in outputs),
        top_logprobs,
        sum(len(r.to_bytes()) for r in records),
        sum(len(r) for r in records),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--base-url", help="an already running server (default: start one)")
    parser.add_argument("--model", default="", help="model name on that server")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from workbench.backends.model_files import default_gguf
    from workbench.config import BUILTIN_PROMPTS
    from workbench.exchange import load_builtins
    from workbench.library import Library
    from workbench.store import Store

    rows = [{"text": REVIEWS[i % len(REVIEWS)] + f" (#{i})"} for i in range(args.rows)]
    with ExitStack() as stack:
        url = args.base_url
        model = args.model
        if url is None:
            from servers import ALIAS, llama_server

            log = Path(tempfile.mkdtemp(prefix="wb-llama-")) / "server.log"
            started = time.perf_counter()
            url = stack.enter_context(llama_server(default_gguf(), log))
            model = ALIAS
            print(f"llama_cpp.server up in {time.perf_counter() - started:.1f} s at {url}")
        os.environ["WORKBENCH_OPENAI_BASE_URL"] = url
        tmp = tempfile.mkdtemp(prefix="wb-bench-")
        library = Library(Store(f"sqlite:///{tmp}/bench.db"))
        load_builtins(library, BUILTIN_PROMPTS)
        spec = f"openai:{model}@{url}"
        print(
            f"{spec}: zero-shot-sentiment-chat × {len(rows)} rows, greedy, max_new_tokens 16, "
            f"no cache, {os.cpu_count()} cores"
        )
        measure(library, spec, 1, rows[:4])  # warm-up: load pages, fill the server's caches
        results = [measure(library, spec, c, rows) for c in (1, args.concurrency)]
        plain = measure(library, spec, 1, rows, top_logprobs=0)
    print(
        f"\n{'concurrency':>11} {'logprobs':>8} {'wall s':>8} {'rows/s':>8} {'tok/s':>8} "
        f"{'latency s':>10}"
    )
    for m in [*results, plain]:
        print(
            f"{m.concurrency:>11} {m.top_logprobs:>8} {m.wall_s:>8.2f} {m.rows_per_s:>8.2f} "
            f"{m.tokens_per_s:>8.1f} {m.latency_s:>10.2f}"
        )
    base, many = results
    if base.logprob_tokens:
        print(
            f"\nasking for token log-probabilities (top {base.top_logprobs}): "
            f"{base.wall_s / plain.wall_s:.2f}× the time of asking for none at concurrency 1 "
            f"({plain.rows_per_s:.2f} → {base.rows_per_s:.2f} rows/s); stored: "
            f"{base.logprob_bytes / base.logprob_tokens:.1f} bytes a token "
            f"({base.logprob_tokens} tokens)"
        )
    else:
        print("\nthe server gave no token log-probabilities")
    print(
        f"\nspeed-up with {many.concurrency} concurrent requests: "
        f"{many.rows_per_s / base.rows_per_s:.2f}× rows/s "
        f"(mean latency per row {many.latency_s / base.latency_s:.2f}× the baseline's)"
    )


if __name__ == "__main__":
    main()
