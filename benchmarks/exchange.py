"""How long a large library takes to export and to import back, and whether the round trip holds.

Run on demand (not part of the test suite):

    .venv/bin/python benchmarks/exchange.py                          # 200 prompts × 20 versions
    .venv/bin/python benchmarks/exchange.py --prompts 50 --versions 10
    .venv/bin/python benchmarks/exchange.py --database-url postgresql+psycopg://…  # an EMPTY db

Seeds a temporary SQLite library (migrated like a real one) with PROMPTS prompts of VERSIONS
versions each — the built-in prompts in turn (about 0.9 KB each), every version one body line
more, with a note, and two labels per prompt — then times `export_library`, `import_files` of
that zip into a second, empty library (the one `--database-url` names, else another temporary
SQLite file), and the export of the imported library, which must give the same bytes. Prints
wall and CPU seconds (CPU is the steadier figure on a shared machine) and versions per second.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy.orm import Session  # noqa: E402

from workbench.exchange import export_library, import_files  # noqa: E402
from workbench.library import Library  # noqa: E402
from workbench.store import PromptVersion, Store  # noqa: E402
from workbench.templates import parse_prompt  # noqa: E402

BUILTINS = sorted((ROOT / "workbench" / "prompts").glob("*.prompty"))


def prompt_text(p: int, v: int) -> str:
    """The built-in prompts (about 0.9 KB each) in turn, renamed, each revision a new body line."""
    text = BUILTINS[p % len(BUILTINS)].read_text(encoding="utf-8")
    text = re.sub(r"^name: .*$", f"name: prompt-{p:03d}", text, count=1, flags=re.MULTILINE)
    return text.rstrip("\n") + f"\nRevision {v}.\n"


def seed(library: Library, prompts: int, versions: int) -> None:
    """Rows written straight through the ORM: seeding 4,000 versions by `save` would take long."""
    from workbench.library import content_hash
    from workbench.store import Prompt, utcnow

    def write(s: Session) -> None:
        for p in range(prompts):
            prompt = Prompt(name=f"prompt-{p:03d}", created_at=utcnow())
            s.add(prompt)
            s.flush()
            parent = None
            for v in range(1, versions + 1):
                pf = parse_prompt(prompt_text(p, v))
                content = pf.canonical_text()
                row = PromptVersion(
                    prompt_id=prompt.id,
                    number=v,
                    content=content,
                    content_hash=content_hash(content),
                    technique=", ".join(pf.techniques),
                    mode=pf.mode,
                    description=pf.description,
                    parent_id=parent,
                    note=f"revision {v}",
                    created_at=utcnow(),
                )
                s.add(row)
                s.flush()
                parent = row.id

    library.store.transaction(write)
    for p in range(prompts):
        library.set_label(f"prompt-{p:03d}@{versions}", "production")
        library.set_label(f"prompt-{p:03d}@{max(1, versions - 1)}", "candidate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--database-url", help="an empty database to import into")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Library(Store(f"sqlite:///{Path(tmp) / 'source.db'}"))
        seed(source, args.prompts, args.versions)
        n = args.prompts * args.versions

        t0, c0 = time.perf_counter(), time.process_time()
        first = export_library(source).data
        t_export, c_export = time.perf_counter() - t0, time.process_time() - c0

        target = Library(Store(args.database_url or f"sqlite:///{Path(tmp) / 'target.db'}"))
        t0, c0 = time.perf_counter(), time.process_time()
        report = import_files(target, [("prompt-library.zip", first)])
        t_import, c_import = time.perf_counter() - t0, time.process_time() - c0

        second = export_library(target).data
        print(f"{n} versions, zip {len(first) / 1024 / 1024:.1f} MB")
        print(f"export  {t_export:6.2f} s ({c_export:6.2f} s CPU)  {n / t_export:6.0f} versions/s")
        print(
            f"import  {t_import:6.2f} s ({c_import:6.2f} s CPU)  {n / t_import:6.0f} versions/s"
            f"  ({report.summary()})"
        )
        print(f"round trip byte-identical: {second == first}")


if __name__ == "__main__":
    main()
