"""The cache's knobs, with defaults chosen for HDF5-over-network reads.

Blocks are 256 KiB: HDF5 metadata reads are small and scattered, so a small block keeps a
random read cheap on slow links (remfile uses 100 KiB), while coalescing adjacent blocks
into GETs of up to 8 MiB and doubling the read-ahead window keeps streaming fast (8 MiB is
the part size AWS and mountpoint-s3 find saturates S3).  Measured with h5py summarizing a
220 MiB NWB file over S3 with 30 ms latency (before the tail rule below): 64 KiB blocks
took 11 GETs and 2.0 MiB, 256 KiB 9 GETs and 2.7 MiB, 1 MiB 7 GETs and 6.2 MiB, 4 MiB
6 GETs and 20 MiB.

Objects of at most `small_object_bytes` (Zarr chunks, small NWB files) are fetched whole
on their first read, in one GET: their next reads would come anyway, and latency, not
bandwidth, is what they cost.

The first read that reaches into the last `tail_bytes` of a larger object fetches that
whole tail: HDF5 files written by h5py keep much of their metadata at the end (as zip and
Parquet keep their directories), and its reads follow one another, each waiting for the
last.

Blocks a read waits for (and the ends of an HDF5 file, fetched as it is opened) go out as
parallel GETs, up to `max_requests` at once, rather than one coalesced GET, when one
connection moves bytes slowly: every GET costs a round trip, and at 50 MB/s per connection
(real S3 moves 50-100 MB/s) a 1.3 MB HDF5 chunk takes 26 ms to move over one.  A run of
blocks is split only if one connection, at the rate measured lately, would take at least
`parallel_read_seconds` to move it, and into GETs of `read_piece_bytes`: a faster link
gains less than the extra requests cost (measured on the local archive, a cold h5py read:
split at 50 MB/s per connection, 10 ms faster; at 100 MB/s, 5 ms slower; unlimited, 8 ms
slower).  Before any rate is known, nothing is split.  Read-ahead keeps its large GETs,
but no larger than one connection moves in `readahead_request_seconds` at the rate measured
lately (at least 1 MiB): read-ahead keeps `max_prefetch_requests * max_request_bytes` in
flight, over more connections when each is slow (at 100 MB/s per connection, 3 MB GETs,
eleven at once, instead of four 8 MiB GETs).

A read of at least `large_read_bytes` that does not continue the previous one still reads
ahead by its own size: such reads come from the kernel's read-ahead or from a reader taking
a whole HDF5 chunk, and the next one usually follows.  Zero turns it off.

Over long round trips (at least `cold_round_trip` seconds, as the connection set-up measured
it), requests are sized to each connection's congestion window (TCP slow start: ~14 KB in
the first round trip of a new or idle connection, doubling each round): a read of at most
`cold_read_bytes` whose blocks only a cold connection could fetch takes a fragment of one
window around itself instead (`fragments.py`; at most `fragment_memory_bytes` held), an
HDF5 open fetches its first window rather than its first block and tail, and a read's
blocks are split into parallel GETs only over connections that are ready (a new one pays
set-up and slow start: more round trips than a warm one takes for its share).  Zero turns
this off.

`memory_bytes` bounds every block byte the cache keeps alive: blocks in memory, the bytes
of GETs in flight (reserved for a run of blocks when its fetch starts, released as its
blocks are stored or when it fails), and blocks waiting to be written to the disk store
that memory has already let go.  Least-recently-used blocks are evicted to make room.
Read-ahead waits while its reservation would pass the bound; a read never waits, so a read
larger than the bound (or many reads at once) passes it until its blocks are stored rather
than deadlock.  Blocks wait for the disk up to four times `disk_flush_bytes` and half the
bound; beyond that they stay in memory alone and are queued after the next flush if memory
still has them.  On top of the bound come the interpreter and its imports (about 47 MiB
resident for `dandifs mount`) and 10 MiB or so more (FUSE replies, threads, allocator
slack): streaming 1 GiB, the daemon's peak RSS measured 121 MiB with a 64 MiB bound,
185 MiB with 128 MiB, 312 MiB with 256 MiB (`python -m bench rss_bench`; when the bound
covered cached blocks only, 184 and 345 MiB).  glibc's fixed mmap threshold
(`MALLOC_MMAP_THRESHOLD_=131072`) or `MALLOC_ARENA_MAX=2` changed it by 2-3 MiB either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class CacheConfig:
    block_size: int = 256 * KiB
    memory_bytes: int = 256 * MiB
    disk_dir: Path | None = None
    disk_bytes: int = 10 * GiB
    disk_flush_bytes: int = 16 * MiB
    disk_flush_interval: float = 1.0
    max_request_bytes: int = 8 * MiB
    max_requests: int = 8
    read_piece_bytes: int = 256 * KiB
    parallel_read_seconds: float = 0.02
    readahead_request_seconds: float = 0.03
    max_prefetch_requests: int = 4
    readahead_initial_bytes: int = 512 * KiB
    readahead_max_bytes: int = 64 * MiB
    sequential_tolerance: int = 1 * MiB
    small_object_bytes: int = 2 * MiB
    tail_bytes: int = 1 * MiB
    large_read_bytes: int = 1 * MiB
    cold_round_trip: float = 0.02
    cold_read_bytes: int = 64 * KiB
    fragment_memory_bytes: int = 8 * MiB

    def __post_init__(self) -> None:
        positive = {
            "block_size": self.block_size,
            "max_request_bytes": self.max_request_bytes,
            "max_requests": self.max_requests,
            "max_prefetch_requests": self.max_prefetch_requests,
            "read_piece_bytes": self.read_piece_bytes,
            "parallel_read_seconds": self.parallel_read_seconds,
            "readahead_request_seconds": self.readahead_request_seconds,
            "disk_flush_bytes": self.disk_flush_bytes,
            "disk_flush_interval": self.disk_flush_interval,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"cache setting {name} must be positive, not {value}")
        not_negative = {
            "memory_bytes": self.memory_bytes,
            "disk_bytes": self.disk_bytes,
            "readahead_initial_bytes": self.readahead_initial_bytes,
            "readahead_max_bytes": self.readahead_max_bytes,
            "sequential_tolerance": self.sequential_tolerance,
            "small_object_bytes": self.small_object_bytes,
            "tail_bytes": self.tail_bytes,
            "large_read_bytes": self.large_read_bytes,
            "cold_round_trip": self.cold_round_trip,
            "cold_read_bytes": self.cold_read_bytes,
            "fragment_memory_bytes": self.fragment_memory_bytes,
        }
        for name, value in not_negative.items():
            if value < 0:
                raise ValueError(f"cache setting {name} must not be negative, not {value}")
        if self.max_request_bytes < self.block_size:
            raise ValueError(
                f"max_request_bytes ({self.max_request_bytes}) is smaller than one block "
                f"({self.block_size})"
            )

    @property
    def request_blocks(self) -> int:
        """How many adjacent blocks one GET may carry."""
        return self.max_request_bytes // self.block_size

    @property
    def read_piece_blocks(self) -> int:
        """The fewest adjacent blocks one of a read's parallel GETs carries."""
        return min(max(1, self.read_piece_bytes // self.block_size), self.request_blocks)

    @property
    def readahead_initial_blocks(self) -> int:
        return max(1, -(-self.readahead_initial_bytes // self.block_size))

    @property
    def readahead_max_blocks(self) -> int:
        """The read-ahead cap, never more than a quarter of the memory cache: blocks fetched
        ahead must survive in memory until the reader gets to them."""
        limit = min(self.readahead_max_bytes, self.memory_bytes // 4)
        return limit // self.block_size
