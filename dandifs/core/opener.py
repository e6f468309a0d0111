"""Where an open file's bytes come from: the block cache, or bytes dandifs renders itself.

Each open handle gets its own `RangeReader` over the one `BlockCache` of the mount, so
read-ahead follows that handle's access pattern while every handle shares the blocks.
Blocks are kept on disk across mounts only for objects with a known ETag; an entry listed
without its digest (the archive's folder listing has none) gets it from the asset record,
one cached request on the first open.

Opening an HDF5 file (NWB) starts fetching both of its ends at once, where HDF5 keeps the
metadata every reader needs first.  Once they are in, the chunk indexes found there are
followed one level down (`hdf5index`): the B-tree nodes under each index root are fetched
in the background, so that a slice read later costs one round trip (the chunk) instead of
two (the index node, then the chunk).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import anyio.abc

from dandifs.cache import BlockCache, BytesReader, ObjectRef, RangeReader
from dandifs.cache.blocks import runs
from dandifs.core.hdf5index import child_nodes
from dandifs.core.zarrahead import MAX_FILES as ZARR_READAHEAD_FILES
from dandifs.core.zarrahead import ZarrReadAhead
from dandifs.resolve.entry import Entry

log = logging.getLogger(__name__)

#: Names of files opened by HDF5 readers (NWB is HDF5).
HDF5_SUFFIXES = (".nwb", ".h5", ".hdf5", ".hdf")

#: Blocks of chunk-index nodes one open may fetch ahead: a file with many large datasets
#: must not set off a flood of requests that its reader may never need.
INDEX_PREFETCH_BLOCKS = 16


class ContentSource(Protocol):
    """What opening a file needs of the resolver."""

    async def read_virtual(self, path: str) -> bytes: ...

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]: ...

    async def zarr_neighbours(self, entry: Entry) -> Sequence[Entry]: ...


class ContentOpener:
    """Opens entries for reading: `await opener(entry)` gives a reader for one handle.

    Work that outlives an open (following HDF5 chunk indexes, fetching the next files of a
    Zarr) runs in `background`; without one, neither is done.  `index_prefetch_blocks=0`
    turns the first off, `zarr_readahead_files=0` the second.
    """

    def __init__(
        self,
        source: ContentSource,
        cache: BlockCache,
        background: anyio.abc.TaskGroup | None = None,
        *,
        index_prefetch_blocks: int = INDEX_PREFETCH_BLOCKS,
        zarr_readahead_files: int = ZARR_READAHEAD_FILES,
    ) -> None:
        self.source = source
        self.cache = cache
        self.background = background
        self.index_prefetch_blocks = index_prefetch_blocks
        self.zarr_readahead = ZarrReadAhead(max_files=zarr_readahead_files)

    async def __call__(self, entry: Entry) -> RangeReader | BytesReader:
        if entry.content_url is None:
            return BytesReader(await self.source.read_virtual(entry.path))
        etag = entry.etag or await self._digest(entry)
        reader = RangeReader(self.cache, entry.content_url, entry.size, etag)
        if entry.zarr_id is not None and self.zarr_readahead.max_files:
            if self.zarr_readahead.knows(entry):
                self._fetch_ahead(self.zarr_readahead.opened(entry))
            elif self.background is not None:
                self.background.start_soon(self._learn_zarr_order, entry)
        if entry.name.lower().endswith(HDF5_SUFFIXES):
            # Opening HDF5 is a chain of dependent small reads, from the superblock at the
            # start to objects h5py and pynwb mostly leave at the end: fetching both ends at
            # once saves a round trip or two of it (blocks already cached cost nothing).
            as_blocks = await reader.prefetch_ends()
            background = self.background if self.index_prefetch_blocks > 0 else None
            if background is not None and as_blocks and not reader.fetched_whole:
                background.start_soon(self._prefetch_chunk_indexes, reader.ref, reader.ends())
        return reader

    async def _digest(self, entry: Entry) -> str | None:
        if entry.asset_id is None:
            return None
        metadata = await self.source.asset_metadata(entry)
        digests = metadata.get("digest") or {}
        return digests.get("dandi:dandi-etag")

    async def _learn_zarr_order(self, entry: Entry) -> None:
        """Learn the key order of `entry`'s Zarr (one cached lookup), then read ahead."""
        try:
            order = await self.source.zarr_neighbours(entry)
            if order and entry.zarr_id is not None:
                self.zarr_readahead.learn(entry.zarr_id, order)
                self._fetch_ahead(self.zarr_readahead.opened(entry))
        except Exception as exc:  # noqa: BLE001 - read-ahead must never fail an open or a read
            log.debug("no read-ahead in the Zarr of %s: %s", entry.path, exc)

    def _fetch_ahead(self, files: Sequence[Entry]) -> None:
        """Fetch, whole, the small files of a Zarr that a walk through it opens next."""
        small = self.cache.config.small_object_bytes
        for file in files:
            if file.content_url and 0 < file.size <= small:
                ref = ObjectRef(file.content_url, file.size, file.etag)
                self.cache.prefetch(ref, self.cache.layout(ref).span(0, file.size))

    async def _prefetch_chunk_indexes(self, ref: ObjectRef, ends: tuple[range, ...]) -> None:
        """Fetch the chunk-index nodes that the B-tree roots in the file's ends point to.

        Runs beside the reads, never before them: it waits for the ends that the open is
        fetching anyway (joining those fetches), and its own fetches are read-ahead, which
        never takes a request slot from a read.  Failing costs nothing but the prefetch.
        """
        try:
            layout = self.cache.layout(ref)
            regions: dict[int, bytes] = {}
            for blocks in ends:
                data = await self.cache.blocks(ref, blocks)
                regions[layout.bounds(blocks.start)[0]] = b"".join(data)
            # a worker thread reads the nodes, so that FUSE requests never wait behind it
            nodes = await anyio.to_thread.run_sync(child_nodes, regions, ref.size)
            wanted = sorted(
                {index for node in nodes for index in layout.span(node.start, len(node))}
            )[: self.index_prefetch_blocks]
            for run in runs(wanted, self.cache.config.request_blocks):
                self.cache.prefetch(ref, run)
            if wanted:
                log.debug("prefetching chunk-index blocks %s of %s", wanted, ref.url)
        except Exception as exc:  # noqa: BLE001 - a prefetch must never fail an open or a read
            log.debug("no chunk-index prefetch for %s: %s", ref.url, exc)
