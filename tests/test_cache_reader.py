"""The block cache and range reader against a real HTTP object server on loopback, fetched
through the archive client's ranged reads, counting the requests the server answered."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from cache_http import ObjectServer, round_trips, server  # noqa: F401 (a fixture)
from dandifs import errors
from dandifs.archive import ArchiveClient, RetryPolicy
from dandifs.cache import BlockCache, CacheConfig, ObjectRef, RangeReader, open_block_cache
from dandifs.cache.disk import DiskStore

pytestmark = pytest.mark.anyio

KiB, MiB = 1 << 10, 1 << 20
BLOCK = 256 * KiB
QUICK_RETRIES = RetryPolicy(max_attempts=2, total_time=10, base_delay=0.01)




@asynccontextmanager
async def cache_over(config: CacheConfig | None = None) -> AsyncIterator[BlockCache]:
    """A cache whose fetcher is the archive client's object store (no API is needed: object
    URLs are fetched as they are)."""
    client = ArchiveClient("http://127.0.0.1:9/api", anonymous=True, policy=QUICK_RETRIES)
    async with client, open_block_cache(client.objects, config or CacheConfig()) as cache:
        yield cache


async def until(condition: Callable[[], bool], limit: float = 30.0) -> None:
    """Poll `condition`; the limit only keeps a broken cache from hanging the test."""
    with anyio.fail_after(limit):
        while not condition():
            await anyio.sleep(0.005)


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def fetched_once(served: list) -> list[tuple[int, int]]:
    """The byte ranges the requests covered, adjacent ones merged; fails if any byte was
    fetched twice (a read's blocks may come in several parallel GETs, each byte once)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted((s.start, s.end) for s in served):
        assert not merged or start >= merged[-1][1], f"fetched twice: {served}"
        if merged and start == merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


async def test_repeated_reads_are_served_from_memory(server):
    data = random_bytes(4 * MiB)
    url = server.put("blob", data, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        assert await reader.read(100, 5000) == data[100:5100]
        for _ in range(5):
            assert await reader.read(100, 5000) == data[100:5100]
            assert await RangeReader(cache, url, len(data), "e1").read(3000, 10) == data[3000:3010]
        stats = cache.statistics()
    assert len(server.served()) == 1
    assert (stats.requests, stats.misses, stats.memory_hits) == (1, 1, 10)


async def test_every_range_reads_exactly_the_objects_bytes(server):
    data = random_bytes(3 * MiB + 12345, seed=1)
    url = server.put("blob", data, "e1")
    pick = random.Random(2)
    async with cache_over(CacheConfig(memory_bytes=2 * MiB)) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for _ in range(300):
            offset = pick.randrange(len(data) + 100)
            size = pick.choice([1, 17, 4096, BLOCK, BLOCK + 1, 3 * BLOCK + 5, 1 * MiB])
            assert await reader.read(offset, size) == data[offset : offset + size]
        assert await reader.read(len(data) - 10, 100) == data[-10:]
        assert await reader.read(len(data), 100) == b""
        assert await reader.read(0, 0) == b""
        with pytest.raises(ValueError, match="offset -1"):
            await reader.read(-1, 10)


async def test_a_small_object_is_fetched_whole_by_its_first_read(server):
    small, large = random_bytes(1536 * KiB, seed=20), random_bytes(2 * MiB + 1, seed=21)
    small_url, large_url = server.put("small", small, "e1"), server.put("large", large, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, small_url, len(small), "e1")
        for offset in (10, 1200 * KiB, 300 * KiB, 0):
            assert await reader.read(offset, 5000) == small[offset : offset + 5000]
        assert await RangeReader(cache, large_url, len(large), "e1").read(10, 5) == large[10:15]
    assert fetched_once(server.served("small")) == [(0, len(small))]
    assert len(server.served("small")) <= CacheConfig().max_requests
    assert [(s.start, s.end) for s in server.served("large")] == [(0, BLOCK)]


async def test_the_first_read_of_the_tail_fetches_all_of_it(server):
    data = random_bytes(8 * MiB + 1000, seed=24)
    url = server.put("blob", data, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        assert await reader.read(len(data) - 5000, 100) == data[-5000:-4900]
        for offset in (len(data) - 1 * MiB, len(data) - 300 * KiB, len(data) - 10):
            assert await reader.read(offset, 100) == data[offset : offset + 100]
        assert await reader.read(3 * MiB, 100) == data[3 * MiB : 3 * MiB + 100]
    tail_start = (len(data) - 1 * MiB) // BLOCK * BLOCK
    assert fetched_once(server.served()) == [(3 * MiB, 3 * MiB + BLOCK), (tail_start, len(data))]
    assert server.served()[-1].start == 3 * MiB  # the whole tail came with the first read


async def test_prefetching_both_ends_fetches_each_once_and_the_first_reads_join(server):
    data = random_bytes(8 * MiB + 1000, seed=25)
    url = server.put("blob", data, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        await reader.prefetch_ends()
        assert await reader.read(len(data) - 5000, 100) == data[-5000:-4900]
        assert await reader.read(40, 100) == data[40:140]
        assert await reader.read(len(data) - 1 * MiB, 100) == data[-1 * MiB : -1 * MiB + 100]
    tail_start = (len(data) - 1 * MiB) // BLOCK * BLOCK
    assert fetched_once(server.served()) == [(0, BLOCK), (tail_start, len(data))]
    assert cache.statistics().joined >= 3


async def test_a_reads_missing_blocks_go_out_as_parallel_requests_over_a_slow_link(server):
    """Once one connection is known to move bytes slowly, five missing blocks go out as five
    GETs at once: the read waits one round trip, not for one connection to move all five.
    Before any rate is known, and over a fast link, one GET carries them."""
    server.latency, server.stream_rate = 0.2, 4e6  # a 256 KiB block takes 66 ms to move
    data = random_bytes(8 * MiB, seed=27)
    url = server.put("blob", data, "e1")
    offset, size = 2 * MiB + BLOCK - 100, 3 * BLOCK + 200  # the ends of five blocks
    five_blocks = [(2 * MiB + i * BLOCK, 2 * MiB + (i + 1) * BLOCK) for i in range(5)]

    async def read_five(config: CacheConfig, *, warm: bool) -> None:
        server.forget_served()
        async with cache_over(config) as cache:
            reader = RangeReader(cache, url, len(data), "e1")
            if warm:
                await reader.read(6 * MiB, 100)  # one block: the link's rate is measured
                server.forget_served()
            assert await reader.read(offset, size) == data[offset : offset + size]

    # Five blocks take 0.33 s to move at 4 MB/s: worth splitting.
    await read_five(CacheConfig(), warm=True)
    assert sorted((s.start, s.end) for s in server.served()) == five_blocks
    assert server.max_in_flight == 5 and round_trips(server.served()) == 1
    # Unknown rate; too few request slots; a link that moves the five blocks fast enough.
    for config, warm in [(CacheConfig(), False),
                         (CacheConfig(max_requests=1), True),
                         (CacheConfig(parallel_read_seconds=1.0), True)]:
        await read_five(config, warm=warm)
        assert [(s.start, s.end) for s in server.served()] == [(2 * MiB, 2 * MiB + 5 * BLOCK)]
    await read_five(CacheConfig(read_piece_bytes=2 * BLOCK), warm=True)
    assert sorted(s.end - s.start for s in server.served()) == [BLOCK, 2 * BLOCK, 2 * BLOCK]


async def test_eight_concurrent_readers_of_one_block_cause_one_fetch(server):
    server.latency = 0.2
    data = random_bytes(3 * MiB, seed=3)
    url = server.put("blob", data, "e1")
    results: list[bytes] = []
    async with cache_over() as cache:

        async def read_once() -> None:
            results.append(await RangeReader(cache, url, len(data), "e1").read(300_000, 1000))

        async with anyio.create_task_group() as tasks:
            for _ in range(8):
                tasks.start_soon(read_once)
        stats = cache.statistics()
    assert results == [data[300_000:301_000]] * 8
    assert [(s.start, s.end) for s in server.served()] == [(BLOCK, 2 * BLOCK)]
    assert (stats.requests, stats.misses, stats.joined) == (1, 1, 7)


async def test_a_reader_that_gives_up_does_not_cancel_the_fetch_others_wait_on(server):
    server.latency = 0.3
    data = random_bytes(1 * MiB, seed=4)
    url = server.put("blob", data, "e1")
    async with cache_over() as cache:
        got: list[bytes] = []

        async def patient() -> None:
            got.append(await RangeReader(cache, url, len(data), "e1").read(0, 10))

        async with anyio.create_task_group() as tasks:
            with anyio.move_on_after(0.05):
                impatient = RangeReader(cache, url, len(data), "e1")
                tasks.start_soon(patient)
                await impatient.read(0, 10)
        assert got == [data[:10]]
    assert fetched_once(server.served()) == [(0, len(data))]


async def test_sequential_reading_grows_the_read_ahead_window(server):
    data = random_bytes(24 * MiB, seed=5)
    url = server.put("blob", data, "e1")
    config = CacheConfig(memory_bytes=64 * MiB, readahead_max_bytes=8 * MiB)
    windows = []
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        pieces = []
        for offset in range(0, len(data), 128 * KiB):
            pieces.append(await reader.read(offset, 128 * KiB))
            windows.append(reader.readahead_window)
        stats = cache.statistics()
    assert b"".join(pieces) == data
    assert windows[:8] == [0, 2, 4, 4, 8, 8, 16, 16]  # blocks: doubling per block entered
    assert max(windows) == config.readahead_max_blocks == 32
    served = server.served()
    assert sum(s.end - s.start for s in served) == len(data)  # nothing fetched twice
    assert len(served) <= 12  # 96 blocks, mostly in 4 MiB halves of the 8 MiB window
    assert max(s.end - s.start for s in served) >= 4 * MiB
    assert stats.requests == len(served) and stats.readahead_requests >= len(served) - 3
    assert stats.readahead_hits >= 80


async def test_random_reads_do_not_read_ahead(server):
    data = random_bytes(64 * MiB, seed=6)
    url = server.put("blob", data, "e1")
    # Away from the object's last MiB, whose first read fetches all of it (tested below).
    offsets = random.Random(7).sample(range(0, len(data) - 2 * MiB, 3 * MiB), 15)
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in offsets:
            assert await reader.read(offset, 4096) == data[offset : offset + 4096]
            assert reader.readahead_window == 0
        stats = cache.statistics()
    served = server.served()
    assert len(served) == len({offset // BLOCK for offset in offsets}) == stats.requests
    assert all(s.end - s.start <= 2 * BLOCK for s in served)
    assert stats.readahead_requests == 0


async def test_a_large_random_read_fetches_the_next_one_alongside(server):
    """How the kernel splits an application's 1.3 MB read into 1 MiB FUSE reads: the second
    must not wait another round trip."""
    server.latency = 0.2
    data = random_bytes(32 * MiB, seed=27)
    url = server.put("blob", data, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        await reader.read(0, 100)  # the network feeds this handle
        first = 10 * MiB + 4096
        assert await reader.read(first, 1 * MiB) == data[first : first + 1 * MiB]
        second = first + 1 * MiB
        assert await reader.read(second, 300_000) == data[second : second + 300_000]
        assert cache.statistics().readahead_hits >= 1
    # The GETs that carried both reads' bytes were all in flight together.
    both = [s for s in server.served() if s.start < second + 300_000 and s.end > first]
    assert both and round_trips(both) == 1


async def test_read_ahead_never_delays_a_read_beyond_its_own_blocks(server):
    """With read-ahead queued behind one slow slot, a far read still takes one round trip."""
    server.latency = 0.25
    data = random_bytes(64 * MiB, seed=8)
    url = server.put("blob", data, "e1")
    config = CacheConfig(max_prefetch_requests=1, max_request_bytes=1 * MiB)
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in range(0, 3 * MiB, 512 * KiB):
            await reader.read(offset, 512 * KiB)  # builds a window queued behind one slot
        server.hold()
        try:
            await until(lambda: server.in_flight > 0)  # a read-ahead GET holds the one slot
            far = RangeReader(cache, url, len(data), "e1")
            got: list[bytes] = []

            async def read_far() -> None:
                got.append(await far.read(60 * MiB, 100))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(read_far)
                # The far read's GET goes out while the read-ahead is still unanswered.
                await until(lambda: any(s.start <= 60 * MiB < s.end for s in server.served()))
                server.release()
        finally:
            server.release()
    assert got == [data[60 * MiB : 60 * MiB + 100]]


async def test_a_changed_etag_is_stale_and_bytes_are_never_mixed(server):
    old = random_bytes(3 * MiB, seed=9)
    url = server.put("blob", old, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(old), "e1")
        assert await reader.read(0, 100) == old[:100]
        server.put("blob", random_bytes(3 * MiB, seed=10), "e2")
        assert await reader.read(0, 100) == old[:100]  # cached: the old object's own bytes
        with pytest.raises(errors.Stale):
            await reader.read(BLOCK - 50, 100)  # half cached, half not: an error, not a mix
        with pytest.raises(errors.Stale):
            await reader.read(5 * BLOCK, 100)


async def test_fetch_errors_reach_the_reader_and_are_not_cached(server):
    url = server.url("later")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, 1000, "e1")
        with pytest.raises(errors.NotFound):
            await reader.read(0, 10)
        data = random_bytes(1000, seed=11)
        server.put("later", data, "e1")
        assert await reader.read(0, 10) == data[:10]


async def test_an_error_inside_the_cache_block_comes_out_as_itself(server):
    url = server.put("blob", random_bytes(3 * MiB, seed=22), "e1")
    with pytest.raises(errors.Stale, match="changed"):
        async with cache_over() as cache:
            server.put("blob", random_bytes(3 * MiB, seed=23), "e2")
            await RangeReader(cache, url, 3 * MiB, "e1").read(0, 10)


async def test_a_new_cache_on_the_same_directory_reads_warm_with_zero_requests(server, tmp_path):
    data = random_bytes(6 * MiB, seed=12)
    url = server.put("blob", data, "e1")
    config = CacheConfig(disk_dir=tmp_path)
    reads = [(0, 8), (8, 200), (3 * MiB, 1 * MiB), (len(data) - 100, 100)]
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset, size in reads:
            await reader.read(offset, size)
    cold_requests = len(server.served())
    server.forget_served()
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset, size in reads:
            assert await reader.read(offset, size) == data[offset : offset + size]
        stats = cache.statistics()
    assert cold_requests >= 3
    assert server.served() == []
    assert stats.requests == 0 and stats.disk_hits >= 4


async def test_blocks_evicted_from_memory_come_back_from_disk(server, tmp_path):
    data = random_bytes(4 * MiB, seed=16)
    url = server.put("blob", data, "e1")
    config = CacheConfig(disk_dir=tmp_path, memory_bytes=1 * MiB, disk_flush_bytes=1 * MiB)
    requests_after = []
    async with cache_over(config) as cache:
        for passes in range(3):
            reader = RangeReader(cache, url, len(data), "e1")
            for offset in range(0, len(data), 256 * KiB):
                assert await reader.read(offset, 256 * KiB) == data[offset : offset + 256 * KiB]
                if passes == 0:
                    # Blocks waiting for the disk count in the 1 MiB bound: a backlog
                    # that small is written before the next read adds to it.
                    await cache.flush()
            requests_after.append(cache.statistics().requests)
        stats = cache.statistics()
    assert requests_after[0] == requests_after[1] == requests_after[2]  # memory holds 1 MiB
    assert stats.bytes_fetched == len(data)
    assert stats.disk_hits > 0


async def test_the_disk_store_stays_within_its_capacity_while_streaming(server, tmp_path):
    data = random_bytes(24 * MiB, seed=17)
    url = server.put("blob", data, "e1")
    others = [server.put(f"other{i}", random_bytes(3 * MiB, seed=i), "e1") for i in range(3)]
    config = CacheConfig(
        disk_dir=tmp_path, disk_bytes=8 * MiB, memory_bytes=4 * MiB, disk_flush_bytes=1 * MiB
    )
    async with cache_over(config) as cache:
        for other in others:
            await RangeReader(cache, other, 3 * MiB, "e1").read(0, 3 * MiB)
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in range(0, len(data), 1 * MiB):
            assert await reader.read(offset, 1 * MiB) == data[offset : offset + 1 * MiB]
    stored = list(DiskStore(tmp_path, block_size=BLOCK, capacity=config.disk_bytes).scan())
    assert sum(entry.allocated for entry in stored) <= config.disk_bytes
    assert len(stored) < 4  # the first small objects made room ...
    assert ObjectRef(url, len(data), "e1").key in {entry.key for entry in stored}  # ... for it


async def test_a_disk_that_cannot_be_written_only_costs_persistence(server, tmp_path, caplog):
    data = random_bytes(2 * MiB, seed=18)
    url = server.put("blob", data, "e1")
    config = CacheConfig(disk_dir=tmp_path, disk_flush_bytes=256 * KiB)
    ref = ObjectRef(url, len(data), "e1")
    blocker = tmp_path / f"blocks-v1-{BLOCK}" / ref.key[:2] / f"{ref.key}.data"
    blocker.mkdir(parents=True)  # where the data file should go: writing it fails (EISDIR)
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in range(0, len(data), 256 * KiB):
            assert await reader.read(offset, 256 * KiB) == data[offset : offset + 256 * KiB]
        await cache.flush()
        assert await reader.read(0, 10) == data[:10]
    assert "could not write the cache disk" in caplog.text


async def test_a_warm_replay_makes_no_requests_even_where_read_ahead_ran_further(server, tmp_path):
    """Read-ahead goes to the network only for a reader that is waiting on the network: a
    replay served from disk does not fetch what the first run's read-ahead left unfinished."""
    server.latency = 0.05
    data = random_bytes(64 * MiB, seed=25)
    url = server.put("blob", data, "e1")
    config = CacheConfig(disk_dir=tmp_path)
    reads = [(offset, 1 * MiB) for offset in range(0, 8 * MiB, 1 * MiB)]  # a stream ...
    reads += [(40 * MiB + 123, 1 * MiB + 5000), (20 * MiB, 100)]  # ... a large read, a small one
    for run in ("cold", "warm", "warm again"):
        server.forget_served()
        async with cache_over(config) as cache:
            reader = RangeReader(cache, url, len(data), "e1")
            for offset, size in reads:
                assert await reader.read(offset, size) == data[offset : offset + size]
            await reader.aclose()
        if run == "cold":
            assert server.served()
        else:
            assert server.served() == [], run


async def test_reading_on_past_the_warm_part_reads_ahead_from_the_network_again(server, tmp_path):
    data = random_bytes(32 * MiB, seed=26)
    url = server.put("blob", data, "e1")
    config = CacheConfig(disk_dir=tmp_path)
    async with cache_over(config) as cache:
        await RangeReader(cache, url, len(data), "e1").read(0, 1 * MiB)
    server.forget_served()
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in range(0, 16 * MiB, 1 * MiB):
            assert await reader.read(offset, 1 * MiB) == data[offset : offset + 1 * MiB]
        stats = cache.statistics()
    # Past the warm first MiB, read-ahead goes to the network again and carries a good part
    # of the 15 MiB read on.  (How much the reads fetch themselves depends on how soon the
    # read-ahead tasks run beside them, which a loaded machine decides.)
    assert stats.readahead_requests > 0
    assert stats.readahead_bytes >= 4 * MiB


async def test_without_an_etag_blocks_stay_in_memory_only(server, tmp_path):
    data = random_bytes(1 * MiB, seed=13)
    url = server.put("blob", data, "e1")
    async with cache_over(CacheConfig(disk_dir=tmp_path)) as cache:
        await RangeReader(cache, url, len(data)).read(0, 10)
    assert not list(tmp_path.rglob("*.data"))


WARM_READER = textwrap.dedent(
    """
    import sys
    import trio
    from dandifs.archive import ArchiveClient
    from dandifs.cache import CacheConfig, RangeReader, open_block_cache

    async def main(directory, url, size):
        async with ArchiveClient("http://127.0.0.1:9/api", anonymous=True) as client:
            async with open_block_cache(client.objects, CacheConfig(disk_dir=directory)) as cache:
                reader = RangeReader(cache, url, size, "e1")
                step = 64 * 1024
                data = b"".join([await reader.read(o, step) for o in range(0, size, step)])
                sys.stdout.buffer.write(data)
                print(cache.statistics(), file=sys.stderr)

    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


async def test_a_new_process_reads_warm_data_with_zero_requests(server, tmp_path):
    data = random_bytes(3 * MiB, seed=14)
    url = server.put("blob", data, "e1")
    async with cache_over(CacheConfig(disk_dir=tmp_path)) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in range(0, len(data), 1 * MiB):
            await reader.read(offset, 1 * MiB)
    server.forget_served()
    child = await anyio.run_process(
        [sys.executable, "-c", WARM_READER, str(tmp_path), url, str(len(data))],
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert child.returncode == 0, child.stderr.decode()
    assert child.stdout == data
    assert server.served() == []
    assert "requests=0" in child.stderr.decode()


BOUNDED_STREAMER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import trio
    from dandifs.archive import ArchiveClient
    from dandifs.cache import CacheConfig, RangeReader, open_block_cache

    def resident_bytes():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    async def main(url, size, memory_bytes, passes):
        config = CacheConfig(memory_bytes=memory_bytes)
        async with ArchiveClient("http://127.0.0.1:9/api", anonymous=True) as client:
            async with open_block_cache(client.objects, config) as cache:
                baseline, peak, held, digests = resident_bytes(), 0, 0, set()
                for _ in range(passes):
                    digest = hashlib.sha256()
                    reader = RangeReader(cache, url, size, "e1")
                    for offset in range(0, size, 1 << 20):
                        digest.update(await reader.read(offset, 1 << 20))
                        peak = max(peak, resident_bytes())
                        held = max(held, cache.statistics().memory_bytes)
                    digests.add(digest.hexdigest())
                stats = cache.statistics()
        print(json.dumps({"growth": peak - baseline, "held": held, "digests": sorted(digests),
                          "fetched": stats.bytes_fetched}))

    trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    """
)


async def stream_in_child(url: str, size: int, memory_bytes: int, passes: int) -> dict:
    """Stream an object through a cache in a fresh process, whose resident memory is
    a clean measure (this one's allocator keeps what earlier tests freed)."""
    child = await anyio.run_process(
        [sys.executable, "-c", BOUNDED_STREAMER, url, str(size), str(memory_bytes), str(passes)],
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert child.returncode == 0, child.stderr.decode()
    return json.loads(child.stdout)


async def test_memory_stays_bounded_while_streaming_an_object_much_larger_than_it(server):
    data = random_bytes(96 * MiB, seed=15)
    url = server.put("blob", data, "e1")
    result = await stream_in_child(url, len(data), 8 * MiB, passes=2)
    growth = result["growth"] / MiB
    print(f"\nRSS growth streaming 2 x 96 MiB through an 8 MiB memory cache: {growth:.0f} MiB")
    assert result["digests"] == [hashlib.sha256(data).hexdigest()]
    assert result["held"] <= 8 * MiB
    assert result["fetched"] == 2 * len(data)  # the second pass could not be cached
    # Cached blocks, requests in flight, the HTTP client's buffers: far below the object.
    assert result["growth"] < 48 * MiB, f"RSS grew by {result['growth'] / MiB:.0f} MiB"


async def test_a_memory_cache_larger_than_the_object_keeps_all_of_it(server):
    """The measure above can tell: with room for the object, memory grows by its size."""
    data = random_bytes(64 * MiB, seed=19)
    url = server.put("blob", data, "e1")
    result = await stream_in_child(url, len(data), 128 * MiB, passes=2)
    assert result["fetched"] == len(data)
    assert result["growth"] >= len(data)


@pytest.mark.slow
async def test_streaming_200_mb_with_30_ms_latency(server):
    """Request counts for a long sequential read over a slow link; prints the throughput."""
    server.latency = 0.030
    data = os.urandom(200 * MiB)
    url = server.put("blob", data, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        started = time.perf_counter()
        total = 0
        for offset in range(0, len(data), 1 * MiB):
            total += len(await reader.read(offset, 1 * MiB))
        elapsed = time.perf_counter() - started
        stats = cache.statistics()
    served = server.served()
    print(
        f"\n200 MiB sequential, 30 ms latency: {elapsed:.2f} s, {total / MiB / elapsed:.0f} MiB/s, "
        f"{len(served)} GETs, {stats}"
    )
    assert total == len(data)
    assert sum(s.end - s.start for s in served) == len(data)
    assert len(served) <= 200 // 8 + 20  # 8 MiB GETs once the window is open


async def test_the_object_store_measures_how_fast_one_connection_delivers(server):
    server.stream_rate = 2e6
    data = random_bytes(1 * MiB, seed=29)
    url = server.put("blob", data, "e1")
    client = ArchiveClient("http://127.0.0.1:9/api", anonymous=True, policy=QUICK_RETRIES)
    async with client:
        objects = client.objects
        await objects.read_range(url, 0, 64 * KiB)
        assert objects.stream_rate is None  # too short to time
        await objects.read_pieces(url, 0, 512 * KiB, piece_size=BLOCK)
        assert objects.stream_rate is not None and 1e6 < objects.stream_rate < 2.5e6


async def test_read_ahead_uses_more_smaller_requests_over_slow_connections(server):
    """The same read-ahead bytes in flight, over more connections when each is slow; full
    8 MiB GETs when one connection moves that much quickly enough."""
    server.stream_rate = 40e6  # 30 ms move 1.2 MB: read-ahead GETs of four blocks
    data = random_bytes(24 * MiB, seed=30)
    url = server.put("blob", data, "e1")
    async with cache_over() as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in range(0, len(data), 1 * MiB):
            assert await reader.read(offset, 1 * MiB) == data[offset : offset + 1 * MiB]
        stats = cache.statistics()
    sizes = [s.end - s.start for s in server.served()]
    assert stats.readahead_requests > 8
    # Once the rate is known: only GETs sent before the first answer came (a read's, and
    # at most `max_prefetch_requests` of read-ahead) may be larger.
    early = 1 + CacheConfig().max_prefetch_requests
    assert sum(size > 4 * BLOCK for size in sizes) <= early, sizes
    server.forget_served()
    async with cache_over(CacheConfig(readahead_request_seconds=10.0)) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        for offset in range(0, len(data), 1 * MiB):
            assert await reader.read(offset, 1 * MiB) == data[offset : offset + 1 * MiB]
    assert max(s.end - s.start for s in server.served()) == 32 * BLOCK


# -- the memory bound: blocks, reservations for fetches under way, the disk backlog ----------


def bound_total(cache: BlockCache) -> int:
    """What `CacheConfig.memory_bytes` bounds, as the cache counts it now."""
    stats = cache.statistics()
    return stats.memory_bytes + stats.memory_reserved_bytes + stats.memory_held_out_bytes


async def test_read_ahead_reserves_no_more_than_the_memory_bound(server):
    data = random_bytes(48 * MiB, seed=40)
    url = server.put("blob", data, "e1")
    bound = 16 * MiB
    ref = ObjectRef(url, len(data), "e1")
    async with cache_over(CacheConfig(memory_bytes=bound)) as cache:
        server.hold()
        try:
            # Six 8 MiB pieces; read-ahead's own budget would have four in flight.
            ticket = cache.prefetch(ref, range(len(data) // BLOCK))
            await until(lambda: server.in_flight == 2)
            await anyio.sleep(0.2)  # room for a third request to arrive, if one were sent
            assert server.in_flight == 2
            assert sum(s.end - s.start for s in server.served()) == bound
            assert cache.statistics().memory_reserved_bytes == bound
        finally:
            server.release()
        await until(lambda: ticket.settled and cache.statistics().readahead_requests == 6)
        stats = cache.statistics()
        assert stats.memory_peak_bytes <= bound
        assert bound_total(cache) <= bound
        assert stats.memory_reserved_bytes == 0
        assert stats.readahead_bytes == len(data)  # waiting never dropped a piece
        reader = RangeReader(cache, url, len(data), "e1")
        assert await reader.read(len(data) - 5 * MiB, 1 * MiB) == data[-5 * MiB : -4 * MiB]
    assert server.max_in_flight <= 2


async def test_streaming_with_a_disk_stays_within_the_memory_bound(server, tmp_path):
    data = random_bytes(48 * MiB, seed=41)
    url = server.put("blob", data, "e1")
    bound = 8 * MiB
    config = CacheConfig(disk_dir=tmp_path, memory_bytes=bound, disk_flush_bytes=1 * MiB)
    totals = []
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        digest = hashlib.sha256()
        for offset in range(0, len(data), 128 * KiB):  # as the kernel asks
            digest.update(await reader.read(offset, 128 * KiB))
            totals.append(bound_total(cache))
        stats = cache.statistics()
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert max(totals) <= bound
    assert stats.memory_peak_bytes <= bound
    assert stats.bytes_fetched == len(data)


async def test_a_read_larger_than_the_memory_bound_completes(server, tmp_path):
    data = random_bytes(12 * MiB, seed=42)
    url = server.put("blob", data, "e1")
    bound = 2 * MiB
    config = CacheConfig(disk_dir=tmp_path, memory_bytes=bound, disk_flush_bytes=256 * KiB)
    async with cache_over(config) as cache:
        reader = RangeReader(cache, url, len(data), "e1")
        # A read never waits for room: it passes the bound until its blocks are stored.
        assert await reader.read(1 * MiB, 8 * MiB) == data[1 * MiB : 9 * MiB]
        assert cache.statistics().memory_peak_bytes >= 8 * MiB
        assert bound_total(cache) <= bound
        # Reads of several handles at once, with read-ahead behind them, all finish.
        readers = [RangeReader(cache, url, len(data), "e1") for _ in range(4)]
        got: dict[int, bytes] = {}

        async def stream(number: int, reader: RangeReader) -> None:
            parts = [await reader.read(offset, 1 * MiB) for offset in range(0, len(data), 1 * MiB)]
            got[number] = b"".join(parts)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for number, each in enumerate(readers):
                    tasks.start_soon(stream, number, each)
        assert got == dict.fromkeys(range(4), data)
        await cache.flush()
        assert bound_total(cache) <= bound
        assert cache.statistics().memory_reserved_bytes == 0
