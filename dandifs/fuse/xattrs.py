"""Extended attributes: what the archive knows of a file, readable with `getfattr`.

`user.dandi.asset_id`, `user.dandi.digest` and `user.dandi.s3_url` come straight from the
resolved Entry (no request); `user.dandi.metadata` is the asset's full metadata as JSON,
fetched (and cached) by the resolver only when someone asks for it.  The mount's root has
`user.dandifs.stats`: archive requests and cache counters, as JSON, for benchmarks and
for people wondering what the mount is doing.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from dandifs.core import Entry

ASSET_ID = "user.dandi.asset_id"
DIGEST = "user.dandi.digest"
S3_URL = "user.dandi.s3_url"
METADATA = "user.dandi.metadata"
STATS = "user.dandifs.stats"

MetadataSource = Callable[[Entry], Awaitable[dict[str, Any]]]


def xattr_names(entry: Entry) -> list[str]:
    """The attributes `entry` has, in a fixed order (what `listxattr` answers)."""
    names = []
    if entry.asset_id:
        names.append(ASSET_ID)
    if entry.etag:
        names.append(DIGEST)
    if entry.content_url:
        names.append(S3_URL)
    if entry.asset_id:
        names.append(METADATA)
    return names


async def xattr_value(entry: Entry, name: str, metadata: MetadataSource) -> bytes | None:
    """The value of attribute `name` of `entry`, or None when the entry has no such attribute."""
    if name not in xattr_names(entry):
        return None
    if name == ASSET_ID:
        return (entry.asset_id or "").encode()
    if name == DIGEST:
        return (entry.etag or "").encode()
    if name == S3_URL:
        return (entry.content_url or "").encode()
    document = await metadata(entry)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
