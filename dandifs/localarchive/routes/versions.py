"""`/dandisets/{id}/versions/…`: listing, metadata, info, update and publish."""

from __future__ import annotations

import json

from starlette.responses import Response

from dandifs.localarchive.pagination import standard_page
from dandifs.localarchive.problems import fields, message
from dandifs.localarchive.routes.common import Call, endpoint, ok
from dandifs.localarchive.routes.dandisets import DS
from dandifs.localarchive.routes.shapes import version_detail, version_item
from dandifs.localarchive.services import versions as service
from dandifs.localarchive.services.access import (
    refuse_during_unembargo,
    require_owner,
    require_readable,
    require_version,
)

VER = r"(?P<version>draft|0\.\d{6}\.\d{4})"
_ORDERS = {"created": "created, id", "-created": "created DESC, id DESC"}


def list_versions(call: Call) -> Response:
    dandiset = require_readable(call.ctx, call.params["dandiset"], call.user)
    order = call.query.get("order", "created")
    if order not in _ORDERS:
        raise fields(400, order=f"Select a valid choice. {order} is not one of the available"
                                " choices.")
    db = call.ctx.db
    total = db.scalar("SELECT COUNT(*) FROM versions WHERE dandiset_id = ?", (dandiset["id"],))

    def fetch(offset: int, limit: int) -> list[dict]:
        rows = db.all(
            f"SELECT * FROM versions WHERE dandiset_id = ? ORDER BY {_ORDERS[order]}"
            " LIMIT ? OFFSET ?",
            (dandiset["id"], limit, offset),
        )
        return [version_item(call.ctx, dandiset, row, call.user) for row in rows]

    return ok(standard_page(call.url, call.query_dict, total, fetch))


def _readable_version(call: Call):
    dandiset = require_readable(call.ctx, call.params["dandiset"], call.user)
    return dandiset, require_version(call.ctx, dandiset, call.params["version"])


def get_metadata(call: Call) -> Response:
    _, version = _readable_version(call)
    return ok(json.loads(version["metadata"]))


def info(call: Call) -> Response:
    dandiset, version = _readable_version(call)
    return ok(version_detail(call.ctx, dandiset, version, call.user))


def update(call: Call) -> Response:
    dandiset = require_owner(call.ctx, call.params["dandiset"], call.user)
    if call.params["version"] != "draft":
        raise message(405, "Only draft versions can be modified.")
    refuse_during_unembargo(dandiset)
    data = call.json_object()
    missing = {k: "This field is required." for k in ("metadata", "name") if data.get(k) is None}
    if missing:
        raise fields(400, **missing)
    if not isinstance(data["metadata"], dict):
        raise fields(400, metadata="Expected a dictionary of items.")
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise fields(400, name="This field may not be blank.")
    if len(name) > 300:
        raise fields(400, name="Ensure this field has no more than 300 characters.")
    draft = require_version(call.ctx, dandiset, "draft")
    service.update_draft(call.ctx, dandiset, draft, name=name, metadata=data["metadata"])
    draft = require_version(call.ctx, dandiset, "draft")
    return ok(version_detail(call.ctx, dandiset, draft, call.user))


def delete(call: Call) -> Response:
    require_readable(call.ctx, call.params["dandiset"], call.user)
    if call.params["version"] == "draft":
        raise message(403, "Cannot delete draft versions")
    raise message(403, "Cannot delete published versions")


def publish(call: Call) -> Response:
    dandiset = require_owner(call.ctx, call.params["dandiset"], call.user)
    if call.params["version"] != "draft":
        raise message(405, "Only draft versions can be published")
    data = call.json() or {}
    notes = data.get("release_notes", "") if isinstance(data, dict) else ""
    if not isinstance(notes, str) or len(notes) > 5000:
        raise fields(400, release_notes="Ensure this field has no more than 5000 characters.")
    draft = require_version(call.ctx, dandiset, "draft")
    service.publish(call.ctx, dandiset, draft, notes)
    return Response(status_code=202)


ENDPOINTS = [
    endpoint(f"/api/dandisets/{DS}/versions/", GET=list_versions),
    endpoint(f"/api/dandisets/{DS}/versions/{VER}/", GET=get_metadata, PUT=update, DELETE=delete),
    endpoint(f"/api/dandisets/{DS}/versions/{VER}/info/", GET=info),
    endpoint(f"/api/dandisets/{DS}/versions/{VER}/publish/", POST=publish),
]
