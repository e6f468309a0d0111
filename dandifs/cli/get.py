"""`dandifs get PATH DEST`: a download through the machine's block cache.

    dandifs get /dandisets/000026/0.210831.2033/sub-01 ./sub-01 [-i INSTANCE] [--json]

A file or a whole folder (Zarr folders included) is written under DEST as the archive
names it.  Bytes come through the same cache directory as the mount and the fsspec
filesystem, so what any of them read moves no bytes from S3 again.  The download is
resumable: a file already at DEST with the archive's size and digest is kept, and an
interrupted one continues from its `.dandifs-part` file.  Every file is checked against
its digest (dandi-etag for blobs, MD5 for Zarr objects) before it takes its name; a
download that cannot fit in DEST's free space does not start.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from collections.abc import Callable

from dandifs.cli.common import add_cache_dir_option, add_instance_option, add_json_option
from dandifs.core import Core, Entry
from dandifs.errors import DandiFSError, NoSpace, Stale

log = logging.getLogger("dandifs.get")

CHUNK = 8 << 20
"""Bytes asked of the cache per read: large enough to keep its parallel GETs busy."""

PART_SUFFIX = ".dandifs-part"
_DANDI_ETAG = re.compile(r"^[0-9a-f]{32}-\d{1,5}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Summary:
    files: int = 0
    fetched_files: int = 0
    kept_files: int = 0
    bytes: int = 0
    fetched_bytes: int = 0
    s3_requests: int = 0


def build_parser() -> argparse.ArgumentParser:
    from dandifs.fuse.options import DEFAULT_CACHE_SIZE, DEFAULT_MEMORY_SIZE, parse_size

    parser = argparse.ArgumentParser(
        prog="dandifs get", description="Download a file or folder of the archive through the cache."
    )
    parser.add_argument("path", help="archive path, e.g. /dandisets/000026/draft/sub-01")
    parser.add_argument("dest", type=Path, help="where the file or folder is written")
    add_instance_option(parser)
    add_cache_dir_option(parser)
    parser.add_argument("--cache-size", type=parse_size, default=DEFAULT_CACHE_SIZE)
    parser.add_argument("--memory-size", type=parse_size, default=DEFAULT_MEMORY_SIZE)
    add_json_option(parser, "print a JSON summary, no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="dandifs get: %(message)s")
    import trio

    try:
        summary = trio.run(download, args)
    except DandiFSError as exc:
        print(f"dandifs get: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(summary)))
    else:
        print(
            f"{summary.files} files, {summary.bytes} bytes at {args.dest}: "
            f"{summary.fetched_files} fetched ({summary.fetched_bytes} bytes, "
            f"{summary.s3_requests} archive and S3 requests), {summary.kept_files} already there"
        )
    return 0


async def download(args: argparse.Namespace) -> Summary:
    from tqdm import tqdm

    from dandifs.core import CoreConfig, open_core

    config = CoreConfig.in_directory(
        args.cache_dir.expanduser(), disk_bytes=args.cache_size, memory_bytes=args.memory_size
    )
    async with open_core(args.instance, config=config) as core:
        started = core.requests_made
        files = await _files(core, args.path, args.dest)
        summary = Summary(files=len(files), bytes=sum(entry.size for entry, _ in files))
        wanted = [(entry, target) for entry, target in files if not _complete(entry, target)]
        summary.kept_files = len(files) - len(wanted)
        needed = sum(entry.size - _part_size(target) for entry, target in wanted)
        _check_space(args.dest, needed)
        with tqdm(total=needed, unit="B", unit_scale=True, disable=args.json or None) as bar:
            for entry, target in wanted:
                summary.fetched_bytes += await _fetch(core, entry, target, bar.update)
                summary.fetched_files += 1
        summary.s3_requests = core.requests_made - started
        return summary


async def _files(core: Core, path: str, dest: Path) -> list[tuple[Entry, Path]]:
    """Every file under `path` (or `path` itself) and where it goes under `dest`."""
    entry = await core.stat(path, follow=True)
    if not entry.is_folder:
        return [(entry, dest)]
    found: list[tuple[Entry, Path]] = []
    pending = [(entry, dest)]
    while pending:
        folder, target = pending.pop()
        for child in await core.listdir(folder.path, follow=True):
            (pending if child.is_folder else found).append((child, target / child.name))
    return sorted(found, key=lambda item: item[1])


def _part(target: Path) -> Path:
    return target.with_name(target.name + PART_SUFFIX)


def _part_size(target: Path) -> int:
    try:
        return _part(target).stat().st_size
    except FileNotFoundError:
        return 0


def _complete(entry: Entry, target: Path) -> bool:
    """A file already at `target` with the entry's size and digest is kept."""
    try:
        if target.stat().st_size != entry.size:
            return False
    except FileNotFoundError:
        return False
    return _digest_matches(entry, target)


def _check_space(dest: Path, needed: int) -> None:
    existing = next(parent for parent in (dest, *dest.parents) if parent.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise NoSpace(f"{dest} needs {needed} bytes and its disk has {free} free; nothing was fetched")


async def _fetch(
    core: Core, entry: Entry, target: Path, progress: Callable[[int], object]
) -> int:
    """Write the entry's bytes to `target` by way of its part file; returns bytes fetched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _part(target)
    offset = _part_size(target)
    if offset > entry.size:  # not a prefix of this file: start again
        offset = 0
    reader = await core.open(entry)
    try:
        with open(part, "r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            position = offset
            while position < entry.size:
                data = await reader.read(position, min(CHUNK, entry.size - position))
                if not data:
                    raise Stale(f"{entry.path}: the archive gave {position} of {entry.size} bytes")
                out.write(data)
                position += len(data)
                progress(len(data))
    finally:
        await reader.aclose()
    if not _digest_matches(entry, part):
        part.unlink()
        raise Stale(f"{entry.path}: the bytes fetched do not match the archive's digest {entry.etag}")
    os.replace(part, target)
    if entry.mtime is not None:
        stamp = entry.mtime.timestamp()
        os.utime(target, (stamp, stamp))
    return entry.size - offset


def _digest_matches(entry: Entry, path: Path) -> bool:
    """Whether the file has the entry's digest, where one is known and can be computed
    here (dandi-etag needs dandischema; rendered files such as dandiset.yaml have none)."""
    etag = entry.etag or ""
    if _DANDI_ETAG.match(etag):
        try:
            from dandischema.digests.dandietag import DandiETag
        except ImportError:
            return True
        return DandiETag.from_file(path).as_str() == etag
    if _MD5.match(etag):
        digest = hashlib.md5()
        with open(path, "rb") as source:
            for block in iter(lambda: source.read(CHUNK), b""):
                digest.update(block)
        return digest.hexdigest() == etag
    return True
