"""Inode numbers for archive paths, kept as long as the kernel remembers them.

The kernel names files by inode; the archive names them by path.  Every time the kernel
learns an inode (a LOOKUP reply, a READDIRPLUS entry) its lookup count goes up; FORGET
brings it down.  A path keeps its number while the count is above zero, so `find`, `cp -r`
and `ls -i` see one stable number per file, and the table holds only what the kernel holds.

Writes move numbers with their paths: a renamed file or folder (and everything under it)
keeps its inode, as on a local filesystem, so open handles and `find` follow it; a removed
path lets go of its number at once, so a new file made there gets a new one while the old
number lives on until the kernel forgets it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyfuse3

from dandifs import errors

ROOT_INODE: int = pyfuse3.ROOT_INODE
ROOT_PATH = "/"


@dataclass
class _Record:
    path: str
    lookups: int


class InodeTable:
    """A two-way map path <-> inode number with kernel lookup counts."""

    def __init__(self) -> None:
        self._by_inode: dict[int, _Record] = {ROOT_INODE: _Record(ROOT_PATH, 1)}
        self._by_path: dict[str, int] = {ROOT_PATH: ROOT_INODE}
        self._next = ROOT_INODE + 1

    def __len__(self) -> int:
        return len(self._by_inode)

    def acquire(self, path: str) -> int:
        """The inode for `path` (a new one if the kernel does not know it), counted once more."""
        inode = self._by_path.get(path)
        if inode is None:
            inode = self._next
            self._next += 1
            self._by_path[path] = inode
            self._by_inode[inode] = _Record(path, 0)
        self._by_inode[inode].lookups += 1
        return inode

    def peek(self, path: str) -> int | None:
        """The inode the kernel knows for `path`, without counting a lookup."""
        return self._by_path.get(path)

    def path(self, inode: int) -> str:
        """The path of an inode the kernel holds; an unknown one is stale (the kernel forgot it)."""
        record = self._by_inode.get(inode)
        if record is None:
            raise errors.Stale(f"inode {inode} is not known to this mount (it was forgotten)")
        return record.path

    def lookups(self, inode: int) -> int:
        record = self._by_inode.get(inode)
        return record.lookups if record else 0

    def forget(self, inode: int, count: int) -> None:
        """The kernel dropped `count` references; at zero the number is released (never the root)."""
        record = self._by_inode.get(inode)
        if record is None or inode == ROOT_INODE:
            return
        record.lookups -= count
        if record.lookups <= 0:
            del self._by_inode[inode]
            if self._by_path.get(record.path) == inode:  # a detached number owns no path
                del self._by_path[record.path]

    def detach(self, path: str) -> None:
        """`path` and everything under it were removed: their numbers name no path any more
        (a new file there gets a new number); each lives on until the kernel forgets it."""
        for inode_path in self._under(path):
            del self._by_path[inode_path]

    def move(self, old: str, new: str) -> list[int]:
        """`old` (a file, or a folder with everything under it) is now at `new`: the same
        numbers, new paths.  Whatever `new` replaced is detached.  Returns the moved numbers."""
        if old == new:
            return []
        self.detach(new)
        moved = []
        for old_path in self._under(old):
            inode = self._by_path.pop(old_path)
            new_path = new + old_path[len(old):]
            self._by_path[new_path] = inode
            self._by_inode[inode].path = new_path
            moved.append(inode)
        return moved

    def _under(self, path: str) -> list[str]:
        """The known paths at or below `path` (never the root: it cannot be removed or moved)."""
        if path == ROOT_PATH:
            return []
        prefix = path.rstrip("/") + "/"
        return [known for known in self._by_path if known == path or known.startswith(prefix)]

