"""Extended attributes: what the archive knows of a file, readable with `getfattr`.

`user.dandi.asset_id`, `user.dandi.digest` and `user.dandi.s3_url` come straight from the
resolved Entry (no request); `user.dandi.metadata` is the asset's full metadata as JSON,
fetched (and cached) by the resolver only when someone asks for it.  In a draft, a file
written through dandifs has `user.dandifs.upload` (where its upload is: spooled, uploading
n/m parts, failed and why; gone once the archive has the asset), so has a folder made here
that holds no asset yet, and an asset has `user.dandi.validation` (the archive's
validation errors of it, one per line; empty when it is valid).  The mount's root has
`user.dandifs.stats`: archive requests and cache counters, as JSON, for benchmarks and
for people wondering what the mount is doing.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from dandifs.core import Entry, EntryKind, UploadState

ASSET_ID = "user.dandi.asset_id"
DIGEST = "user.dandi.digest"
S3_URL = "user.dandi.s3_url"
METADATA = "user.dandi.metadata"
VALIDATION = "user.dandi.validation"
UPLOAD = "user.dandifs.upload"
STATS = "user.dandifs.stats"


class AttributeSource(Protocol):
    """What the attributes that are not in the Entry are asked of (the core)."""

    async def asset_metadata(self, entry: Entry) -> dict[str, Any]: ...

    async def validation_errors(self, path: str) -> list[str]: ...

    def upload_state(self, path: str) -> UploadState | None: ...


def xattr_names(entry: Entry, upload: UploadState | None = None) -> list[str]:
    """The attributes `entry` has, in a fixed order (what `listxattr` answers); `upload` is
    the state of its upload when the entry no longer carries it (done)."""
    names = []
    if entry.asset_id:
        names.append(ASSET_ID)
    if entry.etag:
        names.append(DIGEST)
    if entry.content_url:
        names.append(S3_URL)
    if entry.asset_id:
        names.append(METADATA)
    if entry.asset_id and not entry.immutable:
        names.append(VALIDATION)
    if (entry.upload or upload) is not None:
        names.append(UPLOAD)
    return names


def upload_of(entry: Entry, source: AttributeSource) -> UploadState | None:
    """Where the upload of the file at `entry` is: on the entry while pending (for a folder
    made here: that it is on this machine only), else as the core last saw it."""
    if entry.upload is not None or entry.immutable or entry.kind is not EntryKind.FILE:
        return entry.upload
    return source.upload_state(entry.path)


async def xattr_value(entry: Entry, name: str, source: AttributeSource) -> bytes | None:
    """The value of attribute `name` of `entry`, or None when the entry has no such attribute."""
    upload = upload_of(entry, source)
    if name not in xattr_names(entry, upload):
        return None
    if name == ASSET_ID:
        return (entry.asset_id or "").encode()
    if name == DIGEST:
        return (entry.etag or "").encode()
    if name == S3_URL:
        return (entry.content_url or "").encode()
    if name == UPLOAD:
        assert upload is not None
        return upload.describe().encode()
    if name == VALIDATION:
        return "\n".join(await source.validation_errors(entry.path)).encode()
    document = await source.asset_metadata(entry)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
