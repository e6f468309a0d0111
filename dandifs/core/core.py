"""The core every front end sits on: one archive client, resolver and block cache, and
the operations a filesystem needs of them.

`open_core` builds the layers from an instance, a token and a `CoreConfig`, and closes
them in order; `Core` is what the FUSE mount, the WebDAV server and any other front end
call.  A front end renders what the core answers (stat fields, PROPFIND, HTML) and maps
its errors through its own table; it never builds an archive client, a resolver or a cache.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from dandifs import errors
from dandifs.archive.client import ArchiveClient
from dandifs.archive.instances import Instance, object_origins
from dandifs.cache import BlockCache, open_block_cache
from dandifs.core.config import CoreConfig
from dandifs.core.drafts import Drafts, FileWriter
from dandifs.core.filereader import FileReader
from dandifs.core.edits import DraftEdits
from dandifs.core.opener import ContentOpener
from dandifs.core.warmer import ConnectionWarmer
from dandifs.namespace.writable import read_only_reason
from dandifs.resolve import Entry, EntryKind, Resolver
from dandifs.upload.journal import JOURNAL_FILE, Journal, UploadRecord
from dandifs.upload.metadata import asset_metadata
from dandifs.upload.pipeline import Uploader
from dandifs.upload.spool import SPOOL_FOLDER, Spool
from dandifs.upload.state import UploadState

log = logging.getLogger(__name__)


class Core:
    """The archive as a filesystem, for one caller (one token, or anonymous)."""

    def __init__(
        self,
        archive: ArchiveClient,
        resolver: Resolver,
        cache: BlockCache,
        opener: ContentOpener,
        warmer: ConnectionWarmer | None = None,
        drafts: Drafts | None = None,
        uploader: Uploader | None = None,
    ) -> None:
        self._archive = archive
        self._resolver = resolver
        self._cache = cache
        self._open = opener
        self._warmer = warmer
        self._drafts = drafts
        self._edits = (
            DraftEdits(
                archive, drafts, uploader, stat=self.stat, listdir=self.listdir,
                create=self.create, open_reader=self.open,
            )
            if drafts is not None and uploader is not None
            else None
        )

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
        """The entry at `path`; `latest` is a symlink unless `follow` is set.  In a draft,
        what this core has written and the archive does not have yet is included."""
        local = self._drafts.entry(_canonical(path)) if self._drafts is not None else None
        if local is not None and not local.is_folder:
            return local
        try:
            entry = await self._resolver.stat(path, follow=follow)
        except errors.NotFound:
            if local is None:
                raise
            return local  # a folder made here, or one that only pending files are in
        if self._warmer is not None:
            self._warmer.saw((entry,))
        return entry

    async def listdir(self, path: str, *, follow: bool = False) -> list[Entry]:
        """The children of the folder at `path`, sorted by name; with `follow`, a symlink
        child (`latest`) is given as the folder it points to, for front ends without links."""
        children = await self._archive_children(path)
        if self._warmer is not None:
            self._warmer.saw(children)
        if not follow:
            return children
        return [
            await self.stat(child.path, follow=True) if child.kind is EntryKind.SYMLINK else child
            for child in children
        ]

    async def _archive_children(self, path: str) -> list[Entry]:
        """The archive's listing with this core's pending files and folders laid over it."""
        if self._drafts is None:
            return await self._resolver.listdir(path)
        folder = _canonical(path)
        local = self._drafts.children(folder)
        try:
            remote = await self._resolver.listdir(path)
        except errors.NotFound:
            if self._drafts.entry(folder) is None:
                raise
            remote = []
        if not local:
            return remote
        merged = {entry.name: entry for entry in remote}
        merged.update((entry.name, entry) for entry in local)
        return [merged[name] for name in sorted(merged)]

    # -- bytes -----------------------------------------------------------------------------

    async def open(self, entry: Entry) -> FileReader:
        """A reader of a file entry's bytes, for one handle (HDF5-aware prefetch included);
        a file written here and not yet in the archive is read from the spool."""
        if self._drafts is not None and entry.kind is EntryKind.FILE and entry.content_url is None:
            pending = self._drafts.pending(entry.path)
            if pending is None:  # listed as written here, uploaded since: the archive has it
                entry = await self.stat(entry.path)
                pending = self._drafts.pending(entry.path) if entry.content_url is None else None
            if pending is not None:
                if pending.untouched and pending.base_entry is not None:
                    return await self._open(pending.base_entry)
                return self._drafts.open_reader(pending)
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

    # -- writing into drafts ---------------------------------------------------------------

    def _writes(self, path: str | None = None) -> Drafts:
        """The write side; a path outside drafts is read-only whoever asks."""
        reason = read_only_reason(path) if path is not None else None
        if reason is not None:
            raise errors.ReadOnly(reason)
        if self._drafts is None:
            raise errors.AuthenticationRequired(
                "writing to a draft needs an API token (DANDI_API_KEY or the keyring entry "
                "dandi-cli uses)"
            )
        return self._drafts

    def _draft_edits(self, *paths: str) -> DraftEdits:
        for path in paths:
            self._writes(path)
        self._writes()
        assert self._edits is not None
        return self._edits

    def check_writable(self, path: str) -> None:
        """Raise ReadOnly / AuthenticationRequired / NameRefused unless a file or folder may
        be made, changed or removed at `path`."""
        self._writes(path).target(path)

    def writable(self, path: str) -> bool:
        try:
            self.check_writable(path)
        except errors.DandiFSError:
            return False
        return True

    async def create(self, path: str, *, exclusive: bool = False) -> FileWriter:
        """A new empty file at `path` (replacing a file there unless `exclusive`), listed
        at once; the last writer's close starts its upload."""
        drafts = self._writes(path)
        target = await drafts.owned_target(path)
        try:
            existing = await self.stat(target.path)
        except errors.NotFound:
            assert self._edits is not None
            await self._edits.require_folder(target.path)
        else:
            if exclusive:
                raise errors.AlreadyExists(f"{path} exists already")
            if existing.is_folder:
                raise errors.IsADirectory(f"{path} is a folder")
        writer = drafts.writer(drafts.pending_for(target, None))
        await writer.truncate(0)
        return writer

    async def open_write(self, path: str, *, truncate: bool = False) -> FileWriter:
        """An existing file opened for writing; its bytes are copied into the spool at the
        first write, unless `truncate` empties it at once."""
        drafts = self._writes(path)
        target = await drafts.owned_target(path)
        entry = await self.stat(target.path)
        if entry.is_folder:
            raise errors.IsADirectory(f"{path} is a folder")
        base = entry if entry.upload is None else None
        writer = drafts.writer(drafts.pending_for(target, base))
        if truncate:
            await writer.truncate(0)
        return writer

    async def truncate(self, path: str, size: int) -> None:
        """Change the size of a file that no handle here has open for writing."""
        writer = await self.open_write(path, truncate=size == 0)
        try:
            if size:
                await writer.truncate(size)
        finally:
            await writer.close()

    async def set_mtime(self, path: str, mtime: datetime) -> None:
        """Accepted for every draft file; kept for files written here (the archive sets
        its own times), and given to the spooled file, whose time the asset's
        `blobDateModified` is (as `dandi upload` takes it from the local file)."""
        drafts = self._writes()
        pending = drafts.pending(drafts.target(path).path)
        if pending is not None:
            drafts.set_mtime(pending, mtime)

    async def unlink(self, path: str) -> None:
        await self._draft_edits(path).unlink(path)

    async def mkdir(self, path: str) -> None:
        await self._draft_edits(path).mkdir(path)

    async def rmdir(self, path: str) -> None:
        await self._draft_edits(path).rmdir(path)

    async def rename(self, old: str, new: str, *, replace: bool = True) -> None:
        await self._draft_edits(old, new).rename(old, new, replace=replace)

    async def copy(self, source: str, target: str, *, replace: bool = True) -> None:
        """A new file or folder at `target` with the bytes of `source` (the same blobs: no
        bytes move for files the archive has)."""
        await self._draft_edits(target).copy(source, target, replace=replace)

    def upload_state(self, path: str) -> UploadState | None:
        return self._drafts.upload_state(_canonical(path)) if self._drafts is not None else None

    async def validation_errors(self, path: str) -> list[str]:
        """The archive's validation errors of the asset at `path` (none while pending)."""
        entry = await self.stat(path)
        if entry.asset_id is None or entry.dandiset_id is None or entry.version is None:
            return []
        answer = await self._archive.asset_validation(entry.dandiset_id, entry.version, entry.asset_id)
        status = answer.get("status")
        problems = [
            f"{error.get('field') or '-'}: {error.get('message')}"
            for error in answer.get("validation_errors") or []
        ]
        if status in ("Pending", "Validating") and not problems:
            return [f"validation is {status.lower()}"]
        return problems

    def uploads(self) -> list[UploadRecord]:
        """This caller's uploads that are not done: running, waiting or failed."""
        return self._drafts.uploads() if self._drafts is not None else []

    async def retry_upload(self, record_id: str) -> None:
        await self._writes().retry(record_id)

    def discard_upload(self, record_id: str) -> None:
        self._writes().discard(record_id)

    async def drain_uploads(self, timeout: float | None = None) -> bool:
        """Wait for running uploads; True when none is left running."""
        return await self._drafts.drain(timeout) if self._drafts is not None else True

    def invalidate(self, path: str) -> None:
        """Forget what is cached about the draft path `path` and the folders above it: it
        was changed through another core (a server's other caller)."""
        self._resolver.invalidate(path)

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """`callback(path)` whenever the archive's content at `path` changed through this
        core (an upload done, a rename, a delete), e.g. to drop a kernel's cached entry."""
        if self._drafts is not None:
            self._drafts.subscribe(callback)

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
                journal = Journal(config.uploads_dir / JOURNAL_FILE) if archive.authenticated else None
                try:
                    drafts, uploader = None, None
                    if journal is not None:
                        drafts, uploader = _writing(
                            archive, resolver, journal, config, background, opener
                        )
                    yield Core(archive, resolver, cache, opener, warmer, drafts, uploader)
                finally:
                    background.cancel_scope.cancel()  # prefetches and uploads end with the core
                    if journal is not None:
                        journal.close()
        finally:
            resolver.close()


def _writing(
    archive: ArchiveClient,
    resolver: Resolver,
    journal: Journal,
    config: CoreConfig,
    background: anyio.abc.TaskGroup,
    opener: ContentOpener,
) -> tuple[Drafts, Uploader]:
    """The write side of a core with a token: its spool, uploads, and what they left."""
    spool = Spool(config.uploads_dir / SPOOL_FOLDER)
    registering = anyio.Lock()
    uploader = Uploader(archive, journal, spool, _describe, registering=registering)
    drafts = Drafts(archive, resolver, spool, journal, uploader, registering, background, opener)
    drafts.resume()
    return drafts, uploader


def _describe(local_file: Path, asset_path: str, size: int, digest: str) -> dict[str, Any]:
    return asset_metadata(local_file, asset_path, size=size, digest=digest)


def _canonical(path: str) -> str:
    """The key the write side keeps a path under (no trailing slash)."""
    stripped = path.rstrip("/")
    return stripped or "/"
