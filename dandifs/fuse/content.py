"""Where an open file's bytes come from: the block cache, or bytes dandifs renders itself.

Each open handle gets its own `RangeReader` over the one `BlockCache` of the mount, so
read-ahead follows that handle's access pattern while every handle shares the blocks.
Blocks are kept on disk across mounts only for objects with a known ETag; an entry listed
without its digest (the archive's folder listing has none) gets it from the asset record,
one cached request on the first open.  Opening an HDF5 file (NWB) starts fetching both of
its ends at once, where HDF5 keeps the metadata every reader needs first.
"""

from __future__ import annotations

from typing import Any, Protocol

from dandifs.cache import BlockCache, RangeReader
from dandifs.resolve.entry import Entry


#: Names of files opened by HDF5 readers (NWB is HDF5).
HDF5_SUFFIXES = (".nwb", ".h5", ".hdf5", ".hdf")
#: How much of an HDF5 file's end to fetch on open: where its late-written objects live.
HDF5_TAIL_BYTES = 1024 * 1024


class ContentSource(Protocol):
    """What opening a file needs of the resolver."""

    async def read_virtual(self, path: str) -> bytes: ...

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]: ...


class RenderedFile:
    """A file whose bytes dandifs made (`dandiset.yaml`), served from memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, offset: int, size: int) -> bytes:
        return self._data[offset : offset + size]

    async def aclose(self) -> None:
        return None


class ContentOpener:
    """Opens entries for reading: `await opener(entry)` gives a reader for one handle."""

    def __init__(self, source: ContentSource, cache: BlockCache) -> None:
        self.source = source
        self.cache = cache

    async def __call__(self, entry: Entry) -> RangeReader | RenderedFile:
        if entry.content_url is None:
            return RenderedFile(await self.source.read_virtual(entry.path))
        etag = entry.etag or await self._digest(entry)
        reader = RangeReader(self.cache, entry.content_url, entry.size, etag)
        if entry.name.lower().endswith(HDF5_SUFFIXES):
            self._prefetch_hdf5_metadata(reader)
        return reader

    def _prefetch_hdf5_metadata(self, reader: RangeReader) -> None:
        """Start fetching both ends of an HDF5 file while the opener is still in `open()`.

        Opening HDF5 is a chain of dependent small reads: the superblock at the start, then
        objects that h5py and pynwb mostly leave at the end of the file.  Fetching both ends
        in parallel at once saves a round trip or two of that chain; blocks already cached
        cost nothing.
        """
        layout = self.cache.layout(reader.ref)
        count = layout.block_count
        if count == 0:
            return
        tail = max(1, -(-HDF5_TAIL_BYTES // self.cache.config.block_size))
        self.cache.prefetch(reader.ref, range(0, 1))
        if count > 1:
            self.cache.prefetch(reader.ref, range(max(1, count - tail), count))

    async def _digest(self, entry: Entry) -> str | None:
        if entry.asset_id is None:
            return None
        metadata = await self.source.asset_metadata(entry)
        digests = metadata.get("digest") or {}
        return digests.get("dandi:dandi-etag")
