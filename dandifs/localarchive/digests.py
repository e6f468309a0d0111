"""Digests the archive computes for files it stores: dandi-etag and SHA-256 in one read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dandischema.digests.dandietag import DandiETag


@dataclass(frozen=True)
class FileDigests:
    size: int
    etag: str  # dandi-etag: the S3 multipart ETag of the dandi part layout
    sha256: str
    part_size: int  # the layout's part size (the whole file when it is one part)


def file_digests(path: Path) -> FileDigests:
    size = path.stat().st_size
    etag = DandiETag(size)
    sha256 = hashlib.sha256()
    with open(path, "rb") as source:
        for part in etag.get_parts():
            block = source.read(part.size)
            etag.update(block, part)
            sha256.update(block)
    part_size = etag.get_part(1).size if etag.part_qty else 0
    return FileDigests(size, etag.as_str(), sha256.hexdigest(), part_size)
