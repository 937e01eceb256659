"""Constrained decoding on the default model: the built-in `json-answer` free and constrained.

Run on demand (not part of the test suite), with this checkout first on the path:

    PYTHONPATH=. .venv/bin/python benchmarks/constrained.py   # 32 questions, batched, batch 1
    PYTHONPATH=. .venv/bin/python benchmarks/constrained.py --rows 16 --no-batch-1

Each question runs through `json-answer` (a json-format prompt whose `schema` input is the
constraint) with `--no-constrain` and with the default (constrained), greedy, without the cache:
once at the batch size the runner picks and once one row at a time (batch 1). Printed per mode:
how many answers parse as JSON, how many validate against the prompt's own schema, how many
ran out of max_new_tokens (`length`), generated tokens, wall time and tokens per second, and
constrained ÷ free throughput. The issue's target: 100% schema-valid constrained, constrained
throughput ≥ 80% of free at the runner's batch size.

Tokens per second alone misleads here: a constrained answer stops when its JSON closes, so it
is shorter and its wall time holds a larger share of prompt processing, which produces no
answer tokens. The benchmark therefore also times the prompts alone (one new token per row)
and prints the tokens per second after them (answer tokens past the first ÷ wall time past the
prompts' time), answers per second, and the time the grammar
engine's masks took (GrammarMask.took and .mask, timed in place) as a share of the wall time:
what constraining costs a decoding step, separate from how long the answers are.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Who wrote Hamlet?",
    "What is the boiling point of water in Celsius?",
    "Which planet is known as the red planet?",
    "What is 7 times 8?",
    "Which ocean is the largest?",
    "What gas do plants take in from the air?",
    "What is the chemical symbol for gold?",
    "How many days are in a leap year?",
    "Who painted the Mona Lisa?",
    "What is the tallest mountain on Earth?",
    "What language is spoken in Brazil?",
    "At what Fahrenheit temperature does water freeze?",
    "How many continents are there?",
    "What is the largest mammal?",
    "What is the capital of Japan?",
    "How many sides does a hexagon have?",
    "Who discovered penicillin?",
    "What is the square root of 81?",
    "Which metal is liquid at room temperature?",
    "What is the longest river in Africa?",
    "How many minutes are in an hour?",
    "What is the hardest natural substance?",
    "Which country has the largest population?",
    "What is the main language of Mexico?",
    "How many strings does a standard guitar have?",
    "What is the currency of the United Kingdom?",
    "Which organ pumps blood through the body?",
    "What is frozen water called?",
    "How many planets are in the solar system?",
    "What is the capital of Canada?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--no-batch-1", action="store_true", help="skip the one-by-one runs")
    args = parser.parse_args()

    import jsonschema
    from bench_setup import default_model_and_library, machine_line

    from workbench.backends.processors import GrammarMask
    from workbench.runner import Runner

    mask_seconds = [0.0]

    def timed(method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                mask_seconds[0] += time.perf_counter() - started

        return wrapper

    GrammarMask.took = timed(GrammarMask.took)  # type: ignore[method-assign]
    GrammarMask.mask = timed(GrammarMask.mask)  # type: ignore[method-assign]

    backend, library = default_model_and_library()
    version = library.get("json-answer")
    rows = [{"question": q} for q in (QUESTIONS * 4)[: args.rows]]
    schema = json.loads(version.file.inputs["schema"].default)  # the rows give questions only
    print(f"{machine_line(backend)}, {len(rows)} questions")
    Runner(library, backend).run([version], rows[:1], use_cache=False)  # load and warm up

    rates: dict[tuple[str, str], float] = {}
    answers: dict[tuple[str, str], float] = {}
    decode: dict[tuple[str, str], float] = {}
    for batch_label, batch_size in [("batched", None), ("batch 1", 1)]:
        if batch_size == 1 and args.no_batch_1:
            continue
        # The prompts alone (one new token each): the share of a run's wall time that yields
        # no answer tokens, the same for free and constrained.
        started = time.perf_counter()
        Runner(library, backend).run(
            [version],
            rows,
            overrides={"constrain": False, "max_new_tokens": 1},
            use_cache=False,
            batch_size=batch_size,
        )
        prompts_wall = time.perf_counter() - started
        print(f"{batch_label:8s} prompts alone (1 new token each): wall {prompts_wall:.1f} s")
        for mode, constrain in [("free", False), ("constrained", True)]:
            mask_seconds[0] = 0.0
            started = time.perf_counter()
            summary = Runner(library, backend).run(
                [version],
                rows,
                overrides={"constrain": constrain},
                use_cache=False,
                batch_size=batch_size,
            )
            wall = time.perf_counter() - started
            parsed = valid = cut = 0
            for out in summary.outputs:
                cut += out.finish_reason == "length"
                try:
                    value = json.loads(out.text)
                except ValueError:
                    continue
                parsed += 1
                try:
                    jsonschema.validate(value, schema)
                    valid += out.finish_reason != "length"
                except jsonschema.ValidationError:
                    pass
            tokens = summary.generated_tokens
            rates[(batch_label, mode)] = tokens / wall
            n = len(summary.outputs)
            answers[(batch_label, mode)] = n / wall
            decode[(batch_label, mode)] = (tokens - n) / max(wall - prompts_wall, 1e-9)
            print(
                f"{batch_label:8s} {mode:12s} parse {parsed}/{n}  schema-valid {valid}/{n}  "
                f"length {cut}/{n}  {tokens} tokens  wall {wall:.1f} s  "
                f"{tokens / wall:.1f} tok/s  {n / wall:.2f} answers/s  "
                f"after the prompts {decode[(batch_label, mode)]:.1f} tok/s  "
                f"masks {mask_seconds[0]:.2f} s ({mask_seconds[0] / wall:.1%} of wall)",
                flush=True,
            )
            for out in summary.outputs:
                if out.finish_reason == "length":
                    print(f"    cut: {out.variables['question']!r} -> {out.text[-80:]!r}")
        free, constrained = rates[(batch_label, "free")], rates[(batch_label, "constrained")]
        print(
            f"{batch_label:8s} constrained ÷ free: tokens/s {constrained / free:.2f}, answers/s "
            f"{answers[(batch_label, 'constrained')] / answers[(batch_label, 'free')]:.2f}, "
            "tokens/s after the prompts "
            f"{decode[(batch_label, 'constrained')] / decode[(batch_label, 'free')]:.2f}"
        )


if __name__ == "__main__":
    main()
