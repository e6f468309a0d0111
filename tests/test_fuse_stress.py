"""The mount under pressure: concurrent readers, S3 faults, and a memory bound.

Each test mounts with its own empty cache, so every byte it checks really crossed the
network (the local archive's S3 proxy, where faults are switched on).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest

from fuse_support import MountProcess, require_fuse, version_path

LARGE_NWB = "sub-mouse01/sub-mouse01_ses-20240101_ecephys.nwb"
OTHER_NWB = "sub-mouse01/sub-mouse01_ses-20240102_behavior+ophys.nwb"
MiB = 1 << 20


@pytest.fixture(scope="module")
def source_digests(local_archive, published) -> dict[str, str]:
    """sha256 of the objects as S3 serves them directly (no mount involved)."""
    digests = {}
    for path in (LARGE_NWB, OTHER_NWB):
        page = httpx.get(
            f"{local_archive.api_url}/dandisets/000001/versions/{published}/assets/",
            params={"path": path}, timeout=30,
        ).json()
        [asset] = [item for item in page["results"] if item["path"] == path]
        digest = hashlib.sha256()
        with httpx.stream(
            "GET", f"{local_archive.api_url}/assets/{asset['asset_id']}/download/",
            follow_redirects=True, timeout=120,
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes(MiB):
                digest.update(chunk)
        digests[path] = digest.hexdigest()
    return digests


@pytest.fixture
def fresh_mount(local_archive, tmp_path):
    """A mount factory with an empty cache; every mount is stopped at the end."""
    require_fuse()
    made: list[MountProcess] = []

    def make(*options: str) -> MountProcess:
        index = len(made)
        process = MountProcess(
            tmp_path / f"mnt{index}", local_archive.api_url, tmp_path / f"cache{index}",
            options=list(options),
        )
        made.append(process)
        return process.start()

    yield make
    for process in made:
        process.stop()


READER = r"""
import hashlib, sys
path, start, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "rb", buffering=0) as f:
    size = f.seek(0, 2)
    whole = bytearray(size)
    offsets = list(range(0, size, step))
    first = min(range(len(offsets)), key=lambda i: abs(offsets[i] - start))
    for offset in offsets[first:] + offsets[:first]:  # from `start`, wrapping around
        f.seek(offset)
        piece = f.read(step)
        whole[offset : offset + len(piece)] = piece
print(hashlib.sha256(whole).hexdigest())
"""


def test_eight_concurrent_reader_processes_get_correct_bytes(
    fresh_mount, published, source_digests, tmp_path
) -> None:
    mount = fresh_mount()
    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    script = tmp_path / "reader.py"
    script.write_text(READER)
    size = path.stat().st_size
    # Each reader starts elsewhere and reads in its own piece size, so they race for blocks.
    readers = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), str(k * size // 8), str((k + 1) * 512 * 1024)],
            stdout=subprocess.PIPE, text=True,
        )
        for k in range(8)
    ]
    results = [reader.communicate(timeout=300)[0].strip() for reader in readers]
    assert [reader.returncode for reader in readers] == [0] * 8
    assert results == [source_digests[LARGE_NWB]] * 8


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_transient_s3_faults_are_retried_and_bytes_stay_correct(
    fresh_mount, local_archive, published, source_digests
) -> None:
    mount = fresh_mount()
    root = version_path(mount.mountpoint, "000001", published)
    (root / LARGE_NWB).stat()  # metadata first: only S3 is faulted
    before = local_archive.s3_stats()
    with local_archive.s3_faults(error_rate=0.15, reset_rate=0.05, truncate_rate=0.05, seed=7):
        assert _sha256_of(root / LARGE_NWB) == source_digests[LARGE_NWB]
    after = local_archive.s3_stats()
    assert sum(after["faults"].values()) > sum(before["faults"].values()), after


def test_persistent_s3_faults_give_eio_with_a_clear_log_line_not_a_hang(
    fresh_mount, local_archive, published
) -> None:
    mount = fresh_mount()
    path = version_path(mount.mountpoint, "000001", published) / OTHER_NWB
    path.stat()
    started = time.monotonic()
    with local_archive.s3_faults(error_rate=1.0):
        with pytest.raises(OSError) as failed:
            with open(path, "rb") as handle:
                handle.read(1024)
    elapsed = time.monotonic() - started
    assert failed.value.errno == errno.EIO
    assert elapsed < 60, f"the failing read took {elapsed:.0f} s"
    time.sleep(0.2)
    log = mount.log()
    failure_lines = [line for line in log.splitlines() if "-> EIO" in line]
    assert failure_lines, log
    print(f"EIO after {elapsed:.1f} s; log: {failure_lines[0]}")
    assert "Traceback" not in log
    # The mount is still healthy once S3 recovers.
    with open(path, "rb") as handle:
        assert len(handle.read(1024)) == 1024


def test_memory_stays_bounded_while_streaming_a_file_larger_than_the_cache(
    fresh_mount, published, source_digests
) -> None:
    memory_cache = 32 * MiB
    mount = fresh_mount(f"memory_size={memory_cache}")
    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    size = path.stat().st_size
    assert size > 6 * memory_cache
    baseline = mount.rss_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, mount.rss_bytes())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        assert _sha256_of(path) == source_digests[LARGE_NWB]
    finally:
        done.set()
        sampler.join()
    growth = peak - baseline
    # Cached blocks (32 MiB) + bytes in flight (12 requests x 8 MiB) + Python's own slack.
    bound = memory_cache + 12 * 8 * MiB + 64 * MiB
    print(f"mount RSS: baseline {baseline / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB, "
          f"growth {growth / MiB:.0f} MiB while streaming {size / MiB:.0f} MiB")
    assert growth < bound, f"RSS grew {growth / MiB:.0f} MiB (bound {bound / MiB:.0f} MiB)"
    assert growth < size / 2


def test_stalled_s3_gets_cost_a_read_a_hedge_not_the_stall(
    fresh_mount, local_archive, published, source_digests
) -> None:
    """With S3 GETs that stop half-way for far longer than the test may take, eight readers
    of random ranges and one sequential reader of the large file all get the right bytes:
    each stalled GET was given up (counted at the mount) and its missing bytes asked for
    again once, so no read waited for a stall."""
    stall_seconds = 120
    mount = fresh_mount()
    path = version_path(mount.mountpoint, "000001", published) / LARGE_NWB
    size = path.stat().st_size  # metadata first: only S3 is faulted
    whole = bytearray(size)
    seen: list[tuple[int, bytes]] = []
    failures: list[BaseException] = []

    def sequential() -> None:
        with open(path, "rb", buffering=0) as handle:
            view, position = memoryview(whole), 0
            while read := handle.readinto(view[position : position + MiB]):
                position += read

    def random_reader(seed: int) -> None:
        chooser = random.Random(seed)
        with open(path, "rb", buffering=0) as handle:
            for _ in range(24):
                length = chooser.randrange(4096, MiB)
                offset = chooser.randrange(0, size - length)
                seen.append((offset, os.pread(handle.fileno(), length, offset)))

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 (reported by the test thread)
                failures.append(exc)
        return run

    archive_before = mount.stats()["archive"]
    before = local_archive.s3_stats()["faults"].get("stall", 0)
    with local_archive.s3_faults(stall_rate=0.04, stall_seconds=stall_seconds, seed=5):
        threads = [threading.Thread(target=guarded(sequential))]
        threads += [threading.Thread(target=guarded(partial(random_reader, k))) for k in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            # Generous, but shorter than one stall: a read that waited for one fails here.
            thread.join(max(0.0, started + stall_seconds * 0.75 - time.monotonic()))
        hung = sum(thread.is_alive() for thread in threads)
        elapsed = time.monotonic() - started
        stalls = local_archive.s3_stats()["faults"].get("stall", 0) - before
    assert not hung, f"{hung} readers still waiting after {stall_seconds * 0.75:.0f} s"
    assert not failures, failures
    assert hashlib.sha256(whole).hexdigest() == source_digests[LARGE_NWB]
    assert len(seen) == 8 * 24
    assert all(data == whole[offset : offset + len(data)] for offset, data in seen)
    archive = mount.stats()["archive"]
    given_up = archive["stalled_requests"] - archive_before["stalled_requests"]
    hedged = archive["hedged_requests"] - archive_before["hedged_requests"]
    print(f"{elapsed:.1f} s; S3 stalls {stalls}; GETs given up {given_up}, hedged {hedged}; "
          f"object requests {archive['object_requests'] - archive_before['object_requests']}")
    assert stalls > 0
    assert given_up >= stalls  # every stalled GET was given up, none waited for
    assert hedged == given_up  # and each was asked again for its missing bytes, once

