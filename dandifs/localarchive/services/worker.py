"""What the real archive's Celery jobs do, done by one background thread.

Blob SHA-256 digests, zarr ingestion, asset validation and draft validation all run here,
woken whenever a request changes something, so that a draft becomes `Valid` (publishable)
within moments of its last change, as it does on the real archive a little later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any

from dandifs.localarchive import metadata as md
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.services.assets import ASSET_SELECT, blob_key, full_metadata
from dandifs.localarchive.services.versions import identifier, render_metadata
from dandifs.localarchive.services.zarrs import ingest
from dandifs.localarchive.timestamps import api_time, utcnow

log = logging.getLogger(__name__)
_CHUNK = 8 * 1024 * 1024


def fill_sha256(ctx: ArchiveContext) -> None:
    """SHA-256 of new blobs, read from the store in ranges (never a whole blob in memory)."""
    for blob in ctx.db.all("SELECT id, blob_id, size FROM blobs WHERE sha256 IS NULL"):
        digest = hashlib.sha256()
        key = blob_key(blob["blob_id"])
        for start in range(0, blob["size"], _CHUNK):
            end = min(start + _CHUNK, blob["size"]) - 1
            digest.update(ctx.store.get_bytes(key, start=start, end=end))
        with ctx.db.tx() as conn:
            conn.execute(
                "UPDATE blobs SET sha256 = ? WHERE id = ?", (digest.hexdigest(), blob["id"])
            )


def ingest_uploaded_zarrs(ctx: ArchiveContext) -> None:
    for zarr in ctx.db.all("SELECT id FROM zarrs WHERE status = 'Uploaded'"):
        ingest(ctx, zarr["id"])


def _cache_key(metadata: dict[str, Any]) -> str:
    """Asset metadata without what differs between otherwise identical assets."""
    shared = {k: v for k, v in metadata.items() if k not in ("id", "identifier", "path",
                                                           "contentUrl")}
    return json.dumps(shared, sort_keys=True)


def validate_assets(ctx: ArchiveContext) -> None:
    """Validate pending assets whose digests are known (sha256 computed / zarr complete)."""
    rows = ctx.db.all(
        ASSET_SELECT + " WHERE a.status = 'Pending' AND a.published = 0"
        " AND (b.sha256 IS NOT NULL OR z.status = 'Complete')"
    )
    verdicts: dict[str, list[dict[str, str]]] = {}
    updates = []
    for row in rows:
        metadata = full_metadata(ctx, row)
        key = _cache_key(metadata)
        if key not in verdicts:
            verdicts[key] = md.asset_validation_errors(ctx.settings, metadata)
        errors = verdicts[key]
        updates.append(("Invalid" if errors else "Valid", json.dumps(errors), row["id"]))
    if updates:
        with ctx.db.tx() as conn:
            conn.executemany(
                "UPDATE assets SET status = ?, validation_errors = ? WHERE id = ?"
                " AND status = 'Pending'",
                updates,
            )
            _revisit_drafts(conn, [asset_pk for _, _, asset_pk in updates])


def _revisit_drafts(conn: Any, asset_pks: list[int]) -> None:
    """Drafts holding newly validated assets are validated again (their summary changes)."""
    for start in range(0, len(asset_pks), 500):
        chunk = asset_pks[start: start + 500]
        conn.execute(
            "UPDATE versions SET status = 'Pending' WHERE version = 'draft'"
            " AND status IN ('Valid', 'Invalid') AND id IN (SELECT version_id FROM"
            f" version_assets WHERE asset IN ({','.join('?' * len(chunk))}))",
            chunk,
        )


def validate_drafts(ctx: ArchiveContext) -> None:
    pending = "SELECT * FROM versions WHERE version = 'draft' AND status = 'Pending'"
    for draft in ctx.db.all(pending):
        modified = draft["modified"]
        dandiset = ctx.db.one("SELECT * FROM dandisets WHERE id = ?", (draft["dandiset_id"],))
        rows = ctx.db.all(
            ASSET_SELECT + " JOIN version_assets va ON va.asset = a.id WHERE va.version_id = ?",
            (draft["id"],),
        )
        has_bytes = any((r["blob_size"] or r["zarr_size"] or 0) > 0 for r in rows)
        stored = md.strip_version_metadata(json.loads(draft["metadata"]))
        stored["assetsSummary"] = md.assets_summary(
            [full_metadata(ctx, r) for r in rows if r["status"] == "Valid"]
        )
        full = render_metadata(ctx, dandiset, version="draft", name=draft["name"], stored=stored)
        errors = md.version_validation_errors(
            ctx.settings,
            full,
            identifier=identifier(dandiset["id"]),
            has_files=bool(rows),
            has_bytes=has_bytes,
        )
        with ctx.db.tx() as conn:
            conn.execute(
                "UPDATE versions SET status = ?, validation_errors = ?, metadata = ?,"
                " modified = ? WHERE id = ? AND status = 'Pending' AND modified = ?",
                ("Invalid" if errors else "Valid", json.dumps(errors), json.dumps(full),
                 api_time(utcnow()), draft["id"], modified),
            )


def run_once(ctx: ArchiveContext) -> None:
    """One pass of every background job, in dependency order."""
    fill_sha256(ctx)
    ingest_uploaded_zarrs(ctx)
    validate_assets(ctx)
    validate_drafts(ctx)


class Worker:
    """The thread that runs `run_once` whenever it is woken (and every few seconds)."""

    def __init__(self, ctx: ArchiveContext, *, idle_seconds: float = 5.0) -> None:
        self._ctx = ctx
        self._idle = idle_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="archive-worker", daemon=True)

    def start(self) -> None:
        self._ctx.wake_worker()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._ctx.wake_worker()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._ctx.pending_work.wait(self._idle)
            self._ctx.pending_work.clear()
            if self._stopping.is_set():
                return
            # Like the real archive's validation interval: changes wait a moment before the
            # jobs see them (0 by default; tests use it to observe the `Pending` states).
            if self._stopping.wait(self._ctx.settings.validation_delay):
                return
            try:
                run_once(self._ctx)
            except Exception:  # noqa: BLE001 - a failed pass is retried on the next wake-up
                log.exception("background pass failed")
