"""What the cache did, counted in blocks, requests and bytes."""

from __future__ import annotations

from dataclasses import dataclass

from dandifs.counters import Counters


@dataclass
class CacheStatistics(Counters):
    """The cache's tally; `BlockCache.statistics()` hands out a copy, so a snapshot never
    changes under its reader.

    Hits and misses count blocks asked for by reads (not read-ahead).  A `joined` block was
    already being fetched for someone else, so the read waited on that fetch instead of
    starting its own.  `fragment_requests` fetched less than a block for a small read over
a cold connection (`dandifs.cache.fragments`).  `readahead_hits` are blocks that read-ahead brought in (or was
    bringing in) before a read asked for them; fetches started before any read waited
    (`BlockCache.fetch_soon`: an HDF5 file's ends, the rest of a large read) count as
    read-ahead too.  `memory_bytes`, `memory_reserved_bytes`, `memory_held_out_bytes` and
    `disk_pending_bytes` are gauges: what memory holds, what is promised to fetches under
    way, blocks waiting for the disk that memory let go (these three make up what
    `CacheConfig.memory_bytes` bounds), and what waits to be written to disk.
    `memory_peak_bytes` is the highest sum of the three so far.
    """

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    joined: int = 0
    requests: int = 0
    fragment_requests: int = 0
    bytes_fetched: int = 0
    readahead_requests: int = 0
    readahead_bytes: int = 0
    readahead_hits: int = 0
    memory_bytes: int = 0
    memory_reserved_bytes: int = 0
    memory_held_out_bytes: int = 0
    memory_peak_bytes: int = 0
    disk_pending_bytes: int = 0

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits

    def derived(self) -> dict[str, int]:
        return {"hits": self.hits}
