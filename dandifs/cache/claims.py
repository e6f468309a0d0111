"""Fetch claims that every process on the machine sees: one fetch of a block between them.

Beside each data file, `<key>.fetching` is an empty file used only for its byte-range locks
(open file description locks, `F_OFD_SETLK`): byte `i` locked exclusively means "a process
is fetching block `i`", byte `block_count + i` locked shared means "a process waits for
block `i`".  Why byte-range locks on one file rather than a lock file per block: one file
(one inode, one descriptor) per object however many blocks are claimed, claims of adjacent
blocks cost nothing more, and the kernel drops every lock when the holder's descriptor
closes, which includes its process dying (SIGKILL too): no stale claim outlives a fetcher,
so no timeouts.  Open file description locks rather than classic `fcntl` locks because
those belong to the process and vanish when *any* descriptor of the file is closed (and
two disk stores in one process, e.g. two cores, then exclude each other as processes do).
A forked child closes the descriptors it inherited, which would otherwise keep its
parent's claims alive after the parent died.

A claim is held from before the fetch until its blocks are durable and claimed in the
record (or the fetch failed, or the block was dropped unstored).  A waiter polls with
back-off (no thread blocked in the kernel, so cancelling it is immediate); once a claim
is free it claims the block itself and looks at the disk again, which then has the block
unless its fetcher failed or died.  Holders flush soon when someone waits on their blocks.

Nothing here decides which bytes are right: blocks are keyed by ETag, and a claim that is
lost (the file evicted and made again) at worst costs a second fetch.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import weakref
from pathlib import Path

# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks), padding
_FLOCK = struct.Struct("hhqqi4x")


def _lock(fd: int, kind: int, start: int, length: int, command: int = fcntl.F_OFD_SETLK) -> bytes:
    return fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))


class ObjectClaims:
    """This process's claims on one object's blocks, through one descriptor."""

    def __init__(self, path: Path, block_count: int) -> None:
        self.path = path
        self.block_count = block_count
        self.held: set[int] = set()
        self.waiting: set[int] = set()
        self._fd: int | None = None

    def _descriptor(self) -> int:
        """The open claim file.  It is opened when the first claim or wait is taken and
        closed when the last goes (`FetchClaims`), so it is never one that eviction removed
        while this process held nothing on it."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def claim(self, indices: list[int]) -> list[int]:
        """Claim each block no other process claims; the ones claimed now or before."""
        fd = self._descriptor()
        mine = []
        for index in indices:
            if index not in self.held:
                try:
                    _lock(fd, fcntl.F_WRLCK, index, 1)
                except BlockingIOError:
                    continue
                self.held.add(index)
            mine.append(index)
        return mine

    def release(self, indices: list[int]) -> None:
        fd = self._fd
        for index in indices:
            if index in self.held and fd is not None:
                self.held.discard(index)
                _lock(fd, fcntl.F_UNLCK, index, 1)

    def wait_on(self, indices: list[int]) -> None:
        """Say that this process waits for these blocks (their holders then flush soon)."""
        fd = self._descriptor()
        for index in indices:
            if index not in self.waiting:
                _lock(fd, fcntl.F_RDLCK, self.block_count + index, 1)
                self.waiting.add(index)

    def stop_waiting(self) -> None:
        if self._fd is not None and self.waiting:
            _lock(self._fd, fcntl.F_UNLCK, self.block_count, self.block_count)
        self.waiting.clear()

    def awaited(self, indices: list[int]) -> bool:
        """Whether another process waits for any of these blocks."""
        if self._fd is None or not indices:
            return False
        start = self.block_count + min(indices)
        length = max(indices) - min(indices) + 1
        answer = _lock(self._fd, fcntl.F_WRLCK, start, length, fcntl.F_OFD_GETLK)
        return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK

    @property
    def idle(self) -> bool:
        return not self.held and not self.waiting

    def close(self) -> None:
        """Drop every claim (the kernel releases the locks with the descriptor)."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self.held.clear()
        self.waiting.clear()


class FetchClaims:
    """The fetch claims of one process on one disk store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Path, ObjectClaims] = {}
        _every.add(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors, which share the parent's
        locks (the parent's claims must end with the parent, not live on in the child)."""
        self._lock = threading.Lock()
        for found in self._objects.values():
            if found._fd is not None:
                os.close(found._fd)
                found._fd = None
        self._objects = {}

    def _of(self, path: Path, block_count: int) -> ObjectClaims:
        found = self._objects.get(path)
        if found is None:
            found = self._objects[path] = ObjectClaims(path, block_count)
        return found

    def claim(self, path: Path, block_count: int, indices: list[int]) -> list[int]:
        with self._lock:
            return self._of(path, block_count).claim(indices)

    def release(self, path: Path, indices: list[int]) -> None:
        with self._lock:
            found = self._objects.get(path)
            if found is None:
                return
            found.release(indices)
            if found.idle:
                found.close()
                del self._objects[path]

    def wait_on(self, path: Path, block_count: int, indices: list[int]) -> None:
        with self._lock:
            self._of(path, block_count).wait_on(indices)

    def stop_waiting(self, path: Path) -> None:
        with self._lock:
            found = self._objects.get(path)
            if found is not None:
                found.stop_waiting()
                if found.idle:
                    found.close()
                    del self._objects[path]

    def awaited(self, path: Path, indices: list[int]) -> bool:
        with self._lock:
            found = self._objects.get(path)
            return found is not None and found.awaited(indices)

    def awaited_any(self) -> bool:
        """Whether another process waits for any block this process claims."""
        with self._lock:
            return any(found.held and found.awaited(sorted(found.held))
                       for found in self._objects.values())

    def close(self) -> None:
        with self._lock:
            objects, self._objects = list(self._objects.values()), {}
        for found in objects:
            found.close()


def claimed_by_anyone(path: Path) -> bool:
    """Whether any process claims or waits for a block of the object (for eviction); a
    missing claim file claims nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        answer = _lock(fd, fcntl.F_WRLCK, 0, 0, fcntl.F_OFD_GETLK)
        return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


_every: weakref.WeakSet[FetchClaims] = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [claims._forget_after_fork() for claims in _every])
