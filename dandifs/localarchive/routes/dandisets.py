"""`/dandisets/` and a dandiset's own sub-resources (star, users, uploads)."""

from __future__ import annotations

import json
import re

from starlette.responses import Response

from dandifs.localarchive.db import Row
from dandifs.localarchive.pagination import standard_page
from dandifs.localarchive.problems import detail, fields, message, no_credentials
from dandifs.localarchive.routes.common import Call, endpoint, no_content, ok
from dandifs.localarchive.routes.shapes import dandiset_detail, dandiset_list_item
from dandifs.localarchive.services import dandisets as service
from dandifs.localarchive.services.access import (
    is_owner,
    require_dandiset,
    require_owner,
    require_readable,
)
from dandifs.localarchive.services.assets import blob_key
from dandifs.localarchive.services.versions import SIZE_OF_ASSET

DS = r"(?P<dandiset>\d{6})"

_NEWEST_VERSION = (
    "(SELECT v.id FROM versions v WHERE v.dandiset_id = d.id"
    " ORDER BY v.created DESC, v.id DESC LIMIT 1)"
)
_ORDERINGS = {
    "id": "d.id",
    "name": f"(SELECT name FROM versions WHERE id = {_NEWEST_VERSION})",
    "modified": f"(SELECT modified FROM versions WHERE id = {_NEWEST_VERSION})",
    "size": (
        f"(SELECT COALESCE(SUM({SIZE_OF_ASSET}), 0) FROM version_assets va"
        " JOIN assets a ON a.id = va.asset LEFT JOIN blobs b ON b.id = a.blob"
        f" LEFT JOIN zarrs z ON z.id = a.zarr WHERE va.version_id = {_NEWEST_VERSION})"
    ),
    "stars": "(SELECT COUNT(*) FROM stars s WHERE s.dandiset_id = d.id)",
}


def _search_words(text: str) -> list[str]:
    return [w.strip('"').lower() for w in re.findall(r'"[^"]*"|\S+', text.replace("\0", ""))]


def list_dandisets(call: Call) -> Response:
    ctx, user = call.ctx, call.user
    draft = call.flag("draft", True)
    empty = call.flag("empty", True)
    embargoed = call.flag("embargoed", False)
    starred = call.flag("starred", False)
    if embargoed and user is None:
        raise message(401, "Authentication credentials must be provided when attempting to"
                           " access embargoed dandisets")
    if starred and user is None:
        raise message(401, "Must be authenticated to filter by starred dandisets.")
    where, params = ["1"], []
    if not draft:
        where.append("EXISTS (SELECT 1 FROM versions v WHERE v.dandiset_id = d.id"
                     " AND v.version != 'draft')")
    if not empty:
        where.append(f"EXISTS (SELECT 1 FROM version_assets WHERE version_id = {_NEWEST_VERSION})")
    if not embargoed:
        where.append("d.embargo_status = 'OPEN'")
    elif not (user and user.admin):
        where.append("(d.embargo_status = 'OPEN' OR EXISTS (SELECT 1 FROM owners o"
                     " WHERE o.dandiset_id = d.id AND o.user_id = ?))")
        params.append(user.id)
    if call.query.get("user") == "me":
        where.append("EXISTS (SELECT 1 FROM owners o WHERE o.dandiset_id = d.id"
                     " AND o.user_id = ?)")
        params.append(user.id if user else -1)
    for word in _search_words(call.query.get("search", "")):
        where.append("EXISTS (SELECT 1 FROM versions v WHERE v.dandiset_id = d.id"
                     " AND instr(lower(v.metadata), ?) > 0)")
        params.append(json.dumps(word)[1:-1])
    order = "d.id"
    if starred:
        where.append("EXISTS (SELECT 1 FROM stars s WHERE s.dandiset_id = d.id AND s.user_id = ?)")
        params.append(user.id)
        order = "(SELECT created FROM stars s WHERE s.dandiset_id = d.id AND s.user_id = ?) DESC"
    ordering = call.query.get("ordering", "")
    if ordering.lstrip("-") in _ORDERINGS and not starred:
        order = _ORDERINGS[ordering.lstrip("-")] + (" DESC" if ordering.startswith("-") else "")
        order += ", d.id"
    sql_where = " AND ".join(where)
    total = ctx.db.scalar(f"SELECT COUNT(*) FROM dandisets d WHERE {sql_where}", tuple(params))

    def fetch(offset: int, limit: int) -> list[dict]:
        order_params = (user.id,) if starred else ()
        rows = ctx.db.all(
            f"SELECT d.* FROM dandisets d WHERE {sql_where} ORDER BY {order} LIMIT ? OFFSET ?",
            (*params, *order_params, limit, offset),
        )
        return [dandiset_list_item(ctx, row, user) for row in rows]

    return ok(standard_page(call.url, call.query_dict, total, fetch))


def _embargo_end_date(call: Call) -> str | None:
    funding, award = call.query.get("funding_source"), call.query.get("award_number")
    if bool(funding) != bool(award):
        raise fields(400, non_field_errors="Both funding_source and award_number are required")
    return call.query.get("embargo_end_date") or None


def create(call: Call) -> Response:
    user = call.writer
    embargo = call.flag("embargo", False)
    data = call.json_object()
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fields(400, name="This field is required." if name is None
                     else "This field may not be blank.")
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        # The reference fails with an unhandled error (HTML 500) here; a clear 400 is kinder.
        raise fields(400, metadata="This field is required." if metadata is None
                     else "Expected a JSON object.")
    end_date = _embargo_end_date(call) if embargo else None
    dandiset = service.create_dandiset(
        call.ctx, user, name=name, metadata=metadata, embargo=embargo, embargo_end_date=end_date
    )
    return ok(dandiset_detail(call.ctx, dandiset, user))


def get(call: Call) -> Response:
    dandiset = require_readable(call.ctx, call.params["dandiset"], call.user)
    return ok(dandiset_detail(call.ctx, dandiset, call.user))


def delete(call: Call) -> Response:
    user = call.writer
    dandiset = require_readable(call.ctx, call.params["dandiset"], user)
    service.delete_dandiset(call.ctx, dandiset, user)
    return no_content()


def _star(starred: bool):
    def handler(call: Call) -> Response:
        dandiset = require_readable(call.ctx, call.params["dandiset"], call.user)
        return ok({"count": service.set_star(call.ctx, dandiset, call.writer, starred)})

    return handler


def owners(call: Call) -> Response:
    dandiset = require_readable(call.ctx, call.params["dandiset"], call.user)
    rows = call.ctx.db.all(
        "SELECT u.* FROM owners o JOIN users u ON u.id = o.user_id WHERE o.dandiset_id = ?"
        " ORDER BY u.id",
        (dandiset["id"],),
    )
    return ok([
        {"username": r["username"], "name": f"{r['first_name']} {r['last_name']}".strip(),
         "email": r["email"] if call.user else None}
        for r in rows
    ])


def set_owners(call: Call) -> Response:
    user = call.writer
    dandiset = require_readable(call.ctx, call.params["dandiset"], user)
    if not is_owner(call.ctx, dandiset["id"], user):
        raise message(403, "Action not allowed")
    data = call.json()
    if not isinstance(data, list) or not all(
            isinstance(item, dict) and isinstance(item.get("username"), str) for item in data):
        raise fields(400, non_field_errors="Expected a list of {\"username\": ...} objects.")
    service.set_owners(call.ctx, dandiset, [item["username"] for item in data])
    return owners(call)


def unembargo(call: Call) -> Response:
    dandiset = require_owner(call.ctx, call.params["dandiset"], call.user)
    service.unembargo(call.ctx, dandiset)
    return ok(None)


def _owner_of(call: Call) -> Row:
    if call.user is None:
        raise no_credentials()
    dandiset = require_dandiset(call.ctx, call.params["dandiset"])
    if not is_owner(call.ctx, dandiset["id"], call.user):
        raise detail(403, "You do not have permission to perform this action.")
    return dandiset


def uploads(call: Call) -> Response:
    dandiset = _owner_of(call)
    db, store = call.ctx.db, call.ctx.store
    total = db.scalar("SELECT COUNT(*) FROM uploads WHERE dandiset_id = ?", (dandiset["id"],))

    def fetch(offset: int, limit: int) -> list[dict]:
        rows = db.all(
            "SELECT * FROM uploads WHERE dandiset_id = ? ORDER BY created LIMIT ? OFFSET ?",
            (dandiset["id"], limit, offset),
        )
        return [
            {"created": r["created"], "blob": store.presign_get(blob_key(r["upload_id"])),
             "upload_id": r["upload_id"], "etag": r["etag"], "size": r["size"]}
            for r in rows
        ]

    return ok(standard_page(call.url, call.query_dict, total, fetch))


def drop_uploads(call: Call) -> Response:
    dandiset = _owner_of(call)
    with call.ctx.db.tx() as conn:
        conn.execute("DELETE FROM uploads WHERE dandiset_id = ?", (dandiset["id"],))
    return no_content()


ENDPOINTS = [
    endpoint("/api/dandisets/", GET=list_dandisets, POST=create),
    endpoint(f"/api/dandisets/{DS}/", GET=get, DELETE=delete),
    endpoint(f"/api/dandisets/{DS}/star/", POST=_star(True), DELETE=_star(False)),
    endpoint(f"/api/dandisets/{DS}/users/", GET=owners, PUT=set_owners),
    endpoint(f"/api/dandisets/{DS}/unembargo/", POST=unembargo),
    endpoint(f"/api/dandisets/{DS}/uploads/", GET=uploads, DELETE=drop_uploads),
]
