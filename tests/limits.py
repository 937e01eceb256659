"""Run a piece of hostile work in a child process under a memory and time cap.

Resource-exhaustion tests (a template that renders a gigabyte, a YAML alias bomb, a zip bomb)
must prove a clear refusal in bounded time and memory. Run in the test process, a regression
would take the whole suite down with it; run here, it is a failed assertion. The child gets an
address-space limit (RLIMIT_AS) and a wall-clock timeout, and reports its own wall time and
peak resident memory (imports included) when it ends.

    result = run_bounded('''
        from workbench.templates import parse_prompt
        ...
        print(problem)
    ''')
    assert result.within_bounds, result
    assert "limit" in result.stdout
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 5.0  # the acceptance bound: a clear refusal in under 5 s …
MEMORY_MB = 500  # … and under 500 MB
# The address-space cap is far above MEMORY_MB: mapped libraries count against it in full
# though little of them is resident. It only stops a runaway before it swaps the machine.
ADDRESS_SPACE_MB = 4096

# Peak memory is read from VmHWM in /proc/self/status, not getrusage's ru_maxrss: Linux carries
# ru_maxrss over exec from the forking parent, so a child of a pytest worker that had loaded a
# model reported that worker's 1.2 GB. VmHWM belongs to the new process image alone.
_WRAPPER = """\
import sys as _s, time as _t
_t0 = _t.perf_counter()
try:
{code}
finally:
    _s.stdout.flush()
    with open("/proc/self/status") as _f:
        _hwm = next(int(_l.split()[1]) for _l in _f if _l.startswith("VmHWM:"))
    print("BOUNDED %.3f %.1f" % (_t.perf_counter() - _t0, _hwm / 1024), file=_s.stderr)
"""
_REPORT = re.compile(r"^BOUNDED (\S+) (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Bounded:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float | None  # the child's own wall time; None if it could not report
    peak_mb: float | None  # the child's peak resident memory

    @property
    def within_bounds(self) -> bool:
        return (
            self.returncode is not None
            and self.seconds is not None
            and self.peak_mb is not None
            and self.seconds < SECONDS
            and self.peak_mb < MEMORY_MB
        )


def run_bounded(
    code: str,
    *,
    timeout: float = 3 * SECONDS,
    address_space_mb: int = ADDRESS_SPACE_MB,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Bounded:
    """Run `code` (dedented) with `python -c` under the caps; see the module docstring."""

    def cap() -> None:
        limit = address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    body = textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")
    with subprocess.Popen(
        [sys.executable, "-c", _WRAPPER.format(code=body)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=cwd,
        preexec_fn=cap,
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
            returncode: int | None = child.returncode
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            returncode = None
    report = _REPORT.search(err)
    seconds = float(report.group(1)) if report else None
    peak = float(report.group(2)) if report else None
    return Bounded(returncode, out, _REPORT.sub("", err).strip(), seconds, peak)
