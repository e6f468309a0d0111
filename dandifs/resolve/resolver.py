"""Namespace path -> `Entry`, and folder listings, with as few archive requests as possible.

Where the answers come from (one request means one paginated walk):

* `/dandisets/`: the dandiset list.  `/dandisets/<id>/`: the dandiset record (+ the
  version list when listed).  `draft` and `latest` are resolved from the dandiset record,
  a version id from its `info` (which also renders `dandiset.yaml`).
* Folders inside a version.  The folder endpoint (`assets/paths/`) lists one folder's
  children with sizes but without times; the assets list (`assets/?path=<folder>/`)
  gives every asset *below* a folder with its times, digest and URLs.  So:
    - a version (or a folder) with at most `tree_limit` assets below it is read with ONE
      walk of the assets list, which yields the listing of every folder beneath it at
      once: `ls -lR`, `find` and PROPFIND Depth 1 on any of them cost nothing more, and
      every file has its real created/modified times;
    - a bigger folder is read with ONE walk of the folder endpoint: its direct children
      only, files timed by their version (the folder endpoint has no times; asking per
      child would make `ls -l` cost one request per file).
* A file never seen in a listing: one `assets/?glob=<path>` request (an exact,
  case-insensitive match, so it never returns a whole subtree); a folder: the walk of
  its own listing, which the next `readdir` reuses.
* Zarr interiors: one walk of the Zarr's file list gives every folder in it (the endpoint
  has no delimiter); it is cached per Zarr like any other listing.

Everything is cached with a lifetime: published versions are immutable (`ttl_published`,
hours), drafts and the `latest` pointer change (`ttl_draft`, seconds), "not found" is
remembered for `ttl_negative` seconds.  Identical concurrent lookups share one request.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from dandifs import errors
from dandifs.errors import NotADirectory, NotFound
from dandifs.model import Dandiset, VersionInfo, VersionSummary
from dandifs.namespace import listing as rules
from dandifs.namespace import names
from dandifs.namespace.dandiset_yaml import render_dandiset_yaml_bytes
from dandifs.namespace.routes import (
    DandisetFolder,
    DandisetsFolder,
    DandisetYaml,
    InVersion,
    ReleasesFolder,
    Root,
    VersionAddress,
    VersionRoot,
    parse_path,
)
from dandifs.resolve.caching import CacheStats, Clock, MetadataCache
from dandifs.resolve.entries import (
    Listing,
    Origin,
    entry_from_asset,
    entry_from_asset_path,
    folder_entry,
    tree_from_assets,
    tree_from_zarr_files,
)
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.resolve.source import MetadataSource

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")

Tree = dict[str, Listing]
"""Folder (relative to the version root) -> its listing, for every folder below some base."""

ROOT_KEY = ""


@dataclass(frozen=True)
class VersionContext:
    """A version as a path names it, resolved to the real version and its caching policy."""

    address: VersionAddress
    origin: Origin
    asset_count: int
    size: int
    ttl: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.origin.dandiset_id, self.origin.version)


@dataclass(frozen=True)
class Located:
    """An entry inside a version, and the Zarr asset containing it (if it is in one)."""

    entry: Entry
    zarr: Entry | None = None


def _listing_weight(listing: Listing) -> int:
    return len(listing) + 1


def _tree_weight(tree: Tree) -> int:
    """Trees are weighed by their entries, so the caches bound memory, not item counts."""
    return sum(len(listing) + 1 for listing in tree.values())


def _sequence_weight(items: tuple[Any, ...]) -> int:
    return len(items) + 1


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group that is not a cancellation."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    cancelled = anyio.get_cancelled_exc_class()
    return next((e for e in leaves if not isinstance(e, cancelled)), leaves[0])


def _split(relative: str) -> tuple[str, str]:
    parent, _, name = relative.rpartition("/")
    return parent, name


def _ancestors(relative: str) -> list[str]:
    """`a/b/c` -> `["a/b/c", "a/b", "a", ""]`: the folder itself, then each ancestor."""
    chain = []
    while relative:
        chain.append(relative)
        relative = _split(relative)[0]
    chain.append(ROOT_KEY)
    return chain


class Resolver:
    """Resolves namespace paths against the archive; safe to share between tasks."""

    def __init__(
        self,
        client: MetadataSource,
        *,
        ttl_published: float = 6 * 3600.0,
        ttl_draft: float = 10.0,
        ttl_negative: float = 5.0,
        tree_limit: int = 5000,
        zarr_tree_limit: int = 100_000,
        cache_entries: int = 500_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl_published = ttl_published
        self.ttl_draft = ttl_draft
        self.ttl_negative = ttl_negative
        self.tree_limit = tree_limit
        self.zarr_tree_limit = zarr_tree_limit
        self.stats = CacheStats()

        def cache(maxsize: int, weigh: Callable[[Any], int] | None = None) -> MetadataCache:
            return MetadataCache(
                maxsize, negative_ttl=ttl_negative, stats=self.stats, clock=clock, weigh=weigh
            )

        # Sizes: listings and trees are weighed in entries, the rest in items.
        self._dandiset_list: MetadataCache[bool, tuple[Dandiset, ...]] = cache(
            cache_entries // 10, _sequence_weight
        )
        self._dandisets: MetadataCache[str, Dandiset] = cache(10_000)
        self._versions: MetadataCache[str, tuple[VersionSummary, ...]] = cache(
            cache_entries // 10, _sequence_weight
        )
        self._infos: MetadataCache[tuple[str, str], VersionInfo] = cache(1_000)
        self._trees: MetadataCache[tuple[str, str, str], Tree] = cache(cache_entries, _tree_weight)
        self._listings: MetadataCache[tuple[str, str, str], Listing] = cache(
            cache_entries, _listing_weight
        )
        self._singles: MetadataCache[tuple[str, str, str], Entry] = cache(50_000)
        self._zarr_trees: MetadataCache[tuple[str, str, str, str], Tree] = cache(
            cache_entries, _tree_weight
        )
        self._asset_metadata: MetadataCache[tuple[str, str, str], dict] = cache(10_000)

    # --- public API ----------------------------------------------------------------------

    async def stat(self, path: str, *, follow: bool = False) -> Entry:
        """The entry at `path`.  `latest` is a SYMLINK unless `follow` is set."""
        route = parse_path(path)
        if isinstance(route, Root):
            return Entry(path="/", kind=EntryKind.FOLDER)
        if isinstance(route, DandisetsFolder):
            return Entry(path=route.path, kind=EntryKind.FOLDER)
        if isinstance(route, (DandisetFolder, ReleasesFolder)):
            dandiset = await self._dandiset(route.dandiset_id)
            return self._dandiset_folder(route.path, dandiset)
        if isinstance(route, VersionRoot):
            context = await self._context(route.address)
            if route.address.is_latest and not follow:
                return self._latest_symlink(context)
            return self._version_folder(route.address.root_path, context)
        if isinstance(route, DandisetYaml):
            context = await self._context(route.address)
            return await self._dandiset_yaml_entry(context)
        assert isinstance(route, InVersion)
        self._refuse_never_remote(route)
        context = await self._context(route.address)
        located = await self._locate(context, route.relative)
        return self._present(context, located.entry)

    async def listdir(self, path: str) -> list[Entry]:
        """The children of the folder at `path`, sorted by name (`latest` is followed)."""
        route = parse_path(path)
        if isinstance(route, Root):
            return [Entry(path=f"/{names.DANDISETS}", kind=EntryKind.FOLDER)]
        if isinstance(route, DandisetsFolder):
            return await self._list_dandisets()
        if isinstance(route, DandisetFolder):
            return await self._list_dandiset(route.dandiset_id)
        if isinstance(route, ReleasesFolder):
            return await self._list_releases(route.dandiset_id)
        if isinstance(route, DandisetYaml):
            raise NotADirectory(f"{route.path} is a file")
        if isinstance(route, VersionRoot):
            context = await self._context(route.address)
            folder, yaml_entry = await self._gather(
                lambda: self._folder(context, ROOT_KEY),
                lambda: self._dandiset_yaml_entry_or_none(context),
            )
            # The rendered `dandiset.yaml` takes the name, as it does for `stat`.
            children = [
                self._present(context, entry)
                for entry in folder.entries
                if entry.name != names.DANDISET_YAML
            ]
            if yaml_entry is not None:
                children.append(yaml_entry)
                children.sort(key=lambda entry: entry.name)
            return children
        assert isinstance(route, InVersion)
        self._refuse_never_remote(route)
        context = await self._context(route.address)
        folder = await self._listing_at(context, route.relative)
        return [self._present(context, entry) for entry in folder.entries]

    async def version_metadata(self, path: str) -> dict[str, Any]:
        """The metadata of the version that `path` is in (or is the root of)."""
        route = parse_path(path)
        if not isinstance(route, (VersionRoot, DandisetYaml, InVersion)):
            raise NotFound(f"{route.path} is not inside a version")
        context = await self._context(route.address)
        info = await self._version_info(context)
        return dict(info.metadata)

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]:
        """The full metadata of the asset behind `entry` (for xattrs and metadata links)."""
        if entry.asset_id is None or entry.dandiset_id is None or entry.version is None:
            raise NotFound(f"{entry.path} is not an asset")
        dandiset_id, version, asset_id = entry.dandiset_id, entry.version, entry.asset_id

        async def fetch() -> dict[str, Any]:
            asset = await self._call(lambda: self.client.get_asset(dandiset_id, version, asset_id))
            return dict(asset.metadata or {})

        return await self._asset_metadata.get(
            (dandiset_id, version, asset_id),
            fetch,
            ttl=self.ttl_draft if version == names.DRAFT else self.ttl_published,
        )

    async def metadata(self, path: str) -> dict[str, Any]:
        """The archive's metadata record for `path`: the asset's, else its version's."""
        entry = await self.stat(path, follow=True)
        if entry.asset_id is not None:
            return await self.asset_metadata(entry)
        return await self.version_metadata(path)

    async def read_virtual(self, path: str) -> bytes:
        """The bytes of a file dandifs renders itself (`dandiset.yaml`)."""
        route = parse_path(path)
        if not isinstance(route, DandisetYaml):
            raise NotFound(f"{route.path} is not a file rendered by dandifs")
        context = await self._context(route.address)
        data = await self._dandiset_yaml_bytes(context)
        if data is None:
            raise NotFound(f"{route.path}: the version has no metadata")
        return data

    def statistics(self) -> dict[str, int]:
        """Cache counters plus the archive client's HTTP counters (when it keeps them)."""
        counters = self.stats.snapshot()
        client_stats = getattr(self.client, "stats", None)
        if client_stats is not None and hasattr(client_stats, "snapshot"):
            counters.update({f"http_{k}": v for k, v in client_stats.snapshot().items()})
        return counters

    def invalidate(self, path: str) -> None:
        """Forget what is cached about `path` in a draft and every folder above it.

        For writers: after an asset is added, replaced or removed at `path`, the next
        lookups ask the archive again (including a "not found" cached for a new file).
        """
        route = parse_path(path)
        if not isinstance(route, (InVersion, VersionRoot, DandisetYaml)):
            return
        address = route.address
        if not address.is_draft:
            return
        key = (address.dandiset_id, names.DRAFT)
        relative = route.relative if isinstance(route, InVersion) else ROOT_KEY
        chain = _ancestors(relative)
        for folder in chain:
            self._trees.forget((*key, folder))
            self._listings.forget((*key, folder))
            self._singles.forget((*key, folder))
        self._zarr_trees.forget_where(lambda k: k[:2] == key and k[2] in chain)
        self._infos.forget(key)
        self._dandisets.forget(address.dandiset_id)

    # --- above versions ---------------------------------------------------------------------

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        """One call to the archive client, counted; embargo refusals read as "not found".

        Without a token an embargoed dandiset is invisible (the archive answers 401, or 403
        to a non-owner), exactly as if it did not exist.  A rejected token is not hidden:
        the person must fix it.
        """
        self.stats.archive_calls += 1
        try:
            return await work()
        except errors.InvalidToken:
            raise
        except errors.PermissionDenied as exc:
            raise NotFound(f"not found (or not visible without an owner's API token): {exc}") from exc

    async def _gather(self, *works: Callable[[], Awaitable[Any]]) -> list[Any]:
        """Run independent lookups concurrently; results in order.

        A failure is raised as itself (the first one), not wrapped in an exception group:
        callers and front ends map single domain errors.
        """
        results: list[Any] = [None] * len(works)

        async def run(index: int) -> None:
            results[index] = await works[index]()

        try:
            async with anyio.create_task_group() as group:
                for index in range(len(works)):
                    group.start_soon(run, index)
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        return results

    async def _dandiset(self, dandiset_id: str) -> Dandiset:
        return await self._dandisets.get(
            dandiset_id,
            lambda: self._call(lambda: self.client.get_dandiset(dandiset_id)),
            ttl=self.ttl_draft,
        )

    async def _dandiset_versions(self, dandiset_id: str) -> tuple[VersionSummary, ...]:
        async def fetch() -> tuple[VersionSummary, ...]:
            return tuple(await self._call(lambda: self.client.list_versions(dandiset_id)))

        return await self._versions.get(dandiset_id, fetch, ttl=self.ttl_draft)

    async def _list_dandisets(self) -> list[Entry]:
        embargoed = self.client.authenticated

        async def fetch() -> tuple[Dandiset, ...]:
            found = await self._call(lambda: self.client.list_dandisets(embargoed=embargoed))
            for dandiset in found:
                self._dandisets.put(dandiset.identifier, dandiset, self.ttl_draft)
            return tuple(found)

        dandisets = await self._dandiset_list.get(embargoed, fetch, ttl=self.ttl_draft)
        entries = [
            self._dandiset_folder(f"/{names.DANDISETS}/{d.identifier}", d) for d in dandisets
        ]
        return sorted(entries, key=lambda entry: entry.name)

    def _dandiset_folder(self, path: str, dandiset: Dandiset) -> Entry:
        return Entry(
            path=path,
            kind=EntryKind.FOLDER,
            mtime=dandiset.modified,
            ctime=dandiset.created,
            embargoed=dandiset.embargoed,
            dandiset_id=dandiset.identifier,
        )

    async def _list_dandiset(self, dandiset_id: str) -> list[Entry]:
        dandiset, versions = await self._gather(
            lambda: self._dandiset(dandiset_id), lambda: self._dandiset_versions(dandiset_id)
        )
        published = {v.version: v for v in versions if not v.is_draft}
        base = f"/{names.DANDISETS}/{dandiset_id}"
        entries = []
        for name in rules.dandiset_children(published):
            if name == names.DRAFT:
                summary = dandiset.draft_version
                entries.append(self._version_entry(f"{base}/{name}", dandiset, summary, False))
            elif name == names.LATEST:
                latest = dandiset.most_recent_published_version or max(
                    published.values(), key=lambda v: v.created
                )
                entries.append(
                    Entry(
                        path=f"{base}/{names.LATEST}",
                        kind=EntryKind.SYMLINK,
                        size=len(rules.latest_target(latest.version)),
                        mtime=latest.modified,
                        ctime=latest.created,
                        dandiset_id=dandiset_id,
                        version=latest.version,
                        symlink_target=rules.latest_target(latest.version),
                    )
                )
            else:
                entries.append(
                    self._version_entry(f"{base}/{name}", dandiset, published[name], True)
                )
        return entries

    async def _list_releases(self, dandiset_id: str) -> list[Entry]:
        dandiset, versions = await self._gather(
            lambda: self._dandiset(dandiset_id), lambda: self._dandiset_versions(dandiset_id)
        )
        base = f"/{names.DANDISETS}/{dandiset_id}/{names.RELEASES}"
        return sorted(
            (
                self._version_entry(f"{base}/{v.version}", dandiset, v, True)
                for v in versions
                if not v.is_draft
            ),
            key=lambda entry: entry.name,
        )

    def _version_entry(
        self, path: str, dandiset: Dandiset, summary: VersionSummary | None, published: bool
    ) -> Entry:
        return Entry(
            path=path,
            kind=EntryKind.FOLDER,
            size=summary.size if summary else 0,
            mtime=summary.modified if summary else dandiset.modified,
            ctime=summary.created if summary else dandiset.created,
            immutable=published,
            embargoed=dandiset.embargoed,
            dandiset_id=dandiset.identifier,
            version=summary.version if summary else names.DRAFT,
            file_count=summary.asset_count if summary else 0,
        )

    # --- versions ---------------------------------------------------------------------------

    async def _context(self, address: VersionAddress) -> VersionContext:
        """The real version behind `address` (`latest` -> its version id) and how to cache it."""
        if address.is_draft or address.is_latest:
            dandiset = await self._dandiset(address.dandiset_id)
            if address.is_draft:
                summary = dandiset.draft_version
                if summary is None:
                    raise NotFound(f"dandiset {address.dandiset_id} has no draft version")
            else:
                summary = dandiset.most_recent_published_version
                if summary is None:
                    raise NotFound(
                        f"dandiset {address.dandiset_id} has no published version, so no 'latest'"
                    )
            return self._make_context(address, summary, embargoed=dandiset.embargoed)
        info = await self._infos.get(
            (address.dandiset_id, address.version),
            lambda: self._call(
                lambda: self.client.get_version(address.dandiset_id, address.version)
            ),
            ttl=self.ttl_published,
        )
        # Embargoed dandisets cannot be published, so a published version is open.
        return self._make_context(address, info, embargoed=False)

    def _make_context(
        self, address: VersionAddress, summary: VersionSummary, *, embargoed: bool
    ) -> VersionContext:
        published = not summary.is_draft
        origin = Origin(
            dandiset_id=address.dandiset_id,
            version=summary.version,
            api_url=self.client.instance.api_url,
            embargoed=embargoed,
            immutable=published,
            created=summary.created,
            modified=summary.modified,
        )
        return VersionContext(
            address=address,
            origin=origin,
            asset_count=summary.asset_count,
            size=summary.size,
            ttl=self.ttl_published if published else self.ttl_draft,
        )

    def _latest_symlink(self, context: VersionContext) -> Entry:
        target = rules.latest_target(context.origin.version)
        return Entry(
            path=context.address.root_path,
            kind=EntryKind.SYMLINK,
            size=len(target),
            mtime=context.origin.modified,
            ctime=context.origin.created,
            dandiset_id=context.origin.dandiset_id,
            version=context.origin.version,
            symlink_target=target,
        )

    def _version_folder(self, path: str, context: VersionContext) -> Entry:
        return Entry(
            path=path,
            kind=EntryKind.FOLDER,
            size=context.size,
            mtime=context.origin.modified,
            ctime=context.origin.created,
            immutable=self._immutable(context),
            embargoed=context.origin.embargoed,
            dandiset_id=context.origin.dandiset_id,
            version=context.origin.version,
            file_count=context.asset_count,
        )

    async def _version_info(self, context: VersionContext) -> VersionInfo:
        dandiset_id, version = context.key
        return await self._infos.get(
            context.key,
            lambda: self._call(lambda: self.client.get_version(dandiset_id, version)),
            ttl=context.ttl,
        )

    async def _dandiset_yaml_bytes(self, context: VersionContext) -> bytes | None:
        info = await self._version_info(context)
        return render_dandiset_yaml_bytes(info.metadata) if info.metadata else None

    async def _dandiset_yaml_entry_or_none(self, context: VersionContext) -> Entry | None:
        data = await self._dandiset_yaml_bytes(context)
        if data is None:
            return None
        return Entry(
            path=context.address.path_of(names.DANDISET_YAML),
            kind=EntryKind.FILE,
            size=len(data),
            mtime=context.origin.modified,
            ctime=context.origin.created,
            immutable=self._immutable(context),
            embargoed=context.origin.embargoed,
            dandiset_id=context.origin.dandiset_id,
            version=context.origin.version,
            content_type="text/yaml; charset=utf-8",
        )

    async def _dandiset_yaml_entry(self, context: VersionContext) -> Entry:
        entry = await self._dandiset_yaml_entry_or_none(context)
        if entry is None:
            raise NotFound(f"{context.address.path_of(names.DANDISET_YAML)}: no metadata")
        return entry

    def _immutable(self, context: VersionContext) -> bool:
        # `latest/...` may point elsewhere tomorrow, even though each version is immutable.
        return context.origin.immutable and not context.address.is_latest

    def _present(self, context: VersionContext, entry: Entry) -> Entry:
        """A cached entry (path relative to its version) at the path it was asked by.

        Copies the fields directly: `dataclasses.replace` re-runs the constructor and was
        most of the cost of a cached `stat` (a 10,000-file `ls -l` makes 20,000 of these).
        """
        clone = object.__new__(Entry)
        clone.__dict__.update(
            entry.__dict__,
            path=context.address.path_of(entry.path),
            immutable=entry.immutable and not context.address.is_latest,
        )
        return clone

    @staticmethod
    def _refuse_never_remote(route: InVersion) -> None:
        if route.never_exists:
            raise NotFound(f"{route.path}: no archive object has such a name")

    # --- inside versions ---------------------------------------------------------------------

    def _small(self, context: VersionContext) -> bool:
        return context.asset_count <= self.tree_limit

    def _cached_folder(self, context: VersionContext, relative: str) -> Listing | None:
        """The listing of `relative` if some cached tree or listing covers it (no I/O).

        Raises NotFound when a cached tree covers `relative` and it is not a folder there.
        """
        key = context.key
        listing = self._listings.peek((*key, relative))
        if listing is not None:
            return listing
        for base in _ancestors(relative):
            tree = self._trees.peek((*key, base))
            if tree is not None:
                found = tree.get(relative)
                if found is None:
                    raise NotFound(f"{context.address.path_of(relative)}: no such folder")
                return found
        return None

    def _cached_entry(self, context: VersionContext, relative: str) -> Entry | None:
        parent, name = _split(relative)
        try:
            listing = self._cached_folder(context, parent)
        except NotFound:
            return None
        if listing is not None:
            return listing.child(name)
        return self._singles.peek((*context.key, relative))

    async def _tree(self, context: VersionContext, base: str) -> Tree:
        """Every folder below `base` from ONE walk of the assets list (with times and digests)."""
        dandiset_id, version = context.key

        async def fetch() -> Tree:
            assets = await self._call(
                lambda: self.client.list_assets(
                    dandiset_id,
                    version,
                    path=f"{base}/" if base else None,
                    metadata=True,
                    order="path",
                )
            )
            tree = tree_from_assets(assets, base, context.origin)
            if base and not tree[base].entries:
                raise NotFound(f"{context.address.path_of(base)}: no such folder")
            return tree

        return await self._trees.get((*context.key, base), fetch, ttl=context.ttl)

    async def _walk_folder(self, context: VersionContext, relative: str) -> Listing:
        """One folder's children from ONE walk of the folder endpoint."""
        dandiset_id, version = context.key

        async def fetch() -> Listing:
            items = await self._call(
                lambda: self.client.list_asset_paths(dandiset_id, version, relative)
            )
            if relative and not items:
                # The endpoint answers an empty list when the path is a file.
                raise NotADirectory(f"{context.address.path_of(relative)} is not a folder")
            return Listing.of(entry_from_asset_path(item, context.origin) for item in items)

        return await self._listings.get((*context.key, relative), fetch, ttl=context.ttl)

    async def _folder(self, context: VersionContext, relative: str) -> Listing:
        """The children of asset folder `relative` ("" = the version root), no Zarrs involved."""
        cached = self._cached_folder(context, relative)
        if cached is not None:
            return cached
        if self._small(context):
            tree = await self._tree(context, ROOT_KEY)
            found = tree.get(relative)
            if found is None:
                raise NotFound(f"{context.address.path_of(relative)}: no such folder")
            return found
        known = self._cached_entry(context, relative) if relative else None
        if known is not None and known.file_count is not None and known.file_count <= self.tree_limit:
            return (await self._tree(context, relative))[relative]
        return await self._walk_folder(context, relative)

    async def _locate(self, context: VersionContext, relative: str) -> Located:
        """The entry at `relative`, entering Zarr assets where the path goes through one."""
        route = InVersion(context.address, relative)
        for zarr_path, key in route.zarr_splits():
            candidate = await self._locate_plain(context, zarr_path)
            if candidate.zarr_id is not None:
                return Located(await self._zarr_entry(context, candidate, key), zarr=candidate)
            if candidate.kind is not EntryKind.FOLDER:
                raise NotFound(f"{context.address.path_of(relative)}: {zarr_path} is a file")
        return Located(await self._locate_plain(context, relative))

    async def _locate_plain(self, context: VersionContext, relative: str) -> Entry:
        """The entry at `relative`, which is not inside a Zarr asset."""
        parent, name = _split(relative)
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
        if "*" not in relative:
            assets = await self._call(
                lambda: self.client.list_assets(dandiset_id, version, glob=relative, metadata=True)
            )
            for asset in assets:
                if asset.path == relative:
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
                entry.file_count if entry.is_folder and entry.zarr_id is None else 1
                for entry in listing.entries
            ),
        )

    async def _listing_at(self, context: VersionContext, relative: str) -> Listing:
        """The children of the folder or Zarr (or folder inside a Zarr) at `relative`."""
        route = InVersion(context.address, relative)
        zarr_like = bool(route.zarr_splits()) or names.is_zarr_name(route.segments[-1])
        if (
            not zarr_like
            and not self._small(context)
            and self._cached_entry(context, relative) is None
        ):
            # In a big version, most likely a plain folder: list it directly (one walk)
            # rather than looking it up in its parent first.
            try:
                return await self._folder(context, relative)
            except NotADirectory:
                pass  # a file, or a Zarr asset whose name does not say so: look it up
        located = await self._locate(context, relative)
        entry = located.entry
        if entry.kind is not EntryKind.FOLDER:
            raise NotADirectory(f"{context.address.path_of(relative)} is a file")
        if located.zarr is not None:
            key = entry.path[len(located.zarr.path) + 1 :]
            return await self._zarr_folder(context, located.zarr, key)
        if entry.zarr_id is not None:
            return await self._zarr_folder(context, entry, "")
        return await self._folder(context, relative)

    # --- inside Zarr assets ------------------------------------------------------------------

    async def _zarr_tree(self, context: VersionContext, zarr: Entry, key_folder: str) -> Tree:
        """Every folder of a Zarr from ONE walk of its file list (per folder if it is huge)."""
        whole = zarr.file_count is None or zarr.file_count <= self.zarr_tree_limit
        prefix = "" if whole else key_folder
        cache_key = (*context.key, zarr.path, prefix)
        zarr_id = zarr.zarr_id or ""

        async def fetch() -> Tree:
            files = await self._call(
                lambda: self.client.list_zarr_files(zarr_id, prefix=f"{prefix}/" if prefix else "")
            )
            return tree_from_zarr_files(files, zarr, context.origin, prefix)

        return await self._zarr_trees.get(cache_key, fetch, ttl=context.ttl)

    async def _zarr_folder(self, context: VersionContext, zarr: Entry, key_folder: str) -> Listing:
        tree = await self._zarr_tree(context, zarr, key_folder)
        folder = f"{zarr.path}/{key_folder}" if key_folder else zarr.path
        listing = tree.get(folder)
        if listing is None:
            raise NotFound(f"{context.address.path_of(folder)}: no such folder in the Zarr")
        return listing

    async def _zarr_entry(self, context: VersionContext, zarr: Entry, key: str) -> Entry:
        key_folder, name = _split(key)
        listing = await self._zarr_folder(context, zarr, key_folder)
        entry = listing.child(name)
        if entry is None:
            raise NotFound(f"{context.address.path_of(zarr.path + '/' + key)}: not in the Zarr")
        return entry

