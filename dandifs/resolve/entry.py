"""What a path resolves to: the one value both front ends render (stat, PROPFIND, HTML)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from dandifs.upload.state import UploadState


class EntryKind(str, Enum):
    FOLDER = "folder"
    FILE = "file"
    SYMLINK = "symlink"


@dataclass(frozen=True)
class Entry:
    """A resolved path.

    `immutable` is true inside published versions: front ends may cache such entries and
    their bytes for as long as they like.  `content_url` is where the bytes live (S3, or the
    archive's download URL for embargoed data, which needs the token); `etag` is the
    strongest identity known (dandi-etag, zarr checksum, or the S3 ETag of a Zarr object).
    `upload` is set on a file written in a draft that the archive does not have yet (its
    size is the bytes written so far) and on a folder made there that holds no asset yet.
    """

    path: str
    kind: EntryKind
    size: int = 0
    mtime: datetime | None = None
    ctime: datetime | None = None
    etag: str | None = None
    immutable: bool = False
    embargoed: bool = False
    dandiset_id: str | None = None
    version: str | None = None
    asset_id: str | None = None
    zarr_id: str | None = None
    content_url: str | None = None
    symlink_target: str | None = None
    content_type: str | None = None
    file_count: int | None = None
    upload: UploadState | None = None

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_folder(self) -> bool:
        return self.kind is EntryKind.FOLDER
