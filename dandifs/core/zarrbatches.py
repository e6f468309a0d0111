"""Files written into a Zarr in a draft, gathered per Zarr and sent together.

zarr-python writes a store as many small files in quick succession; sending each on its
own would finalize (and have the archive re-ingest) the Zarr once per chunk.  So committed
files and deletions of one Zarr wait in its batch until writing pauses (`quiet` seconds
with no new change) or someone waits for them (fsync, unmount, rmdir, rename), and then
go in one `ZarrSync.push`.  Each file stays journalled and spooled until its batch is in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from dandifs import errors
from dandifs.archive.retry import Attempts
from dandifs.archive.retry import TransientFailure
from dandifs.upload.journal import Journal, UploadRecord
from dandifs.upload.pipeline import STEP_PATIENCE
from dandifs.upload.spool import Spool, UploadLock
from dandifs.upload.state import Phase
from dandifs.upload.zarrsync import ZarrSync

log = logging.getLogger(__name__)

QUIET_SECONDS = 1.0

ZarrKey = tuple[str, str]
"""(dandiset id, Zarr asset path)."""


@dataclass
class _Batch:
    files: dict[str, str] = field(default_factory=dict)
    """Key inside the Zarr -> journal row id of the file to send."""
    deletions: set[str] = field(default_factory=set)
    changed_at: float = 0.0
    hurry: anyio.Event = field(default_factory=anyio.Event)
    sent: anyio.Event = field(default_factory=anyio.Event)
    running: bool = False
    in_flight: set[str] = field(default_factory=set)


class ZarrBatches:
    def __init__(
        self,
        sync: ZarrSync,
        journal: Journal,
        spool: Spool,
        tasks: anyio.abc.TaskGroup,
        finished: Callable[[UploadRecord], None],
        *,
        quiet: float = QUIET_SECONDS,
    ) -> None:
        """`finished(record)` is told of each file's row once its batch is in (DONE) or
        has failed (FAILED, with the reason)."""
        self._sync = sync
        self._journal = journal
        self._spool = spool
        self._tasks = tasks
        self._finished = finished
        self._quiet = quiet
        self._batches: dict[ZarrKey, _Batch] = {}
        self._locks: dict[str, UploadLock] = {}

    def busy(self) -> bool:
        return any(batch.running for batch in self._batches.values())

    def add(self, record: UploadRecord) -> None:
        """A committed file of a Zarr (its row names the Zarr); one another process sends
        (its `UploadLock` is held) is left to it."""
        assert record.zarr is not None
        lock = UploadLock.take(Path(record.spool))
        if lock is None:
            return
        self._locks[record.id] = lock
        batch = self._batch((record.dandiset_id, record.zarr))
        key = record.path[len(record.zarr) + 1 :]
        earlier = batch.files.get(key)
        if earlier is not None and earlier not in batch.in_flight:
            self._forget_row(earlier)
        batch.files[key] = record.id
        batch.deletions.discard(key)
        self._touch((record.dandiset_id, record.zarr), batch)

    def delete(self, dandiset_id: str, zarr_path: str, key: str) -> None:
        batch = self._batch((dandiset_id, zarr_path))
        earlier = batch.files.pop(key, None)
        if earlier is not None and earlier not in batch.in_flight:
            self._forget_row(earlier)
        batch.deletions.add(key)
        self._touch((dandiset_id, zarr_path), batch)

    def withdraw(self, record_id: str) -> bool:
        """Take a waiting file out of its batch (a newer version or a delete replaced it);
        False if it is being sent now (its batch removes its spool when done)."""
        for batch in self._batches.values():
            for key, waiting in list(batch.files.items()):
                if waiting == record_id:
                    if record_id in batch.in_flight:
                        return False
                    del batch.files[key]
                    return True
        return True

    def rekey(self, record_id: str, zarr_path: str, new_key: str) -> bool:
        """Send a waiting file under another key of its Zarr (zarr-python writes each key
        as `<key>.<uuid>.partial` and renames it into place); False if it is being sent."""
        for (dandiset_id, zarr), batch in self._batches.items():
            if zarr != zarr_path:
                continue
            for key, waiting in list(batch.files.items()):
                if waiting != record_id:
                    continue
                if record_id in batch.in_flight:
                    return False
                del batch.files[key]
                earlier = batch.files.get(new_key)
                if earlier is not None and earlier not in batch.in_flight:
                    self._forget_row(earlier)
                batch.files[new_key] = record_id
                batch.deletions.discard(new_key)
                self._journal.update(record_id, path=f"{zarr_path}/{new_key}")
                self._touch((dandiset_id, zarr), batch)
                return True
        return False

    async def flush(self, dandiset_id: str, zarr_path: str) -> None:
        """Send the Zarr's waiting changes now and wait until they are in (or failed)."""
        batch = self._batches.get((dandiset_id, zarr_path))
        while batch is not None and (batch.running or batch.files or batch.deletions):
            batch.hurry.set()
            await batch.sent.wait()
            batch = self._batches.get((dandiset_id, zarr_path))

    async def flush_all(self) -> None:
        for key in list(self._batches):
            await self.flush(*key)

    def _batch(self, key: ZarrKey) -> _Batch:
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch()
        return batch

    def _touch(self, key: ZarrKey, batch: _Batch) -> None:
        batch.changed_at = anyio.current_time()
        if not batch.running:
            batch.running = True
            batch.sent = anyio.Event()
            self._tasks.start_soon(self._run, key, batch)

    def _unlock(self, record_id: str) -> None:
        lock = self._locks.pop(record_id, None)
        if lock is not None:
            lock.release()

    def _forget_row(self, record_id: str) -> None:
        self._unlock(record_id)
        try:
            record = self._journal.get(record_id)
        except KeyError:
            return
        self._journal.remove(record_id)
        self._spool.discard(Path(record.spool))

    async def _run(self, key: ZarrKey, batch: _Batch) -> None:
        dandiset_id, zarr_path = key
        attempts = Attempts(STEP_PATIENCE, f"upload of the Zarr {zarr_path}")
        try:
            while batch.files or batch.deletions:
                await self._wait_for_quiet(batch)
                files, deletions = dict(batch.files), set(batch.deletions)
                batch.in_flight = set(files.values())
                batch.deletions -= deletions
                try:
                    failure = await self._send(dandiset_id, zarr_path, files, deletions)
                except errors.Unavailable as exc:
                    batch.deletions |= deletions
                    batch.in_flight = set()
                    try:
                        await attempts.failed(TransientFailure(str(exc)))
                    except errors.Unavailable as final:
                        self._fail(files, str(final), batch)
                    continue
                batch.in_flight = set()
                for file_key, record_id in files.items():
                    if batch.files.get(file_key) == record_id:
                        del batch.files[file_key]
                    if failure is None:
                        self._done(record_id)
                if failure is not None:
                    self._fail(files, failure, batch)
        finally:
            batch.running = False
            if not batch.files and not batch.deletions:
                self._batches.pop(key, None)
            batch.sent.set()

    async def _wait_for_quiet(self, batch: _Batch) -> None:
        while not batch.hurry.is_set():
            left = batch.changed_at + self._quiet - anyio.current_time()
            if left <= 0:
                return
            with anyio.move_on_after(left):
                await batch.hurry.wait()
        batch.hurry = anyio.Event()

    async def _send(
        self, dandiset_id: str, zarr_path: str, files: dict[str, str], deletions: set[str]
    ) -> str | None:
        """One push of the batch; the reason when the archive refused it."""
        changes: dict[str, Path | None] = {key: None for key in deletions}
        for key, record_id in files.items():
            record = self._journal.update(record_id, phase=Phase.UPLOADING, reason=None)
            changes[key] = Path(record.spool)
        try:
            await self._sync.push(dandiset_id, zarr_path, changes)
        except errors.Unavailable:
            raise
        except (errors.DandiFSError, OSError) as exc:
            return str(exc)
        return None

    def _done(self, record_id: str) -> None:
        self._unlock(record_id)
        try:
            record = self._journal.update(record_id, phase=Phase.DONE)
        except KeyError:
            return
        self._journal.remove(record_id)
        self._spool.discard(Path(record.spool))
        self._finished(record)

    def _fail(self, files: dict[str, str], reason: str, batch: _Batch) -> None:
        log.error("upload of a Zarr's files failed: %s", reason)
        for file_key, record_id in files.items():
            batch.files.pop(file_key, None)
            self._unlock(record_id)
            try:
                record = self._journal.update(record_id, phase=Phase.FAILED, reason=reason)
            except KeyError:
                continue
            self._finished(record)
