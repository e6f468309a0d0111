"""One cache directory shared by several processes: each block comes from S3 once between
them, and a process killed mid-fetch leaves the others reading correct bytes.

The processes are real: fsspec readers in subprocesses and a mount, against the local
archive, whose S3 proxy counts the bytes it sent.  S3 latency makes the second process
arrive while the first one's GETs are still under way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dandifs.cache import ObjectRef
from dandifs.cache.disk import DiskStore
from dandifs.fsspec import DandiFileSystem
from fuse_support import MountProcess, require_fuse
from test_fuse_index_prefetch import NWB, s3_requests_once_quiet

KiB = 1 << 10
MiB = 1 << 20
BLOCK = 256 * KiB  # the default block size
# Whole blocks far apart: no read-ahead joins them, no small read takes a fragment instead.
RANGES = [(8 * BLOCK, 12 * BLOCK), (40 * BLOCK, 41 * BLOCK), (64 * BLOCK, 70 * BLOCK)]
# Blocks apart, more than the requests one process makes at once: rounds of GETs, time to
# kill the fetcher between them.
SCATTERED = [(index * BLOCK, (index + 1) * BLOCK) for index in range(200, 392, 4)]
FETCHED = re.compile(r"fetched \S+ bytes \d+-\d+ \(blocks (\d+)-(\d+)")  # one line a GET
REPOSITORY = Path(__file__).resolve().parent.parent
READER = textwrap.dedent(
    """
    import logging, sys
    from dandifs.fsspec import DandiFileSystem

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dandifs.cache.blockcache").setLevel(logging.DEBUG)

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
    """An fsspec reader in a process of its own, waiting for `go` to read its ranges."""

    def __init__(
        self, local_archive, cache_dir: Path, path: str, out: Path,
        ranges: list[tuple[int, int]] = RANGES,
    ) -> None:
        self.out = out
        self.log_path = out.with_suffix(".log")
        environment = {**os.environ, "DANDI_NO_ET": "1", "PYTHONPATH": str(REPOSITORY)}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", READER, local_archive.api_url, str(cache_dir), path,
                 str(out), *(f"{a}-{b}" for a, b in ranges)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=environment,
                text=True,
            )
        assert self.process.stdout.readline().strip() == "ready", self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fetched(self) -> list[int]:
        return fetched_blocks(self.log())

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 120) -> bytes:
        """Its bytes, once it is done; a reader that hangs fails the test."""
        try:
            said, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the reader hung:\n{self.log()[-3000:]}") from None
        assert self.process.returncode == 0 and said.strip() == "done", self.log()[-3000:]
        return self.out.read_bytes()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def fetched_blocks(log_text: str) -> list[int]:
    """Every block a process's debug log says it fetched, as often as it did."""
    return [index for first, last in FETCHED.findall(log_text)
            for index in range(int(first), int(last) + 1)]


def blocks_of(ranges: list[tuple[int, int]]) -> set[int]:
    return {index for a, b in ranges for index in range(a // BLOCK, -(-b // BLOCK))}


def nwb_path(published: str) -> str:
    return f"dandisets/000001/{published}/{NWB}"


def read_directly(local_archive, published: str, ranges: list[tuple[int, int]]) -> bytes:
    """The bytes of `ranges`, read by a core with no disk cache."""
    fs = DandiFileSystem(local_archive.api_url, anonymous=True, memory_size=64 * MiB)
    try:
        path = nwb_path(published)
        return b"".join(fs.cat_ranges([path] * len(ranges), [a for a, _ in ranges],
                                      [b for _, b in ranges]))
    finally:
        fs.close()


@pytest.fixture(scope="module")
def direct(local_archive, published) -> bytes:
    return read_directly(local_archive, published, RANGES)


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
    first, second = (set(reader.fetched()) for reader in pair)
    assert not first & second  # no block fetched by both
    assert blocks_of(RANGES) <= first | second
    # Not twice the bytes (fragments, read by each process itself, may differ a little).
    assert together < 1.5 * alone


def test_a_mount_and_an_fsspec_reader_fetch_each_block_once_between_them(
    local_archive, published, direct, tmp_path
) -> None:
    require_fuse()
    path = nwb_path(published)

    def through_mount(cache: Path, reader: Reader | None) -> tuple[int, bytes, bytes | None]:
        mountpoint = tmp_path / f"mnt-{cache.name}"
        with MountProcess(mountpoint, local_archive.api_url, cache, ["debug"]) as mount:
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
            s3_requests_once_quiet(local_archive)
            return fetched_blocks(mount.log()), got[0], theirs

    with local_archive.s3_faults(latency_ms=300):
        reader = Reader(local_archive, tmp_path / "shared", path, tmp_path / "fsspec")
        by_mount, ours, theirs = through_mount(tmp_path / "shared", reader)
    assert ours == theirs == direct
    by_reader = reader.fetched()
    assert len(set(by_mount)) == len(by_mount) and len(set(by_reader)) == len(by_reader)
    assert not set(by_mount) & set(by_reader)  # no block fetched by both
    assert blocks_of(RANGES) <= set(by_mount) | set(by_reader)
    assert not blocks_of(RANGES) <= set(by_reader)  # the reader read some the mount fetched


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
    expected = read_directly(local_archive, published, SCATTERED)
    shared = tmp_path / "shared"
    with local_archive.s3_faults(latency_ms=700):
        first = Reader(local_archive, shared, path, tmp_path / "first", SCATTERED)
        second = Reader(local_archive, shared, path, tmp_path / "second", SCATTERED)
        first.go()
        deadline = time.monotonic() + 30
        while not blocks_of(SCATTERED) & set(first.fetched()):
            assert time.monotonic() < deadline, "the first reader never fetched"
            time.sleep(0.02)
        second.go()  # a round of the first's GETs is done, the next under way
        time.sleep(1.2)  # the second waits on the first's claims: the next round is stored
        assert first.process.poll() is None, "the first finished before it was killed"
        stored = first.fetched()
        first.kill()
        got = second.finish()
    assert got == expected
    assert stored and not first.out.exists()
    by_second = blocks_of(SCATTERED) & set(second.fetched())
    assert by_second  # it fetched what the first never stored
    assert len(by_second) < len(blocks_of(SCATTERED))  # and read the rest from the disk


# -- claims and eviction, on the disk store alone ---------------------------------------------

CLAIMER = textwrap.dedent(
    """
    import sys, time
    from dandifs.cache import ObjectRef
    from dandifs.cache.disk import DiskStore
    store = DiskStore(sys.argv[1], block_size=int(sys.argv[2]), capacity=1 << 30)
    found, mine, busy = store.object(ObjectRef("https://s3/claimed", 4 * int(sys.argv[2]), "e")
                                     ).claim_missing([0, 1])
    assert not found and mine == [0, 1] and not busy
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_a_claim_holds_off_other_fetchers_and_eviction_until_its_holder_dies(tmp_path) -> None:
    block = 64 * KiB
    claimed = ObjectRef("https://s3/claimed", 4 * block, "e")
    other = ObjectRef("https://s3/other", 4 * block, "e")
    store = DiskStore(tmp_path, block_size=block, capacity=6 * block)
    for ref in (claimed, other):
        obj = store.object(ref)
        obj.claim_missing([3])
        obj.add(3, bytes(block))  # one block each on disk, the claimed object's the older
    store.flush()
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, str(tmp_path), str(block)], stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)}, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        found, mine, busy = store.object(claimed).claim_missing([0, 1, 2])
        assert (found, mine, busy) == ({}, [2], [0, 1])
        store.object(claimed).release([2])
        store.object(claimed).stop_waiting()
        store.capacity = 0  # everything must go: all but the claimed object does
        assert store.evict() == [other.key]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    found, mine, busy = store.object(claimed).claim_missing([0, 1])
    assert (found, mine, busy) == ({}, [0, 1], [])  # the kernel dropped the dead one's claims
    store.object(claimed).release([0, 1])
    assert store.evict() == [claimed.key]
    assert not any(tmp_path.rglob("*.fetching"))
    store.close()


FORKING_CLAIMER = textwrap.dedent(
    """
    import os, sys, time
    from dandifs.cache import ObjectRef
    from dandifs.cache.disk import DiskStore
    store = DiskStore(sys.argv[1], block_size=int(sys.argv[2]), capacity=1 << 30)
    obj = store.object(ObjectRef("https://s3/claimed", 4 * int(sys.argv[2]), "e"))
    assert obj.claim_missing([0])[1] == [0]
    child = os.fork()
    if child == 0:  # fork's after-child hooks have run once it returns here
        print("child", os.getpid(), flush=True)
        time.sleep(600)
        os._exit(0)
    time.sleep(600)
    """
)


def test_a_forked_child_does_not_keep_its_parents_claims(tmp_path) -> None:
    """A child inherits the parent's claim descriptors; they must not outlive the parent."""
    block = 64 * KiB
    parent = subprocess.Popen(
        [sys.executable, "-c", FORKING_CLAIMER, str(tmp_path), str(block)],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPOSITORY)}, text=True,
    )
    child = int(parent.stdout.readline().split()[1])  # the child is past its fork hooks
    try:
        store = DiskStore(tmp_path, block_size=block, capacity=1 << 30)
        obj = store.object(ObjectRef("https://s3/claimed", 4 * block, "e"))
        assert obj.claim_missing([0]) == ({}, [], [0])  # the parent holds it
        obj.stop_waiting()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert obj.claim_missing([0]) == ({}, [0], [])  # gone with it, the child alive
        store.close()
    finally:
        os.kill(child, signal.SIGKILL)
