"""`/webdav/assets/atpath/`: one path of a version (asset or folder), optionally with children.

The real archive serves this to dandidav, the official WebDAV front end; it answers "what is
at this path" in one request instead of a folder listing plus an asset lookup.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Row
from dandifs.localarchive.pagination import standard_page
from dandifs.localarchive.problems import detail, fields
from dandifs.localarchive.routes.common import Call, endpoint, ok
from dandifs.localarchive.services import assets as service
from dandifs.localarchive.services.access import require_readable, require_version


def _asset_resource(ctx: ArchiveContext, row: Row, with_metadata: bool) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "asset_id": row["asset_id"],
        "path": row["path"],
        "created": row["created"],
        "modified": row["modified"],
        "zarr": row["zarr_uuid"],
        "blob": row["blob_uuid"],
    }
    if with_metadata:
        resource["metadata"] = service.full_metadata(ctx, row)
    resource["size"] = service.size_of(row)
    return {"type": "asset", "resource": resource}


def _folder(path: str, entries: list[service.FolderEntry]) -> dict[str, Any]:
    return {"type": "folder", "resource": {
        "path": path,
        "total_assets": sum(e.aggregate_files for e in entries),
        "total_size": sum(e.aggregate_size for e in entries),
    }}


def atpath(call: Call) -> Response:
    missing = {k: "This field is required." for k in ("dandiset_id", "version_id")
               if not call.query.get(k)}
    if missing:
        raise fields(400, **missing)
    ctx = call.ctx
    dandiset = require_readable(ctx, call.query["dandiset_id"], call.user)
    version = require_version(ctx, dandiset, call.query["version_id"])
    path = call.query.get("path", "")
    with_metadata = call.flag("metadata", False)
    with_children = call.flag("children", False)
    stripped = path.strip("/")
    items: list[Any] = []
    asset = ctx.db.one(
        service.ASSET_SELECT + " JOIN version_assets va ON va.asset = a.id"
        " WHERE va.version_id = ? AND va.path = ?",
        (version["id"], stripped),
    ) if stripped else None
    if asset is not None:
        if path.endswith("/"):
            raise detail(404, f"Folder not found at {stripped}")
        items.append(_asset_resource(ctx, asset, with_metadata))
    elif stripped or with_children:
        try:
            entries = service.folder_children(ctx, version["id"], stripped)
        except service.FolderNotFound:
            raise detail(404, f"Folder or asset not found at {path}") from None
        if stripped:
            items.append(_folder(stripped, entries))
        if with_children:
            items.extend(entries)

    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        page = []
        for item in items[offset: offset + limit]:
            if not isinstance(item, service.FolderEntry):
                page.append(item)
            elif item.asset_id is None:
                page.append({"type": "folder", "resource": {
                    "path": item.path, "total_assets": item.aggregate_files,
                    "total_size": item.aggregate_size}})
            else:
                page.append(_asset_resource(ctx, service.asset_by_id(ctx, item.asset_id),
                                            with_metadata))
        return page

    return ok(standard_page(call.url, call.query_dict, len(items), fetch))


ENDPOINTS = [endpoint("/api/webdav/assets/atpath/", GET=atpath)]
