"""The block cache shared by every open handle of a process.

A read asks for blocks.  Each block comes from memory, from a fetch already under way
(single flight: concurrent readers of one block wait on one fetch), or from a new fetch
that first looks on disk and then asks the network for what is still missing, adjacent
blocks coalesced into one ranged GET of up to `max_request_bytes`.

Fetches run in the cache's own task group, so a reader that gives up (an interrupted FUSE
request) does not cancel a fetch that other readers wait on.  Reads and read-ahead take
turns from separate pools of request slots: read-ahead queued behind other read-ahead
never delays a read, and claims its blocks only once it holds a slot, so a read that gets
there first fetches them itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial

import anyio
import anyio.abc
import anyio.lowlevel

from dandifs.cache.blocks import BlockLayout, runs, split
from dandifs.cache.config import CacheConfig
from dandifs.cache.disk import DiskStore
from dandifs.cache.fetcher import RangeFetcher
from dandifs.cache.memory import MemoryStore
from dandifs.cache.objectref import ObjectRef
from dandifs.cache.stats import CacheStatistics
from dandifs.errors import Stale, Unavailable

log = logging.getLogger(__name__)

BlockKey = tuple[str, int]  # (object key, block index)
DISK_BACKLOG_FLUSHES = 4  # blocks waiting for the disk are capped at this many flushes' worth


class _Flight:
    """One fetch of a contiguous run of blocks; any number of reads may wait on it."""

    def __init__(self, blocks: range, *, readahead: bool) -> None:
        self.blocks = blocks
        self.readahead = readahead
        self.claimed: set[int] = set()  # read-ahead blocks a read already waits on
        self.data: dict[int, bytes] = {}
        self.error: BaseException | None = None
        self._done = anyio.Event()

    def finish(self) -> None:
        self._done.set()

    async def result(self, index: int) -> bytes:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.data[index]


@dataclass
class PrefetchTicket:
    """Read-ahead asked for by one handle; cancelling it drops the parts not yet started."""

    waiting: int = 0
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def settled(self) -> bool:
        return self.waiting == 0


class BlockCache:
    """Blocks of remote objects, in memory and (optionally) on disk.  Build it with
    `open_block_cache`, which owns the task group its fetches run in."""

    def __init__(
        self,
        fetcher: RangeFetcher,
        config: CacheConfig,
        task_group: anyio.abc.TaskGroup,
        disk: DiskStore | None = None,
    ) -> None:
        self.config = config
        self._fetcher = fetcher
        self._tasks = task_group
        self._disk = disk
        self._memory: MemoryStore[BlockKey] = MemoryStore(
            config.memory_bytes, on_evict=self._forget_readahead
        )
        self._flights: dict[BlockKey, _Flight] = {}
        self._unread_readahead: set[BlockKey] = set()
        self._read_slots = anyio.Semaphore(config.max_requests)
        self._readahead_slots = anyio.Semaphore(config.max_prefetch_requests)
        self._flush_lock = anyio.Lock()
        self._queued_bytes = 0
        self._counters = CacheStatistics()

    def layout(self, ref: ObjectRef) -> BlockLayout:
        return BlockLayout(self.config.block_size, ref.size)

    def statistics(self) -> CacheStatistics:
        pending = self._disk.pending_bytes() if self._disk is not None else 0
        return replace(self._counters, memory_bytes=self._memory.bytes, disk_pending_bytes=pending)

    # -- reads ------------------------------------------------------------------------------

    async def read(
        self, ref: ObjectRef, offset: int, size: int, *, along: range = range(0)
    ) -> bytes:
        """Bytes `[offset, offset + size)` of the object, clipped to its end.

        The blocks in `along` are fetched too, in the same requests where adjacent.
        """
        layout = self.layout(ref)
        own = layout.span(offset, size)
        if not own:
            return b""
        wanted = own
        if along:
            wanted = range(min(own.start, along.start), max(own.stop, along.stop))
        parts = (await self.blocks(ref, wanted))[own.start - wanted.start : own.stop - wanted.start]
        end = min(offset + size, ref.size)
        first_start = layout.bounds(own.start)[0]
        if len(parts) == 1:
            whole = parts[0]
            if offset == first_start and end - offset == len(whole):
                return whole
            return whole[offset - first_start : end - first_start]
        last_start = layout.bounds(own.stop - 1)[0]
        views = [memoryview(part) for part in parts]
        views[0] = views[0][offset - first_start :]
        views[-1] = views[-1][: end - last_start]
        return b"".join(views)

    async def blocks(self, ref: ObjectRef, blocks: range) -> list[bytes]:
        """The given blocks of the object, fetching what neither memory nor disk has."""
        found: dict[int, bytes] = {}
        waiting: dict[int, _Flight] = {}
        missing: list[int] = []
        for index in blocks:
            key = (ref.key, index)
            data = self._memory.get(key)
            if data is not None:
                found[index] = data
                self._counters.memory_hits += 1
                if key in self._unread_readahead:
                    self._unread_readahead.discard(key)
                    self._counters.readahead_hits += 1
                continue
            flight = self._flights.get(key)
            if flight is not None:
                waiting[index] = flight
                self._counters.joined += 1
                if flight.readahead and index not in flight.claimed:
                    flight.claimed.add(index)
                    self._counters.readahead_hits += 1
                continue
            missing.append(index)
        for run in runs(missing, self.config.request_blocks):
            flight = self._launch(ref, run, readahead=False)
            waiting.update(dict.fromkeys(run, flight))
        if not waiting:
            await anyio.lowlevel.checkpoint()  # let read-ahead just asked for get started
        for index, flight in waiting.items():
            found[index] = await flight.result(index)
        return [found[index] for index in blocks]

    def _launch(self, ref: ObjectRef, run: range, *, readahead: bool) -> _Flight:
        flight = _Flight(run, readahead=readahead)
        for index in run:
            self._flights[(ref.key, index)] = flight
        if not readahead:
            self._tasks.start_soon(self._complete, ref, flight, self._read_slots)
        return flight

    # -- read-ahead -------------------------------------------------------------------------

    def prefetch(self, ref: ObjectRef, blocks: range) -> PrefetchTicket:
        """Fetch `blocks` in the background, in pieces of at most one request each."""
        ticket = PrefetchTicket()
        for piece in split(blocks, self.config.request_blocks):
            ticket.waiting += 1
            self._tasks.start_soon(self._prefetch, ref, piece, ticket)
        return ticket

    async def _prefetch(self, ref: ObjectRef, piece: range, ticket: PrefetchTicket) -> None:
        async with self._readahead_slots:
            ticket.waiting -= 1
            if ticket.cancelled:
                return
            missing = [
                index
                for index in piece
                if (ref.key, index) not in self._memory and (ref.key, index) not in self._flights
            ]
            for run in runs(missing, self.config.request_blocks):
                await self._complete(ref, self._launch(ref, run, readahead=True), None)

    def _forget_readahead(self, key: BlockKey) -> None:
        self._unread_readahead.discard(key)

    # -- fetching ---------------------------------------------------------------------------

    async def _complete(
        self, ref: ObjectRef, flight: _Flight, slots: anyio.Semaphore | None
    ) -> None:
        """Fill a flight from disk, then the network; never raises, the waiters do."""
        fetched: dict[int, bytes] = {}
        try:
            found = await self._from_disk(ref, flight)
            remaining = [index for index in flight.blocks if index not in found]
            if not flight.readahead:
                self._counters.disk_hits += len(found)
                self._counters.misses += len(remaining)
            for run in runs(remaining, self.config.request_blocks):
                fetched.update(await self._fetch(ref, run, slots, readahead=flight.readahead))
            flight.data = found | fetched
            for index, data in flight.data.items():
                key = (ref.key, index)
                self._memory.put(key, data)
                if flight.readahead and index not in flight.claimed:
                    self._unread_readahead.add(key)
        except Exception as exc:
            flight.error = exc
            if flight.readahead and not flight.claimed:
                log.debug("read-ahead of %s failed: %s", ref.url, exc)
        except BaseException:
            flight.error = Unavailable(f"reading {ref.url} was cancelled: the cache is closing")
            raise
        finally:
            for index in flight.blocks:
                if self._flights.get((ref.key, index)) is flight:
                    del self._flights[(ref.key, index)]
            flight.finish()
        if fetched:
            self._queue_for_disk(ref, fetched)

    async def _from_disk(self, ref: ObjectRef, flight: _Flight) -> dict[int, bytes]:
        if self._disk is None or not ref.persistent:
            return {}
        disk = self._disk.object(ref)
        candidates = [index for index in flight.blocks if disk.may_have(index)]
        if not candidates:
            return {}
        try:
            return await anyio.to_thread.run_sync(disk.read, candidates)
        except OSError as exc:
            log.warning("cache disk unreadable, fetching %s instead: %s", ref.url, exc)
            return {}

    async def _fetch(
        self, ref: ObjectRef, run: range, slots: anyio.Semaphore | None, *, readahead: bool
    ) -> dict[int, bytes]:
        layout = self.layout(ref)
        start, end = layout.byte_range(run)
        if slots is None:
            payload = await self._fetcher.read_range(ref.url, start, end, etag=ref.etag)
        else:
            async with slots:
                payload = await self._fetcher.read_range(ref.url, start, end, etag=ref.etag)
        self._counters.requests += 1
        self._counters.bytes_fetched += len(payload)
        if readahead:
            self._counters.readahead_requests += 1
            self._counters.readahead_bytes += len(payload)
        if len(payload) != end - start:
            raise Stale(
                f"{ref.url} gave {len(payload)} bytes for bytes {start}-{end - 1} of a "
                f"{ref.size}-byte object: it changed since it was opened"
            )
        if len(run) == 1:
            return {run.start: payload}
        view = memoryview(payload)
        blocks = {}
        for index in run:
            block_start, block_end = layout.bounds(index)
            blocks[index] = bytes(view[block_start - start : block_end - start])
        return blocks

    # -- disk -------------------------------------------------------------------------------

    def _queue_for_disk(self, ref: ObjectRef, blocks: dict[int, bytes]) -> None:
        if self._disk is None or not ref.persistent:
            return
        if self._queued_bytes >= DISK_BACKLOG_FLUSHES * self.config.disk_flush_bytes:
            return  # the disk is not keeping up: leave these blocks to memory alone
        disk = self._disk.object(ref)
        for index, data in blocks.items():
            self._queued_bytes += disk.add(index, data)
        if self._queued_bytes >= self.config.disk_flush_bytes and not self._flush_lock.locked():
            self._tasks.start_soon(self.flush)

    async def flush(self) -> None:
        """Make every block fetched so far durable on disk, then evict if over capacity."""
        disk = self._disk
        if disk is None:
            return
        async with self._flush_lock:
            try:
                await anyio.to_thread.run_sync(disk.flush)
                if disk.over_capacity:
                    await anyio.to_thread.run_sync(disk.evict)
            except OSError as exc:
                log.warning("could not write the cache disk (blocks kept in memory only): %s", exc)
            self._queued_bytes = disk.pending_bytes()

    async def _flush_periodically(self) -> None:
        while True:
            await anyio.sleep(self.config.disk_flush_interval)
            if self._queued_bytes:
                await self.flush()


@asynccontextmanager
async def open_block_cache(
    fetcher: RangeFetcher, config: CacheConfig | None = None
) -> AsyncIterator[BlockCache]:
    """A block cache for the duration of the block; on exit, queued blocks reach the disk."""
    config = config if config is not None else CacheConfig()
    disk = None
    if config.disk_dir is not None:
        disk = await anyio.to_thread.run_sync(
            partial(
                DiskStore, config.disk_dir, block_size=config.block_size, capacity=config.disk_bytes
            )
        )
    try:
        async with anyio.create_task_group() as tasks:
            cache = BlockCache(fetcher, config, tasks, disk)
            if disk is not None:
                tasks.start_soon(cache._flush_periodically)
            try:
                yield cache
            finally:
                tasks.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The cache's own tasks never fail, so a lone error is the caller's: give it back as
        # it was raised, not wrapped by the task group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        if disk is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(disk.close)
                except OSError as exc:
                    log.warning("could not write the cache disk on closing: %s", exc)
