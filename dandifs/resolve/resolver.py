"""Namespace path -> `Entry`, and folder listings, with as few archive requests as possible.

`Resolver` is what both front ends call.  It parses the path (refusing bad ones and names
like `.git` before any I/O), then asks the part that knows the answer:

* `versions.Versions`: `/dandisets/`, `/dandisets/<id>/`, version roots, `latest`,
  `releases/`, `dandiset.yaml`;
* `folders.AssetFolders`: folders and assets inside a version, each listing ONE walk of
  the archive (see there for which endpoint and why);
* `zarrs.ZarrFolders`: the inside of Zarr assets, one walk of the Zarr's file list.

Everything is cached with a lifetime: published versions are immutable (`ttl_published`,
hours), drafts and the `latest` pointer change (`ttl_draft`, seconds), "not found" is
remembered for `ttl_negative` seconds.  Identical concurrent lookups share one request.
Caches are bounded by entry count (`cache_entries`), so memory stays bounded.  With a
`persist_dir`, the archive's answers about published versions of open dandisets are also
kept on disk there (`persistent`), so a new process resolves them with no request.

Entries inside versions are cached with paths relative to their version, because one
listing serves `<v>/`, `latest/` and `releases/<v>/` alike; they are presented at the path
that was asked for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dandifs.errors import NotADirectory, NotFound
from dandifs.namespace import names
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
from dandifs.resolve.caching import CacheStats, Clock
from dandifs.resolve.entry import Entry, EntryKind
from dandifs.resolve.folders import ROOT, AssetFolders
from dandifs.resolve import persistent
from dandifs.concurrency import gather
from dandifs.resolve.lookups import Lookups
from dandifs.resolve.persistent import PublishedAnswers
from dandifs.resolve.source import MetadataSource
from dandifs.resolve.versions import (
    VersionContext,
    Versions,
    dandiset_folder,
    latest_symlink,
    version_folder,
)
from dandifs.resolve.zarrs import ZarrFolders


class Resolver:
    """Resolves namespace paths against the archive; safe to share between tasks.

    `tree_limit`: folders (or whole versions) with at most this many assets below them are
    read with one walk of the assets list (real file times, digests); bigger ones by the
    folder endpoint.  The assets list with metadata comes 200 assets a page, so the default
    keeps a first listing to at most 10 pages.  `zarr_tree_limit`: Zarrs with at most this
    many objects are walked whole.  `persist_dir`: where answers about published versions
    are kept across processes (at most `persist_bytes`); call `close()` when done.
    """

    def __init__(
        self,
        client: MetadataSource,
        *,
        ttl_published: float = 6 * 3600.0,
        ttl_draft: float = 10.0,
        ttl_negative: float = 5.0,
        tree_limit: int = 2000,
        zarr_tree_limit: int = 100_000,
        cache_entries: int = 500_000,
        clock: Clock = time.monotonic,
        persist_dir: Path | None = None,
        persist_bytes: int = persistent.DEFAULT_MAX_BYTES,
    ) -> None:
        self.client = client
        answers = None
        if persist_dir is not None:
            answers = PublishedAnswers(
                persist_dir, client.instance.api_url, max_bytes=persist_bytes
            )
        self._lookups = Lookups(
            client,
            ttl_published=ttl_published,
            ttl_draft=ttl_draft,
            ttl_negative=ttl_negative,
            clock=clock,
            answers=answers,
        )
        self._versions = Versions(self._lookups, list_entries=cache_entries // 10)
        zarrs = ZarrFolders(self._lookups, tree_limit=zarr_tree_limit, cache_entries=cache_entries)
        self._folders = AssetFolders(
            self._lookups, zarrs, tree_limit=tree_limit, cache_entries=cache_entries
        )
        self._asset_metadata = self._lookups.cache(10_000)

    @property
    def ttl_published(self) -> float:
        return self._lookups.ttl_published

    @property
    def ttl_draft(self) -> float:
        return self._lookups.ttl_draft

    @property
    def ttl_negative(self) -> float:
        return self._lookups.ttl_negative

    @property
    def stats(self) -> CacheStats:
        return self._lookups.stats

    # --- paths -------------------------------------------------------------------------------

    async def stat(self, path: str, *, follow: bool = False) -> Entry:
        """The entry at `path`.  `latest` is a SYMLINK unless `follow` is set."""
        route = parse_path(path)
        if isinstance(route, (Root, DandisetsFolder)):
            return Entry(path=route.path, kind=EntryKind.FOLDER)
        if isinstance(route, (DandisetFolder, ReleasesFolder)):
            record = await self._versions.folder_dandiset(route.dandiset_id)
            return dandiset_folder(route.path, record)
        if isinstance(route, VersionRoot):
            context = await self._versions.context(route.address)
            if route.address.is_latest and not follow:
                origin = context.origin
                return latest_symlink(
                    route.path, origin.dandiset_id, origin.version, origin.created, origin.modified
                )
            return version_folder(route.path, context)
        if isinstance(route, DandisetYaml):
            context = await self._versions.context(route.address)
            entry = await self._versions.dandiset_yaml_entry(context)
            if entry is None:
                raise NotFound(f"{route.path}: the version has no metadata")
            return entry
        self._refuse_never_remote(route)
        self._refuse_inside_rendered_file(route)
        context = await self._versions.context(route.address)
        located = await self._folders.locate(context, route.relative)
        return _present(context, located.entry)

    async def listdir(self, path: str) -> list[Entry]:
        """The children of the folder at `path`, sorted by name (`latest` is followed)."""
        route = parse_path(path)
        if isinstance(route, Root):
            return [Entry(path=f"/{names.DANDISETS}", kind=EntryKind.FOLDER)]
        if isinstance(route, DandisetsFolder):
            return await self._versions.list_dandisets()
        if isinstance(route, DandisetFolder):
            return await self._versions.list_dandiset(route.dandiset_id)
        if isinstance(route, ReleasesFolder):
            return await self._versions.list_releases(route.dandiset_id)
        if isinstance(route, DandisetYaml):
            raise NotADirectory(f"{route.path} is a file")
        if isinstance(route, VersionRoot):
            return await self._list_version_root(route)
        self._refuse_never_remote(route)
        self._refuse_inside_rendered_file(route)
        context = await self._versions.context(route.address)
        listing = await self._folders.listing(context, route.relative)
        return [_present(context, entry) for entry in listing.entries]

    async def _list_version_root(self, route: VersionRoot) -> list[Entry]:
        context = await self._versions.context(route.address)
        listing, yaml_entry = await gather(
            lambda: self._folders.listing(context, ROOT),
            lambda: self._versions.dandiset_yaml_entry(context),
        )
        # The rendered `dandiset.yaml` takes its name, as it does for `stat`.
        children = [
            _present(context, entry)
            for entry in listing.entries
            if entry.name != names.DANDISET_YAML
        ]
        if yaml_entry is not None:
            children.append(yaml_entry)
            children.sort(key=lambda entry: entry.name)
        return children

    @staticmethod
    def _refuse_inside_rendered_file(route: InVersion) -> None:
        """`dandiset.yaml/x`: a file used as a folder, as for any asset file."""
        if route.segments[0] == names.DANDISET_YAML:
            raise NotADirectory(f"{route.address.path_of(names.DANDISET_YAML)} is a file")

    @staticmethod
    def _refuse_never_remote(route: InVersion) -> None:
        if route.never_exists:
            raise NotFound(f"{route.path}: no archive object has such a name")

    # --- metadata and rendered files -------------------------------------------------------------

    async def version_metadata(self, path: str) -> dict[str, Any]:
        """The metadata of the version that `path` is in (or is the root of)."""
        route = parse_path(path)
        if not isinstance(route, (VersionRoot, DandisetYaml, InVersion)):
            raise NotFound(f"{route.path} is not inside a version")
        context = await self._versions.context(route.address)
        return dict((await self._versions.info(context)).metadata)

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]:
        """The full metadata of the asset behind `entry` (for xattrs and metadata links)."""
        if entry.asset_id is None or entry.dandiset_id is None or entry.version is None:
            raise NotFound(f"{entry.path} is not an asset")
        dandiset_id, version, asset_id = entry.dandiset_id, entry.version, entry.asset_id

        async def fetch() -> dict[str, Any]:
            kept = None
            if version != names.DRAFT:
                context = await self._versions.context(VersionAddress(dandiset_id, version))
                kept = context.keeping(persistent.asset(dandiset_id, version, asset_id))
            asset = await self._lookups.call(
                lambda: self.client.get_asset(dandiset_id, version, asset_id), kept=kept
            )
            return dict(asset.metadata or {})

        return await self._asset_metadata.get(
            (dandiset_id, version, asset_id),
            fetch,
            ttl=self._lookups.ttl(published=version != names.DRAFT),
        )

    async def metadata(self, path: str) -> dict[str, Any]:
        """The archive's metadata record for `path`: the asset's, else its version's."""
        entry = await self.stat(path, follow=True)
        if entry.asset_id is not None:
            return await self.asset_metadata(entry)
        return await self.version_metadata(path)

    async def zarr_neighbours(self, entry: Entry) -> tuple[Entry, ...]:
        """The files of the Zarr asset that file `entry` is in, in chunk-key order (empty
        outside Zarrs): what a reader walking the Zarr is likely to open next.  The entries
        are as cached (paths relative to the version); their URLs and ETags are the files'.
        """
        if entry.zarr_id is None or entry.is_folder:
            return ()
        route = parse_path(entry.path)
        if not isinstance(route, InVersion):
            return ()
        context = await self._versions.context(route.address)
        for zarr_path, key in route.zarr_splits():
            zarr = (await self._folders.locate(context, zarr_path)).entry
            if zarr.zarr_id == entry.zarr_id:
                key_folder = key.rpartition("/")[0]
                return await self._folders.zarrs.files_in_key_order(context, zarr, key_folder)
        return ()

    async def read_virtual(self, path: str) -> bytes:
        """The bytes of a file dandifs renders itself (`dandiset.yaml`)."""
        route = parse_path(path)
        if not isinstance(route, DandisetYaml):
            raise NotFound(f"{route.path} is not a file rendered by dandifs")
        context = await self._versions.context(route.address)
        data = await self._versions.dandiset_yaml(context)
        if data is None:
            raise NotFound(f"{route.path}: the version has no metadata")
        return data

    # --- bookkeeping ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the disk store (if any); the resolver must not be used afterwards."""
        if self._lookups.answers is not None:
            self._lookups.answers.close()

    def invalidate(self, path: str) -> None:
        """Forget what is cached about `path` in a draft and every folder above it.

        For writers: after an asset is added, replaced or removed at `path`, the next
        lookups ask the archive again (including a "not found" cached for a new file).
        Paths outside drafts are ignored: nothing there changes.
        """
        route = parse_path(path)
        if not isinstance(route, (InVersion, VersionRoot, DandisetYaml)):
            return
        if not route.address.is_draft:
            return
        relative = route.relative if isinstance(route, InVersion) else ROOT
        self._folders.forget((route.address.dandiset_id, names.DRAFT), relative)
        self._versions.forget_draft(route.address.dandiset_id)


def _present(context: VersionContext, entry: Entry) -> Entry:
    """A cached entry (path relative to its version) at the path it was asked by.

    Copies the fields directly: `dataclasses.replace` re-runs the constructor and was most
    of the cost of a cached `stat` (a 10,000-file `ls -l` makes 20,000 of these).
    """
    clone = object.__new__(Entry)
    clone.__dict__.update(
        entry.__dict__,
        path=context.address.path_of(entry.path),
        immutable=entry.immutable and not context.address.is_latest,
    )
    return clone
