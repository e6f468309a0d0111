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

from dandifs.cache import BlockCache, BytesReader, RangeReader
from dandifs.resolve.entry import Entry


#: Names of files opened by HDF5 readers (NWB is HDF5).
HDF5_SUFFIXES = (".nwb", ".h5", ".hdf5", ".hdf")


class ContentSource(Protocol):
    """What opening a file needs of the resolver."""

    async def read_virtual(self, path: str) -> bytes: ...

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]: ...


class ContentOpener:
    """Opens entries for reading: `await opener(entry)` gives a reader for one handle."""

    def __init__(self, source: ContentSource, cache: BlockCache) -> None:
        self.source = source
        self.cache = cache

    async def __call__(self, entry: Entry) -> RangeReader | BytesReader:
        if entry.content_url is None:
            return BytesReader(await self.source.read_virtual(entry.path))
        etag = entry.etag or await self._digest(entry)
        reader = RangeReader(self.cache, entry.content_url, entry.size, etag)
        if entry.name.lower().endswith(HDF5_SUFFIXES):
            # Opening HDF5 is a chain of dependent small reads, from the superblock at the
            # start to objects h5py and pynwb mostly leave at the end: fetching both ends at
            # once saves a round trip or two of it (blocks already cached cost nothing).
            reader.prefetch_ends()
        return reader

    async def _digest(self, entry: Entry) -> str | None:
        if entry.asset_id is None:
            return None
        metadata = await self.source.asset_metadata(entry)
        digests = metadata.get("digest") or {}
        return digests.get("dandi:dandi-etag")
