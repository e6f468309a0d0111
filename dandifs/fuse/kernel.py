"""Per-mount kernel tuning that pyfuse3 cannot ask for in FUSE INIT (root only).

By default the kernel sends buffered READs of 128 KiB (the bdi read-ahead) and keeps at
most 12 background requests in flight.  Raising the bdi read-ahead to 1 MiB gives 1 MiB
READs (about 3x the throughput of a Python daemon), and a larger `max_background` lets
the kernel's asynchronous read-ahead overlap with our network fetches.  Both are sysfs
files writable only by root; without them the mount still works, just slower.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

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
