"""Writing into drafts: what this core has written that the archive does not show yet, and
the changes of draft content (delete, rename, copy, folders) made through the archive.

A file written at a draft path is a `Pending` from its creation until the archive has the
asset: listed at its path (its size is the bytes written so far), read from the spool,
its state on `Entry.upload`.  The last writer's close commits the spool and hands it to an
upload; a later write to the same path starts from those bytes in a new spool (copy on
write), so an upload in flight never sees bytes change under it.  Opening an archive file
for writing copies nothing until the first write (h5py opens files `r+` to read them).

Names that the archive never gets (hidden files: editors' swap files, rsync's temporary
files, Finder's `._*`) are kept on this machine, as `dandi upload` skips them; renaming
one to a visible name uploads it.  Empty files are kept too: the archive holds no empty
blob.  Folders made here exist until a file lands in them (the archive has no empty
folders).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import anyio

from dandifs import errors
from dandifs.archive.client import ArchiveClient
from dandifs.namespace import names
from dandifs.namespace.routes import InVersion, parse_path
from dandifs.namespace.writable import read_only_reason
from dandifs.resolve import Entry, EntryKind, Resolver
from dandifs.upload.journal import Journal, UploadRecord, owner_of
from dandifs.namespace.assetpaths import check_asset_path
from dandifs.upload.pipeline import Uploader
from dandifs.upload.spool import Spool, SpoolFile, UploadLock
from dandifs.upload.state import Phase, UploadState
from dandifs.upload.zarrsync import ZarrSync
from dandifs.core.filereader import FileReader
from dandifs.core.zarrbatches import ZarrBatches

log = logging.getLogger(__name__)

COPY_CHUNK = 8 * 1024 * 1024
"""Bytes copied at a time into a spool from an archive file opened for writing."""

RETIRE_TRIES, RETIRE_PAUSE = 40, 0.25
"""How long an uploaded file stays shown from here while the archive's listing lacks it."""

ReaderOpener = Callable[[Entry], Awaitable[FileReader]]

ZARR_EXCLUDED = frozenset({".dandi", ".datalad", ".git", ".gitattributes", ".gitmodules"})
"""Names inside a Zarr that `dandi upload` leaves out (a Zarr's own `.zarray` goes)."""


@dataclass(frozen=True)
class Target:
    """A writable draft path: its namespace path, dandiset and asset path; `zarr` is the
    asset path of the Zarr it is inside, if any (a folder `*.zarr`/`*.ngff` in a draft
    is a Zarr)."""

    path: str
    dandiset_id: str
    asset_path: str
    zarr: str | None = None

    @classmethod
    def of(cls, path: str, dandiset_id: str, asset_path: str) -> Target:
        segments = asset_path.split("/")
        zarr = next(
            ("/".join(segments[: i + 1]) for i, name in enumerate(segments[:-1]) if names.is_zarr_name(name)),
            None,
        )
        return cls(path, dandiset_id, asset_path, zarr)

    @property
    def name(self) -> str:
        return self.asset_path.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        """The path inside its Zarr."""
        assert self.zarr is not None
        return self.asset_path[len(self.zarr) + 1 :]

    @property
    def is_zarr_root(self) -> bool:
        return self.zarr is None and names.is_zarr_name(self.name)

    @property
    def kept_local(self) -> bool:
        """Hidden names never go to the archive (`dandi upload` skips them too), except
        inside a Zarr, whose metadata files are hidden names."""
        if self.zarr is not None:
            return any(segment in ZARR_EXCLUDED for segment in self.key.split("/"))
        return any(segment.startswith(".") for segment in self.asset_path.split("/"))


@dataclass
class Upload:
    """One journalled upload running (or run) in the background."""

    record_id: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    final: UploadRecord | None = None


@dataclass
class Pending:
    """A file at a draft path whose current bytes are on this machine."""

    target: Target
    spool: SpoolFile | None = None
    """The bytes being written (None until the first write: see `base`)."""
    base_fd: int | None = None
    """Read-only descriptor of the bytes a writer starts from when they are spooled (a
    committed spool handed to an upload): it stays readable after the spool is removed."""
    base_entry: Entry | None = None
    """The archive file a writer starts from, copied at its first write."""
    writers: int = 0
    dirty: bool = False
    unlinked: bool = False
    upload: Upload | None = None
    phase: Phase = Phase.WRITING
    mtime: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def untouched(self) -> bool:
        """Opened for writing on an archive file and not written: the archive's bytes still."""
        return (
            self.spool is None and self.base_fd is None and self.upload is None
            and self.base_entry is not None
        )

    def release_base(self) -> None:
        if self.base_fd is not None:
            os.close(self.base_fd)
            self.base_fd = None
        self.base_entry = None


class Drafts:
    """The write side of one core (one caller's token)."""

    def __init__(
        self,
        archive: ArchiveClient,
        resolver: Resolver,
        spool: Spool,
        journal: Journal,
        uploader: Uploader,
        registering: anyio.Lock,
        tasks: anyio.abc.TaskGroup,
        open_archive: ReaderOpener,
    ) -> None:
        self._archive = archive
        self._resolver = resolver
        self._spool = spool
        self._journal = journal
        self._uploader = uploader
        self._registering = registering
        self._tasks = tasks
        self._open_archive = open_archive
        self._owner = owner_of(archive.token)
        self._pending: dict[str, Pending] = {}
        self._folders: set[str] = set()
        self._subscribers: list[Callable[[str], None]] = []
        self._me: dict | None = None
        self._rights: dict[str, bool] = {}
        self._running: set[str] = set()
        self._zarrs = ZarrBatches(
            ZarrSync(archive), journal, spool, tasks, self._zarr_file_finished,
            lambda dandiset_id, zarr: self._changed(f"/dandisets/{dandiset_id}/draft/{zarr}"),
        )
        self._idle = anyio.Event()
        self._idle.set()

    # -- what may be written --------------------------------------------------------------

    def target(self, path: str) -> Target:
        """The draft path `path` may be written at, or why not (ReadOnly, Authentication-
        Required, NameRefused)."""
        reason = read_only_reason(path)
        if reason is not None:
            raise errors.ReadOnly(reason)
        if not self._archive.authenticated:
            raise errors.AuthenticationRequired(
                f"{path}: writing to a draft needs an API token (DANDI_API_KEY or the keyring "
                "entry dandi-cli uses)"
            )
        route = parse_path(path)
        assert isinstance(route, InVersion)
        check_asset_path(route.relative)
        return Target.of(route.path, route.address.dandiset_id, route.relative)

    async def owned_target(self, path: str) -> Target:
        """`target(path)`, and the caller must own its dandiset (or be an admin): what
        the archive would refuse with 403 is refused before any byte is spooled."""
        target = self.target(path)
        allowed = self._rights.get(target.dandiset_id)
        if allowed is None:
            if self._me is None:
                self._me = await self._archive.current_user()
            owners = await self._archive.dandiset_owners(target.dandiset_id)
            allowed = bool(self._me.get("admin")) or self._me.get("username") in owners
            self._rights[target.dandiset_id] = allowed
        if not allowed:
            raise errors.PermissionDenied(
                f"{path}: {self._me.get('username') if self._me else 'this token'} is not an "
                f"owner of dandiset {target.dandiset_id}, so the archive takes no changes to it "
                "from this token"
            )
        return target

    # -- what the overlay shows -----------------------------------------------------------

    def entry(self, path: str) -> Entry | None:
        """The entry this core shows at `path` that the archive may not: a pending file, a
        folder made here, or a folder holding pending files; None to ask the archive."""
        if not self._pending and not self._folders:
            return None
        pending = self._pending.get(path)
        if pending is not None and self._finished_elsewhere(pending):
            self._forget(pending)
            pending = None
        if pending is not None and not pending.untouched:
            return self._file_entry(pending)
        prefix = path.rstrip("/") + "/"
        if path in self._folders or any(p.startswith(prefix) for p in self._pending):
            route = parse_path(path)
            if isinstance(route, InVersion):  # a version's root is the archive's to show
                return self._folder_entry(route)
        return None

    def _finished_elsewhere(self, pending: Pending) -> bool:
        """An upload another process ran and finished: its row is gone, the archive has it."""
        upload = pending.upload
        if upload is None or upload.record_id in self._running or upload.finished.is_set():
            return False
        try:
            self._journal.get(upload.record_id)
        except KeyError:
            return pending.spool is None and pending.writers == 0
        return False

    def children(self, folder: str) -> list[Entry]:
        """The pending files and local folders directly inside `folder`."""
        prefix = folder.rstrip("/") + "/"
        found: dict[str, Entry] = {}
        for path in [*self._pending, *self._folders]:
            if not path.startswith(prefix):
                continue
            name = path[len(prefix):].split("/", 1)[0]
            child = prefix + name
            if name not in found:
                entry = self.entry(child)
                if entry is not None:
                    found[name] = entry
        return list(found.values())

    def pending(self, path: str) -> Pending | None:
        return self._pending.get(path)

    def open_reader(self, pending: Pending) -> PendingReader:
        """A reader of the pending file's bytes with its own descriptor, so it keeps
        reading what it opened after the upload ends and the spool is removed."""
        if pending.spool is not None:
            return PendingReader(os.open(pending.spool.path, os.O_RDONLY | os.O_CLOEXEC))
        if pending.base_fd is not None:
            return PendingReader(os.dup(pending.base_fd))
        return PendingReader(None)

    def _file_entry(self, pending: Pending) -> Entry:
        return Entry(
            path=pending.target.path,
            kind=EntryKind.FILE,
            size=self._size(pending),
            mtime=pending.mtime,
            ctime=pending.mtime,
            dandiset_id=pending.target.dandiset_id,
            version=names.DRAFT,
            upload=self._state(pending) if not self._uploaded(pending) else None,
        )

    def _folder_entry(self, route: InVersion) -> Entry:
        return Entry(
            path=route.path,
            kind=EntryKind.FOLDER,
            dandiset_id=route.address.dandiset_id,
            version=names.DRAFT,
            upload=UploadState(Phase.WRITING, reason="a folder on this machine until a file lands in it"),
        )

    def _size(self, pending: Pending) -> int:
        if pending.spool is not None:
            return pending.spool.size
        if pending.base_fd is not None:
            return os.fstat(pending.base_fd).st_size
        if pending.base_entry is not None:
            return pending.base_entry.size
        if pending.upload is not None:
            return self._journal.get(pending.upload.record_id).size
        return 0

    def _state(self, pending: Pending) -> UploadState:
        if pending.writers and pending.dirty:
            return UploadState(Phase.WRITING)
        if pending.upload is not None:
            try:
                return self._journal.get(pending.upload.record_id).state
            except KeyError:
                pass
        if pending.phase is Phase.LOCAL:
            return UploadState(Phase.LOCAL)
        return UploadState(pending.phase)

    def upload_state(self, path: str) -> UploadState | None:
        pending = self._pending.get(path)
        if pending is None or self._uploaded(pending):
            return None
        return self._state(pending)

    @staticmethod
    def _uploaded(pending: Pending) -> bool:
        """In the archive, and still here for a handle open on it."""
        return pending.phase is Phase.DONE and pending.upload is None and not pending.dirty

    # -- writing files --------------------------------------------------------------------

    def writer(self, pending: Pending) -> FileWriter:
        pending.writers += 1
        return FileWriter(self, pending)

    def pending_for(self, target: Target, base: Entry | None) -> Pending:
        """The pending file at `target` (shared by every writer of that path)."""
        pending = self._pending.get(target.path)
        if pending is None:
            pending = Pending(target, base_entry=base)
            self._pending[target.path] = pending
        elif pending.spool is None and pending.base_fd is None and pending.upload is not None:
            record = self._journal.get(pending.upload.record_id)
            if Path(record.spool).exists():
                pending.base_fd = os.open(record.spool, os.O_RDONLY | os.O_CLOEXEC)
        return pending

    async def spooled(self, pending: Pending) -> SpoolFile:
        """The spool a write goes to, made (and filled from the base) at the first write."""
        if pending.spool is not None:
            return pending.spool
        spool = self._spool.create(pending.target.name)
        try:
            if pending.base_fd is not None:
                await anyio.to_thread.run_sync(_copy_descriptor, pending.base_fd, spool)
            elif pending.base_entry is not None:
                await self._copy_entry(pending.base_entry, spool)
        except BaseException:
            spool.close()
            self._spool.discard(spool.path)
            raise
        if pending.spool is not None:  # another writer won the race: use its spool
            spool.close()
            self._spool.discard(spool.path)
            return pending.spool
        pending.release_base()
        pending.spool = spool
        return spool

    async def _copy_entry(self, entry: Entry, spool: SpoolFile) -> None:
        reader = await self._open_archive(entry)
        try:
            offset = 0
            while offset < entry.size:
                data = await reader.read(offset, min(COPY_CHUNK, entry.size - offset))
                if not data:
                    raise errors.Unavailable(f"{entry.path}: the archive's bytes ended early")
                spool.write(offset, data)
                offset += len(data)
        finally:
            await reader.aclose()

    async def read(self, pending: Pending, offset: int, size: int) -> bytes:
        if pending.spool is not None:
            return pending.spool.read(offset, size)
        if pending.base_fd is not None:
            return os.pread(pending.base_fd, size, offset)
        if pending.base_entry is not None:
            reader = await self._open_archive(pending.base_entry)
            try:
                return await reader.read(offset, size)
            finally:
                await reader.aclose()
        return b""

    async def commit(self, pending: Pending) -> None:
        """Hand what was written to an upload (or keep it here: empty, hidden, unlinked)."""
        if pending.unlinked:
            self._forget(pending)
            return
        spool = pending.spool
        if spool is None or not pending.dirty:
            nothing_here = spool is None and pending.upload is None
            if pending.writers == 0 and nothing_here:
                self._forget(pending)  # opened and not written, or uploaded already
                if pending.phase is Phase.DONE:
                    self._changed(pending.target.path)
            return
        await anyio.to_thread.run_sync(spool.commit)
        digest = spool.digest() if spool.hashed_as_written and spool.size else None
        size = spool.size
        pending.dirty = False
        if size == 0 or pending.target.kept_local:
            pending.phase = Phase.EMPTY if size == 0 else Phase.LOCAL
            self._supersede(pending, None)
            return
        spool.close()
        pending.spool = None
        pending.base_fd = os.open(spool.path, os.O_RDONLY | os.O_CLOEXEC)
        record = self._journal.add(
            owner=self._owner, dandiset_id=pending.target.dandiset_id,
            path=pending.target.asset_path, spool=str(spool.path), size=size,
            zarr=pending.target.zarr,
        )
        if digest is not None and record.zarr is None:
            self._journal.update(record.id, digest=digest)
        self._supersede(pending, Upload(record.id))

    def _supersede(self, pending: Pending, upload: Upload | None) -> None:
        """`upload` replaces the one of `pending` (an earlier version of the same file)."""
        earlier = pending.upload
        pending.upload = upload
        if earlier is not None:
            self._drop(earlier)
        if upload is not None:
            pending.phase = Phase.SPOOLED
            self._start(pending, upload)

    def _start(self, pending: Pending, upload: Upload) -> None:
        if pending.target.zarr is not None:
            self._zarrs.add(self._journal.get(upload.record_id))
            return
        self._running.add(upload.record_id)
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._tasks.start_soon(self._upload, pending, upload)

    def _drop(self, upload: Upload) -> None:
        """Stop an upload and remove its row and spooled bytes (a newer version replaced it,
        or the file was deleted)."""
        upload.scope.cancel()
        try:
            record = self._journal.get(upload.record_id)
        except KeyError:
            return
        if record.zarr is not None and not self._zarrs.withdraw(record.id):
            return  # being sent with its Zarr's batch, which removes it when done
        self._journal.remove(record.id)
        self._spool.discard(Path(record.spool))

    async def _upload(self, pending: Pending, upload: Upload) -> None:
        lock = self._lock_of(upload.record_id)
        if lock is None:  # another process sends it; the journal shows how far it got
            self._running.discard(upload.record_id)
            if not self._running:
                self._idle.set()
            return
        try:
            with upload.scope:
                final = await self._uploader.run(upload.record_id)
                if final.phase is Phase.DONE:
                    self._journal.remove(final.id)
                    await self._retire(upload, final)
                upload.final = final
        except KeyError:
            pass  # its row was removed: a newer version or a delete replaced this upload
        except Exception:
            log.exception("the upload of %s stopped", pending.target.path)
        finally:
            lock.release()
            self._running.discard(upload.record_id)
            if not self._running:
                self._idle.set()
            upload.finished.set()

    async def _retire(self, upload: Upload, final: UploadRecord) -> None:
        """An upload is in the archive: stop showing its file from here, once the
        archive's listing has it (a listing fetched, or answered, from before the asset
        was registered would otherwise find neither for a moment).  Waiters of `sync`
        return after this, so what they see next is the archive's asset."""
        path = parse_path(f"/dandisets/{final.dandiset_id}/draft/{final.path}").path
        self._resolver.invalidate(path)
        pending = self._pending.get(path)
        if pending is None or pending.upload is not upload:
            self._changed(path)
            return
        pending.phase = Phase.REGISTERING  # to its watchers, until the listing has it
        for _ in range(RETIRE_TRIES):
            try:
                await self._resolver.stat(path)
                break
            except errors.NotFound:
                self._resolver.invalidate(path)
                await anyio.sleep(RETIRE_PAUSE)
        else:
            log.warning("%s: uploaded, but the archive does not list it yet", path)
        if self._pending.get(path) is pending and pending.upload is upload:
            pending.upload = None
            pending.phase = Phase.DONE
            if pending.spool is None and pending.writers == 0:
                self._forget(pending)
        self._changed(path)  # what front ends cached of it was the file shown from here

    def _lock_of(self, record_id: str) -> UploadLock | None:
        try:
            return UploadLock.take(Path(self._journal.get(record_id).spool))
        except KeyError:
            return None

    def _zarr_file_finished(self, record: UploadRecord) -> None:
        """A file of a Zarr batch is in the archive (DONE) or its batch failed."""
        path = parse_path(f"/dandisets/{record.dandiset_id}/draft/{record.path}").path
        pending = self._pending.get(path)
        if pending is None or pending.upload is None or pending.upload.record_id != record.id:
            self._changed(path)
            return
        upload = pending.upload
        if record.phase is not Phase.DONE:
            upload.final = record
            upload.finished.set()
            return

        async def retire() -> None:
            try:
                await self._retire(upload, record)
            finally:
                upload.final = record
                upload.finished.set()

        self._tasks.start_soon(retire)

    async def flush_zarr(self, target: Target) -> None:
        """Send what waits for the Zarr `target` is (or is in) and wait for it."""
        zarr = target.asset_path if target.is_zarr_root else target.zarr
        if zarr is not None:
            await self._zarrs.flush(target.dandiset_id, zarr)

    def move_in_zarr(self, old: Target, new: Target) -> bool:
        """Move a pending file of a Zarr to another key of it without sending anything:
        True if it was here only (written, or waiting in its batch)."""
        pending = self._pending.get(old.path)
        if pending is None or old.zarr is None or new.zarr != old.zarr:
            return False
        if pending.upload is not None:
            if not self._zarrs.rekey(pending.upload.record_id, old.zarr, new.key):
                return False
        elif pending.phase is not Phase.LOCAL and not pending.dirty and pending.writers == 0:
            return False
        del self._pending[old.path]
        pending.target = new
        self._pending[new.path] = pending
        return True

    def delete_in_zarr(self, target: Target) -> None:
        assert target.zarr is not None
        self._zarrs.delete(target.dandiset_id, target.zarr, target.key)

    def abandon(self, pending: Pending) -> None:
        """Drop uncommitted bytes of a pending file; an upload it has (an earlier version)
        goes on."""
        if pending.spool is not None and pending.dirty:
            pending.spool.close()
            self._spool.discard(pending.spool.path)
            pending.spool = None
            pending.dirty = False
        if pending.upload is None and pending.phase not in (Phase.EMPTY, Phase.LOCAL):
            self._forget(pending)

    def _forget(self, pending: Pending) -> None:
        pending.release_base()
        if pending.spool is not None:
            pending.spool.close()
            self._spool.discard(pending.spool.path)
            pending.spool = None
        if self._pending.get(pending.target.path) is pending:
            del self._pending[pending.target.path]

    def set_mtime(self, pending: Pending, mtime: datetime) -> None:
        pending.mtime = mtime
        spooled = pending.spool.path if pending.spool is not None else None
        if spooled is None and pending.upload is not None:
            try:
                spooled = Path(self._journal.get(pending.upload.record_id).spool)
            except KeyError:
                spooled = None
        if spooled is not None:
            stamp = mtime.timestamp()
            try:
                os.utime(spooled, (stamp, stamp))
            except FileNotFoundError:
                pass  # uploaded meanwhile

    async def wait_for_upload(self, pending: Pending) -> None:
        upload = pending.upload
        if upload is None:
            return
        await self.flush_zarr(pending.target)
        await upload.finished.wait()
        final = upload.final
        if final is not None and final.phase is Phase.FAILED:
            raise errors.UploadFailed(
                f"{pending.target.path}: the upload failed: {final.reason}; the written bytes "
                "are kept (see `dandifs uploads`)"
            )

    # -- resuming what an earlier process left --------------------------------------------

    def resume(self) -> None:
        """Show and continue this caller's journalled uploads (failed ones are shown).

        An upload another live process is sending (a mount beside a server on the same
        cache directory) is shown as the journal says it goes, and left to that process:
        each upload's lock (`UploadLock`) lets one process send it."""
        for record in self._journal.owned_by(self._owner):
            if record.phase is Phase.DONE:
                self._journal.remove(record.id)
                continue
            path = parse_path(f"/dandisets/{record.dandiset_id}/draft/{record.path}").path
            target = Target.of(path, record.dandiset_id, record.path)
            pending = Pending(target, phase=record.phase, upload=Upload(record.id))
            if Path(record.spool).exists():
                pending.base_fd = os.open(record.spool, os.O_RDONLY | os.O_CLOEXEC)
            self._pending[path] = pending
            if record.phase is Phase.FAILED:
                pending.upload.finished.set()
                pending.upload.final = record
                log.warning("upload of %s failed earlier: %s", path, record.reason)
            else:
                log.info("resuming the upload of %s (%s)", path, record.state.describe())
                if record.zarr is not None:
                    self._journal.update(record.id, phase=Phase.SPOOLED)
                self._start(pending, pending.upload)

    def uploads(self) -> list[UploadRecord]:
        return [r for r in self._journal.owned_by(self._owner) if r.phase is not Phase.DONE]

    async def retry(self, record_id: str) -> None:
        record = self._own(record_id)
        if record.id in self._running:
            return
        resume_at = (
            Phase.REGISTERING if record.blob_id
            else Phase.UPLOADING if record.upload_id and record.zarr is None
            else Phase.SPOOLED
        )
        self._journal.update(record.id, phase=resume_at, reason=None)
        path = parse_path(f"/dandisets/{record.dandiset_id}/draft/{record.path}").path
        pending = self._pending.get(path) or Pending(Target.of(path, record.dandiset_id, record.path))
        self._pending[path] = pending
        pending.upload = Upload(record.id)
        self._start(pending, pending.upload)

    def discard(self, record_id: str) -> None:
        """Give up an upload: its row and spooled bytes go, the archive keeps what it has."""
        record = self._own(record_id)
        for pending in list(self._pending.values()):
            if pending.upload is not None and pending.upload.record_id == record.id:
                self._drop(pending.upload)
                pending.upload = None
                if pending.spool is None and pending.writers == 0:
                    self._forget(pending)
                return
        self._drop(Upload(record.id))

    def _own(self, record_id: str) -> UploadRecord:
        try:
            record = self._journal.get(record_id)
        except KeyError:
            raise errors.NotFound(f"no upload {record_id} in the journal") from None
        if record.owner != self._owner:
            raise errors.PermissionDenied(f"upload {record_id} was written with another token")
        return record

    async def drain(self, timeout: float | None) -> bool:
        with anyio.move_on_after(timeout):
            await self._zarrs.flush_all()
            await self._idle.wait()
        return not self._running and not self._zarrs.busy()

    # -- changes of names -----------------------------------------------------------------

    def subscribe(self, callback: Callable[[str], None]) -> None:
        self._subscribers.append(callback)

    def _changed(self, path: str) -> None:
        self._resolver.invalidate(path)
        for callback in self._subscribers:
            try:
                callback(path)
            except Exception:
                log.exception("a subscriber failed on the change of %s", path)

    def add_folder(self, path: str) -> None:
        self._folders.add(path)

    def remove_local(self, path: str) -> bool:
        """Forget a pending file (dropping its upload) or an empty local folder at `path`."""
        pending = self._pending.get(path)
        if pending is not None:
            if pending.upload is not None:
                self._drop(pending.upload)
                pending.upload = None
            if pending.writers:
                pending.unlinked = True
                del self._pending[path]
            else:
                self._forget(pending)
            return True
        if path in self._folders:
            self._folders.discard(path)
            return True
        return False

    def move_local(self, old: str, new: Target) -> None:
        """Move the pending files and local folders at or under `old` to `new`."""
        prefix = old.rstrip("/") + "/"
        for path in [p for p in self._pending if p == old or p.startswith(prefix)]:
            pending = self._pending.pop(path)
            moved = new.path + path[len(old):]
            asset_path = new.asset_path + path[len(old):]
            was_local = pending.target.kept_local
            pending.target = Target.of(moved, new.dandiset_id, asset_path)
            self._pending[moved] = pending
            if pending.upload is not None:
                self._journal.update(pending.upload.record_id, path=asset_path)
            elif was_local and not pending.target.kept_local and pending.phase is Phase.LOCAL:
                pending.dirty = pending.spool is not None
        for path in [p for p in self._folders if p == old or p.startswith(prefix)]:
            self._folders.discard(path)
            self._folders.add(new.path + path[len(old):])

    async def upload_renamed(self, path: str) -> None:
        """A hidden file renamed to a visible name starts its upload."""
        pending = self._pending.get(path)
        if pending is not None and pending.dirty and pending.writers == 0:
            await self.commit(pending)

    @property
    def registering(self) -> anyio.Lock:
        return self._registering

    def changed(self, path: str) -> None:
        self._changed(path)


class FileWriter:
    """One open handle that writes a draft file; the last close starts the upload."""

    def __init__(self, drafts: Drafts, pending: Pending) -> None:
        self._drafts = drafts
        self._pending = pending
        self._closed = False

    @property
    def path(self) -> str:
        return self._pending.target.path

    @property
    def size(self) -> int:
        return self._drafts._size(self._pending)

    async def write(self, offset: int, data: bytes) -> int:
        spool = await self._drafts.spooled(self._pending)
        written = spool.write(offset, data)
        self._pending.dirty = True
        self._pending.mtime = datetime.now(timezone.utc)
        return written

    async def read(self, offset: int, size: int) -> bytes:
        return await self._drafts.read(self._pending, offset, size)

    async def truncate(self, size: int) -> None:
        spool = await self._drafts.spooled(self._pending)
        spool.truncate(size)
        self._pending.dirty = True
        self._pending.mtime = datetime.now(timezone.utc)

    def set_mtime(self, mtime: datetime) -> None:
        self._drafts.set_mtime(self._pending, mtime)

    async def sync(self) -> None:
        """Make what was written an asset now, and wait for it: UploadFailed with the reason."""
        await self._drafts.commit(self._pending)
        await self._drafts.wait_for_upload(self._pending)

    def abort(self) -> None:
        """Give up what this handle wrote (a PUT whose body ended short, a client that hung
        up): nothing is uploaded, and the path shows what it showed before."""
        if self._closed:
            return
        self._closed = True
        self._pending.writers -= 1
        if self._pending.writers == 0:
            self._drafts.abandon(self._pending)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pending.writers -= 1
        if self._pending.writers == 0:
            await self._drafts.commit(self._pending)


class PendingReader:
    """The bytes of a pending file as the core's readers give them (read/aclose)."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    async def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset) if self._fd is not None else b""

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _copy_descriptor(source_fd: int, spool: SpoolFile) -> None:
    offset = 0
    while True:
        data = os.pread(source_fd, COPY_CHUNK, offset)
        if not data:
            return
        spool.write(offset, data)
        offset += len(data)

