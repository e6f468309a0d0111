"""Changes of names in a draft: delete, rename and copy files and folders, make and remove
folders, as the archive's asset API does them.

A rename is the archive's replace of the asset with the same blob (or Zarr) and a new
`path` (what `dandi move` does); a copy is a new asset on the same blob, so no bytes move.
A folder is renamed or copied asset by asset.  Pending files (written here, not yet in the
archive) move with their uploads: the journal's path changes, and the upload registers
the asset at the new path.  Each change holds the lock the uploads register under, so a
rename never races an upload of the same path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dandifs import errors
from dandifs.archive.client import ArchiveClient
from dandifs.core.drafts import COPY_CHUNK, Drafts, FileWriter, Target
from dandifs.model import Asset
from dandifs.namespace import names
from dandifs.namespace.routes import join_path, parent_path
from dandifs.resolve import Entry
from dandifs.upload.pipeline import Uploader

log = logging.getLogger(__name__)

Stat = Callable[[str], Awaitable[Entry]]
Listdir = Callable[[str], Awaitable[list[Entry]]]
Create = Callable[[str], Awaitable[FileWriter]]
Open = Callable[[Entry], Awaitable[Any]]


class DraftEdits:
    def __init__(
        self,
        archive: ArchiveClient,
        drafts: Drafts,
        uploader: Uploader,
        *,
        stat: Stat,
        listdir: Listdir,
        create: Create,
        open_reader: Open,
    ) -> None:
        self._archive = archive
        self._drafts = drafts
        self._uploader = uploader
        self._stat = stat
        self._listdir = listdir
        self._create = create
        self._open_reader = open_reader

    async def _exists(self, path: str) -> Entry | None:
        try:
            return await self._stat(path)
        except errors.NotFound:
            return None

    async def _remote(self, target: Target) -> Asset | None:
        """The archive's asset at exactly that path, asked afresh."""
        try:
            return await self._archive.get_asset_by_path(target.dandiset_id, names.DRAFT, target.asset_path)
        except errors.NotFound:
            return None

    async def require_folder(self, path: str) -> None:
        """The folder a new name goes in must exist."""
        parent = await self._stat(parent_path(path))
        if not parent.is_folder:
            raise errors.NotADirectory(f"{parent.path} is a file, not a folder")

    # -- files ----------------------------------------------------------------------------

    async def unlink(self, path: str) -> None:
        target = await self._drafts.owned_target(path)
        entry = await self._stat(target.path)
        if entry.is_folder:
            raise errors.IsADirectory(f"{path} is a folder: remove it with rmdir")
        if target.zarr is not None:  # a file of a Zarr: deleted with the Zarr's next batch
            self._drafts.remove_local(target.path)
            self._drafts.delete_in_zarr(target)
            self._drafts.changed(target.path)
            return
        async with self._drafts.registering:
            self._drafts.remove_local(target.path)
            remote = await self._remote(target)
            if remote is not None:
                await self._archive.delete_asset(target.dandiset_id, remote.asset_id)
        log.info("deleted %s", target.path)
        self._drafts.changed(target.path)

    # -- folders --------------------------------------------------------------------------

    async def mkdir(self, path: str) -> None:
        target = await self._drafts.owned_target(path)
        if await self._exists(target.path) is not None:
            raise errors.AlreadyExists(f"{path} exists already")
        await self.require_folder(target.path)
        self._drafts.add_folder(target.path)

    async def rmdir(self, path: str) -> None:
        target = await self._drafts.owned_target(path)
        entry = await self._stat(target.path)
        if not entry.is_folder:
            raise errors.NotADirectory(f"{path} is a file: remove it with unlink")
        await self._drafts.flush_zarr(target)  # deletions of its files go first
        if await self._listdir(target.path):
            raise errors.NotEmpty(f"{path} is not empty")
        self._drafts.remove_local(target.path)

    # -- rename and copy ------------------------------------------------------------------

    async def _clear_destination(self, source: Entry, target: Target, replace: bool) -> None:
        existing = await self._exists(target.path)
        if existing is None:
            await self.require_folder(target.path)
            return
        if not replace:
            raise errors.AlreadyExists(f"{target.path} exists already")
        if existing.is_folder and not source.is_folder:
            raise errors.IsADirectory(f"{target.path} is a folder; a file cannot replace it")
        if source.is_folder and not existing.is_folder:
            raise errors.NotADirectory(f"{target.path} is a file; a folder cannot replace it")
        if existing.is_folder:
            await self.rmdir(target.path)
        else:
            await self.unlink(target.path)

    async def rename(self, old: str, new: str, *, replace: bool = True) -> None:
        source_target = await self._drafts.owned_target(old)
        target = await self._drafts.owned_target(new)
        if source_target.dandiset_id != target.dandiset_id:
            raise errors.CannotMove(
                f"{old} -> {new}: a rename stays in one dandiset (copy, then delete)"
            )
        if target.path == source_target.path:
            return
        if target.path.startswith(source_target.path + "/"):
            raise errors.NameRefused(f"{new}: a folder cannot move into itself")
        source = await self._stat(source_target.path)
        if source_target.zarr is not None or target.zarr is not None:
            await self._rename_with_zarr(source, source_target, target, replace)
            return
        await self._drafts.flush_zarr(source_target)
        source = await self._stat(source_target.path)
        await self._clear_destination(source, target, replace)
        async with self._drafts.registering:
            if source.is_folder and source.zarr_id is None:
                prefix = source_target.asset_path + "/"
                for asset in await self._archive.list_assets(
                    target.dandiset_id, names.DRAFT, path=prefix, metadata=True
                ):
                    if asset.path.startswith(prefix):
                        moved = target.asset_path + asset.path[len(source_target.asset_path):]
                        await self._move(target.dandiset_id, asset, moved)
            else:
                remote = await self._remote(source_target)
                if remote is not None:
                    if self._drafts.pending(source_target.path) is None:
                        await self._move(target.dandiset_id, remote, target.asset_path)
                    else:  # newer bytes are on their way: they alone move
                        await self._archive.delete_asset(target.dandiset_id, remote.asset_id)
            self._drafts.move_local(source_target.path, target)
        await self._drafts.upload_renamed(target.path)
        log.info("renamed %s to %s", source_target.path, target.path)
        self._drafts.changed(source_target.path)
        self._drafts.changed(target.path)

    async def _rename_with_zarr(
        self, source: Entry, old: Target, new: Target, replace: bool
    ) -> None:
        """A rename into, out of or inside a Zarr.  The archive renames no Zarr file, so a
        file written here moves before it is sent (zarr-python's `.partial` then rename),
        and any other moves as a copy and a delete."""
        if source.is_folder:
            raise errors.CannotMove(
                f"{old.path} -> {new.path}: the archive cannot move folders into, out of or "
                "inside a Zarr; copy them, then delete the originals"
            )
        await self._clear_destination(source, new, replace)
        if self._drafts.move_in_zarr(old, new):
            await self._drafts.upload_renamed(new.path)
        else:
            await self._drafts.flush_zarr(old)
            await self._copy(await self._stat(old.path), new)
            await self.unlink(old.path)
        self._drafts.changed(old.path)
        self._drafts.changed(new.path)

    async def _move(self, dandiset_id: str, asset: Asset, new_path: str) -> None:
        """The archive's rename: the same blob or Zarr under a new path."""
        if asset.metadata is None:
            asset = await self._archive.get_asset(dandiset_id, names.DRAFT, asset.asset_id)
        metadata = {**(asset.metadata or {}), "path": new_path}
        await self._archive.replace_asset(
            dandiset_id, asset.asset_id, metadata, blob_id=asset.blob, zarr_id=asset.zarr
        )

    async def copy(self, source_path: str, target_path: str, *, replace: bool = True) -> None:
        target = await self._drafts.owned_target(target_path)
        source = await self._stat(source_path)
        if source.path.rstrip("/") == target.path:
            raise errors.AlreadyExists(f"{target.path}: a copy onto itself")
        await self._clear_destination(source, target, replace)
        await self._copy(source, target)
        self._drafts.changed(target.path)

    async def _copy(self, source: Entry, target: Target) -> None:
        if source.is_folder:
            self._drafts.add_folder(target.path)
            for child in await self._listdir(source.path):
                await self._copy(child, await self._drafts.owned_target(join_path(target.path, child.name)))
            return
        if source.upload is None and source.asset_id is not None:
            asset = await self._archive.get_asset(
                source.dandiset_id or "", source.version or names.DRAFT, source.asset_id
            )
            metadata = {**(asset.metadata or {}), "path": target.asset_path}
            if asset.blob is not None:
                await self._uploader.place_asset(target.dandiset_id, target.asset_path, metadata, asset.blob)
            else:
                await self._archive.create_asset(target.dandiset_id, metadata, zarr_id=asset.zarr)
            return
        writer = await self._create(target.path)
        reader = await self._open_reader(source)
        try:
            offset = 0
            while True:
                data = await reader.read(offset, COPY_CHUNK)
                if not data:
                    break
                await writer.write(offset, data)
                offset += len(data)
        finally:
            await reader.aclose()
            await writer.close()
