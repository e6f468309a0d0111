"""Zarr archives: creation, file uploads and deletions, finalize and ingestion."""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath
from typing import Any

from zarr_checksum import compute_zarr_checksum
from zarr_checksum.generators import ZarrArchiveFile

from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Row
from dandifs.localarchive.objectstore import ObjectHead
from dandifs.localarchive.problems import fields, forbidden, listing, message, not_found
from dandifs.localarchive.services.access import is_owner, visible
from dandifs.localarchive.services.assets import zarr_prefix
from dandifs.localarchive.services.versions import identifier, mark_draft_changed
from dandifs.localarchive.timestamps import api_time, utcnow

BUSY = "Zarr archive is currently ingesting or has already ingested"


def serialize_zarr(row: Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "dandiset": identifier(row["dandiset_id"]),
        "zarr_id": row["zarr_id"],
        "status": row["status"],
        "checksum": row["checksum"],
        "file_count": row["file_count"],
        "size": row["size"],
    }


def zarr_row(ctx: ArchiveContext, zarr_id: str) -> Row | None:
    return ctx.db.one("SELECT * FROM zarrs WHERE zarr_id = ?", (zarr_id,))


def visible_zarr(ctx: ArchiveContext, zarr_id: str, user) -> Row:
    row = zarr_row(ctx, zarr_id)
    if row is None:
        raise not_found()
    dandiset = ctx.db.one("SELECT * FROM dandisets WHERE id = ?", (row["dandiset_id"],))
    if not visible(ctx, dandiset, user):
        raise not_found()
    return row


def create_zarr(ctx: ArchiveContext, dandiset: Row, user, name: str) -> Row:
    if not is_owner(ctx, dandiset["id"], user):
        raise forbidden()
    if dandiset["embargo_status"] == "UNEMBARGOING":
        raise message(400, "Cannot add zarr to dandiset during unembargo")
    if ctx.db.one(
        "SELECT 1 FROM zarrs WHERE dandiset_id = ? AND name = ?", (dandiset["id"], name)
    ):
        raise fields(400, non_field_errors="The fields dandiset, name must make a unique set.")
    zarr_id = str(uuid.uuid4())
    embargoed = dandiset["embargo_status"] != "OPEN"
    with ctx.db.tx() as conn:
        conn.execute(
            "INSERT INTO zarrs (zarr_id, dandiset_id, name, embargoed, created)"
            " VALUES (?, ?, ?, ?, ?)",
            (zarr_id, dandiset["id"], name, int(embargoed), api_time(utcnow())),
        )
    if embargoed:
        ctx.store.set_private(zarr_prefix(zarr_id), True)
    return zarr_row(ctx, zarr_id)


def _require_changeable(ctx: ArchiveContext, zarr: Row, user) -> None:
    if zarr["status"] in ("Uploaded", "Ingesting"):
        raise message(400, BUSY)
    if not is_owner(ctx, zarr["dandiset_id"], user):
        raise forbidden()


def clean_file_path(path: str) -> str:
    """A path inside a zarr: `..` segments refused, a leading slash dropped."""
    if ".." in path.replace("\\", "/").split("/"):
        raise message(400, "Path may not contain '..' segments")
    return path.lstrip("/")


def _reset(ctx: ArchiveContext, zarr: Row) -> None:
    with ctx.db.tx() as conn:
        conn.execute(
            "UPDATE zarrs SET status = 'Pending', checksum = NULL, file_count = 0, size = 0"
            " WHERE id = ?",
            (zarr["id"],),
        )


def upload_urls(ctx: ArchiveContext, zarr: Row, user, files: list[dict[str, str]]) -> list[str]:
    _require_changeable(ctx, zarr, user)
    keys = [(zarr_prefix(zarr["zarr_id"]) + clean_file_path(f["path"]), f["base64md5"])
            for f in files]
    _reset(ctx, zarr)
    return [ctx.store.presign_put(key, content_md5_b64=md5) for key, md5 in keys]


def delete_files(ctx: ArchiveContext, zarr: Row, user, paths: list[str]) -> None:
    _require_changeable(ctx, zarr, user)
    keys = [zarr_prefix(zarr["zarr_id"]) + clean_file_path(p) for p in paths]
    for key in keys:
        if ctx.store.head(key) is None:
            raise listing(400, f"File {key} does not exist.")
    for key in keys:
        ctx.store.delete(key)
    _reset(ctx, zarr)


def finalize(ctx: ArchiveContext, zarr: Row, user) -> None:
    if not is_owner(ctx, zarr["dandiset_id"], user):
        raise forbidden()
    if zarr["status"] != "Pending":
        raise message(400, BUSY)
    with ctx.db.tx() as conn:
        conn.execute("UPDATE zarrs SET status = 'Uploaded' WHERE id = ?", (zarr["id"],))
    ctx.wake_worker()


def checksum_of(heads: list[ObjectHead], prefix: str) -> tuple[str, int, int]:
    """The dandi-zarr-checksum, file count and size of the objects under a zarr prefix."""
    digest = compute_zarr_checksum(
        ZarrArchiveFile(path=PurePosixPath(h.key[len(prefix):]), size=h.size, digest=h.etag)
        for h in heads
    )
    return str(digest), digest.count, digest.size


def ingest(ctx: ArchiveContext, zarr_pk: int) -> None:
    """List the zarr's objects, record its checksum, and send its draft back to `Pending`."""
    zarr = ctx.db.one("SELECT * FROM zarrs WHERE id = ?", (zarr_pk,))
    with ctx.db.tx() as conn:
        conn.execute("UPDATE zarrs SET status = 'Ingesting' WHERE id = ?", (zarr_pk,))
    prefix = zarr_prefix(zarr["zarr_id"])
    checksum, count, size = checksum_of(list(ctx.store.iter_objects(prefix)), prefix)
    with ctx.db.tx() as conn:
        conn.execute(
            "UPDATE zarrs SET status = 'Complete', checksum = ?, file_count = ?, size = ?"
            " WHERE id = ? AND status = 'Ingesting'",
            (checksum, count, size, zarr_pk),
        )
        conn.execute(
            "UPDATE assets SET status = 'Pending' WHERE zarr = ? AND published = 0", (zarr_pk,)
        )
        drafts = conn.execute(
            "SELECT DISTINCT va.version_id FROM version_assets va JOIN assets a ON a.id = va.asset"
            " JOIN versions v ON v.id = va.version_id WHERE a.zarr = ? AND v.version = 'draft'",
            (zarr_pk,),
        ).fetchall()
        for draft in drafts:
            mark_draft_changed(ctx, conn, draft["version_id"])


def files_page(
    ctx: ArchiveContext, zarr: Row, *, prefix: str, after: str, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the zarr's files (S3 order) and the key to continue after, if truncated."""
    base = zarr_prefix(zarr["zarr_id"])
    start_after = base + after if after else ""
    heads, truncated = ctx.store.list(base + prefix, start_after=start_after, limit=limit)
    results = [
        {
            "Key": h.key[len(base):],
            "LastModified": str(h.last_modified.replace(microsecond=0)),
            "ETag": h.etag,
            "Size": h.size,
        }
        for h in heads
    ]
    return results, (results[-1]["Key"] if truncated and results else None)
