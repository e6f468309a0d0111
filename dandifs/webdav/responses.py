"""Small pieces of HTTP responses the provider writes itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wsgidav import util
from wsgidav.dav_error import DAVError

from dandifs.webdav.resources import FileResource


def read_body(environ: dict, limit: int = 1 << 20) -> bytes:
    """The request body (bounded: a PROPFIND body is a few hundred bytes)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise DAVError(400, context_info="invalid Content-Length") from None
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length > limit:
        raise DAVError(413, context_info=f"request body over {limit} bytes")
    if length > 0:
        body = environ["wsgi.input"].read(length)
    elif chunked:  # the server de-chunks; read to the end, but no further than the limit
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise DAVError(413, context_info=f"request body over {limit} bytes")
    else:
        body = b""
    environ["wsgidav.all_input_read"] = 1
    return body


def validators(resource: FileResource) -> list[tuple[str, str]]:
    headers = []
    if resource.get_etag():
        headers.append(("ETag", f'"{resource.get_etag()}"'))
    if resource.get_last_modified() is not None:
        headers.append(("Last-Modified", util.get_rfc1123_time(resource.get_last_modified())))
    return headers


def send_body(environ, start_response, body: bytes, content_type: str) -> list[bytes]:
    start_response(
        "200 OK",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("Date", util.get_rfc1123_time()),
        ],
    )
    return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value
