"""The dandi-etag of a written file, as the archive and `dandi upload` compute it.

dandischema's `DandiETag` needs the file's size before its first byte, to lay out the
parts; a file being written has no size until it is closed.  So bytes that arrive in order
from offset 0 (cp, rsync, a WebDAV PUT) are hashed as they are written, part by part on
dandischema's own part size, and the etag is formed at close if dandischema's layout for
the final size is that one (every file below 640 GiB).  Any other write pattern (h5py
seeking back to rewrite its superblock) leaves one pass of `DandiETag.from_file` over the
spooled file at close.
"""

from __future__ import annotations

import hashlib
import os

from dandischema.digests.dandietag import DandiETag, PartGenerator

PART_SIZE = PartGenerator.DEFAULT_PART_SIZE


class StreamedETag:
    """Part MD5s of bytes written in order; `value` is None once the order was broken."""

    def __init__(self) -> None:
        self._digests: list[bytes] = []
        self._part = hashlib.md5()
        self._in_part = 0
        self.size = 0
        self.in_order = True

    def wrote(self, offset: int, data: bytes | memoryview) -> None:
        """Bytes written at `offset`; only an append at the end keeps the stream."""
        if not self.in_order:
            return
        if offset != self.size:
            self.in_order = False
            return
        view = memoryview(data)
        while view:
            take = min(len(view), PART_SIZE - self._in_part)
            self._part.update(view[:take])
            self._in_part += take
            self.size += take
            view = view[take:]
            if self._in_part == PART_SIZE:
                self._digests.append(self._part.digest())
                self._part, self._in_part = hashlib.md5(), 0

    def truncated(self, size: int) -> None:
        if size != self.size:
            self.in_order = False

    def value(self) -> str | None:
        """The dandi-etag of what was written, or None when it must be read again."""
        if not self.in_order or self.size == 0:
            return None
        layout = PartGenerator.for_file_size(self.size)
        if len(layout) > 1 and layout.initial_part_size != PART_SIZE:
            return None  # a file this large has larger parts: hashed again at close
        digests = self._digests + ([self._part.digest()] if self._in_part else [])
        assert len(digests) == len(layout)
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def dandi_etag(path: str | os.PathLike[str], streamed: StreamedETag | None = None) -> str:
    """The dandi-etag of the file at `path`: from `streamed` when it followed every write,
    else read from the file with dandischema's own implementation."""
    value = streamed.value() if streamed is not None else None
    return value if value is not None else DandiETag.from_file(path).as_str()
