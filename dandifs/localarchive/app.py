"""The local archive's REST API as an ASGI application.

Routing is done here rather than by Starlette's router because the reference (Django + DRF)
has behaviours Starlette's router does not: a 301 to the slash-ful URL (relative Location, query
kept) for any slash-less URL that would match, Django's HTML 404 page for unmatched URLs, and the
permission check (401) before the method check (405).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from dandifs.localarchive.auth import authenticate, ensure_users
from dandifs.localarchive.context import ArchiveContext
from dandifs.localarchive.db import Database
from dandifs.localarchive.objectstore import ObjectStore
from dandifs.localarchive.problems import ApiError
from dandifs.localarchive.routes import (
    assets,
    dandisets,
    general,
    uploads,
    versions,
    webdav,
    zarrs,
)
from dandifs.localarchive.routes.common import Call, Endpoint, error_response
from dandifs.localarchive.services.worker import Worker
from dandifs.localarchive.settings import ArchiveSettings

log = logging.getLogger(__name__)

ENDPOINTS: list[Endpoint] = [
    *general.ENDPOINTS,
    *dandisets.ENDPOINTS,
    *versions.ENDPOINTS,
    *assets.ENDPOINTS,
    *uploads.ENDPOINTS,
    *zarrs.ENDPOINTS,
    *webdav.ENDPOINTS,
]
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_NOT_FOUND_PAGE = (
    '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n'
    "<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    "</body>\n</html>\n"
)
_SERVER_ERROR_PAGE = (
    '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n'
    "<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)


def match(path: str) -> tuple[Endpoint, dict[str, str]] | None:
    for candidate in ENDPOINTS:
        found = candidate.regex.match(path)
        if found:
            return candidate, found.groupdict()
    return None


def _serve(ctx: ArchiveContext, found: Endpoint, call: Call) -> Response:
    """Authenticate and run a handler (in a worker thread: handlers are synchronous)."""
    try:
        call.user = authenticate(ctx.db, call.headers.get("authorization"))
        response = found.serve(call)
    except ApiError as error:
        response = error_response(error)
    except Exception:  # noqa: BLE001 - Django's behaviour: log it, answer an HTML 500
        log.exception("%s %s failed", call.method, call.url)
        response = HTMLResponse(_SERVER_ERROR_PAGE, status_code=500)
    response.headers["X-Request-Username"] = call.user.username if call.user else "AnonymousUser"
    return response


def create_app(settings: ArchiveSettings, store: ObjectStore) -> Starlette:
    """The API app over a SQLite file and an object store; its worker runs while it serves."""
    db = Database(settings.db_path)
    ensure_users(db, settings.users)
    ctx = ArchiveContext(settings=settings, db=db, store=store)
    worker = Worker(ctx)

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        found = match(path)
        if found is None:
            if not path.endswith("/") and match(path + "/") is not None:
                query = request.url.query
                location = path + "/" + (f"?{query}" if query else "")
                return Response(status_code=301, headers={"Location": location},
                                media_type="text/html; charset=utf-8")
            return HTMLResponse(_NOT_FOUND_PAGE, status_code=404)
        endpoint, params = found
        call = Call(
            ctx=ctx,
            method=request.method,
            url=str(request.url),
            query=request.query_params,
            params=params,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        return await anyio.to_thread.run_sync(_serve, ctx, endpoint, call)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = Starlette(routes=[Route("/{rest:path}", dispatch, methods=ALL_METHODS)],
                    lifespan=lifespan)
    app.state.archive = ctx
    return app
