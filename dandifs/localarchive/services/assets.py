"""Assets of a version: their computed metadata, creation, replacement, removal, listing."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dandifs.localarchive import metadata as md
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Row
from dandifs.localarchive.problems import ApiError, DRAFT_ONLY, fields, message, not_found
from dandifs.localarchive.services.versions import mark_draft_changed
from dandifs.localarchive.timestamps import api_time, metadata_time, utcnow

ASSET_SELECT = (
    "SELECT a.*, b.blob_id AS blob_uuid, b.etag AS blob_etag, b.sha256 AS blob_sha256,"
    " b.size AS blob_size, b.embargoed AS blob_embargoed,"
    " z.zarr_id AS zarr_uuid, z.checksum AS zarr_checksum, z.size AS zarr_size,"
    " z.status AS zarr_status, z.embargoed AS zarr_embargoed, z.dandiset_id AS zarr_dandiset"
    " FROM assets a LEFT JOIN blobs b ON b.id = a.blob LEFT JOIN zarrs z ON z.id = a.zarr"
)


def blob_key(blob_id: str) -> str:
    return f"blobs/{blob_id[0:3]}/{blob_id[3:6]}/{blob_id}"


def zarr_prefix(zarr_id: str) -> str:
    return f"zarr/{zarr_id}/"


def asset_by_id(ctx: ArchiveContext, asset_id: str) -> Row | None:
    return ctx.db.one(ASSET_SELECT + " WHERE a.asset_id = ?", (asset_id,))


def asset_in_version(ctx: ArchiveContext, version_id: int, asset_id: str) -> Row | None:
    return ctx.db.one(
        ASSET_SELECT + " JOIN version_assets va ON va.asset = a.id"
        " WHERE va.version_id = ? AND a.asset_id = ?",
        (version_id, asset_id),
    )


def size_of(row: Row) -> int:
    return int(row["blob_size"] if row["blob"] is not None else (row["zarr_size"] or 0))


def s3_url(ctx: ArchiveContext, row: Row) -> str:
    if row["blob"] is not None:
        return ctx.store.object_url(blob_key(row["blob_uuid"]))
    return ctx.store.object_url(zarr_prefix(row["zarr_uuid"]))


def is_embargoed(row: Row) -> bool:
    return bool(row["blob_embargoed"] if row["blob"] is not None else row["zarr_embargoed"])


def _embargo_end(ctx: ArchiveContext, row: Row) -> str | None:
    """The earliest embargo end among the dandisets holding this asset's data."""
    if row["zarr"] is not None:
        sql = "SELECT MIN(embargo_end_date) FROM dandisets WHERE id = ?"
        return ctx.db.scalar(sql, (row["zarr_dandiset"],))
    return ctx.db.scalar(
        "SELECT MIN(d.embargo_end_date) FROM assets a JOIN version_assets va ON va.asset = a.id"
        " JOIN versions v ON v.id = va.version_id JOIN dandisets d ON d.id = v.dandiset_id"
        " WHERE a.blob = ? AND d.embargo_status != 'OPEN'",
        (row["blob"],),
    )


def full_metadata(ctx: ArchiveContext, row: Row) -> dict[str, Any]:
    if row["blob"] is not None:
        digest = {"dandi:dandi-etag": row["blob_etag"]}
        if row["blob_sha256"]:
            digest["dandi:sha2-256"] = row["blob_sha256"]
    else:
        digest = {"dandi:dandi-zarr-checksum": row["zarr_checksum"]}
    access = md.embargoed_access(_embargo_end(ctx, row)) if is_embargoed(row) else md.open_access()
    return md.asset_metadata(
        ctx.settings,
        asset_id=row["asset_id"],
        path=row["path"],
        stored=json.loads(row["metadata"]),
        content_url=s3_url(ctx, row),
        size=size_of(row),
        digest=digest,
        access=access,
        zarr=row["zarr"] is not None,
    )


def published_asset_metadata(
    ctx: ArchiveContext, conn: sqlite3.Connection, asset_pk: int, moment: datetime
) -> dict[str, Any]:
    row = conn.execute(ASSET_SELECT + " WHERE a.id = ?", (asset_pk,)).fetchone()
    frozen = full_metadata(ctx, row)
    frozen["publishedBy"] = md.publish_activity(ctx.settings, moment)
    frozen["datePublished"] = metadata_time(moment)
    return frozen


def serialize(row: Row) -> dict[str, Any]:
    return {
        "asset_id": row["asset_id"],
        "blob": row["blob_uuid"],
        "zarr": row["zarr_uuid"],
        "path": row["path"],
        "size": size_of(row),
        "created": row["created"],
        "modified": row["modified"],
    }


def detail(ctx: ArchiveContext, row: Row) -> dict[str, Any]:
    return {**serialize(row), "metadata": full_metadata(ctx, row)}


# --- path rules -----------------------------------------------------------------------------

_CHAR = r"[A-Za-z0-9\[\\\]^_`(),&#+~=\-\s]"
_SEGMENT = rf"(?:{_CHAR}|\.(?={_CHAR}))+"
_PATH = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


MAX_PATH_CHARS = 512


def check_path(path: str) -> None:
    """The request's path syntax check (the reference's serializer)."""
    if path.startswith("/"):
        raise fields(400, non_field_errors="Path must not begin with /")
    if not _PATH.fullmatch(path):
        raise fields(400, non_field_errors="Path improperly formatted")


def _check_length(path: str) -> None:
    """The model's own check, made by the reference when it saves the new asset: after the
    conflict checks, and answered as a bare string."""
    if len(path) > MAX_PATH_CHARS:
        raise message(400, f"Ensure this value has at most {MAX_PATH_CHARS} characters"
                           f" (it has {len(path)}).")


def _check_layout(conn: sqlite3.Connection, version_id: int, path: str) -> None:
    """A new path may not equal an existing folder nor run through an existing file."""
    under = conn.execute(
        "SELECT path FROM version_assets WHERE version_id = ? AND path > ? AND path < ?"
        " ORDER BY path LIMIT 10",
        (version_id, path + "/", path + "0"),
    ).fetchall()
    parts = path.split("/")
    ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
    files_above = [
        r["path"]
        for r in conn.execute(
            f"SELECT path FROM version_assets WHERE version_id = ? AND path IN"
            f" ({','.join('?' * len(ancestors))})",
            (version_id, *ancestors),
        ).fetchall()
    ] if ancestors else []
    conflicts = files_above + [r["path"] for r in under]
    if conflicts:
        raise message(
            409, f'Path of new asset "{path}" conflicts with existing assets: {conflicts!r}'
        )


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewAsset:
    path: str
    stored: dict[str, Any]
    blob: int | None
    zarr: int | None


def resolve_content(
    ctx: ArchiveContext, blob_id: str | None, zarr_id: str | None
) -> tuple[Row | None, Row | None]:
    """The blob or zarr rows a request names (404 if unknown)."""
    if blob_id is not None:
        blob = ctx.db.one("SELECT * FROM blobs WHERE blob_id = ?", (str(blob_id),))
        if blob is None:
            raise not_found()
        return blob, None
    zarr = ctx.db.one("SELECT * FROM zarrs WHERE zarr_id = ?", (str(zarr_id),))
    if zarr is None:
        raise not_found()
    return None, zarr


def _insert(ctx: ArchiveContext, conn: sqlite3.Connection, version_id: int,
            items: Sequence[NewAsset]) -> list[str]:
    now = api_time(utcnow())
    ids = [str(uuid.uuid4()) for _ in items]
    conn.executemany(
        "INSERT INTO assets (asset_id, path, blob, zarr, metadata, created, modified)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (asset_id, item.path, item.blob, item.zarr, json.dumps(item.stored), now, now)
            for asset_id, item in zip(ids, items)
        ],
    )
    conn.executemany(
        "INSERT INTO version_assets (version_id, asset, path)"
        " SELECT ?, id, path FROM assets WHERE asset_id = ?",
        [(version_id, asset_id) for asset_id in ids],
    )
    return ids


def _release_embargo(ctx: ArchiveContext, dandiset: Row, blob: Row | None) -> None:
    """Attaching an embargoed blob to an open dandiset makes the blob public."""
    if blob is not None and blob["embargoed"] and dandiset["embargo_status"] == "OPEN":
        with ctx.db.tx() as conn:
            conn.execute("UPDATE blobs SET embargoed = 0 WHERE id = ?", (blob["id"],))
        ctx.store.set_private(blob_key(blob["blob_id"]), False)


def _checked_new(
    ctx: ArchiveContext,
    dandiset: Row,
    version: Row,
    metadata: dict[str, Any],
    blob_id: str | None,
    zarr_id: str | None,
) -> tuple[NewAsset, Row | None]:
    """The stored form of a new asset, after the content and draft-only checks."""
    path = metadata["path"]
    stored = md.strip_asset_metadata(metadata)
    blob, zarr = resolve_content(ctx, blob_id, zarr_id)
    if version["version"] != "draft":
        raise message(405, DRAFT_ONLY)
    if zarr is not None and zarr["dandiset_id"] != dandiset["id"]:
        raise message(400, "The zarr archive belongs to a different dandiset")
    return NewAsset(path, stored, blob["id"] if blob else None, zarr["id"] if zarr else None), blob


def add_asset(
    ctx: ArchiveContext,
    dandiset: Row,
    version: Row,
    metadata: dict[str, Any],
    *,
    blob_id: str | None = None,
    zarr_id: str | None = None,
) -> Row:
    """POST …/assets/: a new asset at `metadata.path` in the draft."""
    new, blob = _checked_new(ctx, dandiset, version, metadata, blob_id, zarr_id)
    with ctx.db.tx() as conn:
        if conn.execute(
            "SELECT 1 FROM version_assets WHERE version_id = ? AND path = ?",
            (version["id"], new.path),
        ).fetchone():
            raise message(409, "An asset with that path already exists")
        _check_layout(conn, version["id"], new.path)
        _check_length(new.path)
        (asset_id,) = _insert(ctx, conn, version["id"], [new])
        mark_draft_changed(ctx, conn, version["id"])
    _release_embargo(ctx, dandiset, blob)
    return asset_by_id(ctx, asset_id)


def add_assets_bulk(ctx: ArchiveContext, version_id: int, items: Sequence[NewAsset]) -> list[str]:
    """Many new assets in one transaction (the seeder's path; no conflict checks)."""
    with ctx.db.tx() as conn:
        ids = _insert(ctx, conn, version_id, items)
        mark_draft_changed(ctx, conn, version_id)
    return ids


def _unchanged(current: Row, new: NewAsset) -> bool:
    same_content = (
        current["blob"] == new.blob if new.blob is not None else current["zarr"] == new.zarr
    )
    def comparable(metadata: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in metadata.items() if k != "@context"}

    return (
        same_content
        and current["path"] == new.path
        and comparable(json.loads(current["metadata"])) == comparable(new.stored)
    )


def replace_asset(
    ctx: ArchiveContext,
    dandiset: Row,
    version: Row,
    asset_id: str,
    metadata: dict[str, Any],
    *,
    blob_id: str | None = None,
    zarr_id: str | None = None,
) -> Row:
    """PUT …/assets/{id}/: a changed asset is a new asset (new id) in place of the old one."""
    if version["version"] != "draft":
        raise message(405, DRAFT_ONLY)
    current = asset_in_version(ctx, version["id"], asset_id)
    if current is None:
        raise not_found()
    new, blob = _checked_new(ctx, dandiset, version, metadata, blob_id, zarr_id)
    if _unchanged(current, new):
        return current
    with ctx.db.tx() as conn:
        clash = conn.execute(
            "SELECT asset FROM version_assets WHERE version_id = ? AND path = ?",
            (version["id"], new.path),
        ).fetchone()
        if clash is not None and clash["asset"] != current["id"]:
            raise message(409, "An asset with that path already exists")
        conn.execute(
            "DELETE FROM version_assets WHERE version_id = ? AND asset = ?",
            (version["id"], current["id"]),
        )
        try:
            _check_layout(conn, version["id"], new.path)
        except ApiError:
            raise message(409, "An asset with that path already exists") from None
        _check_length(new.path)
        (new_id,) = _insert(ctx, conn, version["id"], [new])
        mark_draft_changed(ctx, conn, version["id"])
    _release_embargo(ctx, dandiset, blob)
    return asset_by_id(ctx, new_id)


def remove_asset(ctx: ArchiveContext, version: Row, asset_id: str) -> None:
    if version["version"] != "draft":
        raise message(405, DRAFT_ONLY)
    current = asset_in_version(ctx, version["id"], asset_id)
    if current is None:
        raise not_found()
    with ctx.db.tx() as conn:
        conn.execute(
            "DELETE FROM version_assets WHERE version_id = ? AND asset = ?",
            (version["id"], current["id"]),
        )
        mark_draft_changed(ctx, conn, version["id"])


def remove_paths(ctx: ArchiveContext, version_id: int, paths: Iterable[str]) -> None:
    with ctx.db.tx() as conn:
        conn.executemany(
            "DELETE FROM version_assets WHERE version_id = ? AND path = ?",
            [(version_id, p) for p in paths],
        )
        mark_draft_changed(ctx, conn, version_id)


# --- listing --------------------------------------------------------------------------------

ORDERINGS = {
    "created": "a.created, a.id",
    "-created": "a.created DESC, a.id DESC",
    "modified": "a.modified, a.id",
    "-modified": "a.modified DESC, a.id DESC",
    "path": "va.path",
    "-path": "va.path DESC",
}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_query(
    version_id: int, *, path: str | None, glob: str | None, zarr_only: bool, exact: bool
) -> tuple[str, list[Any]]:
    """WHERE clause (with parameters) of the asset list's filters."""
    where = ["va.version_id = ?"]
    params: list[Any] = [version_id]
    if path is not None:
        if exact:
            where.append("va.path = ?")
            params.append(path)
        else:
            where.append("va.path LIKE ? ESCAPE '\\'")
            params.append(_like_escape(path) + "%")
    if glob is not None:
        where.append("va.path LIKE ? ESCAPE '\\'")
        params.append(_like_escape(glob).replace("*", "%"))
    if zarr_only:
        where.append("a.zarr IS NOT NULL")
    return " AND ".join(where), params


def list_assets(
    ctx: ArchiveContext,
    version_id: int,
    *,
    path: str | None = None,
    glob: str | None = None,
    zarr_only: bool = False,
    order: str = "created",
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[Row], int]:
    """One page of a version's assets (plus one extra row) and the total count."""
    exact = path is not None and ctx.db.one(
        "SELECT 1 FROM version_assets WHERE version_id = ? AND path = ?", (version_id, path)
    ) is not None
    where, params = list_query(version_id, path=path, glob=glob, zarr_only=zarr_only, exact=exact)
    rows = ctx.db.all(
        ASSET_SELECT + f" JOIN version_assets va ON va.asset = a.id WHERE {where}"
        f" ORDER BY {ORDERINGS[order]} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    count_sql = (
        "SELECT COUNT(*) FROM version_assets va JOIN assets a ON a.id = va.asset"
        f" WHERE {where}"
    )
    return rows, ctx.db.scalar(count_sql, tuple(params))


@dataclass(frozen=True)
class FolderEntry:
    """One child of a folder in the `assets/paths/` listing."""

    path: str
    aggregate_files: int
    aggregate_size: int
    asset_id: str | None
    url: str | None


class FolderNotFound(Exception):
    pass


def folder_children(ctx: ArchiveContext, version_id: int, folder: str) -> list[FolderEntry]:
    """Direct children of `folder` ("" = root) with recursive file counts and sizes."""
    folder = folder.strip("/")
    if folder:
        bounds = " AND va.path > ? AND va.path < ?"
        params: tuple = (version_id, folder + "/", folder + "0")
    else:
        bounds, params = "", (version_id,)
    rows = ctx.db.all(
        "SELECT va.path, a.asset_id, b.blob_id, b.size AS blob_size, z.zarr_id,"
        " z.size AS zarr_size FROM version_assets va JOIN assets a ON a.id = va.asset"
        " LEFT JOIN blobs b ON b.id = a.blob LEFT JOIN zarrs z ON z.id = a.zarr"
        f" WHERE va.version_id = ?{bounds} ORDER BY va.path",
        params,
    )
    if folder and not rows:
        is_file = ctx.db.one(
            "SELECT 1 FROM version_assets WHERE version_id = ? AND path = ?", (version_id, folder)
        )
        if is_file:
            return []
        raise FolderNotFound(folder)
    skip = len(folder) + 1 if folder else 0
    children: dict[str, list] = {}
    entries: dict[str, FolderEntry] = {}
    for row in rows:
        rest = row["path"][skip:]
        head, sep, _ = rest.partition("/")
        child = row["path"][: skip + len(head)]
        size = int(row["blob_size"] if row["blob_id"] else (row["zarr_size"] or 0))
        if sep:
            counts = children.setdefault(child, [0, 0])
            counts[0] += 1
            counts[1] += size
        else:
            url = ctx.store.object_url(
                blob_key(row["blob_id"]) if row["blob_id"] else zarr_prefix(row["zarr_id"])
            )
            entries[child] = FolderEntry(child, 1, size, row["asset_id"], url)
    for child, (count, size) in children.items():
        entries[child] = FolderEntry(child, count, size, None, None)
    return [entries[p] for p in sorted(entries)]
