"""Archive records -> `Entry` values and folder trees (pure; no I/O).

Entries built here carry paths *relative to their version root* (`sub-01/a.nwb`), because
one cached listing serves several namespace paths (`0.230101.0000/`, `latest/`,
`releases/0.230101.0000/`); the resolver rebases them onto the path that was asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from dandifs.archive.urls import (
    UUID_PATTERN, blob_download_url, s3_url_of, zarr_file_download_url, zarr_file_s3_url,
)
from dandifs.model import Asset, AssetPath, ZarrFile
from dandifs.resolve.entry import Entry, EntryKind

_ZARR_URL = re.compile(rf"/zarr/({UUID_PATTERN})/?$")
_ZARR_CHECKSUM = re.compile(r"[0-9a-f]{32}-([0-9]+)--([0-9]+)")


@dataclass(frozen=True)
class Origin:
    """What every entry of one version shares: where it lives and how it may be read."""

    dandiset_id: str
    version: str
    """The real version: `draft` or a version id, never `latest`."""
    api_url: str
    embargoed: bool = False
    immutable: bool = False
    created: datetime | None = None
    modified: datetime | None = None
    """The version's times: the fallback for folders and for files listed without times."""


@dataclass(frozen=True)
class Listing:
    """The children of one folder, sorted by name, with lookup by name."""

    entries: tuple[Entry, ...]
    by_name: Mapping[str, Entry] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Listing:
        ordered = tuple(sorted(entries, key=lambda entry: entry.name))
        return cls(ordered, {entry.name: entry for entry in ordered})

    def child(self, name: str) -> Entry | None:
        return self.by_name.get(name)

    def __len__(self) -> int:
        return len(self.entries)


def zarr_id_from_url(url: str) -> str | None:
    """The Zarr id in a Zarr prefix URL (`.../zarr/<uuid>/`), as `assets/paths/` gives it."""
    match = _ZARR_URL.search(url)
    return match.group(1) if match else None


def zarr_file_count(checksum: str | None) -> int | None:
    """The file count a Zarr checksum encodes (`<md5>-<count>--<size>`)."""
    match = _ZARR_CHECKSUM.fullmatch(checksum or "")
    return int(match.group(1)) if match else None


def in_version(origin: Origin, **fields: Any) -> Entry:
    """An entry of `origin`'s version: the fields every entry of that version shares, + `fields`."""
    return Entry(
        immutable=origin.immutable,
        embargoed=origin.embargoed,
        dandiset_id=origin.dandiset_id,
        version=origin.version,
        **fields,
    )


def folder_entry(
    relative: str, origin: Origin, *, size: int = 0, files: int | None = None, **fields: Any
) -> Entry:
    """A folder, timed by its version unless `fields` say otherwise."""
    fields.setdefault("mtime", origin.modified)
    fields.setdefault("ctime", origin.created)
    return in_version(
        origin, path=relative, kind=EntryKind.FOLDER, size=size, file_count=files, **fields
    )


def _blob_url(origin: Origin, asset_id: str, s3_url: str | None) -> str:
    """Where a blob's bytes are read: S3 directly, or through the API for embargoed data."""
    if origin.embargoed or not s3_url:
        return blob_download_url(origin.api_url, asset_id)
    return s3_url


def entry_from_asset(asset: Asset, origin: Origin) -> Entry:
    """A blob asset as a file, a Zarr asset as a folder; times and digest from the record."""
    s3_url = s3_url_of(asset.content_urls, origin.api_url)
    common = dict(
        path=asset.path,
        size=asset.size,
        mtime=asset.modified,
        ctime=asset.created,
        etag=asset.digest,
        asset_id=asset.asset_id,
        content_type=(asset.metadata or {}).get("encodingFormat"),
    )
    if asset.is_zarr:
        return in_version(
            origin,
            kind=EntryKind.FOLDER,
            zarr_id=asset.zarr,
            content_url=s3_url,  # the Zarr's S3 prefix: its objects' URLs are built from it
            file_count=zarr_file_count(asset.digest),
            **common,
        )
    return in_version(
        origin,
        kind=EntryKind.FILE,
        content_url=_blob_url(origin, asset.asset_id, s3_url),
        **common,
    )


def entry_from_asset_path(item: AssetPath, origin: Origin) -> Entry:
    """A folder-listing item.  The folder endpoint has no times: the version's stand in."""
    if item.asset is None:
        return folder_entry(item.path, origin, size=item.aggregate_size, files=item.aggregate_files)
    zarr_id = zarr_id_from_url(item.asset.url)
    if zarr_id is not None:
        return folder_entry(
            item.path,
            origin,
            size=item.aggregate_size,
            asset_id=item.asset.asset_id,
            zarr_id=zarr_id,
            content_url=item.asset.url,
        )
    return in_version(
        origin,
        path=item.path,
        kind=EntryKind.FILE,
        size=item.aggregate_size,
        mtime=origin.modified,
        ctime=origin.created,
        asset_id=item.asset.asset_id,
        content_url=_blob_url(origin, item.asset.asset_id, item.asset.url),
    )


class _FolderTotals:
    """Running size, file count and time range of a folder while a tree is built."""

    def __init__(self) -> None:
        self.size = 0
        self.files = 0
        self.newest: datetime | None = None
        self.oldest: datetime | None = None

    def add(self, size: int, files: int, mtime: datetime | None, ctime: datetime | None) -> None:
        self.size += size
        self.files += files
        if mtime is not None and (self.newest is None or mtime > self.newest):
            self.newest = mtime
        if ctime is not None and (self.oldest is None or ctime < self.oldest):
            self.oldest = ctime


def _parent_and_name(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _build_tree(
    leaves: Iterable[Entry], base: str, make_folder: Callable[[str], Entry]
) -> dict[str, Listing]:
    """Folder listings for `base` and every folder beneath it, from the leaves under `base`.

    Folder sizes, file counts and times are aggregated from the leaves (a folder's mtime is
    its newest leaf's), so the tree needs nothing but the leaves themselves.
    """
    children: dict[str, dict[str, Entry]] = {base: {}}
    totals: dict[str, _FolderTotals] = {base: _FolderTotals()}
    for leaf in leaves:
        parent, name = _parent_and_name(leaf.path)
        children.setdefault(parent, {})[name] = leaf
        folder = parent
        while True:
            # A Zarr asset counts as one file, as in the archive's folder aggregates.
            totals.setdefault(folder, _FolderTotals()).add(leaf.size, 1, leaf.mtime, leaf.ctime)
            if folder == base:
                break
            up, folder_name = _parent_and_name(folder)
            siblings = children.setdefault(up, {})
            if folder_name not in siblings:
                siblings[folder_name] = make_folder(folder)
            folder = up
    listings: dict[str, Listing] = {}
    for folder, entries in children.items():
        resolved = []
        for entry in entries.values():
            if entry.kind is EntryKind.FOLDER and entry.path in totals:
                t = totals[entry.path]
                entry = replace(
                    entry, size=t.size, file_count=t.files,
                    mtime=t.newest or entry.mtime, ctime=t.oldest or entry.ctime,
                )
            resolved.append(entry)
        listings[folder] = Listing.of(resolved)
    return listings


def _is_under(path: str, base: str) -> bool:
    """Case-sensitive `path` under folder `base` ("" is the root)."""
    return not base or path.startswith(base + "/")


def tree_from_assets(assets: Iterable[Asset], base: str, origin: Origin) -> dict[str, Listing]:
    """Listings of folder `base` ("" = root) and all folders below it, from an assets walk.

    The archive's `path` filter is a case-insensitive prefix match, so assets that only match
    ignoring case (`SUB-01/...` for `sub-01/`) are dropped here.
    """
    leaves = (entry_from_asset(a, origin) for a in assets if _is_under(a.path, base))
    return _build_tree(leaves, base, lambda folder: folder_entry(folder, origin))


def zarr_entry_from_file(item: ZarrFile, zarr: Entry, origin: Origin) -> Entry:
    """One object of a Zarr asset as a file; its path is relative to the version root."""
    if origin.embargoed or not zarr.content_url:
        content_url = zarr_file_download_url(origin.api_url, zarr.zarr_id or "", item.key)
    else:
        content_url = zarr_file_s3_url(zarr.content_url, item.key)
    return in_version(
        origin,
        path=f"{zarr.path}/{item.key}",
        kind=EntryKind.FILE,
        size=item.size,
        mtime=item.last_modified or zarr.mtime,
        ctime=item.last_modified or zarr.ctime,
        etag=item.etag or None,
        asset_id=zarr.asset_id,
        zarr_id=zarr.zarr_id,
        content_url=content_url,
    )


def tree_from_zarr_files(
    files: Iterable[ZarrFile], zarr: Entry, origin: Origin, prefix: str = ""
) -> dict[str, Listing]:
    """Listings of the Zarr asset `zarr` and every folder inside it, from one walk of its files.

    The zarr files endpoint has no delimiter, so the folders are derived from the keys.
    Keys are relative to the Zarr root; `prefix` ("" or `a/b`) restricts the tree to one
    folder of the Zarr when only that folder was walked.
    """
    base = f"{zarr.path}/{prefix}" if prefix else zarr.path
    leaves = (
        zarr_entry_from_file(item, zarr, origin)
        for item in files
        if not prefix or item.key.startswith(prefix + "/")
    )

    def make_folder(folder: str) -> Entry:
        # Folders inside a Zarr carry its ids, so xattrs and links can name the Zarr.
        return folder_entry(folder, origin, asset_id=zarr.asset_id, zarr_id=zarr.zarr_id)

    return _build_tree(leaves, base, make_folder)
