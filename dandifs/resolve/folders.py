"""Inside a version: asset folders, and the way down into Zarr assets.

The archive offers two ways to list a folder, and which one answers best depends on its size:

* the folder endpoint (`assets/paths/?path_prefix=<folder>`): the direct children only,
  with sizes (folders: aggregate sizes and file counts) but no times;
* the assets list (`assets/?path=<folder>/&metadata=true`): every asset *below* the
  folder, with created/modified times, digest, S3 URL and media type.

So a version (or a folder) with at most `tree_limit` assets below it is read with ONE walk
of the assets list, which gives the listing of every folder beneath it at once (`ls -lR`,
`find` and PROPFIND Depth 1 anywhere below cost nothing more, and every file has its real
times); a bigger folder is read with ONE walk of the folder endpoint, its files timed by
the version (asking per file would make `ls -l` cost one request per file).  A path never
seen in a listing costs one `assets/?glob=<path>` request (an exact, case-insensitive match:
it never returns a subtree), or for a folder the walk of its own listing, which the next
`readdir` reuses.
"""

from __future__ import annotations

from dataclasses import dataclass

from dandifs.errors import NotADirectory, NotFound
from dandifs.namespace import names
from dandifs.namespace.routes import InVersion
from dandifs.resolve.entries import (
    Listing,
    entry_from_asset,
    entry_from_asset_path,
    folder_entry,
    tree_from_assets,
)
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.resolve import persistent
from dandifs.resolve.lookups import Lookups
from dandifs.resolve.versions import VersionContext
from dandifs.resolve.zarrs import Tree, ZarrFolders, split, tree_weight

ROOT = ""


@dataclass(frozen=True)
class Located:
    """An entry inside a version, and the Zarr asset containing it (if it is in one)."""

    entry: Entry
    zarr: Entry | None = None


def ancestors(relative: str) -> list[str]:
    """`a/b/c` -> `["a/b/c", "a/b", "a", ""]`: the folder itself, then each ancestor."""
    chain = []
    while relative:
        chain.append(relative)
        relative = split(relative)[0]
    chain.append(ROOT)
    return chain


def _listing_weight(listing: Listing) -> int:
    return len(listing) + 1


class AssetFolders:
    """Entries and listings inside versions; paths are relative to the version root."""

    def __init__(
        self, lookups: Lookups, zarrs: ZarrFolders, *, tree_limit: int, cache_entries: int
    ) -> None:
        self.lookups = lookups
        self.zarrs = zarrs
        self.tree_limit = tree_limit
        self._trees = lookups.cache(cache_entries, tree_weight)
        self._listings = lookups.cache(cache_entries, _listing_weight)
        self._singles = lookups.cache(50_000)

    # --- the two public questions --------------------------------------------------------------

    async def locate(self, context: VersionContext, relative: str) -> Located:
        """The entry at `relative`, entering Zarr assets where the path goes through one."""
        route = InVersion(context.address, relative)
        for zarr_path, key in route.zarr_splits():
            candidate = await self._locate_outside_zarrs(context, zarr_path)
            if candidate.zarr_id is not None:
                entry = await self.zarrs.entry(context, candidate, key)
                return Located(entry, zarr=candidate)
            if candidate.kind is not EntryKind.FOLDER:
                raise NotFound(f"{context.address.path_of(relative)}: {zarr_path} is a file")
        return Located(await self._locate_outside_zarrs(context, relative))

    async def listing(self, context: VersionContext, relative: str) -> Listing:
        """The children of the folder, Zarr, or folder inside a Zarr at `relative` ("" = root)."""
        if relative == ROOT:
            return await self._folder(context, ROOT)
        route = InVersion(context.address, relative)
        zarr_like = bool(route.zarr_splits()) or names.is_zarr_name(route.segments[-1])
        if not zarr_like and not self._small(context) and self._known(context, relative) is None:
            # In a big version, most likely a plain folder: list it directly (one walk)
            # rather than looking it up in its parent first.
            try:
                return await self._folder(context, relative)
            except NotADirectory:
                pass  # a file, or a Zarr asset whose name does not say so: look it up
        located = await self.locate(context, relative)
        entry = located.entry
        if entry.kind is not EntryKind.FOLDER:
            raise NotADirectory(f"{context.address.path_of(relative)} is a file")
        if located.zarr is not None:
            key = entry.path[len(located.zarr.path) + 1 :]
            return await self.zarrs.folder(context, located.zarr, key)
        if entry.zarr_id is not None:
            return await self.zarrs.folder(context, entry, ROOT)
        return await self._folder(context, relative)

    def forget(self, version_key: tuple[str, str], relative: str) -> None:
        """Forget `relative` and every folder above it in that version (after a write)."""
        chain = ancestors(relative)
        for folder in chain:
            self._trees.forget((*version_key, folder))
            self._listings.forget((*version_key, folder))
            self._singles.forget((*version_key, folder))
        self.zarrs.forget(version_key, chain)

    # --- what the caches already know (no I/O) -------------------------------------------------

    def _small(self, context: VersionContext) -> bool:
        return context.asset_count <= self.tree_limit

    def _cached_folder(self, context: VersionContext, relative: str) -> Listing | None:
        """The listing of `relative` if a cached listing or tree covers it.

        Raises NotFound when a cached tree covers `relative` and it is not a folder there.
        """
        listing = self._listings.peek((*context.key, relative))
        if listing is not None:
            return listing
        for base in ancestors(relative):
            tree = self._trees.peek((*context.key, base))
            if tree is not None:
                found = tree.get(relative)
                if found is None:
                    raise NotFound(f"{context.address.path_of(relative)}: no such folder")
                return found
        return None

    def _known(self, context: VersionContext, relative: str) -> Entry | None:
        """The entry at `relative` if a cached listing (or a single lookup) has it."""
        parent, name = split(relative)
        try:
            listing = self._cached_folder(context, parent)
        except NotFound:
            return None
        if listing is not None:
            return listing.child(name)
        return self._singles.peek((*context.key, relative))

    # --- the walks ---------------------------------------------------------------------------------

    async def _tree(self, context: VersionContext, base: str) -> Tree:
        """Every folder below `base` from ONE walk of the assets list (times, digests, URLs)."""
        dandiset_id, version = context.key
        client = self.lookups.client

        async def fetch() -> Tree:
            path = f"{base}/" if base else None
            assets = await self.lookups.call(
                lambda: client.list_assets(
                    dandiset_id, version, path=path, metadata=True, order="path"
                ),
                kept=context.keeping(
                    persistent.assets(
                        dandiset_id, version, path=path, metadata=True, order="path"
                    )
                ),
            )
            tree = tree_from_assets(assets, base, context.origin)
            if base and not tree[base].entries:
                raise NotFound(f"{context.address.path_of(base)}: no such folder")
            return tree

        return await self._trees.get((*context.key, base), fetch, ttl=context.ttl)

    async def _walk_folder(self, context: VersionContext, relative: str) -> Listing:
        """One folder's children from ONE walk of the folder endpoint."""
        dandiset_id, version = context.key
        client = self.lookups.client

        async def fetch() -> Listing:
            items = await self.lookups.call(
                lambda: client.list_asset_paths(dandiset_id, version, relative),
                kept=context.keeping(persistent.asset_paths(dandiset_id, version, relative)),
            )
            if relative and not items:
                # The endpoint answers an empty list when the path is a file.
                raise NotADirectory(f"{context.address.path_of(relative)} is not a folder")
            return Listing.of(entry_from_asset_path(item, context.origin) for item in items)

        return await self._listings.get((*context.key, relative), fetch, ttl=context.ttl)

    async def _folder(self, context: VersionContext, relative: str) -> Listing:
        """The children of asset folder `relative`, which is not inside a Zarr."""
        cached = self._cached_folder(context, relative)
        if cached is not None:
            return cached
        if self._small(context):
            found = (await self._tree(context, ROOT)).get(relative)
            if found is None:
                raise NotFound(f"{context.address.path_of(relative)}: no such folder")
            return found
        known = self._known(context, relative) if relative else None
        if known is not None and known.file_count is not None and known.file_count <= self.tree_limit:
            return (await self._tree(context, relative))[relative]
        return await self._walk_folder(context, relative)

    async def _locate_outside_zarrs(self, context: VersionContext, relative: str) -> Entry:
        parent, name = split(relative)
        listing = self._cached_folder(context, parent)
        if listing is None and self._small(context):
            listing = await self._folder(context, parent)
        if listing is not None:
            entry = listing.child(name)
            if entry is None:
                raise NotFound(f"{context.address.path_of(relative)}: not found")
            return entry
        return await self._singles.get(
            (*context.key, relative), lambda: self._fetch_single(context, relative), context.ttl
        )

    async def _fetch_single(self, context: VersionContext, relative: str) -> Entry:
        """An entry never seen in a listing: one exact asset query, else its folder listing."""
        dandiset_id, version = context.key
        client = self.lookups.client
        if "*" not in relative:  # `*` is the glob wildcard; asset paths never contain it
            assets = await self.lookups.call(
                lambda: client.list_assets(dandiset_id, version, glob=relative, metadata=True),
                kept=context.keeping(
                    persistent.assets(dandiset_id, version, glob=relative, metadata=True)
                ),
            )
            for asset in assets:
                if asset.path == relative:  # the glob ignores case; paths do not
                    return entry_from_asset(asset, context.origin)
        try:
            listing = await self._walk_folder(context, relative)
        except NotADirectory:
            raise NotFound(f"{context.address.path_of(relative)}: not found") from None
        return folder_entry(
            relative,
            context.origin,
            size=sum(entry.size for entry in listing.entries),
            files=sum(
                (entry.file_count or 0) if entry.is_folder and entry.zarr_id is None else 1
                for entry in listing.entries
            ),
        )
