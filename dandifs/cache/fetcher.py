"""What the cache needs from the network: ranged reads pinned to an ETag, in block-sized
pieces.

`dandifs.archive.objects.ObjectStore` satisfies this protocol as it is; the cache never
imports the archive layer (or httpx), so any source of ranged bytes can stand behind it.
"""

from __future__ import annotations

from typing import Protocol


class RangeFetcher(Protocol):
    @property
    def stream_rate(self) -> float | None:
        """Bytes per second one connection has been delivering lately; None if unknown."""
        ...

    def warm_bytes(self, url: str) -> int | None:
        """Bytes the next GET of `url` receives in its first round trip (a connection's
        congestion window); None if unknown."""
        ...

    def round_trip(self, url: str) -> float:
        """Seconds of one round trip to where `url`'s bytes come from; 0 if unknown."""
        ...

    async def measured_round_trip(self, url: str) -> float:
        """`round_trip`, once a connection being opened ahead of reads has measured it."""
        ...

    def ready_connections(self, url: str) -> int:
        """Connections a GET of `url` could take without setting one up."""
        ...

    async def read_pieces(
        self, url: str, start: int, end: int, *, piece_size: int, etag: str | None = None
    ) -> list[bytes]:
        """Bytes `[start, end)` of the object at `url` (end exclusive), in consecutive pieces
        of `piece_size` bytes (the last may be shorter).

        The cache keeps each block in a buffer of its own: a fetcher that receives the bytes
        straight into such buffers spares it a copy of every block.  Raises
        `dandifs.errors.Stale` when the object's ETag is not `etag`.  Returns fewer bytes
        only where the object ends before `end`.
        """
        ...
