"""The block cache: sparse reads of remote objects, fast.

`open_block_cache(fetcher, config)` gives a `BlockCache` shared by a process;
`RangeReader(cache, url, size, etag)` reads one open file through it.
"""

from dandifs.cache.blockcache import BlockCache, PrefetchTicket, open_block_cache
from dandifs.cache.blocks import BlockLayout
from dandifs.cache.config import CacheConfig
from dandifs.cache.fetcher import RangeFetcher
from dandifs.cache.objectref import ObjectRef
from dandifs.cache.reader import RangeReader
from dandifs.cache.stats import CacheStatistics

__all__ = [
    "BlockCache",
    "BlockLayout",
    "CacheConfig",
    "CacheStatistics",
    "ObjectRef",
    "PrefetchTicket",
    "RangeFetcher",
    "RangeReader",
    "open_block_cache",
]
