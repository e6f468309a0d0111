"""Opening files for the mount (dandifs.core.opener) against a real HTTP object server:
what an HDF5 open fetches in the background, its cap, and that it never fails an open."""

from __future__ import annotations

import logging
import random
import struct
import time
from pathlib import Path
from typing import Any

import anyio
import h5py
import numpy as np
import pytest

from cache_http import ObjectServer, server  # noqa: F401 (a fixture)
from dandifs.archive import ArchiveClient, RetryPolicy
from dandifs.cache import CacheConfig, open_block_cache
from dandifs.core.opener import ContentOpener
from dandifs.resolve.entry import Entry, EntryKind

pytestmark = pytest.mark.anyio

BLOCK = 256 * 1024
TAIL = 1 << 20
QUICK_RETRIES = RetryPolicy(max_attempts=1, total_time=5, base_delay=0.01)




class NoSource:
    """Entries here carry their URL and digest: opening them asks the resolver nothing."""

    async def read_virtual(self, path: str) -> bytes:
        raise AssertionError(f"read_virtual({path!r})")

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]:
        raise AssertionError(f"asset_metadata({entry.path!r})")


def write_hdf5(path: Path, datasets: int, chunk: int) -> bytes:
    """A file of `datasets` 1-D int32 datasets of 200 chunks of `chunk` elements, written a
    chunk at a time across all of them, so that each index root (written first, near the
    start) has leaves spread over the file."""
    with h5py.File(path, "w") as handle:
        created = [
            handle.create_dataset(f"d{i}", shape=(200 * chunk,), chunks=(chunk,), dtype="i4")
            for i in range(datasets)
        ]
        rng = np.random.default_rng(3)
        for index in range(200):
            for dataset in created:
                rows = slice(index * chunk, (index + 1) * chunk)
                dataset[rows] = rng.integers(0, 1 << 30, chunk, dtype="i4")
    return path.read_bytes()


def leaf_blocks(data: bytes) -> set[int]:
    """Blocks holding chunk-index leaves outside the file's ends, found with struct alone."""
    found = set()
    position = data.find(b"TREE")
    while position >= 0:
        kind, level = struct.unpack_from("<BB", data, position + 4)
        if kind == 1 and level == 0 and BLOCK <= position < len(data) - TAIL:
            found.add(position // BLOCK)
        position = data.find(b"TREE", position + 1)
    return found


def entry_for(url: str, name: str, size: int) -> Entry:
    return Entry(path=f"000001/draft/{name}", kind=EntryKind.FILE, size=size, etag="e-1",
                 content_url=url)


async def wait_until_quiet(server: ObjectServer, quiet: float = 0.3) -> None:
    count, since = len(server.served()), time.monotonic()
    while time.monotonic() - since < quiet:
        await anyio.sleep(0.02)
        if len(server.served()) != count:
            count, since = len(server.served()), time.monotonic()


def blocks_served(server: ObjectServer, path: str) -> set[int]:
    return {
        index
        for served in server.served(path)
        for index in range(served.start // BLOCK, (served.end - 1) // BLOCK + 1)
    }


async def open_and_settle(
    server: ObjectServer, path: str, size: int, *, in_background: bool = True, **options: Any
) -> set[int]:
    """Open a served file through a fresh cache (with a task group for background work,
    unless told otherwise); the blocks fetched once all is quiet."""
    client = ArchiveClient("http://127.0.0.1:9/api", anonymous=True, policy=QUICK_RETRIES)
    async with client, open_block_cache(client.objects, CacheConfig()) as cache:
        async with anyio.create_task_group() as background:
            group = background if in_background else None
            opener = ContentOpener(NoSource(), cache, group, **options)
            reader = await opener(entry_for(server.url(path), path, size))
            await wait_until_quiet(server)
            await reader.aclose()
    return blocks_served(server, path)


def ends(size: int) -> set[int]:
    return {0} | set(range((size - TAIL) // BLOCK, -(-size // BLOCK)))


async def test_an_hdf5_open_fetches_the_leaves_under_its_index_root(server, tmp_path) -> None:
    data = write_hdf5(tmp_path / "one.h5", datasets=1, chunk=10_000)
    leaves = leaf_blocks(data)
    assert len(data) > 4 * TAIL and 2 <= len(leaves) <= 16, (len(data), leaves)
    server.put("one.h5", data, "e-1")
    fetched = await open_and_settle(server, "one.h5", len(data))
    assert fetched == ends(len(data)) | leaves
    # and nothing twice: the background work joins the fetches of the ends under way
    ranges = sorted((served.start, served.end) for served in server.served("one.h5"))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:]))


async def test_turned_off_or_without_a_task_group_only_the_ends_are_fetched(
    server, tmp_path
) -> None:
    data = write_hdf5(tmp_path / "off.h5", datasets=1, chunk=10_000)
    cases = {"zero.h5": {"index_prefetch_blocks": 0}, "none.h5": {"in_background": False}}
    for name, options in cases.items():
        server.put(name, data, "e-1")
        fetched = await open_and_settle(server, name, len(data), **options)
        assert fetched == ends(len(data)), name


async def test_an_open_fetches_at_most_its_cap_of_index_blocks(server, tmp_path) -> None:
    data = write_hdf5(tmp_path / "many.h5", datasets=6, chunk=2_500)
    assert len(leaf_blocks(data)) > 3
    server.put("many.h5", data, "e-1")
    fetched = await open_and_settle(server, "many.h5", len(data), index_prefetch_blocks=3)
    extra = fetched - ends(len(data))
    assert len(extra) == 3 and extra <= leaf_blocks(data)


async def test_a_file_named_nwb_that_is_not_hdf5_costs_only_its_ends(server) -> None:
    data = random.Random(5).randbytes(6 << 20)
    server.put("fake.nwb", data, "e-1")
    fetched = await open_and_settle(server, "fake.nwb", len(data))
    assert fetched == ends(len(data))


async def test_a_failing_prefetch_never_reaches_the_open(server, caplog) -> None:
    """The object is gone (404): the open still gives a reader, the background work ends
    quietly with a debug line, and only reading reports the error."""
    caplog.set_level(logging.DEBUG, logger="dandifs.core.opener")
    fetched = await open_and_settle(server, "gone.nwb", 8 << 20)
    assert fetched == set()
    assert "no chunk-index prefetch" in caplog.text
