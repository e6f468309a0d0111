"""What a core is opened with, besides the instance and the token."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dandifs.cache import CacheConfig
from dandifs.core.opener import INDEX_PREFETCH_BLOCKS, ZARR_READAHEAD_FILES


@dataclass(frozen=True)
class CoreConfig:
    """`cache`: the block cache (memory bound, disk store); `metadata_dir`: where answers
    about published versions are kept across processes (None: memory only);
    `index_prefetch`: blocks of HDF5 chunk-index nodes an open may fetch ahead (0: off);
    `zarr_readahead`: the most files of a Zarr fetched ahead of a reader walking it (0: off)."""

    cache: CacheConfig = field(default_factory=CacheConfig)
    metadata_dir: Path | None = None
    index_prefetch: int = INDEX_PREFETCH_BLOCKS
    zarr_readahead: int = ZARR_READAHEAD_FILES
