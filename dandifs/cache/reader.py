"""One open file's view of the block cache: reads plus that handle's own read-ahead."""

from __future__ import annotations

import logging

from dandifs.cache.blockcache import BlockCache, Origin, PrefetchTicket
from dandifs.cache.objectref import ObjectRef
from dandifs.cache.readahead import ReadAheadPolicy

log = logging.getLogger(__name__)


class RangeReader:
    """Reads of one object through a shared `BlockCache`, with read-ahead for this handle.

    Read-ahead runs in the background: a read waits only for its own blocks.  A random
    read (or closing) drops read-ahead that has not started yet.  A small object is fetched
    whole by its first read instead, and the first read reaching into a larger object's tail
    fetches the whole tail (see `CacheConfig`), unless connections are cold: small reads then
    take fragments (`BlockCache.cold_window`), whose blocks are fetched for the disk once the
    handle closes.
    """

    def __init__(
        self,
        cache: BlockCache,
        url: str,
        size: int,
        etag: str | None = None,
        *,
        identity: str | None = None,
    ) -> None:
        self.ref = ObjectRef(url, size, etag, identity or "")
        self._cache = cache
        config = cache.config
        self._policy = ReadAheadPolicy(
            cache.layout(self.ref),
            initial_blocks=config.readahead_initial_blocks,
            max_blocks=config.readahead_max_blocks,
            tolerance=config.sequential_tolerance,
            step_blocks=config.request_blocks,
            large_read=config.large_read_bytes,
        )
        self._tickets: list[PrefetchTicket] = []
        self._closed = False
        # Read-ahead may use the network only while this handle's reads come from it: a
        # replay of reads that the disk serves never fetches anything speculatively.  Reads
        # that memory alone served leave the question as it was.
        self._network_fed = False
        self._layout = cache.layout(self.ref)
        small = size <= config.small_object_bytes
        self._whole = self._layout.span(0, size) if small else range(0)
        tail_start = max(0, size - config.tail_bytes)
        self._tail = range(0) if small else self._layout.span(tail_start, size - tail_start)

    async def prefetch_ends(self) -> bool:
        """Start fetching the object's first block and its tail at once, in parallel.

        For formats that keep what every reader needs first at both ends (HDF5: the
        superblock at the start, objects written late at the end), so that the chain of
        dependent reads an open makes starts with both ends cached or in flight.  The tail
        is the one the first read reaching it would fetch (`CacheConfig.tail_bytes`), so that
        read joins this fetch instead of asking for the rest of the tail on its own.  Both
        are fetched as reads fetch (in parallel pieces): reads are about to wait for them.
        Over a cold connection only the first round trip's worth at the start is fetched
        (see `BlockCache.cold_window`): the rest of a block and the tail would cost several
        round trips more, and later reads fetch what they need.  Whether the ends were
        fetched as blocks.
        """
        if not self._whole and await self._cache.fragment_soon(self.ref, 0, 1):
            return False
        for blocks in self.ends():
            self._cache.fetch_soon(self.ref, blocks)
        return True

    @property
    def fetched_whole(self) -> bool:
        """A small object: its first read fetches all of it (`CacheConfig.small_object_bytes`)."""
        return bool(self._whole)

    def ends(self) -> tuple[range, ...]:
        """The blocks `prefetch_ends` fetches: the whole of a small object; else its first
        block and its tail."""
        if self._whole:
            return (self._whole,)
        first = range(0, 1) if self._layout.block_count else range(0)
        return tuple(blocks for blocks in (first, self._tail) if blocks)

    @property
    def readahead_window(self) -> int:
        """Blocks read-ahead currently keeps in front of this handle (0: random access)."""
        return self._policy.window

    async def read(self, offset: int, size: int) -> bytes:
        """Bytes `[offset, offset + size)`; fewer at the end of the object, none past it."""
        if self._closed:
            raise ValueError(f"read from a closed reader of {self.ref.url}")
        if offset < 0 or size < 0:
            raise ValueError(f"cannot read {size} bytes at offset {offset} of {self.ref.url}")
        size = max(0, min(size, self.ref.size - offset))
        if size == 0:
            return b""
        if self._whole:
            return await self._cache.read(self.ref, offset, size, along=self._whole)
        along = range(0)
        if (self._tail and self._layout.span(offset, size).stop > self._tail.start
                and await self._cache.cold_window(self.ref) is None):
            along, self._tail = self._tail, range(0)
        ahead = self._policy.after_read(offset, size)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "read %s bytes %d-%d, read-ahead window %d blocks, asking for %s",
                self.ref.url, offset, offset + size - 1, self._policy.window, ahead or "none",
            )
        if self._policy.window == 0:
            self._cancel_readahead()
        if ahead and self._policy.jumped and self._network_fed:
            # The rest of a large random read (an HDF5 chunk the kernel cut into 1 MiB
            # READs) is asked for as soon as this read returns: fetch it as a read would,
            # once this read's own blocks are on their way (they come first for slots).
            self._cache.fetch_soon(self.ref, self._layout.span(offset, size))
            self._cache.fetch_soon(self.ref, ahead)
        elif ahead:
            self._tickets = [ticket for ticket in self._tickets if not ticket.settled]
            self._tickets.append(
                self._cache.prefetch(self.ref, ahead, network=self._network_fed)
            )
        data, origin = await self._cache.read_with_origin(self.ref, offset, size, along=along)
        if origin is not Origin.MEMORY:
            self._network_fed = origin is Origin.NETWORK
        return data

    def _cancel_readahead(self) -> None:
        for ticket in self._tickets:
            ticket.cancel()
        self._tickets.clear()

    async def aclose(self) -> None:
        self._cancel_readahead()
        self._closed = True
        self._cache.settle(self.ref)

    async def __aenter__(self) -> RangeReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class BytesReader:
    """The `RangeReader` interface over bytes already in memory: files dandifs renders itself
    (`dandiset.yaml`), so that front ends read every file the same way."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    async def aclose(self) -> None:
        return None
