"""What the daemon tells the kernel beside request replies: tuning, and cache invalidations.

Per-mount kernel tuning that pyfuse3 cannot ask for in FUSE INIT (root only):

By default the kernel sends buffered READs of 128 KiB (the bdi read-ahead) and keeps at
most 12 background requests in flight.  Raising the bdi read-ahead to 1 MiB gives 1 MiB
READs (about 3x the throughput of a Python daemon), and a larger `max_background` lets
the kernel's asynchronous read-ahead overlap with our network fetches.  Both are sysfs
files writable only by root; without them the mount still works, just slower.

When the archive changes at a path through the core (an upload done, a rename, a delete),
what the kernel cached of it (the attributes, the pages, a cached absence) is out of date
before its TTL ends: `KernelCaches` tells the kernel to forget it.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from pathlib import Path

import pyfuse3
import trio

from dandifs.fuse.inodes import InodeTable
from dandifs.namespace import parent_path

log = logging.getLogger(__name__)

READ_AHEAD_KB = 1024
MAX_BACKGROUND = 64
CONGESTION_THRESHOLD = 48
FUSECTL = Path("/sys/fs/fuse/connections")


def tune(mountpoint: str) -> dict[str, int]:
    """Raise read-ahead and background limits for the FUSE mount at `mountpoint`.

    Returns what was set (empty when not permitted); never raises, since a mount that
    works slowly is better than none.  Must not run on the thread serving the mount:
    the `stat` below is answered by it.
    """
    applied: dict[str, int] = {}
    try:
        device = os.stat(mountpoint).st_dev
    except OSError as exc:
        log.warning("cannot stat %s to tune it: %s", mountpoint, exc)
        return applied
    major, minor = os.major(device), os.minor(device)
    if _write(Path(f"/sys/class/bdi/{major}:{minor}/read_ahead_kb"), READ_AHEAD_KB):
        applied["read_ahead_kb"] = READ_AHEAD_KB
    connection = FUSECTL / str(minor)
    if not connection.exists():
        _mount_fusectl()
    if _write(connection / "max_background", MAX_BACKGROUND):
        applied["max_background"] = MAX_BACKGROUND
    if _write(connection / "congestion_threshold", CONGESTION_THRESHOLD):
        applied["congestion_threshold"] = CONGESTION_THRESHOLD
    log.info("kernel tuning for %s (%d:%d): %s", mountpoint, major, minor, applied or "none")
    return applied


def _write(path: Path, value: int) -> bool:
    try:
        path.write_text(f"{value}\n")
        return True
    except OSError as exc:
        log.debug("cannot set %s: %s", path, exc)
        return False


def _mount_fusectl() -> None:
    """Mount the fusectl filesystem where `max_background` lives, if root and not yet there."""
    if os.geteuid() != 0 or not FUSECTL.is_dir():
        return
    subprocess.run(
        ["mount", "-t", "fusectl", "fusectl", str(FUSECTL)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class KernelCaches:
    """Invalidates the kernel's caches of changed paths, off the request handlers.

    `changed` may be called from any thread and at any time; the invalidations are sent
    only while `run` runs (between the FUSE session's start and its end: after
    `pyfuse3.close` there is no kernel to tell, and a call would crash).  Inode
    invalidations run in a worker thread: the kernel may wait for a request of ours (a read
    of that inode in flight) before it answers, and the event loop must stay free to reply.
    """

    def __init__(self, inodes: InodeTable) -> None:
        self._inodes = inodes
        self._send, self._receive = trio.open_memory_channel[str](math.inf)
        self._token: trio.lowlevel.TrioToken | None = None
        self.sent = 0

    def changed(self, path: str) -> None:
        token = self._token
        if token is None:
            return  # not serving: the kernel holds nothing of ours
        try:
            token.run_sync_soon(self._send.send_nowait, path)
        except trio.RunFinishedError:
            pass

    async def run(self) -> None:
        """Send invalidations until cancelled (the session's end)."""
        self._token = trio.lowlevel.current_trio_token()
        try:
            async for path in self._receive:
                await self._invalidate(path)
        finally:
            self._token = None

    async def _invalidate(self, path: str) -> None:
        """A path the kernel knows keeps its name (names change only through the kernel's
        own requests, which it already applied): its attributes and pages are dropped.
        Dropping the name as well would let the kernel forget the inode, and the file would
        come back under a new number.  A path it does not know may be cached as absent: that
        is dropped."""
        inode = self._inodes.peek(path)
        if inode is not None:
            try:
                await trio.to_thread.run_sync(pyfuse3.invalidate_inode, inode)
                self.sent += 1
            except OSError as exc:  # the kernel no longer knows it: nothing to forget
                log.debug("invalidating inode %d (%s): %s", inode, path, exc)
            return
        parent = self._inodes.peek(parent_path(path))
        if parent is not None:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            pyfuse3.invalidate_entry_async(parent, os.fsencode(name), ignore_enoent=True)
            self.sent += 1
