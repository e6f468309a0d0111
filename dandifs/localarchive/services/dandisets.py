"""Creating and deleting dandisets."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from dandifs.localarchive import metadata as md
from dandifs.localarchive.auth import User
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Row
from dandifs.localarchive.problems import message
from dandifs.localarchive.services.access import dandiset_row, is_owner, refuse_during_unembargo
from dandifs.localarchive.services.versions import mark_draft_changed, render_metadata
from dandifs.localarchive.timestamps import api_time, utcnow


def _requested_number(ctx: ArchiveContext, metadata: dict[str, Any], user: User) -> int | None:
    """The id asked for through `metadata.identifier` (an admin-only request), if any."""
    requested = metadata.get("identifier")
    if not requested:
        return None
    text = str(requested)
    own_prefix = f"{ctx.settings.instance_name}:"
    if text.startswith(own_prefix):
        text = text[len(own_prefix):]
    try:
        number = int(text)
    except ValueError:
        raise message(400, f"Invalid Identifier {requested}") from None
    if not user.admin:
        raise message(400, "Creating a dandiset for a given identifier is an admin only operation.")
    if dandiset_row(ctx, number) is not None:
        raise message(400, f"Dandiset {number:06d} already exists")
    return number


def create_dandiset(
    ctx: ArchiveContext,
    user: User,
    *,
    name: str,
    metadata: dict[str, Any],
    embargo: bool = False,
    embargo_end_date: str | None = None,
    number: int | None = None,
) -> Row:
    """A new dandiset with an empty `Pending` draft, owned by `user`."""
    if number is None:
        number = _requested_number(ctx, metadata, user)
    stored = md.strip_version_metadata(metadata)
    stored.setdefault("schemaKey", "Dandiset")
    stored.setdefault("schemaVersion", md.SCHEMA_VERSION)
    if "contributor" not in stored:
        stored["contributor"] = [
            {
                "name": user.citation_name,
                "email": user.email,
                "roleName": ["dcite:ContactPerson"],
                "schemaKey": "Person",
                "affiliation": [],
                "includeInCitation": True,
            }
        ]
    if embargo and embargo_end_date is None:
        embargo_end_date = (date.today() + timedelta(days=730)).isoformat()
    now = api_time(utcnow())
    with ctx.db.tx() as conn:
        if number is None:
            number = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM dandisets").fetchone()[0]
        conn.execute(
            "INSERT INTO dandisets (id, created, modified, embargo_status, embargo_end_date)"
            " VALUES (?, ?, ?, ?, ?)",
            (number, now, now, "EMBARGOED" if embargo else "OPEN", embargo_end_date),
        )
        conn.execute("INSERT INTO owners (dandiset_id, user_id) VALUES (?, ?)", (number, user.id))
        dandiset = conn.execute("SELECT * FROM dandisets WHERE id = ?", (number,)).fetchone()
        full = render_metadata(ctx, dandiset, version="draft", name=name, stored=stored)
        conn.execute(
            "INSERT INTO versions (dandiset_id, version, name, metadata, status, created, modified)"
            " VALUES (?, 'draft', ?, ?, 'Pending', ?, ?)",
            (number, name, json.dumps(full), now, now),
        )
    ctx.wake_worker()
    return dandiset


def delete_dandiset(ctx: ArchiveContext, dandiset: Row, user: User) -> None:
    if not is_owner(ctx, dandiset["id"], user):
        raise message(403, "Cannot delete dandisets which you do not own.")
    refuse_during_unembargo(dandiset)
    published = ctx.db.one(
        "SELECT 1 FROM versions WHERE dandiset_id = ? AND version != 'draft'", (dandiset["id"],)
    )
    if published:
        raise message(403, "Cannot delete dandisets with published versions.")
    zarr_ids = [
        r["zarr_id"]
        for r in ctx.db.all("SELECT zarr_id FROM zarrs WHERE dandiset_id = ?", (dandiset["id"],))
    ]
    with ctx.db.tx() as conn:
        conn.execute(
            "DELETE FROM version_assets WHERE version_id IN"
            " (SELECT id FROM versions WHERE dandiset_id = ?)",
            (dandiset["id"],),
        )
        conn.execute("DELETE FROM dandisets WHERE id = ?", (dandiset["id"],))
    for zarr_id in zarr_ids:
        ctx.store.delete_prefix(f"zarr/{zarr_id}/")


def set_star(ctx: ArchiveContext, dandiset: Row, user: User, starred: bool) -> int:
    with ctx.db.tx() as conn:
        if starred:
            conn.execute(
                "INSERT OR IGNORE INTO stars (dandiset_id, user_id, created) VALUES (?, ?, ?)",
                (dandiset["id"], user.id, api_time(utcnow())),
            )
        else:
            conn.execute(
                "DELETE FROM stars WHERE dandiset_id = ? AND user_id = ?",
                (dandiset["id"], user.id),
            )
        return conn.execute(
            "SELECT COUNT(*) FROM stars WHERE dandiset_id = ?", (dandiset["id"],)
        ).fetchone()[0]


def set_owners(ctx: ArchiveContext, dandiset: Row, usernames: list[str]) -> list[Row]:
    """Replace the owner set (every name must be a known user; at least one owner)."""
    from dandifs.localarchive.problems import listing

    refuse_during_unembargo(dandiset)
    if not usernames:
        raise listing(400, "Cannot remove all draft owners")
    users = []
    for name in usernames:
        row = ctx.db.one("SELECT * FROM users WHERE username = ?", (name,))
        if row is None:
            raise listing(400, f"User {name} not found")
        users.append(row)
    with ctx.db.tx() as conn:
        conn.execute("DELETE FROM owners WHERE dandiset_id = ?", (dandiset["id"],))
        conn.executemany("INSERT OR IGNORE INTO owners (dandiset_id, user_id) VALUES (?, ?)",
                         [(dandiset["id"], u["id"]) for u in users])
    return users


def unembargo(ctx: ArchiveContext, dandiset: Row) -> None:
    """Open an embargoed dandiset: its data becomes public and its draft is revalidated.

    The reference passes through `UNEMBARGOING` while a batch job untags the S3 objects; here
    the object store's private marks are dropped at once, so the dandiset is `OPEN` on return.
    """
    from dandifs.localarchive.services.assets import blob_key, zarr_prefix

    if dandiset["embargo_status"] != "EMBARGOED":
        raise message(400, "Dandiset not embargoed")
    if ctx.db.one("SELECT 1 FROM uploads WHERE dandiset_id = ?", (dandiset["id"],)):
        raise message(400, "Dandiset unembargo not allowed with active uploads")
    blobs = ctx.db.all(
        "SELECT DISTINCT b.id, b.blob_id FROM blobs b JOIN assets a ON a.blob = b.id"
        " JOIN version_assets va ON va.asset = a.id JOIN versions v ON v.id = va.version_id"
        " WHERE v.dandiset_id = ? AND b.embargoed = 1",
        (dandiset["id"],),
    )
    zarrs = ctx.db.all("SELECT id, zarr_id FROM zarrs WHERE dandiset_id = ?", (dandiset["id"],))
    for blob in blobs:
        ctx.store.set_private(blob_key(blob["blob_id"]), False)
    for zarr in zarrs:
        ctx.store.set_private(zarr_prefix(zarr["zarr_id"]), False)
    draft = ctx.db.one(
        "SELECT * FROM versions WHERE dandiset_id = ? AND version = 'draft'", (dandiset["id"],)
    )
    with ctx.db.tx() as conn:
        conn.executemany("UPDATE blobs SET embargoed = 0 WHERE id = ?",
                         [(b["id"],) for b in blobs])
        conn.execute("UPDATE zarrs SET embargoed = 0 WHERE dandiset_id = ?", (dandiset["id"],))
        conn.execute(
            "UPDATE dandisets SET embargo_status = 'OPEN', embargo_end_date = NULL,"
            " modified = ? WHERE id = ?",
            (api_time(utcnow()), dandiset["id"]),
        )
        opened = conn.execute("SELECT * FROM dandisets WHERE id = ?", (dandiset["id"],)).fetchone()
        previous = json.loads(draft["metadata"])
        stored = md.strip_version_metadata(previous)
        access = stored.get("access")
        if isinstance(access, list) and access and isinstance(access[0], dict):
            access[0].pop("embargoedUntil", None)
        if previous.get("assetsSummary"):
            stored["assetsSummary"] = previous["assetsSummary"]
        full = render_metadata(ctx, opened, version="draft", name=draft["name"], stored=stored)
        conn.execute("UPDATE versions SET metadata = ? WHERE id = ?",
                     (json.dumps(full), draft["id"]))
        conn.execute(
            "UPDATE assets SET status = 'Pending' WHERE published = 0 AND id IN"
            " (SELECT asset FROM version_assets WHERE version_id = ?)",
            (draft["id"],),
        )
        mark_draft_changed(ctx, conn, draft["id"])
