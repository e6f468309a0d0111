"""Options several subcommands share, spelled and defaulted once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_instance_option(parser: argparse.ArgumentParser) -> None:
    environ = os.environ.get
    parser.add_argument(
        "-i", "--instance", default=environ("DANDIFS_INSTANCE") or environ("DANDI_INSTANCE"),
        help="dandi-cli instance name or API URL (default: dandi)",
    )


def add_cache_dir_option(parser: argparse.ArgumentParser) -> None:
    """`--cache-dir`: the directory the mount, the fsspec filesystem and `dandifs get`
    share ($DANDIFS_CACHE_DIR, else the machine's)."""
    from dandifs.core import default_cache_dir

    parser.add_argument(
        "--cache-dir", type=Path,
        default=Path(os.environ.get("DANDIFS_CACHE_DIR") or default_cache_dir()),
        help="the cache directory the mount, the fsspec filesystem and `dandifs get` share",
    )


def add_json_option(parser: argparse.ArgumentParser, what: str = "print JSON for scripts") -> None:
    parser.add_argument("--json", action="store_true", help=what)
