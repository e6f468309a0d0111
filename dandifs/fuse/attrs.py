"""How a resolved Entry looks to `stat(2)`: modes, times, sizes and kernel cache lifetimes.

Published versions never change, so the kernel may keep their attributes and names as long
as the resolver keeps them; drafts change under us, so their kernel lifetimes are as short as
the resolver's draft TTL (never zero: that turns every `ls -l` entry into a round trip).
Draft content shows write bits only when the mount has a token to write with, so tools
that look at modes before writing (`cp`, editors, `test -w`) know before they try.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import pyfuse3

from dandifs.namespace import listing, names
from dandifs.core import Entry, EntryKind

#: The block size `stat` reports: tools size their reads by it (cp, rsync, dd without bs=).
PREFERRED_IO_SIZE = 1024 * 1024


@dataclass(frozen=True)
class AttrPolicy:
    """Ownership, kernel TTLs and the fallback time for entries the archive gives no time;
    `drafts_writable` when the core may write (it has a token)."""

    uid: int
    gid: int
    drafts_writable: bool = False
    ttl_immutable: float = 3600.0
    ttl_mutable: float = 5.0
    mount_time_ns: int = field(default_factory=time.time_ns)

    def ttl(self, entry: Entry) -> float:
        return self.ttl_immutable if entry.immutable else self.ttl_mutable

    def mode(self, entry: Entry) -> int:
        if entry.kind is EntryKind.SYMLINK:
            return listing.symlink_mode()
        writable = self.drafts_writable and is_draft_content(entry)
        if entry.kind is EntryKind.FOLDER:
            return listing.folder_mode(writable)
        return listing.file_mode(writable)

    def size(self, entry: Entry) -> int:
        if entry.kind is EntryKind.SYMLINK:
            return len((entry.symlink_target or "").encode())
        if entry.kind is EntryKind.FOLDER:
            return 0
        return entry.size

    def attributes(self, entry: Entry, inode: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        attrs.generation = 0
        attrs.st_mode = self.mode(entry)
        attrs.st_nlink = 1  # for folders: "subfolder count unknown", so find(1) never skips
        attrs.st_uid = self.uid
        attrs.st_gid = self.gid
        attrs.st_rdev = 0
        attrs.st_size = self.size(entry)
        attrs.st_blksize = PREFERRED_IO_SIZE
        attrs.st_blocks = (attrs.st_size + 511) // 512
        mtime = _nanoseconds(entry.mtime, self.mount_time_ns)
        attrs.st_mtime_ns = mtime
        attrs.st_atime_ns = mtime
        attrs.st_ctime_ns = _nanoseconds(entry.ctime, mtime)
        ttl = self.ttl(entry)
        attrs.entry_timeout = ttl
        attrs.attr_timeout = ttl
        return attrs


def is_draft_content(entry: Entry) -> bool:
    """True inside a draft, where the owner may write (`dandiset.yaml` is always rendered)."""
    return (
        not entry.immutable
        and entry.version == names.DRAFT
        and not (entry.kind is EntryKind.FILE and entry.name == names.DANDISET_YAML)
    )


def _nanoseconds(moment: datetime | None, fallback: int) -> int:
    if moment is None:
        return fallback
    return int(moment.timestamp() * 1_000_000_000)
