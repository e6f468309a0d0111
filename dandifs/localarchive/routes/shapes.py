"""JSON shapes of dandisets and versions (the reference's serializers, field for field)."""

from __future__ import annotations

import json
from typing import Any

from dandifs.localarchive import metadata as md
from dandifs.localarchive.auth import User
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Row
from dandifs.localarchive.services.versions import identifier, stats


def _active_uploads(ctx: ArchiveContext, version: Row) -> int:
    if version["version"] != "draft":
        return 0
    return ctx.db.scalar(
        "SELECT COUNT(*) FROM uploads WHERE dandiset_id = ?", (version["dandiset_id"],)
    )


def _release_notes(version: Row) -> str:
    if version["version"] == "draft":
        return ""
    return json.loads(version["metadata"]).get("releaseNotes", "") or ""


def short_version(ctx: ArchiveContext, version: Row) -> dict[str, Any]:
    count, size = stats(ctx.db, version["id"])
    return {
        "version": version["version"],
        "name": version["name"],
        "asset_count": count,
        "size": size,
        "status": version["status"],
        "created": version["created"],
        "modified": version["modified"],
    }


def child_version(ctx: ArchiveContext, version: Row) -> dict[str, Any]:
    short = short_version(ctx, version)
    return {
        "version": short["version"],
        "name": short["name"],
        "asset_count": short["asset_count"],
        "active_uploads": _active_uploads(ctx, version),
        "size": short["size"],
        "status": short["status"],
        "created": short["created"],
        "modified": short["modified"],
        "release_notes": _release_notes(version),
    }


def _versions(ctx: ArchiveContext, dandiset_id: int) -> tuple[Row, Row | None, Row]:
    """(draft, most recent published by modified, most recently created)."""
    draft = ctx.db.one(
        "SELECT * FROM versions WHERE dandiset_id = ? AND version = 'draft'", (dandiset_id,)
    )
    published = ctx.db.one(
        "SELECT * FROM versions WHERE dandiset_id = ? AND version != 'draft'"
        " ORDER BY modified DESC, id DESC LIMIT 1",
        (dandiset_id,),
    )
    newest = ctx.db.one(
        "SELECT * FROM versions WHERE dandiset_id = ? ORDER BY created DESC, id DESC LIMIT 1",
        (dandiset_id,),
    )
    return draft, published, newest


def _dandiset_common(ctx: ArchiveContext, dandiset: Row, user: User | None,
                     contact_from: Row) -> dict[str, Any]:
    stars = ctx.db.scalar("SELECT COUNT(*) FROM stars WHERE dandiset_id = ?", (dandiset["id"],))
    starred = user is not None and ctx.db.one(
        "SELECT 1 FROM stars WHERE dandiset_id = ? AND user_id = ?", (dandiset["id"], user.id)
    ) is not None
    return {
        "identifier": identifier(dandiset["id"]),
        "created": dandiset["created"],
        "modified": dandiset["modified"],
        "contact_person": md.contact_person(json.loads(contact_from["metadata"])),
        "embargo_status": dandiset["embargo_status"],
        "star_count": stars,
        "is_starred": starred,
    }


def dandiset_detail(ctx: ArchiveContext, dandiset: Row, user: User | None) -> dict[str, Any]:
    draft, published, newest = _versions(ctx, dandiset["id"])
    return {
        **_dandiset_common(ctx, dandiset, user, newest),
        "most_recent_published_version": child_version(ctx, published) if published else None,
        "draft_version": child_version(ctx, draft),
    }


def dandiset_list_item(ctx: ArchiveContext, dandiset: Row, user: User | None) -> dict[str, Any]:
    draft, published, _ = _versions(ctx, dandiset["id"])
    return {
        **_dandiset_common(ctx, dandiset, user, published or draft),
        "most_recent_published_version": short_version(ctx, published) if published else None,
        "draft_version": short_version(ctx, draft),
    }


def version_item(ctx: ArchiveContext, dandiset: Row, version: Row,
                 user: User | None) -> dict[str, Any]:
    _, _, newest = _versions(ctx, dandiset["id"])
    child = child_version(ctx, version)
    notes = child.pop("release_notes")
    return {
        **child,
        "dandiset": _dandiset_common(ctx, dandiset, user, newest),
        "release_notes": notes,
    }


def _asset_validation_errors(ctx: ArchiveContext, version: Row) -> list[dict[str, str]]:
    pending = ctx.db.all(
        "SELECT va.path FROM version_assets va JOIN assets a ON a.id = va.asset"
        " WHERE va.version_id = ? AND a.status IN ('Pending', 'Validating') LIMIT 50",
        (version["id"],),
    )
    errors = [
        {"field": "", "message": "asset is currently being validated, please wait.",
         "path": row["path"]}
        for row in pending
    ]
    invalid = ctx.db.all(
        "SELECT va.path, a.validation_errors FROM version_assets va JOIN assets a"
        " ON a.id = va.asset WHERE va.version_id = ? AND a.status = 'Invalid'"
        " ORDER BY json_array_length(a.validation_errors) DESC LIMIT 50",
        (version["id"],),
    )
    for row in invalid:
        for error in json.loads(row["validation_errors"]):
            errors.append({**error, "path": row["path"]})
    return errors


def version_detail(ctx: ArchiveContext, dandiset: Row, version: Row,
                   user: User | None) -> dict[str, Any]:
    metadata = json.loads(version["metadata"])
    return {
        **version_item(ctx, dandiset, version, user),
        "asset_validation_errors": _asset_validation_errors(ctx, version),
        "version_validation_errors": json.loads(version["validation_errors"]),
        "metadata": metadata,
        "contact_person": md.contact_person(metadata),
    }
