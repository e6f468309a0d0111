"""The WsgiDAV provider: the archive namespace served from the async core, writable in drafts.

WsgiDAV handles HEAD and streamed (ranged) GETs itself from the resources this provider
builds; `custom_request_handler` takes over what WsgiDAV would do wrongly or wastefully
for an archive: it answers OPTIONS without a lookup (class 2 on draft paths, class 1
elsewhere), renders PROPFIND straight from the entries (refusing Depth infinity and
malformed bodies before any I/O), answers conditional GETs locally, redirects file GETs,
and renders folder listings and metadata views.

Writes (PUT, DELETE, MKCOL, MOVE, COPY, PROPPATCH, LOCK, UNLOCK) are WsgiDAV's own
handlers, which evaluate If/If-Match/If-None-Match headers, lock tokens and Overwrite;
before them the caller's core must accept the path (`Core.check_writable`: a token, a
draft, a name the archive takes).  A PUT returns once the archive has the asset (or
says why not), so its status is the upload's outcome.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, replace
from typing import Any

from cachetools import LRUCache
from wsgidav import util
from wsgidav.dav_error import PRECONDITION_CODE_PropfindFiniteDepth, DAVError
from wsgidav.dav_provider import DAVProvider

from dandifs import errors
from dandifs.namespace import join_path, parent_path, routes
from dandifs.core import Core, CorePool, Entry, EntryKind, FileReader
from dandifs.webdav import conditional, propfind
from dandifs.webdav.auth import TOKEN_KEY
from dandifs.webdav.delivery import RedirectMode, choose_target, needs_token
from dandifs.webdav.errors import to_dav_error
from dandifs.webdav.html import METADATA_ROUTE, render_listing
from dandifs.core.portal import CorePortal
from dandifs.webdav.remotefile import RemoteFile
from dandifs.webdav.resources import FileResource, FolderResource
from dandifs.webdav.responses import json_value, read_body, send_body, validators
from dandifs.namespace.writable import is_in_draft
from dandifs.webdav.writes import (
    READ_ALLOW,
    WRITE_ALLOW,
    WRITE_METHODS,
    BodySink,
    destination_path,
    expected_length,
    mtime_from,
    short_body,
)


class DandiProvider(DAVProvider):
    """Every path of the archive namespace, for the caller whose token is in the environ."""

    def __init__(
        self,
        portal: CorePortal,
        cores: CorePool,
        *,
        api_url: str,
        redirect: RedirectMode = RedirectMode.S3,
    ) -> None:
        super().__init__()
        self.portal = portal
        self.cores = cores
        self.api_url = api_url
        self.redirect = redirect
        self.immutable = ImmutableEntries()

    # -- the core, called from WSGI worker threads --------------------------------------

    def _call(self, environ: dict, method: Callable[[Core], Awaitable[Any]]) -> Any:
        """Run `await method(core)` on the core of this request's caller."""
        token = environ.get(TOKEN_KEY)

        async def run() -> Any:
            result = method(await self.cores.get(token))
            return await result if isinstance(result, Awaitable) else result

        try:
            return self.portal.call(run)
        except errors.DandiFSError as exc:
            raise to_dav_error(exc) from None

    def token_is_valid(self, token: str) -> bool:
        try:
            self.portal.call(self.cores.get, token)
        except errors.InvalidToken:
            return False
        except errors.DandiFSError as exc:
            raise to_dav_error(exc) from None
        return True

    def stat(self, path: str, environ: dict) -> Entry:
        """The entry at `path`, looked up at most once per request.

        Entries of published versions never change, so they are also kept on this side of
        the portal: a GET inside a published version usually costs no hop to the core.
        """
        memo = environ.setdefault("dandifs.stat", {})
        key = path.rstrip("/") or "/"
        if key not in memo:
            token = environ.get(TOKEN_KEY)
            entry = self.immutable.get(token, key)
            if entry is None:
                entry = self._stat(key, environ)
                self.immutable.remember(token, key, entry)
            memo[key] = entry
        return memo[key]

    def _stat(self, path: str, environ: dict) -> Entry:
        try:
            return self._call(environ, lambda core: stat_as_folder(core, path))
        except DAVError as exc:
            if exc.value == 404 and environ.get(TOKEN_KEY) is None:
                self._challenge_if_hidden(path, environ)
            raise

    def _challenge_if_hidden(self, path: str, environ: dict) -> None:
        """Ask anonymous callers for a token when the dandiset itself is not visible to them.

        An embargoed dandiset is invisible without a token; answering 401 (for it and for a
        dandiset that does not exist alike, so nothing leaks) is what makes clients that send
        credentials only when challenged (davfs2, cadaver) retry with the user's token.
        """
        dandiset_id = dandiset_of(routes.parse_path(path))
        if dandiset_id is None:
            return
        dandiset_path = f"/dandisets/{dandiset_id}"
        if dandiset_path != path:
            try:
                self._call(environ, lambda core: core.stat(dandiset_path))
                return
            except DAVError as exc:
                if exc.value != 404:
                    return
        raise to_dav_error(
            errors.AuthenticationRequired(
                f"dandiset {dandiset_id} does not exist or is embargoed: to see an embargoed "
                "dandiset, authenticate with your DANDI API token as the password"
            )
        )

    def listdir(self, path: str, environ: dict) -> list[Entry]:
        memo = environ.setdefault("dandifs.listdir", {})
        key = path.rstrip("/") or "/"
        if key not in memo:
            children = self._call(environ, lambda core: core.listdir(key, follow=True))
            token = environ.get(TOKEN_KEY)
            for child in children:
                self.immutable.remember(token, join_path(key, child.name), child)
            memo[key] = children
        return memo[key]

    def open(self, entry: Entry, environ: dict) -> io.RawIOBase:
        reader: FileReader = self._call(environ, lambda core: core.open(entry))
        return RemoteFile(self.portal, reader, entry.size)

    # -- WsgiDAV's provider interface ----------------------------------------------------

    def is_readonly(self) -> bool:
        return False  # per path: the guard and the core refuse writes outside drafts

    def get_resource_inst(self, path: str, environ: dict) -> FolderResource | FileResource | None:
        """The resource at `path`, None if nothing is there (WsgiDAV's write handlers
        ask so: PUT creates, MKCOL needs an unmapped URL)."""
        try:
            return self.resource(path, environ)
        except DAVError as exc:
            if exc.value == 404:
                return None
            raise

    def resource(self, path: str, environ: dict) -> FolderResource | FileResource:
        return self.resource_for(path, self.stat(path, environ), environ)

    def resource_for(self, path: str, entry: Entry, environ: dict) -> FolderResource | FileResource:
        if entry.is_folder:
            return FolderResource(path, environ, entry, self)
        return FileResource(path, environ, entry, self)

    # -- requests WsgiDAV should not handle its own way ----------------------------------

    def custom_request_handler(self, environ, start_response, default_handler):
        method = environ["REQUEST_METHOD"]
        path = environ["PATH_INFO"]
        if method == "OPTIONS":
            return self._options(start_response, path)
        if method == "PROPFIND":
            return self._propfind(environ, start_response)
        if method in WRITE_METHODS:
            return self._write(environ, start_response, default_handler)
        if path.startswith(f"/{METADATA_ROUTE}/") or path == f"/{METADATA_ROUTE}":
            return self._metadata(environ, start_response, path[len(METADATA_ROUTE) + 1 :] or "/")
        resource = self.resource(path, environ)
        if resource.is_collection:
            return self._listing(environ, start_response, resource)
        precondition = conditional.evaluate(environ, resource.get_etag(), resource.get_last_modified())
        if precondition is not None:
            # Revalidations (davfs2, browsers, wget -N) are answered here, without S3.
            return self._unchanged(start_response, resource, precondition)
        target = choose_target(
            resource.entry, self.redirect, self.api_url, environ.get("HTTP_USER_AGENT", "")
        )
        if method == "HEAD" or target is None:
            return default_handler(environ, start_response)
        if needs_token(resource.entry):
            target = self._call(environ, lambda core: core.locate(target))
        return self._redirect(start_response, resource, target)

    @staticmethod
    def _options(start_response, path: str) -> Iterable[bytes]:
        """Class 2 where writes can work (a draft): Finder and Windows mount a class 1
        server read-only, and one claiming class 2 everywhere read-write."""
        draft = is_in_draft(path)
        start_response(
            "200 OK",
            [
                ("DAV", "1, 2" if draft else "1"),
                ("Allow", WRITE_ALLOW if draft else READ_ALLOW),
                ("MS-Author-Via", "DAV"),
                ("Content-Length", "0"),
                ("Date", util.get_rfc1123_time()),
            ],
        )
        return [b""]

    def _propfind(self, environ, start_response):
        """Depth 0 or 1; the body is checked before anything is looked up."""
        depth = self._check_depth(environ)
        try:
            request = propfind.parse_request(read_body(environ))
        except propfind.BadPropfind as exc:
            raise DAVError(400, context_info=str(exc)) from None
        path = environ["PATH_INFO"]
        entry = self.stat(path, environ)
        items = [(path.rstrip("/") or "/", entry)]
        if depth == "1" and entry.is_folder:
            items += [(join_path(path, child.name), child) for child in self.listdir(path, environ)]
        extras = self._extra_properties(environ, items, request)
        body = propfind.render(environ.get("SCRIPT_NAME", ""), items, request, extras)
        start_response(
            "207 Multi-Status",
            [
                ("Content-Type", "application/xml; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Date", util.get_rfc1123_time()),
            ],
        )
        return [body]

    @staticmethod
    def _check_depth(environ: dict) -> str:
        depth = environ.get("HTTP_DEPTH", "infinity").strip().lower()
        if depth == "infinity":
            raise DAVError(
                403,
                context_info="PROPFIND with Depth: infinity is refused; list one level at a time",
                err_condition=PRECONDITION_CODE_PropfindFiniteDepth,
            )
        if depth not in ("0", "1"):
            raise DAVError(400, context_info=f"invalid Depth header {depth!r}: use 0 or 1")
        return depth

    @staticmethod
    def _unchanged(start_response, resource: FileResource, status: int):
        reason = {304: "Not Modified", 412: "Precondition Failed"}[status]
        start_response(f"{status} {reason}", [("Content-Length", "0"), *validators(resource)])
        return [b""]

    @staticmethod
    def _redirect(start_response, resource: FileResource, target: str):
        """307 to where the bytes live."""
        headers = [("Location", target), ("Content-Length", "0"), ("Cache-Control", "no-store")]
        headers += validators(resource)
        start_response("307 Temporary Redirect", headers)
        return [b""]

    def _listing(self, environ, start_response, resource: FolderResource):
        path = environ["PATH_INFO"]
        if not path.endswith("/"):
            location = util.quote(environ.get("SCRIPT_NAME", "") + path + "/")
            query = environ.get("QUERY_STRING")
            start_response(
                "301 Moved Permanently",
                [("Location", location + (f"?{query}" if query else "")), ("Content-Length", "0")],
            )
            return [b""]
        page = render_listing(path, resource.children()).encode("utf-8")
        return send_body(environ, start_response, page, "text/html; charset=utf-8")

    def _metadata(self, environ, start_response, path: str):
        entry = self.stat(path, environ)
        record = self._call(environ, lambda core: core.metadata(entry.path))
        view = {"entry": {k: json_value(v) for k, v in asdict(entry).items()}, "metadata": record}
        body = json.dumps(view, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        return send_body(environ, start_response, body, "application/json; charset=utf-8")


    def _extra_properties(
        self, environ: dict, items: list[tuple[str, Entry]], request: propfind.PropfindRequest
    ) -> dict[str, propfind.Extra]:
        """Dead properties (kept in memory, drafts only) and, when named, validation errors."""
        extras: dict[str, propfind.Extra] = {}
        for path, entry in items:
            if not is_in_draft(path):
                continue
            found: propfind.Extra = {}
            if self.prop_manager is not None:
                ref = self.ref_url(path, entry.is_folder)
                for name in self.prop_manager.get_properties(ref, environ):
                    value = self.prop_manager.get_property(ref, name, environ)
                    if value is not None:
                        found[propfind.split_tag(name)] = (
                            value.decode("utf-8") if isinstance(value, bytes) else value
                        )
            if propfind.VALIDATION in request.names and not entry.is_folder:
                problems = self._call(environ, lambda core: core.validation_errors(path))
                found.update(propfind.validation_element(problems))
            if found:
                extras[path] = found
        return extras

    # -- writes ----------------------------------------------------------------------------

    def _write(self, environ, start_response, default_handler):
        """The caller's core must accept every path written; then WsgiDAV's handler runs
        (a MOVE or COPY that made a new resource answers 201, as RFC 4918 says)."""
        method = environ["REQUEST_METHOD"]
        path = environ["PATH_INFO"]
        destination = destination_path(environ) if method in ("MOVE", "COPY") else None
        for target in ([] if method == "COPY" else [path]) + ([destination] if destination else []):
            self._call(environ, lambda core, target=target: core.check_writable(target))
        if destination is None:
            return default_handler(environ, start_response)
        created = self.get_resource_inst(destination, environ) is None

        def created_status(status, headers, exc_info=None):
            if created and status.startswith("204"):
                status = "201 Created"
            return start_response(status, headers, exc_info)

        return default_handler(environ, created_status)

    def forget(self, environ: dict, *paths: str) -> None:
        """`paths` changed: drop this request's memo of them (and their folders' listings),
        and what the other callers' cores cached of them, so that they see it at once."""
        token = environ.get(TOKEN_KEY)

        async def tell_others() -> None:
            own = await self.cores.get(token)
            for core in self.cores.cores():
                if core is not own:
                    for path in paths:
                        core.invalidate(path)

        self.portal.call(tell_others)
        stats = environ.setdefault("dandifs.stat", {})
        listings = environ.setdefault("dandifs.listdir", {})
        for path in paths:
            key = path.rstrip("/") or "/"
            for memo in (stats, listings):
                for known in [k for k in memo if k == key or k.startswith(key + "/")]:
                    del memo[known]
            listings.pop(parent_path(key), None)

    def ref_url(self, path: str, is_folder: bool) -> str:
        """The key WsgiDAV's lock and property managers keep a resource under."""
        url = util.quote(self.share_path + (path.rstrip("/") or "/"))
        return url + "/" if is_folder and not url.endswith("/") else url

    def new_file(self, path: str, environ: dict) -> FileResource:
        """The resource a PUT writes (its body makes it), or a LOCK's empty file."""
        if environ["REQUEST_METHOD"] == "PUT":
            name = path.rstrip("/").rsplit("/", 1)[-1]
            placeholder = Entry(path=path, kind=EntryKind.FILE, size=0)
            assert name
            return FileResource(path, environ, placeholder, self)

        async def empty(core: Core) -> None:
            writer = await core.create(path, exclusive=True)
            await writer.close()

        self._call(environ, empty)
        self.forget(environ, path)
        return self.resource(path, environ)

    def begin_put(self, path: str, environ: dict) -> BodySink:
        writer = self._call(environ, lambda core: core.create(path))
        return BodySink(self.portal, writer)

    def end_put(self, path: str, sink: BodySink, environ: dict, *, with_errors: bool) -> Entry:
        """Keep the body (wait until it is an asset) or, if it broke off, nothing."""
        expected = expected_length(environ)
        if with_errors or (expected is not None and sink.received != expected):
            self._call(environ, lambda core: sink.writer.abort())
            if with_errors:
                raise DAVError(400, context_info="the request body broke off; nothing was kept")
            raise short_body(sink.received, expected)

        async def keep(core: Core) -> None:
            try:
                await sink.writer.sync()
            finally:
                await sink.writer.close()

        self._call(environ, keep)
        self.forget(environ, path)
        return self.stat(path, environ)

    def mkdir(self, path: str, environ: dict) -> None:
        self._call(environ, lambda core: core.mkdir(path))
        self.forget(environ, path)

    def remove(self, path: str, environ: dict) -> None:
        """DELETE: a file, or a folder with everything in it (RFC 4918 §9.6.1)."""
        self._call(environ, lambda core: remove_tree(core, path))
        self.forget(environ, path)

    def rename(self, path: str, destination: str, environ: dict) -> None:
        replace = environ.get("HTTP_OVERWRITE", "T") == "T"

        async def rename(core: Core) -> None:
            if replace:
                await clear_for(core, path, destination)
            await core.rename(path, destination, replace=replace)

        self._call(environ, rename)
        self.forget(environ, path, destination)

    def copy(self, path: str, destination: str, environ: dict, *, recursive: bool) -> None:
        """COPY: the same blobs under a new path; `Depth: 0` of a folder copies the folder only."""
        replace = environ.get("HTTP_OVERWRITE", "T") == "T"

        async def copy(core: Core) -> None:
            if replace:
                await clear_for(core, path, destination)
            if recursive or not (await core.stat(path)).is_folder:
                await core.copy(path, destination, replace=replace)
            else:
                await core.mkdir(destination)

        self._call(environ, copy)
        self.forget(environ, destination)

    def set_mtime(self, path: str, moment: object, environ: dict) -> None:
        self._call(environ, lambda core: core.set_mtime(path, mtime_from(moment)))
        self.forget(environ, path)


async def clear_for(core: Core, source: str, destination: str) -> None:
    """Overwrite: T onto a folder, or of a folder, first deletes what is at the destination
    (RFC 4918 §9.8.4, §9.9.3: collections are replaced, never merged)."""
    try:
        existing = await core.stat(destination)
    except errors.NotFound:
        return
    if existing.is_folder or (await core.stat(source)).is_folder:
        await remove_tree(core, destination)


async def remove_tree(core: Core, path: str) -> None:
    """Remove a file, or a folder depth first."""
    entry = await core.stat(path)
    if not entry.is_folder:
        await core.unlink(path)
        return
    for child in await core.listdir(path):
        await remove_tree(core, child.path)
    await core.rmdir(path)


def as_folder(entry: Entry) -> Entry:
    """`latest` is a symlink in FUSE; WebDAV has no symlinks, so it is a folder here."""
    return replace(entry, kind=EntryKind.FOLDER) if entry.kind is EntryKind.SYMLINK else entry


async def stat_as_folder(core: Core, path: str) -> Entry:
    return as_folder(await core.stat(path, follow=True))


def dandiset_of(route: routes.Route) -> str | None:
    """The dandiset a route is in, if any."""
    if isinstance(route, (routes.DandisetFolder, routes.ReleasesFolder)):
        return route.dandiset_id
    if isinstance(route, (routes.VersionRoot, routes.DandisetYaml, routes.InVersion)):
        return route.address.dandiset_id
    return None


class ImmutableEntries:
    """Entries of published versions by (caller's token, path): thread-safe and bounded.

    The token is part of the key so that what one caller may see is never answered to
    another from here.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self._entries: LRUCache[tuple[str | None, str], Entry] = LRUCache(maxsize=capacity)
        self._lock = threading.Lock()

    def get(self, token: str | None, path: str) -> Entry | None:
        with self._lock:
            return self._entries.get((token, path))

    def remember(self, token: str | None, path: str, entry: Entry) -> None:
        if entry.immutable:
            with self._lock:
                self._entries[(token, path)] = entry
