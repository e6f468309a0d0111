"""`dandifs mount`: the archive as a FUSE filesystem, and the wiring of the layers under it.

    dandifs mount MOUNTPOINT [-i INSTANCE] [-o OPTS] [--cache-dir D] [--cache-size N] [-f]

Without `-f` the command returns once the mount answers and keeps serving in the
background; `fusermount3 -u MOUNTPOINT` or SIGTERM/SIGINT to the daemon unmounts cleanly.
Files written to drafts are uploaded in the background: an unmount waits up to
`upload_wait` seconds for running uploads; what is still unfinished then stays journalled
(and spooled) and resumes at the next start of dandifs with the same cache directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Callable

from dandifs.concurrency import unwrapped
from dandifs.core import Core, CoreConfig, Phase, open_core
from dandifs.errors import DandiFSError
from dandifs.fuse.attrs import AttrPolicy
from dandifs.fuse.operations import DandiOperations
from dandifs.fuse.options import MountOptions, OptionError, apply_options, from_environment

log = logging.getLogger("dandifs.mount")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dandifs mount",
        description="Mount the DANDI Archive (or another instance) as a filesystem: published "
        "versions read-only, drafts writable with an API token.",
    )
    parser.add_argument("mountpoint", type=Path, help="an existing empty folder")
    parser.add_argument(
        "-i", "--instance", help="dandi-cli instance name or API URL (default: dandi)"
    )
    parser.add_argument(
        "-o", dest="options", action="append", default=[], metavar="OPTS",
        help="mount options, comma-separated (allow_other, uid=, gid=, cache_dir=, "
        "cache_size=, memory_size=, index_prefetch=, zarr_readahead=, instance=, token_file=, "
        "log_file=, upload_wait=SECONDS, ro, debug)",
    )
    parser.add_argument("--cache-dir", help="where cached blocks are kept across mounts")
    parser.add_argument("--cache-size", help="bound of the disk cache, e.g. 20G")
    parser.add_argument("--memory-size", help="bound of the in-memory block cache, e.g. 512M")
    parser.add_argument("--log-file", help="log here (background mode default: the cache dir)")
    parser.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("-d", "--debug", action="store_true", help="log every request")
    return parser


def options_from_args(args: argparse.Namespace) -> MountOptions:
    options = from_environment(args.mountpoint.absolute())
    for text in args.options:
        options = apply_options(options, text)
    flags = {
        "instance": args.instance,
        "cache_dir": args.cache_dir,
        "cache_size": args.cache_size,
        "memory_size": args.memory_size,
        "log_file": args.log_file,
    }
    text = ",".join(f"{key}={value}" for key, value in flags.items() if value is not None)
    if args.foreground:
        text += ",foreground"
    if args.debug:
        text += ",debug"
    return apply_options(options, text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        options = options_from_args(args)
        check_mountpoint(options.mountpoint)
    except OptionError as exc:
        print(f"dandifs mount: {exc}", file=sys.stderr)
        return 2
    return mount(options)


def check_mountpoint(mountpoint: Path) -> None:
    """Refuse, with a reason, what would make the kernel or libfuse fail obscurely."""
    if not Path("/dev/fuse").exists():
        raise OptionError("/dev/fuse does not exist: load the fuse kernel module (modprobe fuse)")
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        raise OptionError("fusermount3 is not installed (Debian/Ubuntu: apt install fuse3)")
    if not mountpoint.is_dir():
        raise OptionError(f"mount point {mountpoint} is not an existing folder")
    if os.path.ismount(mountpoint):
        raise OptionError(f"{mountpoint} is already a mount point")


class MountFailed(Exception):
    """The mount could not be made or kept; the message is for the person who asked."""


def mount(options: MountOptions) -> int:
    """Mount and serve: in the foreground, or detached once the mount answers."""
    if options.foreground:
        _configure_logging(options, to_file=options.log_file)
        try:
            return _serve(options, lambda: None)
        except MountFailed as exc:
            if options.log_file is not None:  # else the log line already went to stderr
                print(f"dandifs mount: {exc}", file=sys.stderr)
            return 1
    from dandifs.fuse.daemon import run_in_background

    log_file = options.log_file or options.cache_dir / "mount.log"

    def serve_detached(ready: Callable[[], None]) -> int:
        _configure_logging(options, to_file=log_file)
        return _serve(options, ready)

    return run_in_background(serve_detached, log_file=log_file)


def _configure_logging(options: MountOptions, *, to_file: Path | None) -> None:
    handler: logging.Handler
    if to_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        to_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(to_file)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if options.debug else logging.INFO)
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _serve(options: MountOptions, ready: Callable[[], None]) -> int:
    import trio

    from dandifs.fuse.session import fuse_options, serve

    fsname = options.fsname or f"dandifs:{options.instance}"
    mount_options = fuse_options(fsname=fsname, allow_other=options.allow_other)
    try:
        trio.run(
            partial(serve, on_ready=ready),
            partial(open_filesystem, options),
            str(options.mountpoint),
            mount_options,
        )
    except Exception as exc:
        reason = unwrapped(exc)
        if isinstance(reason, (DandiFSError, OptionError, OSError, RuntimeError)):
            log.error("mount at %s failed: %s", options.mountpoint, reason)
            raise MountFailed(str(reason) or type(reason).__name__) from exc
        raise
    return 0


@asynccontextmanager
async def open_filesystem(options: MountOptions) -> AsyncIterator[DandiOperations]:
    """The core under the mount, opened inside the trio run and closed after the unmount.
    What never changes (published versions' blocks and metadata) is kept in the cache dir,
    for the next mount."""
    config = CoreConfig.in_directory(
        options.cache_dir,
        disk_bytes=options.cache_size,
        memory_bytes=options.memory_size,
        index_prefetch=options.index_prefetch,
        zarr_readahead=options.zarr_readahead,
    )
    token_source = f"token_file={options.token_file}" if options.token_file else "the token given"
    async with open_core(
        options.instance, token=options.token(), token_source=token_source, config=config
    ) as core:
        log.info(
            "archive %s (%s), cache %s (%d MiB on disk, %d MiB in memory)",
            core.instance.api_url,
            "with a token" if core.authenticated else "anonymous",
            config.cache.disk_dir,
            options.cache_size >> 20,
            options.memory_size >> 20,
        )
        policy = AttrPolicy(
            uid=os.getuid() if options.uid is None else options.uid,
            gid=os.getgid() if options.gid is None else options.gid,
            drafts_writable=core.authenticated and not options.read_only,
            ttl_immutable=core.ttl_published,
            ttl_mutable=core.ttl_draft,
        )
        operations = DandiOperations(
            core, policy, read_only=options.read_only, spool_dir=config.uploads_dir
        )
        try:
            yield operations
        finally:
            import trio

            with trio.CancelScope(shield=True):  # even after an error, written files get their chance
                await operations.close_writers()
                await finish_uploads(core, options.upload_wait)
            log.info("statistics: %s", json.dumps(core.statistics()))


async def finish_uploads(core: Core, timeout: float) -> None:
    """Wait up to `timeout` seconds for the uploads still running; say what stays journalled
    for the next start (nothing written is dropped)."""
    running = [record for record in core.uploads() if not record.state.finished]
    if running:
        log.info("waiting up to %.0f s for %d upload(s) to finish", timeout, len(running))
    await core.drain_uploads(timeout)
    for record in core.uploads():
        if record.state.finished:
            continue
        log.warning(
            "upload of %s (dandiset %s) stays journalled for the next start (%s; see "
            "dandifs uploads)", record.path, record.dandiset_id, record.state.describe())
    for record in core.uploads():
        if record.state.phase is Phase.FAILED:
            log.warning(
                "upload of %s (dandiset %s) failed: %s (its bytes stay spooled; see "
                "dandifs uploads)", record.path, record.dandiset_id, record.state.reason)
