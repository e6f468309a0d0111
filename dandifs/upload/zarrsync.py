"""Changes to one Zarr asset in a draft, sent the way the archive takes them: its files
one object each through `/zarr/{id}/files/` (presigned PUTs with their `Content-MD5`),
deletions in batches, then `finalize`, the archive's ingestion awaited, and its checksum
compared with zarr-checksum's of what the Zarr must now hold.  Only the files that changed
are sent: rewriting one chunk of a large Zarr uploads that chunk.

A new Zarr gets its asset once its files are in and the checksum is right, so no partial
Zarr asset ever appears in the draft.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from zarr_checksum import compute_zarr_checksum
from zarr_checksum.generators import ZarrArchiveFile

from dandifs import errors
from dandifs.archive.client import ArchiveClient
from dandifs.concurrency import gather
from dandifs.model import ZarrStatus
from dandifs.upload.metadata import zarr_asset_metadata

log = logging.getLogger(__name__)

URLS_PER_REQUEST = 255  # dandi-cli's batch of upload URLs
DELETES_PER_REQUEST = 100  # and of deletions
PUTS_AT_ONCE = 8
JSON_NAMES = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"})
INGEST_POLL = (0.2, 2.0)
"""First and longest pause between polls of an ingesting Zarr (dandi-cli polls every 2 s)."""


@dataclass(frozen=True)
class LocalObject:
    key: str
    path: Path
    size: int
    md5: str


def describe_file(key: str, path: Path) -> LocalObject:
    """A spooled file as the Zarr will hold it: its size and MD5 (blocking: a thread)."""
    digest = hashlib.md5()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return LocalObject(key, path, size, digest.hexdigest())


class ZarrSync:
    """Applies file changes to a Zarr asset of a draft."""

    def __init__(self, archive: ArchiveClient, *, puts_at_once: int = PUTS_AT_ONCE) -> None:
        self._archive = archive
        self._puts_at_once = puts_at_once

    async def push(
        self, dandiset_id: str, zarr_path: str, changes: Mapping[str, Path | None]
    ) -> str:
        """Write `changes` (key inside the Zarr -> spooled file, or None to delete it) into
        the Zarr asset at `zarr_path`, making it if there is none; its asset id ("" when
        the last file went and the asset with it)."""
        asset = await self._existing_asset(dandiset_id, zarr_path)
        if asset is not None and asset.zarr is None:
            raise errors.NotADirectory(f"{zarr_path} is a file in the archive, not a Zarr")
        zarr_id = asset.zarr if asset is not None else await self._new_zarr(dandiset_id, zarr_path)
        assert zarr_id is not None
        remote = {item.key: item for item in await self._archive.list_zarr_files(zarr_id)}
        uploads = [
            await anyio.to_thread.run_sync(describe_file, key, path)
            for key, path in sorted(changes.items())
            if path is not None
        ]
        uploads = [item for item in uploads if _changed(item, remote.get(item.key))]
        deletions = sorted(key for key, path in changes.items() if path is None and key in remote)
        expected = {key: (item.size, item.etag) for key, item in remote.items()}
        for key in deletions:
            del expected[key]
        for item in uploads:
            expected[item.key] = (item.size, item.md5)
        if not expected:  # every file deleted: so is the asset (the archive keeps no empty Zarr)
            for start in range(0, len(deletions), DELETES_PER_REQUEST):
                await self._archive.delete_zarr_files(zarr_id, deletions[start : start + DELETES_PER_REQUEST])
            if asset is not None:
                await self._archive.delete_asset(dandiset_id, asset.asset_id)
                log.info("%s: its last file deleted, so is the Zarr asset", zarr_path)
            return ""
        changed = bool(uploads or deletions)
        if changed:
            await self._wait_until_writable(zarr_id)
            for start in range(0, len(deletions), DELETES_PER_REQUEST):
                await self._archive.delete_zarr_files(zarr_id, deletions[start : start + DELETES_PER_REQUEST])
            for start in range(0, len(uploads), URLS_PER_REQUEST):
                await self._send(zarr_id, uploads[start : start + URLS_PER_REQUEST])
            await self._archive.finalize_zarr(zarr_id)
            log.info("%s: %d files sent, %d deleted; the archive ingests it", zarr_path, len(uploads), len(deletions))
        checksum = await self._ingested_checksum(zarr_id, zarr_path, changed)
        wanted = str(compute_zarr_checksum(
            ZarrArchiveFile(path=Path(key), size=size, digest=md5)
            for key, (size, md5) in expected.items()
        ))
        if checksum != wanted:
            raise errors.UploadFailed(
                f"{zarr_path}: the archive's checksum {checksum} is not {wanted}, the checksum "
                "of the files written; the files are kept for a retry"
            )
        if asset is not None:
            return asset.asset_id
        size = sum(size for size, _ in expected.values())
        return await self._register(dandiset_id, zarr_path, zarr_id, checksum, size)

    async def _existing_asset(self, dandiset_id: str, zarr_path: str) -> Any:
        try:
            return await self._archive.get_asset_by_path(dandiset_id, "draft", zarr_path)
        except errors.NotFound:
            return None

    async def _new_zarr(self, dandiset_id: str, zarr_path: str) -> str:
        """A Zarr for the asset path (dandi-cli names it so), or the one an earlier try made."""
        for zarr in await self._archive.list_zarrs(dandiset_id=dandiset_id, name=zarr_path):
            return zarr.zarr_id
        return (await self._archive.create_zarr(zarr_path, dandiset_id)).zarr_id

    async def _wait_until_writable(self, zarr_id: str) -> None:
        """Files can change only while the Zarr is not being ingested."""
        pause = INGEST_POLL[0]
        while (await self._archive.get_zarr(zarr_id)).status in (ZarrStatus.UPLOADED, ZarrStatus.INGESTING):
            await anyio.sleep(pause)
            pause = min(pause * 2, INGEST_POLL[1])

    async def _send(self, zarr_id: str, batch: list[LocalObject]) -> None:
        md5s = [base64.b64encode(bytes.fromhex(item.md5)).decode() for item in batch]
        urls = await self._archive.zarr_upload_urls(zarr_id, list(zip((i.key for i in batch), md5s)))
        limiter = anyio.CapacityLimiter(self._puts_at_once)

        async def put(item: LocalObject, url: str, md5: str) -> None:
            headers = {"Content-MD5": md5}
            if item.key.rsplit("/", 1)[-1] in JSON_NAMES:
                headers["Content-Type"] = "application/json"
            async with limiter:
                etag = await self._archive.objects.put_file(url, item.path, 0, item.size, headers=headers)
            if etag and etag != item.md5:
                raise errors.UploadFailed(f"{item.key}: S3 stored MD5 {etag}, not {item.md5}")

        await gather(*(partial(put, item, url, md5) for item, url, md5 in zip(batch, urls, md5s)))

    async def _ingested_checksum(self, zarr_id: str, zarr_path: str, changed: bool) -> str | None:
        pause = INGEST_POLL[0]
        while True:
            zarr = await self._archive.get_zarr(zarr_id)
            if zarr.status is ZarrStatus.COMPLETE:
                return zarr.checksum
            if zarr.status is ZarrStatus.PENDING and not changed:
                await self._archive.finalize_zarr(zarr_id)  # an earlier try stopped before it
            await anyio.sleep(pause)
            pause = min(pause * 2, INGEST_POLL[1])

    async def _register(
        self, dandiset_id: str, zarr_path: str, zarr_id: str, checksum: str | None, size: int
    ) -> str:
        metadata = zarr_asset_metadata(zarr_path, size=size, checksum=checksum or "")
        asset = await self._archive.create_asset(dandiset_id, metadata, zarr_id=zarr_id)
        log.info("%s: registered as Zarr asset %s", zarr_path, asset.asset_id)
        return asset.asset_id


def _changed(local: LocalObject, remote: Any) -> bool:
    return remote is None or remote.etag != local.md5 or remote.size != local.size

