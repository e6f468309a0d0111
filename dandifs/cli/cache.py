"""`dandifs cache stats|clear`: the cache directory the mount, the fsspec filesystem and
`dandifs get` share.

    dandifs cache stats [--cache-dir D] [--json]
    dandifs cache clear [--cache-dir D] [--json]

`clear` is safe beside running mounts: objects they are writing at that moment are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from dandifs.core import default_cache_dir

    parser = argparse.ArgumentParser(prog="dandifs cache", description="Inspect or empty the cache.")
    parser.add_argument("action", choices=("stats", "clear"))
    parser.add_argument(
        "--cache-dir", type=Path,
        default=Path(os.environ.get("DANDIFS_CACHE_DIR") or default_cache_dir()),
        help="the cache directory (default: the mount's)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from dandifs.core.cachedir import cache_usage, clear_cache

    base = args.cache_dir.expanduser()
    figures = cache_usage(base) if args.action == "stats" else clear_cache(base)
    if args.json:
        print(json.dumps({"cache_dir": str(base), **figures}))
    else:
        verb = "holds" if args.action == "stats" else "freed"
        print(
            f"{base} {verb} {figures['objects']} objects, {figures['block_bytes'] >> 20} MiB "
            f"of blocks, {figures['metadata_bytes'] >> 10} KiB of metadata"
        )
    return 0
