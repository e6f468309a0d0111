"""Run the benchmarks: `python -m bench [NAME ...]` (or `./dev bench [NAME ...]`).

Every `bench/<name>.py` with a `main(argv) -> int | None` is a benchmark; without names all
of them run, one after the other, each printing its own table.  Arguments after `--` go to
each benchmark's `main`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(HERE)])
        if not info.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    names, rest = argv[:split], argv[split + 1 :]
    known = available()
    if any(name in {"-h", "--help"} for name in names):
        print(__doc__.strip(), "\n\nbenchmarks:", " ".join(known))
        return 0
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; known: {' '.join(known)}",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE.parent))
    status = 0
    for name in names or known:
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if entry is None:
            continue
        print(f"== bench {name}", flush=True)
        status = max(status, int(entry(rest) or 0))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
