"""A technique ablation's trials on the default model: our runner against one generate per row.

Run on demand (not part of the test suite):

    .venv/bin/python benchmarks/improve.py              # 12 variants × 40 rows
    .venv/bin/python benchmarks/improve.py --rows 8     # a quick look

The variants are what `workbench ablate` makes (workbench.variants.make_variants) of the built-in
sentiment prompts, the generated ones (scored-choice variants do not generate), the first 12; the
rows are the first 40 reviews of examples/sentiment-train.csv and -dev.csv. Greedy, the prompts'
own max_new_tokens, stop sequences off on both paths so both generate the same tokens.
  (a) the loop a user writes by hand: for every variant and row, one `model.generate`;
  (r) the workbench runner, each variant a trial version run over the rows as one run (shared
      prefix reused, rows batched), on a fresh database so nothing comes from the cache;
  (c) the runner again: every trial answered from the cache (what a repeated ablation costs).
Printed: wall time of each, the ratios a/r and c/r, and how many outputs differ from (a).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = (
    "few-shot-sentiment",
    "few-shot-sentiment-chat",
    "zero-shot-sentiment",
    "zero-shot-sentiment-chat",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--variants", type=int, default=12)
    args = parser.parse_args()

    import torch
    from bench_setup import default_model_and_library, machine_line

    from workbench.choices import declared_choices
    from workbench.datasets import read_dataset
    from workbench.params import GenerationParams
    from workbench.runner import Runner
    from workbench.variants import make_variants

    backend, library = default_model_and_library()
    rows: list[dict[str, Any]] = []
    for name in ("sentiment-train.csv", "sentiment-dev.csv"):
        rows += [{"text": r["text"]} for r in read_dataset(ROOT / "examples" / name).rows]
    rows = rows[: args.rows]

    trials = []
    for prompt in PROMPTS:
        original = library.get(prompt)
        for variant in make_variants(original.file, rows[0]).variants:
            if (
                variant.file is None
                or declared_choices(variant.file.metadata) is not None  # scored, not generated
                or variant.samples not in (None, 1)
            ):
                continue
            trials.append(library.save_trial(variant.file, prompt, variant.label))
    trials = list({t.ref: t for t in trials}.values())[: args.variants]
    print(f"{machine_line(backend)}; {len(trials)} variants × {len(rows)} rows")

    model, tok = backend.model, backend.tokenizer

    def by_hand() -> list[str]:
        texts = []
        with torch.inference_mode():
            for trial in trials:
                params = GenerationParams.build(trial.file.options, {"stop": []})
                for row in rows:
                    mi = backend.model_input(trial.file.render(row))
                    enc = tok(
                        mi.text, add_special_tokens=mi.add_special_tokens, return_tensors="pt"
                    )
                    out = model.generate(
                        **enc,
                        max_new_tokens=params.max_new_tokens,
                        do_sample=False,
                        pad_token_id=backend.pad_id,
                    )
                    new = out[0, enc["input_ids"].shape[1] :]
                    texts.append(tok.decode(new, skip_special_tokens=True))
        return texts

    def runner(use_cache: bool) -> list[str]:
        texts = []
        for trial in trials:
            summary = Runner(library, backend).run(
                [trial], rows, overrides={"stop": []}, use_cache=use_cache
            )
            texts += [o.text or "" for o in summary.outputs]
        return texts

    with torch.inference_mode():  # warm up both paths on two rows so neither pays first calls
        Runner(library, backend).run([trials[0]], rows[:2], use_cache=False)
    timings: dict[str, float] = {}
    outputs: dict[str, list[str]] = {}
    for label, fn in (
        ("(a) one generate per row", by_hand),
        ("(r) workbench runner", lambda: runner(False)),
        ("(c) runner, from the cache", lambda: runner(True)),
    ):
        started = time.perf_counter()
        outputs[label] = fn()
        timings[label] = time.perf_counter() - started
    a, r, c = timings.values()
    base = outputs["(a) one generate per row"]
    print(f"{'':30}{'wall s':>9}{'differ from a':>15}")
    for label, wall in timings.items():
        differ = sum(x.strip() != y.strip() for x, y in zip(outputs[label], base, strict=True))
        print(f"{label:30}{wall:9.2f}{differ:>10}/{len(base)}")
    print(f"ratios: a/r {a / r:.2f} (runner speed-up), c/r {c / r:.1%} (a repeat's cost)")


if __name__ == "__main__":
    main()
