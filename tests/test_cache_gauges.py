"""The block cache's gauges never go below zero, whatever the traffic: concurrent sequential
and random readers over more objects than memory and disk hold, readers cancelled in the
middle of fetches, disk flushes and evictions under way, sampled throughout.  Once the
readers are gone and the disk queue is flushed, nothing is reserved or pending any more.

(A negative `disk_pending_bytes` was reported from a run against the real archive server;
each gauge is now a sum of non-negative parts, and this test holds that under load.)"""

from __future__ import annotations

import random

import anyio
import pytest

from cache_http import server  # noqa: F401 (a fixture)
from dandifs.cache import CacheConfig, RangeReader
from test_cache_reader import MiB, cache_over, random_bytes

pytestmark = pytest.mark.anyio

GAUGES = ("memory_bytes", "memory_reserved_bytes", "memory_held_out_bytes", "disk_pending_bytes")


async def test_gauges_stay_non_negative_and_settle_to_zero(server, tmp_path):
    objects = {
        server.put(f"object{i}", random_bytes(3 * MiB, seed=100 + i), "e1"): 3 * MiB
        for i in range(4)
    }
    config = CacheConfig(
        disk_dir=tmp_path, disk_bytes=5 * MiB, memory_bytes=4 * MiB, disk_flush_bytes=512 * 1024
    )
    samples: list[dict[str, int]] = []
    async with cache_over(config) as cache:

        def sample() -> None:
            stats = cache.statistics()
            samples.append({name: getattr(stats, name) for name in GAUGES})

        async def reader(url: str, size: int, seed: int, *, cancel_after: int | None) -> None:
            chooser = random.Random(seed)
            handle = RangeReader(cache, url, size, "e1")
            with anyio.CancelScope() as scope:
                for step in range(16):
                    if cancel_after is not None and step == cancel_after:
                        scope.cancel()  # mid-flight: fetches and reservations are abandoned
                    offset = chooser.randrange(0, size - 1) if seed % 2 else (step * 256 * 1024) % size
                    await handle.read(offset, chooser.choice((4096, 300_000, 1 * MiB)))
                    sample()
            await handle.aclose()

        async def sampler(stop: anyio.Event) -> None:
            while not stop.is_set():
                sample()
                await anyio.sleep(0)

        stop = anyio.Event()
        async with anyio.create_task_group() as background:
            background.start_soon(sampler, stop)
            async with anyio.create_task_group() as readers:
                for seed, (url, size) in enumerate(list(objects.items()) * 2):
                    cancel_after = (seed * 5) % 12 if seed % 3 == 0 else None
                    readers.start_soon(
                        lambda u=url, s=size, n=seed, c=cancel_after: reader(u, s, n, cancel_after=c)
                    )
            stop.set()
        await cache.flush()
        sample()
        settled = samples[-1]
    assert len(samples) > 100
    negative = [s for s in samples if min(s.values()) < 0]
    assert negative == [], negative[:3]
    assert settled["memory_reserved_bytes"] == 0 and settled["disk_pending_bytes"] == 0
