"""The spool: where a file written into a draft lives until the archive has it.

Each written file is one folder `<spool dir>/<upload id>/` holding the file under its own
name, so tools that go by the extension (dandi-cli's NWB metadata extraction) see a `.nwb`.
Any write pattern is accepted (h5py seeks, rewrites and extends while writing); bytes that
arrive in order are hashed as they come (`StreamedETag`).  `commit` makes the bytes durable
before the journal says they are there.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import uuid
from pathlib import Path

from dandifs.errors import NoSpace
from dandifs.upload.digest import StreamedETag, dandi_etag


SPOOL_FOLDER = "spool"
"""The spool's name in an uploads folder (beside the journal)."""


class SpoolFile:
    """One spooled file, open for reading and writing; not thread-safe (one owner)."""

    def __init__(self, path: Path, *, fresh: bool) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if fresh else 0)
        self._fd = os.open(path, flags, 0o600)
        self._etag = StreamedETag() if fresh else None

    @property
    def hashed_as_written(self) -> bool:
        """Whether the digest needs no pass over the file (every write so far appended)."""
        return self._etag is not None and self._etag.in_order

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def write(self, offset: int, data: bytes) -> int:
        try:
            written = os.pwrite(self._fd, data, offset)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(
                    f"no room in the spool at {self.path.parent.parent} for written bytes: "
                    "free some space there; nothing written so far is lost"
                ) from exc
            raise
        if self._etag is not None:
            self._etag.wrote(offset, data[:written])
        return written

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        if self._etag is not None:
            self._etag.truncated(size)

    def commit(self) -> None:
        """Make what was written durable: the data, and the file's name in its folder."""
        os.fsync(self._fd)
        folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def digest(self) -> str:
        """The dandi-etag of the bytes written (one pass over the file unless streamed)."""
        return dandi_etag(self.path, self._etag)

    def close(self) -> None:
        os.close(self._fd)


class Spool:
    """The folder of spooled files; it survives restarts until each upload is done."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def create(self, name: str) -> SpoolFile:
        """A new empty spooled file called `name` (the asset's file name)."""
        folder = self.root / str(uuid.uuid4())
        folder.mkdir(mode=0o700)
        return SpoolFile(folder / name, fresh=True)

    def reopen(self, path: Path) -> SpoolFile:
        """A spooled file of an earlier process, as it was left."""
        return SpoolFile(path, fresh=False)

    def discard(self, path: Path) -> None:
        """Remove a spooled file once the archive has it (or a person gave it up)."""
        if path.parent.parent == self.root:
            shutil.rmtree(path.parent, ignore_errors=True)
            _lock_path(path.parent).unlink(missing_ok=True)


class UploadLock:
    """Held by the one process that sends an upload: an `flock` on `<its folder>.lock`,
    beside the folder (inside, its name could be the asset's).  Any process may resume a journalled upload (a new mount, `dandifs uploads
    retry`); the lock keeps two from sending it at once, and the kernel drops it when its
    holder dies, so an upload killed half-way is free for the next process at once."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def take(cls, spooled: Path) -> UploadLock | None:
        """The lock of the upload whose spooled file is `spooled`; None if another process
        holds it (or the upload's folder is gone)."""
        if not spooled.exists():
            return None
        fd = os.open(_lock_path(spooled.parent), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")
