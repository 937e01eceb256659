"""How long `workbench run` takes as a whole command: a cached answer and a first fresh one.

Run on demand (not part of the test suite):

    .venv/bin/python benchmarks/cli_latency.py                       # 5 rounds
    .venv/bin/python benchmarks/cli_latency.py --runs 9 --against ../older-checkout

Every command is a new process (`python -m workbench.cli …`), timed from its start to its exit,
with the user + system CPU seconds the operating system accounts to it. The commands, on the
default model (converted once beforehand, not timed) in a temporary storage folder and SQLite
database:

- floor: `workbench prompts list` — Python, the imports, opening the store: what every command
  pays, and the yardstick the others are divided by;
- cached: `workbench run zero-shot-sentiment --var text=…` whose answer is already stored (a
  completion prompt), and the same for `zero-shot-sentiment-chat` (through the chat template);
- fresh: `workbench run zero-shot-sentiment --var text=…` with a new text in every round, so the
  model loads and generates (4 new tokens).

The commands take turns (floor, cached, cached chat, fresh, floor, …) after one warm-up round,
so a machine whose speed drifts slows them alike; printed are the wall and CPU seconds (min,
median, max) and each command's median ratio to the floor of the same round. `--against DIR`
runs the same rounds with the code of another checkout (PYTHONPATH=DIR) as well, in its own
storage folder, and prints new ÷ old per command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"
FIXED_TEXT = "I love this product!"


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def commands(round_no: int) -> dict[str, list[str]]:
    fresh = f"Review {round_no} of {time.time_ns()}: it does what it says."
    return {
        "floor: prompts list": ["prompts", "list"],
        "cached (completion)": ["run", "zero-shot-sentiment", "--var", f"text={FIXED_TEXT}"],
        "cached (chat)": ["run", "zero-shot-sentiment-chat", "--var", f"text={FIXED_TEXT}"],
        "fresh (new text)": ["run", "zero-shot-sentiment", "--var", f"text={fresh}"],
    }


def run(tree: Path, storage: Path, args: list[str]) -> tuple[float, float]:
    """One whole command; returns (wall seconds, user + system CPU seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(
        PYTHONPATH=str(tree),
        WORKBENCH_STORAGE_DIR=str(storage),
        WORKBENCH_PROMPTS_DIR=str(ROOT / "prompts"),
        HF_HUB_OFFLINE="1",
    )
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", *args],
            cwd=storage,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(args)} failed:\n{err.read().decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime


def prepare(tree: Path, storage: Path, model: Path | None) -> None:
    """A storage folder holding the converted default model, then one warm-up round."""
    storage.mkdir(parents=True)
    if model is not None:
        shutil.copytree(model, storage / "models" / MODEL)
    for args in commands(-1).values():  # converts the model if it was not copied; stores answers
        run(tree, storage, args)


def converted_model() -> Path | None:
    for base in (os.environ.get("WORKBENCH_STORAGE_DIR"), str(ROOT / "storage")):
        if base and (Path(base) / "models" / MODEL / "workbench-model.json").exists():
            return Path(base) / "models" / MODEL
    return None


def summary(values: list[float]) -> str:
    return f"{min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--against", type=Path, help="another checkout to time the same way")
    args = parser.parse_args()
    trees = {"this": ROOT} | ({"other": args.against.resolve()} if args.against else {})
    model = converted_model()
    with tempfile.TemporaryDirectory(prefix="cli-latency-") as tmp:
        storages = {name: Path(tmp) / name for name in trees}
        for name, tree in trees.items():
            print(f"preparing {name} ({tree}) …", file=sys.stderr)
            prepare(tree, storages[name], model)
            model = model or storages[name] / "models" / MODEL
        timings = {(t, c): Timing() for t in trees for c in commands(0)}
        ratios: dict[tuple[str, str], list[float]] = {k: [] for k in timings}
        for round_no in range(args.runs):
            for name, tree in trees.items():
                walls = {}
                for label, cmd in commands(round_no).items():
                    wall, cpu = run(tree, storages[name], cmd)
                    timings[(name, label)].wall.append(wall)
                    timings[(name, label)].cpu.append(cpu)
                    walls[label] = wall
                floor = walls["floor: prompts list"]
                for label, wall in walls.items():
                    ratios[(name, label)].append(wall / floor)
            print(f"round {round_no + 1}/{args.runs} done", file=sys.stderr)

    print(f"\n{args.runs} rounds; seconds as min / median / max; ratio = median of wall ÷ floor")
    print(f"{'tree':6} {'command':22} {'wall s':>20} {'cpu s':>20} {'÷ floor':>8}")
    for (name, label), t in timings.items():
        ratio = statistics.median(ratios[(name, label)])
        print(f"{name:6} {label:22} {summary(t.wall):>20} {summary(t.cpu):>20} {ratio:8.2f}")
    if args.against:
        print("\nthis ÷ other (median wall):")
        for label in commands(0):
            this = statistics.median(timings[("this", label)].wall)
            other = statistics.median(timings[("other", label)].wall)
            print(f"  {label:22} {this / other:6.2f}")


if __name__ == "__main__":
    main()
