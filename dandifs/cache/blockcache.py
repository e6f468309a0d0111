"""The block cache shared by every open handle of a process.

A read asks for blocks.  Each block comes from memory, from a fetch already under way
(single flight: concurrent readers of one block wait on one fetch), or from a new fetch
that first looks on disk and then asks the network for what is still missing.  A read's
missing blocks go out as several ranged GETs at once (a read waits for its slowest GET,
and a GET costs mostly its round trip); read-ahead coalesces adjacent blocks into GETs of
up to `max_request_bytes` (streaming wants few, large requests).

Fetches run in the cache's own task group, so a reader that gives up (an interrupted FUSE
request) does not cancel a fetch that other readers wait on.  Reads and read-ahead take
turns from separate pools of request slots: read-ahead queued behind other read-ahead
never delays a read, and claims its blocks only once it holds a slot, so a read that gets
there first fetches them itself.  Read-ahead can be kept off the network (it then only
loads blocks the disk holds): readers use that when their own reads are served locally.

With a disk store, processes sharing its directory fetch a block once between them: a
flight claims the blocks the disk lacks before fetching them, and waits (polling, so the
event loop runs) for blocks another process claimed, then reads them from the disk
(`claims.py`).  Blocks fetched under a claim keep it until they are on disk; the flush
starts at once when another process waits for them.

`CacheConfig.memory_bytes` bounds the block bytes the cache keeps alive as a whole (see
`MemoryStore`): blocks in memory, the bytes of every flight (reserved when it starts,
released as its blocks are stored or when it fails), and blocks waiting for the disk that
memory has already let go.  Read-ahead waits for room before it starts a flight; a read
never waits, so reads larger than the bound (or many at once) pass it until they are done
rather than wait for each other.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import partial

import anyio
import anyio.abc
import anyio.lowlevel

from dandifs.cache.blocks import BlockLayout, runs, split
from dandifs.cache.config import CacheConfig
from dandifs.cache.disk import DiskStore
from dandifs.cache.fetcher import RangeFetcher
from dandifs.cache.fragments import ALIGN, Fragments
from dandifs.cache.memory import MemoryStore
from dandifs.cache.objectref import ObjectRef
from dandifs.cache.stats import CacheStatistics
from dandifs.concurrency import Outcome, first_error
from dandifs.errors import Stale, Unavailable

log = logging.getLogger(__name__)

BlockKey = tuple[str, int]  # (object key, block index)
Block = bytes | memoryview
"""A block's bytes: read from disk, or a read-only view of the buffer it was received in."""
DISK_BACKLOG_FLUSHES = 4  # blocks waiting for the disk: at most this many flushes' worth,
DISK_BACKLOG_SHARE = 2  # and at most this share (1/n) of the memory bound
MIN_READAHEAD_BLOCKS = 4  # the fewest blocks a read-ahead GET carries
CLAIM_POLL_FIRST = 0.005  # seconds before looking again at a block another process fetches,
CLAIM_POLL_MAX = 0.1  # doubling up to this


def as_bytes(block: Block) -> bytes:
    return block if isinstance(block, bytes) else bytes(block)


class Origin(IntEnum):
    """Where a read's bytes came from, the farthest source counting."""

    MEMORY = 0
    DISK = 1
    NETWORK = 2


class _Flight:
    """One fetch of a contiguous run of blocks; any number of reads may wait on it.

    A read-ahead flight takes turns with other read-ahead; any other flight takes a read's
    request slot.  A flight is `ahead` if no read waited for it when it started (read-ahead,
    or `BlockCache.fetch_soon`): it counts as read-ahead in the statistics.  A read-ahead
    flight that may not use the network (`network=False`) loads what the disk has and
    fetches only blocks a read is already waiting on; other blocks it leaves out.
    """

    def __init__(
        self, blocks: range, *, readahead: bool, network: bool = True, ahead: bool = False
    ) -> None:
        self.blocks = blocks
        self.readahead = readahead
        self.ahead = readahead or ahead
        self.network = network
        self.claimed: set[int] = set()  # read-ahead blocks a read already waits on
        self.reserved = 0  # bytes promised to this flight in the memory bound, not yet stored
        self.fetched: set[int] = set()  # the blocks that came over the network
        self.outcome: Outcome[dict[int, Block]] = Outcome()

    async def result(self, index: int) -> Block | None:
        """The block, or None if this flight left it out (ask again)."""
        return (await self.outcome.wait()).get(index)


class _Budget:
    """A semaphore whose holders take several units at once, in turn (a task taking its
    units one by one while others do the same could deadlock them all)."""

    def __init__(self, units: int) -> None:
        self._units = anyio.Semaphore(units)
        self._turn = anyio.Lock()

    @asynccontextmanager
    async def taking(self, count: int) -> AsyncIterator[None]:
        taken = 0
        try:
            async with self._turn:
                while taken < count:
                    await self._units.acquire()
                    taken += 1
            yield
        finally:
            for _ in range(taken):
                self._units.release()


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
        self._unread_readahead: dict[BlockKey, Origin] = {}
        self._read_slots = anyio.Semaphore(config.max_requests)
        self._read_flights = 0  # flights for reads launched and not yet finished
        # Read-ahead's bytes in flight, in blocks: as many as its requests of the largest size.
        self._readahead_budget = _Budget(config.max_prefetch_requests * config.request_blocks)
        self._fragments = Fragments(config.fragment_memory_bytes)
        self._flush_lock = anyio.Lock()
        self._queued: dict[BlockKey, DiskObject] = {}  # blocks held for the disk queue
        # Blocks memory has that are to be queued once the backlog has room again.
        self._unqueued: dict[BlockKey, ObjectRef] = {}
        # Blocks wait for the disk within the memory bound, leaving read-ahead room.
        self._disk_backlog = min(
            DISK_BACKLOG_FLUSHES * config.disk_flush_bytes,
            config.memory_bytes // DISK_BACKLOG_SHARE,
        )
        self._flush_at = min(config.disk_flush_bytes, self._disk_backlog // 2)
        self._room = anyio.Event()  # set (and replaced) when reserved or held bytes go
        self._flush_soon = False  # another process waits for blocks queued for the disk
        self._counters = CacheStatistics()

    def layout(self, ref: ObjectRef) -> BlockLayout:
        return BlockLayout(self.config.block_size, ref.size)

    def statistics(self) -> CacheStatistics:
        pending = self._disk.pending_bytes() if self._disk is not None else 0
        memory = self._memory
        return replace(
            self._counters,
            memory_bytes=memory.bytes,
            memory_reserved_bytes=memory.reserved,
            memory_held_out_bytes=memory.held_out,
            memory_peak_bytes=memory.peak,
            disk_pending_bytes=pending,
        )

    # -- reads ------------------------------------------------------------------------------

    async def read(
        self, ref: ObjectRef, offset: int, size: int, *, along: range = range(0)
    ) -> bytes:
        """Bytes `[offset, offset + size)` of the object, clipped to its end.

        The blocks in `along` are fetched too, in the same requests where adjacent.
        """
        data, _ = await self.read_with_origin(ref, offset, size, along=along)
        return data

    async def read_with_origin(
        self, ref: ObjectRef, offset: int, size: int, *, along: range = range(0)
    ) -> tuple[bytes, Origin]:
        """Like `read`, and where its bytes came from: the network (now, or by read-ahead
        since), the disk (likewise), or only memory already holding them."""
        layout = self.layout(ref)
        own = layout.span(offset, size)
        if not own:
            return b"", Origin.MEMORY
        if not along:
            small = await self._small_read(ref, offset, min(offset + size, ref.size), own)
            if small is not None:
                return small
        wanted = own
        if along:
            wanted = range(min(own.start, along.start), max(own.stop, along.stop))
        parts, origin = await self._gather(ref, wanted)
        parts = parts[own.start - wanted.start : own.stop - wanted.start]
        end = min(offset + size, ref.size)
        first_start = layout.bounds(own.start)[0]
        if len(parts) == 1:
            whole = parts[0]
            if offset == first_start and end - offset == len(whole):
                return as_bytes(whole), origin
            return as_bytes(whole[offset - first_start : end - first_start]), origin
        last_start = layout.bounds(own.stop - 1)[0]
        views = [memoryview(part) for part in parts]
        views[0] = views[0][offset - first_start :]
        views[-1] = views[-1][: end - last_start]
        return b"".join(views), origin

    # -- reads over cold connections --------------------------------------------------------

    async def cold_window(self, ref: ObjectRef) -> int | None:
        """Bytes the next GET of `ref` moves in one round trip, if that is less than a block
        and round trips are long enough for it to matter (`CacheConfig.cold_round_trip`);
        else None: whole blocks cost no more than less.  Before any round trip to its origin
        is measured, waits for a connection being opened ahead of reads to measure one (a
        GET would wait for that connection anyway)."""
        config = self.config
        if config.cold_round_trip <= 0:
            return None
        round_trip = self._fetcher.round_trip(ref.url)
        if round_trip == 0 and self._fetcher.ready_connections(ref.url):
            round_trip = await self._fetcher.measured_round_trip(ref.url)
        if round_trip < config.cold_round_trip:
            return None
        window = self._fetcher.warm_bytes(ref.url)
        return window if window is not None and window < config.block_size else None

    async def _small_read(
        self, ref: ObjectRef, offset: int, end: int, own: range
    ) -> tuple[bytes, Origin] | None:
        """A read served by a fragment (held, being fetched, or fetched now because only
        cold connections could fetch its blocks); None to read blocks instead."""
        held = self._fragments.find(ref.key, offset, end)
        if held is not None:
            return held, Origin.MEMORY
        flying = await self._fragment_for(ref, offset, end, own)
        if flying is None:
            return None
        start, outcome = flying
        data = await outcome.wait()
        return bytes(memoryview(data)[offset - start : end - start]), Origin.NETWORK

    async def fragment_soon(self, ref: ObjectRef, offset: int, size: int) -> bool:
        """Start fetching the fragment a read of `[offset, offset + size)` would take, if it
        would take one; whether it does (see `_small_read`)."""
        end = min(offset + size, ref.size)
        own = self.layout(ref).span(offset, end - offset)
        return bool(own) and await self._fragment_for(ref, offset, end, own) is not None

    async def _fragment_for(
        self, ref: ObjectRef, offset: int, end: int, own: range
    ) -> tuple[int, Outcome[bytes | bytearray]] | None:
        """The fragment being fetched that covers `[offset, end)`, started now if only cold
        connections could fetch the read's blocks, which no one holds or fetches; its start
        and outcome, or None."""
        flying = self._fragments.in_flight(ref.key, offset, end)
        if flying is not None or end - offset > self.config.cold_read_bytes:
            return flying
        window = await self.cold_window(ref)
        flying = self._fragments.in_flight(ref.key, offset, end)  # begun while it waited
        if flying is not None or window is None:
            return flying
        disk = self._disk.object(ref) if self._disk is not None and ref.persistent else None
        for index in own:
            key = (ref.key, index)
            if key in self._memory or key in self._flights:
                return None
            if disk is not None and disk.may_have(index):
                return None
        start = offset - offset % ALIGN
        stop = min(ref.size, max(end, start + window))
        outcome = self._fragments.begin(ref.key, start, stop)
        self._tasks.start_soon(self._fetch_fragment, ref, start, stop, outcome)
        return start, outcome

    async def _fetch_fragment(
        self, ref: ObjectRef, start: int, stop: int, outcome: Outcome[bytes | bytearray]
    ) -> None:
        try:
            async with self._read_slots:
                [data] = await self._fetcher.read_pieces(
                    ref.url, start, stop, piece_size=stop - start, etag=ref.etag
                )
            self._counters.requests += 1
            self._counters.fragment_requests += 1
            self._counters.bytes_fetched += len(data)
            if len(data) != stop - start:
                raise Stale(f"{ref.url} gave {len(data)} bytes for bytes {start}-{stop - 1} "
                            f"of a {ref.size}-byte object: it changed since it was opened")
            log.debug("fetched %s bytes %d-%d (a fragment)", ref.url, start, stop - 1)
            self._fragments.put(ref.key, start, data)
            outcome.succeed(data)
        except Exception as exc:
            outcome.fail(exc)
        except BaseException:
            outcome.fail(Unavailable(f"reading {ref.url} was cancelled: the cache is closing"))
            raise
        finally:
            self._fragments.end(ref.key, start, stop)

    def settle(self, ref: ObjectRef) -> None:
        """Fetch, as read-ahead, the blocks under the fragments held of `ref`, so that the
        disk store has what its reads used (a later mount reads them with no request)."""
        if self._disk is None or not ref.persistent:
            return
        layout = self.layout(ref)
        wanted = {index for start, stop in self._fragments.spans(ref.key)
                  for index in layout.span(start, stop - start)}
        for run in runs(sorted(wanted), self.config.request_blocks):
            self.prefetch(ref, run)

    async def blocks(self, ref: ObjectRef, blocks: range) -> list[bytes]:
        """The given blocks of the object, fetching what neither memory nor disk has."""
        parts, _ = await self._gather(ref, blocks)
        return [as_bytes(part) for part in parts]

    async def _gather(self, ref: ObjectRef, blocks: range) -> tuple[list[Block], Origin]:
        found: dict[int, Block] = {}
        farthest = Origin.MEMORY
        wanted = list(blocks)
        while wanted:
            waiting: dict[int, _Flight] = {}
            missing: list[int] = []
            for index in wanted:
                key = (ref.key, index)
                data = self._memory.get(key)
                if data is not None:
                    found[index] = data
                    self._counters.memory_hits += 1
                    origin = self._unread_readahead.pop(key, None)
                    if origin is not None:
                        self._counters.readahead_hits += 1
                        farthest = max(farthest, origin)
                    continue
                flight = self._flights.get(key)
                if flight is not None:
                    waiting[index] = flight
                    self._counters.joined += 1
                    if flight.ahead and index not in flight.claimed:
                        flight.claimed.add(index)
                        self._counters.readahead_hits += 1
                    continue
                missing.append(index)
            for piece in self._read_pieces(missing, ref.url):
                flight = self._launch(ref, piece, readahead=False)
                waiting.update(dict.fromkeys(piece, flight))
            if not waiting:
                await anyio.lowlevel.checkpoint()  # let read-ahead just asked for get started
            wanted = []
            for index, flight in waiting.items():
                data = await flight.result(index)
                if data is None:
                    wanted.append(index)  # a disk-only read-ahead left it out
                else:
                    found[index] = data
                    origin = Origin.NETWORK if index in flight.fetched else Origin.DISK
                    farthest = max(farthest, origin)
        return [found[index] for index in blocks], farthest

    def _read_pieces(self, indices: list[int], url: str | None = None) -> Iterator[range]:
        """The requests that fetch blocks a read waits for: each contiguous run cut into
        pieces fetched in parallel when one connection moves bytes slowly, since a GET
        costs its round trip plus the time to move its bytes (see `CacheConfig`).  No more
        pieces than request slots not yet promised to other reads' flights (pieces that
        queue for a slot only wait longer), nor, over long round trips, than connections to
        `url` ready to take them."""
        config = self.config
        rate = self._fetcher.stream_rate
        parallel = max(1, config.max_requests - self._read_flights)
        if url is not None and 0 < config.cold_round_trip <= self._fetcher.round_trip(url):
            # A new connection costs its set-up and slow start, several round trips: more
            # than a ready one takes for a share of the run.
            parallel = min(parallel, max(1, self._fetcher.ready_connections(url)))
        for run in runs(indices, config.request_blocks):
            moving = len(run) * config.block_size / rate if rate else 0.0
            if moving < config.parallel_read_seconds:
                yield run
            else:
                yield from split(run, max(config.read_piece_blocks, -(-len(run) // parallel)))

    def fetch_soon(self, ref: ObjectRef, blocks: range) -> None:
        """Start fetching `blocks` as a read would (in parallel pieces, from the reads'
        request slots), without waiting: for blocks a read is about to ask for, so that it
        finds them in flight.  Blocks already in memory or in flight are left alone."""
        for piece in self._read_pieces(self._unfetched(ref, blocks), ref.url):
            self._launch(ref, piece, readahead=False, ahead=True)

    def _unfetched(self, ref: ObjectRef, blocks: range) -> list[int]:
        """The blocks neither in memory nor in flight."""
        return [
            index
            for index in blocks
            if (ref.key, index) not in self._memory and (ref.key, index) not in self._flights
        ]

    def _launch(
        self,
        ref: ObjectRef,
        run: range,
        *,
        readahead: bool,
        network: bool = True,
        ahead: bool = False,
    ) -> _Flight:
        flight = _Flight(run, readahead=readahead, network=network, ahead=ahead)
        start, end = self.layout(ref).byte_range(run)
        flight.reserved = end - start
        self._memory.reserve(flight.reserved)
        for index in run:
            self._flights[(ref.key, index)] = flight
        if not readahead:
            self._read_flights += 1
            self._tasks.start_soon(self._complete, ref, flight, self._read_slots)
        return flight

    # -- read-ahead -------------------------------------------------------------------------

    def prefetch(self, ref: ObjectRef, blocks: range, *, network: bool = True) -> PrefetchTicket:
        """Fetch `blocks` in the background, in pieces of at most one request each.

        With `network=False` only blocks known to be on disk are loaded (into memory).
        """
        ticket = PrefetchTicket()
        for piece in split(blocks, self._readahead_request_blocks()):
            ticket.waiting += 1
            self._tasks.start_soon(self._prefetch, ref, piece, ticket, network)
        return ticket

    async def _prefetch(
        self, ref: ObjectRef, piece: range, ticket: PrefetchTicket, network: bool
    ) -> None:
        async with self._readahead_budget.taking(len(piece)):
            ticket.waiting -= 1
            if ticket.cancelled:
                return
            disk = self._disk.object(ref) if self._disk is not None and ref.persistent else None
            layout = self.layout(ref)
            rest = piece
            while rest:
                missing = [
                    index
                    for index in self._unfetched(ref, rest)
                    if network or (disk is not None and disk.has(index))
                ]
                run = next(runs(missing, self.config.request_blocks), None)
                if run is None:
                    return
                start, end = layout.byte_range(run)
                if not self._memory.room_for(end - start):
                    await self._wait_for_room()
                    if ticket.cancelled:
                        return
                    continue  # reads may have fetched some of these blocks meanwhile
                rest = range(run.stop, rest.stop)
                flight = self._launch(ref, run, readahead=True, network=network)
                await self._complete(ref, flight, None)

    async def _wait_for_room(self) -> None:
        """Until reserved or held bytes go; blocks held for the disk go once written, so
        start writing them now."""
        room = self._room
        if self._queued:
            self._start_flush()
        await room.wait()

    def _room_made(self) -> None:
        self._room.set()
        self._room = anyio.Event()

    def _readahead_request_blocks(self) -> int:
        """How many blocks one read-ahead GET carries: `max_request_bytes`, or what one
        connection moves in `readahead_request_seconds` at the rate measured lately if that
        is less (but at least 1 MiB).  Over slow connections the same bytes in flight then
        go over more connections at once."""
        config = self.config
        rate = self._fetcher.stream_rate
        if rate is None:
            return config.request_blocks
        moved = int(rate * config.readahead_request_seconds) // config.block_size
        return max(min(MIN_READAHEAD_BLOCKS, config.request_blocks),
                   min(moved, config.request_blocks))

    def _forget_readahead(self, key: BlockKey) -> None:
        self._unread_readahead.pop(key, None)
        ref = self._unqueued.pop(key, None)
        if ref is not None and self._disk is not None:
            self._disk.object(ref).release([key[1]])  # never stored: others fetch it

    # -- fetching ---------------------------------------------------------------------------

    async def _complete(
        self, ref: ObjectRef, flight: _Flight, slots: anyio.Semaphore | None
    ) -> None:
        """Fill a flight from disk, then the network; never raises, the waiters do.

        Blocks another process is fetching are waited for after this flight fetched (and
        queued for the disk) the ones it claimed itself: holding claims while waiting on
        another process's could leave two processes waiting on each other."""
        fetched: dict[int, Block] = {}
        data: dict[int, Block] = {}
        error: BaseException | None = None
        claimed: list[int] = []  # claimed blocks not yet handed to the disk queue
        try:
            found = await self._from_disk(ref, flight)
            missing = [index for index in flight.blocks if index not in found]
            remaining = missing
            if not flight.network:
                remaining = [index for index in remaining if index in flight.claimed]
            stored: dict[int, Block] = {}
            delay = CLAIM_POLL_FIRST
            while remaining:
                more, claimed, remaining = await self._claim(ref, remaining)
                stored |= more
                arrived: dict[int, Block] = {}
                for run in runs(claimed, self.config.request_blocks):
                    arrived.update(await self._fetch(ref, run, slots, ahead=flight.ahead))
                fetched |= arrived
                self._keep(ref, flight, arrived, Origin.NETWORK)
                self._queue_for_disk(ref, arrived)
                claimed = []
                if remaining:
                    await anyio.sleep(delay)
                    delay = min(2 * delay, CLAIM_POLL_MAX)
            found |= stored
            if not flight.ahead:
                self._counters.disk_hits += len(found)
                self._counters.misses += len(missing) - len(stored)
            flight.fetched = set(fetched)
            self._keep(ref, flight, found, Origin.DISK)
            data = found | fetched
        except Exception as exc:
            error = exc
            if flight.ahead and not flight.claimed:
                log.debug("read-ahead of %s failed: %s", ref.url, exc)
        except BaseException:
            error = Unavailable(f"reading {ref.url} was cancelled: the cache is closing")
            raise
        finally:
            if self._disk is not None and ref.persistent:
                disk = self._disk.object(ref)
                disk.release(claimed)
                disk.stop_waiting()
            for index in flight.blocks:
                if self._flights.get((ref.key, index)) is flight:
                    del self._flights[(ref.key, index)]
            if not flight.readahead:
                self._read_flights -= 1
            self._memory.release(flight.reserved)
            flight.reserved = 0
            self._room_made()
            if error is None:
                flight.outcome.succeed(data)
            else:
                flight.outcome.fail(error)

    def _keep(
        self, ref: ObjectRef, flight: _Flight, blocks: dict[int, Block], origin: Origin
    ) -> None:
        """Put a flight's blocks in memory, in the bytes reserved for them."""
        for index, block in blocks.items():
            key = (ref.key, index)
            self._memory.put(key, block, reserved=len(block))
            flight.reserved -= len(block)
            if flight.ahead and index not in flight.claimed:
                self._unread_readahead[key] = origin

    async def _from_disk(self, ref: ObjectRef, flight: _Flight) -> dict[int, Block]:
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

    async def _claim(
        self, ref: ObjectRef, indices: list[int]
    ) -> tuple[dict[int, Block], list[int], list[int]]:
        """Claim the fetch of blocks the disk lacks, for every process sharing it (see
        `claims.py`): the blocks found on disk once claimed, the blocks this process is to
        fetch (it holds their claims), and the blocks another process is fetching (marked
        as awaited until `DiskObject.stop_waiting`)."""
        if self._disk is None or not ref.persistent:
            return {}, indices, []
        disk = self._disk.object(ref)
        try:
            return await anyio.to_thread.run_sync(disk.claim_missing, indices)
        except OSError as exc:
            log.warning("cache disk claims unusable, fetching %s alone: %s", ref.url, exc)
            return {}, indices, []
        except BaseException:
            disk.release(indices)
            raise

    async def _fetch(
        self, ref: ObjectRef, run: range, slots: anyio.Semaphore | None, *, ahead: bool
    ) -> dict[int, Block]:
        layout = self.layout(ref)
        start, end = layout.byte_range(run)
        fetch = partial(
            self._fetcher.read_pieces, ref.url, start, end,
            piece_size=layout.block_size, etag=ref.etag,
        )
        if slots is None:
            pieces = await fetch()
        else:
            async with slots:
                pieces = await fetch()
        log.debug(
            "fetched %s bytes %d-%d (blocks %d-%d%s)",
            ref.url, start, end - 1, run.start, run.stop - 1, ", ahead" if ahead else "",
        )
        received = sum(len(piece) for piece in pieces)
        self._counters.requests += 1
        self._counters.bytes_fetched += received
        if ahead:
            self._counters.readahead_requests += 1
            self._counters.readahead_bytes += received
        if received != end - start or len(pieces) != len(run):
            raise Stale(
                f"{ref.url} gave {received} bytes for bytes {start}-{end - 1} of a "
                f"{ref.size}-byte object: it changed since it was opened"
            )
        # Each block arrived in a buffer of its own, so keeping one keeps no other alive.
        return {index: memoryview(piece).toreadonly() for index, piece in zip(run, pieces)}

    # -- disk -------------------------------------------------------------------------------

    def _queue_for_disk(self, ref: ObjectRef, blocks: dict[int, Block]) -> None:
        """Queue fetched blocks for the disk, as far as the backlog allows: the queue keeps
        them alive after memory lets them go, so it counts in the memory bound.  Blocks
        beyond the backlog wait in memory alone, and are queued after the next flush if
        memory still has them."""
        if self._disk is None or not ref.persistent:
            return
        disk = self._disk.object(ref)
        for index, data in blocks.items():
            key = (ref.key, index)
            if self._unqueued or not self._hold_for_disk(key, disk, index, data):
                self._unqueued[key] = ref
        if disk.awaited(list(blocks)):
            self._flush_soon = True
            self._start_flush()
        elif self._queued and self._memory.held_bytes >= self._flush_at:
            self._start_flush()

    def _hold_for_disk(self, key: BlockKey, disk: DiskObject, index: int, data: Block) -> bool:
        """Queue one block if the backlog has room for it."""
        memory = self._memory
        if memory.held_bytes + len(data) > self._disk_backlog:
            return False
        added = disk.add(index, data)
        if added:
            self._queued[key] = disk
            memory.hold(key, added)
        return True

    def _queue_deferred(self) -> None:
        """Queue the blocks that waited for room in the backlog, oldest first."""
        disk = self._disk
        assert disk is not None
        for key, ref in list(self._unqueued.items()):
            data = self._memory.peek(key)
            if data is None:
                disk.object(ref).release([key[1]])  # memory let it go unstored
            elif not self._hold_for_disk(key, disk.object(ref), key[1], data):
                return
            del self._unqueued[key]

    def _start_flush(self) -> None:
        if not self._flush_lock.locked():
            self._tasks.start_soon(self.flush)

    async def flush(self) -> None:
        """Make every block fetched so far durable on disk, then evict if over capacity."""
        disk = self._disk
        if disk is None:
            return
        async with self._flush_lock:
            while True:
                self._flush_soon = False
                try:
                    try:
                        await anyio.to_thread.run_sync(disk.flush)
                    finally:
                        self._release_written()
                        self._queue_deferred()
                    if disk.over_capacity:
                        await anyio.to_thread.run_sync(disk.evict)
                except OSError as exc:
                    log.warning(
                        "could not write the cache disk (blocks kept in memory only): %s", exc
                    )
                if self._flush_soon:
                    continue
                if not self._unqueued or self._memory.held_bytes < self._flush_at:
                    return

    def _release_written(self) -> None:
        """Stop counting blocks the disk queue no longer keeps (written, or dropped)."""
        done = [key for key, disk in self._queued.items() if not disk.queued(key[1])]
        for key in done:
            del self._queued[key]
            self._memory.unhold(key)
        if done:
            self._room_made()

    async def _flush_periodically(self) -> None:
        """Flush every `disk_flush_interval`, and sooner once another process waits for
        blocks this one claimed (it began waiting after they were queued)."""
        disk = self._disk
        assert disk is not None
        interval = self.config.disk_flush_interval
        due = anyio.current_time() + interval
        while True:
            if self._queued:
                await anyio.sleep(min(CLAIM_POLL_MAX, max(0.0, due - anyio.current_time())))
                if anyio.current_time() < due and not disk.claims.awaited_any():
                    continue
            else:
                await anyio.sleep(max(0.0, due - anyio.current_time()))
            due = anyio.current_time() + interval
            if self._queued or self._unqueued:
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
        # The cache's own tasks never fail, so an error is the caller's: give it back as it
        # was raised, not wrapped by the task group.
        raise first_error(group) from None
    finally:
        if disk is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(disk.close)
                except OSError as exc:
                    log.warning("could not write the cache disk on closing: %s", exc)
