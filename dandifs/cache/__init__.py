"""The block cache: sparse reads of remote objects, fast.

One `BlockCache` per process, shared by every open file; one `RangeReader` per open file::

    async with ArchiveClient(instance) as archive:
        config = CacheConfig(disk_dir=Path("~/.cache/dandifs").expanduser())
        async with open_block_cache(archive.objects, config) as cache:
            reader = RangeReader(cache, entry.content_url, entry.size, entry.etag)
            header = await reader.read(0, 512)
            await reader.aclose()

The fetcher is anything with `read_pieces(url, start, end, *, piece_size, etag)`
(`RangeFetcher`); the archive client's object store is one.  Synchronous callers (WsgiDAV)
reach the same cache through an anyio blocking portal.
"""

from dandifs.cache.blockcache import BlockCache, PrefetchTicket, open_block_cache
from dandifs.cache.blocks import BlockLayout
from dandifs.cache.config import CacheConfig
from dandifs.cache.fetcher import RangeFetcher
from dandifs.cache.objectref import ObjectRef
from dandifs.cache.reader import BytesReader, RangeReader
from dandifs.cache.stats import CacheStatistics

__all__ = [
    "BlockCache",
    "BlockLayout",
    "BytesReader",
    "CacheConfig",
    "CacheStatistics",
    "ObjectRef",
    "PrefetchTicket",
    "RangeFetcher",
    "RangeReader",
    "open_block_cache",
]
