"""One open file's view of the block cache: reads plus that handle's own read-ahead."""

from __future__ import annotations

from dandifs.cache.blockcache import BlockCache, PrefetchTicket
from dandifs.cache.objectref import ObjectRef
from dandifs.cache.readahead import ReadAheadPolicy


class RangeReader:
    """Reads of one object through a shared `BlockCache`, with read-ahead for this handle.

    Read-ahead runs in the background: a read waits only for its own blocks.  A random
    read (or closing) drops read-ahead that has not started yet.  A small object (see
    `CacheConfig.small_object_bytes`) is fetched whole by its first read instead.
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
        )
        self._tickets: list[PrefetchTicket] = []
        self._closed = False
        whole = self.ref.size <= config.small_object_bytes
        self._along = cache.layout(self.ref).span(0, self.ref.size) if whole else range(0)

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
        if self._along:
            return await self._cache.read(self.ref, offset, size, along=self._along)
        ahead = self._policy.after_read(offset, size)
        if self._policy.window == 0:
            self._cancel_readahead()
        if ahead:
            self._tickets = [ticket for ticket in self._tickets if not ticket.settled]
            self._tickets.append(self._cache.prefetch(self.ref, ahead))
        return await self._cache.read(self.ref, offset, size)

    def _cancel_readahead(self) -> None:
        for ticket in self._tickets:
            ticket.cancel()
        self._tickets.clear()

    async def aclose(self) -> None:
        self._cancel_readahead()
        self._closed = True

    async def __aenter__(self) -> RangeReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
