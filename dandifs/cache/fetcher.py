"""What the cache needs from the network: ranged reads pinned to an ETag.

`dandifs.archive.objects.ObjectStore` satisfies this protocol as it is; the cache never
imports the archive layer (or httpx), so any source of ranged bytes can stand behind it.
"""

from __future__ import annotations

from typing import Protocol


class RangeFetcher(Protocol):
    async def read_range(self, url: str, start: int, end: int, *, etag: str | None = None) -> bytes:
        """Bytes `[start, end)` of the object at `url` (end exclusive).

        Raises `dandifs.errors.Stale` when the object's ETag is not `etag`.  Returns fewer
        bytes only where the object ends before `end`.
        """
        ...
