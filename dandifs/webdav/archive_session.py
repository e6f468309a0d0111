"""A `Session` over the real layers: archive client, resolver and block cache for one token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from dandifs.archive.client import ArchiveClient
from dandifs.archive.instances import Instance
from dandifs.cache import BytesReader, CacheConfig, RangeReader, open_block_cache
from dandifs.cache.blockcache import BlockCache
from dandifs.resolve import Entry, EntryKind, Resolver

MiB = 1 << 20
ANONYMOUS_CACHE = CacheConfig(memory_bytes=128 * MiB)
TOKEN_CACHE = CacheConfig(memory_bytes=32 * MiB)
"""Block caches are per session and in memory only: the server streams rarely (redirects
are the default), and blocks of one caller's embargoed data must not outlive that caller's
session or reach a disk.  With `Sessions`' default of 64 token sessions the worst case is
128 MiB + 64 x 32 MiB, reached only if every one of them streams at once."""


def as_folder(entry: Entry) -> Entry:
    """`latest` is a symlink in FUSE; WebDAV has no symlinks, so it is a folder here."""
    return replace(entry, kind=EntryKind.FOLDER) if entry.kind is EntryKind.SYMLINK else entry


class ArchiveSession:
    """One caller's view of the archive; everything in it is private to that caller's token."""

    def __init__(self, archive: ArchiveClient, resolver: Resolver, blocks: BlockCache) -> None:
        self.archive = archive
        self.resolver = resolver
        self.blocks = blocks

    @property
    def requests_made(self) -> int:
        return self.archive.stats.requests

    async def stat(self, path: str) -> Entry:
        return as_folder(await self.resolver.stat(path, follow=True))

    async def listdir(self, path: str) -> list[Entry]:
        entries = await self.resolver.listdir(path)
        return [await self._followed(entry) for entry in entries]

    async def _followed(self, entry: Entry) -> Entry:
        """A symlink (`latest`) as the folder it points to, under its own name."""
        if entry.kind is not EntryKind.SYMLINK:
            return entry
        return as_folder(await self.resolver.stat(entry.path, follow=True))

    async def open_reader(self, entry: Entry) -> RangeReader | BytesReader:
        if entry.content_url is None:
            return BytesReader(await self.resolver.read_virtual(entry.path))
        return RangeReader(self.blocks, entry.content_url, entry.size, entry.etag)

    async def locate(self, url: str) -> str:
        return await self.archive.objects.locate(url)

    async def metadata(self, entry: Entry) -> dict[str, Any]:
        return await self.resolver.metadata(entry.path)


@asynccontextmanager
async def open_archive_session(
    instance: Instance, token: str | None, *, cache: CacheConfig | None = None
) -> AsyncIterator[ArchiveSession]:
    """A session for `token` (None: anonymous); raises `InvalidToken` if the archive refuses it.

    Anonymous sessions never pick up a token from the environment or keyring: what the
    server's owner may see is not what every caller may see.
    """
    async with ArchiveClient(instance, token=token, anonymous=token is None) as archive:
        if token is not None:
            await archive.check_token()
        config = cache or (ANONYMOUS_CACHE if token is None else TOKEN_CACHE)
        async with open_block_cache(archive.objects, config) as blocks:
            yield ArchiveSession(archive, Resolver(archive), blocks)
