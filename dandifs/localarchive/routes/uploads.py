"""Blob uploads (`/uploads/…`) and `/blobs/digest/`: JSON bodies only."""

from __future__ import annotations

from starlette.responses import Response

from dandifs.localarchive.problems import ApiError, detail, fields, listing, message, not_found
from dandifs.localarchive.routes.common import (
    Call,
    dandiset_field,
    endpoint,
    integer_field,
    ok,
    require_fields,
)
from dandifs.localarchive.services import blobs as service
from dandifs.localarchive.services.access import dandiset_row

UPLOAD = r"(?P<upload>[0-9a-f-]{36})"


def _json_only(call: Call) -> dict:
    content_type = call.headers.get("content-type", "application/json").split(";")[0].strip()
    if call.body and content_type != "application/json":
        raise detail(415, f'Unsupported media type "{content_type}" in request.')
    return call.json_object()


def initialize(call: Call) -> Response:
    user = call.writer
    data = _json_only(call)
    require_fields(data, "contentSize", "dandiset")
    size = integer_field(data, "contentSize", minimum=1)
    identifier = dandiset_field(data["dandiset"])
    require_fields(data, "digest")
    digest = data["digest"]
    if not isinstance(digest, dict) or not isinstance(digest.get("value"), str):
        raise fields(400, digest="Invalid digest.")
    if digest.get("algorithm") != "dandi:dandi-etag":
        raise listing(400, "Unsupported Digest Type")
    dandiset = dandiset_row(call.ctx, identifier)
    return ok(service.initialize(call.ctx, dandiset, user, etag=digest["value"], size=size))


def complete(call: Call) -> Response:
    user = call.writer
    data = _json_only(call)
    upload = service.upload_row(call.ctx, call.params["upload"], user)
    parts = data.get("parts")
    if parts is None:
        raise fields(400, parts="This field is required.")
    if not isinstance(parts, list) or not parts:
        raise ApiError(400, {"parts": {"non_field_errors": ["This list may not be empty."]}})
    cleaned = []
    for part in parts:
        try:
            cleaned.append({"part_number": int(part["part_number"]), "size": int(part["size"]),
                            "etag": str(part["etag"])})
        except (TypeError, KeyError, ValueError):
            raise fields(400, parts="Each part needs an integer part_number and size, and an"
                                    " etag.") from None
    return ok(service.complete(call.ctx, upload, cleaned))


def validate(call: Call) -> Response:
    user = call.writer
    _json_only(call)
    upload = service.upload_row(call.ctx, call.params["upload"], user)
    return ok(service.serialize_blob(service.validate(call.ctx, upload)))


def digest(call: Call) -> Response:
    data = _json_only(call)
    require_fields(data, "algorithm", "value")
    algorithm, value = data["algorithm"], str(data["value"])
    if algorithm == "dandi:dandi-etag":
        blob = service.blob_by_etag(call.ctx, value)
    elif algorithm == "dandi:sha2-256":
        blob = service.blob_by_sha256(call.ctx, value)
    else:
        raise message(400, "Unsupported Digest Algorithm. Supported: dandi:dandi-etag,"
                           " dandi:sha2-256")
    if blob is None:
        raise not_found()
    return ok(service.serialize_blob(blob))


ENDPOINTS = [
    endpoint("/api/uploads/initialize/", POST=initialize),
    endpoint(f"/api/uploads/{UPLOAD}/complete/", POST=complete),
    endpoint(f"/api/uploads/{UPLOAD}/validate/", POST=validate),
    endpoint("/api/blobs/digest/", POST=digest, open_writes=True),
]
