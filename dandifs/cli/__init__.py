"""The `dandifs` command: one subcommand per job, each in its own module.

Each subcommand module exposes `main(argv) -> int` and is imported only when it runs, so
that `dandifs local-archive` does not need pyfuse3 and `dandifs mount` does not need the
local archive's dependencies.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "mount": ("dandifs.cli.mount", "mount the archive with FUSE"),
    "serve": ("dandifs.cli.serve", "serve the archive over WebDAV"),
    "local-archive": ("dandifs.cli.local_archive", "run a local DANDI-compatible archive"),
    "demo": ("dandifs.cli.demo", "local archive + WebDAV server (+ FUSE mount)"),
    "get": ("dandifs.cli.get", "download a file or folder through the cache"),
    "cache": ("dandifs.cli.cache", "cache stats|clear: the machine's block cache"),
    "uploads": ("dandifs.cli.uploads", "list, retry or discard uploads to drafts"),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: dandifs COMMAND [OPTIONS]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0 if args else 2
    if args[0] in {"-V", "--version"}:
        from dandifs import __version__

        print(f"dandifs {__version__}")
        return 0
    entry = SUBCOMMANDS.get(args[0])
    if entry is None:
        print(f"dandifs: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    return int(module.main(args[1:]) or 0)
