"""Inside Zarr assets: folders derived from the archive's Zarr file list.

The zarr files endpoint lists keys under a prefix with no delimiter, so one walk of a
whole Zarr yields every folder in it at once; the tree is cached per (version, Zarr).  A
Zarr whose checksum is known is cached under that checksum for as long as a published
version's answers, in a draft too: a Zarr's files change only with its checksum (the
archive computes it when it ingests the change), and the next listing of the draft names
the new checksum, the key of a new tree.  Re-listing a big Zarr every few seconds of a
draft's lifetime is most of the time of reading one (tens of pages, and seconds of CPU to
build the tree).  A Zarr with no checksum yet lives with its version's lifetime.  A Zarr bigger than `tree_limit` objects is walked one folder
prefix at a time instead (each walk still returns every key below that folder: the
endpoint has no delimiter), and only that folder's listing is kept.
"""

from __future__ import annotations

import re

import anyio

from dandifs.errors import NotFound
from dandifs.resolve.entries import Listing, tree_from_zarr_files
from dandifs.resolve.entry import Entry
from dandifs.resolve import persistent
from dandifs.resolve.lookups import Lookups
from dandifs.resolve.versions import VersionContext

Tree = dict[str, Listing]

_NUMBER = re.compile(r"(\d+)")


def key_order(path: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a Zarr key in the order readers walk chunks: numbers compare as numbers,
    so `0/2/0` comes before `0/10/0` (and `0.2` before `0.10`), names as text."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in _NUMBER.split(path)
        if part
    )


def tree_weight(tree: Tree) -> int:
    """Trees are weighed by their entries, so the caches bound memory, not item counts."""
    return sum(len(listing) + 1 for listing in tree.values())


def split(relative: str) -> tuple[str, str]:
    """`a/b/c` -> (`a/b`, `c`); `c` -> (``, `c`)."""
    parent, _, name = relative.rpartition("/")
    return parent, name


class ZarrFolders:
    def __init__(self, lookups: Lookups, *, tree_limit: int, cache_entries: int) -> None:
        self.lookups = lookups
        self.tree_limit = tree_limit
        self._trees = lookups.cache(cache_entries, tree_weight)
        self._orders = lookups.cache(cache_entries, len)

    def _lifetime(self, context: VersionContext, zarr: Entry) -> float:
        """How long what is cached of `zarr`'s files (keyed by its checksum) lives."""
        return self.lookups.ttl_published if zarr.etag else context.ttl

    async def _tree(self, context: VersionContext, zarr: Entry, key_folder: str) -> Tree:
        whole = zarr.file_count is None or zarr.file_count <= self.tree_limit
        prefix = "" if whole else key_folder
        zarr_id = zarr.zarr_id or ""
        client = self.lookups.client

        async def fetch() -> Tree:
            key_prefix = f"{prefix}/" if prefix else ""
            files = await self.lookups.call(
                lambda: client.list_zarr_files(zarr_id, prefix=key_prefix),
                kept=context.keeping(
                    persistent.zarr_files(*context.key, zarr_id, key_prefix)
                ),
            )
            # a worker thread builds it (seconds for a big Zarr), so other lookups go on
            tree = await anyio.to_thread.run_sync(
                tree_from_zarr_files, files, zarr, context.origin, prefix
            )
            if whole:
                return tree
            # A huge Zarr: keep only the folder asked for, so memory follows its width.
            folder = f"{zarr.path}/{prefix}" if prefix else zarr.path
            return {folder: tree[folder]} if tree[folder].entries else {}

        return await self._trees.get(
            (*context.key, zarr.path, prefix, zarr.etag), fetch, ttl=self._lifetime(context, zarr)
        )

    async def folder(self, context: VersionContext, zarr: Entry, key_folder: str) -> Listing:
        """The children of folder `key_folder` ("" = the Zarr's root) of the Zarr asset `zarr`."""
        tree = await self._tree(context, zarr, key_folder)
        folder = f"{zarr.path}/{key_folder}" if key_folder else zarr.path
        listing = tree.get(folder)
        if listing is None:
            raise NotFound(f"{context.address.path_of(folder)}: no such folder in the Zarr")
        return listing

    async def files_in_key_order(
        self, context: VersionContext, zarr: Entry, key_folder: str
    ) -> tuple[Entry, ...]:
        """The files of the Zarr asset `zarr` in the order chunk readers walk them: all of
        them for a Zarr walked whole, else those of folder `key_folder` only."""
        whole = zarr.file_count is None or zarr.file_count <= self.tree_limit
        scope = "" if whole else key_folder

        async def order() -> tuple[Entry, ...]:
            tree = await self._tree(context, zarr, key_folder)
            files = [
                entry
                for listing in tree.values()
                for entry in listing.entries
                if not entry.is_folder and (whole or entry.path.startswith(f"{zarr.path}/{scope}"))
            ]
            return await anyio.to_thread.run_sync(
                lambda: tuple(sorted(files, key=lambda entry: key_order(entry.path)))
            )

        return await self._orders.get(
            (*context.key, zarr.path, scope, zarr.etag), order, ttl=self._lifetime(context, zarr)
        )

    async def entry(self, context: VersionContext, zarr: Entry, key: str) -> Entry:
        """The object or folder at `key` inside the Zarr asset `zarr`."""
        key_folder, name = split(key)
        entry = (await self.folder(context, zarr, key_folder)).child(name)
        if entry is None:
            raise NotFound(f"{context.address.path_of(zarr.path + '/' + key)}: not in the Zarr")
        return entry

    def forget(self, version_key: tuple[str, str], asset_paths: list[str]) -> None:
        """Forget the trees of Zarrs at any of `asset_paths` in that version (after a write:
        the archive may not have a new checksum yet), and their key orders."""
        paths = set(asset_paths)
        for cache in (self._trees, self._orders):
            cache.forget_where(lambda key: key[:2] == version_key and key[2] in paths)
