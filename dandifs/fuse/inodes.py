"""Inode numbers for archive paths, kept as long as the kernel remembers them.

The kernel names files by inode; the archive names them by path.  Every time the kernel
learns an inode (a LOOKUP reply, a READDIRPLUS entry) its lookup count goes up; FORGET
brings it down.  A path keeps its number while the count is above zero, so `find`, `cp -r`
and `ls -i` see one stable number per file, and the table holds only what the kernel holds.
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
            del self._by_path[record.path]

