"""The core every front end sits on: one archive client, resolver and block cache, and
the operations a filesystem needs of them.

`open_core` builds the layers from an instance, a token and a `CoreConfig`, and closes
them in order; `Core` is what the FUSE mount, the WebDAV server and any other front end
call.  A front end renders what the core answers (stat fields, PROPFIND, HTML) and maps
its errors through its own table; it never builds an archive client, a resolver or a cache.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio

from dandifs.archive.client import ArchiveClient
from dandifs.archive.instances import Instance, object_origins
from dandifs.cache import BlockCache, open_block_cache
from dandifs.core.config import CoreConfig
from dandifs.core.opener import ContentOpener
from dandifs.core.warmer import ConnectionWarmer
from dandifs.resolve import Entry, EntryKind, Resolver

log = logging.getLogger(__name__)


class FileReader(Protocol):
    """The bytes of one open file; one per handle, so read-ahead follows that handle alone."""

    async def read(self, offset: int, size: int) -> bytes: ...

    async def aclose(self) -> None: ...


class Core:
    """The archive as a filesystem, for one caller (one token, or anonymous)."""

    def __init__(
        self,
        archive: ArchiveClient,
        resolver: Resolver,
        cache: BlockCache,
        opener: ContentOpener,
        warmer: ConnectionWarmer | None = None,
    ) -> None:
        self._archive = archive
        self._resolver = resolver
        self._cache = cache
        self._open = opener
        self._warmer = warmer

    # -- what the caller is -------------------------------------------------------------

    @property
    def instance(self) -> Instance:
        return self._archive.instance

    @property
    def authenticated(self) -> bool:
        return self._archive.authenticated

    # -- how long answers stay true (front ends hand these to kernels and clients) -------

    @property
    def ttl_published(self) -> float:
        return self._resolver.ttl_published

    @property
    def ttl_draft(self) -> float:
        return self._resolver.ttl_draft

    @property
    def ttl_negative(self) -> float:
        return self._resolver.ttl_negative

    # -- names -----------------------------------------------------------------------------

    async def stat(self, path: str, *, follow: bool = False) -> Entry:
        """The entry at `path`; `latest` is a symlink unless `follow` is set."""
        entry = await self._resolver.stat(path, follow=follow)
        if self._warmer is not None:
            self._warmer.saw((entry,))
        return entry

    async def listdir(self, path: str, *, follow: bool = False) -> list[Entry]:
        """The children of the folder at `path`, sorted by name; with `follow`, a symlink
        child (`latest`) is given as the folder it points to, for front ends without links."""
        children = await self._resolver.listdir(path)
        if self._warmer is not None:
            self._warmer.saw(children)
        if not follow:
            return children
        return [
            await self.stat(child.path, follow=True) if child.kind is EntryKind.SYMLINK else child
            for child in children
        ]

    # -- bytes -----------------------------------------------------------------------------

    async def open(self, entry: Entry) -> FileReader:
        """A reader of a file entry's bytes, for one handle (HDF5-aware prefetch included)."""
        return await self._open(entry)

    async def locate(self, url: str) -> str:
        """Where an archive download URL leads (a presigned S3 URL), asked with the token."""
        return await self._archive.objects.locate(url)

    # -- metadata --------------------------------------------------------------------------

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]:
        """The archive's full metadata record of the asset behind `entry`."""
        return await self._resolver.asset_metadata(entry)

    async def metadata(self, path: str) -> dict[str, Any]:
        """The archive's metadata record for `path`: its asset's, else its version's."""
        return await self._resolver.metadata(path)

    # -- bookkeeping -----------------------------------------------------------------------

    @property
    def requests_made(self) -> int:
        """Archive and S3 requests sent so far."""
        return self._archive.stats.requests

    def statistics(self) -> dict[str, dict[str, int]]:
        """What the core asked of the archive and how its caches served it."""
        return {
            "archive": self._archive.stats.snapshot(),
            "metadata": self._resolver.stats.snapshot(),
            "blocks": self._cache.statistics().snapshot(),
        }


@asynccontextmanager
async def open_core(
    instance: Instance | str | None = None,
    *,
    token: str | None = None,
    token_source: str = "the token given",
    anonymous: bool = False,
    config: CoreConfig | None = None,
) -> AsyncIterator[Core]:
    """The core for `instance` (a dandi-cli instance name or an API URL; None: DANDI).

    The token is `token`, else found the way dandi-cli finds it (environment, keyring);
    `anonymous=True` uses none.  A token the archive refuses stops here with
    `InvalidToken`, naming where it came from, rather than failing every request later.
    """
    config = config or CoreConfig()
    async with ArchiveClient(
        instance, token=token, token_source=token_source, anonymous=anonymous
    ) as archive:
        if archive.authenticated:
            await archive.check_token()
        resolver = Resolver(archive, persist_dir=config.metadata_dir)
        try:
            async with (
                open_block_cache(archive.objects, config.cache) as cache,
                anyio.create_task_group() as background,
            ):
                opener = ContentOpener(
                    resolver,
                    cache,
                    background,
                    index_prefetch_blocks=config.index_prefetch,
                    zarr_readahead_files=config.zarr_readahead,
                )
                warmer = ConnectionWarmer(
                    archive.objects,
                    background,
                    instance_url=archive.instance.api_url,
                    known=object_origins(archive.instance),
                    state_dir=config.metadata_dir,
                )
                warmer.start()
                try:
                    yield Core(archive, resolver, cache, opener, warmer)
                finally:
                    background.cancel_scope.cancel()  # prefetches end with the core
        finally:
            resolver.close()
