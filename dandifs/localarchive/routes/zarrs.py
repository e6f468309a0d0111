"""`/zarr/…`: zarr archives and their files."""

from __future__ import annotations

from starlette.responses import Response

from dandifs.localarchive.pagination import replace_query_param, standard_page
from dandifs.localarchive.problems import fields
from dandifs.localarchive.routes.assets import UUID4
from dandifs.localarchive.routes.common import (
    Call,
    dandiset_field,
    endpoint,
    no_content,
    ok,
    redirect,
)
from dandifs.localarchive.services import zarrs as service
from dandifs.localarchive.services.access import dandiset_row, visible

ZARR = rf"(?P<zarr>{UUID4})"


def create(call: Call) -> Response:
    user = call.writer
    data = call.json_object()
    missing = {k: "This field is required." for k in ("name", "dandiset") if data.get(k) is None}
    if missing:
        raise fields(400, **missing)
    identifier = dandiset_field(data["dandiset"])
    dandiset = dandiset_row(call.ctx, identifier)
    if dandiset is None or not visible(call.ctx, dandiset, user):
        raise fields(400, dandiset=f'Invalid pk "{int(identifier)}" - object does not exist.')
    name = data["name"]
    if not isinstance(name, str) or not name or len(name) > 512:
        raise fields(400, name="A valid name (at most 512 characters) is required.")
    return ok(service.serialize_zarr(service.create_zarr(call.ctx, dandiset, user, name)))


def list_zarrs(call: Call) -> Response:
    user = call.user
    where, params = ["1"], []
    if call.query.get("dandiset"):
        where.append("z.dandiset_id = ?")
        params.append(int(call.query["dandiset"]) if call.query["dandiset"].isdigit() else -1)
    if call.query.get("name") is not None:
        where.append("z.name = ?")
        params.append(call.query["name"])
    if not (user and user.admin):
        where.append("(d.embargo_status = 'OPEN' OR EXISTS (SELECT 1 FROM owners o"
                     " WHERE o.dandiset_id = d.id AND o.user_id = ?))")
        params.append(user.id if user else -1)
    sql = f"FROM zarrs z JOIN dandisets d ON d.id = z.dandiset_id WHERE {' AND '.join(where)}"
    db = call.ctx.db
    total = db.scalar(f"SELECT COUNT(*) {sql}", tuple(params))

    def fetch(offset: int, limit: int) -> list[dict]:
        rows = db.all(f"SELECT z.* {sql} ORDER BY z.created, z.id LIMIT ? OFFSET ?",
                      (*params, limit, offset))
        return [service.serialize_zarr(r) for r in rows]

    return ok(standard_page(call.url, call.query_dict, total, fetch))


def get(call: Call) -> Response:
    return ok(service.serialize_zarr(service.visible_zarr(call.ctx, call.params["zarr"],
                                                          call.user)))


def list_files(call: Call) -> Response:
    zarr = service.visible_zarr(call.ctx, call.params["zarr"], call.user)
    prefix = service.clean_file_path(call.query.get("prefix", "")).rstrip("/")
    if call.flag("download", False) or call.method == "HEAD":
        key = service.zarr_prefix(zarr["zarr_id"]) + prefix
        store = call.ctx.store
        return redirect(store.presign_head(key) if call.method == "HEAD"
                        else store.presign_get(key), 302)
    try:
        limit = max(0, min(int(call.query.get("limit", 1000)), 1000))
    except ValueError:
        raise fields(400, limit="A valid integer is required.") from None
    results, after = service.files_page(call.ctx, zarr, prefix=prefix,
                                        after=call.query.get("after", ""), limit=limit)
    following = replace_query_param(call.url, "after", after) if after else None
    return ok({"next": following, "results": results})


def _file_list(call: Call, *keys: str) -> list[dict]:
    data = call.json()
    if not isinstance(data, list) or not all(
        isinstance(item, dict) and all(isinstance(item.get(k), str) for k in keys)
        for item in data
    ):
        raise fields(400, non_field_errors=f"Expected a list of objects with {', '.join(keys)}.")
    return data


def upload_urls(call: Call) -> Response:
    user = call.writer
    zarr = service.visible_zarr(call.ctx, call.params["zarr"], user)
    files = _file_list(call, "path", "base64md5")
    return ok(service.upload_urls(call.ctx, zarr, user, files))


def delete_files(call: Call) -> Response:
    user = call.writer
    zarr = service.visible_zarr(call.ctx, call.params["zarr"], user)
    files = _file_list(call, "path")
    service.delete_files(call.ctx, zarr, user, [f["path"] for f in files])
    return no_content()


def finalize(call: Call) -> Response:
    user = call.writer
    zarr = service.visible_zarr(call.ctx, call.params["zarr"], user)
    service.finalize(call.ctx, zarr, user)
    return no_content()


ENDPOINTS = [
    endpoint("/api/zarr/", GET=list_zarrs, POST=create),
    endpoint(f"/api/zarr/{ZARR}/", GET=get),
    endpoint(f"/api/zarr/{ZARR}/files/", GET=list_files, HEAD=list_files, POST=upload_urls,
             DELETE=delete_files),
    endpoint(f"/api/zarr/{ZARR}/finalize/", POST=finalize),
]
