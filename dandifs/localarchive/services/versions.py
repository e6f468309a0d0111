"""Draft metadata, version statistics and publishing."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from typing import Any

from dandifs.localarchive import metadata as md
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Database, Row
from dandifs.localarchive.problems import ApiError, message
from dandifs.localarchive.timestamps import api_time, metadata_time, parse_api_time, utcnow

SIZE_OF_ASSET = "COALESCE(b.size, z.size, 0)"


def identifier(dandiset_id: int) -> str:
    return f"{dandiset_id:06d}"


def render_metadata(
    ctx: ArchiveContext,
    dandiset: Row,
    *,
    version: str,
    name: str,
    stored: dict[str, Any],
    manifest_url: str | None = None,
) -> dict[str, Any]:
    return md.version_metadata(
        ctx.settings,
        identifier=identifier(dandiset["id"]),
        version=version,
        name=name,
        stored=stored,
        dandiset_created=parse_api_time(dandiset["created"]),
        embargo_status=dandiset["embargo_status"],
        embargo_end_date=dandiset["embargo_end_date"],
        manifest_url=manifest_url,
    )


def stats(db: Database, version_id: int) -> tuple[int, int]:
    """(asset_count, size) of a version: its assets and their total bytes."""
    row = db.one(
        f"SELECT COUNT(*), COALESCE(SUM({SIZE_OF_ASSET}), 0) FROM version_assets va"
        " JOIN assets a ON a.id = va.asset"
        " LEFT JOIN blobs b ON b.id = a.blob LEFT JOIN zarrs z ON z.id = a.zarr"
        " WHERE va.version_id = ?",
        (version_id,),
    )
    return int(row[0]), int(row[1])


def mark_draft_changed(ctx: ArchiveContext, conn: sqlite3.Connection, draft_id: int) -> None:
    """Any change to a draft sends it back to `Pending` until it is revalidated."""
    conn.execute(
        "UPDATE versions SET status = 'Pending', modified = ? WHERE id = ?",
        (api_time(utcnow()), draft_id),
    )
    ctx.wake_worker()


def update_draft(
    ctx: ArchiveContext, dandiset: Row, draft: Row, *, name: str, metadata: dict[str, Any]
) -> None:
    """Save new draft metadata; an unchanged (name, stripped metadata) pair writes nothing."""
    new_stored = md.strip_version_metadata(metadata)
    new_stored.setdefault("schemaVersion", md.SCHEMA_VERSION)
    old_stored = md.strip_version_metadata(json.loads(draft["metadata"]))
    if name == draft["name"] and new_stored == old_stored:
        return
    summary = json.loads(draft["metadata"]).get("assetsSummary")
    if summary:
        new_stored["assetsSummary"] = summary
    full = render_metadata(ctx, dandiset, version="draft", name=name, stored=new_stored)
    with ctx.db.tx() as conn:
        conn.execute(
            "UPDATE versions SET name = ?, metadata = ? WHERE id = ?",
            (name, json.dumps(full), draft["id"]),
        )
        mark_draft_changed(ctx, conn, draft["id"])


def next_published_version(ctx: ArchiveContext, dandiset_id: int) -> str:
    """`0.YYMMDD.HHMM` of now, one minute later per collision."""
    moment = utcnow()
    while True:
        candidate = moment.strftime("0.%y%m%d.%H%M")
        taken = ctx.db.one(
            "SELECT 1 FROM versions WHERE dandiset_id = ? AND version = ?",
            (dandiset_id, candidate),
        )
        if taken is None:
            return candidate
        moment += timedelta(minutes=1)


_NOT_PUBLISHABLE = {
    "Published": (400, "There have been no changes to the draft version since the last publish."),
    "Publishing": (423, "Dandiset is currently being published"),
    "Validating": (409, "Dandiset is currently being validated"),
    "Invalid": (400, "Dandiset metadata or asset metadata is not valid"),
    "Pending": (409, "Metadata validation is pending for this dandiset, please try again later."),
}


def check_publishable(ctx: ArchiveContext, dandiset: Row, draft: Row) -> None:
    if dandiset["embargo_status"] != "OPEN":
        raise message(400, "Operation only allowed on OPEN dandisets")
    if ctx.db.one("SELECT 1 FROM zarrs WHERE dandiset_id = ?", (dandiset["id"],)):
        raise message(400, "Cannot publish dandisets which contain zarrs")
    if draft["status"] in _NOT_PUBLISHABLE:
        status, text = _NOT_PUBLISHABLE[draft["status"]]
        raise ApiError(status, text)
    unvalidated = ctx.db.one(
        "SELECT 1 FROM version_assets va JOIN assets a ON a.id = va.asset"
        " WHERE va.version_id = ? AND a.status != 'Valid' LIMIT 1",
        (draft["id"],),
    )
    if unvalidated:
        raise message(400, "Dandiset metadata or asset metadata is not valid")


def publish(ctx: ArchiveContext, dandiset: Row, draft: Row, release_notes: str = "") -> str:
    """Freeze the draft into a new published version; returns its version id.

    The reference does this in a background job; doing it before answering keeps the same
    observable sequence (202, then the draft reads `Published`) without a race.
    """
    from dandifs.localarchive.services.assets import published_asset_metadata

    check_publishable(ctx, dandiset, draft)
    version = next_published_version(ctx, dandiset["id"])
    moment = utcnow()
    now = api_time(moment)
    draft_full = json.loads(draft["metadata"])
    stored = md.strip_version_metadata(draft_full)
    stored["assetsSummary"] = draft_full.get("assetsSummary", dict(md.EMPTY_SUMMARY))
    stored["publishedBy"] = md.publish_activity(ctx.settings, moment)
    stored["datePublished"] = metadata_time(moment)
    if release_notes:
        stored["releaseNotes"] = release_notes
    manifest = ctx.store.object_url(f"dandisets/{identifier(dandiset['id'])}/{version}/assets.yaml")
    full = render_metadata(
        ctx, dandiset, version=version, name=draft["name"], stored=stored, manifest_url=manifest
    )
    for key in ("publishedBy", "datePublished", "releaseNotes", "assetsSummary"):
        if key in stored:
            full[key] = stored[key]
    with ctx.db.tx() as conn:
        cursor = conn.execute(
            "INSERT INTO versions (dandiset_id, version, name, metadata, status, created, modified)"
            " VALUES (?, ?, ?, ?, 'Valid', ?, ?)",
            (dandiset["id"], version, draft["name"], json.dumps(full), now, now),
        )
        published_id = cursor.lastrowid
        conn.execute(
            "INSERT INTO version_assets (version_id, asset, path)"
            " SELECT ?, asset, path FROM version_assets WHERE version_id = ?",
            (published_id, draft["id"]),
        )
        unpublished = conn.execute(
            "SELECT a.id FROM version_assets va JOIN assets a ON a.id = va.asset"
            " WHERE va.version_id = ? AND a.published = 0",
            (draft["id"],),
        ).fetchall()
        for row in unpublished:
            frozen = published_asset_metadata(ctx, conn, row["id"], moment)
            conn.execute(
                "UPDATE assets SET metadata = ?, published = 1 WHERE id = ?",
                (json.dumps(frozen), row["id"]),
            )
        conn.execute(
            "UPDATE versions SET status = 'Published', modified = ? WHERE id = ?",
            (now, draft["id"]),
        )
    return version
