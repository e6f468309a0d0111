"""Blob uploads (initialize → parts → complete → validate) and blob lookup by digest."""

from __future__ import annotations

import uuid
from typing import Any

from dandischema.digests.dandietag import PartGenerator

from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Row
from dandifs.localarchive.problems import ApiError, listing, message, not_found
from dandifs.localarchive.services.access import is_owner, visible
from dandifs.localarchive.services.assets import blob_key
from dandifs.localarchive.timestamps import api_time, utcnow


def serialize_blob(row: Row) -> dict[str, Any]:
    return {
        "blob_id": row["blob_id"],
        "etag": row["etag"],
        "sha256": row["sha256"],
        "size": row["size"],
    }


def blob_by_etag(ctx: ArchiveContext, etag: str) -> Row | None:
    return ctx.db.one("SELECT * FROM blobs WHERE etag = ?", (etag,))


def blob_by_sha256(ctx: ArchiveContext, sha256: str) -> Row | None:
    return ctx.db.one("SELECT * FROM blobs WHERE sha256 = ?", (sha256,))


def initialize(
    ctx: ArchiveContext, dandiset: Row | None, user, *, etag: str, size: int
) -> dict[str, Any]:
    """Start a multipart upload whose parts follow the dandi-etag layout."""
    if dandiset is None or not visible(ctx, dandiset, user):
        raise not_found()
    if not is_owner(ctx, dandiset["id"], user):
        raise message(403, "Action not allowed")
    if dandiset["embargo_status"] == "UNEMBARGOING":
        raise message(400, "Dandiset modification not allowed during unembargo")
    existing = blob_by_etag(ctx, etag)
    if existing is not None:
        raise ApiError(409, "Blob already exists.", headers={"Location": existing["blob_id"]})
    upload_id = str(uuid.uuid4())
    key = blob_key(upload_id)
    embargoed = dandiset["embargo_status"] != "OPEN"
    multipart_id = ctx.store.create_multipart(key)
    if embargoed:
        ctx.store.set_private(key, True)
    parts = [
        {
            "part_number": part.number,
            "size": part.size,
            "upload_url": ctx.store.presign_upload_part(key, multipart_id, part.number),
        }
        for part in PartGenerator.for_file_size(size)
    ]
    with ctx.db.tx() as conn:
        conn.execute(
            "INSERT INTO uploads (upload_id, dandiset_id, multipart_id, etag, size, embargoed,"
            " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (upload_id, dandiset["id"], multipart_id, etag, size, int(embargoed),
             api_time(utcnow())),
        )
    return {"upload_id": upload_id, "parts": parts}


def upload_row(ctx: ArchiveContext, upload_id: str, user) -> Row:
    row = ctx.db.one("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,))
    if row is None:
        raise not_found()
    if row["embargoed"] and not is_owner(ctx, row["dandiset_id"], user):
        raise not_found()
    return row


def complete(ctx: ArchiveContext, upload: Row, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The presigned CompleteMultipartUpload URL and the XML body the client must POST to it."""
    ordered = sorted(parts, key=lambda p: p["part_number"])
    key = blob_key(upload["upload_id"])
    xml = "".join(
        f"<Part><PartNumber>{p['part_number']}</PartNumber><ETag>{p['etag']}</ETag></Part>"
        for p in ordered
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{xml}</CompleteMultipartUpload>"
    )
    url = ctx.store.presign_complete_multipart(key, upload["multipart_id"])
    return {"complete_url": url, "body": body}


def validate(ctx: ArchiveContext, upload: Row) -> Row:
    """Turn a finished upload into a blob (after checking the object S3 holds)."""
    key = blob_key(upload["upload_id"])
    head = ctx.store.head(key)
    if head is None:
        raise listing(400, "Object does not exist.")
    if head.size != upload["size"]:
        raise listing(400, f"Size {upload['size']} does not match actual size {head.size}.")
    actual = head.etag.strip('"')
    if actual != upload["etag"]:
        raise listing(400, f"ETag {upload['etag']} does not match actual ETag {actual}.")
    with ctx.db.tx() as conn:
        conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload["upload_id"],))
        raced = conn.execute("SELECT 1 FROM blobs WHERE etag = ?", (upload["etag"],)).fetchone()
        if not raced:
            conn.execute(
                "INSERT INTO blobs (blob_id, etag, size, embargoed, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (upload["upload_id"], upload["etag"], upload["size"], upload["embargoed"],
                 api_time(utcnow())),
            )
    if raced:
        raise message(409, "An identical blob has already been uploaded.")
    ctx.wake_worker()
    return ctx.db.one("SELECT * FROM blobs WHERE blob_id = ?", (upload["upload_id"],))


def register_blob(
    ctx: ArchiveContext, *, blob_id: str, etag: str, size: int, sha256: str | None,
    embargoed: bool,
) -> Row:
    """Record a blob whose object is already in the store (the seeder's path)."""
    with ctx.db.tx() as conn:
        conn.execute(
            "INSERT INTO blobs (blob_id, etag, sha256, size, embargoed, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (blob_id, etag, sha256, size, int(embargoed), api_time(utcnow())),
        )
    return ctx.db.one("SELECT * FROM blobs WHERE blob_id = ?", (blob_id,))
