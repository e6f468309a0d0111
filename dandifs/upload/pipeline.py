"""The way of one spooled file to an asset, step by step, each step journalled first.

digest -> `initialize` (or the blob the archive already has: its 409) -> the parts, in
parallel, to their presigned URLs -> `complete` and S3's CompleteMultipartUpload (its ETag
must be the digest) -> `validate` -> create the asset at the path, or replace the one there.

A process that stops anywhere (a crash, `kill -9`, an unmount) leaves the row in the
journal: the next `run` of it continues from the recorded step and sends only the parts S3
does not have yet.  The archive refusing (4xx) ends the upload as FAILED with the
archive's words; the archive or S3 being unavailable is retried with back-off, then FAILED
with the last cause.  The spooled bytes stay until the asset exists, whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from dandifs import errors
from dandifs.archive.client import ArchiveClient
from dandifs.archive.retry import Attempts, RetryPolicy, TransientFailure
from dandifs.archive.values import BlobExists, UploadedPart
from dandifs.concurrency import gather
from dandifs.upload.digest import dandi_etag
from dandifs.upload.journal import Journal, PlannedPart, UploadRecord
from dandifs.upload.spool import Spool
from dandifs.upload.state import Phase

log = logging.getLogger(__name__)

PARTS_AT_ONCE = 5
"""Parts of one file sent at once: dandi-cli's number of threads per asset."""

FILES_AT_ONCE = 8
"""Files uploaded at once (`cp -r` of a folder starts one upload per file): enough to
hide the archive's round trips per file, few enough not to flood it."""

STEP_PATIENCE = RetryPolicy(max_attempts=6, total_time=900.0, base_delay=2.0, max_delay=120.0)
"""How long a step waits out an unavailable archive (each attempt already retried per
request) before the upload is reported as failed; `dandifs uploads retry` starts it again."""

Describe = Callable[[Path, str, int, str], dict[str, Any]]
"""(spooled file, asset path, size, dandi-etag) -> the asset metadata to register."""



class Uploader:
    """Moves journalled uploads of one caller to the archive; one `run` per upload."""

    def __init__(
        self,
        archive: ArchiveClient,
        journal: Journal,
        spool: Spool,
        describe: Describe,
        *,
        registering: anyio.Lock | None = None,
        parts_at_once: int = PARTS_AT_ONCE,
        files_at_once: int = FILES_AT_ONCE,
        patience: RetryPolicy = STEP_PATIENCE,
    ) -> None:
        """`registering` is held while the asset is made, so that a rename or delete of the
        same path by the core cannot interleave with it."""
        self._archive = archive
        self._journal = journal
        self._spool = spool
        self._describe = describe
        self._registering = registering or anyio.Lock()
        self._parts_at_once = parts_at_once
        self._files = anyio.CapacityLimiter(files_at_once)
        self._patience = patience

    async def run(self, record_id: str) -> UploadRecord:
        """Drive the upload to DONE (spool removed) or FAILED (spool kept, reason given);
        `progress` sees the row after every step and part."""
        async with self._files:
            return await self._run(record_id)

    async def _run(self, record_id: str) -> UploadRecord:
        record = self._journal.get(record_id)
        attempts = Attempts(self._patience, f"upload of {record.path}")
        while record.phase not in (Phase.DONE, Phase.FAILED):
            try:
                record = await self._step(record)
            except errors.Unavailable as exc:
                record = self._journal.update(record.id, reason=f"waiting: {exc}")
                try:
                    await attempts.failed(TransientFailure(str(exc)))
                except errors.Unavailable as final:
                    record = self._fail(record, str(final))
            except (errors.DandiFSError, ValueError, OSError) as exc:
                record = self._fail(record, str(exc))
            else:
                attempts.restart()
        return record

    def _fail(self, record: UploadRecord, reason: str) -> UploadRecord:
        log.error("upload of %s failed: %s (kept in %s)", record.path, reason, record.spool)
        return self._journal.update(
            record.id, phase=Phase.FAILED, reason=reason, attempts=record.attempts + 1
        )

    async def _step(self, record: UploadRecord) -> UploadRecord:
        if record.phase in (Phase.SPOOLED, Phase.HASHING):
            return await self._hash_and_initialize(record)
        if record.phase is Phase.UPLOADING:
            return await self._send_parts(record)
        if record.phase is Phase.VALIDATING:
            return await self._validate(record)
        if record.phase is Phase.REGISTERING:
            return await self._register(record)
        raise ValueError(f"upload of {record.path}: cannot continue from {record.phase.value}")

    async def _hash_and_initialize(self, record: UploadRecord) -> UploadRecord:
        if record.digest is None:
            record = self._journal.update(record.id, phase=Phase.HASHING, reason=None)
            digest = await anyio.to_thread.run_sync(dandi_etag, record.spool)
            record = self._journal.update(record.id, digest=digest)
        assert record.digest is not None
        started = await self._archive.initialize_upload(
            record.dandiset_id, record.size, record.digest
        )
        if isinstance(started, BlobExists):
            log.info("%s: the archive has these bytes already (blob %s)", record.path, started.blob_id)
            return self._journal.update(
                record.id, phase=Phase.REGISTERING, blob_id=started.blob_id, reason=None
            )
        first_size = started.parts[0].size if started.parts else 0
        plan = tuple(
            PlannedPart(part.part_number, (part.part_number - 1) * first_size, part.size, part.upload_url)
            for part in started.parts
        )
        if sum(part.size for part in plan) != record.size:
            raise errors.UploadFailed(
                f"{record.path}: the archive planned parts for another size than {record.size} bytes"
            )
        return self._journal.update(
            record.id, phase=Phase.UPLOADING, upload_id=started.upload_id, plan=plan,
            parts_total=len(plan), reason=None,
        )

    async def _send_parts(self, record: UploadRecord) -> UploadRecord:
        missing = [part for part in record.plan if part.number not in record.parts]
        limiter = anyio.CapacityLimiter(self._parts_at_once)

        async def send(part: PlannedPart) -> None:
            async with limiter:
                etag = await self._archive.objects.put_file(
                    part.url, record.spool, part.offset, part.size
                )
                self._journal.part_done(record.id, part.number, etag)
                done = self._journal.get(record.id)
                log.info("%s: %d/%d parts sent", record.path, len(done.parts), done.parts_total)

        await gather(*(partial(send, part) for part in missing))
        record = self._journal.get(record.id)
        assert record.upload_id is not None
        uploaded = [
            UploadedPart(part_number=part.number, size=part.size, etag=record.parts[part.number])
            for part in record.plan
        ]
        try:
            completion = await self._archive.complete_upload(record.upload_id, uploaded)
        except errors.NotFound:
            log.warning("%s: the archive forgot upload %s; starting again", record.path, record.upload_id)
            return self._restart(record)
        etag = await self._archive.objects.complete_multipart(completion.complete_url, completion.body)
        if etag and etag != record.digest:
            self._restart(record)
            raise errors.UploadFailed(
                f"{record.path}: S3 assembled ETag {etag}, not the file's dandi-etag "
                f"{record.digest}: the spooled file changed while it was sent"
            )
        return self._journal.update(record.id, phase=Phase.VALIDATING, reason=None)

    def _restart(self, record: UploadRecord) -> UploadRecord:
        """Forget the archive's side of an upload (it will be initialized again)."""
        return self._journal.update(
            record.id, phase=Phase.SPOOLED, digest=None, upload_id=None, plan=(),
            parts_total=0, parts={},
        )

    async def _validate(self, record: UploadRecord) -> UploadRecord:
        assert record.upload_id is not None and record.digest is not None
        try:
            blob_id = (await self._archive.validate_upload(record.upload_id)).blob_id
        except errors.AlreadyExists:  # an identical blob landed meanwhile: use that one
            blob_id = (await self._archive.blob_by_digest(record.digest)).blob_id
        return self._journal.update(record.id, phase=Phase.REGISTERING, blob_id=blob_id, reason=None)

    async def _register(self, record: UploadRecord) -> UploadRecord:
        assert record.blob_id is not None and record.digest is not None
        async with self._registering:
            record = self._journal.get(record.id)  # the path may have been renamed meanwhile
            metadata = await anyio.to_thread.run_sync(
                self._describe, Path(record.spool), record.path, record.size, record.digest
            )
            asset_id = await self.place_asset(record.dandiset_id, record.path, metadata, record.blob_id)
            record = self._journal.update(
                record.id, phase=Phase.DONE, asset_id=asset_id, reason=None
            )
        log.info("%s: uploaded as asset %s", record.path, asset_id)
        self._spool.discard(Path(record.spool))
        return record

    async def place_asset(
        self, dandiset_id: str, path: str, metadata: dict[str, Any], blob_id: str
    ) -> str:
        """Create the asset at `path` on `blob_id`, or replace the one there; its id."""
        metadata = {**metadata, "path": path}
        for _ in range(3):  # another writer may create or delete the path between the calls
            try:
                existing = await self._archive.get_asset_by_path(dandiset_id, "draft", path)
            except errors.NotFound:
                try:
                    created = await self._archive.create_asset(dandiset_id, metadata, blob_id=blob_id)
                except errors.AlreadyExists as exc:
                    if "conflicts with existing" in str(exc):
                        raise
                    continue
                return created.asset_id
            try:
                replaced = await self._archive.replace_asset(
                    dandiset_id, existing.asset_id, metadata, blob_id=blob_id
                )
            except errors.NotFound:
                continue
            return replaced.asset_id
        raise errors.UploadFailed(f"{path}: the asset kept changing while it was registered")

