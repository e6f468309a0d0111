"""One cache directory shared by several processes: each block comes from S3 once between
them, and a process killed mid-fetch leaves the others reading correct bytes.

The processes are real: fsspec readers in subprocesses and a mount, against the local
archive, whose S3 proxy counts the bytes it sent.  S3 latency makes the second process
arrive while the first one's GETs are still under way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dandifs.fsspec import DandiFileSystem
from fuse_support import MountProcess, require_fuse
from test_fuse_index_prefetch import NWB, s3_requests_once_quiet

KiB = 1 << 10
MiB = 1 << 20
BLOCK = 256 * KiB  # the default block size
# Whole blocks far apart: no read-ahead joins them, no small read takes a fragment instead.
RANGES = [(8 * BLOCK, 12 * BLOCK), (40 * BLOCK, 41 * BLOCK), (64 * BLOCK, 70 * BLOCK)]
REPOSITORY = Path(__file__).resolve().parent.parent
READER = textwrap.dedent(
    """
    import sys
    from dandifs.fsspec import DandiFileSystem

    api_url, cache_dir, path, out = sys.argv[1:5]
    ranges = [tuple(map(int, pair.split("-"))) for pair in sys.argv[5:]]
    fs = DandiFileSystem(api_url, anonymous=True, cache_dir=cache_dir)
    fs.info(path)  # resolved before the start: API requests only
    print("ready", flush=True)
    sys.stdin.readline()
    parts = fs.cat_ranges([path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges])
    with open(out, "wb") as sink:
        sink.write(b"".join(parts))
    fs.close()
    print("done", flush=True)
    """
)


class Reader:
    """An fsspec reader in a process of its own, waiting for `go` to read `RANGES`."""

    def __init__(self, local_archive, cache_dir: Path, path: str, out: Path) -> None:
        self.out = out
        environment = {**os.environ, "DANDI_NO_ET": "1", "PYTHONPATH": str(REPOSITORY)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", READER, local_archive.api_url, str(cache_dir), path,
             str(out), *(f"{a}-{b}" for a, b in RANGES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 120) -> bytes:
        assert self.process.stdout.readline().strip() == "done"
        assert self.process.wait(timeout) == 0
        return self.out.read_bytes()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def nwb_path(published: str) -> str:
    return f"dandisets/000001/{published}/{NWB}"


@pytest.fixture(scope="module")
def direct(local_archive, published) -> bytes:
    """The bytes of `RANGES`, read by a core with no disk cache."""
    fs = DandiFileSystem(local_archive.api_url, anonymous=True, memory_size=64 * MiB)
    try:
        path = nwb_path(published)
        return b"".join(fs.cat_ranges([path] * len(RANGES), [a for a, _ in RANGES],
                                      [b for _, b in RANGES]))
    finally:
        fs.close()


def s3_bytes_once_quiet(local_archive) -> int:
    s3_requests_once_quiet(local_archive)
    return local_archive.s3_stats()["bytes_sent"]


def bytes_read_by(local_archive, readers: list[Reader]) -> tuple[int, list[bytes]]:
    """S3 bytes sent while the readers read, started together."""
    before = s3_bytes_once_quiet(local_archive)
    for reader in readers:
        reader.go()
    results = [reader.finish() for reader in readers]
    return s3_bytes_once_quiet(local_archive) - before, results


def test_two_fsspec_readers_fetch_each_block_once_between_them(
    local_archive, published, direct, tmp_path
) -> None:
    path = nwb_path(published)
    with local_archive.s3_faults(latency_ms=300):
        alone, [only] = bytes_read_by(
            local_archive, [Reader(local_archive, tmp_path / "alone", path, tmp_path / "a")]
        )
        shared = tmp_path / "shared"
        pair = [Reader(local_archive, shared, path, tmp_path / name) for name in ("b", "c")]
        together, results = bytes_read_by(local_archive, pair)
    assert only == direct and results == [direct, direct]
    assert alone >= sum(b - a for a, b in RANGES)
    assert together == alone  # not twice: the second read what the first stored


def test_a_mount_and_an_fsspec_reader_fetch_each_block_once_between_them(
    local_archive, published, direct, tmp_path
) -> None:
    require_fuse()
    path = nwb_path(published)

    def through_mount(cache: Path, reader: Reader | None) -> tuple[int, bytes, bytes | None]:
        with MountProcess(tmp_path / f"mnt-{cache.name}", local_archive.api_url, cache) as mount:
            mounted = mount.mountpoint / path
            mounted.stat()
            before = s3_bytes_once_quiet(local_archive)
            got: list[bytes] = []
            thread = threading.Thread(target=lambda: got.append(read_ranges(mounted)))
            thread.start()
            if reader is not None:
                time.sleep(0.1)  # the mount's GETs are under way
                reader.go()
            thread.join()
            theirs = reader.finish() if reader is not None else None
            return s3_bytes_once_quiet(local_archive) - before, got[0], theirs

    with local_archive.s3_faults(latency_ms=300):
        alone, mine, _ = through_mount(tmp_path / "alone", None)
        shared = tmp_path / "shared"
        reader = Reader(local_archive, shared, path, tmp_path / "fsspec")
        together, ours, theirs = through_mount(shared, reader)
    assert mine == ours == theirs == direct
    assert together == alone


def read_ranges(path: Path) -> bytes:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_RANDOM)  # no kernel read-ahead
        return b"".join(os.pread(handle, b - a, a) for a, b in RANGES)
    finally:
        os.close(handle)


def test_a_reader_killed_mid_fetch_leaves_the_other_fetching_what_is_missing(
    local_archive, published, direct, tmp_path
) -> None:
    path = nwb_path(published)
    shared = tmp_path / "shared"
    with local_archive.s3_faults(latency_ms=3000):
        first = Reader(local_archive, shared, path, tmp_path / "first")
        second = Reader(local_archive, shared, path, tmp_path / "second")
        before = local_archive.s3_stats()["requests"].get("GET", 0)
        first.go()
        deadline = time.monotonic() + 30
        while local_archive.s3_stats()["requests"].get("GET", 0) == before:
            assert time.monotonic() < deadline, "the first reader never fetched"
            time.sleep(0.02)
        time.sleep(0.3)  # every GET of the first is out, none answered yet
        second.go()
        time.sleep(0.5)  # the second waits on the first's claims
        waiting = local_archive.s3_stats()["requests"].get("GET", 0)
        first.kill()
        assert second.finish() == direct
        after = local_archive.s3_stats()["requests"].get("GET", 0)
    assert not first.out.exists()
    assert waiting - before >= 1  # the first was fetching, the second waited
    assert after > waiting  # the second fetched what the first never stored
