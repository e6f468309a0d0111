"""The FUSE request handlers: kernel requests in, calls of the core out.

This layer is deliberately thin.  It turns inode numbers into archive paths (InodeTable),
asks the core what a path is, renders the answer for the kernel (AttrPolicy), and hands
file reads to one reader per open handle.  Every handler runs inside `fuse_errors`, so a
failure anywhere below becomes an errno and a log line, never a hung request.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Sequence

import pyfuse3

from dandifs import errors
from dandifs.fuse.attrs import PREFERRED_IO_SIZE, AttrPolicy
from dandifs.fuse.errnos import fuse_errors
from dandifs.fuse.inodes import ROOT_INODE, InodeTable
from dandifs.namespace import join_path
from dandifs.fuse.xattrs import STATS, xattr_names, xattr_value
from dandifs.core import Core, Entry, EntryKind, FileReader

log = logging.getLogger(__name__)

#: How long reads of a handle fail at once after the archive stayed unavailable.
FAIL_FAST_SECONDS = 5.0


@dataclass(frozen=True)
class _DirSnapshot:
    """One `opendir`'s listing, frozen: readdir offsets are indexes into it, so resuming at
    any offset the kernel was given neither repeats nor skips an entry, whatever changes
    remotely meanwhile."""

    path: str
    entries: tuple[Entry, ...]


@dataclass
class FileHandle:
    path: str
    entry: Entry
    reader: FileReader
    unavailable_until: float = 0.0
    """After the archive stayed unavailable (retries exhausted), reads fail at once until
    then: the kernel re-asks for every page its failed read-ahead covered, and each would
    otherwise wait through the whole retry budget again."""


class DandiOperations(pyfuse3.Operations):
    """pyfuse3 handlers over the core."""

    def __init__(self, core: Core, policy: AttrPolicy) -> None:
        super().__init__()
        self.core = core
        self.policy = policy
        self.ttl_negative = core.ttl_negative
        self.inodes = InodeTable()
        self._dirs: dict[int, _DirSnapshot] = {}
        self._told: dict[int, tuple[Entry, float]] = {}  # inode -> entry, true until
        self._files: dict[int, FileHandle] = {}
        self._handles = itertools.count(1)
        self._reads = 0
        self._read_bytes = 0

    # -- names and attributes ------------------------------------------------------------

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("lookup", name):
            parent = self.inodes.path(parent_inode)
            path = join_path(parent, os.fsdecode(name))
            try:
                entry = await self.core.stat(path)
            except errors.NotFound:
                return self._negative_entry()
            inode = self.inodes.acquire(path)
            self._remember(inode, entry)
            return self.policy.attributes(entry, inode)

    def _negative_entry(self) -> pyfuse3.EntryAttributes:
        """An inode-0 reply: the kernel caches "no such name" for `ttl_negative` seconds."""
        if self.ttl_negative <= 0:
            raise pyfuse3.FUSEError(errno.ENOENT)
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = 0
        attrs.entry_timeout = self.ttl_negative
        return attrs

    async def getattr(
        self, inode: int, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("getattr", inode):
            path = self.inodes.path(inode)
            try:
                entry = await self.core.stat(path)
            except errors.NotFound:
                # A file renamed or deleted remotely while open keeps its attributes until
                # the last close, as on a local filesystem: the kernel asks for them before
                # reads once they time out, and an answer of ENOENT fails the read.
                entry = self._open_entry(path)
                if entry is None:
                    raise
            self._remember(inode, entry)
            return self.policy.attributes(entry, inode)

    def _open_entry(self, path: str) -> Entry | None:
        """The entry a handle open on `path` was opened with, if any."""
        return next((handle.entry for handle in self._files.values() if handle.path == path), None)

    def _remember(self, inode: int, entry: Entry) -> None:
        """What the kernel was just told about `inode`, true for as long as it may keep it."""
        self._told[inode] = (entry, time.monotonic() + self.policy.ttl(entry))

    async def _entry(self, inode: int, path: str) -> Entry:
        """The entry of `inode`: as the kernel was last told, while that is still true for
        the kernel (an `open` right after the lookup costs no second one), else asked anew."""
        told = self._told.get(inode)
        if told is not None and time.monotonic() < told[1]:
            return told[0]
        entry = await self.core.stat(path)
        self._remember(inode, entry)
        return entry

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            self.inodes.forget(inode, count)
            if not self.inodes.lookups(inode):
                self._told.pop(inode, None)

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        with fuse_errors("readlink", inode):
            entry = await self.core.stat(self.inodes.path(inode))
            if entry.kind is not EntryKind.SYMLINK or not entry.symlink_target:
                raise pyfuse3.FUSEError(errno.EINVAL)
            return os.fsencode(entry.symlink_target)

    # -- folders -------------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        with fuse_errors("opendir", inode):
            path = self.inodes.path(inode)
            entries = await self.core.listdir(path)
            handle = next(self._handles)
            self._dirs[handle] = _DirSnapshot(path, tuple(entries))
            return handle

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        with fuse_errors("readdir", fh):
            snapshot = self._dirs.get(fh)
            if snapshot is None:
                raise pyfuse3.FUSEError(errno.EBADF)
            for index in range(start_id, len(snapshot.entries)):
                entry = snapshot.entries[index]
                path = join_path(snapshot.path, entry.name)
                inode = self.inodes.acquire(path)
                attrs = self.policy.attributes(entry, inode)
                if not pyfuse3.readdir_reply(token, os.fsencode(entry.name), attrs, index + 1):
                    self.inodes.forget(inode, 1)  # not sent: the kernel never counted it
                    break
                self._remember(inode, entry)

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # -- files ---------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        with fuse_errors("open", inode):
            path = self.inodes.path(inode)
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
                raise _read_only("open for writing", path)
            entry = await self._entry(inode, path)
            if entry.kind is EntryKind.FOLDER:
                raise errors.IsADirectory(f"{path} is a folder")
            reader = await self.core.open(entry)
            handle = next(self._handles)
            self._files[handle] = FileHandle(path, entry, reader)
            # Immutable bytes may stay in the page cache across opens; draft bytes may not.
            return pyfuse3.FileInfo(fh=handle, keep_cache=entry.immutable, direct_io=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._files.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if time.monotonic() < handle.unavailable_until:
            raise pyfuse3.FUSEError(errno.EIO)
        with fuse_errors("read", f"{handle.path} [{off}, +{size})"):
            end = min(off + size, handle.entry.size)
            if off >= end:
                return b""
            self._reads += 1
            self._read_bytes += end - off
            try:
                return await handle.reader.read(off, end - off)
            except errors.Unavailable:
                handle.unavailable_until = time.monotonic() + FAIL_FAST_SECONDS
                raise

    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is not None:
            with fuse_errors("release", handle.path):
                await handle.reader.aclose()

    async def flush(self, fh: int) -> None:
        return None

    # -- extended attributes -------------------------------------------------------------

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        with fuse_errors("getxattr", inode):
            if inode == ROOT_INODE and os.fsdecode(name) == STATS:
                handles = {"inodes": len(self.inodes), "open_files": len(self._files),
                           "open_folders": len(self._dirs), "reads": self._reads,
                           "read_bytes": self._read_bytes}
                return json.dumps({**self.core.statistics(), "fuse": handles}, sort_keys=True).encode()
            entry = await self.core.stat(self.inodes.path(inode))
            value = await xattr_value(entry, os.fsdecode(name), self.core.asset_metadata)
            if value is None:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            return value

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        with fuse_errors("listxattr", inode):
            entry = await self.core.stat(self.inodes.path(inode))
            names = xattr_names(entry)
            if inode == ROOT_INODE:
                names.append(STATS)
            return [os.fsencode(name) for name in names]

    # -- the filesystem as a whole -------------------------------------------------------

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        """No size and no free space, like other pseudo filesystems: the archive's size is
        not a disk's, and a full-looking disk would set off monitoring."""
        data = pyfuse3.StatvfsData()
        data.f_bsize = PREFERRED_IO_SIZE
        data.f_frsize = PREFERRED_IO_SIZE
        data.f_blocks = data.f_bfree = data.f_bavail = 0
        data.f_files = len(self.inodes)
        data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        return data

    # -- writes: refused until drafts become writable -------------------------------------

    async def setattr(self, inode, attr, fields, fh, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("setattr", inode):
            raise _read_only("change attributes of", self._path_or_inode(inode))

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        with fuse_errors("write", fh):
            raise _read_only("write to", self._files[fh].path if fh in self._files else fh)

    async def create(self, parent_inode, name, mode, flags, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("create", name):
            raise _read_only("create", self._child_or_name(parent_inode, name))

    async def mkdir(self, parent_inode, name, mode, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("mkdir", name):
            raise _read_only("create a folder", self._child_or_name(parent_inode, name))

    async def mknod(self, parent_inode, name, mode, rdev, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("mknod", name):
            raise _read_only("create", self._child_or_name(parent_inode, name))

    async def symlink(self, parent_inode, name, target, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("symlink", name):
            raise _read_only("create a symlink", self._child_or_name(parent_inode, name))

    async def link(self, inode, new_parent_inode, new_name, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("link", new_name):
            raise _read_only("create a link", self._child_or_name(new_parent_inode, new_name))

    async def unlink(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("unlink", name):
            raise _read_only("delete", self._child_or_name(parent_inode, name))

    async def rmdir(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("rmdir", name):
            raise _read_only("delete the folder", self._child_or_name(parent_inode, name))

    async def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("rename", name_old):
            raise _read_only("rename", self._child_or_name(parent_old, name_old))

    async def setxattr(self, inode, name, value, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("setxattr", inode):
            raise _read_only("set an attribute on", self._path_or_inode(inode))

    async def removexattr(self, inode, name, ctx):  # type: ignore[no-untyped-def]
        with fuse_errors("removexattr", inode):
            raise _read_only("remove an attribute of", self._path_or_inode(inode))

    def _path_or_inode(self, inode: int) -> str:
        try:
            return self.inodes.path(inode)
        except errors.Stale:
            return f"inode {inode}"

    def _child_or_name(self, parent_inode: int, name: bytes) -> str:
        return join_path(self._path_or_inode(parent_inode), os.fsdecode(name))


def _read_only(action: str, target: object) -> errors.ReadOnly:
    return errors.ReadOnly(
        f"cannot {action} {target}: this mount is read-only (writing to drafts is not "
        "supported yet; published versions never change)"
    )
