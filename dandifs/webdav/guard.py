"""Requests refused before any I/O: path tricks, names that cannot exist, writes outside drafts.

Runs outside WsgiDAV, before authentication and before any archive request, so a
malformed or hostile request costs nothing but this check (and WsgiDAV never sees a path
it would try to normalise).  The raw request URI is inspected because the WSGI server has
already decoded PATH_INFO: `%2f` (a slash inside a name) and `%2e%2e` (a disguised `..`)
are only visible there.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from wsgidav import util
from wsgidav.dav_error import DAVError

from dandifs import errors
from dandifs.namespace import routes
from dandifs.webdav.errors import to_dav_error
from dandifs.webdav.html import METADATA_ROUTE
from dandifs.namespace.writable import read_only_reason
from dandifs.webdav.writes import WRITE_METHODS, destination_path

READ_METHODS = frozenset({"GET", "HEAD", "PROPFIND", "OPTIONS"})
ENCODED_SEPARATOR = re.compile(r"%(2f|5c|00)", re.IGNORECASE)


def raw_path(environ: dict) -> str:
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or ""
    path = uri.split("?", 1)[0]
    if "://" in path:  # absolute-form request target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path


def refusal(environ: dict) -> str | None:
    """Why the request URI is malformed, or None if it is not."""
    path = raw_path(environ)
    if ENCODED_SEPARATOR.search(path):
        return "the path contains an encoded '/', '\\' or NUL; names cannot contain them"
    for segment in path.split("/"):
        if unquote(segment) in (".", ".."):
            return "the path contains '.' or '..' segments; use plain names"
    if "\x00" in environ.get("PATH_INFO", ""):
        return "the path contains a NUL character"
    return None


def namespace_path(path: str) -> str:
    """The archive path a request path refers to (the metadata view wraps one)."""
    if path == f"/{METADATA_ROUTE}" or path.startswith(f"/{METADATA_ROUTE}/"):
        return path[len(METADATA_ROUTE) + 1 :] or "/"
    return path


def check(environ: dict) -> None:
    """Raise the `DAVError` that refuses this request, if any."""
    method = environ["REQUEST_METHOD"]
    if method not in READ_METHODS | WRITE_METHODS:
        raise DAVError(405, context_info=f"{method} is not a WebDAV method this server answers")
    reason = refusal(environ)
    if reason:
        raise DAVError(400, context_info=reason)
    if method == "OPTIONS":
        return
    path = environ.get("PATH_INFO") or "/"
    if method in WRITE_METHODS:
        check_write(environ, method, path)
        return
    path = namespace_path(path)
    try:
        route = routes.parse_path(path)
    except errors.InvalidPath as exc:
        raise to_dav_error(exc) from None
    if isinstance(route, routes.InVersion) and route.never_exists:
        raise to_dav_error(errors.NotFound(f"{path}: no archive object has this name"))


def check_write(environ: dict, method: str, path: str) -> None:
    """Writes go to draft paths only: the target, and for MOVE/COPY the destination
    (COPY may read from anywhere)."""
    targets = [] if method == "COPY" else [path]
    if method in ("MOVE", "COPY"):
        destination = destination_path(environ)
        if destination is None:
            raise DAVError(400, context_info=f"{method} needs a Destination header with a path")
        targets.append(destination)
    for target in targets:
        reason = read_only_reason(target)
        if reason is not None:
            raise to_dav_error(errors.ReadOnly(f"{method} refused: {reason}"))


class RequestGuard:
    """WSGI middleware that answers refused requests itself and passes the rest on."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        try:
            check(environ)
        except DAVError as refused:
            environ["wsgidav.auth.user_name"] = "-"
            return util.send_status_response(
                environ, start_response, refused, is_head=environ["REQUEST_METHOD"] == "HEAD"
            )
        return self.app(environ, start_response)
