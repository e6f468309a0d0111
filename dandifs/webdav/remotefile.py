"""A file-like view of a core reader, for WsgiDAV's GET handler (stream-through mode).

WsgiDAV seeks to the start of the requested range and reads `block_size` bytes at a time;
each read is one call into the core, where the block cache and its read-ahead live.
"""

from __future__ import annotations

import io

from dandifs import errors
from dandifs.core import FileReader
from dandifs.webdav.errors import to_dav_error
from dandifs.core.portal import CorePortal


class RemoteFile(io.RawIOBase):
    """A seekable read-only file over a core reader, for WsgiDAV's GET handler."""

    def __init__(self, portal: CorePortal, reader: FileReader, size: int) -> None:
        super().__init__()
        self._portal = portal
        self._reader = reader
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._position
        try:
            data = self._portal.call(self._reader.read, self._position, size)
        except errors.DandiFSError as exc:
            raise to_dav_error(exc) from None
        self._position += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._portal.call(self._reader.aclose)
        super().close()
