"""Assets: the nested `…/versions/{v}/assets/…` endpoints and the top-level `/assets/{id}/`."""

from __future__ import annotations

import json
import posixpath
from typing import Any

from starlette.responses import Response

from dandifs.localarchive.db import Row
from dandifs.localarchive.pagination import lazy_page, standard_page
from dandifs.localarchive.problems import detail, fields, message, no_credentials, not_found
from dandifs.localarchive.routes.common import Call, endpoint, no_content, ok, redirect
from dandifs.localarchive.routes.dandisets import DS
from dandifs.localarchive.routes.versions import VER
from dandifs.localarchive.services import assets as service
from dandifs.localarchive.services.access import (
    is_owner,
    refuse_during_unembargo,
    require_owner,
    require_readable,
    require_version,
)

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
ASSET = rf"(?P<asset>{UUID4})"
NESTED = f"/api/dandisets/{DS}/versions/{VER}/assets/"


def _readable_version(call: Call) -> tuple[Row, Row]:
    dandiset = require_readable(call.ctx, call.params["dandiset"], call.user)
    return dandiset, require_version(call.ctx, dandiset, call.params["version"])


def list_assets(call: Call) -> Response:
    _, version = _readable_version(call)
    order = call.query.get("order", "created")
    if order not in service.ORDERINGS:
        raise fields(400, order=f"Select a valid choice. {order} is not one of the available"
                                " choices.")
    with_metadata = call.flag("metadata", False)
    zarr_only = call.flag("zarr", False)
    path, glob = call.query.get("path"), call.query.get("glob")
    filters = dict(path=path, glob=glob, zarr_only=zarr_only)
    rows_cache: dict[str, int] = {}

    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        rows, total = service.list_assets(
            call.ctx, version["id"], order=order, offset=offset, limit=limit, **filters
        )
        rows_cache["count"] = total
        if with_metadata:
            return [{**service.serialize(r), "metadata": service.full_metadata(call.ctx, r)}
                    for r in rows]
        return [service.serialize(r) for r in rows]

    return ok(lazy_page(call.url, call.query_dict, fetch, lambda: rows_cache["count"]))


def folder(call: Call) -> Response:
    _, version = _readable_version(call)
    try:
        entries = service.folder_children(call.ctx, version["id"],
                                          call.query.get("path_prefix", ""))
    except service.FolderNotFound:
        raise detail(404, "Specified path not found.") from None

    def fetch(offset: int, limit: int) -> list[dict[str, Any]]:
        return [
            {
                "path": e.path,
                "version": version["id"],
                "aggregate_files": e.aggregate_files,
                "aggregate_size": e.aggregate_size,
                "asset": {"asset_id": e.asset_id, "url": e.url} if e.asset_id else None,
            }
            for e in entries[offset: offset + limit]
        ]

    return ok(standard_page(call.url, call.query_dict, len(entries), fetch))


# --- one asset ------------------------------------------------------------------------------


def _readable_asset(call: Call, row: Row | None) -> Row:
    """Embargoed data is for owners of a dandiset that holds it (and admins) only."""
    if row is None:
        raise not_found()
    if service.is_embargoed(row):
        if call.user is None:
            raise no_credentials()
        owners = call.ctx.db.all(
            "SELECT DISTINCT v.dandiset_id FROM version_assets va JOIN versions v"
            " ON v.id = va.version_id JOIN assets a ON a.id = va.asset"
            " WHERE a.blob IS ? AND a.zarr IS ?",
            (row["blob"], row["zarr"]),
        )
        if not any(is_owner(call.ctx, r["dandiset_id"], call.user) for r in owners):
            raise detail(403, "You do not have permission to perform this action.")
    return row


def _nested_asset(call: Call) -> Row:
    _readable_version(call)
    return _readable_asset(call, service.asset_by_id(call.ctx, call.params["asset"]))


def _top_asset(call: Call) -> Row:
    return _readable_asset(call, service.asset_by_id(call.ctx, call.params["asset"]))


def _metadata(lookup):
    def handler(call: Call) -> Response:
        return ok(service.full_metadata(call.ctx, lookup(call)))

    return handler


def _info(lookup):
    def handler(call: Call) -> Response:
        return ok(service.detail(call.ctx, lookup(call)))

    return handler


def _validation(lookup):
    def handler(call: Call) -> Response:
        row = lookup(call)
        return ok({"status": row["status"],
                   "validation_errors": json.loads(row["validation_errors"])})

    return handler


def _download(lookup):
    def handler(call: Call) -> Response:
        row = lookup(call)
        if row["zarr"] is not None:
            raise message(400, "Unable to provide download link for zarr assets. Please browse"
                               " the zarr files directly to do so.")
        url = call.ctx.store.presign_get(
            service.blob_key(row["blob_uuid"]), filename=posixpath.basename(row["path"])
        )
        return redirect(url, 302)

    return handler


# --- writes ---------------------------------------------------------------------------------


def _asset_request(call: Call) -> tuple[Row, Row, dict[str, Any], str | None, str | None]:
    """Checks shared by POST and PUT, in the reference's order."""
    dandiset = require_owner(call.ctx, call.params["dandiset"], call.user)
    version = require_version(call.ctx, dandiset, call.params["version"])
    refuse_during_unembargo(dandiset)
    data = call.json_object()
    blob_id, zarr_id = data.get("blob_id"), data.get("zarr_id")
    if (blob_id is None) == (zarr_id is None):
        raise fields(400, blob_id="Exactly one of blob_id or zarr_id must be specified.")
    metadata = data.get("metadata")
    if metadata is None:
        raise fields(400, metadata="This field is required.")
    if not isinstance(metadata, dict):
        raise fields(400, metadata="Expected a dictionary of items.")
    if not metadata.get("path"):
        raise fields(400, metadata="No path specified in metadata.")
    if not isinstance(metadata["path"], str):
        raise fields(400, non_field_errors="Path improperly formatted")
    service.check_path(metadata["path"])
    return dandiset, version, metadata, blob_id, zarr_id


def create(call: Call) -> Response:
    dandiset, version, metadata, blob_id, zarr_id = _asset_request(call)
    row = service.add_asset(call.ctx, dandiset, version, metadata, blob_id=blob_id,
                            zarr_id=zarr_id)
    return ok(service.detail(call.ctx, row))


def replace(call: Call) -> Response:
    dandiset, version, metadata, blob_id, zarr_id = _asset_request(call)
    row = service.replace_asset(call.ctx, dandiset, version, call.params["asset"], metadata,
                                blob_id=blob_id, zarr_id=zarr_id)
    return ok(service.detail(call.ctx, row))


def remove(call: Call) -> Response:
    dandiset = require_owner(call.ctx, call.params["dandiset"], call.user)
    version = require_version(call.ctx, dandiset, call.params["version"])
    refuse_during_unembargo(dandiset)
    service.remove_asset(call.ctx, version, call.params["asset"])
    return no_content()


ENDPOINTS = [
    endpoint(NESTED, GET=list_assets, POST=create),
    endpoint(NESTED + "paths/", GET=folder),
    endpoint(NESTED + f"{ASSET}/", GET=_metadata(_nested_asset), PUT=replace, DELETE=remove),
    endpoint(NESTED + f"{ASSET}/info/", GET=_info(_nested_asset)),
    endpoint(NESTED + f"{ASSET}/validation/", GET=_validation(_nested_asset)),
    endpoint(NESTED + f"{ASSET}/download/", GET=_download(_nested_asset)),
    endpoint(f"/api/assets/{ASSET}/", GET=_metadata(_top_asset)),
    endpoint(f"/api/assets/{ASSET}/info/", GET=_info(_top_asset)),
    endpoint(f"/api/assets/{ASSET}/download/", GET=_download(_top_asset)),
]
