"""Blocks on disk that outlive the process: one sparse data file per object plus a record.

Layout under the cache directory::

    blocks-v1-<block size>/<key[:2]>/<key>.data     sparse file, the object's size
    blocks-v1-<block size>/<key[:2]>/<key>.blocks   record: which blocks are present
    blocks-v1-<block size>/<key[:2]>/<key>.fetching fetch claims (`claims.py`), no bytes
    blocks-v1-<block size>/evict.lock               one evictor at a time

Rules that make it safe for several processes at once and across crashes:

- A data file is never changed in place except by writing blocks its record does not yet
  claim, and it is only ever removed whole.  Blocks are immutable (the key includes the
  ETag), so a reader holding a data file open reads correct bytes even after another
  process evicted that file; readers take no locks.
- Blocks are written, `fdatasync`ed, and only then claimed in the record, which is
  replaced atomically (write a temporary file, rename).  A crash at any point leaves at
  worst unclaimed bytes, never a claim without its bytes; a record torn by a power cut
  fails its CRC and claims nothing.
- Record updates and removals hold an exclusive `flock` on the data file, so concurrent
  writers merge their claims and an evictor never removes a file while it is being claimed.
- A record names the inode of its data file: a record can never vouch for a data file that
  was deleted and created again.
- A block is fetched by one process at a time: before fetching blocks the disk lacks, a
  process claims them (`claims.py`), and keeps the claim until they are durable and in the
  record; others wait for the claim and then read the disk.  Eviction skips an object
  whose blocks are claimed or awaited.

Every method here blocks on disk I/O; the async cache calls them in worker threads.  Only
giving up claims (`release`, `stop_waiting`) and `awaited` are called from the event loop:
they are non-blocking lock calls on a descriptor already open.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dandifs.cache import record as records
from dandifs.cache.blocks import BlockLayout
from dandifs.cache.claims import FetchClaims, claimed_by_anyone
from dandifs.cache.objectref import ObjectRef
from dandifs.cache.record import BlockBitmap, BlockRecord, RecordError

log = logging.getLogger(__name__)

Block = bytes | memoryview  # a read-only view of the buffer it was received in

LAYOUT = "blocks-v1"
LOW_WATER = 0.9  # eviction frees space down to this share of the capacity
REFRESH_INTERVAL = 0.5  # seconds between looks for blocks other processes have added
TOUCH_INTERVAL = 30.0  # seconds between access-time updates of one object
STALE_TEMPORARY = 600.0  # seconds after which a leftover temporary record is removed
OPEN_OBJECTS = 256  # data files kept open at once


@dataclass(frozen=True)
class StoredObject:
    """One object's data file as eviction sees it."""

    key: str
    data_path: Path
    allocated: int
    accessed: float


class DiskObject:
    """The disk side of one object: its open data file, what it holds, what waits to be written."""

    def __init__(self, store: DiskStore, ref: ObjectRef) -> None:
        self.ref = ref
        self.layout = BlockLayout(store.block_size, ref.size)
        shard = store.root / ref.key[:2]
        self.data_path = shard / f"{ref.key}.data"
        self.record_path = shard / f"{ref.key}.blocks"
        self.claims_path = shard / f"{ref.key}.fetching"
        self._store = store
        self._file_lock = threading.Lock()  # the open data file and what it holds
        self._queue_lock = threading.Lock()  # blocks waiting to be written
        self._fd: int | None = None
        self._inode: int | None = None
        self._present = BlockBitmap(self.layout.block_count)
        self._loaded = False
        self._pending: dict[int, Block] = {}
        self._pending_size = 0
        self._flushing: dict[int, Block] = {}
        self._refreshed_at = float("-inf")
        self._record_seen: tuple[int, int, int] | None = None  # the record last loaded
        self._touched_at = float("-inf")

    # -- questions answered without I/O ----------------------------------------------------

    def may_have(self, index: int) -> bool:
        """False when the block is not on disk as far as this process knows, and it looked
        recently (other processes may add blocks meanwhile)."""
        return (
            not self._loaded
            or self.has(index)
            or time.monotonic() - self._refreshed_at >= REFRESH_INTERVAL
        )

    def has(self, index: int) -> bool:
        return index in self._pending or index in self._flushing or index in self._present

    def queued(self, index: int) -> bool:
        """Whether the block waits to be written (this object keeps its bytes alive)."""
        return index in self._pending or index in self._flushing

    @property
    def pending_bytes(self) -> int:
        return self._pending_size

    # -- reading -----------------------------------------------------------------------------

    def read(self, indices: Iterable[int], *, fresh: bool = False) -> dict[int, Block]:
        """The requested blocks that are on disk (or waiting to be written); `fresh` looks
        at the record again for blocks not known to be there, however recently it did."""
        wanted = list(indices)
        found: dict[int, Block] = {}
        with self._queue_lock:
            for index in wanted:
                data = self._pending.get(index, self._flushing.get(index))
                if data is not None:
                    found[index] = data
        rest = [index for index in wanted if index not in found]
        if not rest:
            return found
        with self._file_lock:
            if not self._loaded or (
                any(index not in self._present for index in rest)
                and (fresh or time.monotonic() - self._refreshed_at >= REFRESH_INTERVAL)
            ):
                self._refresh()
            for index in rest:
                if index in self._present and self._fd is not None:
                    start, end = self.layout.bounds(index)
                    data = os.pread(self._fd, end - start, start)
                    if len(data) == end - start:
                        found[index] = data
        return found

    def _refresh(self) -> None:
        """Reopen the data file if it was replaced, and reload which blocks it holds."""
        self._loaded = True
        now = time.monotonic()
        self._refreshed_at = now
        try:
            on_disk = os.stat(self.data_path)
        except FileNotFoundError:
            self._close_file()
            return
        if self._fd is None or self._inode != on_disk.st_ino:
            self._close_file()
            try:
                self._fd = os.open(self.data_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return
            self._inode = os.fstat(self._fd).st_ino
        try:
            seen = os.stat(self.record_path)
            # Each write renames a new file into place.  Mistaking a new record for the one
            # loaded costs at worst a fetch: it can only claim more blocks, never other ones.
            mark: tuple[int, int, int] | None = (seen.st_ino, seen.st_mtime_ns, seen.st_size)
        except FileNotFoundError:
            mark = None
        if mark is not None and mark != self._record_seen:
            claimed = self._store.load_record(self.ref, self.record_path, self._inode)
            if claimed is not None:
                self._present.update(claimed)
            self._record_seen = mark
        if now - self._touched_at >= TOUCH_INTERVAL:
            self._touched_at = now
            with contextlib.suppress(OSError):
                os.utime(self.data_path)

    # -- fetch claims (see `claims.py`) -------------------------------------------------------

    def claim_missing(self, indices: list[int]) -> tuple[dict[int, Block], list[int], list[int]]:
        """Claim the fetch of blocks the disk lacks: the blocks found on disk once claimed
        (another process stored them meanwhile), the blocks now this process's to fetch,
        and the blocks another process is fetching (this process waits on them)."""
        claims = self._store.claims
        count = self.layout.block_count
        mine = claims.claim(self.claims_path, count, indices)
        taken = set(mine)
        busy = [index for index in indices if index not in taken]
        if busy:
            claims.wait_on(self.claims_path, count, busy)
        found: dict[int, Block] = {}
        try:
            if mine:
                found = self.read(mine, fresh=True)
        finally:
            claims.release(self.claims_path, list(found))
        return found, [index for index in mine if index not in found], busy

    def release(self, indices: Iterable[int]) -> None:
        """Give up the fetch claims of blocks this process will not store."""
        self._store.claims.release(self.claims_path, list(indices))

    def stop_waiting(self) -> None:
        self._store.claims.stop_waiting(self.claims_path)

    def awaited(self, indices: list[int]) -> bool:
        """Whether another process waits for blocks this process fetched."""
        return self._store.claims.awaited(self.claims_path, indices)

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._inode = None
        self._record_seen = None
        self._present = BlockBitmap(self.layout.block_count)

    def close(self) -> None:
        with self._file_lock:
            self._close_file()
            self._loaded = False

    # -- writing -----------------------------------------------------------------------------

    def add(self, index: int, data: Block) -> int:
        """Queue a block for the next flush; returns the bytes newly queued."""
        if len(data) != self.layout.block_length(index):
            raise ValueError(f"block {index} of {self.ref.url} has {len(data)} bytes")
        with self._queue_lock:
            if self.has(index):
                self.release([index])
                return 0
            self._pending[index] = data
            self._pending_size += len(data)
            return len(data)

    def flush(self) -> int:
        """Make queued blocks durable and claim them; returns the bytes stored.

        Blocks beyond the store's per-object limit are dropped rather than stored.
        """
        with self._queue_lock:
            batch, self._pending, self._pending_size = self._pending, {}, 0
            self._flushing.update(batch)
        if not batch:
            return 0
        try:
            return self._store_durably(batch)
        finally:
            with self._queue_lock:
                for index in batch:
                    self._flushing.pop(index, None)
            self.release(batch)  # stored, dropped or failed: others may look (and fetch)

    def _store_durably(self, batch: dict[int, Block]) -> int:
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # the file may be evicted between open and lock
            fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                inode = os.fstat(fd).st_ino
                try:
                    if os.stat(self.data_path).st_ino != inode:
                        continue
                except FileNotFoundError:
                    continue
                present = self._store.load_record(self.ref, self.record_path, inode)
                if present is None:
                    present = BlockBitmap(self.layout.block_count)
                fresh = self._within_limit(present, batch)
                if os.fstat(fd).st_size != self.ref.size:
                    os.ftruncate(fd, self.ref.size)
                for index in fresh:
                    _write_all(fd, batch[index], self.layout.bounds(index)[0])
                os.fdatasync(fd)
                present.update(fresh)
                record = BlockRecord(
                    self.ref.record_identity, self.layout.block_size, self.ref.size, inode, present
                )
                self._store.write_record(self.record_path, record)
                with self._file_lock:
                    if self._inode == inode:
                        self._present.update(fresh)
                    else:
                        self._loaded = False  # look at the file again on the next read
                return sum(len(batch[index]) for index in fresh)
            finally:
                os.close(fd)
        log.warning("could not store blocks of %s: its cache file kept changing", self.ref.url)
        return 0

    def _within_limit(self, present: BlockBitmap, batch: dict[int, Block]) -> list[int]:
        """The new blocks of `batch`, in order, up to the per-object share of the store."""
        room = self._store.object_limit - len(present) * self.layout.block_size
        fresh = []
        for index in sorted(batch):
            if index in present:
                continue
            room -= len(batch[index])
            if room < 0:
                break
            fresh.append(index)
        return fresh


class DiskStore:
    """All objects' blocks under one directory, bounded by `capacity` bytes.

    When the bytes on disk pass the capacity, whole objects are removed, least recently
    used first, down to `LOW_WATER` of the capacity.  One object may use at most that
    low-water share, so it never has to evict itself.
    """

    def __init__(self, directory: Path, *, block_size: int, capacity: int) -> None:
        self.block_size = block_size
        self.capacity = capacity
        self.object_limit = int(capacity * LOW_WATER)
        self.root = Path(directory) / f"{LAYOUT}-{block_size}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot keep cached blocks in {directory}: {exc.strerror}"
            ) from exc
        self._lock = threading.Lock()
        self._objects: OrderedDict[str, DiskObject] = OrderedDict()
        self.claims = FetchClaims()
        self._usage = sum(entry.allocated for entry in self.scan())

    @property
    def usage(self) -> int:
        """Bytes on disk as of the last scan, plus what this process stored since."""
        return self._usage

    @property
    def over_capacity(self) -> bool:
        return self._usage > self.capacity

    def object(self, ref: ObjectRef) -> DiskObject:
        """The disk side of `ref`; no I/O until it is read or flushed."""
        with self._lock:
            found = self._objects.get(ref.key)
            if found is not None:
                self._objects.move_to_end(ref.key)
                return found
            found = self._objects[ref.key] = DiskObject(self, ref)
            excess = len(self._objects) - OPEN_OBJECTS
            surplus = [
                obj
                for obj in itertools.islice(self._objects.values(), max(0, excess))
                if not obj.pending_bytes
            ]
            for obj in surplus:
                del self._objects[obj.ref.key]
        for obj in surplus:
            obj.close()
        return found

    def pending_bytes(self) -> int:
        with self._lock:
            objects = list(self._objects.values())
        return sum(obj.pending_bytes for obj in objects)

    def flush(self) -> int:
        """Store every queued block durably; returns the bytes stored."""
        with self._lock:
            objects = list(self._objects.values())
        stored = sum(obj.flush() for obj in objects)
        with self._lock:
            self._usage += stored
        return stored

    def close(self) -> None:
        self.flush()
        if self.over_capacity:
            self.evict()
        with self._lock:
            objects = list(self._objects.values())
            self._objects.clear()
        for obj in objects:
            obj.close()
        self.claims.close()

    # -- records -----------------------------------------------------------------------------

    def load_record(self, ref: ObjectRef, path: Path, inode: int | None) -> BlockBitmap | None:
        """The blocks a record claims, if it describes `ref` in the data file `inode`."""
        try:
            loaded = records.decode(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, RecordError) as exc:
            log.warning("ignoring unreadable cache record %s: %s", path, exc)
            return None
        if not loaded.describes(ref.record_identity, self.block_size, ref.size):
            return None
        if inode is None or loaded.data_inode != inode:
            return None
        return loaded.present

    @staticmethod
    def write_record(path: Path, record: BlockRecord) -> None:
        """Replace the record atomically.  No fsync: a record that a power cut loses or tears
        fails its CRC and claims nothing, which is safe; only the blocks it claims must be
        durable first, and `DiskObject.flush` makes sure of that."""
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, records.encode(record), 0)
        finally:
            os.close(fd)
        os.replace(temporary, path)

    # -- eviction ----------------------------------------------------------------------------

    def scan(self) -> Iterator[StoredObject]:
        """Every data file, and clean-up of leftovers: stale temporaries, orphan records."""
        now = time.time()
        for shard in _subdirectories(self.root):
            for entry in _entries(shard):
                name = entry.name
                try:
                    if name.endswith(".data"):
                        info = entry.stat()
                        key = name[: -len(".data")]
                        yield StoredObject(key, Path(entry.path), info.st_blocks * 512, info.st_mtime)
                    elif name.endswith(".tmp") and now - entry.stat().st_mtime > STALE_TEMPORARY:
                        os.unlink(entry.path)
                    elif name.endswith(".blocks") and not os.path.exists(
                        entry.path[: -len(".blocks")] + ".data"
                    ):
                        os.unlink(entry.path)
                    elif (
                        name.endswith(".fetching")
                        and now - entry.stat().st_mtime > STALE_TEMPORARY
                        and not os.path.exists(entry.path[: -len(".fetching")] + ".data")
                        and not claimed_by_anyone(Path(entry.path))
                    ):
                        os.unlink(entry.path)  # a fetch that stored nothing, long ago
                except FileNotFoundError:
                    continue

    def evict(self) -> list[str]:
        """Remove least recently used objects until the store is back under its low water mark.

        Returns the keys removed.  Other processes' usage is counted too: the scan sees
        every data file, and only one process evicts at a time.
        """
        removed: list[str] = []
        lock_fd = os.open(self.root / "evict.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            # File times are only as fine as the kernel's clock tick: objects used within
            # one tick are ordered by this process's own use, the latest removed last.
            with self._lock:
                recency = {key: rank for rank, key in enumerate(self._objects)}
            stored = sorted(
                self.scan(), key=lambda entry: (entry.accessed, recency.get(entry.key, -1))
            )
            total = sum(entry.allocated for entry in stored)
            if total > self.capacity:
                target = int(self.capacity * LOW_WATER)
                for entry in stored:
                    if total <= target:
                        break
                    if self._remove(entry.data_path):
                        removed.append(entry.key)
                    total -= entry.allocated
            with self._lock:
                self._usage = total
        finally:
            os.close(lock_fd)
        for key in removed:
            with self._lock:
                obj = self._objects.get(key)
            if obj is not None:
                obj.close()
        return removed

    def clear(self) -> tuple[int, int]:
        """Remove every object no process is writing at this moment; returns (objects,
        bytes) removed.  Safe beside running mounts: it takes the eviction lock, and an
        object being written is skipped as eviction skips it."""
        objects = freed = 0
        lock_fd = os.open(self.root / "evict.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            for entry in list(self.scan()):
                if self._remove(entry.data_path):
                    objects += 1
                    freed += entry.allocated
            with self._lock:
                self._usage = max(0, self._usage - freed)
        finally:
            os.close(lock_fd)
        return objects, freed

    @staticmethod
    def _remove(data_path: Path) -> bool:
        record_path = data_path.with_suffix(".blocks")
        claims_path = data_path.with_suffix(".fetching")
        if claimed_by_anyone(claims_path):
            return False  # being fetched: its blocks are about to be stored
        try:
            fd = os.open(data_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(data_path).st_ino != os.fstat(fd).st_ino:
                    return False  # replaced meanwhile: someone is using it
            except FileNotFoundError:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record_path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claims_path)
            os.unlink(data_path)
            return True
        finally:
            os.close(fd)


def _write_all(fd: int, data: Block, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _subdirectories(path: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(path) if entry.is_dir()]
    except FileNotFoundError:
        return []


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def stores_in(directory: Path, *, capacity: int) -> list[DiskStore]:
    """Every block store under a cache's `blocks/` folder, one per block size used."""
    found = []
    for layout in sorted(Path(directory).glob(f"{LAYOUT}-*")):
        size = layout.name.removeprefix(f"{LAYOUT}-")
        if size.isdigit():
            found.append(DiskStore(directory, block_size=int(size), capacity=capacity))
    return found
