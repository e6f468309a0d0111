"""`dandifs cache stats|clear`: the cache directory the mount, the fsspec filesystem and
`dandifs get` share.

    dandifs cache stats [--cache-dir D] [--json]
    dandifs cache clear [--cache-dir D] [--json]

`clear` is safe beside running mounts: objects they are writing at that moment are kept.
"""

from __future__ import annotations

import argparse
import json
import sys

from dandifs.cli.common import add_cache_dir_option, add_json_option


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dandifs cache", description="Inspect or empty the cache.")
    parser.add_argument("action", choices=("stats", "clear"))
    add_cache_dir_option(parser)
    add_json_option(parser)
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
