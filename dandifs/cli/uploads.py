"""`dandifs uploads`: files written into drafts that the archive does not have yet.

    dandifs uploads [list] [--cache-dir D] [--json]
    dandifs uploads retry ID [-i INSTANCE] [--cache-dir D]
    dandifs uploads discard ID [--cache-dir D]

`list` reads the journal the mount and the server keep in the cache directory: each
upload's path, phase and, for a failed one, the archive's reason.  `retry` runs a failed
upload again in this process, with the token dandi-cli would use, and waits for it (a
running mount shows its progress and the asset when it is done).  `discard` gives one
up: its spooled bytes are deleted (not while a running process sends it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime
from pathlib import Path

from dandifs.cli.common import add_cache_dir_option, add_instance_option, add_json_option


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dandifs uploads", description="List, retry or discard uploads to drafts."
    )
    parser.add_argument("action", nargs="?", default="list", choices=("list", "retry", "discard"))
    parser.add_argument("upload_id", nargs="?", help="the upload (from `dandifs uploads`)")
    add_instance_option(parser)
    add_cache_dir_option(parser)
    add_json_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    base = args.cache_dir.expanduser()
    if args.action != "list" and not args.upload_id:
        parser.error(f"{args.action} needs an upload id (see `dandifs uploads`)")
    if args.action == "list":
        return _list(base, args.json)
    if args.action == "discard":
        return _discard(base, args.upload_id)
    return _retry(base, args.instance, args.upload_id)


def _list(base: Path, as_json: bool) -> int:
    from dandifs.core.cachedir import journalled_uploads

    records = journalled_uploads(base)
    if as_json:
        print(json.dumps([
            {"id": r.id, "dandiset": r.dandiset_id, "path": r.path, "size": r.size,
             "phase": r.phase.value, "parts_done": len(r.parts), "parts_total": r.parts_total,
             "reason": r.reason, "spool": r.spool, "updated": r.updated}
            for r in records
        ]))
        return 0
    if not records:
        print(f"no uploads pending or failed in {base}")
        return 0
    for r in records:
        when = datetime.fromtimestamp(r.updated).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r.id}  {r.dandiset_id}/{r.path}  {r.size} bytes  {r.state.describe()}  ({when})")
    return 0


def _discard(base: Path, upload_id: str) -> int:
    from dandifs.core.cachedir import discard_journalled_upload

    from dandifs.errors import DandiFSError

    try:
        record = discard_journalled_upload(base, upload_id)
    except KeyError:
        print(f"dandifs uploads: no upload {upload_id} in {base}", file=sys.stderr)
        return 1
    except DandiFSError as exc:
        print(f"dandifs uploads: {exc}", file=sys.stderr)
        return 1
    print(f"discarded {record.dandiset_id}/{record.path} ({record.size} bytes)")
    return 0


def _retry(base: Path, instance: str | None, upload_id: str) -> int:
    import trio

    from dandifs.core import CoreConfig, open_core
    from dandifs.errors import DandiFSError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = CoreConfig.in_directory(base, disk_bytes=1 << 30, memory_bytes=64 << 20)

    async def retry() -> None:
        async with open_core(instance, config=config) as core:
            await core.retry_upload(upload_id)
            await core.drain_uploads()
            left = [r for r in core.uploads() if r.id == upload_id]
            if left:
                raise DandiFSError(f"{left[0].path}: {left[0].state.describe()}")

    try:
        trio.run(retry)
    except DandiFSError as exc:
        print(f"dandifs uploads: {exc}", file=sys.stderr)
        return 1
    print(f"upload {upload_id} is done")
    return 0
