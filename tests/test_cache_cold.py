"""Requests sized to the connection's congestion window (`dandifs.cache.fragments`) and
connections opened ahead of reads (`RangeClient.warm`, `dandifs.core.warmer`), counted at a
real loopback object server: request sizes and connections, never seconds.

On loopback every round trip is short, so these tests count any round trip as long
(`cold_round_trip` at a nanosecond) to see what a mount far from its S3 does.
"""

from __future__ import annotations

import json

import anyio
import pytest

from cache_http import ObjectServer, server  # noqa: F401 (a fixture)
from dandifs.archive.objects import ObjectStore
from dandifs.archive.rawhttp import INITIAL_WINDOW
from dandifs.cache import CacheConfig, RangeReader
from dandifs.core.warmer import ORIGINS_FILE, ConnectionWarmer
from dandifs.resolve.entry import Entry, EntryKind
from test_cache_reader import BLOCK, KiB, MiB, cache_over, random_bytes

pytestmark = pytest.mark.anyio

FAR = CacheConfig(cold_round_trip=1e-9)  # every round trip counts as long


async def warmed(objects: ObjectStore, url: str) -> None:
    """One connection to `url`'s origin opened (and its round trip measured)."""
    async with anyio.create_task_group() as group:
        objects.warm(url, 1, group)


async def test_small_reads_over_a_cold_connection_fetch_one_window_each(server):
    data = random_bytes(8 * MiB, seed=40)
    url = server.put("blob", data, "e1")
    async with cache_over(FAR) as cache:
        objects = cache._fetcher
        await warmed(objects, url)  # the round trip is known once a connection is open
        reader = RangeReader(cache, url, len(data), "e1")
        assert await reader.read(0, 8) == data[:8]
        assert await reader.read(600, 3000) == data[600:3600]  # inside the first fragment
        assert await reader.read(5 * MiB + 100, 200) == data[5 * MiB + 100 : 5 * MiB + 300]
        sizes = [s.end - s.start for s in server.served()]
        # the first GET moves one initial window; the next one as much as the window grew to
        assert sizes == [INITIAL_WINDOW, 2 * INITIAL_WINDOW]
        assert cache.statistics().fragment_requests == 2
        # a large read still fetches whole blocks
        assert await reader.read(2 * MiB, 300 * KiB) == data[2 * MiB : 2 * MiB + 300 * KiB]
        assert [(s.start, s.end) for s in server.served()[2:]] == [(2 * MiB, 2 * MiB + 2 * BLOCK)]
        await reader.aclose()  # the blocks under the fragments are fetched for the disk
    assert cache.statistics().requests == 3  # no disk store here: nothing more fetched


async def test_an_hdf5_open_over_a_cold_connection_fetches_its_first_window_only(server):
    data = random_bytes(8 * MiB, seed=41)
    url = server.put("blob", data, "e1")
    async with cache_over(FAR) as cache:
        await warmed(cache._fetcher, url)
        reader = RangeReader(cache, url, len(data), "e1")
        assert await reader.prefetch_ends() is False  # not as blocks
        assert await reader.read(0, 100) == data[:100]  # joins that fetch
        assert [(s.start, s.end) for s in server.served()] == [(0, INITIAL_WINDOW)]
        # near the end: no whole tail over a cold connection
        assert await reader.read(len(data) - 5000, 100) == data[-5000:-4900]
        assert all(s.end - s.start < BLOCK for s in server.served())


async def test_over_short_round_trips_reads_fetch_blocks_as_before(server):
    data = random_bytes(8 * MiB, seed=42)
    url = server.put("blob", data, "e1")
    async with cache_over(CacheConfig(cold_round_trip=3600.0)) as cache:
        await warmed(cache._fetcher, url)
        reader = RangeReader(cache, url, len(data), "e1")
        assert await reader.prefetch_ends() is True
        assert await reader.read(0, 8) == data[:8]
    assert sorted((s.start, s.end) for s in server.served())[0] == (0, BLOCK)


async def test_a_read_is_split_only_over_ready_connections(server):
    data = random_bytes(8 * MiB, seed=43)
    url = server.put("blob", data, "e1")
    server.stream_rate = 2e6  # slow enough that a 1.5 MiB read would be split
    async with cache_over(FAR) as cache:
        objects = cache._fetcher
        await objects.read_pieces(url, 0, 200 * KiB, piece_size=BLOCK, etag="e1")  # a rate
        assert objects.ready_connections(url) == 1
        server.stream_rate = 0
        server.forget_served()
        reader = RangeReader(cache, url, len(data), "e1")
        assert await reader.read(3 * MiB, 6 * BLOCK) == data[3 * MiB : 3 * MiB + 6 * BLOCK]
        assert len(server.served()) == 1  # one ready connection: one GET, no new connections


async def test_the_warmer_remembers_origins_and_warms_them_at_start(server, tmp_path):
    data = random_bytes(1 * MiB, seed=46)
    url = server.put("blob", data, "e1")
    entry = Entry(path="a/b.nwb", kind=EntryKind.FILE, size=len(data), content_url=url)
    async with cache_over() as cache:
        objects = cache._fetcher
        async with anyio.create_task_group() as group:
            warmer = ConnectionWarmer(objects, group, instance_url="http://x/api",
                                      state_dir=tmp_path)
            warmer.saw([entry, entry])
        assert objects.ready_connections(url) == 2
        saved = json.loads((tmp_path / ORIGINS_FILE).read_text())
        assert saved == {"http://x/api": [server.origin]}
    async with cache_over() as cache:  # a new mount: warmed before any entry is seen
        objects = cache._fetcher
        async with anyio.create_task_group() as group:
            ConnectionWarmer(objects, group, instance_url="http://x/api",
                             state_dir=tmp_path).start()
        assert objects.ready_connections(url) == 2
