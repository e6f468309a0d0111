"""The FUSE request handlers: kernel requests in, calls of the core out.

This layer is deliberately thin.  It turns inode numbers into archive paths (InodeTable),
asks the core what a path is, renders the answer for the kernel (AttrPolicy), and hands
file reads to one reader per open handle and writes to one writer per handle that writes.
Every handler runs inside `fuse_errors`, so a failure anywhere below becomes an errno and a
log line, never a hung request.

Writes are the core's (what is writable, spooling, uploads); here they are only mapped onto
the kernel's requests: the last release of a written file starts its upload, fsync waits for
it and reports its result, and the kernel is told to forget what it cached of a path when
the core says the archive changed there.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pyfuse3
import trio

from dandifs import errors
from dandifs.core import Core, Entry, EntryKind, FileReader, FileWriter, Phase
from dandifs.fuse.attrs import PREFERRED_IO_SIZE, AttrPolicy
from dandifs.fuse.errnos import fuse_errors, refusal
from dandifs.fuse.inodes import ROOT_INODE, InodeTable
from dandifs.fuse.kernel import KernelCaches
from dandifs.fuse.xattrs import STATS, upload_of, xattr_names, xattr_value
from dandifs.namespace import join_path

log = logging.getLogger(__name__)

#: How long reads of a handle fail at once after the archive stayed unavailable.
FAIL_FAST_SECONDS = 5.0

#: How often an fsync of a handle that did not write looks at the upload it waits for.
UPLOAD_POLL_SECONDS = 0.05

#: Phases in which an upload is under way (an fsync waits them out).
_RUNNING = {Phase.SPOOLED, Phase.HASHING, Phase.UPLOADING, Phase.VALIDATING, Phase.REGISTERING}


@dataclass(frozen=True)
class _DirSnapshot:
    """One `opendir`'s listing, frozen: readdir offsets are indexes into it, so resuming at
    any offset the kernel was given neither repeats nor skips an entry, whatever changes
    remotely meanwhile."""

    path: str
    entries: tuple[Entry, ...]


@dataclass
class FileHandle:
    """One open file: a reader of the bytes it had when opened, or a writer of new ones.

    A handle that writes has its writer from open until the close(2) that ends it (FLUSH):
    then what it wrote is committed and its upload starts, so close(2) reports a full disk
    and `getfattr` right after `cp` shows the upload.  Should the handle be used again
    after that (a descriptor dup'd or inherited before the close), it gets a new writer.
    After a write failed (a full spool disk), what the handle wrote is given up at close,
    not uploaded: the archive never gets a file cut short.
    """

    path: str
    entry: Entry
    reader: FileReader | None = None
    writes: bool = False
    writer: FileWriter | None = None
    write_failed: str | None = None
    unavailable_until: float = 0.0
    """After the archive stayed unavailable (retries exhausted), reads fail at once until
    then: the kernel re-asks for every page its failed read-ahead covered, and each would
    otherwise wait through the whole retry budget again."""


class DandiOperations(pyfuse3.Operations):
    """pyfuse3 handlers over the core."""

    def __init__(
        self, core: Core, policy: AttrPolicy, *, read_only: bool = False,
        spool_dir: Path | None = None,
    ) -> None:
        """`spool_dir`: where written files wait for the archive (its disk's free space is
        the free space `statfs` reports when drafts are writable)."""
        super().__init__()
        self.core = core
        self.policy = policy
        self.read_only = read_only
        self.spool_dir = spool_dir
        self.ttl_negative = core.ttl_negative
        self.inodes = InodeTable()
        self._dirs: dict[int, _DirSnapshot] = {}
        self._told: dict[int, tuple[Entry, float]] = {}  # inode -> entry, true until
        self._files: dict[int, FileHandle] = {}
        self._handles = itertools.count(1)
        self._closing: Counter[str] = Counter()  # paths whose writer is being closed
        self._reads = 0
        self._read_bytes = 0
        self._writes = 0
        self._write_bytes = 0
        self.kernel_caches = KernelCaches(self.inodes)
        core.subscribe(self._archive_changed)

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
            return self._reply(path, entry)

    def _reply(self, path: str, entry: Entry) -> pyfuse3.EntryAttributes:
        """The kernel learns `path` (one more lookup of its inode) as `entry` says."""
        inode = self.inodes.acquire(path)
        entry = self._with_open_writes(entry)
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
            entry = self._with_open_writes(entry)
            self._remember(inode, entry)
            return self.policy.attributes(entry, inode)

    def _open_entry(self, path: str) -> Entry | None:
        """The entry a handle open on `path` was opened with, if any."""
        return next((handle.entry for handle in self._files.values() if handle.path == path), None)

    def _writers(self, path: str) -> list[FileWriter]:
        return [h.writer for h in self._files.values() if h.path == path and h.writer is not None]

    def _with_open_writes(self, entry: Entry) -> Entry:
        """`entry` with the size its open writers have made it (a size the kernel must see
        at once, or it cuts reads and appends at the old end)."""
        writers = self._writers(entry.path)
        if not writers or entry.kind is not EntryKind.FILE:
            return entry
        return replace(entry, size=max(writer.size for writer in writers))

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
                entry = self._with_open_writes(entry)
                attrs = self.policy.attributes(entry, inode)
                if not pyfuse3.readdir_reply(token, os.fsencode(entry.name), attrs, index + 1):
                    self.inodes.forget(inode, 1)  # not sent: the kernel never counted it
                    break
                self._remember(inode, entry)

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # -- files ---------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        with fuse_errors("open", self._path_or_inode(inode)):
            path = self.inodes.path(inode)
            entry = await self._entry(inode, path)
            if entry.kind is EntryKind.FOLDER:
                raise errors.IsADirectory(f"{path} is a folder")
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
                self._may_write(path)
                writer = await self.core.open_write(path, truncate=bool(flags & os.O_TRUNC))
                self._told.pop(inode, None)
                return self._open_writer(entry, writer)
            reader = await self.core.open(entry)
            handle = next(self._handles)
            self._files[handle] = FileHandle(path, entry, reader=reader)
            # Immutable bytes may stay in the page cache across opens; draft bytes may not.
            return pyfuse3.FileInfo(fh=handle, keep_cache=entry.immutable, direct_io=False)

    def _open_writer(self, entry: Entry, writer: FileWriter) -> pyfuse3.FileInfo:
        handle = next(self._handles)
        self._files[handle] = FileHandle(entry.path, entry, writes=True, writer=writer)
        return pyfuse3.FileInfo(fh=handle, keep_cache=False, direct_io=False)

    async def _writer(self, handle: FileHandle) -> FileWriter:
        """The handle's writer, a new one if a close(2) already committed the last."""
        if handle.writer is None:
            handle.writer = await self.core.open_write(handle.path)
        return handle.writer

    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._files.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if time.monotonic() < handle.unavailable_until:
            raise pyfuse3.FUSEError(errno.EIO)
        with fuse_errors("read", f"{handle.path} [{off}, +{size})"):
            if handle.writes:  # O_RDWR: what was written so far
                data = await (await self._writer(handle)).read(off, size)
                self._reads += 1
                self._read_bytes += len(data)
                return data
            assert handle.reader is not None
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

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._files.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        with fuse_errors("write", f"{handle.path} [{off}, +{len(buf)})"):
            if not handle.writes:
                raise pyfuse3.FUSEError(errno.EBADF)  # the kernel checks the open mode first
            try:
                written = await (await self._writer(handle)).write(off, buf)
            except errors.DandiFSError as exc:
                handle.write_failed = str(exc)
                raise
            self._writes += 1
            self._write_bytes += written
            return written

    async def flush(self, fh: int) -> None:
        """close(2) of a descriptor: what the handle wrote is committed and its upload
        starts (the last writer of a path starts it); a failure is close(2)'s error."""
        handle = self._files.get(fh)
        if handle is None or handle.writer is None:
            return
        with fuse_errors("flush", handle.path):
            writer, handle.writer = handle.writer, None
            await self._close_writer(handle, writer)

    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is None:
            return
        with fuse_errors("release", handle.path):
            if handle.writer is not None:  # not flushed: the kernel's last word on it
                await self._close_writer(handle, handle.writer)
            elif handle.reader is not None:
                await handle.reader.aclose()

    async def _close_writer(self, handle: FileHandle | None, writer: FileWriter) -> None:
        """Commit what `writer` wrote and let the core start its upload (give it up if a
        write of its handle failed)."""
        path = writer.path
        if handle is not None and handle.write_failed is not None:
            writer.abort()
            log.warning("%s: not uploaded, a write to it failed (%s); it shows what it showed "
                        "before it was opened", path, handle.write_failed)
            self._forget_told(path)
            return
        self._closing[path] += 1
        try:
            await writer.close()
        finally:
            self._closing[path] -= 1
            if not self._closing[path]:
                del self._closing[path]
        self._forget_told(path)

    async def fsync(self, fh: int, datasync: bool) -> None:
        """Wait until the archive has what was written and answer with the upload's result
        (EIO when it failed; the reason is in the log and in `user.dandifs.upload`).  On a
        handle that did not write (`sync FILE` after `cp FILE`) it waits for the upload of
        what was last written to that path."""
        handle = self._files.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        with fuse_errors("fsync", handle.path):
            if handle.write_failed is not None:
                raise errors.UploadFailed(
                    f"{handle.path}: not uploaded, a write to it failed ({handle.write_failed})")
            if handle.writer is not None:
                await handle.writer.sync()
            elif not handle.entry.immutable:  # read-only, or its writer committed already
                await self._wait_for_upload(handle.path)

    async def _wait_for_upload(self, path: str) -> None:
        while True:
            state = self.core.upload_state(path)
            if path not in self._closing and (state is None or state.phase not in _RUNNING):
                break
            await trio.sleep(UPLOAD_POLL_SECONDS)
        if state is not None and state.phase is Phase.FAILED:
            raise errors.UploadFailed(f"the upload of {path} failed: {state.reason}")

    async def close_writers(self) -> None:
        """Close every handle still writing (the mount ends before the kernel released
        them): what they wrote is committed and its upload started, never dropped."""
        writing = {fh: handle for fh, handle in self._files.items() if handle.writer is not None}
        if writing:
            log.info("closing %d file(s) still open for writing: %s", len(writing),
                     ", ".join(sorted({handle.path for handle in writing.values()})))
        for fh, handle in writing.items():
            del self._files[fh]
            assert handle.writer is not None
            try:
                with fuse_errors("release at unmount", handle.path):
                    await self._close_writer(handle, handle.writer)
            except pyfuse3.FUSEError:
                pass  # logged with its reason; the core's journal keeps what it could

    # -- extended attributes -------------------------------------------------------------

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        with fuse_errors("getxattr", inode):
            if inode == ROOT_INODE and os.fsdecode(name) == STATS:
                handles = {"inodes": len(self.inodes), "open_files": len(self._files),
                           "open_folders": len(self._dirs), "reads": self._reads,
                           "read_bytes": self._read_bytes, "writes": self._writes,
                           "write_bytes": self._write_bytes,
                           "kernel_invalidations": self.kernel_caches.sent}
                return json.dumps({**self.core.statistics(), "fuse": handles}, sort_keys=True).encode()
            entry = await self.core.stat(self.inodes.path(inode))
            value = await xattr_value(entry, os.fsdecode(name), self.core)
            if value is None:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            return value

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        with fuse_errors("listxattr", inode):
            entry = await self.core.stat(self.inodes.path(inode))
            names = xattr_names(entry, upload_of(entry, self.core))
            if inode == ROOT_INODE:
                names.append(STATS)
            return [os.fsencode(name) for name in names]

    # -- the filesystem as a whole -------------------------------------------------------

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        """Read-only, no size and no free space, like other pseudo filesystems: the archive's
        size is not a disk's, and a full-looking disk would set off monitoring.  Where
        drafts are writable, the disk that written files wait on (the spool's) is what
        limits writing, so its size and free space are shown: file managers refuse to copy
        onto a filesystem with no free space."""
        data = pyfuse3.StatvfsData()
        data.f_bsize = PREFERRED_IO_SIZE
        data.f_frsize = PREFERRED_IO_SIZE
        data.f_blocks = data.f_bfree = data.f_bavail = 0
        data.f_files = len(self.inodes)
        data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        if self.spool_dir is not None and self.policy.drafts_writable:
            try:
                disk = await trio.to_thread.run_sync(os.statvfs, self.spool_dir)
            except OSError as exc:
                log.debug("statfs of the spool %s: %s", self.spool_dir, exc)
            else:
                data.f_blocks = disk.f_blocks * disk.f_frsize // PREFERRED_IO_SIZE
                data.f_bfree = disk.f_bfree * disk.f_frsize // PREFERRED_IO_SIZE
                data.f_bavail = disk.f_bavail * disk.f_frsize // PREFERRED_IO_SIZE
        return data

    # -- writes (drafts only: the core refuses the rest with its reason) -----------------

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        with fuse_errors("create", self._child_or_name(parent_inode, name)):
            path = self._child(parent_inode, name)
            self._may_write(path)
            writer = await self._create(path, flags)
            try:
                entry = await self.core.stat(path)  # listed at once, as the core promises
            except BaseException:
                writer.abort()
                raise
            return self._open_writer(entry, writer), self._reply(path, entry)

    async def _create(self, path: str, flags: int) -> FileWriter:
        """A writer of a new file at `path`; without O_EXCL a file already there (one the
        kernel had not heard of yet) is opened as open(2) would, not emptied unless O_TRUNC."""
        if flags & os.O_EXCL:
            return await self.core.create(path, exclusive=True)
        try:
            return await self.core.create(path, exclusive=True)
        except errors.AlreadyExists:
            return await self.core.open_write(path, truncate=bool(flags & os.O_TRUNC))

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("mknod", self._child_or_name(parent_inode, name)):
            path = self._child(parent_inode, name)
            self._may_write(path)
            if not stat.S_ISREG(mode):
                raise refusal(errno.EPERM, "mknod", path,
                              "the archive holds regular files only (no devices, FIFOs or sockets)")
            writer = await self.core.create(path, exclusive=True)
            await self._close_writer(None, writer)
            return self._reply(path, await self.core.stat(path))

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("mkdir", self._child_or_name(parent_inode, name)):
            path = self._child(parent_inode, name)
            self._may_write(path)
            await self.core.mkdir(path)
            return self._reply(path, await self.core.stat(path))

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with fuse_errors("unlink", self._child_or_name(parent_inode, name)):
            path = self._child(parent_inode, name)
            self._may_write(path)
            await self.core.unlink(path)
            self._forget_told(path)
            self.inodes.detach(path)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with fuse_errors("rmdir", self._child_or_name(parent_inode, name)):
            path = self._child(parent_inode, name)
            self._may_write(path)
            await self.core.rmdir(path)
            self._forget_told(path)
            self.inodes.detach(path)

    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
        flags: int, ctx: pyfuse3.RequestContext,
    ) -> None:
        with fuse_errors("rename", self._child_or_name(parent_inode_old, name_old)):
            old = self._child(parent_inode_old, name_old)
            new = self._child(parent_inode_new, name_new)
            self._may_write(old)
            self._may_write(new)
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise refusal(errno.EINVAL, "rename", f"{old} <-> {new}",
                              "the archive cannot swap two assets in one step (RENAME_EXCHANGE)")
            await self.core.rename(old, new, replace=not flags & pyfuse3.RENAME_NOREPLACE)
            self._moved(old, new)

    def _moved(self, old: str, new: str) -> None:
        """`old` is at `new` now: the same inode numbers, and open handles follow."""
        self._forget_told(new)
        for inode in self.inodes.move(old, new):
            self._told.pop(inode, None)
        for handle in self._files.values():
            if handle.path == old or handle.path.startswith(old + "/"):
                handle.path = new + handle.path[len(old):]
                handle.entry = replace(handle.entry, path=handle.path)
        for fh, snapshot in self._dirs.items():
            if snapshot.path == old or snapshot.path.startswith(old + "/"):
                self._dirs[fh] = _DirSnapshot(new + snapshot.path[len(old):], snapshot.entries)

    async def setattr(
        self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
        fh: int | None, ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("setattr", self._path_or_inode(inode)):
            path = self.inodes.path(inode)
            self._may_write(path)
            handle = self._files.get(fh) if fh is not None else None
            if fields.update_size:
                if handle is not None and handle.writes:
                    await (await self._writer(handle)).truncate(attr.st_size)
                else:
                    await self.core.truncate(path, attr.st_size)
            if fields.update_mtime:
                mtime = datetime.fromtimestamp(attr.st_mtime_ns / 1e9, tz=timezone.utc)
                await self.core.set_mtime(path, mtime)
            if fields.update_mode or fields.update_uid or fields.update_gid:
                # cp -p, rsync -a and tar set these; the archive keeps no modes or owners,
                # and failing them would fail the copy.
                log.debug("setattr %s: modes and owners are not kept by the archive", path)
            self._told.pop(inode, None)
            entry = self._with_open_writes(await self.core.stat(path))
            self._remember(inode, entry)
            return self.policy.attributes(entry, inode)

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("symlink", self._child_or_name(parent_inode, name)):
            path = self._child(parent_inode, name)
            self._may_write(path)
            raise refusal(errno.EPERM, "symlink", path, "the archive has no symbolic links")

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("link", self._child_or_name(new_parent_inode, new_name)):
            path = self._child(new_parent_inode, new_name)
            self._may_write(path)
            raise refusal(errno.EPERM, "link", path,
                          "the archive has no hard links (copy the file instead)")

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        with fuse_errors("setxattr", self._path_or_inode(inode)):
            path = self.inodes.path(inode)
            self._may_write(path)
            raise refusal(errno.ENOTSUP, "setxattr", path,
                          f"the archive keeps no extended attributes ({os.fsdecode(name)})")

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        with fuse_errors("removexattr", self._path_or_inode(inode)):
            path = self.inodes.path(inode)
            self._may_write(path)
            raise refusal(errno.ENOTSUP, "removexattr", path,
                          f"the archive keeps no extended attributes ({os.fsdecode(name)})")

    def _may_write(self, path: str) -> None:
        """Refuse, with the reason, a change at `path` this mount may not make."""
        if self.read_only:
            raise errors.ReadOnly(f"cannot change {path}: this mount is read-only (mounted with -o ro)")
        self.core.check_writable(path)

    def _child(self, parent_inode: int, name: bytes) -> str:
        return join_path(self.inodes.path(parent_inode), os.fsdecode(name))

    def _path_or_inode(self, inode: int) -> str:
        """What a log line names: the path, or the inode when the kernel's is stale."""
        try:
            return self.inodes.path(inode)
        except errors.Stale:
            return f"inode {inode}"

    def _child_or_name(self, parent_inode: int, name: bytes) -> str:
        return join_path(self._path_or_inode(parent_inode), os.fsdecode(name))

    def _forget_told(self, path: str) -> None:
        """What the kernel was told of `path` is no longer true (it changed here)."""
        inode = self.inodes.peek(path)
        if inode is not None:
            self._told.pop(inode, None)

    # -- the archive changed (the core says where) -------------------------------------

    async def notify_kernel(self) -> None:
        """Send the kernel its cache invalidations while the FUSE session runs."""
        await self.kernel_caches.run()

    def _archive_changed(self, path: str) -> None:
        """The core's subscriber: what this mount told of `path` is out of date, and so is
        what the kernel cached of it."""
        self._forget_told(path)
        self.kernel_caches.changed(path)
