"""WsgiDAV resources made from resolved entries.

A resource is a thin view of one `Entry`: every property PROPFIND asks for is already in
the entry, so rendering a listing of N children costs one `listdir`, never N lookups.
The write hooks WsgiDAV calls (PUT's begin/end_write, MKCOL, DELETE, MOVE, COPY, a
PROPPATCH of the modification time) are handed to the provider, which calls the core;
WsgiDAV has checked locks, If headers and Overwrite before any of them runs.
"""

from __future__ import annotations

import functools
import io
import math
import mimetypes
from datetime import datetime
from typing import TYPE_CHECKING

from wsgidav import util
from wsgidav.dav_provider import DAVCollection, DAVNonCollection

from dandifs.core import Entry
from dandifs.namespace import join_path
from dandifs.webdav.writes import BodySink

if TYPE_CHECKING:
    from dandifs.webdav.provider import DandiProvider

DEFAULT_CONTENT_TYPE = "application/octet-stream"
CONTENT_TYPES = {".nwb": "application/x-nwb", ".yaml": "text/yaml; charset=utf-8"}


def content_type_of(entry: Entry) -> str:
    if entry.content_type and "/" in entry.content_type:
        return entry.content_type
    return content_type_for_suffix(entry.name.rsplit(".", 1)[-1].lower() if "." in entry.name else "")


@functools.lru_cache(maxsize=1024)
def content_type_for_suffix(suffix: str) -> str:
    """By name suffix only (cached: a 10,000-file listing has a handful of suffixes)."""
    dotted = f".{suffix}"
    return CONTENT_TYPES.get(dotted) or mimetypes.guess_type(f"x{dotted}")[0] or DEFAULT_CONTENT_TYPE


def plain_etag(etag: str | None) -> str | None:
    """An ETag without quotes or weakness marker: the form WsgiDAV expects from providers."""
    if not etag:
        return None
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"') or None


def whole_seconds(moment: datetime | None) -> float | None:
    return float(math.floor(moment.timestamp())) if moment else None


class EntryProperties:
    """The live properties every resource derives from its entry."""

    entry: Entry

    def get_creation_date(self) -> float | None:
        moment = self.entry.ctime or self.entry.mtime
        return whole_seconds(moment)

    def get_last_modified(self) -> float | None:
        # Whole seconds, as HTTP dates have: else If-Modified-Since with the very
        # Last-Modified a client was given would compare as "modified since".
        moment = self.entry.mtime or self.entry.ctime
        return whole_seconds(moment)

    def get_etag(self) -> str | None:
        return plain_etag(self.entry.etag)

    def support_etag(self) -> bool:
        return self.get_etag() is not None

    def support_modified(self) -> bool:
        return self.get_last_modified() is not None

    def get_display_name(self) -> str:
        return self.entry.name or "/"

    def get_property_value(self, name: str):
        # RFC 4918 §15.6: the value of getetag is the quoted entity tag.
        if name == "{DAV:}getetag" and self.get_etag() is not None:
            return f'"{self.get_etag()}"'
        return super().get_property_value(name)  # type: ignore[misc]

    # -- changes (draft paths only: the guard and the core refuse the rest) -------------

    def check_unlocked(self, depth: str) -> None:
        """423 unless the request holds every lock on this resource (and, with depth
        infinity, below it): WsgiDAV checks only the parent before `handle_delete`."""
        manager = self.provider.lock_manager  # type: ignore[attr-defined]
        if manager is None:
            return
        if "wsgidav.conditions.if" not in self.environ:  # type: ignore[attr-defined]
            util.parse_if_header_dict(self.environ)  # type: ignore[attr-defined]
        manager.check_write_permission(
            url=self.get_ref_url(),  # type: ignore[attr-defined]
            depth=depth,
            token_list=self.environ["wsgidav.ifLockTokenList"],  # type: ignore[attr-defined]
            principal=self.environ["wsgidav.user_name"],  # type: ignore[attr-defined]
        )

    def handle_delete(self) -> bool:
        self.check_unlocked("infinity")
        self.dandi.remove(self.path, self.environ)
        self.remove_all_properties(recursive=True)  # type: ignore[attr-defined]
        self.remove_all_locks(recursive=True)  # type: ignore[attr-defined]
        return True

    def handle_move(self, dest_path: str) -> bool:
        self.dandi.rename(self.path, dest_path, self.environ)
        manager = self.provider.prop_manager  # type: ignore[attr-defined]
        if manager is not None:
            manager.move_properties(
                self.get_ref_url(), self.dandi.ref_url(dest_path, self.is_collection),  # type: ignore[attr-defined]
                with_children=self.is_collection,  # type: ignore[attr-defined]
            )
        self.remove_all_locks(recursive=True)  # type: ignore[attr-defined]
        return True

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        self.dandi.copy(self.path, dest_path, self.environ, recursive=depth_infinity)
        manager = self.provider.prop_manager  # type: ignore[attr-defined]
        if manager is not None:
            manager.copy_properties(
                self.get_ref_url(), self.dandi.ref_url(dest_path, self.is_collection)  # type: ignore[attr-defined]
            )
        return True

    def set_last_modified(self, dest_path: str, time_stamp, *, dry_run: bool) -> bool:
        if not dry_run:
            self.dandi.set_mtime(self.path, time_stamp, self.environ)
        return True


class FolderResource(EntryProperties, DAVCollection):
    """A folder: the root, a dandiset, a version, an asset folder, a Zarr or a Zarr prefix."""

    def __init__(self, path: str, environ: dict, entry: Entry, provider: DandiProvider) -> None:
        super().__init__(path, environ)
        self.entry = entry
        self.dandi = provider

    def children(self) -> list[Entry]:
        return self.dandi.listdir(self.path, self.environ)

    def get_member_names(self) -> list[str]:
        return [child.name for child in self.children()]

    def get_member_list(self) -> list[FolderResource | FileResource]:
        return [self.dandi.resource_for(join_path(self.path, c.name), c, self.environ) for c in self.children()]

    def get_member(self, name: str) -> FolderResource | FileResource | None:
        for child in self.children():
            if child.name == name:
                return self.dandi.resource_for(join_path(self.path, name), child, self.environ)
        return None

    def get_used_bytes(self) -> int | None:
        return None

    def create_collection(self, name: str) -> None:
        self.dandi.mkdir(join_path(self.path, name), self.environ)

    def create_empty_resource(self, name: str) -> FileResource:
        """PUT's new file (made by its body), or a LOCK's on an unmapped URL: an empty
        file, which stays on this machine until bytes are written to it."""
        return self.dandi.new_file(join_path(self.path, name), self.environ)


class FileResource(EntryProperties, DAVNonCollection):
    """A blob asset, an object inside a Zarr, or `dandiset.yaml`."""

    def __init__(self, path: str, environ: dict, entry: Entry, provider: DandiProvider) -> None:
        super().__init__(path, environ)
        self.entry = entry
        self.dandi = provider

    def get_content_length(self) -> int:
        return self.entry.size

    def get_content_type(self) -> str:
        return content_type_of(self.entry)

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> io.RawIOBase:
        """The bytes, read through the core's block reader (stream-through mode only)."""
        return self.dandi.open(self.entry, self.environ)

    def begin_write(self, *, content_type: str | None = None) -> BodySink:
        self.sink = self.dandi.begin_put(self.path, self.environ)
        return self.sink

    def end_write(self, *, with_errors: bool) -> None:
        sink = getattr(self, "sink", None)
        if sink is not None:
            self.sink = None
            self.entry = self.dandi.end_put(self.path, sink, self.environ, with_errors=with_errors)
