"""What a core is opened with, besides the instance and the token."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_cache_dir

from dandifs.cache import CacheConfig
from dandifs.core.cachedir import uploads_dir
from dandifs.core.opener import INDEX_PREFETCH_BLOCKS, ZARR_READAHEAD_FILES


@dataclass(frozen=True)
class CoreConfig:
    """`cache`: the block cache (memory bound, disk store); `metadata_dir`: where answers
    about published versions are kept across processes (None: memory only);
    `index_prefetch`: blocks of HDF5 chunk-index nodes an open may fetch ahead (0: off);
    `zarr_readahead`: the most files of a Zarr fetched ahead of a reader walking it (0: off);
    `spool_dir`: where files written into drafts wait for the archive, with the journal of
    their uploads (None: `uploads/` in the machine's cache directory)."""

    cache: CacheConfig = field(default_factory=CacheConfig)
    metadata_dir: Path | None = None
    index_prefetch: int = INDEX_PREFETCH_BLOCKS
    zarr_readahead: int = ZARR_READAHEAD_FILES
    spool_dir: Path | None = None

    @property
    def uploads_dir(self) -> Path:
        return self.spool_dir if self.spool_dir is not None else uploads_dir(default_cache_dir())

    @classmethod
    def in_directory(
        cls, base: Path, *, disk_bytes: int, memory_bytes: int, **rest: int
    ) -> CoreConfig:
        """The layout every front end keeps in a cache directory: `blocks/` (published
        bytes, up to `disk_bytes`), `metadata/` (published answers) and `uploads/` (files
        written into drafts, until the archive has them), so that a mount, an fsspec reader
        and `dandifs get` on one directory share what any of them fetched."""
        return cls(
            cache=CacheConfig(
                memory_bytes=memory_bytes, disk_dir=base / "blocks", disk_bytes=disk_bytes
            ),
            metadata_dir=base / "metadata",
            spool_dir=uploads_dir(base),
            **rest,
        )


def default_cache_dir() -> Path:
    """The machine's cache for root (`/var/cache/dandifs`), else the user's."""
    if os.geteuid() == 0:
        return Path("/var/cache/dandifs")
    return Path(user_cache_dir("dandifs"))
